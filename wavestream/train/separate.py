"""Training recipe for the "separate" model: two-talker mixtures -> the two talkers at 16 kHz.

Loss: utterance-level permutation-invariant training (PIT) with negative SI-SDR: for each mixture the
better of the two source orders counts, so the model may put either talker on either output.
Data: ``wavestream.data.SpeakerMixtures`` (seeded per index; overlap, level difference, some noise and
rooms). Dev: fixed mixtures from the dev split (held-out talkers) and from the out-of-domain split (a
whole corpus no model trains on); the best checkpoint is chosen by their mean SI-SDR improvement.
``export`` writes the shipped weights + card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from wavestream.data import SpeakerMixtures
from wavestream.models.registry import WEIGHTS_DIR
from wavestream.models.separate import ConvTasNet

from . import waveform
from .loop import BEST, export_checkpoint
from .losses import si_sdr
from .waveform import aligned, crop_to_hop

NAME = "separate"
METRIC = "dev_si_sdri"  # mean of the improvements on the dev splits (in-domain and out-of-domain)
DEFAULT_CONFIG = Path(__file__).parent / "configs" / "separate.json"
SECTIONS = ("model", "data", "dev", "train")
CORPUS_KINDS = ("speech", "noise", "rir")  # what the mixtures draw on: listed in the card
#: dev split -> the name its scores get; the config's ``dev.splits`` picks which are used (both, by default)
DEV_SPLITS = {"dev": "in_domain", "ood": "out_of_domain"}


def pit_si_sdr(estimates: torch.Tensor, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example SI-SDR of the better assignment of two estimates to two sources, ``[B, 2, T]`` each.

    Returns (mean SI-SDR over the two sources ``[B]``, estimates reordered to match the sources)."""
    if estimates.shape[1] != 2 or estimates.shape != sources.shape:
        raise ValueError(f"pit_si_sdr takes two sources, got {tuple(estimates.shape)} and {tuple(sources.shape)}")
    straight = si_sdr(estimates, sources).mean(1)
    swapped = si_sdr(estimates.flip(1), sources).mean(1)
    keep = straight >= swapped
    ordered = torch.where(keep[:, None, None], estimates, estimates.flip(1))
    return torch.maximum(straight, swapped), ordered


def dataset(data: dict, split: str, length: int, seconds: float, seed: int) -> SpeakerMixtures:
    options = {k: v for k, v in data.items() if k not in ("batch_size", "num_workers", "seed", "seconds")}
    for key in ("overlap", "sir_db", "noise_snr_db", "level_db", "pause_s"):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    return SpeakerMixtures(split=split, seconds=seconds, length=length, seed=seed, **options)


#: data settings the dev mixtures take from the config's ``data`` section, unless ``dev`` sets them itself
DEV_DATA_KEYS = ("overlap", "sir_db", "level_db")


