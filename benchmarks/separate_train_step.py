"""Cost of one training step of ``separate`` on one thread: forward + PIT SI-SDR loss + backward + clip + Adam.

The step is the recipe's (``wavestream/train/separate.py`` loss, ``wavestream/train/loop.py`` update) on a
batch of the config's shape (4 x 4 s at 16 kHz) of seeded random mixtures: the data loader runs in a worker
process during training (``num_workers`` 1), so its cost is timed apart (``--data``, which reads the
training split) and is not part of the step. Prints the median ms per step over ``--steps`` steps after
``--warmup``, the top ops of one profiled step (``--top``) and the machine load (figures taken while
other work holds the cores are slower; ``--cpu-time`` counts this thread's CPU clock instead).

    python benchmarks/separate_train_step.py [--steps 10] [--warmup 3] [--top 15] [--data] [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from wavestream.models.separate import ConvTasNet
from wavestream.train.separate import DEFAULT_CONFIG, pit_si_sdr
from wavestream.train.waveform import aligned, crop_to_hop


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, mixture: torch.Tensor,
               sources: torch.Tensor) -> float:
    mixture, sources = crop_to_hop(mixture, sources, hop=model.hop)
    output, target = aligned(model(mixture), sources, model.latency)
    score, _ = pit_si_sdr(output, target)
    loss = -score.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="ops listed from one profiled step (0: none)")
    parser.add_argument("--data", action="store_true", help="also time the synthesis of one batch")
    parser.add_argument("--cpu-time", action="store_true", help="this thread's CPU time, not wall time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    config = json.loads(Path(DEFAULT_CONFIG).read_text())
    batch, seconds = config["data"]["batch_size"], config["data"]["seconds"]
    torch.manual_seed(0)
    model = ConvTasNet(**config["model"]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    samples = int(seconds * model.sample_rate)
    sources = torch.randn(batch, 2, samples, generator=g) * 0.05
    mixture = sources.sum(1, keepdim=True)

    times = []
    for i in range(args.warmup + args.steps):
        t = clock()
        train_step(model, optimizer, mixture, sources)
        if i >= args.warmup:
            times.append(clock() - t)
    print(f"separate train step, batch {batch} x {seconds:g} s, 1 thread: median {1000 * statistics.median(times):.0f} "
          f"ms/step over {args.steps} (min {1000 * min(times):.0f}, max {1000 * max(times):.0f}; "
          f"{'cpu' if args.cpu_time else 'wall'} clock)")

    if args.top:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(model, optimizer, mixture, sources)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))

    if args.data:
        from wavestream.train import separate
        data = config["data"]
        mixtures = separate.dataset(data, "train", 1000, seconds, 0)
        t = time.perf_counter()
        for i in range(batch):
            mixtures[i]
        print(f"data: one batch of {batch} mixtures synthesized in {1000 * (time.perf_counter() - t):.0f} ms "
              f"(a loader worker, num_workers {data.get('num_workers', 0)}, makes it beside the step)")

    one, five, fifteen = os.getloadavg()
    print(f"uptime: load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
