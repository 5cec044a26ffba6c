"""`separate` through the stream pipeline, the engine and `wavestream process`: a mono mixture model
whose multichannel input is mixed down, two sources out, in an order that never changes mid-stream.

The model runs with random weights here (its trained ones are optional), which is what the plumbing
checks need: chunked == offline is exact for any weights, so equal outputs prove the columns were
never swapped, cut or shifted between chunks.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.engine.mixtures import two_talkers
from tests.engine.models import MixdownModel, SourcesModel
from wavestream.cli import main
from wavestream.engine import Engine, Output, StreamPipeline
from wavestream.models.registry import load_model
from wavestream.streaming.testing import ATOL

MIXDOWN_LAYOUT = "input channels mixed down to one; source s -> column s"
ORDER = "source order is fixed for the whole stream"


@pytest.fixture(scope="module")
def separate():
    torch.manual_seed(0)
    return load_model("separate")


def run(pipeline: StreamPipeline, x: np.ndarray, sizes) -> Output:
    outs, pos = [], 0
    for n in sizes:
        outs.append(pipeline.process(x[pos:pos + n]))
        pos += n
    assert pos == len(x)
    return Output.concat([*outs, pipeline.finish()])


def random_sizes(total: int, rng: np.random.Generator, largest: int) -> list[int]:
    """Chunk sizes from 1 sample to ``largest``, never whole hops on purpose, adding up to ``total``."""
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(1, largest + 1), total - sum(sizes))))
    return sizes


def offline(model, mixture: np.ndarray) -> np.ndarray:
    """The model's own offline output ``[n, sources]`` for a mono mixture at its rate: one
    ``forward`` over the whole signal (padded for the latency and the last hop), delay removed."""
    n, latency, hop = len(mixture), model.latency, model.hop
    total = n + latency + (-(n + latency)) % hop
    x = torch.from_numpy(np.pad(mixture[:, 0], (0, total - n)))[None, None]
    with torch.inference_mode():
        y = model(x)[0]
    return y[:, latency:latency + n].T.numpy()


def test_model_declares_mixdown(separate):
    assert separate.mixdown is True and separate.input_kind == "audio" and separate.output_kind == "sources"
    # the other models keep one stream row per client channel
    for name in ("enhance", "kws"):
        assert not getattr(load_model(name), "mixdown", False)


def test_mixdown_averages_the_channels_into_one_row():
    """Exact, with a model whose sources are known: (the input delayed and undone, minus half of it)."""
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (1500, 3)).astype(np.float32)
    pipe = StreamPipeline(MixdownModel(), 16000, 3)
    assert pipe.rows == 1 and pipe.out_channels == 2
    assert pipe.output_info() == {"kind": "sources", "sample_rate": 16000, "channels": 2, "sources": 2,
                                  "layout": MIXDOWN_LAYOUT, "order": ORDER}
    out = run(pipe, x, [700, 1, 799]).audio
    mono = x.mean(1, dtype=np.float32)
    np.testing.assert_array_equal(out[:, 0], mono)
    np.testing.assert_allclose(out[:, 1], -0.5 * mono)
    # without the declaration the same model gives two sources per channel (channel-major)
    assert StreamPipeline(SourcesModel(), 16000, 3).out_channels == 6


def test_mixdown_needs_a_mono_audio_model():
    class TwoChannelMixdown(MixdownModel):
        audio_channels = 2

    with pytest.raises(ValueError, match="mixdown, which needs mono audio input"):
        StreamPipeline(TwoChannelMixdown(), 16000, 2)


@pytest.mark.parametrize("rate,channels", [(16000, 2), (44100, 2), (8000, 1)])
def test_stereo_or_mono_at_any_rate_gives_two_sources(separate, rate, channels):
    mixture, _ = two_talkers(1.0, rate, seed=rate)
    x = np.repeat(mixture, channels, axis=1) * np.linspace(0.6, 1.4, channels, dtype=np.float32)
    pipe = StreamPipeline(separate, rate, channels)
    info = pipe.output_info()
    assert (info["channels"], info["sources"], info["sample_rate"], info["layout"]) == (2, 2, rate, MIXDOWN_LAYOUT)
    out = run(pipe, x, random_sizes(len(x), np.random.default_rng(channels), 3000)).audio
    assert out.shape == (len(x), 2)  # same rate and length as the input, one talker per column
    mono = run(StreamPipeline(separate, rate, 1), x.mean(1, keepdims=True, dtype=np.float32), [len(x)]).audio
    assert np.abs(out - mono).max() <= ATOL  # the stereo stream is its mono average


def test_long_stream_in_random_chunks_equals_the_offline_model(separate):
    """20 s, cut at random (1 sample to 0.4 s): column s is the model's offline source s throughout."""
    rate = separate.sample_rate
    mixture, _ = two_talkers(20.0, rate, seed=3)
    reference = offline(separate, mixture)
    # the two columns differ everywhere that matters, so a swap anywhere would show
    assert np.abs(reference[:, 0] - reference[:, 1]).max() > 1000 * ATOL
    sizes = random_sizes(len(mixture), np.random.default_rng(4), 6400)
    out = run(StreamPipeline(separate, rate, 1), mixture, sizes).audio
    assert out.shape == (len(mixture), 2)
    for seconds in range(0, 20, 5):  # stated per stretch, so a failure says where the stream went wrong
        part = slice(seconds * rate, (seconds + 5) * rate)
        assert np.abs(out[part] - reference[part]).max() <= ATOL, f"seconds {seconds}-{seconds + 5}"


