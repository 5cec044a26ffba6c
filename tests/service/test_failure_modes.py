"""Failure modes found by hostile testing against a running server (issue 12): each one ends one
client's session with a clear error and leaves the server serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.engine.models import FilterModel
from tests.service.conftest import GatedModel, run, running_server, signal, start_server
from tests.service.test_errors import exchange, last_error, start
from tests.service.test_rest import audio_bytes
from wavestream.client.stream_client import AsyncStreamClient, StreamError
from wavestream.models.registry import _REGISTRY, UntrainedModelError, register
from wavestream.service.app import Service
from wavestream.service.settings import ServiceSettings
from wavestream.streaming.pcm import encode_pcm
from wavestream.streaming.testing import ATOL


def test_a_client_that_stops_reading_is_dropped(tmp_path):
    """It keeps sending but never reads: once our output cannot go out for ``send_timeout``, its
    session ends (so ``max_sessions`` such clients cannot lock everyone out)."""
    x = signal(2.0, 16000)
    chunk = encode_pcm(signal(2.0, 16000, seed=1), "pcm_s16le")  # 64 kB in, 128 kB out

    async def stalled(url: str) -> None:
        sock = socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
        ws = await connect(url, sock=sock, max_queue=1, max_size=None)  # reads stop once 1 is queued
        await ws.send(json.dumps({"type": "start", "model": "test-delay", "sample_rate": 16000,
                                  "encoding": "pcm_s16le", "output_encoding": "pcm_f32le"}))
        try:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(400):  # ~50 MB of output: far more than every buffer on the way holds
                    await ws.send(chunk)
        finally:
            ws.transport.abort()  # also when cancelled: the server must not wait for this socket at stop

    with running_server(tmp_path, send_timeout=0.5, max_sessions=2) as srv:
        async def main():
            sender = asyncio.create_task(stalled(srv.ws))
            # the server must drop it on its own: we neither read nor close
            while not srv.service.metrics.registry.get_sample_value("wavestream_errors_total",
                                                                    {"code": "send_timeout"}):
                await asyncio.sleep(0.05)
                assert not sender.done() or sender.exception() is None
            async with AsyncStreamClient(srv.ws) as client:  # a reading client is served as ever
                await client.start("test-delay", 16000)
                out = (await client.stream(x, 320)).output
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            return out

        out = run(asyncio.wait_for(main(), 60))
        assert np.abs(out - srv.reference("test-delay", x, 16000).audio).max() <= ATOL
        srv.wait_idle()


def test_untrained_models_are_refused_unless_allowed(tmp_path):
    """Without --allow-untrained the server serves no random weights: streams, files and jobs of an
    untrained model get a clear error, and preloading one stops the start."""
    wav = audio_bytes(signal(0.2, 16000), 16000)
    with running_server(tmp_path, allow_untrained=False) as srv, httpx.Client(base_url=srv.http, timeout=60) as http:
        received, closed_with = run(exchange(srv.ws, [start(model="test-filter")]))
        assert (last_error(received)["code"], closed_with) == ("unknown_model", 1007)
        assert "--allow-untrained" in last_error(received)["message"]
        for path, params in (("/v1/process/test-filter", {}), ("/v1/jobs", {"model": "test-filter"})):
            r = http.post(path, params=params, content=wav)
            assert r.status_code == 422 and "no trained weights" in r.json()["detail"], r.text
        assert http.post("/v1/process/enhance", content=wav).status_code == 200  # trained: served
        srv.wait_idle()

    async def preload_untrained():
        service = Service(ServiceSettings(data_dir=tmp_path, allow_untrained=False, preload=["test-filter"]))
        try:
            await service.start()
        finally:
            await service.engine.aclose()

    with pytest.raises(UntrainedModelError, match="test-filter"):
        run(preload_untrained())


def damaged_flac(kind: str) -> bytes:
    data = audio_bytes(signal(1.0, 16000, seed=8), 16000, "FLAC", "PCM_16")
    if kind == "truncated":
        return data[:len(data) // 2]
    if kind == "corrupted":
        return data[:200] + bytes(len(data) - 400) + data[-200:]
    # STREAMINFO's 36-bit total-samples field (block bytes 13-17 after "fLaC" and the block header)
    header = bytearray(data)
    field = int.from_bytes(header[21:26], "big")
    total = field & ((1 << 36) - 1)
    header[21:26] = (field - total + 10 * total).to_bytes(5, "big")
    return bytes(header)


@pytest.mark.parametrize("kind", ["truncated", "corrupted", "claims_more_frames"])
def test_damaged_flac_is_a_clear_422_without_server_paths(server, http, kind):
    r = http.post("/v1/process/test-filter", content=damaged_flac(kind))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "damaged" in detail and str(server.settings.data_dir) not in detail and "upload-" not in detail
    assert http.get("/healthz").status_code == 200


def test_unreadable_upload_message_has_no_server_path(server, http):
    r = http.post("/v1/process/test-filter", content=b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    assert r.status_code == 415, r.text
    assert str(server.settings.data_dir) not in r.json()["detail"] and "upload-" not in r.json()["detail"]


def test_rest_refuses_deep_params_and_huge_samples(http):
    wav = audio_bytes(signal(0.2, 16000), 16000)
    deep = "[" * 2000 + "]" * 2000  # past the parser's recursion limit, inside the URL limit
    for params in (deep, '{"gain":' + "[" * 50 + "]" * 50 + "}"):
        r = http.post("/v1/process/test-filter", params={"params": params}, content=wav)
        assert r.status_code == 422 and "nested deeper" in r.json()["detail"], r.text[:300]
    r = http.post("/v1/jobs", params={"model": "test-filter", "params": deep}, content=wav)
    assert r.status_code == 422, r.text[:300]
    huge = np.full((1600, 1), 1e19, np.float32)
    r = http.post("/v1/process/test-filter", content=audio_bytes(huge, 16000))
    assert r.status_code == 422 and "full scale" in r.json()["detail"], r.text


@pytest.mark.parametrize("container", ["WAVEX", "RF64"])
def test_extensible_and_rf64_wav_are_accepted(server, http, container):
    x = signal(0.3, 16000, channels=2, seed=9)
    r = http.post("/v1/process/test-filter", content=audio_bytes(x, 16000, container))
    assert r.status_code == 200, r.text
    y, _ = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
    assert np.abs(y - server.reference("test-filter", x, 16000).audio).max() <= ATOL


def test_graceful_shutdown_ends_a_fast_sender_with_done(tmp_path):
    """A client that never stops sending faster than real time still gets its output up to where the
    server stopped reading, then ``done`` and close 1001 (not a 1012 cut after the timeout)."""
    srv = start_server(tmp_path, shutdown_timeout=20)
    x = signal(1.0, 16000, seed=13)
    stopped_in = []
    stopper = threading.Thread(target=lambda: stopped_in.append(timed(srv.stop)))

    async def fast():
        client = AsyncStreamClient(srv.ws)
        await client.start("test-filter", 16000)
        sent = 0
        try:
            for i in itertools.count():
                await client.send(x[(i * 320) % len(x):][:320])
                sent += 1
                if i == 50:
                    stopper.start()
                await asyncio.sleep(0)
        except StreamError as exc:
            assert exc.code == "ended"
        items = []
        while (item := await client.receive()) is not None:
            items.append(item)
        return np.concatenate(items), client.done, client.close_code, sent

    out, done, close_code, sent = run(asyncio.wait_for(fast(), 120))
    stopper.join()
    assert done is not None and done.reason == "shutdown" and close_code == 1001
    assert stopped_in[0] < 10, stopped_in  # drained at once, not after the 20 s shutdown_timeout
    n = done.stats["samples_in"]
    assert 0 < n <= 320 * sent and len(out) == n == done.stats["samples_out"]
    reference = srv.reference("test-filter", np.concatenate([x] * (n // len(x) + 1))[:n], 16000).audio
    assert np.abs(out - reference).max() <= ATOL


def timed(call) -> float:
    """Seconds ``call()`` took."""
    began = time.monotonic()
    call()
    return time.monotonic() - began


def test_metrics_count_jobs_off_the_event_loop(server, http):
    """A scrape counts the jobs by reading their files (seconds with many thousands): meanwhile the
    server answers ``/healthz`` and streams."""
    jobs = server.service.jobs
    gate, counting = threading.Event(), threading.Event()

    def slow_counts():
        counting.set()
        gate.wait(60)
        return type(jobs).counts(jobs)

    jobs.counts = slow_counts
    try:
        async def main():
            async with httpx.AsyncClient(base_url=server.http, timeout=30) as client:
                scrape = asyncio.create_task(client.get("/metrics"))
                await asyncio.to_thread(counting.wait, 30)
                health = await client.get("/healthz", timeout=5)
                gate.set()
                return health, await scrape

        health, scrape = run(asyncio.wait_for(main(), 60))
    finally:
        gate.set()
        del jobs.counts
    assert health.status_code == 200 and scrape.status_code == 200
    assert "wavestream_jobs" in scrape.text


def test_draining_server_answers_503_and_1013(tmp_path, gated_model):
    """While a stream drains (held mid-step), the server still answers: ``/readyz`` is 503 and a new
    stream gets 1013 ``shutting_down``; then the held stream ends with ``done``."""
    srv = start_server(tmp_path, shutdown_timeout=600)
    stopper = threading.Thread(target=srv.stop)

    async def main():
        async with AsyncStreamClient(srv.ws) as held:
            await held.start("test-gated", 16000)
            await held.send(signal(0.1, 16000))
            await asyncio.to_thread(GatedModel.entered.wait)
            stopper.start()
            while not srv.service.draining:
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient(base_url=srv.http) as http:
                ready = await http.get("/readyz")
            received, closed_with = await exchange(srv.ws, [start(model="test-filter")])
            GatedModel.gate.set()
            while await held.receive() is not None:
                pass
            return ready, received, closed_with, held.done, held.close_code

    ready, received, closed_with, done, close_code = run(asyncio.wait_for(main(), 120))
    stopper.join()
    assert ready.status_code == 503 and ready.json()["draining"] is True
    assert (last_error(received)["code"], closed_with) == ("shutting_down", 1013)
    assert done is not None and done.reason == "shutdown" and close_code == 1001


class SlowBuildModel(FilterModel):
    """Its construction (as loading weights from a slow disk would) waits for ``gate``."""

    gate, building = threading.Event(), threading.Event()

    def __init__(self, **config):
        self.building.set()
        self.gate.wait()
        super().__init__(**config)


def test_model_load_does_not_stall_the_event_loop(tmp_path):
    """While a model is being built (for a stream, or to describe it in ``/v1/models``), the server
    answers other requests."""
    register("test-slow-build", "test")(SlowBuildModel)
    try:
        with running_server(tmp_path) as srv:
            async def answers_while_building(request):
                SlowBuildModel.gate.clear()
                SlowBuildModel.building.clear()
                waiting = asyncio.create_task(request)
                await asyncio.to_thread(SlowBuildModel.building.wait)
                async with httpx.AsyncClient(base_url=srv.http, timeout=30) as http:
                    health = await http.get("/healthz")
                SlowBuildModel.gate.set()
                return health, await waiting

            async def main():
                async with httpx.AsyncClient(base_url=srv.http, timeout=60) as http:
                    listed = await answers_while_building(http.get("/v1/models"))
                async with AsyncStreamClient(srv.ws) as client:
                    started = await answers_while_building(client.start("test-slow-build", 16000))
                    return listed, started, (await client.stream(signal(0.2, 16000), 320)).output

            (health, models), (health_too, _), out = run(asyncio.wait_for(main(), 60))
            assert health.status_code == health_too.status_code == 200
            assert "test-slow-build" in [m["name"] for m in models.json()["models"]]
            assert np.abs(out - srv.reference("test-slow-build", signal(0.2, 16000), 16000).audio).max() <= ATOL
    finally:
        SlowBuildModel.gate.set()
        _REGISTRY.pop("test-slow-build", None)


class SlowStepModel(FilterModel):
    """Its step (as a large model's would) waits for ``gate``; ``calls`` counts the steps."""

    gate, stepping = threading.Event(), threading.Event()
    calls = 0

    def step(self, x, state):
        type(self).calls += 1
        self.stepping.set()
        self.gate.wait()
        return super().step(x, state)


def test_a_session_start_steps_no_model_on_the_event_loop(tmp_path):
    """A new stream's pipeline learns the model's output layout from one probe step: it runs on a
    worker thread (the server answers meanwhile), once, and the session opened on the event loop
    reuses what it found."""
    register("test-slow-step", "test")(SlowStepModel)
    try:
        with running_server(tmp_path) as srv:
            async def main():
                SlowStepModel.gate.clear()
                async with AsyncStreamClient(srv.ws) as client:
                    starting = asyncio.create_task(client.start("test-slow-step", 16000))
                    await asyncio.to_thread(SlowStepModel.stepping.wait)
                    async with httpx.AsyncClient(base_url=srv.http, timeout=30) as http:
                        health = await http.get("/healthz")
                    SlowStepModel.gate.set()
                    await starting
                    probes = SlowStepModel.calls
                    return health, probes, (await client.stream(signal(0.2, 16000), 320)).output

            health, probes, out = run(asyncio.wait_for(main(), 60))
            assert health.status_code == 200
            assert probes == 1
            assert np.abs(out - srv.reference("test-slow-step", signal(0.2, 16000), 16000).audio).max() <= ATOL
    finally:
        SlowStepModel.gate.set()
        _REGISTRY.pop("test-slow-step", None)
