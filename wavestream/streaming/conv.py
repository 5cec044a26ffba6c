"""Causal convolutions with explicit state (cf. moshi's ``previous``/``partial`` buffers)."""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from .module import StreamingModule
from .state import State

MAX_TAPS = 5  # measured: up to 5 taps beat oneDNN at every length; at 11, oneDNN wins from ~256 frames


def frame_product(conv: nn.Conv1d, window: torch.Tensor) -> torch.Tensor:
    """The one output frame of ``conv`` (one group, dilation 1, no padding) over an input ``window``
    ``[B, in, kernel]`` exactly one kernel long, as a matrix product -> ``[B, out, 1]`` (see
    ``CausalConv1d.frame_matmul``: cheaper than a conv call there)."""
    return frame_linear(conv, window.flatten(1)).unsqueeze(-1)


def frame_weight(conv: nn.Conv1d) -> torch.Tensor:
    """``conv``'s weight as the ``[in * kernel, out]`` matrix of ``frame_product``. Without autograd it is a
    view kept on the module (its reshapes cost about as much as a frame's product), so an in-place update
    of the weight (an optimizer step, ``load_state_dict``) shows in it; it is made again when the weight
    is another tensor or lives in another storage (``.to()``, ``.data =``)."""
    weight = conv._parameters.get("weight")
    if weight is None or torch.is_grad_enabled():  # a parametrized weight, or one that needs its gradient
        return conv.weight.flatten(1).t()
    cached = conv.__dict__.get("_frame_weight")
    if cached is None or cached[0] is not weight or cached[1].data_ptr() != weight.data_ptr():
        cached = conv.__dict__["_frame_weight"] = (weight, weight.detach().flatten(1).t())
    return cached[1]


def frame_linear(conv: nn.Conv1d, window: torch.Tensor) -> torch.Tensor:
    """One output frame of ``conv`` over a flattened window ``[B, in * kernel]`` -> ``[B, out]``: one addmm
    through ``frame_weight`` (``frame_product`` is this with the views around it)."""
    bias = conv._parameters["bias"] if "bias" in conv._parameters else conv.bias
    weight = frame_weight(conv)
    return torch.mm(window, weight) if bias is None else torch.addmm(bias, window, weight)


class CausalConv1d(StreamingModule):
    """Conv1d that only looks back: output frame j covers inputs up to ``(j + 1) * stride - 1``.

    The input is left-padded by ``(kernel - 1) * dilation + 1 - stride`` samples; in streaming the
    padding is the ``prev`` state (the last inputs seen), so any multiple of ``stride`` may be fed.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        effective = (kernel_size - 1) * dilation + 1
        if effective < stride:
            raise ValueError(f"effective kernel {effective} shorter than stride {stride} skips input")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                              groups=groups, bias=bias)
        self.stride = stride
        self.hop = stride
        self.out_per_in = Fraction(1, stride)
        self.context = effective - stride
        # a depthwise conv with a few taps runs as that many multiply-adds on shifted views: oneDNN spends
        # ~40 us setting up each call, 4x the whole work at a streaming step's 16 frames (same sums, same order)
        self.taps = groups == in_channels == out_channels and stride == 1 and kernel_size <= MAX_TAPS
        # one output frame (a streaming step of a frame-wise model) of a conv whose taps are adjacent
        # (dilation 1, one group) is a matrix product of its flattened input window, [B, in * kernel] x
        # [in * kernel, out]: torch's conv takes ~2x as long for a 1x1 at batches of 8 to 64, ~3x for a
        # kernel of 3 at batch 32, ~1.3x at batch 1; from ~4 frames at batch 32 the conv wins, so longer
        # inputs keep it
        self.frame_matmul = groups == 1 and dilation == 1

    def own_state(self, batch, device, dtype) -> State:
        return {"prev": torch.zeros(batch, self.conv.in_channels, self.context, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        c = self.conv
        if x.dim() != 3 or x.shape[1] != c.in_channels:
            raise ValueError(f"CausalConv1d expects [batch, {c.in_channels}, time], got {tuple(x.shape)}")
        self.check_length(x)
        full = torch.cat([state["prev"], x], dim=-1) if self.context else x  # a 1x1 conv keeps no past
        if self.taps:
            y = self._depthwise(full, x.shape[-1])
        elif self.frame_matmul and x.shape[-1] == self.stride:  # the window `full` is one kernel long
            y = frame_product(c, full)
        else:
            y = F.conv1d(full, c.weight, c.bias, self.stride, 0, c.dilation, c.groups)
        return y, {"prev": full[..., full.shape[-1] - self.context:]}

    def frame(self, x: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` on one input frame ``x [B, in]`` of a stride-1 ``frame_matmul`` conv, without the checks
        -> the output frame ``[B, out]`` and the new ``prev``: the same matrix product and values as ``step``,
        with fewer views (for models that step one frame at a time)."""
        if not self.frame_matmul or self.stride != 1:
            raise ValueError("CausalConv1d.frame needs stride 1, dilation 1 and one group")
        full = torch.cat([prev, x[..., None]], dim=-1)  # [B, in, kernel]
        return frame_linear(self._modules["conv"], full.flatten(1)), full[..., 1:]

    def _depthwise(self, full: torch.Tensor, frames: int) -> torch.Tensor:
        c = self.conv
        if self.fused_backward and torch.is_grad_enabled():
            return _DepthwiseTaps.apply(full, c.weight, c.bias, c.dilation[0], frames)
        return _taps_sum(full, c.weight, c.bias, c.dilation[0], frames)

    #: the training path (autograd recording) of the taps through _DepthwiseTaps; off: autograd's own graph
    fused_backward = True


