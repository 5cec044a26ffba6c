"""The held-out Pareto front of a keyword spotter (issue 10): the share of the held-out real digits found as
events against false alarms per hour of ``keywords-negative``, over every detector setting the tuning rule
tries, and the setting the rule picks. Held out means the real talkers the shipped recipes do not train on
(Tux Paint; ``saytime`` and ``spokennumbers`` are left out).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/kws_front.py [--model kws-spiking] [WEIGHTS.safetensors ...]

Without weights, the shipped ones. With several, one front of their posteriors averaged frame by frame (the
models run side by side), to ask whether runs that differ only by their luck err on different words.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from wavestream.evaluate.kws import tune_detector
from wavestream.models.registry import load_model


class PosteriorMean(nn.Module):
    """Several keyword spotters as one: the mean of their per-frame posteriors, with the first one's detector."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(models)
        first = models[0]
        for name in ("classes", "hop", "sample_rate", "end_silence_s", "detector_config"):
            setattr(self, name, getattr(first, name))
        self.event_detector = first.event_detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(x) for model in self.members]).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="*", help="weights files of the same model (default: the shipped ones)")
    parser.add_argument("--model", default="kws", choices=("kws", "kws-spiking"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = [load_model(args.model, weights=w).eval() for w in args.weights or [None]]
    model = models[0] if len(models) == 1 else PosteriorMean(models)
    result = tune_detector(model, trained_corpora=("saytime", "spokennumbers"), log=lambda line: None)
    print("front (held-out digits found / false alarms per hour):",
          ", ".join(f"{100 * t['real_top1_event']:.0f} % / {t['false_alarms_per_hour']:.1f}" for t in result["pareto"]))
    chosen = result["chosen"]
    found, alarms = 100 * chosen["real_top1_event"], chosen["false_alarms_per_hour"]
    print(f"the rule's detector: smoothing {chosen['smooth_frames']}, threshold {chosen['threshold']}, min_frames "
          f"{chosen['min_frames']} ({found:.0f} % at {alarms:.1f}/h; bound {result['bound_used']}/h)")


if __name__ == "__main__":
    main()
