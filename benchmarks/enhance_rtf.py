"""Real-time factor of the "enhance" model on one thread: offline, streaming, and (optionally) ONNX Runtime.

- offline: ``model(x)`` on a whole file (one call);
- streaming: one ``step`` per 16 ms chunk (256 samples), state carried between calls, as a server
  session does with one stream; includes all PyTorch per-call overhead;
- onnx (``--onnx``, needs ``pip install onnx onnxscript onnxruntime``): ``step`` exported with the
  state as inputs/outputs, checked equal to torch on a real stream, then timed the same way.

RTF = compute time / audio duration (lower is faster; 0.05 = 20x faster than real time). The figures
vary with machine load; medians over ``--rounds`` are printed. Nothing is asserted.

    python benchmarks/enhance_rtf.py [--seconds 10] [--rounds 3] [--onnx]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from wavestream.models.registry import load_model


def offline_rtf(model, x: torch.Tensor, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) / (x.shape[-1] / model.sample_rate)


def streaming_times(step, state, x: torch.Tensor, hop: int) -> list[float]:
    """Seconds per call of ``step(chunk, state) -> (y, state)`` over the whole signal."""
    times = []
    for i in range(0, x.shape[-1], hop):
        chunk = x[..., i:i + hop]
        t = time.perf_counter()
        _, state = step(chunk, state)
        times.append(time.perf_counter() - t)
    return times


def report(name: str, times: list[float], hop_s: float) -> None:
    per_call = statistics.median(times)
    p99 = float(np.percentile(times, 99))
    print(f"| {name} | {1000 * per_call:.3f} | {1000 * p99:.3f} | {per_call / hop_s:.4f} |")


def export_onnx(model, path: Path) -> list[str]:
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
        torch.onnx.export(Step(), (torch.zeros(1, 1, model.hop), *(state[k] for k in keys)), str(path),
                          dynamo=True, input_names=["x", *keys], output_names=["y", *(f"next.{k}" for k in keys)],
                          verbose=False)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test signal")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--onnx", action="store_true", help="also export to ONNX and time ONNX Runtime")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("enhance")
    hop, rate = model.hop, model.sample_rate
    n = int(args.seconds * rate) // hop * hop
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0)) * 0.1
    print(f"enhance: {sum(p.numel() for p in model.parameters())} parameters, hop {hop} samples "
          f"({1000 * hop / rate:.0f} ms), latency {1000 * model.latency / rate:.0f} ms, trained={model.trained}, "
          f"1 thread, {args.seconds:.0f} s of audio")
    with torch.inference_mode():
        print(f"offline RTF (one call on the whole signal): {offline_rtf(model, x, args.rounds):.4f}")
        print("\n| streaming, 16 ms chunks | ms/call (median) | ms/call (p99) | RTF |\n|---|---|---|---|")
        times = []
        for _ in range(args.rounds):
            times += streaming_times(model.step, model.init_state(1), x, hop)
        report("torch step", times, hop / rate)

    if not args.onnx:
        return
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "enhance_step.onnx"
        keys = export_onnx(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def onnx_step(chunk, state):
        outs = session.run(None, {"x": chunk, **state})
        return outs[0], dict(zip(keys, outs[1:], strict=True))

    # equality with torch on a stream of many steps (state round trip included)
    with torch.inference_mode():
        torch_out = model(x[..., :50 * hop]).numpy()
    state = {k: v.numpy() for k, v in model.init_state(1).items()}
    xs = x.numpy()
    outs = []
    for i in range(0, 50 * hop, hop):
        y, state = onnx_step(xs[..., i:i + hop], state)
        outs.append(y)
    err = float(np.abs(np.concatenate(outs, axis=-1) - torch_out).max())
    print(f"| onnxruntime step | (max abs diff vs torch over 50 steps: {err:.2e}) | | |")
    times = []
    for _ in range(args.rounds):
        times += streaming_times(onnx_step, {k: v.numpy() for k, v in model.init_state(1).items()}, xs, hop)
    report("onnxruntime step", times, hop / rate)


if __name__ == "__main__":
    main()
