"""Causal SEANet encoder and decoder (SoundStream, EnCodec): strided causal convs, residual units, ELU, LSTM.

Encoder: ``[B, channels, n * hop]`` samples -> ``[B, dimension, n]`` latent frames, ``hop = prod(ratios)``.
Decoder: ``[B, dimension, n]`` latent frames -> ``[B, channels, n * hop]`` samples.

Every convolution is a ``CausalConv1d`` / ``CausalConvTranspose1d`` (zero left context at the
stream start), so both halves are strictly causal with no look-ahead: a latent frame depends on the
samples up to its own end, a decoded sample on the latent frames up to its own frame. The state is
the convs' ``prev`` / ``partial`` buffers and the LSTM's ``h``, ``c``.

The layout follows EnCodec's SEANet (``ratios`` in decoder order; the encoder downsamples by the
reversed ratios with kernel ``2 * ratio``; residual units ``ELU -> conv k (dilation d) -> ELU ->
conv 1`` with a 1x1 conv or identity shortcut; a skip LSTM at the bottleneck), so official EnCodec
weights map onto it one to one (see ``wavestream.models.convert_encodec``). ``weight_norm=True``
reparametrizes every conv weight as in EnCodec's training; inference results are the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from .conv import CausalConv1d, CausalConvTranspose1d
from .module import StreamingModule
from .recurrent import LSTM
from .state import State


def _weight_norm(conv: CausalConv1d | CausalConvTranspose1d, enabled: bool):
    if enabled:
        inner = "conv" if isinstance(conv, CausalConv1d) else "convtr"
        setattr(conv, inner, nn.utils.parametrizations.weight_norm(getattr(conv, inner)))
    return conv


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization under ``module`` by the plain weight it computes
    (the same outputs, no recomputation per call, and the state dict of ``weight_norm=False``)."""
    for m in module.modules():
        if nn.utils.parametrize.is_parametrized(m, "weight"):
            nn.utils.parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


