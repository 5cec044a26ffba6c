"""Load benchmark: N concurrent real-time streams against a real server, batched vs per-session.

For each mode the benchmark starts `wavestream serve` in a subprocess on a loopback port (batched:
the server's ``--max-batch``; per-session: ``--max-batch 1``; ``--processes N`` server processes),
then runs levels of N streams at once. Every stream sends 16 ms chunks of 16 kHz audio paced by the
wall clock (random phase, like independent clients) for ``--seconds`` and reads the output as it
comes. ``--repeat R`` runs the whole sweep R times, each on a fresh server, and reports the median
of the largest N per run; every row prints the machine's load average (1 min).

Reported per level:
- server latency per chunk (receive -> output sent), from the per-message list the server puts in
  ``done.stats.chunk_latency_ms`` when a stream starts with ``"debug": true``;
- client lag per chunk: from sending a chunk to receiving the output that covers it (the network,
  queueing in front of the server and the server itself; not the model's algorithmic latency);
- CPU cores used by the server (all its processes) and by this load generator (they share the
  machine: the generator frames its WebSockets itself to cost little, see ``_Client``).

A level *holds real time* when every stream finished and kept up: the median client lag over the
last second of the streams is below ``--budget-ms``. A server that cannot keep pace builds a
backlog, so its lag grows for as long as the streams run; a passing hiccup of the machine (the
p99 shows those) does not. The first ``--warmup`` seconds of each stream are left out of the
figures.

    nice -n 10 python benchmarks/load.py [--levels 1,10,20,30,40,50,60,80] [--seconds 5] [--model enhance]
                                         [--processes 2] [--modes batched] [--repeat 3]

Figures vary with machine load; this prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import heapq
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

try:  # websockets' C masking helper, as websockets itself picks it
    from websockets.speedups import apply_mask
except ImportError:
    from websockets.utils import apply_mask

RATE, CHUNK = 16000, 256  # 16 ms chunks at 16 kHz


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`wavestream serve` in a subprocess (``processes`` of them on one port); stopped with SIGINT (graceful)."""

    def __init__(self, model: str, max_batch: int | None, workers: int | None, processes: int = 1):
        self.port = free_port()
        cmd = [sys.executable, "-m", "wavestream.cli", "serve", "--port", str(self.port), "--preload", model,
               "--max-sessions", "1000", "--idle-timeout", "0", "--max-message-bytes", "1048576",
               "--log-level", "warning", "--data-dir", f"/tmp/ws-load-{self.port}", "--processes", str(processes)]
        if max_batch:
            cmd += ["--max-batch", str(max_batch)]
        if workers:
            cmd += ["--workers", str(workers)]
        self.process = subprocess.Popen(cmd)
        deadline = time.monotonic() + 180
        while listening(self.port) < processes:  # every server process accepts connections
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream"

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (all threads of all its processes)."""
        return sum(_cpu_seconds(pid) for pid in _process_tree(self.process.pid))

    def stop(self) -> None:
        self.process.send_signal(2)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def listening(port: int) -> int:
    """How many sockets listen on ``port`` (Linux: /proc/net/tcp*), e.g. the processes of one server."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{pid}/children") as f:
        for child in f.read().split():
            pids += _process_tree(int(child))
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class StreamResult:
    server_ms: list[float]
    client_ms: list[float]
    ok: bool
    tail_ms: list[float] = field(default_factory=list)  # client lag over the last second


