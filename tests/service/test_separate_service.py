"""`separate` as a user meets it on the server: WebSocket (Python client, a real port), REST, jobs
and `wavestream stream`. Two talkers come back as two interleaved channels, whatever the input's
channels, at the input's rate and length, equal to the server's own offline reference.

The model may run with random weights (until its trained ones ship); equality with the reference
checks the plumbing exactly: that is what proves the source order never changes mid-stream.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from tests.engine.mixtures import two_talkers
from tests.service.conftest import run
from tests.service.test_rest import PCM24_ATOL, audio_bytes, read_audio, wait_job
from tests.service.test_stream import S16_ATOL, max_err
from wavestream.cli import main as cli_main
from wavestream.client.stream_client import AsyncStreamClient, StreamClient, StreamError
from wavestream.streaming.pcm import decode_pcm, encode_pcm
from wavestream.streaming.testing import ATOL

ORDER = "source order is fixed for the whole stream"


def stereo_mixture(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Two talkers recorded in stereo: both in each channel, at different levels."""
    _, sources = two_talkers(seconds, rate, seed=seed)
    return np.stack([sources @ [1.0, 0.6], sources @ [0.7, 1.0]], axis=1).astype(np.float32)


def test_ready_says_the_two_source_layout(server):
    with StreamClient(server.ws) as client:
        ready = client.start("separate", 44100, channels=2, encoding="pcm_s16le")
        client.end()
    assert ready.model["name"] == "separate" and ready.model["task"] == "separate"
    assert ready.model["output"] == "sources" and ready.model["sample_rate"] == 16000
    out = ready.output
    assert (out.kind, out.sample_rate, out.channels, out.sources, out.encoding) == ("sources", 44100, 2, 2, "pcm_s16le")
    assert out.layout == "input channels mixed down to one; source s -> column s" and out.order == ORDER
    assert ready.latency_ms >= 2.0  # one 1 ms hop + 1 ms window overlap, plus the resamplers at 44.1 kHz
    server.wait_idle()


def test_long_stereo_stream_in_random_chunks_keeps_the_source_order(server):
    """20 s of a stereo two-talker mixture over a real port in random message sizes: the two output
    channels equal the server's offline reference all the way through (no swap, no shift)."""
    rate = 16000
    x = stereo_mixture(20.0, rate, seed=1)
    rng = np.random.default_rng(2)
    sizes = []
    while sum(sizes) < len(x):
        sizes.append(int(min(rng.integers(1, 6400), len(x) - sum(sizes))))

    async def stream():
        async with AsyncStreamClient(server.ws) as client:
            await client.start("separate", rate, channels=2)
            items = []

            async def collect():
                while (item := await client.receive()) is not None:
                    items.append(item)

            collector = asyncio.create_task(collect())
            pos = 0
            for n in sizes:
                await client.send(x[pos:pos + n])
                pos += n
            done = await client.end()
            await collector
            return np.concatenate(items), done

    out, done = run(stream())
    assert out.shape == (len(x), 1, 2)  # [frames, one mixed-down row, two sources]
    assert done.stats["samples_in"] == done.stats["samples_out"] == len(x)
    reference = server.reference("separate", x, rate).audio
    assert np.abs(reference[:, 0] - reference[:, 1]).max() > 1000 * ATOL  # a swap would show
    for seconds in range(0, 20, 5):
        part = slice(seconds * rate, (seconds + 5) * rate)
        assert max_err(out[part, 0], reference[part]) <= ATOL, f"seconds {seconds}-{seconds + 5}"
    server.wait_idle()


def test_flush_and_s16_interleaving(server):
    """At the model rate a flush after n samples returns exactly max(hop * floor(n / hop) - latency, 0)
    frames (16 and 16 for the default 32-sample window: 976 of 1000), as interleaved s16 pairs
    [source 0, source 1]."""
    rate = 16000
    x = two_talkers(0.5, rate, seed=3)[0]
    sent = decode_pcm(encode_pcm(x, "pcm_s16le"), "pcm_s16le", 1)
    with StreamClient(server.ws) as client:
        model = client.start("separate", rate, encoding="pcm_s16le").model
        hop, latency = model["hop"], model["latency_samples"] - model["hop"]  # the window's overlap
        client.send(x[:1000])
        client.flush()
        early = np.concatenate([np.zeros((0, 1, 2), np.float32), *client.received()])
        assert early.shape == (hop * (1000 // hop) - latency, 1, 2)
        client.send(x[1000:])
        client.end()
        out = np.concatenate([early, *client.received()])
    assert max_err(out[:, 0], server.reference("separate", sent, rate).audio) <= S16_ATOL
    server.wait_idle()


def test_bad_params_are_refused_at_start(server):
    with StreamClient(server.ws) as client, pytest.raises(StreamError) as error:
        client.start("separate", 16000, params={"bitrate": 6})
    assert error.value.code == "invalid_params" and error.value.close_code == 1007
    assert "does not take params ['bitrate']" in error.value.message
    server.wait_idle()


def test_rest_process_writes_two_channels(server, http):
    rate = 22050
    x = stereo_mixture(1.0, rate, seed=4)
    r = http.post("/v1/process/separate", content=audio_bytes(x, rate))
    assert r.status_code == 200, r.text
    y, out_rate = read_audio(r.content)
    assert out_rate == rate and y.shape == (len(x), 2)  # one talker per channel, the input's rate and length
    assert max_err(y, server.reference("separate", x, rate).audio) <= ATOL


@pytest.mark.parametrize("query,words", [
    ({"format": "json"}, "outputs sources: ask for format=wav or flac"),
    ({"params": '{"bitrate": 6}'}, "does not take params ['bitrate']"),
])
def test_rest_misuse_is_a_clear_422(http, query, words):
    r = http.post("/v1/process/separate", params=query, content=audio_bytes(two_talkers(0.2, 16000)[0], 16000))
    assert r.status_code == 422 and words in r.json()["detail"]


def test_job_writes_two_channels(server, http):
    rate = 32000
    x = stereo_mixture(1.0, rate, seed=5)
    r = http.post("/v1/jobs", params={"model": "separate", "format": "flac"}, content=audio_bytes(x, rate))
    assert r.status_code == 202, r.text
    job = wait_job(http, r.json()["id"])
    assert job["status"] == "done", job
    y, out_rate = read_audio(http.get(job["result_url"]).content)
    assert out_rate == rate and y.shape == (len(x), 2)
    assert max_err(y, server.reference("separate", x, rate).audio) <= PCM24_ATOL


def test_cli_stream_writes_a_two_channel_wav(server, tmp_path, capsys):
    rate = 24000
    x = stereo_mixture(0.8, rate, seed=6)
    source, target = tmp_path / "mix.wav", tmp_path / "talkers.wav"
    sf.write(source, x, rate, subtype="FLOAT")
    assert cli_main(["stream", "separate", str(source), str(target), "--url", server.ws, "--chunk-ms", "15"]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    info = sf.info(target)
    assert (info.channels, info.samplerate, info.frames) == (2, rate, len(x))
    y, _ = sf.read(target, dtype="float32", always_2d=True)
    assert max_err(y, server.reference("separate", x, rate).audio) <= ATOL
    server.wait_idle()
