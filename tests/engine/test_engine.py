import asyncio
import random

import numpy as np
import pytest

from tests.engine.models import EventsModel, FilterModel, FragileModel, SourcesModel, StateGainModel, TokensModel
from wavestream.engine import CapacityError, Engine, Output, StepError, StreamPipeline, load_stream_model
from wavestream.models.registry import UntrainedModelError

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


def noise(n, channels, seed=0, scale=0.5):
    return np.random.default_rng(seed).uniform(-scale, scale, (n, channels)).astype(np.float32)


def offline(model, rate, x) -> Output:
    """The reference: one direct-step pipeline fed the whole signal at once."""
    pipe = StreamPipeline(model, rate, x.shape[1])
    return Output.concat([pipe.process(x), pipe.finish()])


async def stream(session, x, sizes) -> Output:
    outs, pos = [], 0
    for n in sizes:
        outs.append(await session.process(x[pos:pos + n]))
        pos += n
        await asyncio.sleep(0)
    outs.append(await session.finish())
    return Output.concat(outs)


def chunk_sizes(total, rng, largest):
    sizes = []
    while sum(sizes) < total:
        sizes.append(min(rng.randint(1, largest), total - sum(sizes)))
    return sizes


async def started(**kwargs) -> Engine:
    engine = Engine(**kwargs)
    await engine.start()
    return engine