def _taps_sum(full: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int,
              frames: int) -> torch.Tensor:
    """A depthwise conv (weight ``[C, 1, kernel]``, stride 1) as one multiply-add per tap on shifted views."""
    taps = weight[:, 0].t()[:, :, None]  # [kernel, channels, 1]
    y = full[..., :frames] * taps[0] if bias is None else torch.addcmul(bias[:, None], full[..., :frames], taps[0])
    for k in range(1, len(taps)):
        y = y.addcmul_(full[..., k * dilation:k * dilation + frames], taps[k])
    return y


class _DepthwiseTaps(torch.autograd.Function):
    """``_taps_sum`` with its backward written out: autograd's own takes ~6 passes over the input per tap (a
    scaled copy of the gradient, a zero-filled slice gradient, a copy and an add), this one ~3."""

    @staticmethod
    def forward(ctx, full, weight, bias, dilation, frames):
        ctx.save_for_backward(full, weight)
        ctx.dilation, ctx.has_bias = dilation, bias is not None
        return _taps_sum(full, weight, bias, dilation, frames)

    @staticmethod
    def backward(ctx, grad):
        full, weight = ctx.saved_tensors
        dilation, frames, kernel = ctx.dilation, grad.shape[-1], weight.shape[-1]
        taps = weight[:, 0].t()[:, :, None]
        shifted = [full[..., k * dilation:k * dilation + frames] for k in range(kernel)]
        # the last tap reads exactly the last `frames` inputs: it writes their gradient, the others add theirs
        context = full.shape[-1] - frames
        grad_full = torch.empty_like(full)
        grad_full[..., :context].zero_()
        torch.mul(grad, taps[-1], out=grad_full[..., context:])
        for k in range(kernel - 1):
            grad_full[..., k * dilation:k * dilation + frames].addcmul_(grad, taps[k])
        grad_weight = torch.stack([(grad * x).sum((0, 2)) for x in shifted], -1)[:, None]
        return grad_full, grad_weight, grad.sum((0, 2)) if ctx.has_bias else None, None, None


class CausalConvTranspose1d(StreamingModule):
    """ConvTranspose1d that emits ``stride`` outputs per input frame, as soon as they are final.

    Input frame j spreads over outputs ``[j * stride, j * stride + effective)``; outputs before
    ``(j + 1) * stride`` get nothing from later frames, so they are emitted. The rest of the
    transposed-conv output is trimmed on the right and carried as the ``partial`` state (sums
    without bias, added to by the next frames); the bias is added once, when a sample is emitted.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        effective = (kernel_size - 1) * dilation + 1
        if effective < stride:
            raise ValueError(f"effective kernel {effective} shorter than stride {stride} leaves output gaps")
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                                         groups=groups, bias=bias)
        self.stride = stride
        self.out_per_in = Fraction(stride)
        self.context = effective - stride

    def own_state(self, batch, device, dtype) -> State:
        return {"partial": torch.zeros(batch, self.convtr.out_channels, self.context, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        c = self.convtr
        if x.dim() != 3 or x.shape[1] != c.in_channels:
            raise ValueError(f"CausalConvTranspose1d expects [batch, {c.in_channels}, time], got {tuple(x.shape)}")
        partial = state["partial"]
        batch, frames = x.shape[0], x.shape[-1]
        if not frames:  # nothing to emit
            return partial.new_zeros(batch, c.out_channels, 0), {"partial": partial}
        # each frame's whole contribution in one matmul ([B, out * kernel, T], per group), then overlap-added
        # by fold: ~6x faster than CPU conv_transpose1d at every length measured (16 to 5000 frames)
        groups, kernel = c.groups, c.kernel_size[0]
        weight = c.weight.reshape(groups, c.in_channels // groups, -1).transpose(1, 2)
        columns = torch.matmul(weight, x.reshape(batch, groups, -1, frames)).reshape(batch, -1, frames)
        length = frames * self.stride + self.context
        full = F.fold(columns, (1, length), (1, kernel), dilation=(1, c.dilation[0]), stride=(1, self.stride))
        full = full.view(batch, c.out_channels, length)
        full = torch.cat([full[..., :self.context] + partial, full[..., self.context:]], dim=-1)
        done = x.shape[-1] * self.stride
        y = full[..., :done]
        if c.bias is not None:
            y = y + c.bias[:, None]
        return y, {"partial": full[..., done:]}


class FSMN(StreamingModule):
    """Causal FSMN memory block (Zhang et al. 2015, compact/deep FSMN without lookahead).

    ``m[t] = x[t] + sum_{i=0..lookback} a_i * x[t - i * stride]`` with a learned per-channel tap
    ``a_i``: a depthwise causal conv plus a skip connection. State: the conv's last
    ``lookback * stride`` input frames (``conv.prev``).
    """

    def __init__(self, channels: int, lookback: int, stride: int = 1):
        super().__init__()
        if lookback < 1 or stride < 1:
            raise ValueError(f"need lookback >= 1 and stride >= 1, got {lookback}, {stride}")
        self.channels = channels
        self.conv = CausalConv1d(channels, channels, lookback + 1, dilation=stride, groups=channels, bias=False)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"FSMN expects [batch, {self.channels}, time], got {tuple(x.shape)}")
        new_state: State = {}
        return x + self.step_child("conv", x, state, new_state), new_state
