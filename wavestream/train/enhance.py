"""Training recipe for the "enhance" model: noisy speech -> clean speech at 16 kHz.

Loss: negative SI-SDR (waveform) + multi-resolution STFT magnitude loss (spectral convergence +
log magnitude), and optionally (``loss.compressed_weight``) an MSE of power-law compressed spectra and
(``loss.stoi_weight``) the STOI-shaped ``IntelligibilityLoss``, all on
the output aligned with the clean target (the model delays by its latency). ``--init`` fine-tunes from
given weights (e.g. the shipped ones with ``configs/enhance-pesq.json``).
Data: ``wavestream.data.NoisySpeech`` (seeded per index). Dev: fixed examples of the training mixture
over held-out talkers and noise sources of the training corpora (in-domain), and noisy speech mixed as
the frozen ``enhance-ood`` set is, from a speech corpus and noise sources no model trains on
(out-of-domain); the best checkpoint is chosen by the mean over the two of PESQ-WB (``dev.pesq``, the
metric on which the first model lost to the peers on real recordings) or else of SI-SDR. ``export``
writes the shipped weights + card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from wavestream.data import NoisySpeech
from wavestream.data.devset import ENHANCE_SNRS, enhance_mixing
from wavestream.data.voice import NEW_TALKER_OPTIONS
from wavestream.models.enhance import GRUMaskEnhancer
from wavestream.models.registry import WEIGHTS_DIR

from . import waveform
from .loop import BEST, export_checkpoint
from .losses import CompressedSpectrumLoss, IntelligibilityLoss, MultiResolutionSTFTLoss, si_sdr
from .waveform import aligned, crop_to_hop

NAME = "enhance"
METRIC = "dev_score"  # mean output PESQ-WB (with ``dev.pesq``) or SI-SDR (dB) over the dev splits
DEFAULT_CONFIG = Path(__file__).parent / "configs" / "enhance.json"
SECTIONS = ("model", "data", "dev", "loss", "train")
CORPUS_KINDS = ("speech", "noise", "music", "rir")  # what the mixtures draw on: listed in the card
#: dev split -> the name its scores get; the config's ``dev.splits`` picks which are used (both, by default)
DEV_SPLITS = {"dev": "in_domain", "ood": "out_of_domain"}
#: data options the out-of-domain examples keep: where the corpora are and which clips may be targets
_KEPT_FOR_OOD = ("root", "min_bak", "min_native_rate")


class EnhanceLoss(nn.Module):
    """``stft_weight`` x multi-resolution STFT loss - ``sisdr_weight`` x SI-SDR (dB) + ``compressed_weight``
    x compressed-spectrum MSE (``compressed``: the options of ``CompressedSpectrumLoss``) + ``stoi_weight`` x
    ``IntelligibilityLoss`` (``stoi``: its options). A term whose weight is 0 (the default for the last two)
    is not computed: the loss and the logged values are those of the recipe before it."""

    def __init__(self, sisdr_weight: float = 0.1, stft_weight: float = 1.0,
                 resolutions: list[list[int]] = ((512, 128), (1024, 256), (256, 64)),
                 compressed_weight: float = 0.0, compressed: dict | None = None,
                 stoi_weight: float = 0.0, stoi: dict | None = None):
        super().__init__()
        self.sisdr_weight, self.stft_weight, self.compressed_weight = sisdr_weight, stft_weight, compressed_weight
        self.stft = MultiResolutionSTFTLoss([tuple(r) for r in resolutions])
        self.compressed = CompressedSpectrumLoss(**(compressed or {})) if compressed_weight else None
        self.stoi_weight = stoi_weight
        self.intelligibility = IntelligibilityLoss(**(stoi or {})) if stoi_weight else None

    def forward(self, output: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        sdr = si_sdr(output, clean).mean()
        spectral = self.stft(output, clean)
        loss = self.stft_weight * spectral - self.sisdr_weight * sdr
        logged = {"si_sdr": sdr.item(), "stft": spectral.item()}
        if self.compressed is not None:
            compressed = self.compressed(output, clean)
            loss = loss + self.compressed_weight * compressed
            logged["compressed"] = compressed.item()
        if self.intelligibility is not None:
            intelligibility = self.intelligibility(output, clean)
            loss = loss + self.stoi_weight * intelligibility
            logged["stoi"] = intelligibility.item()
        return loss, logged


def dataset(data: dict, split: str, length: int, seconds: float, seed: int) -> NoisySpeech:
    options = {k: v for k, v in data.items() if k not in ("batch_size", "num_workers", "seed", "seconds")}
    for key in ("snr_db", "level_db"):
        if key in options:
            options[key] = tuple(options[key])
    return NoisySpeech(split=split, seconds=seconds, length=length, seed=seed, **options)


def dev_examples(config: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed dev examples (noisy, clean) of ``split``, each ``[N, 1, T]``, the same every run.

    "dev": the training mixture (the config's ``data``, without new talkers) over the dev split's talkers and
    noise sources.
    "ood": the mixing of the frozen ``enhance-ood`` set (``devset.enhance_mixing``) at -5..15 dB SNR:
    recorded talkers of the held-out corpus over the held-out noise corpus and their babble; never a
    training noise, synthetic noise or channel effect."""
    dev, data = config["dev"], config["data"]
    data = {k: v for k, v in data.items() if k not in NEW_TALKER_OPTIONS}  # dev talkers stay as recorded
    if split == "ood":
        data = {k: v for k, v in data.items() if k in _KEPT_FOR_OOD}
        data |= enhance_mixing(data.get("root"), split) | {"snr_db": (min(ENHANCE_SNRS), max(ENHANCE_SNRS))}
    ds = dataset(data, split, dev["items"], dev["seconds"], dev["seed"])
    pairs = [ds[i] for i in range(dev["items"])]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def evaluate_on(model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor, prefix: str,
                batch: int = 16, pesq: bool = False, stoi: bool = False) -> dict[str, float]:
    noisy, clean = crop_to_hop(noisy, clean, hop=model.hop)
    outs = torch.cat([model(noisy[i:i + batch]) for i in range(0, len(noisy), batch)])
    out, ref = aligned(outs, clean, model.latency)
    sdr_out, sdr_in = si_sdr(out, ref).mean().item(), si_sdr(noisy, clean).mean().item()
    scores = {f"{prefix}_si_sdr": sdr_out, f"{prefix}_si_sdr_input": sdr_in, f"{prefix}_si_sdri": sdr_out - sdr_in}
    if pesq:
        scores[f"{prefix}_pesq"] = waveform.mean_pesq(out, ref)
    if stoi:
        scores[f"{prefix}_stoi"] = waveform.mean_stoi(out, ref)
    return scores