def dev_examples(config: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed dev mixtures of ``split`` (mixture ``[N, 1, T]``, sources ``[N, 2, T]``): dry, no noise,
    the same every run. Only ``DEV_DATA_KEYS`` (and the root) come from ``data``, and ``dev`` may pin them
    (a config that trains on other overlaps keeps the dev set of earlier runs); the other training options
    (pauses, trimmed clips, noise, rooms) never reach the dev set."""
    dev = config["dev"]
    data = {k: v for k, v in config["data"].items() if k in (*DEV_DATA_KEYS, "root")}
    data.update({k: v for k, v in dev.items() if k in DEV_DATA_KEYS})
    ds = dataset({**data, "reverb_prob": 0.0}, split, dev["items"], dev["seconds"], dev["seed"])
    pairs = [ds[i] for i in range(dev["items"])]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def evaluate_on(model: nn.Module, mixture: torch.Tensor, sources: torch.Tensor, prefix: str,
                batch: int = 8) -> dict[str, float]:
    mixture, sources = crop_to_hop(mixture, sources, hop=model.hop)
    outs = torch.cat([model(mixture[i:i + batch]) for i in range(0, len(mixture), batch)])
    out, ref = aligned(outs, sources, model.latency)
    score, _ = pit_si_sdr(out, ref)
    baseline = si_sdr(mixture[..., :ref.shape[-1]].expand_as(ref), ref).mean(1)
    return {f"{prefix}_si_sdr": score.mean().item(), f"{prefix}_si_sdri": (score - baseline).mean().item()}


def build_model(config: dict) -> ConvTasNet:
    return ConvTasNet(**config["model"])


def train(config: dict, out: str | Path, resume: bool = False, progress: bool = True,
          init: str | Path | None = None) -> dict:
    """Train from fresh weights, or fine-tune from ``init`` (``--init``: a run's or the shipped safetensors)."""

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        mixture, sources = crop_to_hop(*batch, hop=model.hop)
        output, target = aligned(model(mixture), sources, model.latency)
        score, _ = pit_si_sdr(output, target)
        return -score.mean(), {"si_sdr": score.mean().item()}

    def evaluate_split(model: nn.Module, examples: tuple[torch.Tensor, torch.Tensor], name: str) -> dict[str, float]:
        return evaluate_on(model, *examples, name)

    return waveform.fit_recipe(sys.modules[__name__], config, out, resume, progress, init, loss_fn, evaluate_split,
                               "si_sdri")


def export(run: str | Path, weights_dir: str | Path = WEIGHTS_DIR, data_root: str | Path | None = None,
           checkpoint: str = BEST) -> Path:
    """Write the best checkpoint of ``run`` (or ``checkpoint="last"``) as
    ``{weights_dir}/separate.safetensors`` + ``separate.json``,
    keeping the fields of an existing card that training does not produce (evaluation, prose)."""
    run, weights_dir = Path(run), Path(weights_dir)
    model, meta, last, card = export_checkpoint(run, weights_dir, build_model, NAME, checkpoint)
    config = meta["run"]["config"]
    training = waveform.training_section(NAME, config, meta, last,
                                         "utterance-level PIT, negative SI-SDR (mean over the two sources)", init=True)
    card.update({
        "name": NAME,
        "task": "separate",
        "description": "Causal two-talker speech separation at 16 kHz: Conv-TasNet with cumulative layer norm, "
                       f"{1000 * model.algorithmic_latency / model.sample_rate:g} ms algorithmic latency.",
        "architecture": {
            "class": "wavestream.models.separate.ConvTasNet",
            "family": "Conv-TasNet (Luo & Mesgarani 2019), causal configuration, residual-only TCN blocks",
            "summary": "causal conv encoder (N filters x L, stride L/2, ReLU) -> cLN -> 1x1 N->B -> R x X blocks "
                       "[1x1 B->H, PReLU, cLN, depthwise causal conv (P, dilation 2^x), PReLU, cLN, 1x1 H->B, "
                       "residual] -> PReLU -> 1x1 B->2N -> sigmoid masks -> causal transposed-conv decoder",
            "parameters": sum(p.numel() for p in model.parameters()),
            "sample_rate": model.sample_rate,
            "hop_samples": model.hop,
            "latency_samples": model.algorithmic_latency,
            "latency_ms": 1000 * model.algorithmic_latency / model.sample_rate,
            "output": "two sources; which talker lands on which output is decided by the model (trained with "
                      "permutation-invariant loss) and kept for the whole stream",
        },
        "config": config["model"],
        "weights": {"format": "safetensors", "dtype": "float32", "file": f"{NAME}.safetensors"},
        "data": waveform.card_data(last, config, CORPUS_KINDS, data_root),
        "training": {
            **training,
            "dev_history": [{k: round(v, 3) for k, v in h.items() if k == "step" or k.endswith("si_sdri")}
                            for h in last.get("history", [])],
        },
        "dev": {"set": f"{config['dev']['items']} dry SpeakerMixtures x {config['dev']['seconds']} s from the dev "
                       f"split (held-out talkers) and as many from the out-of-domain split (a corpus never trained "
                       f"on), seed {config['dev']['seed']}; checkpoint chosen by the mean SI-SDRi of the two",
                **{k: round(v, 3) for k, v in meta["metrics"].items()}},
    })
    card.setdefault("metrics", {})
    card_path = weights_dir / f"{NAME}.json"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def record_evaluation(results: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Copy `wavestream eval separate --model separate` results (ours and the baselines', by overlap) to the card."""
    return waveform.record_evaluation(results, NAME, Path(weights_dir) / f"{NAME}.json", "by_overlap")


def add_arguments(parser) -> None:
    waveform.add_arguments(parser, NAME, DEFAULT_CONFIG, init=True)


def run(args) -> int:
    return waveform.run(args, sys.modules[__name__])
