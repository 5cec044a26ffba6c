"""Engine-only throughput: N streams pushed as fast as the engine takes them, batched vs per-session.

No HTTP here (benchmarks/load.py measures the real server with paced real-time clients): each of
``--streams`` sessions sends ``--seconds`` of 16 kHz noise in 16 ms messages, awaiting each output
like a client would, all sessions at once. Printed per mode (``max_batch=32`` and ``max_batch=1``):

- speed: seconds of audio processed per wall-clock second (all streams together);
- rtf: model compute seconds / seconds of audio (summed over streams), lower is better;
- mean batch, steps, and the engine's chunk latency (queueing + step) p50/p99.

    nice -n 10 python benchmarks/engine_batching.py [--model enhance] [--streams 32] [--seconds 4] [--max-wait-ms 4]

"speed x" is how many real-time streams the engine keeps up with in that mode (when --streams is at least
that many, so batches fill as they would). Figures vary with machine load (the
load average is printed before and after); this prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np

from wavestream.engine import Engine
from wavestream.evaluate.harness import machine_load

RATE, CHUNK = 16000, 256


async def run_mode(model: str, streams: int, seconds: float, max_batch: int, workers: int,
                   max_wait: float | None = None) -> dict:
    engine = Engine(max_batch=max_batch, max_wait=max_wait, workers=workers, max_sessions=streams)
    await engine.start()
    engine.load(model)
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (int(RATE * seconds), 1)).astype(np.float32)
    sessions = [engine.open_session(model, RATE, 1) for _ in range(streams)]

    async def client(session):
        for start in range(0, len(audio), CHUNK):
            await session.process(audio[start:start + CHUNK])
        await session.finish()

    begin = time.perf_counter()
    await asyncio.gather(*(client(s) for s in sessions))
    wall = time.perf_counter() - begin
    stats = engine.stats()
    await engine.aclose()
    latency = stats["models"][model]["chunk_latency_ms"]
    return {"max_batch": max_batch, "speed": streams * seconds / wall, "rtf": stats["rtf"],
            "mean_batch": stats["mean_batch"], "steps": stats["steps"], "p50_ms": latency["p50"],
            "p99_ms": latency["p99"], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="enhance")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-wait-ms", type=float, default=None,
                        help="longest wait for a fuller batch (default: the engine's, a quarter of the model's hop)")
    args = parser.parse_args()
    max_wait = None if args.max_wait_ms is None else args.max_wait_ms / 1000
    print(f"model={args.model} streams={args.streams} seconds={args.seconds} workers={args.workers} "
          f"max_wait_ms={args.max_wait_ms if max_wait is not None else 'default'}")
    print(f"machine: {machine_load()}")
    print(f"{'mode':<12}{'speed x':>9}{'rtf':>9}{'batch':>7}{'steps':>7}{'p50 ms':>9}{'p99 ms':>9}{'wall s':>8}")
    for max_batch in (32, 1):
        r = asyncio.run(run_mode(args.model, args.streams, args.seconds, max_batch, args.workers, max_wait))
        mode = "batched" if max_batch > 1 else "per-session"
        print(f"{mode:<12}{r['speed']:9.1f}{r['rtf']:9.4f}{r['mean_batch']:7.1f}{r['steps']:7d}"
              f"{r['p50_ms']:9.1f}{r['p99_ms']:9.1f}{r['wall_s']:8.2f}", flush=True)
    print(f"machine: {machine_load()}")


if __name__ == "__main__":
    main()
