"""Causal speech separation: Conv-TasNet (Luo & Mesgarani 2019) built from our streaming layers.

    mixture [B, 1, T]
      -> encoder: causal conv, N filters of L samples, stride L/2, ReLU         -> w [B, N, frames]
      -> separator: cLN -> 1x1 N->B -> R repeats of X blocks -> PReLU -> 1x1 B->S*N -> sigmoid
         block x: 1x1 B->H, PReLU, cLN, depthwise causal conv (kernel P, dilation 2^x), PReLU, cLN,
                  1x1 H->B, residual
      -> masks [B, S, N, frames] * w
      -> decoder: causal transposed conv N->1 (L, stride L/2), overlap-add    -> sources [B, S, T]

Every normalization is cumulative (frame t sees frames 0..t), every conv looks back only, so the
model streams one encoder hop at a time. The blocks keep only the residual path (no skip outputs):
the skip sums cost a third of the separator's multiply-adds for a small gain in the paper.

Latency: the encoder frame that ends at sample t starts L samples earlier, and the decoder writes it
back at once, so output sample t + L/2 answers input t; with the hop that makes L samples of
algorithmic latency (4 ms for the default L = 64 at 16 kHz). L = 32 (2 ms) costs twice the frames
per second; the shipped model card says which was trained and why.
"""

from __future__ import annotations

import torch
from torch import nn

from wavestream.streaming import (
    AUDIO,
    SOURCES,
    CausalConv1d,
    CausalConvTranspose1d,
    CumulativeLayerNorm,
    State,
    StreamingModule,
)

from .registry import register


class _PReLUGrad(torch.autograd.Function):
    """PReLU with one slope ``a``, forward as ``torch.prelu``, with a backward of a few vectorized passes: torch's
    own CPU backward kernel takes ~7 ms on a [4, 256, 2000] block, ~15 % of a training step of this model."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, a)
        return torch.prelu(x, a)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, a = ctx.saved_tensors
        # d/dx is 1 where x > 0, else a (as torch's, a at 0): lerp's ends are exact; d/da: sum of grad * min(x, 0)
        # (sign().clamp_() is the step function: heaviside and where are not vectorized, ~20x slower)
        grad_x = torch.lerp(grad * a, grad, x.sign().clamp_(min=0))
        grad_a = (grad * x.clamp(max=0)).sum().reshape(a.shape)  # sum(): cascaded, as accurate as torch's
        return grad_x, grad_a


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same values) whose backward is ``_PReLUGrad``'s while autograd records."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_parameters == 1 and torch.is_grad_enabled():
            return _PReLUGrad.apply(x, self.weight)
        return super().forward(x)


class SeparationBlock(StreamingModule):
    """One TCN block: 1x1 conv, PReLU, cLN, dilated depthwise causal conv, PReLU, cLN, 1x1 conv, residual."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.channels = channels
        self.expand = CausalConv1d(channels, hidden, 1)
        self.act1 = PReLU()
        self.norm1 = CumulativeLayerNorm(hidden)
        self.depthwise = CausalConv1d(hidden, hidden, kernel_size, dilation=dilation, groups=hidden)
        self.act2 = PReLU()
        self.norm2 = CumulativeLayerNorm(hidden)
        self.project = CausalConv1d(hidden, channels, 1)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        h = self.act1(self.step_child("expand", x, state, new_state))
        h = self.step_child("norm1", h, state, new_state)
        h = self.act2(self.step_child("depthwise", h, state, new_state))
        h = self.step_child("norm2", h, state, new_state)
        return x + self.step_child("project", h, state, new_state), new_state


class ConvTasNet(StreamingModule):
    input_kind, output_kind = AUDIO, SOURCES
    #: one mixture in: the stream pipeline averages a multichannel client to one row (2 sources out, not 2 per channel)
    mixdown = True

    def __init__(self, sources: int = 2, sample_rate: int = 16000, filters: int = 256, window: int = 64,
                 bottleneck: int = 128, hidden: int = 256, kernel_size: int = 3, blocks: int = 8,
                 repeats: int = 2):
        super().__init__()
        if window % 2:
            raise ValueError(f"window must be even (the stride is window / 2), got {window}")
        self.sources, self.filters, self.sample_rate = sources, filters, sample_rate
        stride = window // 2
        self.encoder = CausalConv1d(1, filters, window, stride=stride, bias=False)
        self.input_norm = CumulativeLayerNorm(filters)
        self.bottleneck = CausalConv1d(filters, bottleneck, 1)
        self.blocks = nn.ModuleList(SeparationBlock(bottleneck, hidden, kernel_size, 2 ** x)
                                    for _ in range(repeats) for x in range(blocks))
        self.mask_act = PReLU()
        self.masks = CausalConv1d(bottleneck, sources * filters, 1)
        self.decoder = CausalConvTranspose1d(filters, 1, window, stride=stride, bias=False)
        self.hop = stride
        self.latency = window - stride  # the decoder's output lags the encoder's frame by its overlap

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"separate expects mono audio [batch, 1, time], got shape {tuple(x.shape)}")
        self.check_length(x)
        new_state: State = {}
        batch, frames = x.shape[0], x.shape[-1] // self.hop
        w = torch.relu(self.step_child("encoder", x, state, new_state))  # [B, N, frames]
        h = self.step_child("input_norm", w, state, new_state)
        h = self.step_child("bottleneck", h, state, new_state)
        for i in range(len(self.blocks)):
            h = self.step_child(f"blocks.{i}", h, state, new_state)
        masks = torch.sigmoid(self.step_child("masks", self.mask_act(h), state, new_state))
        masked = masks.view(batch, self.sources, self.filters, frames) * w[:, None]
        # the decoder runs each (stream, source) pair as its own row; its overlap-add state is kept
        # as [B, S, overlap] so that the state's first dimension is the stream, as batching needs
        partial = state["decoder.partial"]
        y, decoded = self.decoder.step(masked.reshape(batch * self.sources, self.filters, frames),
                                       {"partial": partial.reshape(batch * self.sources, 1, -1)})
        new_state["decoder.partial"] = decoded["partial"].reshape(partial.shape)
        return y.view(batch, self.sources, -1), new_state

    def init_state(self, batch: int = 1, device=None, dtype=None) -> State:
        state = super().init_state(batch, device, dtype)
        partial = state["decoder.partial"]
        state["decoder.partial"] = partial.new_zeros(batch, self.sources, partial.shape[-1])
        return state


@register("separate", task="separate",
          description="causal two-talker separation, 16 kHz, 4 ms latency (Conv-TasNet, cumulative LN)")
def build_separate(**config) -> ConvTasNet:
    return ConvTasNet(**config)
