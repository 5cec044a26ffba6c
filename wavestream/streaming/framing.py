"""Framer: audio pieces of any size in, whole hop-multiples out (the model's step unit)."""

from __future__ import annotations

import numpy as np


def check_samples(samples: np.ndarray, channels: int, name: str = "samples") -> None:
    """ValueError unless ``samples`` is ``float32 [n, channels]`` (n may be 0)."""
    if not isinstance(samples, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(samples).__name__}")
    if samples.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {samples.dtype}")
    if samples.ndim != 2 or samples.shape[1] != channels:
        raise ValueError(f"{name} must have shape [frames, {channels}], got {samples.shape}")


class Framer:
    """Buffers samples and releases them in multiples of ``hop`` frames.

    ``push`` returns every complete hop available (possibly none); ``flush`` zero-pads the
    remainder to one hop and reports how many of its frames are real. Counters:
    ``frames_in`` (pushed), ``frames_out`` (released, padding included), ``pending``.
    """

    def __init__(self, hop: int, channels: int):
        if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
            raise ValueError(f"hop must be a positive integer, got {hop!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.hop, self.channels = hop, channels
        self.frames_in = self.frames_out = 0
        self._buffer = np.zeros((0, channels), np.float32)

    @property
    def pending(self) -> int:
        """Frames held back because they do not fill a hop yet."""
        return len(self._buffer)

    def push(self, samples: np.ndarray) -> np.ndarray:
        check_samples(samples, self.channels)
        self.frames_in += len(samples)
        buffer = np.concatenate([self._buffer, samples]) if len(self._buffer) else samples
        ready = len(buffer) - len(buffer) % self.hop
        self._buffer = buffer[ready:].copy()  # copy: never keep a view on the caller's array
        self.frames_out += ready
        return buffer[:ready].copy() if buffer is samples else buffer[:ready]

    def flush(self) -> tuple[np.ndarray, int]:
        """The held-back frames zero-padded to one hop (empty if none) and the count of real frames."""
        n_valid = len(self._buffer)
        if not n_valid:
            return np.zeros((0, self.channels), np.float32), 0
        out = np.zeros((self.hop, self.channels), np.float32)
        out[:n_valid] = self._buffer
        self._buffer = self._buffer[:0]
        self.frames_out += self.hop
        return out, n_valid

    def reset(self) -> None:
        self.frames_in = self.frames_out = 0
        self._buffer = self._buffer[:0]
