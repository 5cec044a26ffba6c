"""Sample-rate conversion with soxr: a streaming resampler and a one-shot helper.

``StreamResampler`` wraps ``soxr.ResampleStream``; the concatenation of its outputs over any
partition of the input, followed by ``flush()``, is bit-identical to one-shot ``resample`` of the
whole signal (soxr compensates its filter delay in both). Equal rates pass samples through.
"""

from __future__ import annotations

import numpy as np
import soxr

from .framing import check_samples

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _check_rate(rate: int, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate < 1:
        raise ValueError(f"{name} must be a positive integer in Hz, got {rate!r}")


def _check_quality(quality: str) -> None:
    if quality not in QUALITIES:
        raise ValueError(f"unknown resampling quality {quality!r}; choose one of {', '.join(QUALITIES)}")


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ") -> np.ndarray:
    """One-shot resampling of ``float32 [n, channels]``."""
    _check_rate(in_rate, "in_rate")
    _check_rate(out_rate, "out_rate")
    _check_quality(quality)
    if not isinstance(samples, np.ndarray) or samples.ndim != 2:
        raise ValueError("samples must be a 2-D numpy array [frames, channels]")
    check_samples(samples, samples.shape[1])
    if in_rate == out_rate:
        return samples.copy()
    return soxr.resample(np.ascontiguousarray(samples), in_rate, out_rate, quality=quality)


class StreamResampler:
    """Streaming ``in_rate -> out_rate`` conversion of ``float32 [n, channels]`` pieces.

    ``process`` returns what is ready (soxr holds back its filter delay); ``flush`` returns the
    rest and ends the stream; ``reset`` starts a new one.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "HQ"):
        _check_rate(in_rate, "in_rate")
        _check_rate(out_rate, "out_rate")
        _check_quality(quality)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.in_rate, self.out_rate, self.channels, self.quality = int(in_rate), int(out_rate), channels, quality
        self.identity = self.in_rate == self.out_rate
        self._stream = None if self.identity else soxr.ResampleStream(
            self.in_rate, self.out_rate, channels, dtype="float32", quality=quality)
        self._flushed = False

    @property
    def delay(self) -> float:
        """Output samples currently held back by the filter (0 for a passthrough)."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def process(self, samples: np.ndarray) -> np.ndarray:
        check_samples(samples, self.channels)
        if self._flushed:
            raise ValueError("resampler was flushed; call reset() before feeding a new stream")
        if self._stream is None:
            return samples.copy()
        return self._stream.resample_chunk(np.ascontiguousarray(samples))

    def flush(self) -> np.ndarray:
        if self._flushed:
            raise ValueError("resampler was already flushed; call reset() before feeding a new stream")
        self._flushed = True
        empty = np.zeros((0, self.channels), np.float32)
        if self._stream is None:
            return empty
        return self._stream.resample_chunk(empty, last=True)

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()
        self._flushed = False