def test_batched_sessions_equal_their_reference():
    """Several separate streams (mono and stereo, different rates) batched by the engine's scheduler:
    the mixed-down rows and the [streams, sources, overlap] decoder state stack and split correctly."""
    cases = [(16000, 1, 0), (48000, 2, 1), (22050, 2, 2)]

    async def main():
        engine = Engine(max_batch=8, workers=1, max_wait=0.02)
        await engine.start()
        try:
            async def one(rate, channels, seed):
                mixture, _ = two_talkers(1.5, rate, seed=seed)
                x = np.repeat(mixture, channels, axis=1)
                session = engine.open_session("separate", rate, channels)
                assert session.info["output"]["channels"] == 2 and session.info["output"]["order"] == ORDER
                outs, pos = [], 0
                for n in random_sizes(len(x), np.random.default_rng(seed), rate // 10):
                    outs.append(await session.process(x[pos:pos + n]))
                    pos += n
                outs.append(await session.finish())
                session.close()
                return x, Output.concat(outs).audio

            results = await asyncio.gather(*(one(*case) for case in cases))
            for (rate, channels, _), (x, out) in zip(cases, results, strict=True):
                reference = engine.pipeline("separate", rate, channels)
                expected = Output.concat([reference.process(x), reference.finish()]).audio
                assert out.shape == (len(x), 2) and np.abs(out - expected).max() <= ATOL, (rate, channels)
            assert max(engine.stats()["models"]["separate"]["batch_sizes"]) > 1
        finally:
            await engine.aclose()

    asyncio.run(main())


def test_cli_process_writes_two_channels(tmp_path, capsys):
    rate = 22050
    mixture, _ = two_talkers(1.2, rate, seed=5)
    stereo = np.concatenate([mixture, 0.5 * mixture], axis=1)
    sf.write(tmp_path / "mix.wav", stereo, rate, subtype="FLOAT")
    torch.manual_seed(7)  # the command's model and the reference get the same weights, random or trained
    assert main(["process", "separate", str(tmp_path / "mix.wav"), str(tmp_path / "talkers.wav"),
                 "--block-seconds", "0.3", "--subtype", "FLOAT"]) == 0
    torch.manual_seed(7)
    model = load_model("separate")
    if not model.trained:
        assert "random init" in capsys.readouterr().err  # untrained weights are said, not hidden
    y, out_rate = sf.read(tmp_path / "talkers.wav", dtype="float32", always_2d=True)
    assert out_rate == rate and y.shape == (len(stereo), 2)  # same rate and length, one talker per channel
    assert np.abs(y - run(StreamPipeline(model, rate, 2), stereo, [len(stereo)]).audio).max() <= ATOL
    # wrong output kinds for a sources model are refused with the reason
    assert main(["process", "separate", str(tmp_path / "mix.wav"), str(tmp_path / "codes.npy")]) == 2
    assert "outputs sources; write it to a .wav or .flac or .ogg file" in capsys.readouterr().err
