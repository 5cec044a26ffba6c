"""Causal STFT and inverse STFT with explicit state (no centre padding, left context only).

Frame ``k`` of the STFT covers input samples ``[(k + 1) * hop - n_fft, (k + 1) * hop)``: it is
complete as soon as its last hop of samples has arrived, and the state is the ``n_fft - hop``
samples before it. The inverse STFT overlap-adds windowed frames; its state is the partial sums
of the ``n_fft - hop`` samples not complete yet. ISTFT(STFT(x)) is ``x`` delayed by ``n_fft - hop``.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

from .module import AUDIO, FEATURES, StreamingModule
from .state import State

WINDOWS = ("sqrt_hann", "hann")


def make_window(name: str, n_fft: int) -> torch.Tensor:
    """Periodic analysis (= synthesis) window of length ``n_fft``."""
    if name not in WINDOWS:
        raise ValueError(f"unknown window {name!r}; choose one of {WINDOWS}")
    hann = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    return hann.sqrt() if name == "sqrt_hann" else hann


def window_square_sum(window: torch.Tensor, hop: int) -> torch.Tensor:
    """Sum of squared windows of all frames overlapping an output sample, by position mod hop."""
    n_fft = window.shape[0]
    padded = F.pad(window.square(), (0, -n_fft % hop))
    return padded.reshape(-1, hop).sum(0)


class _STFTBase(StreamingModule):
    def __init__(self, n_fft: int, hop_length: int, window: str = "sqrt_hann", channels: int = 1):
        super().__init__()
        self.channels = channels
        if not 0 < hop_length <= n_fft:
            raise ValueError(f"need 0 < hop_length <= n_fft, got hop_length={hop_length}, n_fft={n_fft}")
        self.n_fft, self.hop_length, self.n_freqs = n_fft, hop_length, n_fft // 2 + 1
        win = make_window(window, n_fft)
        wss = window_square_sum(win, hop_length)
        if wss.min() < 1e-6:
            raise ValueError(f"window {window!r} with n_fft={n_fft}, hop_length={hop_length} leaves samples "
                             "uncovered (window-square sum ~ 0); use more overlap")
        # buffers, not parameters, and not in the state_dict: they follow from the config
        self.register_buffer("window", win.float(), persistent=False)
        self.register_buffer("inv_wss", (1 / wss).float(), persistent=False)
        self.window_name = window

    def check_channels(self, x: torch.Tensor) -> None:
        if x.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__} was built for {self.channels} channel(s), got {x.shape[1]}")


class STFT(_STFTBase):
    """Audio ``[B, C, T]`` -> complex spectrum ``[B, C, n_fft // 2 + 1, T / hop_length]``."""

    input_kind, output_kind = AUDIO, FEATURES

    def __init__(self, n_fft: int, hop_length: int, window: str = "sqrt_hann", channels: int = 1):
        super().__init__(n_fft, hop_length, window, channels)
        self.hop = hop_length
        self.out_per_in = Fraction(1, hop_length)

    def own_state(self, batch, device, dtype) -> State:
        return {"prev": torch.zeros(batch, self.channels, self.n_fft - self.hop_length, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3:
            raise ValueError(f"STFT expects audio [batch, channels, time], got shape {tuple(x.shape)}")
        self.check_length(x)
        self.check_channels(x)
        if not x.shape[-1]:  # an empty chunk: no frame, state unchanged (unfold/FFT reject empty input)
            return torch.zeros(*x.shape[:2], self.n_freqs, 0, dtype=x.dtype.to_complex()), {"prev": state["prev"]}
        full = torch.cat([state["prev"], x], dim=-1)
        frames = full.unfold(-1, self.n_fft, self.hop_length)  # [B, C, frames, n_fft]
        spec = torch.fft.rfft(frames * self.window.to(x.dtype), dim=-1)
        return spec.transpose(-1, -2), {"prev": full[..., full.shape[-1] - (self.n_fft - self.hop_length):]}


class ISTFT(_STFTBase):
    """Complex spectrum ``[B, C, n_fft // 2 + 1, frames]`` -> audio ``[B, C, frames * hop_length]``.

    Weighted overlap-add normalized by the window-square sum, so that ``ISTFT(STFT(x))`` equals ``x``
    delayed by ``n_fft - hop_length`` samples. ``hop`` is one frame (the input unit).
    """

    input_kind, output_kind = FEATURES, AUDIO

    def __init__(self, n_fft: int, hop_length: int, window: str = "sqrt_hann", channels: int = 1):
        super().__init__(n_fft, hop_length, window, channels)
        self.hop = 1
        self.out_per_in = Fraction(hop_length)

    def own_state(self, batch, device, dtype) -> State:
        dtype = dtype.to_real()  # the input is complex, the tail is real audio
        return {"tail": torch.zeros(batch, self.channels, self.n_fft - self.hop_length, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 4 or x.shape[2] != self.n_freqs:
            raise ValueError(f"ISTFT expects a spectrum [batch, channels, {self.n_freqs}, frames], "
                             f"got shape {tuple(x.shape)}")
        b, c, _, n = x.shape
        self.check_channels(x)
        tail = state["tail"]
        if not n:
            return tail.new_zeros(b, c, 0), {"tail": tail}
        frames = torch.fft.irfft(x.transpose(-1, -2), n=self.n_fft, dim=-1)  # [B, C, n, n_fft]
        frames = frames * self.window.to(frames.dtype)
        # overlap-add: frame k lands at [k * hop, k * hop + n_fft) of this call's output. Cut each
        # (zero-padded) frame into `blocks` pieces of one hop; piece r of frame k goes to hop k + r.
        # One frame overlaps nothing: it is its own sum (the same values; the zero buffer and the additions
        # into it were ~10 of a one-frame step's ~15 small ops)
        hop, keep = self.hop_length, tail.shape[-1]
        if n == 1:
            ola = frames.view(b, c, self.n_fft)
        else:
            blocks = -(-self.n_fft // hop)
            pieces = F.pad(frames, (0, blocks * hop - self.n_fft)) if blocks * hop > self.n_fft else frames
            pieces = pieces.reshape(b, c, n, blocks, hop)
            ola = frames.new_zeros(b, c, n + blocks - 1, hop)
            for r in range(blocks):
                ola[:, :, r:r + n] += pieces[:, :, :, r]
            ola = ola.view(b, c, -1)
        ola[..., :keep] += tail
        done = n * hop
        y = (ola[..., :done].view(b, c, n, hop) * self.inv_wss.to(ola.dtype)).view(b, c, done)
        return y, {"tail": ola[..., done:done + keep]}


