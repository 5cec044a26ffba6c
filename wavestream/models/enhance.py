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
"""

from __future__ import annotations

import torch

from wavestream.streaming import AUDIO, GRU, ISTFT, STFT, CausalConv1d, State, StreamingModule

from .registry import register


class GRUMaskEnhancer(StreamingModule):
    sample_rate = 16000
    input_kind = output_kind = AUDIO

    def __init__(self, n_fft: int = 512, hop_length: int = 256, compress: float = 0.3, embed: int = 128,
                 hidden: int = 256, layers: int = 2, context: int = 1, lookahead: int = 0):
        super().__init__()
        if not 0 < compress <= 1:
            raise ValueError(f"compress must be in (0, 1], got {compress}")
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
        self.n_fft, self.hop_length, self.compress, self.lookahead = n_fft, hop_length, compress, lookahead
        self.freqs = freqs = n_fft // 2 + 1
        self.stft = STFT(n_fft, hop_length, "sqrt_hann")
        # causal convs over frames: the encoder sees `context` frames (1: a per-frame linear map), the
        # decoder one plus the look-ahead; the GRU carries the longer temporal context
        self.encoder = CausalConv1d(freqs, embed, context)
        self.gru = GRU(embed, hidden, layers)
        self.decoder = CausalConv1d(hidden, 2 * freqs, 1 + lookahead)
        self.istft = ISTFT(n_fft, hop_length, "sqrt_hann")
        self.hop = hop_length
        self.latency = n_fft - hop_length + lookahead * hop_length

    def own_state(self, batch, device, dtype) -> State:
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
        features = (re.square() + im.square() + 1e-12).pow(self.compress / 2)
        h = self.step_child("encoder", features, state, new_state)
        h = self.step_child("gru", torch.relu(h), state, new_state)
        mask_re, mask_im = self.step_child("decoder", h, state, new_state).chunk(2, dim=1)
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
