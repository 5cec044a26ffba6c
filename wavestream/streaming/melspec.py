"""Streaming log-mel filterbank with explicit state (no centre padding, no utterance normalization).

Frame ``k`` covers input samples ``[(k + 1) * hop - window, (k + 1) * hop)`` (zeros before the
stream starts), like the causal STFT: it is complete as soon as its last hop has arrived. Each
frame is Hann-windowed, zero-padded to ``n_fft``, turned into a power spectrum, summed by
triangular filters spaced evenly on the HTK mel scale, and logged with a floor::

    y[m, k] = log(max(sum_f W[m, f] |X_k[f]|^2, floor))

The state ``prev`` is the last ``window - hop`` samples. The features are not normalized by any
statistic of the utterance (that would look ahead); a model adds its own per-frame normalization.
Built from torch ops only (``torch.fft``), so it exports and needs no torchaudio.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from .module import AUDIO, FEATURES, StreamingModule
from .state import State


def hz_to_mel(hz: float | torch.Tensor) -> float | torch.Tensor:
    """HTK mel scale."""
    if isinstance(hz, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: float | torch.Tensor) -> float | torch.Tensor:
    if isinstance(mel, torch.Tensor):
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` (float64), peak 1, edges evenly spaced in mel."""
    edges = mel_to_hz(torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64))
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return torch.minimum(rising, falling).clamp_min(0.0)


class LogMelSpectrogram(StreamingModule):
    """Audio ``[B, 1, T]`` -> log-mel features ``[B, n_mels, T / hop_length]``."""

    input_kind, output_kind = AUDIO, FEATURES

    def __init__(self, sample_rate: int = 16000, window_length: int = 400, hop_length: int = 160,
                 n_mels: int = 40, n_fft: int | None = None, f_min: float = 20.0, f_max: float | None = None,
                 floor: float = 1e-6):
        super().__init__()
        n_fft = n_fft or 1 << (window_length - 1).bit_length()  # next power of two: 400 -> 512
        f_max = sample_rate / 2 if f_max is None else f_max
        if not 0 < hop_length <= window_length <= n_fft:
            raise ValueError(f"need 0 < hop_length <= window_length <= n_fft, got {hop_length}, {window_length}, "
                             f"{n_fft}")
        if not 0 <= f_min < f_max <= sample_rate / 2 or n_mels < 1 or floor <= 0:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, n_mels >= 1, floor > 0; got {f_min}, "
                             f"{f_max}, {n_mels}, {floor}")
        filters = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max)
        if (filters.sum(1) == 0).any():
            raise ValueError(f"{n_mels} mels over {f_min}-{f_max} Hz with n_fft={n_fft} leave empty filters; "
                             "use fewer mels or a longer FFT")
        self.sample_rate = sample_rate
        self.window_length, self.hop_length, self.n_fft, self.n_mels, self.floor = (
            window_length, hop_length, n_fft, n_mels, floor)
        self.hop = hop_length
        self.out_per_in = Fraction(1, hop_length)
        # buffers that follow from the config: not parameters, not in the state_dict
        self.register_buffer("window", torch.hann_window(window_length, periodic=True), persistent=False)
        self.register_buffer("filters", filters.T.float().contiguous(), persistent=False)  # [freqs, mels]
        # the window padded to n_fft, for ``frame``: rfft's own padding (n=...) costs more than the FFT there
        self.register_buffer("padded_window", torch.cat([self.window, torch.zeros(n_fft - window_length)]),
                             persistent=False)

    def own_state(self, batch, device, dtype) -> State:
        return {"prev": torch.zeros(batch, 1, self.window_length - self.hop_length, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"LogMelSpectrogram expects mono audio [batch, 1, time], got shape {tuple(x.shape)}")
        self.check_length(x)
        keep = self.window_length - self.hop_length
        if not x.shape[-1]:
            return x.new_zeros(x.shape[0], self.n_mels, 0), {"prev": state["prev"]}
        full = torch.cat([state["prev"], x], dim=-1)
        frames = full[:, 0].unfold(-1, self.window_length, self.hop_length)  # [B, frames, window]
        spec = torch.fft.rfft(frames * self.window.to(x.dtype), n=self.n_fft, dim=-1)
        power = spec.real.square() + spec.imag.square()
        mel = power @ self.filters.to(x.dtype)  # [B, frames, mels]
        y = mel.clamp_min(self.floor).log().transpose(1, 2)
        return y, {"prev": full[..., full.shape[-1] - keep:]}

    def frame(self, x: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` on exactly one hop ``x`` ``[B, 1, hop]`` with the state ``prev`` -> the frame's features
        ``[B, n_mels]`` and the new ``prev``, without the checks: for models that step one frame at a time,
        where each op's call costs more than its arithmetic. The same values as ``step`` (the window is
        zero-padded before the FFT instead of by it; the FFT, powers, filters and log are the same ops)."""
        b = x.shape[0]
        full = torch.cat([prev, x, x.new_zeros(b, 1, self.n_fft - self.window_length)], dim=-1)
        window, filters = self.padded_window, self.filters
        if window.dtype != x.dtype:
            window, filters = window.to(x.dtype), filters.to(x.dtype)
        spec = torch.fft.rfft(full.view(b, self.n_fft) * window)
        power = spec.real.square() + spec.imag.square()
        y = torch.mm(power, filters).clamp_min_(self.floor).log_()
        return y, full[..., self.hop_length:self.window_length]
