"""Capacity on Ray Serve: real-time streams through Ray's proxy to 1 and then 2 replicas.

Starts a local Ray cluster (``--cpus``), deploys wavestream with R replicas of ``--replica-cpus``
each, and runs the levels of benchmarks/load.py (16 ms chunks of 16 kHz audio paced by the wall
clock, real time = median client lag over the last second under the budget) against it.

    nice -n 10 python benchmarks/ray_capacity.py [--replicas 1,2] [--levels 1,5,10,20,30,40] [--seconds 5]

Figures vary with machine load; this prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import ray
from ray import serve

sys.path.insert(0, str(Path(__file__).parent))
from load import free_port, level_cells, run_level  # noqa: E402  (the load benchmark's stream driver)

from wavestream.service.ray_serve import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2", help="replica counts to measure")
    parser.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    parser.add_argument("--levels", default="1,5,10,20,30,40", help="stream counts to try, ascending")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--model", default="enhance")
    args = parser.parse_args()

    print(f"# Ray Serve: {args.model}, 16 ms chunks at 16 kHz, {args.seconds:g} s per stream, {args.cpus} CPUs "
          f"for Ray, {args.replica_cpus:g} per replica; real time = median client lag over the last second "
          f"< {args.budget_ms:g} ms\n")
    print("| replicas | streams | server p50 ms | server p99 ms | client p50 ms | client p99 ms | last-second p50 ms "
          "| real time |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    best = {}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for replicas in [int(r) for r in args.replicas.split(",")]:
            serve.run(build({"replicas": replicas, "num_cpus": args.replica_cpus, "max_sessions": 1000,
                             "idle_timeout": 0, "preload": args.model, "data_dir": tempfile.mkdtemp()}),
                      name="wavestream", route_prefix="/")
            time.sleep(2)
            best[replicas], misses = 0, 0
            for n in [int(v) for v in args.levels.split(",")]:
                results = asyncio.run(run_level(f"ws://127.0.0.1:{port}/v1/stream", args.model, n, args.seconds,
                                                args.warmup))
                cells, holds = level_cells(results, args.budget_ms)
                print(f"| {replicas} | {n} | {cells} | {'yes' if holds else 'no'} |", flush=True)
                if holds:
                    best[replicas] = n
                else:
                    misses += 1
                    if misses == 2:
                        break
            serve.delete("wavestream")
    finally:
        serve.shutdown()
        ray.shutdown()
    print()
    for replicas, n in best.items():
        print(f"largest N holding real time with {replicas} replica(s): {n}")


if __name__ == "__main__":
    main()
