import numpy as np
import pytest

from wavestream.streaming.pcm import ENCODINGS, bytes_per_frame, decode_pcm, encode_pcm


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_round_trip(encoding, channels):
    rng = np.random.default_rng(channels)
    x = rng.uniform(-0.99, 0.99, (257, channels)).astype(np.float32)
    data = encode_pcm(x, encoding)
    assert len(data) == 257 * bytes_per_frame(encoding, channels)
    y = decode_pcm(data, encoding, channels)
    assert y.dtype == np.float32 and y.shape == x.shape
    tol = 0.5 / 32768 + 1e-7 if encoding == "pcm_s16le" else 0.0
    assert np.abs(y - x).max() <= tol


def test_s16_layout_is_little_endian_interleaved():
    x = np.array([[0.5, -0.5], [1.0, -1.0]], np.float32)
    data = encode_pcm(x, "pcm_s16le")
    assert np.frombuffer(data, "<i2").tolist() == [16384, -16384, 32767, -32768]
    assert decode_pcm(data, "pcm_s16le", 2)[0].tolist() == [0.5, -0.5]


def test_s16_clips_and_rounds():
    x = np.array([[2.0], [-3.0], [1.4 / 32768], [1.6 / 32768], [-1.6 / 32768]], np.float32)
    codes = np.frombuffer(encode_pcm(x, "pcm_s16le"), "<i2").tolist()
    assert codes == [32767, -32768, 1, 2, -2]


def test_f32_passes_values_beyond_unit_range():
    x = np.array([[1.5, -2.25]], np.float32)
    assert decode_pcm(encode_pcm(x, "pcm_f32le"), "pcm_f32le", 2).tolist() == x.tolist()


def test_decode_accepts_bytearray_and_memoryview():
    data = encode_pcm(np.zeros((4, 1), np.float32), "pcm_s16le")
    assert decode_pcm(bytearray(data), "pcm_s16le", 1).shape == (4, 1)
    assert decode_pcm(memoryview(data), "pcm_s16le", 1).shape == (4, 1)


@pytest.mark.parametrize("encoding,channels,n_bytes", [
    ("pcm_s16le", 1, 3), ("pcm_s16le", 2, 6), ("pcm_f32le", 1, 6), ("pcm_f32le", 2, 12),
])
def test_decode_rejects_partial_frames(encoding, channels, n_bytes):
    with pytest.raises(ValueError, match="whole number"):
        decode_pcm(b"\0" * n_bytes, encoding, channels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_rejects_non_finite_floats(bad):
    data = np.array([0.1, bad], "<f4").tobytes()
    with pytest.raises(ValueError, match="NaN or Inf"):
        decode_pcm(data, "pcm_f32le", 1)


def test_decode_empty():
    with pytest.raises(ValueError, match="empty"):
        decode_pcm(b"", "pcm_s16le", 1)
    assert decode_pcm(b"", "pcm_f32le", 2, allow_empty=True).shape == (0, 2)


@pytest.mark.parametrize("encoding,channels,data", [
    ("pcm_u8", 1, b"\0\0"), ("PCM_S16LE", 1, b"\0\0"), ("pcm_s16le", 0, b"\0\0"), ("pcm_s16le", -1, b"\0\0"),
    ("pcm_s16le", 1.0, b"\0\0"), ("pcm_s16le", 1, "text"), ("pcm_s16le", 1, [0, 0]),
])
def test_decode_rejects_bad_arguments(encoding, channels, data):
    with pytest.raises(ValueError):
        decode_pcm(data, encoding, channels)


@pytest.mark.parametrize("samples", [
    np.zeros((4, 1), np.int16), np.zeros((4, 1), np.float16), np.zeros(4, np.float32),
    np.zeros((1, 4, 1), np.float32), np.array([[0.0], [np.nan]], np.float32),
    np.array([[np.inf]], np.float64), [[0.0]],
])
def test_encode_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        encode_pcm(samples, "pcm_s16le")


def test_encode_rejects_unknown_encoding_and_allows_empty():
    with pytest.raises(ValueError, match="unknown PCM encoding"):
        encode_pcm(np.zeros((1, 1), np.float32), "mp3")
    assert encode_pcm(np.zeros((0, 2), np.float32), "pcm_f32le") == b""
