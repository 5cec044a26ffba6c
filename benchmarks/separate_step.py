"""separate's streaming step on one thread: the layer-by-layer path against the rows path, side by side (issue 8).

``ConvTasNet.step`` runs a stream's chunks (batch x frames <= ``rows_limit``, autograd off, eval mode) as
``_step_rows``: channels-last rows, one GEMM per 1x1 conv over all rows, fewer and cheaper calls. ``old`` is the
layer-by-layer path every step took before (``rows_limit = 0``: each layer's own ``step`` through ``step_child``,
which is still what ``forward`` and training run), ``new`` the default; both on the shipped weights, interleaved
round by round so that both see the same machine.

- one stream: one ``step`` per chunk (``--chunks-ms``, whole hops: 10 ms is 5 hops of 2 ms), state carried, as a
  server session steps one stream; RTF = median seconds per call / chunk duration, by the wall clock and by the
  thread's CPU clock (time other processes take from this core left out);
- batched: B streams stacked into one ``step`` per chunk, as the engine's scheduler batches sessions; the largest
  B whose median call stays under the chunk's duration holds real time on one thread;
- equality: the new path's outputs and state entries against the old path's over the whole one-stream run.

Medians over ``--rounds`` rounds of the whole signal; the load average is printed before and after (figures taken
beside other work, a training run, are slower than an idle machine's). Nothing is asserted.

    python benchmarks/separate_step.py [--chunks-ms 10,16,32] [--seconds 5] [--rounds 3] [--batches 1,4,8,16,32,64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wavestream.evaluate.harness import machine_load
from wavestream.models.registry import load_model

PATHS = {"old": 0, "new": None}  # rows_limit per path; None: the model's own


def run(model, x: torch.Tensor, chunk: int) -> tuple[list[float], list[float], torch.Tensor, dict]:
    """Wall and thread CPU seconds of each ``step`` over ``x`` in chunks; the outputs and the last state."""
    state, outs, wall, cpu = model.init_state(x.shape[0]), [], [], []
    for i in range(0, x.shape[-1] - chunk + 1, chunk):
        piece = x[..., i:i + chunk]
        t, c = time.perf_counter(), time.thread_time()
        y, state = model.step(piece, state)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
        outs.append(y)
    return wall, cpu, torch.cat(outs, -1), state


def timed(model, x: torch.Tensor, chunk: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Per path: (median wall, median CPU) seconds per call over ``rounds`` rounds, the paths interleaved."""
    times = {name: ([], []) for name in PATHS}
    default = model.rows_limit
    for _ in range(rounds):
        for name, limit in PATHS.items():
            model.rows_limit = default if limit is None else limit
            wall, cpu, _, _ = run(model, x, chunk)
            times[name][0].extend(wall)
            times[name][1].extend(cpu)
    model.rows_limit = default
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def max_diffs(model, x: torch.Tensor, chunk: int) -> tuple[float, float]:
    """Largest |new - old| over the outputs, and over the state entries relative to each entry's largest value."""
    default, results = model.rows_limit, []
    for limit in PATHS.values():
        model.rows_limit = default if limit is None else limit
        results.append(run(model, x, chunk)[2:])
    model.rows_limit = default
    (old_y, old_state), (new_y, new_state) = results
    state = max(((new_state[k].double() - v.double()).abs().max() / v.double().abs().max().clamp_min(1e-30)).item()
                for k, v in old_state.items() if v.numel())
    return (new_y - old_y).abs().max().item(), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks-ms", default="10,16,32")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the one-stream signal")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,4,8,16,32,64",
                        help="streams per batched step, ascending ('' to skip); stops when neither path holds")
    parser.add_argument("--batch-seconds", type=float, default=1.0, help="length of each batched signal")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("separate")
    rate, hop = model.sample_rate, model.hop
    chunks = [max(round(float(ms) / 1000 * rate / hop), 1) * hop for ms in args.chunks_ms.split(",")]
    n = int(args.seconds * rate) // max(chunks) * max(chunks)
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    print(f"separate: trained={model.trained}, hop {hop} samples, rows_limit {model.rows_limit}, 1 thread, "
          f"{args.seconds:g} s of audio, {args.rounds} rounds")
    print(f"machine: {machine_load()}")
    with torch.inference_mode():
        print("\n| one stream | old ms/call | new ms/call | old RTF | new RTF | old RTF by CPU | new RTF by CPU | "
              "speed-up (CPU) | max abs diff out / rel state |\n|---|---|---|---|---|---|---|---|---|")
        for chunk in chunks:
            seconds = chunk / rate
            t = timed(model, x, chunk, args.rounds)
            (ow, oc), (nw, nc) = t["old"], t["new"]
            out, state = max_diffs(model, x, chunk)
            print(f"| {1000 * seconds:g} ms chunks | {1000 * ow:.3f} | {1000 * nw:.3f} | {ow / seconds:.4f} | "
                  f"{nw / seconds:.4f} | {oc / seconds:.4f} | {nc / seconds:.4f} | {oc / nc:.2f}x | "
                  f"{out:.1e} / {state:.1e} |", flush=True)
        batches = [int(b) for b in args.batches.split(",") if b]
        for chunk in chunks if batches else []:
            seconds = chunk / rate
            calls = max(int(args.batch_seconds / seconds), 10)
            print(f"\n| streams, {1000 * seconds:g} ms chunks | old ms/call | new ms/call | old RTF per stream | "
                  f"new RTF per stream | old holds | new holds |\n|---|---|---|---|---|---|---|")
            largest = {"old": 0, "new": 0}
            for b in batches:
                xb = torch.randn(b, 1, calls * chunk, generator=torch.Generator().manual_seed(b)) * 0.1
                t = timed(model, xb, chunk, args.rounds)
                holds = {name: t[name][0] < seconds for name in t}
                largest = {name: b if holds[name] else largest[name] for name in largest}
                print(f"| {b} | {1000 * t['old'][0]:.3f} | {1000 * t['new'][0]:.3f} | "
                      f"{t['old'][0] / seconds / b:.4f} | {t['new'][0] / seconds / b:.4f} | "
                      f"{'yes' if holds['old'] else 'no'} | {'yes' if holds['new'] else 'no'} |", flush=True)
                if not any(holds.values()):
                    break
            print(f"largest batch holding real time on one thread (wall clock) at {1000 * seconds:g} ms chunks: "
                  f"old {largest['old']}, new {largest['new']} streams")
    print(f"\nmachine: {machine_load()}")


if __name__ == "__main__":
    main()
