"""Causal speech enhancement: a fullband GRU predicting a bounded complex ratio mask.

The fullband branch of FullSubNet / Fast FullSubNet, sized for a hard per-step budget: every 16 ms
step is one STFT frame (512-point sqrt-Hann window, hop 256), its power-compressed magnitude goes
through a compact projection (over the current frame, or with ``context`` > 1 over that many frames up to it,
so the GRU sees how the spectrum moves) into a 2-layer GRU, and a projection back gives a complex ratio mask
(cIRM, as in FullSubNet) whose magnitude is bounded by ``tanh`` (DCCRN's "E" mask). The masked
spectrum is inverted by overlap-add. Few, wide ops keep PyTorch's per-op overhead within budget.

The output is delayed by one window minus one hop (256 samples) and the algorithmic latency is the window,
512 samples = 32 ms at 16 kHz. ``lookahead`` = L > 0 frames trades latency for context: the mask of frame t is
computed once frames t+1..t+L have been heard (a decoder over the GRU's outputs t..t+L), and the spectrum waits
L frames for it, L hops (16 ms each) more latency.

``filter_taps`` = N > 1 turns the mask of the lowest ``filter_bins`` bins into a deep filter (as DeepFilterNet
does): each of those bins of frame t is a complex combination of the same bin in frames t, t-1, .., t-N+1, each
coefficient bounded like the mask. A voice's low harmonics are closer than one 31 Hz bin, and the frames before
the current one let the filter tell a harmonic from a steady tone in the same bin; they are past frames, so the
latency stays the window's. The coefficients have to turn each past frame's phase onto the current one's, so
those bins' compressed complex spectrum (phase included) joins the magnitudes the encoder reads.
"""

from __future__ import annotations

import torch

from wavestream.streaming import AUDIO, GRU, ISTFT, STFT, CausalConv1d, State, StreamingModule

from .registry import register


