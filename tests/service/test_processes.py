"""`wavestream serve --processes N`: N complete servers on one port (SO_REUSEPORT), one supervisor.

Real processes on loopback. Which server holds a connection is read from Linux's socket tables
(/proc), so the tests see the kernel's spreading as it is, without the servers having to say.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import os
import signal
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.service.conftest import free_port
from tests.waiting import answers_ready, wait_until
from wavestream.client import AsyncStreamClient
from wavestream.engine import Output, StreamPipeline, load_stream_model
from wavestream.service.app import make_server
from wavestream.service.settings import ServiceSettings

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc socket tables")

RATE = 16000


def children(pid: int) -> list[int]:
    """The server processes a supervisor started (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [int(p) for p in f.read().split()]
    servers = []
    for child in pids:
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if b"spawn_main" in f.read():
                servers.append(child)
    return servers


def sockets(pid: int, port: int, state: str) -> int:
    """Sockets of process ``pid`` on local ``port`` in TCP ``state`` ("0A" listen, "01" established)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                found += int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == state and cols[9] in inodes
    return found


class Group:
    """`wavestream serve --processes 2` in a subprocess."""

    def __init__(self, tmp_path: Path, processes: int = 2):
        self.port = free_port()
        self.processes = processes
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wavestream.cli", "serve", "--processes", str(processes), "--port", str(self.port),
             "--preload", "enhance", "--max-sessions", "40", "--shutdown-timeout", "20", "--data-dir", str(tmp_path),
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream"
        self.wait_serving()

    def servers(self) -> list[int]:
        return children(self.process.pid)

    def wait_serving(self) -> None:
        """Until every server process listens on the port."""
        def serving() -> bool:
            servers = self.servers()
            return len(servers) == self.processes and all(sockets(p, self.port, "0A") == 1 for p in servers)

        wait_until(serving, "the server processes did not all come up", self.process, timeout=180)

    def holder(self) -> dict[int, int]:
        """Server pid -> its established connections on the port."""
        return {pid: sockets(pid, self.port, "01") for pid in self.servers()}

    def stop(self, sig=signal.SIGINT) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        output, _ = self.process.communicate(timeout=120)
        return output


def speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * RATE), 1))).astype(np.float32)


def expected(x: np.ndarray) -> np.ndarray:
    pipeline = StreamPipeline(load_stream_model("enhance"), RATE, 1)
    return Output.concat([pipeline.process(x), pipeline.finish()]).audio


async def open_on_every_server(group: Group, most: int = 40) -> list[AsyncStreamClient]:
    """Open streams until every server process holds at least one (the kernel spreads them by hash)."""
    clients = []
    while len(clients) < most:
        client = AsyncStreamClient(group.url)
        await client.start("enhance", RATE, encoding="pcm_f32le")
        clients.append(client)
        if all(group.holder().values()):
            return clients
    raise AssertionError(f"{most} streams, and still a server process without one: {group.holder()}")


def test_processes_share_one_port_and_every_stream_equals_the_model(tmp_path):
    group = Group(tmp_path)
    try:
        assert len(set(group.servers())) == 2

        async def main():
            clients = await open_on_every_server(group)
            inputs = [speech(1.0, seed) for seed in range(len(clients))]
            results = await asyncio.gather(*(c.stream(x, 320) for c, x in zip(clients, inputs, strict=True)))
            for client in clients:
                await client.close()
            return inputs, results

        inputs, results = asyncio.run(main())
        for x, result in zip(inputs, results, strict=True):
            assert result.done.reason == "end"
            np.testing.assert_allclose(result.output, expected(x), atol=1e-5)
    finally:
        output = group.stop()
    assert group.process.returncode == 0, output
    assert "Traceback" not in output


def test_a_dead_server_process_is_replaced_and_the_others_keep_streaming(tmp_path):
    group = Group(tmp_path)
    try:
        x = speech(1.0, 7)

        async def main():
            client = AsyncStreamClient(group.url)
            await client.start("enhance", RATE, encoding="pcm_f32le")
            holders = group.holder()
            survivor = next(pid for pid, n in holders.items() if n)
            victim = next(pid for pid in holders if pid != survivor)
            received = []

            async def collect():
                while (item := await client.receive()) is not None:
                    received.append(item)

            collector = asyncio.create_task(collect())
            half = len(x) // 2
            for pos in range(0, half, 320):
                await client.send(x[pos:min(pos + 320, half)])
            os.kill(victim, signal.SIGKILL)  # the other server process dies mid-stream
            for pos in range(half, len(x), 320):
                await client.send(x[pos:pos + 320])
            await client.end()
            await collector
            await client.close()
            return survivor, victim, np.concatenate(received)

        survivor, victim, output = asyncio.run(main())
        np.testing.assert_allclose(output, expected(x), atol=1e-5)  # the stream on the survivor went on
        group.wait_serving()  # the supervisor started a new server in place of the dead one
        assert survivor in group.servers() and victim not in group.servers()

        async def again():
            clients = await open_on_every_server(group)  # the new server takes streams too
            results = await asyncio.gather(*(c.stream(x, 320) for c in clients))
            for client in clients:
                await client.close()
            return results

        for result in asyncio.run(again()):
            np.testing.assert_allclose(result.output, expected(x), atol=1e-5)
    finally:
        output = group.stop()
    assert group.process.returncode == 0, output


def test_sigterm_drains_every_server_process(tmp_path):
    """An orchestrator's stop reaches every server: each stream gets its output, ``done`` (shutdown)
    and close 1001, and the group exits 0."""
    group = Group(tmp_path)
    x = speech(0.5, 3)

    async def main():
        clients = await open_on_every_server(group)
        for client in clients:
            await client.send(x)
            await client.flush()  # its audio is in: the count below is exact
        group.process.send_signal(signal.SIGTERM)
        for client in clients:
            while await client.receive(timeout=60) is not None:
                pass
        return clients

    try:
        clients = asyncio.run(main())
    finally:
        output = group.stop(signal.SIGTERM)
    for client in clients:
        assert client.done is not None and client.done.reason == "shutdown" and client.close_code == 1001
        assert client.done.stats["samples_in"] == len(x)
    assert group.process.returncode == 0, output
    assert "Traceback" not in output


def test_a_server_that_cannot_start_stops_the_group(tmp_path):
    """Starting again a server that failed before it ever served would only fail again: the
    supervisor stops with the failure instead of looping."""
    port = free_port()
    process = subprocess.run(
        [sys.executable, "-m", "wavestream.cli", "serve", "--processes", "2", "--port", str(port),
         "--preload", "no-such-model", "--data-dir", str(tmp_path), "--log-level", "warning"],
        capture_output=True, text=True, timeout=240)
    assert process.returncode != 0
    assert "before it was ready" in process.stdout + process.stderr


def test_a_server_says_it_serves_before_it_answers_anything(tmp_path):
    """The supervisor takes a server that dies without having said it serves for one that could not
    start, and stops the whole group: so the word comes before any request or stream is answered,
    however slowly it is said (a report from a polling thread once lost a group its streams)."""
    settings = ServiceSettings(host="127.0.0.1", port=free_port(), data_dir=tmp_path, preload=[])
    server = make_server(settings, log_level="warning")
    order = []

    def say_slowly():
        time.sleep(0.5)  # nothing may be answered meanwhile
        order.append("said")

    server.on_started = say_slowly
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: answers_ready(f"http://127.0.0.1:{settings.port}"), "the server did not answer")
        order.append("answered")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert order == ["said", "answered"]


def test_a_port_in_use_is_refused(tmp_path):
    """SO_REUSEPORT would let a second group share a port that is in use, even with another server
    group: the supervisor refuses a taken port, as a single server does."""
    group = Group(tmp_path)
    try:
        process = subprocess.run(
            [sys.executable, "-m", "wavestream.cli", "serve", "--processes", "2", "--port", str(group.port),
             "--data-dir", str(tmp_path / "other")], capture_output=True, text=True, timeout=120)
        assert process.returncode == 1
        assert "Address already in use" in process.stdout
        assert len(group.servers()) == 2  # the running group is untouched
    finally:
        group.stop()


def samples(text: str) -> dict[str, float]:
    """A Prometheus text exposition as ``{'name{labels}': value}``."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def scrape(group: Group) -> tuple[int, dict[str, float]]:
    """``GET /metrics`` on a new connection: the server process that answered (read from /proc: the
    one whose connections grew once it accepted, before the request goes out), and the samples."""
    before = group.holder()
    conn = http.client.HTTPConnection("127.0.0.1", group.port, timeout=60)
    try:
        conn.connect()
        held: list[int] = []

        def accepted() -> bool:
            held[:] = [pid for pid, n in group.holder().items() if n > before.get(pid, 0)]
            return bool(held)

        wait_until(accepted, "no server process accepted the scrape", group.process)
        assert len(held) == 1, held  # the test opens nothing else meanwhile
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        return held[0], samples(response.read().decode())
    finally:
        conn.close()


def scrape_every_server(group: Group, most: int = 60) -> list[tuple[int, dict[str, float]]]:
    """Scrapes on new connections until each server process answered one (the kernel picks by hash)."""
    scrapes = []
    while len(scrapes) < most:
        scrapes.append(scrape(group))
        if {pid for pid, _ in scrapes} >= set(group.servers()):
            return scrapes
    raise AssertionError(f"{most} scrapes, and still a server process that answered none: {group.servers()}")


async def open_by_server(group: Group, most: int = 40) -> dict[int, list[AsyncStreamClient]]:
    """Started streams by the server process that holds each, until every process holds one."""
    by_server: dict[int, list[AsyncStreamClient]] = {pid: [] for pid in group.servers()}
    while sum(map(len, by_server.values())) < most:
        before = group.holder()
        client = AsyncStreamClient(group.url)
        await client.start("enhance", RATE, encoding="pcm_f32le")
        after = group.holder()
        by_server[next(pid for pid, n in after.items() if n > before.get(pid, 0))].append(client)
        if all(by_server.values()):
            return by_server
    raise AssertionError(f"{most} streams, and still a server process without one: {group.holder()}")


def wav(seconds: float, seed: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speech(seconds, seed), RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


SESSIONS = 'wavestream_sessions_total{model="enhance",outcome="end"}'
STREAM_SECONDS = 'wavestream_audio_seconds_total{model="enhance",via="stream"}'
PROCESS_SECONDS = 'wavestream_audio_seconds_total{model="enhance",via="process"}'
JOB_SECONDS = 'wavestream_audio_seconds_total{model="enhance",via="job"}'
ERRORS = 'wavestream_errors_total{code="invalid_json"}'
LATENCIES = 'wavestream_chunk_latency_seconds_count{model="enhance"}'
JOBS_DONE = 'wavestream_jobs{status="done"}'
CONNECTIONS, ACTIVE = "wavestream_websocket_connections", "wavestream_active_sessions"


def cumulative(values: dict[str, float]) -> dict[str, float]:
    """The samples that only ever grow: counters and histograms."""
    return {k: v for k, v in values.items() if k.split("{")[0].endswith(("_total", "_count", "_sum", "_bucket"))}


def test_metrics_describe_the_group_and_never_go_down_when_a_server_restarts(tmp_path):
    """Whichever server process answers a scrape, /metrics gives the group's figures: counters and
    histograms summed over every server, open sessions and connections over the live ones. A killed
    server takes its open streams with it but not its counts: no counter goes down."""
    group = Group(tmp_path)
    base = f"http://127.0.0.1:{group.port}"
    x = speech(0.5, 5)
    expected = {SESSIONS: 0, STREAM_SECONDS: 0.0, LATENCIES: 0}
    history: list[dict[str, float]] = []  # every scrape, in order

    def every_scrape_shows(figures: dict[str, float]) -> list[dict[str, float]]:
        scrapes = scrape_every_server(group)
        for pid, values in scrapes:
            for name, value in figures.items():
                assert values.get(name, 0) == pytest.approx(value), (pid, name, values.get(name))
        history.extend(values for _, values in scrapes)
        return [values for _, values in scrapes]

    def gauges_are(count: int) -> bool:
        _, values = scrape(group)
        history.append(values)
        return values[CONNECTIONS] == count and values[ACTIVE] == count

    async def until_gauges_are(count: int, what: str) -> None:
        # scrapes block: on a thread, so that the open streams' client loop goes on meanwhile
        await asyncio.to_thread(wait_until, lambda: gauges_are(count), what, group.process, 60)

    async def stream_all(clients: list[AsyncStreamClient]) -> None:
        results = await asyncio.gather(*(c.stream(x, 320) for c in clients))
        for client, result in zip(clients, results, strict=True):
            assert result.done.reason == "end"
            expected[SESSIONS] += 1
            expected[STREAM_SECONDS] += len(x) / RATE
            expected[LATENCIES] += result.done.stats["messages"]  # one latency per message answered
            await client.close()

    async def bad_json() -> None:
        async with connect(group.url) as ws:
            await ws.send("{oops")
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.recv()

    def job_done(job_id: str) -> bool:
        return httpx.get(f"{base}/v1/jobs/{job_id}").json()["status"] == "done"

    async def main():
        # streams open on both servers: the gauges add up
        by_server = await open_by_server(group)
        await until_gauges_are(sum(map(len, by_server.values())), "the open streams are not summed")
        # work on both servers: streams, errors, REST requests and a job (each on a new connection)
        await stream_all([c for clients in by_server.values() for c in clients])
        for _ in range(3):
            await bad_json()
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for seed in range(3):
                r = await http.post("/v1/process/enhance", content=wav(0.25, seed), headers={"Connection": "close"})
                assert r.status_code == 200
            job = (await http.post("/v1/jobs", params={"model": "enhance"}, content=wav(0.5, 9))).json()
        await asyncio.to_thread(wait_until, lambda: job_done(job["id"]), "the job did not finish", group.process, 120)
        expected.update({ERRORS: 3, PROCESS_SECONDS: 0.75, JOB_SECONDS: 0.5, JOBS_DONE: 1})
        await until_gauges_are(0, "closed streams are still counted")
        scrapes = await asyncio.to_thread(every_scrape_shows, {**expected, CONNECTIONS: 0, ACTIVE: 0})
        assert all(cumulative(values) == cumulative(scrapes[0]) for values in scrapes)  # batch sizes, RTF too

        # one server streams and closes; the other holds open streams, then is killed
        by_server = await open_by_server(group)
        victim, survivor = sorted(by_server, key=lambda pid: -len(by_server[pid]))
        await stream_all(by_server[survivor])
        await until_gauges_are(len(by_server[victim]), "the streams left open are not counted")
        os.kill(victim, signal.SIGKILL)
        # until the supervisor reaped it: a dying process may still hold its listener (then resets
        # what the kernel handed it) after /proc shows it without a command line
        await asyncio.to_thread(wait_until, lambda: not Path(f"/proc/{victim}").exists(),
                                "the killed server is still there", group.process)
        await until_gauges_are(0, "a dead server's streams are still counted")
        for client in by_server[victim]:
            with contextlib.suppress(Exception):
                await client.close()
        await asyncio.to_thread(group.wait_serving)  # the supervisor started a new server
        assert victim not in group.servers()
        await asyncio.to_thread(every_scrape_shows, {**expected, CONNECTIONS: 0, ACTIVE: 0})

        # the new server works too, and its counts add to those of the one it replaced
        by_server = await open_by_server(group)
        await stream_all([c for clients in by_server.values() for c in clients])
        await until_gauges_are(0, "closed streams are still counted")
        await asyncio.to_thread(every_scrape_shows, expected)

    try:
        asyncio.run(main())
        for earlier, later in pairwise(history):
            assert all(later.get(name, 0) >= value for name, value in cumulative(earlier).items()), \
                "a counter went down"
    finally:
        output = group.stop()
    assert group.process.returncode == 0, output
    assert "Traceback" not in output
