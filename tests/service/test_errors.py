"""Bad input gets its error and close code, the session beside it goes on unharmed, nothing leaks;
auth, capacity and idle limits."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.service.conftest import run, running_server, signal
from wavestream.client.stream_client import AsyncStreamClient, StreamClient, StreamError
from wavestream.streaming.pcm import encode_pcm
from wavestream.streaming.testing import ATOL


def start(**fields) -> str:
    return json.dumps({"type": "start", "model": "enhance", "sample_rate": 16000, "encoding": "pcm_f32le", **fields})


async def exchange(url: str, messages: list, headers: dict | None = None) -> tuple[list, int | None]:
    """Send ``messages`` (str -> text, bytes -> binary) and read until the server closes."""
    received = []
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        try:
            for message in messages:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the server may close before we are done sending; what it said is still queued
        try:
            while True:
                received.append(await ws.recv())
        except ConnectionClosed:
            pass
        return received, ws.close_code


def last_error(received: list) -> dict:
    texts = [json.loads(m) for m in received if isinstance(m, str)]
    assert texts and texts[-1]["type"] == "error", f"no error message in {texts}"
    assert texts[-1]["message"]
    return texts[-1]


DEEP = {"a": [{"b": [0]}]}
for _ in range(40):
    DEEP = {"a": [DEEP]}
NAN_AUDIO = np.full((64, 1), np.nan, np.float32).tobytes()
BAD_INPUT = {
    "garbage_json": (["{not json"], "invalid_json", 1007),
    "not_an_object": (["[1, 2]"], "invalid_json", 1007),
    "unknown_type": (['{"type": "hello"}'], "unsupported_message", 1003),
    "unknown_model": ([start(model="nope")], "unknown_model", 1007),
    "unsupported_encoding": ([start(encoding="mp3")], "unsupported_encoding", 1003),
    "rate_out_of_range": ([start(sample_rate=4000)], "invalid_message", 1007),
    "unknown_field": ([start(colour="red")], "invalid_message", 1007),
    "bad_params": ([start(params={"gain": 2})], "invalid_params", 1007),
    "odd_byte_count": ([start(encoding="pcm_s16le"), b"\x00\x01\x02"], "invalid_audio", 1007),
    "partial_stereo_frame": ([start(channels=2), b"\x00" * 12], "invalid_audio", 1007),
    "nan_samples": ([start(), NAN_AUDIO], "invalid_audio", 1007),
    "oversized_frame": ([start(), b"\x00" * (256 * 1024 + 4)], "message_too_big", 1009),
    "oversized_text": (["x" * (256 * 1024 + 1)], "message_too_big", 1009),
    "binary_before_start": ([b"\x00\x00\x00\x00"], "not_started", 1003),
    "flush_before_start": (['{"type": "flush", "id": 1}'], "not_started", 1003),
    "start_twice": ([start(), start()], "already_started", 1003),
    "deep_json": (["[" * 100_000 + "]" * 100_000], "invalid_json", 1007),
    "deep_params": ([start(params=DEEP)], "invalid_json", 1007),
    "huge_finite_samples": ([start(), np.full((640, 1), 1e19, np.float32).tobytes()], "invalid_audio", 1007),
    "rate_as_string": ([start(sample_rate="16000")], "invalid_message", 1007),
    "flush_id_true": ([start(), '{"type": "flush", "id": true}'], "invalid_message", 1007),
    "model_step_fails": ([start(model="test-fragile"), np.full((640, 1), 9.0, np.float32).tobytes()],
                         "internal_error", 1011),
}


async def bystander(url: str, x: np.ndarray, halfway: asyncio.Event, go_on: asyncio.Event) -> np.ndarray:
    """A well-behaved stream that runs before, during and after the bad one."""
    async with AsyncStreamClient(url) as client:
        await client.start("enhance", 16000)
        half = len(x) // 2
        for pos in range(0, half, 320):
            await client.send(x[pos:min(pos + 320, half)])
        halfway.set()
        await go_on.wait()
        return (await client.stream(x[half:], 320)).output


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_and_the_neighbour_is_unharmed(server, case):
    messages, code, close_code = BAD_INPUT[case]
    x = signal(0.5, 16000, seed=len(case))

    async def main():
        halfway, go_on = asyncio.Event(), asyncio.Event()
        neighbour = asyncio.create_task(bystander(server.ws, x, halfway, go_on))
        await halfway.wait()
        try:
            received, closed_with = await exchange(server.ws, messages)
        finally:
            go_on.set()
        return received, closed_with, await neighbour

    received, closed_with, neighbour_out = run(main())
    error = last_error(received)
    assert (error["code"], closed_with) == (code, close_code)
    assert np.abs(neighbour_out - server.reference("enhance", x, 16000).audio).max() <= ATOL
    server.wait_idle()  # no session or connection left behind


def test_abrupt_disconnect_mid_stream_leaks_nothing(server):
    x = signal(1.0, 16000)

    async def main():
        ws = await connect(server.ws)
        await ws.send(start())
        await ws.recv()
        for pos in range(0, len(x) // 2, 1600):
            await ws.send(encode_pcm(x[pos:pos + 1600], "pcm_f32le"))
        ws.transport.abort()  # no close frame: the TCP connection just drops

    async def neighbour():
        async with AsyncStreamClient(server.ws) as client:
            await client.start("enhance", 16000)
            return (await client.stream(x, 800)).output

    async def both():
        out, _ = await asyncio.gather(neighbour(), main())
        return out

    out = run(both())
    assert np.abs(out - server.reference("enhance", x, 16000).audio).max() <= ATOL
    server.wait_idle()


def test_errors_are_counted_in_metrics(server, http):
    run(exchange(server.ws, ["{oops"]))
    text = http.get("/metrics").text
    assert 'wavestream_errors_total{code="invalid_json"}' in text


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A server with API keys and two sessions at most."""
    with running_server(tmp_path_factory.mktemp("strict"), api_keys=["s3cret", "other-key"],
                        max_sessions=2) as running:
        yield running