class ResidualUnit(StreamingModule):
    """``x + f(x)`` (or ``shortcut(x) + f(x)``) with ``f = ELU -> conv k, dilation d (dim -> dim // compress)
    -> ELU -> conv 1 (-> dim)``."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2,
                 conv_shortcut: bool = True, weight_norm: bool = False):
        super().__init__()
        hidden = dim // compress
        self.conv1 = _weight_norm(CausalConv1d(dim, hidden, kernel_size, dilation=dilation), weight_norm)
        self.conv2 = _weight_norm(CausalConv1d(hidden, dim, 1), weight_norm)
        self.shortcut = _weight_norm(CausalConv1d(dim, dim, 1), weight_norm) if conv_shortcut else None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        h = self.step_child("conv1", F.elu(x), state, new_state)
        h = self.step_child("conv2", F.elu(h), state, new_state)
        skip = x if self.shortcut is None else self.step_child("shortcut", x, state, new_state)
        return skip + h, new_state


class SkipLSTM(StreamingModule):
    """``x + LSTM(x)`` on ``[B, dim, T]`` (EnCodec's bottleneck LSTM); state ``lstm.h``, ``lstm.c``."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = LSTM(dim, dim, num_layers)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        return x + self.step_child("lstm", x, state, new_state), new_state


class _SEANet(StreamingModule):
    """Shared constructor arguments and the residual-stage builder of the encoder and the decoder."""

    def __init__(self, channels: int, dimension: int, ratios: Sequence[int], residual_layers: int,
                 residual_kernel_size: int, dilation_base: int, compress: int, conv_shortcut: bool, weight_norm: bool):
        super().__init__()
        if not ratios or any(r < 1 for r in ratios):
            raise ValueError(f"ratios must be positive integers, got {list(ratios)}")
        self.channels, self.dimension, self.ratios = channels, dimension, tuple(int(r) for r in ratios)
        self.frame_size = math.prod(self.ratios)
        self._unit_args = dict(kernel_size=residual_kernel_size, compress=compress, conv_shortcut=conv_shortcut,
                               weight_norm=weight_norm)
        self._residual_layers, self._dilation_base, self._weight_norm = residual_layers, dilation_base, weight_norm

    def _units(self, dim: int) -> nn.ModuleList:
        return nn.ModuleList(ResidualUnit(dim, dilation=self._dilation_base ** j, **self._unit_args)
                             for j in range(self._residual_layers))

    def _conv(self, cin: int, cout: int, kernel: int, stride: int = 1) -> CausalConv1d:
        return _weight_norm(CausalConv1d(cin, cout, kernel, stride), self._weight_norm)

    def _step_units(self, prefix: str, n: int, h: torch.Tensor, state: State, new_state: State) -> torch.Tensor:
        for j in range(n):
            h = self.step_child(f"{prefix}.{j}", h, state, new_state)
        return h


class SEANetEncoder(_SEANet):
    """Audio ``[B, channels, n * hop]`` -> latents ``[B, dimension, n]``; ``hop = prod(ratios)``.

    ``ratios`` are given in decoder order (EnCodec's convention) and applied reversed: the first
    stage downsamples by ``ratios[-1]``. Stage ``i`` works at ``n_filters * 2**i`` channels.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), residual_layers: int = 1, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 compress: int = 2, lstm_layers: int = 2, conv_shortcut: bool = True, weight_norm: bool = False):
        super().__init__(channels, dimension, ratios, residual_layers, residual_kernel_size, dilation_base, compress,
                         conv_shortcut, weight_norm)
        self.hop = self.frame_size
        self.out_per_in = Fraction(1, self.frame_size)
        self.input_conv = self._conv(channels, n_filters, kernel_size)
        widths = [n_filters * 2 ** i for i in range(len(self.ratios) + 1)]
        self.units = nn.ModuleList(self._units(w) for w in widths[:-1])
        self.downsample = nn.ModuleList(self._conv(w, 2 * w, 2 * r, stride=r)
                                        for w, r in zip(widths, reversed(self.ratios), strict=False))
        self.lstm = SkipLSTM(widths[-1], lstm_layers) if lstm_layers else None
        self.output_conv = self._conv(widths[-1], dimension, last_kernel_size)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"SEANetEncoder expects [batch, {self.channels}, time], got {tuple(x.shape)}")
        self.check_length(x)
        new_state: State = {}
        h = self.step_child("input_conv", x, state, new_state)
        for i, units in enumerate(self.units):
            h = self._step_units(f"units.{i}", len(units), h, state, new_state)
            h = self.step_child(f"downsample.{i}", F.elu(h), state, new_state)
        if self.lstm is not None:
            h = self.step_child("lstm", h, state, new_state)
        return self.step_child("output_conv", F.elu(h), state, new_state), new_state


class SEANetDecoder(_SEANet):
    """Latents ``[B, dimension, n]`` -> audio ``[B, channels, n * frame_size]`` (one latent frame per step unit).

    Stage ``i`` upsamples by ``ratios[i]`` with a causal transposed conv of kernel ``2 * ratio``, then
    runs its residual units; ``final_activation`` (e.g. ``"tanh"``) is applied to the output if given.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), residual_layers: int = 1, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 compress: int = 2, lstm_layers: int = 2, conv_shortcut: bool = True, weight_norm: bool = False,
                 final_activation: str | None = None):
        super().__init__(channels, dimension, ratios, residual_layers, residual_kernel_size, dilation_base, compress,
                         conv_shortcut, weight_norm)
        if final_activation not in (None, "tanh"):
            raise ValueError(f"final_activation must be None or 'tanh', got {final_activation!r}")
        self.final_activation = final_activation
        self.out_per_in = Fraction(self.frame_size)
        widths = [n_filters * 2 ** (len(self.ratios) - i) for i in range(len(self.ratios) + 1)]
        self.input_conv = self._conv(dimension, widths[0], kernel_size)
        self.lstm = SkipLSTM(widths[0], lstm_layers) if lstm_layers else None
        self.upsample = nn.ModuleList(
            _weight_norm(CausalConvTranspose1d(w, w // 2, 2 * r, stride=r), weight_norm)
            for w, r in zip(widths, self.ratios, strict=False))
        self.units = nn.ModuleList(self._units(w) for w in widths[1:])
        self.output_conv = self._conv(n_filters, channels, last_kernel_size)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != self.dimension:
            raise ValueError(f"SEANetDecoder expects [batch, {self.dimension}, frames], got {tuple(x.shape)}")
        new_state: State = {}
        h = self.step_child("input_conv", x, state, new_state)
        if self.lstm is not None:
            h = self.step_child("lstm", h, state, new_state)
        for i, units in enumerate(self.units):
            h = self.step_child(f"upsample.{i}", F.elu(h), state, new_state)
            h = self._step_units(f"units.{i}", len(units), h, state, new_state)
        y = self.step_child("output_conv", F.elu(h), state, new_state)
        return (torch.tanh(y) if self.final_activation == "tanh" else y), new_state
