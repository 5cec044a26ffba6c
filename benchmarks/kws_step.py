"""Cost of the keyword spotters' 10 ms streaming step against recomputing their whole window, one thread.

For ``kws`` (LMUFormer) and ``kws-spiking`` (spiking LMUFormer):

- step: one ``step`` of one 10 ms frame (160 samples) with the state carried, batch 1, as a server
  session runs one stream; includes all PyTorch per-call overhead;
- window recompute: what a model without carried state would do every 10 ms: ``model(x)`` over the
  LMU's whole 1.28 s window (theta = 128 frames) from a zero state;
- step RTF = step time / 10 ms; offline RTF = ``model(x)`` on ``--seconds`` of audio / its duration;
- batched step: one 10 ms step of ``--batch`` streams stacked, per stream (what the engine's
  scheduler does with many sessions);
- MFLOP: matmul and convolution FLOPs of one step and of one window recompute, counted by
  ``torch.utils.flop_counter`` (FFTs and elementwise ops are not counted): the work ratio, free of
  PyTorch's per-op overhead, which dominates a single 10 ms step of a model this small.

Medians over repeated calls; the figures vary with machine load (printed), less so with
``--cpu-time`` (the thread's CPU clock instead of the wall clock: time other processes take from
this one's core is not counted). Nothing is asserted.

    python benchmarks/kws_step.py [--seconds 10] [--steps 500] [--batch 32] [--cpu-time] \
        [--models kws,kws-spiking,kws-spiking=runs/R/best.safetensors]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from wavestream.evaluate.harness import machine_load
from wavestream.models.registry import load_model

clock = time.perf_counter  # or time.thread_time (--cpu-time)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def step_seconds(model, batch: int, steps: int) -> float:
    """Median seconds of one 10 ms step of ``batch`` streams, state carried across the calls."""
    x = torch.randn(batch, 1, steps * model.hop, generator=torch.Generator().manual_seed(0)) * 0.1
    state = model.init_state(batch)
    times = []
    for i in range(steps):
        chunk = x[..., i * model.hop:(i + 1) * model.hop]
        t = clock()
        _, state = model.step(chunk, state)
        times.append(clock() - t)
    return statistics.median(times[steps // 10:])  # the first calls build the LMU's tables


def mflop(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e6


def row(item: str, args: argparse.Namespace) -> str:
    name, _, weights = item.partition("=")  # a run's checkpoint loads with the config beside it
    model = load_model(name, weights or None)
    frame_s = model.hop / model.sample_rate
    window = int(model.blocks[0].memory.theta) * model.hop
    with torch.inference_mode():
        step = step_seconds(model, 1, args.steps)
        x = torch.randn(1, 1, window) * 0.1
        model(x)
        recompute = median_seconds(lambda: model(x), args.repeats)
        audio = torch.randn(1, 1, int(args.seconds * model.sample_rate) // model.hop * model.hop) * 0.1
        offline = median_seconds(lambda: model(audio), max(3, args.repeats // 5))
        batched = step_seconds(model, args.batch, max(args.steps // 5, 20)) / args.batch
        step_work = mflop(lambda: model.step(x[..., :model.hop], model.init_state(1)))
        recompute_work = mflop(lambda: model(x))
    params = sum(p.numel() for p in model.parameters())
    return (f"| {item} | {params:,} | {1000 * step:.3f} | {1000 * recompute:.2f} | {recompute / step:.1f}x | "
            f"{step / frame_s:.4f} | {offline / (audio.shape[-1] / model.sample_rate):.4f} | "
            f"{1000 * batched:.4f} | {step_work:.3f} | {recompute_work:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio for the offline RTF (default 10)")
    parser.add_argument("--steps", type=int, default=500, help="10 ms steps timed per model (default 500)")
    parser.add_argument("--batch", type=int, default=32, help="streams in the batched step (default 32)")
    parser.add_argument("--repeats", type=int, default=20, help="window recomputes / offline runs timed")
    parser.add_argument("--models", default="kws,kws-spiking",
                        help="comma-separated models, each NAME or NAME=WEIGHTS (another weights file)")
    parser.add_argument("--cpu-time", action="store_true", help="time by the thread's CPU clock, not the wall clock")
    args = parser.parse_args()
    global clock
    clock = time.thread_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, {'thread CPU' if args.cpu_time else 'wall'} time; medians; "
          f"{machine_load()}\n")
    print("| model | params | step 10 ms (ms) | recompute 1.28 s window (ms) | recompute / step | step RTF | "
          f"offline RTF ({args.seconds:g} s) | batched step, per stream (ms, batch {args.batch}) | "
          "step MFLOP | recompute MFLOP |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for item in args.models.split(","):
        print(row(item, args))
    print(f"\nmachine: {machine_load()}")


if __name__ == "__main__":
    main()
