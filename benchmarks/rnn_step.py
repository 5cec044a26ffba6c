"""Step time of our recurrent layers (wavestream.streaming.GRU / LSTM) on CPU, with and without oneDNN.

torch runs CPU RNNs through oneDNN (mkldnn) when it is enabled; for the small steps a stream makes
(one frame, a few streams) its per-call setup can cost more than the arithmetic. This times the
sizes our models use, at the shapes the server steps them, once with oneDNN enabled and once with
``torch.backends.mkldnn.flags(enabled=False)``, interleaved round by round so that a change in
machine load hits both alike, and then our layer's own ``step`` (which picks its path, see
wavestream/streaming/recurrent.py). One intra-op thread, as the engine's workers run. Medians are
printed with the machine's load; nothing is asserted.

Then whole models stepped as one server stream is (one hop per call, state carried): "before" forces
torch's path for every LSTM call (``LSTM.onednn_min_rows = 0``), "after" is the default; rounds
alternate. encodec_24khz runs with random weights (the speed is the same).

    python benchmarks/rnn_step.py [--rounds 5] [--calls 50] [--seconds 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from functools import partial

import torch

from wavestream.models.registry import load_model
from wavestream.streaming.recurrent import GRU, LSTM

#: (name, layer, input size, hidden size, layers): enhance's GRU, encodec's SEANet LSTMs
LAYERS = [("enhance GRU", GRU, 128, 256, 2), ("encodec LSTM", LSTM, 512, 512, 2)]
#: (name, streams, steps per call)
SHAPES = [("1 stream x 1 step", 1, 1), ("16 streams x 1 step", 16, 1), ("16 streams x 8 steps", 16, 8),
          ("32 streams x 8 steps", 32, 8)]


def time_calls(call, calls: int, onednn: bool = True) -> float:
    """Median seconds per ``call()`` over ``calls`` calls (after one warm-up call)."""
    times = []
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=onednn):
        call()
        for _ in range(calls):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def stream_seconds(model, x: torch.Tensor) -> float:
    """Seconds to step ``x`` through ``model`` one hop per call from a fresh state."""
    state, hop = model.init_state(1), model.hop
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(0, x.shape[-1], hop):
            _, state = model.step(x[..., i:i + hop], state)
    return time.perf_counter() - start


def model_table(rounds: int, seconds: float) -> None:
    print("\n| model, one stream, one hop per step | hop | RTF before (torch's LSTM path) | RTF after | "
          "before / after |\n|---|---|---|---|---|")
    default = LSTM.onednn_min_rows
    for name in ("enhance", "encodec_24khz"):
        logging.getLogger("wavestream.models.registry").setLevel(logging.ERROR)  # "random weights" warning
        model = load_model(name)
        n = int(seconds * model.sample_rate) // model.hop * model.hop
        x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0)) * 0.1
        times: dict[str, list[float]] = {"before": [], "after": []}
        try:
            for _ in range(rounds):
                for label, rows in (("before", 0), ("after", default)):
                    LSTM.onednn_min_rows = rows
                    times[label].append(stream_seconds(model, x) / seconds)
        finally:
            LSTM.onednn_min_rows = default
        before, after = (statistics.median(times[k]) for k in ("before", "after"))
        print(f"| {name} | {1000 * model.hop / model.sample_rate:.1f} ms | {before:.3f} | {after:.3f} "
              f"| {before / after:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating on/off rounds (median over them)")
    parser.add_argument("--calls", type=int, default=50, help="calls per round")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per model round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores; "
          f"load average before: {' '.join(f'{v:.2f}' for v in load_before)}")
    print("| layer | shape | torch, oneDNN on (ms/call) | torch, oneDNN off (ms/call) | on / off "
          "| our layer's step (ms/call) |")
    print("|---|---|---|---|---|---|")
    for name, kind, inputs, hidden_size, layers in LAYERS:
        layer = kind(inputs, hidden_size, layers).eval()
        for shape, streams, steps in SHAPES:
            x = torch.randn(streams, inputs, steps)
            state = layer.init_state(streams)
            hidden = tuple(state[k].transpose(0, 1).contiguous() for k in layer.state_names)
            hidden = hidden[0] if len(hidden) == 1 else hidden
            x_torch = x.transpose(1, 2).contiguous()
            torch_call, our_call = partial(layer.rnn, x_torch, hidden), partial(layer.step, x, state)
            times: dict[str, list[float]] = {"on": [], "off": [], "ours": []}
            for _ in range(args.rounds):
                times["on"].append(time_calls(torch_call, args.calls, onednn=True))
                times["off"].append(time_calls(torch_call, args.calls, onednn=False))
                times["ours"].append(time_calls(our_call, args.calls))
            on, off, ours = (1000 * statistics.median(times[k]) for k in ("on", "off", "ours"))
            print(f"| {name} {layers}x{hidden_size} on {inputs} | {shape} | {on:.3f} | {off:.3f} | {on / off:.2f} "
                  f"| {ours:.3f} |")
    model_table(args.rounds, args.seconds)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
