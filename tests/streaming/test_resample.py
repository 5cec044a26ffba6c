import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.resample import StreamResampler, resample

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


@settings(max_examples=30, deadline=None)
@given(in_rate=st.sampled_from(RATES), out_rate=st.sampled_from(RATES), channels=st.integers(1, 2),
       sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=10),
       quality=st.sampled_from(["HQ", "VHQ", "LQ"]))
def test_chunked_is_bit_identical_to_one_shot(in_rate, out_rate, channels, sizes, quality):
    rng = np.random.default_rng(sum(sizes))
    x = rng.uniform(-1, 1, (sum(sizes), channels)).astype(np.float32)
    stream = StreamResampler(in_rate, out_rate, channels, quality)
    outs, pos = [], 0
    for n in sizes:
        outs.append(stream.process(x[pos:pos + n]))
        pos += n
    outs.append(stream.flush())
    y = np.concatenate(outs)
    expected = soxr.resample(x, in_rate, out_rate, quality=quality) if in_rate != out_rate else x
    assert y.dtype == np.float32 and y.shape == expected.shape
    assert np.array_equal(y, expected)
    assert np.array_equal(resample(x, in_rate, out_rate, quality), expected)


def test_reset_starts_a_fresh_identical_stream():
    x = np.random.default_rng(1).uniform(-1, 1, (5000, 1)).astype(np.float32)
    stream = StreamResampler(44100, 16000, 1)
    first = np.concatenate([stream.process(x), stream.flush()])
    with pytest.raises(ValueError, match="flushed"):
        stream.process(x)
    stream.reset()
    stream.process(x[:1234])
    stream.reset()  # mid-stream reset drops what was buffered
    second = np.concatenate([stream.process(x), stream.flush()])
    assert np.array_equal(first, second)


def test_identity_passthrough_copies():
    stream = StreamResampler(16000, 16000, 2)
    x = np.ones((10, 2), np.float32)
    y = stream.process(x)
    x[:] = 0
    assert y.sum() == 20 and stream.delay == 0.0 and stream.flush().shape == (0, 2)


def test_resampled_sine_keeps_its_frequency():
    t = np.arange(48000) / 48000
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)[:, None]
    y = resample(x, 48000, 16000)
    assert y.shape == (16000, 1)
    ref = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert np.abs(y[100:-100, 0] - ref[100:-100]).max() < 1e-3


@pytest.mark.parametrize("args", [(0, 16000, 1), (16000, -1, 1), (16000.5, 8000, 1), (16000, 8000, 0),
                                  (16000, 8000, 1, "best")])
def test_rejects_bad_config(args):
    with pytest.raises(ValueError):
        StreamResampler(*args)


@pytest.mark.parametrize("samples", [np.zeros((4, 1), np.float64), np.zeros(4, np.float32),
                                     np.zeros((4, 2), np.float32), np.zeros((4, 1), np.int16)])
def test_process_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        StreamResampler(48000, 16000, 1).process(samples)


@pytest.mark.parametrize("samples", [np.zeros((4, 1), np.float64), np.zeros(4, np.float32),
                                     np.zeros((1, 4, 1), np.float32), [[0.0]]])
def test_one_shot_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        resample(samples, 48000, 16000)
