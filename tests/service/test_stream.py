"""WebSocket protocol v1 end to end against the real server: outputs equal the offline pipeline."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.service.conftest import run, signal
from wavestream.client.stream_client import AsyncStreamClient, StreamClient, StreamError
from wavestream.service.protocol import EventMessage
from wavestream.streaming.pcm import decode_pcm, encode_pcm
from wavestream.streaming.testing import ATOL

S16_ATOL = 1 / 32768 + ATOL  # output rounding to s16 (half a step) plus the streaming tolerance


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0


def test_ready_describes_the_session(server):
    with StreamClient(server.ws) as client:
        ready = client.start("enhance", 48000, channels=2, encoding="pcm_s16le")
        assert ready.protocol == 1 and len(ready.session) == 32
        assert ready.model["name"] == "enhance" and ready.model["sample_rate"] == 16000
        assert ready.output.kind == "audio" and ready.output.sample_rate == 48000
        assert ready.output.channels == 2 and ready.output.encoding == "pcm_s16le"
        assert ready.latency_ms >= 32.0  # 16 ms lookahead + one 16 ms hop (+ resampler delay)
        client.end()
    server.wait_idle()


@pytest.mark.parametrize("rate,chunk", [(16000, 256), (16000, 333), (44100, 1000), (8000, 4000)])
def test_stream_equals_offline_f32(server, rate, chunk):
    x = signal(0.6, rate, seed=rate + chunk)
    with StreamClient(server.ws) as client:
        client.start("enhance", rate)
        result = client.stream(x, chunk)
    reference = server.reference("enhance", x, rate).audio
    assert result.output.shape == x.shape  # time-aligned: exactly as long as the input
    assert max_err(result.output, reference) <= ATOL
    assert result.done.reason == "end" and result.done.stats["samples_in"] == len(x)


def test_stream_s16_within_rounding(server):
    rate = 22050
    x = signal(0.5, rate, channels=2, seed=3)
    sent = decode_pcm(encode_pcm(x, "pcm_s16le"), "pcm_s16le", 2)  # what the server sees
    with StreamClient(server.ws) as client:
        client.start("enhance", rate, channels=2, encoding="pcm_s16le")
        result = client.stream(x, 517)
    assert max_err(result.output, server.reference("enhance", sent, rate).audio) <= S16_ATOL


def test_output_encoding_can_differ(server):
    x = signal(0.3, 16000)
    with StreamClient(server.ws) as client:
        ready = client.start("enhance", 16000, encoding="pcm_f32le", output_encoding="pcm_s16le")
        assert ready.output.encoding == "pcm_s16le"
        result = client.stream(x, 800)
    assert max_err(result.output, server.reference("enhance", x, 16000).audio) <= S16_ATOL


def test_flush_is_a_barrier(server):
    """After ``flushed`` every whole hop sent so far is out: exactly hops*hop - latency samples at 16 kHz."""
    hop = latency = 256  # enhance: one hop, and one hop of lookahead
    x = signal(1.0, 16000, seed=5)

    async def main():
        async with AsyncStreamClient(server.ws) as client:
            await client.start("enhance", 16000)
            sent = received = 0
            for size in (100, 700, 1500, 33, 4000, 2000):
                await client.send(x[sent:sent + size])
                sent += size
                await client.flush()
                received += sum(len(a) for a in client.received())
                assert received == max((sent // hop) * hop - latency, 0), (sent, received)
            # the flush id comes back as sent, strings included
            await client.flush("marker-7")
            await client.end()
            return client

    run(main())
    server.wait_idle()


def test_raw_flush_echoes_id_after_output(server):
    """On the wire: the audio's binary output precedes the ``flushed`` message with the same id."""

    async def main():
        async with connect(server.ws) as ws:
            await ws.send(json.dumps({"type": "start", "model": "enhance", "sample_rate": 16000,
                                      "encoding": "pcm_f32le"}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(encode_pcm(signal(0.1, 16000), "pcm_f32le"))
            await ws.send(json.dumps({"type": "flush", "id": "abc"}))
            first, second = await ws.recv(), await ws.recv()
            assert isinstance(first, bytes) and len(first) == 4 * (1536 - 256)
            assert json.loads(second) == {"type": "flushed", "id": "abc"}
            await ws.send(json.dumps({"type": "end"}))
            tail = await ws.recv()
            assert isinstance(tail, bytes) and len(tail) == 4 * (1600 - 1280)
            done = json.loads(await ws.recv())
            assert done["type"] == "done" and done["reason"] == "end"
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1000

    run(main())


def test_reset_starts_a_fresh_stream(server):
    x = signal(0.5, 24000, seed=8)
    y = signal(0.4, 24000, seed=9)

    async def main():
        async with AsyncStreamClient(server.ws) as client:
            await client.start("enhance", 24000)
            await client.send(x)
            await client.flush()
            client.received()  # output of the abandoned stream
            await client.reset()
            result = await client.stream(y, 960)
            return result.output

    out = run(main())
    assert max_err(out, server.reference("enhance", y, 24000).audio) <= ATOL


def test_twenty_concurrent_sessions_each_equal_offline(server):
    rng = np.random.default_rng(20)
    rates = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]
    cases = []
    for i in range(20):
        rate = rates[i % len(rates)]
        channels = 1 + (i % 3 == 0)
        encoding = "pcm_s16le" if i % 2 else "pcm_f32le"
        chunk = int(rng.integers(40, 6000))
        x = signal(float(rng.uniform(0.2, 0.5)), rate, channels, seed=100 + i)
        if encoding == "pcm_s16le":
            x = decode_pcm(encode_pcm(x, encoding), encoding, channels)
        cases.append((rate, channels, encoding, chunk, x))

    async def one(rate, channels, encoding, chunk, x):
        async with AsyncStreamClient(server.ws) as client:
            await client.start("enhance", rate, channels=channels, encoding=encoding)
            return (await client.stream(x, chunk)).output

    async def main():
        return await asyncio.gather(*(one(*case) for case in cases))

    outputs = run(main())
    for (rate, _, encoding, chunk, x), out in zip(cases, outputs, strict=True):
        atol = S16_ATOL if encoding == "pcm_s16le" else ATOL
        assert max_err(out, server.reference("enhance", x, rate).audio) <= atol, (rate, encoding, chunk)
    server.wait_idle()
    stats = server.service.engine.stats()["models"]["enhance"]
    assert max(stats["batch_sizes"]) > 1  # the streams really shared model steps


def test_sources_tokens_and_events_cross_the_wire(server):
    """Every output kind: sources (interleaved channels), tokens (uint16 frames), events (JSON)."""
    rate = 16000
    x = signal(0.4, rate, channels=2, seed=11)
    x[3000:3400] *= 8  # loud enough for test-events' detector

    with StreamClient(server.ws) as client:
        ready = client.start("test-sources", rate, channels=2)
        assert ready.output.kind == "sources" and ready.output.sources == 2 and ready.output.channels == 4
        sources = client.stream(x, 700).output
    ref = server.reference("test-sources", x, rate).audio  # [frames, channel * 2 + source]
    assert sources.shape == (len(x), 2, 2)
    assert max_err(sources.reshape(len(x), 4), ref) <= ATOL

    with StreamClient(server.ws) as client:
        ready = client.start("test-tokens", rate, channels=2)
        assert ready.output.kind == "tokens" and ready.output.dtype == "uint16" and ready.output.codebooks == 2
        tokens = client.stream(x, 555).output
        assert client.bytes_received == 2 * tokens.size  # two bytes per code, nothing else
    ref = server.reference("test-tokens", x, rate).frames
    assert tokens.dtype == np.int64 and tokens.shape == ref.shape
    assert np.array_equal(tokens, ref)

    with StreamClient(server.ws) as client:
        ready = client.start("test-events", rate, channels=2)
        assert ready.output.kind == "events" and ready.output.classes == 1
        result = client.stream(x, 640)
    ref = server.reference("test-events", x, rate).events
    assert result.output is None and all(isinstance(e, EventMessage) for e in result.events)
    assert [e.event for e in result.events] == json.loads(json.dumps(ref, default=lambda v: v.tolist()))
    assert len(result.events) > 0
    server.wait_idle()


def test_stream_params_reach_the_model(server):
    x = signal(0.3, 16000)
    with StreamClient(server.ws) as client:
        ready = client.start("test-filter", 16000, params={"gain": 2.5})
        assert ready.model["params"] == {"gain": 2.5}
        out = client.stream(x, 480).output
    assert max_err(out, server.reference("test-filter", x, 16000, {"gain": 2.5}).audio) <= ATOL


def test_sync_client_errors_are_raised(server):
    with StreamClient(server.ws) as client, pytest.raises(StreamError) as info:
        client.start("no-such-model", 16000)
    assert info.value.code == "unknown_model" and info.value.close_code == 1007


@pytest.mark.parametrize("encoding,atol", [("pcm_f32le", ATOL), ("pcm_s16le", S16_ATOL)])
def test_streamed_file_equals_wavestream_process(server, tmp_path, encoding, atol):
    """`wavestream stream` through the server == `wavestream process` offline, on the same file."""
    import soundfile as sf
    from safetensors.torch import save_file

    from wavestream.cli import main as cli_main

    weights = tmp_path / "enhance.safetensors"  # the server's weights (random until trained ones ship)
    save_file({k: v.contiguous() for k, v in server.service.engine.load("enhance").state_dict().items()}, weights)
    source = tmp_path / "in.wav"
    sf.write(source, signal(1.3, 48000, channels=2, seed=21), 48000, subtype="PCM_16")
    processed, streamed = tmp_path / "processed.wav", tmp_path / "streamed.wav"
    assert cli_main(["process", "enhance", str(source), str(processed), "--weights", str(weights),
                     "--subtype", "FLOAT", "--no-progress"]) == 0
    assert cli_main(["stream", "enhance", str(source), str(streamed), "--url", server.ws, "--chunk-ms", "20",
                     "--encoding", encoding]) == 0
    a, rate_a = sf.read(processed, dtype="float32", always_2d=True)
    b, rate_b = sf.read(streamed, dtype="float32", always_2d=True)
    assert rate_a == rate_b == 48000
    assert max_err(b, a) <= atol
