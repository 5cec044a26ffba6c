import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.models import DELAY, HOP, DelayModel, EventsModel, FilterModel, SourcesModel, StereoModel, TokensModel
from wavestream.engine.pipeline import Output, StreamPipeline
from wavestream.streaming.resample import resample


def run(pipeline: StreamPipeline, x: np.ndarray, sizes) -> Output:
    outs, pos = [], 0
    for n in sizes:
        outs.append(pipeline.process(x[pos:pos + n]))
        pos += n
    assert pos == len(x)
    outs.append(pipeline.finish())
    return Output.concat(outs)


def cut(total: int, cuts: list[int]) -> list[int]:
    edges = [0, *sorted({c % (total + 1) for c in cuts}), total]
    return [b - a for a, b in zip(edges, edges[1:], strict=False)]


def noise(n, channels, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, channels)).astype(np.float32)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 2000), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_latency_is_compensated_exactly(n, cuts):
    """A pure-delay model at the model rate: the pipeline output is the input, sample for sample."""
    x = noise(n, 1, n)
    out = run(StreamPipeline(DelayModel(), 16000, 1), x, cut(n, cuts))
    assert out.audio.shape == x.shape and np.array_equal(out.audio, x)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_alignment_survives_resampling(rate):
    t = np.arange(rate) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t + 1)).astype(np.float32)[:, None]
    out = run(StreamPipeline(DelayModel(), rate, 1), x, [1000] * (rate // 1000) + [rate % 1000])
    assert out.audio.shape == x.shape
    inner = slice(rate // 50, -rate // 50)  # resampling filters ring at the very edges
    assert np.abs(out.audio[inner] - x[inner]).max() < 2e-3


@settings(max_examples=15, deadline=None)
@given(rate=st.sampled_from([8000, 16000, 24000, 44100, 48000]), channels=st.integers(1, 3),
       n=st.integers(1, 6000), cuts=st.lists(st.integers(0, 6000), max_size=8))
def test_chunked_equals_one_call(rate, channels, n, cuts):
    x = noise(n, channels, n)
    whole = run(StreamPipeline(FilterModel(), rate, channels), x, [n])
    chunked = run(StreamPipeline(FilterModel(), rate, channels), x, cut(n, cuts))
    assert chunked.audio.shape == (n, channels)
    assert np.abs(chunked.audio - whole.audio).max() <= 1e-5


def test_channels_are_separate_streams():
    x = noise(5000, 2, 3)
    both = run(StreamPipeline(FilterModel(), 44100, 2), x, [1234, 3766]).audio
    for c in range(2):
        alone = run(StreamPipeline(FilterModel(), 44100, 1), np.ascontiguousarray(x[:, c:c + 1]), [5000]).audio
        assert np.abs(both[:, c:c + 1] - alone).max() <= 1e-5


def test_output_only_covers_what_was_sent():
    pipe = StreamPipeline(DelayModel(), 16000, 1)
    assert pipe.process(noise(100, 1)).audio.shape == (0, 1)  # less than a hop
    out = pipe.process(noise(300, 1))  # 400 in: two hops stepped, the first DELAY samples dropped
    assert out.audio.shape == (2 * HOP - DELAY, 1)
    assert pipe.finish().audio.shape == (400 - 2 * HOP + DELAY, 1)
    with pytest.raises(ValueError, match="finished"):
        pipe.process(noise(10, 1))


def test_reset_starts_over():
    x = noise(3000, 1, 5)
    pipe = StreamPipeline(FilterModel(), 48000, 1)
    first = run(pipe, x, [1000, 2000]).audio
    pipe.reset()
    pipe.process(x[:777])
    pipe.reset()
    assert np.array_equal(run(pipe, x, [1000, 2000]).audio, first)


def test_empty_stream_finishes_empty():
    pipe = StreamPipeline(FilterModel(), 44100, 2)
    assert pipe.finish().audio.shape == (0, 2)


def test_sources_layout():
    x = noise(1000, 2, 7)
    pipe = StreamPipeline(SourcesModel(), 16000, 2)
    assert pipe.output_info() == {"kind": "sources", "sample_rate": 16000, "channels": 4, "sources": 2,
                                  "layout": "channel c, source s -> column c * sources + s",
                                  "order": "source order is fixed for the whole stream"}
    out = run(pipe, x, [333, 667]).audio
    assert out.shape == (1000, 4)
    np.testing.assert_array_equal(out[:, [0, 2]], x)
    np.testing.assert_allclose(out[:, [1, 3]], -0.5 * x)


def test_multichannel_model_gets_one_row():
    x = noise(900, 2, 8)
    pipe = StreamPipeline(StereoModel(), 16000, 2)
    assert pipe.rows == 1
    np.testing.assert_array_equal(run(pipe, x, [500, 400]).audio, x[:, ::-1])
    with pytest.raises(ValueError, match="exactly 2 channels"):
        StreamPipeline(StereoModel(), 16000, 1)


def test_tokens_frames_and_offsets():
    x = noise(16000, 1, 9)
    pipe = StreamPipeline(TokensModel(), 16000, 1)
    assert pipe.output_info() == {"kind": "tokens", "frame_rate": 100.0, "rows": 1, "codebooks": 2}
    outs = [pipe.process(x[:1000]), pipe.process(x[1000:]), pipe.finish()]
    assert [o.first_frame for o in outs] == [0, 6, 100]
    frames = Output.concat(outs).frames
    expected = TokensModel()(torch.from_numpy(x.T.copy())[None])  # [1, 2, 100]
    assert frames.dtype == np.int64 and frames.shape == (100, 1, 2)
    np.testing.assert_array_equal(frames[:, 0, :], expected[0].T.numpy())


def test_events_come_from_the_models_per_stream_detector():
    x = np.zeros((1600, 1), np.float32)
    x[480:640] = 0.9  # hop 3 is loud
    pipe = StreamPipeline(EventsModel(), 16000, 1)
    out = Output.concat([pipe.process(x[:500]), pipe.process(x[500:]), pipe.finish()])
    assert out.frames.shape == (10, 1, 1)
    assert out.events == [{"label": "loud", "start": 0.03, "end": 0.04, "score": pytest.approx(0.81)}]
    pipe.reset()  # a new stream starts counting frames from 0 again
    assert [e["start"] for e in Output.concat([pipe.process(x[320:]), pipe.finish()]).events] == [0.01]


@pytest.mark.parametrize("samples", [np.zeros((10, 2), np.float32), np.zeros((10, 1), np.float64),
                                     np.zeros(10, np.float32), np.array([[np.nan]], np.float32)])
def test_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        StreamPipeline(FilterModel(), 16000, 1).process(samples)


@pytest.mark.parametrize("rate,channels", [(0, 1), (16000, 0), (16000.0, 1), (16000, 1000), (10**7, 1)])
def test_rejects_bad_config(rate, channels):
    with pytest.raises(ValueError):
        StreamPipeline(FilterModel(), rate, channels)


def test_latency_info():
    pipe = StreamPipeline(FilterModel(), 16000, 1)
    assert pipe.latency_seconds == pytest.approx((DELAY + HOP) / 16000)
    assert StreamPipeline(FilterModel(), 48000, 1).latency_seconds > pipe.latency_seconds
    # the one-shot helper agrees with the pipeline's resamplers on what the model receives
    x = noise(4800, 1)
    assert resample(x, 48000, 16000).shape == (1600, 1)


def test_an_events_model_hears_its_end_silence_after_the_stream():
    class LateEvents(EventsModel):
        end_silence_s = 0.02  # two hops

    x = np.full((1600, 1), 0.9, np.float32)
    for model, frames in ((EventsModel(), 10), (LateEvents(), 12)):
        pipe = StreamPipeline(model, 16000, 1)
        out = Output.concat([pipe.process(x), pipe.finish()])
        assert out.frames.shape == (frames, 1, 1)
        # the silence is silent: only the input's frames are loud
        assert [e["start"] for e in out.events] == [pytest.approx(i / 100) for i in range(10)]
    # an audio model's stream is never lengthened by it
    class LateFilter(FilterModel):
        end_silence_s = 0.02
    pipe = StreamPipeline(LateFilter(), 16000, 1)
    assert Output.concat([pipe.process(noise(1000, 1)), pipe.finish()]).audio.shape == (1000, 1)
