"""The LIF neuron's time loop in inference: torch ops, numpy ops and numba's compiled loop, side by side,
one thread.

The spiking keyword spotter spends most of a whole clip's time in its LIF layers' loops over frames
(three to five elementwise ops per frame on a few hundred values: per-op dispatch, not arithmetic). On CPU,
inference runs the loop outside torch (``lif_forward_inference``: numba's compiled loop where the ``fast``
extra is installed, else numpy's ops), training in torch (``lif_forward``, one autograd node); all round
the same way, so the spikes are identical (checked here on every shape timed).

Per shape ``[batch, channels, frames]`` the loops run interleaved ``--rounds`` times; the medians and
their ratios are printed, then the offline RTF of ``kws-spiking`` with its LIF layers on each loop in turn.
Ratios measured side by side are what count on a loaded machine; its load is printed. Nothing is asserted.

    python benchmarks/lif_loop.py [--frames 500] [--rounds 15] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wavestream.evaluate.harness import machine_load
from wavestream.evaluate.kws import step_cost
from wavestream.models.registry import load_model
from wavestream.streaming import spiking
from wavestream.streaming.spiking import compiled_lif, lif_forward, lif_forward_inference


def torch_loop(x, v, decay, threshold):
    spikes, _, v = lif_forward(x, v, decay, threshold)
    return spikes.permute(1, 2, 0), v


def use_loop(name: str) -> None:
    """Make ``LIF.step``'s inference loop the one named: "torch", "numpy" or "numba"."""
    spiking.lif_forward_inference = torch_loop if name == "torch" else lif_forward_inference
    spiking.compiled_lif = compiled_lif if name == "numba" else (lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500, help="frames per loop (default 500: 5 s at 10 ms)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timings per shape (default 15)")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio for the model's offline RTF")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loops = ["torch", "numpy"] + (["numba"] if compiled_lif() else [])  # compiled here, not in a timing
    print(f"torch {torch.__version__}, 1 thread, wall time, medians of {args.rounds}; {machine_load()}")
    print(f"loops: {', '.join(loops)}" + ("" if "numba" in loops else " (numba is not installed)") + "\n")
    columns = " | ".join(f"{n} loop (ms)" for n in loops)
    print(f"| batch x channels | {columns} | torch / each | spikes identical |")
    print("|---|" + "---|" * (len(loops) + 2))
    for batch, channels in ((1, 16), (1, 64), (1, 128), (1, 256), (16, 128)):
        g = torch.Generator().manual_seed(channels)
        x = torch.rand(batch, channels, args.frames, generator=g) * 0.9 + 0.05
        v = torch.zeros(batch, channels)
        times: dict[str, list[float]] = {n: [] for n in loops}
        outputs = {}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name in loops:
                    use_loop(name)
                    t = time.perf_counter()
                    outputs[name] = spiking.lif_forward_inference(x, v, 0.5, 1.0)
                    times[name].append(time.perf_counter() - t)
        use_loop("numba" if "numba" in loops else "numpy")
        same = all(torch.equal(y, outputs["torch"][0]) and torch.equal(v_end, outputs["torch"][1])
                   for y, v_end in outputs.values())
        ms = {n: 1000 * statistics.median(times[n]) for n in loops}
        ratios = " / ".join(f"{ms['torch'] / ms[n]:.1f}x" for n in loops[1:])
        print(f"| {batch} x {channels} | " + " | ".join(f"{ms[n]:.2f}" for n in loops) + f" | {ratios} | {same} |")
    # the whole model, its LIF layers on each loop in turn (interleaved)
    model = load_model("kws-spiking")
    audio = torch.randn(1, 1, int(args.seconds * model.sample_rate) // model.hop * model.hop) * 0.1
    runs: dict[str, list[float]] = {n: [] for n in loops}
    with torch.inference_mode():
        model(audio)
        for _ in range(5):
            for name in loops:
                use_loop(name)
                t = time.perf_counter()
                model(audio)
                runs[name].append(time.perf_counter() - t)
    rtf = {name: statistics.median(r) / args.seconds for name, r in runs.items()}
    print(f"\nkws-spiking offline RTF ({args.seconds:g} s, medians of 5, interleaved), LIF loops in "
          + ", ".join(f"{n} {rtf[n]:.4f}" for n in loops))
    # the eval's streaming figure: one 10 ms step (LIF.frame: numba's loop, else torch ops) against a
    # recompute of the 128-frame window (LIF.step's loop)
    costs: dict[str, list[dict]] = {n: [] for n in loops[1:]}
    for _ in range(5):
        for name in costs:
            use_loop(name)
            costs[name].append(step_cost(model, 128, repeats=300))
    use_loop("numba" if "numba" in loops else "numpy")
    print("\n| LIF loop | 10 ms step (ms) | recompute of 128 frames (ms) | step / recompute |\n|---|---|---|---|")
    for name, rows in costs.items():
        step, full = (statistics.median(r[k] for r in rows) for k in ("step_ms", "recompute_ms"))
        print(f"| {name} | {step:.3f} | {full:.2f} | {step / full:.3f} |")
    print(f"machine: {machine_load()}")


if __name__ == "__main__":
    main()
