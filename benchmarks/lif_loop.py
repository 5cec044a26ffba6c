"""The LIF neuron's time loop in inference: torch ops against numpy ops, side by side, one thread.

The spiking keyword spotter spends most of a whole clip's time in its LIF layers' loops over frames
(three to five elementwise ops per frame on a few hundred values: per-op dispatch, not arithmetic). On CPU,
inference runs the loop in numpy (``lif_forward_numpy``), training in torch (``lif_forward``, one autograd
node); both round the same way, so the spikes are identical (checked here on every shape timed).

Per shape ``[batch, channels, frames]`` the two loops run interleaved ``--rounds`` times; the medians and
their ratio are printed, then the offline RTF of ``kws-spiking`` with its LIF layers on each loop in turn. Ratios
measured side by side are what count on a loaded machine; its load is printed. Nothing is asserted.

    python benchmarks/lif_loop.py [--frames 500] [--rounds 15] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wavestream.evaluate.harness import machine_load
from wavestream.models.registry import load_model
from wavestream.streaming import spiking
from wavestream.streaming.spiking import lif_forward, lif_forward_numpy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500, help="frames per loop (default 500: 5 s at 10 ms)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timings per shape (default 15)")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio for the model's offline RTF")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, wall time, medians of {args.rounds}; {machine_load()}\n")
    print("| batch x channels | torch loop (ms) | numpy loop (ms) | torch / numpy | spikes identical |")
    print("|---|---|---|---|---|")
    for batch, channels in ((1, 16), (1, 64), (1, 128), (1, 256), (16, 128)):
        g = torch.Generator().manual_seed(channels)
        x = torch.rand(batch, channels, args.frames, generator=g) * 0.9 + 0.05
        v = torch.zeros(batch, channels)
        times: dict[str, list[float]] = {"torch": [], "numpy": []}
        with torch.inference_mode():
            for _ in range(args.rounds):
                t = time.perf_counter()
                spikes, _, v_torch = lif_forward(x, v, 0.5, 1.0)
                times["torch"].append(time.perf_counter() - t)
                t = time.perf_counter()
                y, v_numpy = lif_forward_numpy(x, v, 0.5, 1.0)
                times["numpy"].append(time.perf_counter() - t)
        same = torch.equal(y, spikes.permute(1, 2, 0)) and torch.equal(v_numpy, v_torch)
        a, b = (1000 * statistics.median(times[k]) for k in ("torch", "numpy"))
        print(f"| {batch} x {channels} | {a:.2f} | {b:.2f} | {a / b:.1f}x | {same} |")
    # the whole model, its LIF layers on each loop in turn (interleaved): the numpy loop is what LIF.step takes
    model = load_model("kws-spiking")
    audio = torch.randn(1, 1, int(args.seconds * model.sample_rate) // model.hop * model.hop) * 0.1

    def torch_loop(x, v, decay, threshold):
        spikes, _, v = lif_forward(x, v, decay, threshold)
        return spikes.permute(1, 2, 0), v

    runs: dict[str, list[float]] = {"torch": [], "numpy": []}
    with torch.inference_mode():
        model(audio)
        for _ in range(5):
            for name, loop in (("torch", torch_loop), ("numpy", lif_forward_numpy)):
                spiking.lif_forward_numpy = loop
                t = time.perf_counter()
                model(audio)
                runs[name].append(time.perf_counter() - t)
    spiking.lif_forward_numpy = lif_forward_numpy
    rtf = {name: statistics.median(r) / args.seconds for name, r in runs.items()}
    print(f"\nkws-spiking offline RTF ({args.seconds:g} s, medians of 5, interleaved): LIF loops in torch "
          f"{rtf['torch']:.4f}, in numpy {rtf['numpy']:.4f} ({rtf['torch'] / rtf['numpy']:.1f}x)")
    print(f"machine: {machine_load()}")


if __name__ == "__main__":
    main()