def speech_like(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    x = 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * sum(np.sin(k * phase) / k for k in range(1, 8))
    return (x + 0.02 * rng.standard_normal(len(t))).astype("<f4").tobytes()


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


class _Client(asyncio.Protocol):
    """One stream's WebSocket connection, framed here by hand (RFC 6455) and driven by callbacks.

    The load generator shares the machine with the server, so it must cost little per message:
    a general WebSocket client spends about as much CPU per message as the server's whole protocol
    stack, which would halve what the benchmark can show. So: one write per message, frames
    parsed from one buffer, no task, queue or timer per stream or per message (one pacing loop
    drives all streams). The handshake and every frame are still real; the server cannot tell."""

    def __init__(self, host: str, path: str, warmup_chunks: int):
        self.host, self.path = host, path
        self.key = base64.b64encode(os.urandom(16))
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connected = loop.create_future()  # the handshake's outcome
        self.opened = loop.create_future()     # the `ready` message
        self.finished = loop.create_future()   # `done`, an error or a lost connection
        self.buffer = bytearray()
        self.upgraded = False
        self.warmup_chunks = warmup_chunks
        self.hold = 0
        self.sent_at: list[float] = []
        self.client_ms: list[float] = []
        self.received = self.covered = 0
        self.done: dict | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        % (self.path.encode(), self.host.encode(), self.key))

    def connection_lost(self, exc) -> None:
        for future in (self.connected, self.opened, self.finished):
            if not future.done():
                future.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest())
            head = bytes(buf[:end]).lower()
            self.upgraded = head.startswith(b"http/1.1 101") and b"sec-websocket-accept: " + accept.lower() in head
            del buf[:end + 4]
            self.connected.set_result(self.upgraded)
            if not self.upgraded:
                return
        pos = 0
        while len(buf) - pos >= 2:  # server frames: unmasked, never fragmented by uvicorn
            opcode, size, start = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                size, start = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                size, start = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
            if len(buf) - start < size:
                break
            pos = start + size
            if opcode == BINARY:
                self._audio(size // 4)
            elif opcode == TEXT:
                self._text(json.loads(buf[start:pos]))
            elif opcode == PING:
                self._frame(0xA, bytes(buf[start:pos]))
            elif opcode == CLOSE:
                self.transport.close()
        del buf[:pos]

    def _audio(self, samples: int) -> None:
        now = time.monotonic()
        self.received += samples
        # chunk k is fully answered once (k + 1) * CHUNK - hold output samples are out
        while self.covered < len(self.sent_at) and (self.covered + 1) * CHUNK - self.hold <= self.received:
            if self.covered >= self.warmup_chunks:
                self.client_ms.append(1000 * (now - self.sent_at[self.covered]))
            self.covered += 1

    def _text(self, msg: dict) -> None:
        if msg["type"] == "ready":
            self.hold = msg["model"]["latency_samples"]  # output the model holds back (its lookahead)
            self.opened.set_result(msg)
        elif msg["type"] in ("done", "error"):
            self.done = msg if msg["type"] == "done" else None
            for future in (self.opened, self.finished):
                if not future.done():
                    future.set_result(None)
            self.transport.close()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            self._frame(TEXT, data.encode())
        else:
            self.sent_at.append(time.monotonic())
            self._frame(BINARY, data)

    def _frame(self, opcode: int, payload: bytes) -> None:
        """One final frame, masked with a fresh key as a client must."""
        n = len(payload)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else \
            bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big") if n < 65536 else \
            bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        if not self.transport.is_closing():
            self.transport.write(head + key + apply_mask(payload, key))


async def one_stream(url: str, model: str, warmup_chunks: int) -> _Client | None:
    """Connect and start a stream; None if the server refused it."""
    netloc, path = url.split("//", 1)[1].split("/", 1)
    host, port = netloc.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: _Client(netloc, "/" + path, warmup_chunks), host, int(port))
    if await client.connected:
        client.send(json.dumps({"type": "start", "model": model, "sample_rate": RATE, "encoding": "pcm_f32le",
                                "debug": True}))
        if await client.opened:
            return client
    client.transport.close()
    return None


async def pace(clients: list[_Client], audio: list[list[bytes]], phases: list[float]) -> None:
    """Send every stream's chunks on the wall clock (chunk k of stream i at its phase + k hops), then `end`.

    One loop for all streams: each wake sends every chunk that is due, so the generator's timer
    costs do not grow with the number of streams."""
    period = CHUNK / RATE
    t0 = time.monotonic() + 0.05
    due = [(t0 + phase, i, 0) for i, phase in enumerate(phases)]
    heapq.heapify(due)
    while due:
        wait = due[0][0] - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        # event loop timers have millisecond resolution: what falls due within one goes now, or the
        # loop would spin on sub-millisecond sleeps
        now = time.monotonic() + 0.001
        while due and due[0][0] <= now:
            at, i, k = heapq.heappop(due)
            chunks = audio[i % len(audio)]
            if k < len(chunks):
                clients[i].send(chunks[k])
                heapq.heappush(due, (at + period, i, k + 1))
            else:
                clients[i].send('{"type": "end"}')


