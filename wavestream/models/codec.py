"""``codec``: our own streaming speech codec, 16 kHz, 1.5 / 3 / 6 kbps from one model, 40 ms latency.

A frequency-domain codec in the manner of FunCodec's FreqCodec, with SoundStream / EnCodec's residual
vector quantizer, sized to train on two CPU cores (~1.6 M weights):

- encoder: a causal STFT (640-sample sqrt-Hann window, hop 320: 50 frames/s), the power-compressed
  complex spectrum as real and imaginary channels, causal convs over frames -> 64-dim latents;
- RVQ of 12 codebooks x 1024 (10 bits): 500 bit/s per codebook, so 1.5, 3 and 6 kbps are the first
  3, 6 and 12 codebooks; quantizer dropout over exactly these three trains one model for all of them;
- decoder: causal convs and a skip GRU over frames, a log magnitude and a phase per bin (as in
  Vocos), inverse STFT by overlap-add. With ``phase="vocoder"`` the decoder predicts log magnitudes
  only and a causal phase vocoder gives the phase (issue 9: a phase predicted per frame came out random,
  and the overlap-add of incoherent frames interferes).

Why not the SEANet waveform codec (``EncodecStreaming``, which runs the official EnCodec weights):
a measured pilot fitting one batch of 8 x 1 s with the same losses, one thread
(``benchmarks/codec_pilot.py``), had the waveform codec (12 filters, 1.25 M weights) at a multi-scale
mel loss of 2.83 after 100 steps, this one at 1.39, in 0.42 of the time a step; a first 450-step
waveform run on the corpus never left the plateau of a quiet average spectrum (see the model card's
``choices``).

Codes do not depend on how a stream is cut. The STFT gives the same spectrum bit for bit for any
chunking and the encoder has no recurrent layer, but float32 convolutions (oneDNN) round differently
for chunks of different lengths: the shipped encoder's float32 latents differ by up to ~5e-6 between
a chunked and a whole-signal run of real speech, enough to flip a code at a near tie. So streaming
(``step``, and ``forward``, a stream from a zero state) runs the encoder and the code search in
float64 (``RVQCodec.float64_encoder``): latents then differ by at most ~1e-14 across chunkings
(measured), ~1e8 times less, and the codes of real speech cut into any pieces, even at a near tie,
equal a one-shot encoding's at every bitrate (tests/models/test_codec.py). Cost, one thread: none
for 20 ms steps (encode RTF 0.024 -> 0.021 at 1.5 kbps, measured side by side; the float64 convs run
as matrix products, which skip oneDNN's per-call setup), ~1.5x for long chunks (10 s in one call:
RTF 0.003 -> 0.005). Training calls ``encoder`` and ``quantizer.quantize`` directly: float32,
unchanged. A vocoder decoder streams in float64 too (``RVQCodec.float64_decoder``): its phase adds up
over the whole stream and its peak picking compares bins, so chunking-dependent float32 rounding would
drift it; an absolute-phase decoder keeps float32 (its audio only has to agree within 1e-5).

The bitrate is per stream (``params: {"bitrate": 3}``, a state entry, see ``RVQCodec``), so streams at
different bitrates share one instance and one batch; another value is refused. The modes
(``roundtrip``, ``encode``, ``decode``) are ``RVQCodec``'s. Algorithmic latency: one frame (20 ms)
to fill a hop, plus the inverse STFT's overlap (20 ms): 40 ms; nothing looks ahead.

``dead_code_threshold`` is far below EnCodec's 2.0 because our batches are small: a 16 x 2 s batch
has 1600 frames for 1024 codes, so a code is used ~1.6 times per step on average.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from wavestream.streaming import AUDIO, FEATURES, GRU, ISTFT, STFT, CausalConv1d, PhaseVocoder, State, StreamingModule
from wavestream.streaming.seanet import ResidualUnit

from .encodec import RVQCodec
from .registry import register

BITRATES = (1.5, 3.0, 6.0)  # kbps
PHASES = ("absolute", "vocoder")  # how the decoder makes each bin's phase (SpectralDecoder)
INITIAL_LOG_MAGNITUDE = -4.0
MAX_LOG_MAGNITUDE = 8.0  # e^8 ~ 3000: far above any real bin of a [-1, 1] signal


class SpectralEncoder(StreamingModule):
    """Audio ``[B, 1, n * hop]`` -> latents ``[B, dimension, n]``: a causal STFT frame (window ``n_fft``
    ending at the frame's last sample), its power-compressed complex spectrum (``|X|^compress`` with
    X's phase, as real and imaginary channels), then causal convs over frames.

    The input and output convs have two taps, not one: a 1x1 conv on a one-frame chunk runs as a matrix
    product (``CausalConv1d``), which rounds differently again from the convolution of a longer chunk.

    ``fine_analysis``: a second causal STFT (window, hop), its hop dividing the frame, whose compressed
    magnitudes join the input, the frame's subframes side by side. The 640 / 320 frame holds all of the
    signal, but the decoder synthesizes finer frames (480 / 160), and reading their magnitudes out of a
    coarser complex spectrum costs the convs capacity; this hands them over directly."""

    input_kind, output_kind = AUDIO, FEATURES

    def __init__(self, n_fft: int, hop: int, dimension: int, hidden: int, blocks: int, compress: float,
                 fine_analysis: tuple[int, int] | None = None):
        super().__init__()
        self.channels, self.compress = 1, compress
        self.stft = STFT(n_fft, hop, "sqrt_hann")
        channels, self.subframes = 2 * self.stft.n_freqs, 0
        if fine_analysis:
            fine_fft, fine_hop = fine_analysis
            if hop % fine_hop:
                raise ValueError(f"the fine analysis hop must divide the frame of {hop} samples, got {fine_hop}")
            self.fine_stft = STFT(fine_fft, fine_hop, "sqrt_hann")
            self.subframes = hop // fine_hop
            channels += self.subframes * self.fine_stft.n_freqs
        self.input_conv = CausalConv1d(channels, hidden, 2)
        self.blocks = nn.ModuleList(ResidualUnit(hidden, dilation=2 ** j, conv_shortcut=False) for j in range(blocks))
        self.output_conv = CausalConv1d(hidden, dimension, 2)
        self.hop, self.out_per_in = hop, Fraction(1, hop)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        spec = self.step_child("stft", x, state, new_state)[:, 0]  # [B, F, n] complex
        re, im = spec.real, spec.imag
        scale = (re.square() + im.square() + 1e-12).pow((self.compress - 1) / 2)
        features = [re * scale, im * scale]
        if self.subframes:  # [B, F, n * subframes] -> [B, subframes * F, n], a frame's subframes in time order
            fine = self.step_child("fine_stft", x, state, new_state)[:, 0]
            magnitude = (fine.real.square() + fine.imag.square() + 1e-12).pow(self.compress / 2)
            b, f, m = magnitude.shape
            features.append(magnitude.view(b, f, m // self.subframes, self.subframes).permute(0, 3, 1, 2)
                            .reshape(b, self.subframes * f, m // self.subframes))
        h = self.step_child("input_conv", torch.cat(features, dim=1), state, new_state)
        for j in range(len(self.blocks)):
            h = self.step_child(f"blocks.{j}", h, state, new_state)
        return self.step_child("output_conv", F.elu(h), state, new_state), new_state


class SpectralDecoder(StreamingModule):
    """Latents ``[B, dimension, n]`` -> audio ``[B, 1, n * hop]``, lagging the encoder's input by
    ``n_fft - hop`` samples (the inverse STFT's overlap): causal convs and a skip GRU over frames,
    then per frame a log magnitude and a phase per bin, inverse STFT.

    ``phase="absolute"``: each frame's phase angle per bin, as in Vocos. ``phase="vocoder"``: log
    magnitudes only; a causal phase vocoder (``PhaseVocoder``) gives the phase from them, frame by frame,
    with no look-ahead.

    ``synthesis``: the inverse STFT's (window, hop), by default the encoder's; a hop that divides the
    frame gives each code frame several synthesis frames (the output conv predicts them side by side).
    More overlapping frames let the vocoder's phase follow the signal much better, and a shorter window
    keeps the latency: (480, 160) lags by 320 samples, as (640, 320) does."""

    input_kind, output_kind = FEATURES, AUDIO

    def __init__(self, n_fft: int, hop: int, dimension: int, hidden: int, blocks: int, gru_layers: int,
                 phase: str = "absolute", synthesis: tuple[int, int] | None = None):
        super().__init__()
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        synthesis_fft, synthesis_hop = synthesis or (n_fft, hop)
        if hop % synthesis_hop:
            raise ValueError(f"the synthesis hop must divide the frame of {hop} samples, got {synthesis_hop}")
        self.phase, self.subframes = phase, hop // synthesis_hop
        self.input_conv = CausalConv1d(dimension, hidden, 3)
        self.blocks = nn.ModuleList(ResidualUnit(hidden, dilation=2 ** j, conv_shortcut=False) for j in range(blocks))
        self.gru = GRU(hidden, hidden, gru_layers)
        self.istft = ISTFT(synthesis_fft, synthesis_hop, "sqrt_hann")
        n_freqs = self.istft.n_freqs
        # per synthesis frame, absolute: the log magnitudes and the angles; vocoder: the log magnitudes
        self.values = (2 if phase == "absolute" else 1) * n_freqs
        self.output_conv = CausalConv1d(hidden, self.subframes * self.values, 1)
        with torch.no_grad():  # start near silence (bins of e^-4), not at a loud white noise of e^0
            for j in range(self.subframes):
                self.output_conv.conv.bias[j * self.values:j * self.values + n_freqs].fill_(INITIAL_LOG_MAGNITUDE)
        if phase == "vocoder":
            self.vocoder = PhaseVocoder(synthesis_fft, synthesis_hop)
        self.hop, self.out_per_in = 1, Fraction(hop)
        self.delay = synthesis_fft - synthesis_hop

    def _spectrum(self, x: torch.Tensor, state: State, new_state: State) -> torch.Tensor:
        """The complex spectrum ``[B, 1, F, n * subframes]`` the inverse STFT turns into audio (with the
        encoder's frames, frame k predicts the encoder's STFT frame k)."""
        h = self.step_child("input_conv", x, state, new_state)
        for j in range(len(self.blocks)):
            h = self.step_child(f"blocks.{j}", h, state, new_state)
        h = h + self.step_child("gru", h, state, new_state)
        out = self.step_child("output_conv", F.elu(h), state, new_state)
        if self.subframes > 1:  # [B, subframes * values, n] -> [B, values, n * subframes], in time order
            b, _, n = out.shape
            out = out.view(b, self.subframes, self.values, n).permute(0, 2, 3, 1).reshape(b, self.values, -1)
        if self.phase == "absolute":
            log_mag, angle = out.chunk(2, dim=1)
        else:
            mag = out.clamp(max=MAX_LOG_MAGNITUDE).exp()
            return self.step_child("vocoder", mag[:, None], state, new_state)
        mag = log_mag.clamp(max=MAX_LOG_MAGNITUDE).exp()  # the clamp keeps an untrained decoder finite
        return torch.complex(mag * torch.cos(angle), mag * torch.sin(angle))[:, None]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = {}
        spec = self._spectrum(x, state, new_state)
        return self.step_child("istft", spec, state, new_state), new_state

    def forward_with_spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` (a stream from a zero state) that also returns the complex spectrum it synthesized,
        ``[B, 1, F, n * subframes]`` in the synthesis frames: what the training's spectrum-level losses look
        at (the audio is ``forward``'s, bit for bit)."""
        state, new_state = self.init_state(x.shape[0], x.device, x.dtype), {}
        spec = self._spectrum(x, state, new_state)
        return self.step_child("istft", spec, state, new_state), spec


class SpectralCodec(RVQCodec):
    """The shipped ``codec``: ``SpectralEncoder`` -> RVQ -> ``SpectralDecoder`` at 16 kHz, 50 frames/s."""

    sample_rate = 16000
    float64_encoder = True  # codes identical however a stream is cut (module docstring)

    def __init__(self, mode: str = "roundtrip", bitrate: float = 3.0, n_fft: int = 640, hop: int = 320,
                 dimension: int = 64, hidden: int = 256, encoder_blocks: int = 2, decoder_blocks: int = 3,
                 gru_layers: int = 1, compress: float = 0.3, n_q: int = 12, codebook_size: int = 1024,
                 sample_rate: int = 16000, bitrates: Sequence[float] = BITRATES, dead_code_threshold: float = 0.1,
                 phase: str = "absolute", synthesis: Sequence[int] | None = None, decoder_hidden: int | None = None,
                 fine_analysis: Sequence[int] | None = None):
        encoder = SpectralEncoder(n_fft, hop, dimension, hidden, encoder_blocks, compress,  # first: the seed's draws
                                  tuple(fine_analysis) if fine_analysis else None)
        # the decoder may be wider than the encoder: streaming encodes in float64, so its width costs more there
        decoder = SpectralDecoder(n_fft, hop, dimension, decoder_hidden or hidden, decoder_blocks, gru_layers, phase,
                                  tuple(synthesis) if synthesis else None)
        super().__init__(encoder, decoder, mode=mode,
                         bitrate=bitrate, dimension=dimension, n_q=n_q, codebook_size=codebook_size,
                         sample_rate=sample_rate, bitrates=bitrates, dead_code_threshold=dead_code_threshold,
                         decoder_delay=decoder.delay)
        # the vocoder's phase adds up over the whole stream, and its peak picking is a comparison: float32
        # rounding that differs with the chunking (~1e-7) would drift it, and a near tie decided the other
        # way would move a phase for good
        self.float64_decoder = phase != "absolute"


@register("codec", task="codec",
          description="streaming speech codec, 16 kHz, 1.5/3/6 kbps per stream, 40 ms latency "
                      "(causal STFT + convs, residual VQ, convs + GRU, inverse STFT), modes roundtrip/encode/decode")
def build_codec(**config) -> SpectralCodec:
    return SpectralCodec(**config)
