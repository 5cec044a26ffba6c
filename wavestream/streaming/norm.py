"""Causal normalizations: cumulative layer norm (Conv-TasNet's cLN) and frame-wise channel norm.

Both take ``[B, C, T]`` and never look at future frames; neither uses batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from .module import StreamingModule
from .state import State


class CumulativeLayerNorm(StreamingModule):
    """Normalize frame t by the mean and variance over all channels of frames ``0..t``.

    State: ``sum`` and ``sum_sq`` (running sums over every value seen, ``[B]``) and ``count`` (how
    many values, int64 ``[B]``). Sums are accumulated in float64 within a call and stored in the
    state's dtype, so chunked and offline results agree.
    """

    def __init__(self, channels: int, eps: float = 1e-8, affine: bool = True):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def own_state(self, batch, device, dtype) -> State:
        return {"sum": torch.zeros(batch, device=device, dtype=dtype),
                "sum_sq": torch.zeros(batch, device=device, dtype=dtype),
                "count": torch.zeros(batch, device=device, dtype=torch.long)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        _check_channels(self, x)
        x64 = x.double()
        sums = state["sum"].double()[:, None] + x64.sum(1).cumsum(-1)  # [B, T]
        sums_sq = state["sum_sq"].double()[:, None] + x64.square().sum(1).cumsum(-1)
        frames = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64)
        counts = state["count"].double()[:, None] + frames * self.channels
        mean = sums / counts
        var = (sums_sq / counts - mean.square()).clamp_min(0)
        y = ((x64 - mean[:, None]) / (var[:, None] + self.eps).sqrt()).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight[:, None] + self.bias[:, None]
        new_state = {"sum": state["sum"], "sum_sq": state["sum_sq"], "count": state["count"]}
        if x.shape[-1]:
            new_state = {"sum": sums[:, -1].to(state["sum"].dtype), "sum_sq": sums_sq[:, -1].to(state["sum_sq"].dtype),
                         "count": state["count"] + x.shape[-1] * self.channels}
        return y, new_state


class ChannelLayerNorm(StreamingModule):
    """Layer norm over the channels of each frame on its own (stateless, ``[B, C, T]``)."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.channels = channels
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        _check_channels(self, x)
        return self.norm(x.transpose(1, 2)).transpose(1, 2), {}


def _check_channels(module: StreamingModule, x: torch.Tensor) -> None:
    if x.dim() != 3 or x.shape[1] != module.channels:
        raise ValueError(f"{type(module).__name__} expects [batch, {module.channels}, time], got {tuple(x.shape)}")
