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

    State: ``mean`` and ``m2`` (running mean and sum of squared deviations over every value seen,
    ``[B]``) and ``count`` (how many values, int64 ``[B]``). A call works in float64 on deviations
    from the stored mean and merges them with Chan's formula, ``m2 = m2_0 + S2 - S1^2 / n``; unlike
    raw sums of x and x^2, this does not cancel catastrophically when the mean is large against the
    spread. Both statistics are kept in float64, so chunked and offline results agree.
    """

    def __init__(self, channels: int, eps: float = 1e-8, affine: bool = True):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def own_state(self, batch, device, dtype) -> State:
        # the statistics are accumulators: float64 whatever the model's dtype, or rounding the stored
        # mean to float32 at chunk boundaries moves outputs by ~1e-5 when the spread is small
        return {"mean": torch.zeros(batch, device=device, dtype=torch.float64),
                "m2": torch.zeros(batch, device=device, dtype=torch.float64),
                "count": torch.zeros(batch, device=device, dtype=torch.long)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        _check_channels(self, x)
        if not x.shape[-1]:
            return x.clone(), dict(state)
        mean0 = state["mean"].double()[:, None]  # [B, 1]
        deviation = x.double() - mean0[:, None]  # [B, C, T]
        s1 = deviation.sum(1).cumsum(-1)  # [B, T]
        s2 = deviation.square().sum(1).cumsum(-1)
        frames = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64)
        counts = state["count"].double()[:, None] + frames * self.channels
        mean = mean0 + s1 / counts
        m2 = state["m2"].double()[:, None] + s2 - s1.square() / counts
        var = (m2 / counts).clamp_min(0)
        y = ((x.double() - mean[:, None]) / (var[:, None] + self.eps).sqrt()).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight[:, None] + self.bias[:, None]
        dtype = state["mean"].dtype
        return y, {"mean": mean[:, -1].to(dtype), "m2": m2[:, -1].to(dtype),
                   "count": state["count"] + x.shape[-1] * self.channels}


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