class GRUMaskEnhancer(StreamingModule):
    sample_rate = 16000
    input_kind = output_kind = AUDIO

    def __init__(self, n_fft: int = 512, hop_length: int = 256, compress: float = 0.3, embed: int = 128,
                 hidden: int = 256, layers: int = 2, context: int = 1, lookahead: int = 0,
                 filter_bins: int = 0, filter_taps: int = 1):
        super().__init__()
        if not 0 < compress <= 1:
            raise ValueError(f"compress must be in (0, 1], got {compress}")
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
        self.n_fft, self.hop_length, self.compress, self.lookahead = n_fft, hop_length, compress, lookahead
        self.freqs = freqs = n_fft // 2 + 1
        if filter_taps < 1 or not 0 <= filter_bins <= freqs:
            raise ValueError(f"need filter_taps >= 1 and 0 <= filter_bins <= {freqs}, got {filter_taps}, {filter_bins}")
        if lookahead and filter_taps > 1:
            raise ValueError("filter_taps > 1 with a lookahead is not supported: use one or the other")
        # the deep filter's taps over past frames: none unless both are set
        self.filter_bins, self.past_taps = (filter_bins, filter_taps - 1) if filter_bins and filter_taps > 1 else (0, 0)
        self.stft = STFT(n_fft, hop_length, "sqrt_hann")
        # causal convs over frames: the encoder sees `context` frames (1: a per-frame linear map), the
        # decoder one plus the look-ahead; the GRU carries the longer temporal context
        self.encoder = CausalConv1d(freqs + 2 * self.filter_bins, embed, context)
        self.gru = GRU(embed, hidden, layers)
        self.decoder = CausalConv1d(hidden, 2 * freqs + 2 * self.past_taps * self.filter_bins, 1 + lookahead)
        self.istft = ISTFT(n_fft, hop_length, "sqrt_hann")
        self.hop = hop_length
        self.latency = n_fft - hop_length + lookahead * hop_length

    def own_state(self, batch, device, dtype) -> State:
        if self.past_taps:  # the filtered bins of the last frames (real and imaginary parts)
            return {"past": torch.zeros(batch, 2, self.filter_bins, self.past_taps, device=device, dtype=dtype)}
        if not self.lookahead:
            return {}
        # the spectrum frames heard but not yet masked (real and imaginary parts)
        return {"pending": torch.zeros(batch, 2, self.freqs, self.lookahead, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"enhance expects mono audio [batch, 1, time], got shape {tuple(x.shape)}")
        self.check_length(x)
        new_state: State = {}
        spec = self.step_child("stft", x, state, new_state)  # [B, 1, F, frames] complex
        re, im = spec.real[:, 0], spec.imag[:, 0]  # real arithmetic from here on (exports to ONNX)
        power = re.square() + im.square() + 1e-12
        features = power.pow(self.compress / 2)
        if self.past_taps:  # the filtered bins' phase too: X |X|^(compress - 1)
            scale = power[:, :self.filter_bins].pow((self.compress - 1) / 2)
            features = torch.cat([features, re[:, :self.filter_bins] * scale, im[:, :self.filter_bins] * scale], 1)
        h = self.step_child("encoder", features, state, new_state)
        h = self.step_child("gru", torch.relu(h), state, new_state)
        out = self.step_child("decoder", h, state, new_state)
        mask_re, mask_im = bounded(*out[:, :2 * self.freqs].chunk(2, dim=1))
        if self.lookahead:  # the masks are those of the frames `lookahead` back: pair them with those frames
            frames = with_held_frames("pending", re, im, state, new_state)
            re, im = frames[:, 0, :, :re.shape[-1]], frames[:, 1, :, :re.shape[-1]]
        out_re, out_im = re * mask_re - im * mask_im, re * mask_im + im * mask_re
        if self.past_taps:
            out_re, out_im = self._filter_past(out[:, 2 * self.freqs:], re, im, out_re, out_im, state, new_state)
        y = self.step_child("istft", torch.complex(out_re[:, None], out_im[:, None]), state, new_state)
        return y, new_state

    def _filter_past(self, coefficients: torch.Tensor, re: torch.Tensor, im: torch.Tensor, out_re: torch.Tensor,
                     out_im: torch.Tensor, state: State, new_state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the deep filter's taps over the past frames to the lowest ``filter_bins`` bins of the masked
        spectrum ``out_re, out_im [B, F, n]``: coefficients ``[B, 2 * past_taps * filter_bins, n]``."""
        bins, taps, n = self.filter_bins, self.past_taps, re.shape[-1]
        c_re, c_im = bounded(*coefficients.reshape(re.shape[0], 2, taps, bins, n).unbind(1))
        frames = with_held_frames("past", re[:, :bins], im[:, :bins], state, new_state)
        low_re, low_im = out_re[:, :bins], out_im[:, :bins]
        for k in range(1, taps + 1):  # tap k multiplies the frame k hops back
            x_re, x_im = frames[:, 0, :, taps - k:taps - k + n], frames[:, 1, :, taps - k:taps - k + n]
            low_re = low_re + x_re * c_re[:, k - 1] - x_im * c_im[:, k - 1]
            low_im = low_im + x_re * c_im[:, k - 1] + x_im * c_re[:, k - 1]
        return torch.cat([low_re, out_re[:, bins:]], dim=1), torch.cat([low_im, out_im[:, bins:]], dim=1)


def with_held_frames(key: str, re: torch.Tensor, im: torch.Tensor, state: State, new_state: State) -> torch.Tensor:
    """The spectrum frames held in ``state[key]`` ``[B, 2, F, L]`` followed by this call's ``re, im [B, F, n]``:
    ``[B, 2, F, L + n]``; the last L of them are held for the next call."""
    frames = torch.cat([state[key], torch.stack([re, im], 1)], dim=-1)
    new_state[key] = frames[..., re.shape[-1]:]
    return frames


def bounded(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A complex gain with magnitude tanh(|m|) < 1 and the phase of m (eps keeps the gradient finite at m = 0)."""
    norm = (re.square() + im.square() + 1e-8).sqrt()
    gain = torch.tanh(norm) / norm
    return re * gain, im * gain


@register("enhance", task="enhance",
          description="causal speech enhancement, 16 kHz, 32 ms latency (GRU + complex mask)")
def build_enhance(**config) -> GRUMaskEnhancer:
    return GRUMaskEnhancer(**config)
