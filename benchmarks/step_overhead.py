"""Microseconds per ``step`` call of each streaming layer (prints a Markdown table).

One intra-op thread (as the engine's workers run); one stream vs a batch of 16; one hop vs 8 hops
per call. The per-call cost at batch 1 / 1 hop is the fixed overhead the engine's batching and
multi-hop calls amortize. Figures are medians over several rounds; they vary with machine load (printed
before and after), less so with ``--cpu-time`` (the thread's CPU clock instead of the wall clock: time other
processes take from this one's core is not counted).

    python benchmarks/step_overhead.py [--seconds 0.2] [--rounds 5] [--cpu-time] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from wavestream.evaluate.harness import machine_load
from wavestream.streaming import (
    FSMN,
    GRU,
    ISTFT,
    LIF,
    LSTM,
    STFT,
    CausalAttention,
    CausalConv1d,
    CausalConvTranspose1d,
    ChannelLayerNorm,
    CumulativeLayerNorm,
    GroupedGRU,
    LMUMemory,
    StreamingModule,
)

C = 64  # feature channels of the feature layers
clock = time.perf_counter  # or time.thread_time (--cpu-time)

# name, constructor, input maker (batch, hops) -> tensor
LAYERS: list[tuple[str, Callable[[], StreamingModule], Callable[[int, int], torch.Tensor]]] = [
    ("CausalConv1d 64->64 k3", lambda: CausalConv1d(C, C, 3), lambda b, n: torch.randn(b, C, n)),
    ("CausalConv1d 1->64 k8 s4", lambda: CausalConv1d(1, C, 8, stride=4), lambda b, n: torch.randn(b, 1, 4 * n)),
    ("CausalConvTranspose1d 64->1 k8 s4", lambda: CausalConvTranspose1d(C, 1, 8, stride=4),
     lambda b, n: torch.randn(b, C, n)),
    ("FSMN 64 lookback 10", lambda: FSMN(C, 10), lambda b, n: torch.randn(b, C, n)),
    ("STFT 512/256", lambda: STFT(512, 256), lambda b, n: torch.randn(b, 1, 256 * n)),
    ("ISTFT 512/256", lambda: ISTFT(512, 256), lambda b, n: torch.randn(b, 1, 257, n, dtype=torch.complex64)),
    ("GRU 64->64", lambda: GRU(C, C), lambda b, n: torch.randn(b, C, n)),
    ("GRU 64->64 x2 layers", lambda: GRU(C, C, num_layers=2), lambda b, n: torch.randn(b, C, n)),
    ("GroupedGRU 64->64 4 groups", lambda: GroupedGRU(C, C, groups=4), lambda b, n: torch.randn(b, C, n)),
    ("LSTM 64->64", lambda: LSTM(C, C), lambda b, n: torch.randn(b, C, n)),
    ("CumulativeLayerNorm 64", lambda: CumulativeLayerNorm(C), lambda b, n: torch.randn(b, C, n)),
    ("ChannelLayerNorm 64", lambda: ChannelLayerNorm(C), lambda b, n: torch.randn(b, C, n)),
    ("LMUMemory 16 ch, order 64, theta 100", lambda: LMUMemory(16, 64, 100), lambda b, n: torch.randn(b, 16, n)),
    ("LIF 64", lambda: LIF(C), lambda b, n: torch.randn(b, C, n)),
    ("CausalAttention 64, 4 heads, window 32", lambda: CausalAttention(C, 4, 32), lambda b, n: torch.randn(b, C, n)),
]


def time_step(module: StreamingModule, x: torch.Tensor, seconds: float, rounds: int) -> float:
    """Median microseconds per step call (same state each call: the work does not depend on it)."""
    state = module.init_state(x.shape[0], dtype=torch.float32)
    for _ in range(5):
        module.step(x, state)
    results = []
    for _ in range(rounds):
        calls, start = 0, clock()
        while (elapsed := clock() - start) < seconds:
            module.step(x, state)
            calls += 1
        results.append(elapsed / calls * 1e6)
    return statistics.median(results)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="time per measurement round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-time", action="store_true", help="time by the thread's CPU clock, not the wall clock")
    parser.add_argument("--only", default="", help="comma-separated name prefixes of the layers to time (default all)")
    args = parser.parse_args()
    global clock
    clock = time.thread_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = [(1, 1), (1, 8), (16, 1), (16, 8)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"{'thread CPU' if args.cpu_time else 'wall'} time; microseconds per step call (in brackets: per "
          f"stream-hop); medians; {machine_load()}\n")
    print("| layer | hop | " + " | ".join(f"B={b}, {n} hop{'s' * (n > 1)}" for b, n in cases) + " |")
    print("|---|---:|" + "---:|" * len(cases))
    only = [p for p in args.only.split(",") if p]
    for name, make, make_input in LAYERS:
        if only and not any(name.startswith(p) for p in only):
            continue
        module = make().eval()
        cells = []
        for b, n in cases:
            us = time_step(module, make_input(b, n), args.seconds, args.rounds)
            cells.append(f"{us:,.0f}" + (f" ({us / (b * n):,.1f})" if b * n > 1 else ""))
        print(f"| {name} | {module.hop} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nmachine: {machine_load()}")


if __name__ == "__main__":
    main()