async def run_level(url: str, model: str, n: int, seconds: float, warmup: float) -> list[StreamResult]:
    chunk_bytes = CHUNK * 4
    audio = [speech_like(seconds, seed) for seed in range(min(n, 8))]
    audio = [[a[i:i + chunk_bytes] for i in range(0, len(a) - chunk_bytes + 1, chunk_bytes)] for a in audio]
    warmup_chunks = int(warmup * RATE / CHUNK)
    opened = await asyncio.gather(*(one_stream(url, model, warmup_chunks) for _ in range(n)), return_exceptions=True)
    clients = [c for c in opened if isinstance(c, _Client)]
    period = CHUNK / RATE
    if len(clients) == n:  # random phases, like independent clients
        sender = asyncio.create_task(pace(clients, audio, [random.uniform(0, period) for _ in range(n)]))
        # a stalled level fails instead of hanging
        await asyncio.wait([sender, *(c.finished for c in clients)], timeout=3 * seconds + 30)
        sender.cancel()
    results = []
    for c in clients:
        c.transport.close()
        if c.done is None:
            results.append(StreamResult([], c.client_ms, False))
        else:
            # the server lists latencies of messages that produced output; the first ones are warm-up
            server_ms = c.done["stats"]["chunk_latency_ms"][warmup_chunks:]
            results.append(StreamResult(server_ms, c.client_ms, True, c.client_ms[-RATE // CHUNK:]))
    return results + [StreamResult([], [], False)] * (n - len(clients))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def level_cells(results: list, budget_ms: float) -> tuple[str, bool]:
    """The latency cells of one level's table row (server p50/p99, client p50/p99, tail p50) and
    whether the level holds real time (every stream ok and the median last-second lag within budget)."""
    server_ms = [v for r in results for v in r.server_ms]
    client_ms = [v for r in results for v in r.client_ms]
    tail_ms = [v for r in results for v in r.tail_ms]
    cells = " | ".join(f"{v:.2f}" for v in (pct(server_ms, 50), pct(server_ms, 99), pct(client_ms, 50),
                                            pct(client_ms, 99), pct(tail_ms, 50)))
    return cells, all(r.ok for r in results) and pct(tail_ms, 50) < budget_ms


def run_client(level) -> list[StreamResult]:
    """One level on this process's event loop (uvloop when installed: less CPU per message)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(level)
    return uvloop.run(level)


def sweep(args, mode: str, max_batch: int | None, run: int) -> int:
    """One ascending sweep of the levels on a fresh server; the largest N that held real time."""
    server = Server(args.model, max_batch, args.workers, args.processes)
    best, misses = 0, 0
    try:
        for n in [int(v) for v in args.levels.split(",")]:
            wall, server_cpu, own = time.monotonic(), server.cpu_seconds(), os.times()
            results = run_client(run_level(server.url, args.model, n, args.seconds, args.warmup))
            wall = time.monotonic() - wall
            server_cpu = (server.cpu_seconds() - server_cpu) / wall
            client_cpu = (os.times().user + os.times().system - own.user - own.system) / wall
            cells, holds = level_cells(results, args.budget_ms)
            print(f"| {mode} | {run} | {n} | {cells} | {server_cpu:.2f} | {client_cpu:.2f} | "
                  f"{os.getloadavg()[0]:.2f} | {'yes' if holds else 'no'} |", flush=True)
            if holds:
                best = n
            else:
                misses += 1
                if misses == 2:  # past the knee: higher levels only take longer to fail
                    break
    finally:
        server.stop()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,20,30,40,50,60,80", help="stream counts to try, ascending")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per stream at each level")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at the start of each stream to ignore")
    parser.add_argument("--budget-ms", type=float, default=100.0,
                        help="median client lag over the last second that still counts as keeping up")
    parser.add_argument("--model", default="enhance")
    parser.add_argument("--processes", type=int, default=1, help="server processes sharing the port")
    parser.add_argument("--workers", type=int, default=None, help="engine threads per server process "
                                                                  "(default: the cores divided among the processes)")
    parser.add_argument("--max-batch", type=int, default=None, help="batched mode's max batch (default: the server's)")
    parser.add_argument("--modes", default="batched,per-session")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps per mode, each on a fresh server; the "
                                                              "median of their largest N is reported")
    args = parser.parse_args()
    modes = {"batched": args.max_batch, "per-session": 1}

    print(f"# load: {args.model}, 16 ms chunks at 16 kHz, {args.seconds:g} s per stream, real time = "
          f"median client lag over the last second < {args.budget_ms:g} ms; {os.cpu_count()} CPUs, "
          f"{args.processes} server process(es); load average at start {os.getloadavg()[0]:.2f}\n")
    print("| mode | run | streams | server p50 ms | server p99 ms | client p50 ms | client p99 ms | last-second p50 ms "
          "| server CPU | client CPU | load | real time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    best: dict[str, list[int]] = {}
    for mode in args.modes.split(","):
        best[mode] = [sweep(args, mode, modes[mode], run) for run in range(1, args.repeat + 1)]
    print()
    median = {mode: sorted(runs)[len(runs) // 2] for mode, runs in best.items()}
    for mode, runs in best.items():
        print(f"largest N holding real time, {mode}: {median[mode]} (runs: {', '.join(map(str, runs))})")
    if median.get("per-session") and "batched" in median:
        print(f"batching / per-session streams: {median['batched'] / median['per-session']:.1f}x")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
