import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.resample import StreamResampler, _sinc_table, half_width, resample

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


@settings(max_examples=30, deadline=None)
@given(in_rate=st.sampled_from(RATES), out_rate=st.sampled_from(RATES), channels=st.integers(1, 2),
       sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=10),
       quality=st.sampled_from(["LL", "HQ", "VHQ", "LQ"]))
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
    if in_rate == out_rate:
        expected = x
    elif quality == "LL":  # ours: one piece, then the flush
        whole = StreamResampler(in_rate, out_rate, channels, quality)
        expected = np.concatenate([whole.process(x), whole.flush()])
        assert len(expected) == -(-len(x) * out_rate // in_rate)  # every output time before the end
    else:
        expected = soxr.resample(x, in_rate, out_rate, quality=quality)
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


@settings(max_examples=20, deadline=None)
@given(in_rate=st.sampled_from(RATES + [44101]), out_rate=st.sampled_from([16000, 8000]),
       sizes=st.lists(st.integers(0, 700), min_size=1, max_size=30))
def test_low_latency_ready_counts_what_process_returns(in_rate, out_rate, sizes):
    """``ready`` (what stream_latency uses) is exactly what the pieces returned, and output sample k
    leaves as soon as the input reaches the filter's half-width past k / out_rate."""
    stream = StreamResampler(in_rate, out_rate, 1, "LL")
    x = np.zeros((sum(sizes), 1), np.float32)
    counts, total, pos = [0], 0, 0
    for n in sizes:
        total += len(stream.process(x[pos:pos + n]))
        pos += n
        counts.append(total)
    ends = np.cumsum([0, *sizes])
    assert np.array_equal(stream.ready(ends), counts)
    ready = stream.ready(np.arange(5 * in_rate // 100 + 1))  # 50 ms, one sample at a time
    q = np.arange(ready[-1])
    waits = np.searchsorted(ready, q + 1) / in_rate - q / out_rate
    assert waits.max() <= half_width(in_rate, out_rate) + 2 / in_rate  # K taps ahead, rounded up, + 1
    assert half_width(in_rate, out_rate) < 0.0026 * 16000 / min(in_rate, out_rate)  # 2.5 ms next to 16 kHz


@pytest.mark.parametrize("in_rate,out_rate", [(48000, 16000), (16000, 48000), (44100, 16000), (16000, 44100),
                                              (8000, 16000), (16000, 8000), (22050, 16000)])
def test_low_latency_filter_quality(in_rate, out_rate):
    """"LL": flat to 7 kHz (3.5 kHz at 8 kHz) within 0.01 dB, and nothing above -78 dB from what the
    lower rate cannot hold (aliasing) or from images of what it holds."""
    nyquist = min(in_rate, out_rate) / 2

    def through(freq):
        x = (0.5 * np.sin(2 * np.pi * freq * np.arange(in_rate // 5) / in_rate)).astype(np.float32)[:, None]
        y = resample(x, in_rate, out_rate, "LL")[out_rate // 40:-out_rate // 40, 0].astype(np.float64)
        t = (np.arange(len(y)) + out_rate // 40) / out_rate
        basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
        coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
        return np.hypot(*coef) / 0.5, np.sqrt(np.mean((y - basis @ coef) ** 2)) / (0.5 / np.sqrt(2)), \
            np.sqrt(np.mean(y ** 2)) / (0.5 / np.sqrt(2))

    for freq in np.linspace(100, 0.875 * nyquist, 9):
        gain, rest, _ = through(freq)
        assert abs(20 * np.log10(gain)) < 0.01 and 20 * np.log10(rest) < -78, (freq, gain, rest)
    if in_rate > out_rate:
        for freq in np.linspace(nyquist + 10, in_rate / 2 - 10, 9):
            # all that comes out, relative to the tone (a fit at the tone's frequency is degenerate
            # where it aliases to 0 Hz, e.g. 16 kHz into 16 kHz)
            *_, level = through(freq)
            assert 20 * np.log10(level) < -78, (freq, level)


def _filter_formula(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """"LL" by its definition, in float64: output k = table row p . inputs i - K + 1 .. i + K."""
    up, down, taps, table = _sinc_table(in_rate, out_rate)
    padded = np.concatenate([np.zeros((taps - 1, x.shape[1])), x, np.zeros((taps + 1, x.shape[1]))])
    k = np.arange(-(-len(x) * up // down))
    i, p = np.divmod(k * down, up)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * taps, axis=0)[i]  # [n, channels, 2K]
    return np.einsum("ncj,nj->nc", windows, table[p].astype(np.float64))


@pytest.mark.parametrize("in_rate,out_rate", [(48000, 16000), (16000, 48000), (44100, 16000), (16000, 44100),
                                              (8000, 16000), (16000, 8000), (22050, 16000), (44101, 16000)])
def test_low_latency_blocks_are_exact_and_cut_independent(in_rate, out_rate):
    """Blocks of outputs (one BLAS product each, the same shape whatever the message; 44101 Hz takes
    the output-by-output path): within float32 rounding of the filter's definition at full scale,
    and the same bytes however the stream is cut, 2 channels, 1-sample pieces included."""
    rng = np.random.default_rng(in_rate + out_rate)
    x = rng.uniform(-1, 1, (in_rate // 4, 2)).astype(np.float32)
    y = resample(x, in_rate, out_rate, "LL")
    assert np.abs(y - _filter_formula(x.astype(np.float64), in_rate, out_rate)).max() < 1e-6
    for sizes in ([1] * 700 + [len(x)], [768, 7, 0, 2000, 3] * 200, list(rng.integers(0, 1500, 60))):
        stream, outs, pos = StreamResampler(in_rate, out_rate, 2, "LL"), [], 0
        for n in sizes:
            outs.append(stream.process(x[pos:pos + n]))
            pos += n
        outs.append(stream.flush())
        chunked = np.concatenate(outs)
        assert chunked.dtype == np.float32 and chunked.tobytes() == y.tobytes()
