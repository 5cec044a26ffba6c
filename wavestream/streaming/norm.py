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

    #: the training path (autograd recording) through _FrameStats and _Normalize; off: autograd's own graph
    fused_backward = True

    def own_state(self, batch, device, dtype) -> State:
        # the statistics are accumulators: float64 whatever the model's dtype, or rounding the stored
        # mean to float32 at chunk boundaries moves outputs by ~1e-5 when the spread is small
        return {"mean": torch.zeros(batch, device=device, dtype=torch.float64),
                "var": torch.zeros(batch, device=device, dtype=torch.float64),
                "count": torch.zeros(batch, device=device, dtype=torch.long)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        _check_channels(self, x)
        frames, channels = x.shape[-1], self.channels
        if not frames:
            return x.clone(), dict(state)
        # each frame's own mean and centred sum of squares over the channels (float32: centred, so no
        # cancellation), then merged frame by frame in float64 with Chan's formula, on deviations from the
        # stored mean: only [B, 1, T] tensors are float64, the [B, C, T] work stays float32. A streaming
        # step is many small ops on [B, 1, T] (~1-2 us each), so they are kept few: statistics keep the
        # channel axis (no unsqueezes), fused ops (addcmul, addcdiv) and in-place ops on fresh temporaries
        # while autograd records, the [B, C, T] parts run as two functions with backward passes of their own
        # (same values): autograd's own graph of them takes about twice the passes over [B, C, T] (negations,
        # clones for the in-place ops, separate multiplies), the larger part of a separate training step
        fused = self.fused_backward and torch.is_grad_enabled()
        if fused:
            frame_mean, frame_m2 = _FrameStats.apply(x)
        else:
            frame_mean = x.mean(1, keepdim=True)  # [B, 1, T]
            frame_m2 = (x - frame_mean).square_().sum(1, keepdim=True)
        mean0 = state["mean"].double().view(-1, 1, 1)
        count0 = state["count"].view(-1, 1, 1)
        deviation = frame_mean.double().sub_(mean0)
        s1 = deviation.cumsum(-1)  # per channel value: the channel count C multiplies it below
        s2 = torch.addcmul(frame_m2.double(), deviation, deviation, value=channels).cumsum_(-1)
        # values seen up to each frame: n0 + C * [1, 2, .., T]
        counts = torch.arange(channels, (frames + 1) * channels, channels, device=x.device,
                              dtype=torch.float64) + count0
        mean = torch.addcdiv(mean0, s1, counts, value=channels)
        # m2 = var0 * n0 + S2 - S1^2 / n with S1 = C * s1
        m2 = torch.addcdiv(s2.add_(state["var"].double().view(-1, 1, 1) * count0), s1.square(), counts,
                           value=-channels * channels)
        var = m2.div_(counts).clamp_min_(0)
        scale = (var + self.eps).rsqrt_()
        if fused:
            y = _Normalize.apply(x, mean.to(x.dtype), scale.to(x.dtype), self.weight, self.bias)
        else:
            y = (x - mean.to(x.dtype)).mul_(scale.to(x.dtype))
            if self.weight is not None:  # one pass, and _Normalize's values to the bit
                y = torch.addcmul(self.bias[:, None], y, self.weight[:, None])
        dtype = state["mean"].dtype
        return y, {"mean": mean[:, 0, -1].to(dtype), "var": var[:, 0, -1].to(dtype),
                   "count": state["count"] + frames * channels}


class _FrameStats(torch.autograd.Function):
    """``x [B, C, T]`` -> each frame's mean and centred sum of squares over the channels (``[B, 1, T]`` each)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        ctx.save_for_backward(centred)
        return mean, centred.square().sum(1, keepdim=True)

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_m2: torch.Tensor) -> torch.Tensor:
        (centred,) = ctx.saved_tensors
        # d mean / dx = 1 / C; d m2 / dx = 2 * centred (the centred values sum to zero)
        return torch.addcmul(grad_mean / centred.shape[1], centred, grad_m2, value=2)


class _Normalize(torch.autograd.Function):
    """``(x - mean) * scale * weight + bias`` for ``x [B, C, T]``, ``mean`` and ``scale`` ``[B, 1, T]``, ``weight``
    and ``bias`` ``[C]`` (or both None), with the same values as ``CumulativeLayerNorm``'s no-grad path."""

    @staticmethod
    def forward(ctx, x, mean, scale, weight, bias):
        normed = (x - mean).mul_(scale)
        ctx.save_for_backward(normed, scale, weight)
        return normed if weight is None else torch.addcmul(bias[:, None], normed, weight[:, None])

    @staticmethod
    def backward(ctx, grad):
        normed, scale, weight = ctx.saved_tensors
        grad_weight = grad_bias = None
        if weight is not None:
            grad_weight = (grad * normed).sum((0, 2))
            grad_bias = grad.sum((0, 2))
            grad = grad * weight[:, None]
        # normed = (x - mean) * scale: d/dscale = sum over the channels of grad * (x - mean) = of grad * normed / scale
        # (sharing one product with the weight's gradient through a batched matrix-vector product: ~4 % slower)
        grad_scale = (grad * normed).sum(1, keepdim=True).div_(scale)
        grad_x = grad * scale
        return grad_x, grad_x.sum(1, keepdim=True).neg_(), grad_scale, grad_weight, grad_bias


class ChannelLayerNorm(StreamingModule):
    """Layer norm over the channels of each frame on its own (stateless, ``[B, C, T]``)."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.channels = channels
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        _check_channels(self, x)
        return self.normalize(x), {}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``step`` without the checks and the state: ``[B, C, T]`` -> ``[B, C, T]``, for models that call it
        per frame. ``torch.layer_norm`` on the ``[B, T, C]`` view (on one frame it is contiguous; on more,
        layer_norm copies it, as ``self.norm`` would), the same kernel and values as calling ``self.norm``. On
        one frame the call costs less than the Python around it, so that is kept short: no module call, and
        the LayerNorm and its parameters are read from the module's dicts (nn.Module.__getattr__ takes ~0.3 us
        a lookup): ~2.8 us instead of 4.5."""
        return self.normalize_frame(x.mT).mT

    def normalize_frame(self, x: torch.Tensor) -> torch.Tensor:
        """The layer norm of channels-last values ``[..., C]`` (one frame of a stream: ``[B, C]``), as ``normalize``."""
        n = self._modules["norm"]
        p = n._parameters  # (a parametrized weight is not in there: then the module's own lookup)
        weight = p["weight"] if "weight" in p else n.weight
        bias = p["bias"] if "bias" in p else n.bias
        return torch.layer_norm(x, n.normalized_shape, weight, bias, n.eps)


def _check_channels(module: StreamingModule, x: torch.Tensor) -> None:
    if x.dim() != 3 or x.shape[1] != module.channels:
        raise ValueError(f"{type(module).__name__} expects [batch, {module.channels}, time], got {tuple(x.shape)}")
