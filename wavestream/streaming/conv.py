"""Causal convolutions with explicit state (cf. moshi's ``previous``/``partial`` buffers)."""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

from .module import StreamingModule
from .state import State


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

    def own_state(self, batch, device, dtype) -> State:
        return {"prev": torch.zeros(batch, self.conv.in_channels, self.context, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_length(x)
        full = torch.cat([state["prev"], x], dim=-1)
        y = self.conv(full)
        return y, {"prev": full[..., full.shape[-1] - self.context:]}
