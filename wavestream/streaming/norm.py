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

    State: ``mean`` and ``var`` (running mean and variance over every value seen, ``[B]``) and
    ``count`` (how many values, int64 ``[B]``). A call takes each frame's mean and centred sum of
    squares and merges them in float64 on deviations from the stored mean with Chan's formula,
    ``m2 = var_0 * n_0 + S2 - S1^2 / n``; unlike raw sums of x and x^2, this does not cancel
    catastrophically when the mean is large against the spread.
    Both statistics are kept in float64, so chunked and offline results agree; the state holds the
    variance rather than the sum of squares so that its values keep the signal's scale however long
    the stream (a sum grows with every frame, and so would any rounding difference in it).
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
                "var": torch.zeros(batch, device=device, dtype=torch.float64),
                "count": torch.zeros(batch, device=device, dtype=torch.long)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        _check_channels(self, x)
        if not x.shape[-1]:
            return x.clone(), dict(state)
        # each frame's own mean and centred sum of squares over the channels (float32: centred, so
        # no cancellation), then merged frame by frame in float64 with Chan's formula, on deviations
        # from the stored mean: only [B, T] tensors are float64, the [B, C, T] work stays float32
        frame_mean = x.mean(1)  # [B, T]
        frame_m2 = (x - frame_mean[:, None]).square().sum(1).double()
        mean0 = state["mean"].double()[:, None]  # [B, 1]
        deviation = frame_mean.double() - mean0
        s1 = (deviation * self.channels).cumsum(-1)  # [B, T]
        s2 = (deviation.square() * self.channels + frame_m2).cumsum(-1)
        frames = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64)
        counts = state["count"].double()[:, None] + frames * self.channels
        mean = mean0 + s1 / counts
        m2 = (state["var"].double() * state["count"].double())[:, None] + s2 - s1.square() / counts
        var = (m2 / counts).clamp_min(0)
        scale = (var + self.eps).rsqrt()
        y = (x - mean.to(x.dtype)[:, None]) * scale.to(x.dtype)[:, None]
        if self.weight is not None:
            y = y * self.weight[:, None] + self.bias[:, None]
        dtype = state["mean"].dtype
        return y, {"mean": mean[:, -1].to(dtype), "var": var[:, -1].to(dtype),
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