def build_model(config: dict) -> GRUMaskEnhancer:
    return GRUMaskEnhancer(**config["model"])


def adapt_init(weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``--init`` of a look-ahead or deep-filter model (state dict ``target``) from weights without one (or with
    less). Look-ahead: the decoder's taps become its oldest and the taps over the frames ahead start at zero.
    Deep filter: the decoder's outputs for the past frames' coefficients, and the encoder's weights on the filtered
    bins' complex spectrum, start at zero. Either way the fine-tune starts from exactly the model it was given
    (delayed by the look-ahead) and learns what the new frames are worth: every tensor that grew keeps the given
    weights first and zeros in its new entries."""
    grown = {}
    for key in ("encoder.conv.weight", "decoder.conv.weight", "decoder.conv.bias"):
        old, want = weights[key], target[key]
        if old.shape != want.shape and old.dim() == want.dim() and all(map(int.__le__, old.shape, want.shape)):
            # zeros after the given weights in every dimension that grew (F.pad lists the last dimension first)
            grown[key] = torch.nn.functional.pad(old, [p for a, b in zip(old.shape[::-1], want.shape[::-1], strict=True)
                                                       for p in (0, b - a)])
    return {**weights, **grown}


def train(config: dict, out: str | Path, resume: bool = False, progress: bool = True,
          init: str | Path | None = None) -> dict:
    """Train from fresh weights, or fine-tune from ``init`` (``--init``: a run's or the shipped safetensors)."""
    criterion = EnhanceLoss(**config["loss"])
    pesq = bool(config["dev"].get("pesq", False))
    stoi = bool(config["dev"].get("stoi", False))

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        noisy, clean = crop_to_hop(*batch, hop=model.hop)
        output, target = aligned(model(noisy), clean, model.latency)
        return criterion(output, target)

    def evaluate_split(model: nn.Module, examples: tuple[torch.Tensor, torch.Tensor], name: str) -> dict[str, float]:
        return evaluate_on(model, *examples, name, pesq=pesq, stoi=stoi)

    return waveform.fit_recipe(sys.modules[__name__], config, out, resume, progress, init, loss_fn, evaluate_split,
                               "pesq" if pesq else "si_sdr")


def export(run: str | Path, weights_dir: str | Path = WEIGHTS_DIR, data_root: str | Path | None = None,
           checkpoint: str = BEST) -> Path:
    """Write the best checkpoint of ``run`` (or ``checkpoint="last"``) as
    ``{weights_dir}/enhance.safetensors`` + ``enhance.json``.

    Fields of an existing card that training does not produce (peer measurements under "metrics",
    prose) are kept, so re-exporting after more training does not lose them.
    """
    run, weights_dir = Path(run), Path(weights_dir)
    model, meta, last, card = export_checkpoint(run, weights_dir, build_model, NAME, checkpoint)
    config = meta["run"]["config"]
    card_path = weights_dir / f"{NAME}.json"
    latency_ms = 1000 * model.algorithmic_latency / model.sample_rate
    card.update({
        "name": NAME,
        "task": "enhance",
        "description": f"Causal speech enhancement at 16 kHz with {latency_ms:g} ms algorithmic latency: a fullband "
                       "GRU predicts a bounded complex ratio mask on a 512/256 sqrt-Hann STFT"
                       + (f", {model.lookahead} frame(s) of look-ahead." if model.lookahead else "."),
        "architecture": {
            "class": "wavestream.models.enhance.GRUMaskEnhancer",
            "family": "FullSubNet / Fast FullSubNet (fullband branch, cIRM output)",
            "summary": "STFT 512/256 sqrt-Hann -> |X|^0.3 (257) -> 1x1 conv 257->embed + ReLU -> GRU x layers "
                       + ("-> 1x1 conv" if not model.lookahead else f"-> conv over {1 + model.lookahead} frames")
                       + " -> complex mask (|M| = tanh|m|) x X -> ISTFT (overlap-add)",
            "parameters": sum(p.numel() for p in model.parameters()),
            "sample_rate": model.sample_rate,
            "hop_samples": model.hop,
            "latency_samples": model.algorithmic_latency,
            "latency_ms": latency_ms,
        },
        "config": config["model"],
        "weights": {"format": "safetensors", "dtype": "float32", "file": f"{NAME}.safetensors"},
        "data": waveform.card_data(last, config, CORPUS_KINDS, data_root),
        "training": {
            **waveform.training_section(NAME, config, meta, last, config["loss"], init=True),
            "dev_history": [{k: round(v, 3) for k, v in h.items()
                             if k in ("step", METRIC) or k.endswith(("si_sdr", "pesq", "stoi"))}
                            for h in last.get("history", [])],
        },
        "dev": {"set": f"{config['dev']['items']} NoisySpeech examples x {config['dev']['seconds']} s from each of "
                       f"the splits {list(config['dev'].get('splits', DEV_SPLITS))} (dev: the training mixture "
                       f"over held-out talkers and noise sources; ood: recorded talkers of a corpus never trained "
                       f"on over noise sources never trained on, mixed as the enhance-ood dev set), seed "
                       f"{config['dev']['seed']}; "
                       + (f"checkpoint chosen by {METRIC} = the mean output "
                          f"{'PESQ-WB' if config['dev'].get('pesq') else 'SI-SDR (dB)'} of the splits"
                          if meta["checkpoint"] == "best" else "the last checkpoint exported (--checkpoint last); "
                          "the scores below are its step's"),
                **{k: round(v, 3) for k, v in meta["metrics"].items()}},
    })
    card.setdefault("metrics", {})
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def record_evaluation(results: str | Path, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Copy ``wavestream eval enhance --model enhance`` results (ours and the peers', by SNR) into the card."""
    return waveform.record_evaluation(results, NAME, Path(weights_dir) / f"{NAME}.json", "by_snr_db")


def add_arguments(parser) -> None:
    waveform.add_arguments(parser, NAME, DEFAULT_CONFIG, init=True)


def run(args) -> int:
    return waveform.run(args, sys.modules[__name__])
