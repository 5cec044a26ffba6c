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

``subband`` = H > 0 adds a per-bin head (the subband half of FullSubNet, without its per-bin recurrence): every
frequency bin refines its own mask from what the fullband GRU proposed and from local evidence the 128-wide
projection blurs: its signal-to-floor ratio and its neighbours' (against a per-bin noise floor tracked with a
fast fall and a slow rise, state of its own), the floor's level and the bin's frequency. One small MLP shared by
all bins, so stationary hums and tones, narrow in frequency, can be notched where they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wavestream.streaming import AUDIO, GRU, ISTFT, STFT, CausalConv1d, State, StreamingModule

from .registry import register

# the per-bin head's inputs: the fullband mask (real, imaginary), the bin's signal-to-floor ratio (log) with its
# lower and upper neighbours', the floor's level (log) and the bin's place on the frequency axis (0..1)
SUBBAND_FEATURES = ("mask_re", "mask_im", "snr_below", "snr", "snr_above", "floor", "position")
FLOOR_UNSET = 1e4  # above any compressed magnitude (|X|^0.3 of a full-scale bin is about 5)
FLOOR_EPS = math.exp(-10)


class GRUMaskEnhancer(StreamingModule):
    sample_rate = 16000
    input_kind = output_kind = AUDIO

    def __init__(self, n_fft: int = 512, hop_length: int = 256, compress: float = 0.3, embed: int = 128,
                 hidden: int = 256, layers: int = 2, context: int = 1, lookahead: int = 0, subband: int = 0,
                 floor_rise: float = 0.01):
        super().__init__()
        if not 0 < compress <= 1:
            raise ValueError(f"compress must be in (0, 1], got {compress}")
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
        if subband < 0 or (subband and lookahead):
            raise ValueError(f"subband must be >= 0 and needs lookahead 0, got {subband} with lookahead {lookahead}")
        self.n_fft, self.hop_length, self.compress, self.lookahead = n_fft, hop_length, compress, lookahead
        self.freqs = freqs = n_fft // 2 + 1
        self.stft = STFT(n_fft, hop_length, "sqrt_hann")
        # causal convs over frames: the encoder sees `context` frames (1: a per-frame linear map), the
        # decoder one plus the look-ahead; the GRU carries the longer temporal context
        self.encoder = CausalConv1d(freqs, embed, context)
        self.gru = GRU(embed, hidden, layers)
        self.decoder = CausalConv1d(hidden, 2 * freqs, 1 + lookahead)
        self.istft = ISTFT(n_fft, hop_length, "sqrt_hann")
        self.subband, self.floor_rise = subband, floor_rise
        if subband:
            self.subband_in = nn.Linear(len(SUBBAND_FEATURES), subband)
            self.subband_out = nn.Linear(subband, 2)
            # zero: a new head leaves the fullband mask as it is, so a fine-tune starts from the given model
            nn.init.zeros_(self.subband_out.weight)
            nn.init.zeros_(self.subband_out.bias)
            self.register_buffer("bin_position", torch.linspace(0, 1, freqs)[:, None], persistent=False)
        self.hop = hop_length
        self.latency = n_fft - hop_length + lookahead * hop_length

    def own_state(self, batch, device, dtype) -> State:
        state: State = {}
        if self.lookahead:  # the spectrum frames heard but not yet masked (real and imaginary parts)
            state["pending"] = torch.zeros(batch, 2, self.freqs, self.lookahead, device=device, dtype=dtype)
        if self.subband:  # each bin's noise floor; "unset" is far above any level, so the first frame sets it
            state["floor"] = torch.full((batch, self.freqs), FLOOR_UNSET, device=device, dtype=dtype)
        return state

    def refine_mask(self, features, mask_re, mask_im, state: State, new_state: State):
        """The per-bin head: a correction to each bin's (unbounded) mask from that bin's local evidence."""
        floor, floors = state["floor"], []
        for frame in features.unbind(-1):  # fast fall to a quieter frame, slow rise towards a louder one
            floor = torch.minimum(frame, floor + self.floor_rise * (frame - floor))
            floors.append(floor)
        new_state["floor"] = floor
        floors = torch.stack(floors, -1)  # [B, F, frames], compressed magnitudes like `features`
        snr = (features + FLOOR_EPS).log() - (floors + FLOOR_EPS).log()
        edges = torch.cat([snr[:, :1], snr, snr[:, -1:]], dim=1)  # each end bin is its own missing neighbour
        position = self.bin_position.expand_as(snr)
        local = torch.stack([mask_re, mask_im, edges[:, :-2], snr, edges[:, 2:], (floors + FLOOR_EPS).log(),
                             position], dim=-1)  # [B, F, frames, SUBBAND_FEATURES]
        delta = self.subband_out(torch.relu(self.subband_in(local)))
        return mask_re + delta[..., 0], mask_im + delta[..., 1]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"enhance expects mono audio [batch, 1, time], got shape {tuple(x.shape)}")
        self.check_length(x)
        new_state: State = {}
        spec = self.step_child("stft", x, state, new_state)  # [B, 1, F, frames] complex
        re, im = spec.real[:, 0], spec.imag[:, 0]  # real arithmetic from here on (exports to ONNX)
        features = (re.square() + im.square() + 1e-12).pow(self.compress / 2)
        h = self.step_child("encoder", features, state, new_state)
        h = self.step_child("gru", torch.relu(h), state, new_state)
        mask_re, mask_im = self.step_child("decoder", h, state, new_state).chunk(2, dim=1)
        if self.subband:
            mask_re, mask_im = self.refine_mask(features, mask_re, mask_im, state, new_state)
        # bounded mask: magnitude tanh(|m|) < 1, phase of m (eps keeps the gradient finite at m = 0)
        norm = (mask_re.square() + mask_im.square() + 1e-8).sqrt()
        gain = torch.tanh(norm) / norm
        mask_re, mask_im = mask_re * gain, mask_im * gain
        if self.lookahead:  # the masks are those of the frames `lookahead` back: pair them with those frames
            frames = torch.cat([state["pending"], torch.stack([re, im], 1)], dim=-1)
            new_state["pending"] = frames[..., frames.shape[-1] - self.lookahead:]
            re, im = frames[:, 0, :, :re.shape[-1]], frames[:, 1, :, :re.shape[-1]]
        enhanced = torch.complex((re * mask_re - im * mask_im)[:, None], (re * mask_im + im * mask_re)[:, None])
        y = self.step_child("istft", enhanced, state, new_state)
        return y, new_state


@register("enhance", task="enhance",
          description="causal speech enhancement, 16 kHz, 32 ms latency (GRU + complex mask)")
def build_enhance(**config) -> GRUMaskEnhancer:
    return GRUMaskEnhancer(**config)
