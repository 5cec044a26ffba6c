"""PCM codecs for the wire: little-endian signed 16-bit and 32-bit float, interleaved channels.

Decoded audio is always ``float32 [frames, channels]`` in [-1, 1] (f32 input may exceed that range;
it is passed through). Both directions validate strictly: a malformed payload is a ValueError with
a message a client can act on, never silently truncated or padded.
"""

from __future__ import annotations

import numpy as np

_SAMPLE_TYPES = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}
ENCODINGS = tuple(_SAMPLE_TYPES)
_S16_SCALE = 32768.0


def _sample_type(encoding: str) -> np.dtype:
    if encoding not in _SAMPLE_TYPES:
        raise ValueError(f"unknown PCM encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    return _SAMPLE_TYPES[encoding]


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")


def bytes_per_frame(encoding: str, channels: int) -> int:
    """Bytes of one frame (one sample of every channel)."""
    _check_channels(channels)
    return _sample_type(encoding).itemsize * channels


def decode_pcm(data: bytes | bytearray | memoryview, encoding: str, channels: int,
               allow_empty: bool = False) -> np.ndarray:
    """Interleaved PCM bytes -> ``float32 [frames, channels]``.

    Raises ValueError for an unknown encoding, a byte count that is not a whole number of frames,
    NaN/Inf in float input, or an empty payload unless ``allow_empty``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"PCM data must be bytes, got {type(data).__name__}")
    frame_bytes = bytes_per_frame(encoding, channels)
    sample_type = _sample_type(encoding)
    n = memoryview(data).nbytes
    if n == 0 and not allow_empty:
        raise ValueError("empty PCM payload")
    if n % frame_bytes:
        raise ValueError(f"{n} bytes is not a whole number of {encoding} frames of {channels} channel(s) "
                         f"({frame_bytes} bytes each)")
    samples = np.frombuffer(data, dtype=sample_type).reshape(-1, channels)
    if encoding == "pcm_s16le":
        return (samples.astype(np.float32) / _S16_SCALE)
    if not np.isfinite(samples).all():
        raise ValueError("pcm_f32le payload contains NaN or Inf samples")
    return samples.astype(np.float32)  # native byte order, writable copy


def encode_pcm(samples: np.ndarray, encoding: str) -> bytes:
    """``float [frames, channels]`` -> interleaved PCM bytes (s16: clipped to range and rounded).

    Raises ValueError for an unknown encoding, a non-float array, a shape other than 2-D, or
    NaN/Inf samples. An empty array encodes to ``b""``.
    """
    sample_type = _sample_type(encoding)
    if not isinstance(samples, np.ndarray):
        raise ValueError(f"samples must be a numpy array, got {type(samples).__name__}")
    if samples.dtype not in (np.float32, np.float64):
        raise ValueError(f"samples must be float32 or float64, got {samples.dtype}")
    if samples.ndim != 2:
        raise ValueError(f"samples must be 2-D [frames, channels], got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("samples contain NaN or Inf")
    if encoding == "pcm_s16le":
        scaled = np.rint(np.clip(samples * _S16_SCALE, -_S16_SCALE, _S16_SCALE - 1))
        return scaled.astype(sample_type).tobytes()
    return samples.astype(sample_type).tobytes()