def test_websocket_needs_the_api_key(strict):
    for headers, url in ((None, strict.ws), ({"Authorization": "Bearer wrong"}, strict.ws),
                         (None, strict.ws + "?api_key=wrong")):
        received, closed_with = run(exchange(url, [start()], headers))
        assert (last_error(received)["code"], closed_with) == ("unauthorized", 1008)
    for headers, url in (({"Authorization": "Bearer s3cret"}, strict.ws), (None, strict.ws + "?api_key=other-key")):
        received, closed_with = run(exchange(url, [start(), '{"type": "end"}'], headers))
        assert [json.loads(m)["type"] for m in received] == ["ready", "done"] and closed_with == 1000
    strict.wait_idle()


def test_client_api_key(strict):
    with StreamClient(strict.ws, api_key="s3cret") as client:
        client.start("enhance", 16000)
        assert client.stream(signal(0.1, 16000), 400).output.shape == (1600, 1)
    with StreamClient(strict.ws) as client, pytest.raises(StreamError, match="unauthorized"):
        client.start("enhance", 16000)


def test_rest_needs_the_api_key(strict):
    with httpx.Client(base_url=strict.http) as http:
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/v1/models", params={"api_key": "other-key"}).status_code == 200
        assert http.get("/healthz").status_code == 200  # probes stay open for the orchestrator


def test_capacity_gives_1013_then_frees_up(strict):
    auth = {"Authorization": "Bearer s3cret"}

    async def main():
        holders = [AsyncStreamClient(strict.ws, api_key="s3cret") for _ in range(2)]
        for holder in holders:
            await holder.start("enhance", 16000)
        received, closed_with = await exchange(strict.ws, [start()], auth)
        for holder in holders:
            await holder.end()
            await holder.close()
        return received, closed_with

    received, closed_with = run(main())
    assert (last_error(received)["code"], closed_with) == ("at_capacity", 1013)
    strict.wait_idle()
    received, closed_with = run(exchange(strict.ws, [start(), '{"type": "end"}'], auth))
    assert closed_with == 1000  # capacity is back once the holders left


def test_idle_connection_is_closed(tmp_path):
    async def main(url):
        async with connect(url) as ws:
            await ws.send(start())
            assert json.loads(await ws.recv())["type"] == "ready"
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))  # then silence
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return message, ws.close_code

    with running_server(tmp_path, idle_timeout=0.3) as srv:
        message, closed_with = run(main(srv.ws))
        assert (message["code"], closed_with) == ("idle_timeout", 1008)
        srv.wait_idle()
