"""Load benchmark: N concurrent real-time streams against a real server, batched vs per-session.

For each mode the benchmark starts `wavestream serve` in a subprocess on a loopback port (batched:
``--max-batch 32``; per-session: ``--max-batch 1``), then runs levels of N streams at once. Every
stream sends 16 ms chunks of 16 kHz audio paced by the wall clock (random phase, like independent
clients) for ``--seconds`` and reads the output as it comes.

Reported per level:
- server latency per chunk (receive -> output sent), from the per-message list the server puts in
  ``done.stats.chunk_latency_ms`` when a stream starts with ``"debug": true``;
- client lag per chunk: from sending a chunk to receiving the output that covers it (the network,
  queueing in front of the server and the server itself; not the model's algorithmic latency);
- CPU cores used by the server process and by this load generator (they share the machine).

A level *holds real time* when every stream finished and kept up: the median client lag over the
last second of the streams is below ``--budget-ms``. A server that cannot keep pace builds a
backlog, so its lag grows for as long as the streams run; a passing hiccup of the machine (the
p99 shows those) does not. The first ``--warmup`` seconds of each stream are left out of the
figures.

    nice -n 10 python benchmarks/load.py [--levels 1,10,20,30,40,50,60,80] [--seconds 5] [--model enhance]

Figures vary with machine load; this prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from websockets.asyncio.client import connect

RATE, CHUNK = 16000, 256  # 16 ms chunks at 16 kHz


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`wavestream serve` in a subprocess; stopped with SIGINT (graceful)."""

    def __init__(self, model: str, max_batch: int, workers: int | None):
        self.port = free_port()
        cmd = [sys.executable, "-m", "wavestream.cli", "serve", "--port", str(self.port), "--preload", model,
               "--max-batch", str(max_batch), "--max-sessions", "1000", "--idle-timeout", "0",
               "--max-message-bytes", "1048576", "--log-level", "warning", "--data-dir", f"/tmp/ws-load-{self.port}"]
        if workers:
            cmd += ["--workers", str(workers)]
        self.process = subprocess.Popen(cmd)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream"

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (all its threads)."""
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(2)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


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


async def one_stream(url: str, model: str, audio: bytes, warmup_chunks: int, phase: float) -> StreamResult:
    chunk_bytes = CHUNK * 4
    chunks = [audio[i:i + chunk_bytes] for i in range(0, len(audio) - chunk_bytes + 1, chunk_bytes)]
    sent_at: list[float] = []
    client_ms: list[float] = []
    await asyncio.sleep(phase)
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "start", "model": model, "sample_rate": RATE, "encoding": "pcm_f32le",
                                  "debug": True}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            return StreamResult([], [], False)
        hold = ready["model"]["latency_samples"]  # output the model holds back (its lookahead)

        async def send():
            t0 = time.monotonic()
            for k, chunk in enumerate(chunks):
                await asyncio.sleep(max(0.0, t0 + k * CHUNK / RATE - time.monotonic()))
                sent_at.append(time.monotonic())
                await ws.send(chunk)
            await ws.send('{"type": "end"}')

        sender = asyncio.create_task(send())
        received, covered, done = 0, 0, None
        async for message in ws:
            now = time.monotonic()
            if isinstance(message, bytes):
                received += len(message) // 4
                # chunk k is fully answered once (k + 1) * CHUNK - hold output samples are out
                while covered < len(sent_at) and (covered + 1) * CHUNK - hold <= received:
                    if covered >= warmup_chunks:
                        client_ms.append(1000 * (now - sent_at[covered]))
                    covered += 1
            else:
                msg = json.loads(message)
                if msg["type"] == "done":
                    done = msg
                elif msg["type"] == "error":
                    break
        await sender
    if done is None:
        return StreamResult([], client_ms, False)
    # the server lists latencies of messages that produced output; the first ones are warm-up
    server_ms = done["stats"]["chunk_latency_ms"][warmup_chunks:]
    return StreamResult(server_ms, client_ms, True, client_ms[-RATE // CHUNK:])


async def run_level(url: str, model: str, n: int, seconds: float, warmup: float) -> list[StreamResult]:
    audio = [speech_like(seconds, seed) for seed in range(min(n, 8))]
    warmup_chunks = int(warmup * RATE / CHUNK)
    period = CHUNK / RATE
    tasks = [asyncio.create_task(one_stream(url, model, audio[i % len(audio)], warmup_chunks,
                                            random.uniform(0, period))) for i in range(n)]
    await asyncio.wait(tasks, timeout=3 * seconds + 30)  # a stalled level fails instead of hanging
    for task in tasks:
        task.cancel()
    return [t.result() if t.done() and not t.cancelled() and t.exception() is None else StreamResult([], [], False)
            for t in tasks]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,20,30,40,50,60,80", help="stream counts to try, ascending")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per stream at each level")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at the start of each stream to ignore")
    parser.add_argument("--budget-ms", type=float, default=100.0,
                        help="median client lag over the last second that still counts as keeping up")
    parser.add_argument("--model", default="enhance")
    parser.add_argument("--workers", type=int, default=None, help="server engine workers (default: one per core)")
    parser.add_argument("--modes", default="batched,per-session")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    modes = {"batched": 32, "per-session": 1}

    print(f"# load: {args.model}, 16 ms chunks at 16 kHz, {args.seconds:g} s per stream, real time = "
          f"median client lag over the last second < {args.budget_ms:g} ms; {os.cpu_count()} CPUs\n")
    print("| mode | streams | server p50 ms | server p99 ms | client p50 ms | client p99 ms | last-second p50 ms "
          "| server CPU | client CPU | real time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    best: dict[str, int] = {}
    for mode in args.modes.split(","):
        server = Server(args.model, modes[mode], args.workers)
        best[mode] = 0
        misses = 0
        try:
            for n in levels:
                wall, server_cpu, own = time.monotonic(), server.cpu_seconds(), os.times()
                results = asyncio.run(run_level(server.url, args.model, n, args.seconds, args.warmup))
                wall = time.monotonic() - wall
                server_cpu = (server.cpu_seconds() - server_cpu) / wall
                client_cpu = (os.times().user + os.times().system - own.user - own.system) / wall
                cells, holds = level_cells(results, args.budget_ms)
                print(f"| {mode} | {n} | {cells} | {server_cpu:.2f} | {client_cpu:.2f} | "
                      f"{'yes' if holds else 'no'} |", flush=True)
                if holds:
                    best[mode] = n
                else:
                    misses += 1
                    if misses == 2:  # past the knee: higher levels only take longer to fail
                        break
        finally:
            server.stop()
    print()
    for mode, n in best.items():
        print(f"largest N holding real time, {mode}: {n}")
    if best.get("per-session"):
        print(f"batching / per-session streams: {best.get('batched', 0) / best['per-session']:.1f}x")


if __name__ == "__main__":
    main()