@pytest.mark.parametrize("max_batch", [32, 1])
def test_concurrent_sessions_equal_their_offline_result(max_batch):
    """20 streams with different rates, channel counts and chunk sizes share batched steps and
    still each get exactly what a lone direct-step pipeline gives."""
    rng = random.Random(max_batch)
    specs = []
    for i in range(20):
        rate, channels = RATES[i % len(RATES)], 1 + i % 3
        x = noise(int(rate * rng.uniform(0.3, 0.8)), channels, seed=i)
        largest = rng.choice([rate // 200, rate // 50, rate // 4])  # under a hop .. several hops
        specs.append((rate, x, chunk_sizes(len(x), rng, largest)))

    async def main():
        engine = await started(max_batch=max_batch, workers=2, max_chunk_hops=8)
        sessions = [engine.open_session("test-filter", rate, x.shape[1]) for rate, x, _ in specs]
        outs = await asyncio.gather(*(stream(s, x, sizes) for s, (_, x, sizes) in zip(sessions, specs, strict=True)))
        for s in sessions:
            s.close()
        stats = engine.stats()
        await engine.aclose()
        return outs, stats

    outs, stats = asyncio.run(main())
    model = FilterModel()
    for (rate, x, _), out in zip(specs, outs, strict=True):
        ref = offline(model, rate, x).audio
        assert out.audio.shape == x.shape
        assert np.abs(out.audio - ref).max() <= 1e-5
    sizes = stats["models"]["test-filter"]["batch_sizes"]
    if max_batch == 1:
        assert set(sizes) == {1}
    else:
        assert max(sizes) > 1 and stats["mean_batch"] > 1
    assert stats["active_sessions"] == 0 and stats["sessions_opened"] == 20
    assert stats["audio_seconds"] > 0 and stats["rtf"] > 0
    assert stats["models"]["test-filter"]["chunk_latency_ms"]["p50"] > 0


def test_back_pressure_bounds_the_queue():
    x = noise(3 * 16000, 1, 1)  # 300 hops in one message

    async def main():
        engine = await started(queue_chunks=3, max_chunk_hops=2, workers=1)
        session = engine.open_session("test-filter", 16000, 1)
        depths = []

        async def watch():
            while True:
                depths.append(session.queue_depth)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        out = Output.concat([await session.process(x), await session.finish()])
        watcher.cancel()
        await engine.aclose()
        return out, depths, session.max_queue_depth

    out, depths, max_depth = asyncio.run(main())
    assert max_depth == 3 and max(depths) <= 3  # the queue filled up and never grew past its bound
    assert np.abs(out.audio - offline(FilterModel(), 16000, x).audio).max() <= 1e-5


def test_reset_starts_a_new_stream():
    x = noise(8000, 2, 2)

    async def main():
        engine = await started()
        session = engine.open_session("test-filter", 22050, 2)
        await session.process(x[:3000])
        session.reset()
        out = await stream(session, x, [2500, 5500])
        await engine.aclose()
        return out

    assert np.abs(asyncio.run(main()).audio - offline(FilterModel(), 22050, x).audio).max() <= 1e-5


def test_a_failing_session_errors_only_itself():
    good = [noise(4000, 1, i) for i in range(4)]
    bad = noise(4000, 1, 9, scale=10.0)  # FragileModel refuses |x| > 8

    async def main():
        engine = await started(workers=1, max_wait=0.05)  # long wait: the bad stream shares batches
        sessions = [engine.open_session("test-fragile", 16000, 1) for _ in range(5)]
        results = await asyncio.gather(*(stream(s, x, [1000] * 4) for s, x in zip(sessions, [*good, bad],
                                                                                    strict=True)),
                                       return_exceptions=True)
        failed = sessions[-1]
        with pytest.raises(StepError, match="input out of range"):
            await failed.process(good[0])
        failed.reset()  # a reset session works again
        again = await stream(failed, good[0], [4000])
        stats = engine.stats()
        await engine.aclose()
        return results, again, stats

    results, again, stats = asyncio.run(main())
    assert isinstance(results[-1], StepError) and isinstance(results[-1].__cause__, ValueError)
    model = FragileModel()
    for x, out in zip(good, results[:4], strict=True):
        assert np.abs(out.audio - offline(model, 16000, x).audio).max() <= 1e-5
    assert np.abs(again.audio - offline(model, 16000, good[0]).audio).max() <= 1e-5
    assert stats["models"]["test-fragile"]["failures"] == 1
    assert max(stats["models"]["test-fragile"]["batch_sizes"]) > 1


def test_closing_and_capacity():
    async def main():
        engine = await started(max_sessions=3)
        sessions = [engine.open_session("test-filter", 16000, 1) for _ in range(3)]
        assert engine.active_sessions == 3
        with pytest.raises(CapacityError):
            engine.open_session("test-filter", 16000, 1)
        await sessions[0].process(noise(500, 1))
        sessions[0].close()
        sessions[0].close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await sessions[0].process(noise(500, 1))
        assert engine.active_sessions == 2
        sessions.append(engine.open_session("test-filter", 16000, 1))
        # a call still waiting when the engine shuts down fails instead of hanging
        pending = asyncio.create_task(sessions[1].process(noise(16000, 1)))
        await asyncio.sleep(0)
        await engine.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await pending
        return engine.active_sessions

    assert asyncio.run(main()) == 0


def test_open_session_validates():
    async def main():
        engine = Engine()
        with pytest.raises(RuntimeError, match="start"):
            engine.open_session("test-filter", 16000, 1)
        await engine.start()
        with pytest.raises(ValueError, match="unknown model"):
            engine.open_session("no-such-model", 16000, 1)
        with pytest.raises(ValueError, match="does not take params"):
            engine.open_session("test-filter", 16000, 1, {"bitrate": 6})
        with pytest.raises(ValueError, match="does not take params"):
            engine.open_session("test-delay", 16000, 1, {"gain": 2})
        with pytest.raises(ValueError, match="bad params"):
            engine.open_session("test-filter", 16000, 1, {"gain": -1})
        with pytest.raises(ValueError):
            engine.open_session("test-filter", 16000, 1, {"gain": object()})
        with pytest.raises(ValueError):
            engine.open_session("test-filter", 0, 1)
        with pytest.raises(ValueError):
            engine.open_session("test-filter", 16000, 0)
        with pytest.raises(ValueError):
            engine.open_session("test-tokens", 16000, 1, [1])
        assert engine.active_sessions == 0
        session = engine.open_session("test-filter", 16000, 1)
        with pytest.raises(ValueError, match="float32"):
            await session.process(np.zeros((10, 1)))
        await session.process(noise(10, 1))  # still usable after a bad call
        await engine.aclose()

    asyncio.run(main())
    with pytest.raises(ValueError):
        Engine(max_batch=0)
    with pytest.raises(ValueError):
        Engine(workers=0)


def test_params_select_their_own_model():
    x = noise(3000, 1, 4)

    async def main():
        engine = await started()
        plain = engine.open_session("test-filter", 16000, 1)
        loud = engine.open_session("test-filter", 16000, 1, {"gain": 2.0})
        a, b = await asyncio.gather(stream(plain, x, [1000] * 3), stream(loud, x, [1500] * 2))
        names = sorted(engine.stats()["models"])
        await engine.aclose()
        return a, b, names

    a, b, names = asyncio.run(main())
    np.testing.assert_allclose(b.audio, 2 * a.audio, atol=1e-6)
    assert names == ["test-filter", 'test-filter{"gain": 2.0}']


def test_info_and_batch_observer():
    seen = []

    async def main():
        engine = await started(on_batch=lambda *args: seen.append(args))
        session = engine.open_session("test-sources", 48000, 2)
        out = await stream(session, noise(4800, 2, 5), [4800])
        await engine.aclose()
        return session.info, out

    info, out = asyncio.run(main())
    assert len(info["session"]) == 32 and info["model"]["name"] == "test-sources"
    assert info["model"]["latency_samples"] == 40 + 160 and info["model"]["params"] == {}  # look-ahead + hop
    assert info["latency_ms"] > 1000 * (40 + 160) / 16000  # model delay + hop + resampler delays
    assert info["output"]["kind"] == "sources" and info["output"]["channels"] == 4
    assert out.audio.shape == (4800, 4)
    assert np.abs(out.audio - offline(SourcesModel(), 48000, noise(4800, 2, 5)).audio).max() <= 1e-5
    assert seen and all(name == "test-sources" and size >= 1 and seconds > 0 and audio > 0
                        for name, size, seconds, audio in seen)


def test_tokens_through_the_engine():
    x = noise(8000, 1, 6)

    async def main():
        engine = await started()
        sessions = [engine.open_session("test-tokens", 8000, 1) for _ in range(3)]
        outs = await asyncio.gather(*(stream(s, x, [700] * 11 + [300]) for s in sessions))
        await engine.aclose()
        return outs

    ref = offline(TokensModel(), 8000, x).frames
    for out in asyncio.run(main()):
        np.testing.assert_array_equal(out.frames, ref)


def test_real_enhance_model_batched_equals_offline():
    """The project's enhancement model behind the batching scheduler, streams at several rates."""
    specs = [(rate, noise(rate // 2, 1 + i % 2, seed=i, scale=0.3), rate // 50)
             for i, rate in enumerate([8000, 16000, 44100, 48000, 16000, 22050])]

    async def main():
        engine = await started(workers=2)
        sessions = [engine.open_session("enhance", rate, x.shape[1]) for rate, x, _ in specs]
        outs = await asyncio.gather(*(stream(s, x, [n] * (len(x) // n) + [len(x) % n]) for s, (_, x, n) in
                                      zip(sessions, specs, strict=True)))
        stats = engine.stats()
        model = engine.load("enhance")  # the same weights (random when untrained) as the sessions
        await engine.aclose()
        return outs, stats, model

    outs, stats, model = asyncio.run(main())
    assert stats["mean_batch"] > 1
    for (rate, x, _), out in zip(specs, outs, strict=True):
        assert out.audio.shape == x.shape
        assert np.abs(out.audio - offline(model, rate, x).audio).max() <= 1e-5


def test_a_raising_batch_observer_changes_nothing():
    """A broken ``on_batch`` (metrics) is logged; every stream still gets its output."""
    def observer(*args):
        raise RuntimeError("observer bug")

    x = noise(4000, 1, 3)

    async def main():
        engine = await started(on_batch=observer)
        session = engine.open_session("test-filter", 16000, 1)
        out = await asyncio.wait_for(stream(session, x, [1000] * 4), 60)
        again = await asyncio.wait_for(stream(engine.open_session("test-filter", 16000, 1), x, [4000]), 60)
        await engine.aclose()
        return out, again

    out, again = asyncio.run(main())
    for result in (out, again):
        assert np.abs(result.audio - offline(FilterModel(), 16000, x).audio).max() <= 1e-5


def test_a_scheduler_bug_fails_its_streams_and_the_scheduler_recovers():
    """The scheduler loop raising (here: a model whose hop turns 0 under it) fails the streams it was
    serving with StepError instead of leaving them waiting; once the fault is gone the same
    scheduler serves the reset session and new ones."""
    x = noise(4000, 1, 4)

    async def main():
        engine = await started()
        model = engine.load("test-filter")
        first = engine.open_session("test-filter", 16000, 1)
        model.hop = 0  # the scheduler's next dispatch divides by it
        with pytest.raises(StepError, match="scheduler"):
            await asyncio.wait_for(first.process(x), 60)
        model.hop = 160
        first.reset()
        again = await asyncio.wait_for(stream(first, x, [4000]), 60)
        fresh = await asyncio.wait_for(stream(engine.open_session("test-filter", 16000, 1), x, [1000] * 4), 60)
        await engine.aclose()
        return again, fresh

    again, fresh = asyncio.run(main())
    for result in (again, fresh):
        assert np.abs(result.audio - offline(FilterModel(), 16000, x).audio).max() <= 1e-5


def test_missing_weights_are_never_silent(tmp_path):
    """An explicit weights file that is not there is an error, and an engine that refuses untrained
    models (the server's default) refuses one without shipped weights instead of running random ones."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_stream_model("test-filter", weights=tmp_path / "missing.safetensors")

    async def main():
        engine = await started(allow_untrained=False)
        try:
            with pytest.raises(UntrainedModelError, match="no trained weights"):
                engine.open_session("test-filter", 16000, 1)
            assert engine.active_sessions == 0
        finally:
            await engine.aclose()

    asyncio.run(main())


def test_state_params_share_one_model_and_one_batch():
    """Streams that differ only in a per-stream (state) param run on one model instance, in one
    scheduler's batches, and each gets exactly its own offline output, whatever the value."""
    x = noise(3200, 1, 7)
    gains = [0.5 + 0.1 * i for i in range(40)]  # 40 distinct values: still one instance

    async def main():
        engine = await started(workers=2)
        sessions = [engine.open_session("test-state-gain", 16000, 1, {"gain": g}) for g in gains]
        outs = await asyncio.gather(*(stream(s, x, [640] * 5) for s in sessions))
        shared = {id(engine.load("test-state-gain", {"gain": g})) for g in gains}
        infos, stats = [s.info for s in sessions], engine.stats()
        await engine.aclose()
        return outs, shared, infos, stats

    outs, shared, infos, stats = asyncio.run(main())
    assert len(shared) == 1
    assert list(stats["models"]) == ["test-state-gain"] and stats["models"]["test-state-gain"]["mean_batch"] > 1
    plain = offline(FilterModel(), 16000, x).audio
    for gain, out, info in zip(gains, outs, infos, strict=True):
        own = StreamPipeline(StateGainModel(), 16000, 1, params={"gain": gain})
        assert np.abs(out.audio - Output.concat([own.process(x), own.finish()]).audio).max() <= 1e-5
        assert np.abs(out.audio - gain * plain).max() <= 1e-5
        assert info["model"]["params"] == {"gain": gain}


def test_codec_bitrates_share_one_model_and_batch():
    """encodec_24khz (random weights) at every bitrate: one instance and one scheduler per mode,
    each stream's codes equal to its own offline codes, cut to its bitrate's codebooks."""
    bitrates = [1.5, 3.0, 6.0, 12.0, 24.0]
    x = noise(24000 // 5, 1, 8, scale=0.3)

    async def main():
        engine = await started(workers=1)
        sessions = [engine.open_session("encodec_24khz", 24000, 1, {"mode": "encode", "bitrate": b}) for b in bitrates]
        outs = await asyncio.gather(*(stream(s, x, [960] * 5) for s in sessions))
        instances = {id(engine.load("encodec_24khz", {"mode": "encode", "bitrate": b})) for b in bitrates}
        refs = [offline_pipeline(engine.pipeline("encodec_24khz", 24000, 1, {"mode": "encode", "bitrate": b}), x)
                for b in bitrates]
        stats, info = engine.stats(), sessions[0].info["model"]
        await engine.aclose()
        return outs, instances, refs, stats, info

    outs, instances, refs, stats, info = asyncio.run(main())
    assert len(instances) == 1 and list(stats["models"]) == ['encodec_24khz{"mode": "encode"}']
    assert (info["input"], info["output"], info["hop"]) == ("audio", "tokens", 320)  # as the stream runs it
    assert stats["models"]['encodec_24khz{"mode": "encode"}']["mean_batch"] > 1
    for bitrate, out, ref in zip(bitrates, outs, refs, strict=True):
        assert out.frames.shape == (15, 1, int(bitrate * 1000 / 750))  # 75 Hz, 750 bit/s per codebook
        np.testing.assert_array_equal(out.frames, ref.frames)


def offline_pipeline(pipeline: StreamPipeline, x) -> Output:
    return Output.concat([pipeline.process(x), pipeline.finish()])


def test_detector_params_are_per_stream():
    """An events model's detector params set each stream's detector on one shared instance."""
    x = noise(1600, 1, 9)
    levels = [0.05, 0.08, 0.1]

    async def main():
        engine = await started()
        sessions = [engine.open_session("test-events", 16000, 1, {"level": v}) for v in levels]
        outs = await asyncio.gather(*(stream(s, x, [400] * 4) for s in sessions))
        shared = {id(engine.load("test-events", {"level": v})) for v in levels}
        await engine.aclose()
        return outs, shared

    outs, shared = asyncio.run(main())
    assert len(shared) == 1
    counts = [len(out.events) for out in outs]
    assert counts[0] > counts[1] > counts[2]  # a higher level finds fewer loud frames
    for level, out in zip(levels, outs, strict=True):
        own = StreamPipeline(EventsModel(), 16000, 1, params={"level": level})
        assert out.events == offline_pipeline(own, x).events


def test_bad_param_values_and_instance_bound():
    """Invalid per-stream values are refused with a clear ValueError before any session exists;
    a value at its default needs no instance; construction params past ``max_instances`` are refused."""
    async def main():
        engine = await started(max_instances=2)
        bad = [("encodec_24khz", {"bitrate": 7}, "bitrate must be one of"),
               ("encodec_24khz", {"bitrate": "6"}, "bitrate must be one of"),
               ("encodec_24khz", {"mode": "sideways"}, "mode must be one of"),
               ("test-state-gain", {"gain": 0}, "gain must be"),
               ("test-events", {"level": -1}, "level must be"),
               ("test-events", {"level": "loud"}, "bad params"),
               ("kws", {"threshold": 2}, "threshold"),
               ("kws", {"smooth_frames": 10 ** 9}, "smooth_frames"),
               ("test-events", {"gain": 2}, "does not take params")]
        for name, params, message in bad:
            with pytest.raises(ValueError, match=message):
                engine.load(name, params)
            with pytest.raises(ValueError, match=message):
                engine.open_session(name, 16000, 1, params)
        assert engine.active_sessions == 0
        assert engine.load("test-filter", {"gain": 1.0}) is engine.load("test-filter")  # the default value
        engine.load("test-filter", {"gain": 2.0})
        with pytest.raises(ValueError, match="2 configurations"):
            engine.load("test-filter", {"gain": 3.0})
        await engine.aclose()

    asyncio.run(main())
