"""Real-time factor of a registry model on one thread: offline, one stream in chunks, batched streams, ONNX.

- offline: ``model(x)`` on a whole signal (one call);
- one stream: one ``step`` per chunk (``--chunks-ms``, each a whole number of hops), state carried between
  calls, as a server session does with one stream; includes all PyTorch per-call overhead;
- batched: B streams stacked into one ``step`` per chunk, as the engine's scheduler batches them; a batch
  holds real time on one thread while a call (median) takes less than the chunk's duration, and the engine
  runs one such worker per core, so about cores x the largest such B real-time streams fit on this box
  (benchmarks/engine_batching.py and load.py measure the engine and the server around it);
- onnx (``--onnx``, needs ``pip install onnx onnxscript onnxruntime``): ``step`` exported with the
  state as inputs/outputs at the first chunk size, checked equal to torch on a real stream, then timed.

RTF = compute time / audio duration (lower is faster; 0.05 = 20x faster than real time). The machine's load
average is printed before and after: wall-clock figures taken beside other work (a training run) are slower
than an idle machine's, so each table also gives the thread's CPU time per call (time spent waiting for a
core left out: near what an idle machine's wall clock shows, though a busy neighbour still costs caches).
Medians over ``--rounds`` are printed. Nothing is asserted.

    python benchmarks/model_rtf.py [--model enhance] [--weights PATH] [--chunks-ms 16,32] [--batches 1,4,8,16,32,64]
                                   [--seconds 10] [--rounds 3] [--onnx]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from wavestream.evaluate.harness import machine_load
from wavestream.models.registry import load_model


def offline_rtf(model, x: torch.Tensor, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) / (x.shape[-1] / model.sample_rate)


def streaming_times(step, state, x: torch.Tensor, chunk: int) -> tuple[list[float], list[float]]:
    """Wall-clock and thread CPU seconds per call of ``step(chunk, state) -> (y, state)`` over the signal."""
    wall, cpu = [], []
    for i in range(0, x.shape[-1] - chunk + 1, chunk):
        piece = x[..., i:i + chunk]
        t, c = time.perf_counter(), time.thread_time()
        _, state = step(piece, state)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    return wall, cpu


def rounds_of(step, make_state, x: torch.Tensor, chunk: int, rounds: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for _ in range(rounds):
        w, c = streaming_times(step, make_state(), x, chunk)
        wall += w
        cpu += c
    return wall, cpu


HEADER = "ms/call (median) | ms/call (p99) | RTF | CPU ms/call (median) | RTF by CPU time"


def cells(wall: list[float], cpu: list[float], audio_s: float) -> str:
    """Table cells of one run: wall median and p99 per call, RTF, then the same by thread CPU time."""
    per_call, per_cpu = statistics.median(wall), statistics.median(cpu)
    return (f"{1000 * per_call:.3f} | {1000 * float(np.percentile(wall, 99)):.3f} | {per_call / audio_s:.4f} | "
            f"{1000 * per_cpu:.3f} | {per_cpu / audio_s:.4f}")


def chunk_samples(model, ms: float) -> int:
    """The whole number of hops nearest to ``ms`` milliseconds (at least one hop)."""
    return max(round(ms / 1000 * model.sample_rate / model.hop), 1) * model.hop


def export_onnx(model, path: Path, chunk: int) -> list[str]:
    """Export ``step`` with the state dict flattened into named inputs and outputs; returns state keys."""
    keys = sorted(model.init_state(1))

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x, *states):
            y, new = self.model.step(x, dict(zip(keys, states, strict=True)))
            return (y, *(new[k] for k in keys))

    state = model.init_state(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # optional-op registration chatter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Step(), (torch.zeros(1, 1, chunk), *(state[k] for k in keys)), str(path),
                          dynamo=True, input_names=["x", *keys], output_names=["y", *(f"next.{k}" for k in keys)],
                          verbose=False)
    return keys


def batched(model, chunk: int, batches: list[int], seconds: float, rounds: int) -> None:
    """One step per chunk for B streams at once; prints per-call times, RTF per stream and whether B streams
    keep up with real time on this one thread, by the wall clock and by the thread's CPU time."""
    chunk_s = chunk / model.sample_rate
    calls = max(int(seconds / chunk_s), 10)
    largest, tried = {"wall": 0, "cpu": 0}, []
    for b in batches:
        tried.append(b)
        x = torch.randn(b, 1, calls * chunk, generator=torch.Generator().manual_seed(b)) * 0.1
        wall, cpu = rounds_of(model.step, lambda b=b: model.init_state(b), x, chunk, rounds)
        holds = {"wall": statistics.median(wall) < chunk_s, "cpu": statistics.median(cpu) < chunk_s}
        largest = {k: b if holds[k] else largest[k] for k in largest}
        print(f"| {b} | {cells(wall, cpu, b * chunk_s)} | {'yes' if holds['wall'] else 'no'} | "
              f"{'yes' if holds['cpu'] else 'no'} |", flush=True)
        if not any(holds.values()):
            break
    cores = os.cpu_count() or 1
    print(f"\nlargest batch holding real time on one thread at {1000 * chunk_s:g} ms chunks (tried "
          f"{', '.join(map(str, tried))}): {largest['wall']} streams by the wall clock, {largest['cpu']} by "
          f"CPU time; one worker per core on {cores} cores: about {cores * largest['wall']} "
          f"({cores * largest['cpu']} by CPU time) real-time streams, when the cores are free for it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="enhance", help="registry model (its shipped weights, else random ones)")
    parser.add_argument("--weights", help="another weights file (a run's checkpoint loads with its own config)")
    parser.add_argument("--chunks-ms", default="16,32", help="chunk durations for the streaming runs")
    parser.add_argument("--batches", default="1,4,8,16,32,64",
                        help="streams per batched step, ascending ('' to skip); stops at the first that "
                             "falls behind real time")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test signal")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--onnx", action="store_true", help="also export to ONNX and time ONNX Runtime")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, args.weights)
    hop, rate = model.hop, model.sample_rate
    chunks = [chunk_samples(model, float(ms)) for ms in args.chunks_ms.split(",")]
    n = int(args.seconds * rate) // max(chunks) * max(chunks)
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    print(f"{args.model}: {sum(p.numel() for p in model.parameters())} parameters, hop {hop} samples "
          f"({1000 * hop / rate:g} ms), algorithmic latency {1000 * model.algorithmic_latency / rate:g} ms, "
          f"trained={model.trained}, 1 thread, {args.seconds:g} s of audio")
    print(f"machine: {machine_load()}")
    with torch.inference_mode():
        print(f"offline RTF (one call on the whole signal): {offline_rtf(model, x, args.rounds):.4f}")
        print(f"\n| one stream | {HEADER} |\n|---|---|---|---|---|---|")
        for chunk in chunks:
            wall, cpu = rounds_of(model.step, lambda: model.init_state(1), x, chunk, args.rounds)
            print(f"| torch step, {1000 * chunk / rate:g} ms chunks | {cells(wall, cpu, chunk / rate)} |")
        batches = [int(b) for b in args.batches.split(",") if b]
        for chunk in chunks if batches else []:
            print(f"\n| streams, {1000 * chunk / rate:g} ms chunks | {HEADER.replace('RTF', 'RTF per stream')} "
                  "| real time | real time by CPU |\n|---|---|---|---|---|---|---|---|")
            batched(model, chunk, batches, min(args.seconds, 2.0), args.rounds)
    print(f"\nmachine: {machine_load()}")

    if not args.onnx:
        return
    import onnxruntime as ort

    chunk = chunks[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}_step.onnx"
        keys = export_onnx(model, path, chunk)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def onnx_step(piece, state):
        outs = session.run(None, {"x": piece, **state})
        return outs[0], dict(zip(keys, outs[1:], strict=True))

    # equality with torch on a stream of many steps (state round trip included)
    steps = min(50, n // chunk)
    with torch.inference_mode():
        torch_out = model(x[..., :steps * chunk]).numpy()
    state = {k: v.numpy() for k, v in model.init_state(1).items()}
    xs = x.numpy()
    outs = []
    for i in range(0, steps * chunk, chunk):
        y, state = onnx_step(xs[..., i:i + chunk], state)
        outs.append(y)
    err = float(np.abs(np.concatenate(outs, axis=-1) - torch_out).max())
    print(f"\n| onnxruntime, {1000 * chunk / rate:g} ms chunks | {HEADER} |\n|---|---|---|---|---|---|\n"
          f"| (max abs diff vs torch over {steps} steps: {err:.2e}) | | | | | |")
    wall, cpu = rounds_of(onnx_step, lambda: {k: v.numpy() for k, v in model.init_state(1).items()}, xs, chunk,
                          args.rounds)
    print(f"| onnxruntime step | {cells(wall, cpu, chunk / rate)} |")


if __name__ == "__main__":
    main()
