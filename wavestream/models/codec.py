"""``codec``: our own streaming speech codec, 16 kHz, 1.5 / 3 / 6 kbps from one model.

The EnCodec / SoundStream family (``EncodecStreaming``: causal SEANet encoder, residual vector
quantizer, mirror SEANet decoder), sized to train on two CPU cores:

- 16 kHz mono, ratios 8, 5, 4, 2: 320 samples per frame, 50 frames/s;
- SEANet with 12 base filters (12 -> 192 channels), 64-dim latents, a one-layer skip LSTM in the decoder
  only (~1.2 M weights);
- RVQ of 12 codebooks x 1024 (10 bits): 500 bit/s per codebook, so 1.5, 3 and 6 kbps are the first
  3, 6 and 12 codebooks; quantizer dropout over exactly these three trains one model for all of them.

Codes are identical however a stream is cut into chunks, not just close: the encoder is convolutions
only, which give the same latents bit for bit for any chunking (an LSTM does not: its per-frame and
whole-sequence code paths round differently, ~3e-8, enough to flip a code at a near tie), and the
quantizer compares distances in float64. The decoder keeps its LSTM: audio only has to agree within
1e-5.

The bitrate is per stream (``params: {"bitrate": 3}``, a state entry, see ``EncodecStreaming``), so
streams at different bitrates share one instance and one batch; another value is refused. The modes
(``roundtrip``, ``encode``, ``decode``) are ``EncodecStreaming``'s. Algorithmic latency: one frame
(20 ms); nothing looks ahead.

``dead_code_threshold`` is far below EnCodec's 2.0 because our batches are small: a 16 x 1 s batch
has 800 frames for 1024 codes, so a code is used ~0.8 times per step on average, and a threshold
near that would restart most of a codebook at every step.
"""

from __future__ import annotations

from collections.abc import Sequence

from .encodec import EncodecStreaming
from .registry import register

BITRATES = (1.5, 3.0, 6.0)  # kbps


class SpeechCodec(EncodecStreaming):
    """``EncodecStreaming`` with the defaults of our 16 kHz speech codec (its own signature, so that the
    stream params' defaults shown by ``GET /v1/models`` are this model's)."""

    sample_rate = 16000

    def __init__(self, mode: str = "roundtrip", bitrate: float = 3.0, channels: int = 1, dimension: int = 64,
                 n_filters: int = 12, ratios: Sequence[int] = (8, 5, 4, 2), lstm_layers: int = 1, n_q: int = 12,
                 codebook_size: int = 1024, sample_rate: int = 16000, bitrates: Sequence[float] = BITRATES,
                 weight_norm: bool = False, dead_code_threshold: float = 0.1, encoder_lstm_layers: int = 0):
        super().__init__(mode=mode, bitrate=bitrate, channels=channels, dimension=dimension, n_filters=n_filters,
                         ratios=ratios, lstm_layers=lstm_layers, n_q=n_q, codebook_size=codebook_size,
                         sample_rate=sample_rate, bitrates=bitrates, weight_norm=weight_norm,
                         dead_code_threshold=dead_code_threshold, encoder_lstm_layers=encoder_lstm_layers)


@register("codec", task="codec",
          description="streaming speech codec, 16 kHz, 1.5/3/6 kbps per stream, 20 ms latency "
                      "(causal SEANet + residual VQ), modes roundtrip/encode/decode")
def build_codec(**config) -> SpeechCodec:
    return SpeechCodec(**config)
