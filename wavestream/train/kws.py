"""Training recipe for the keyword spotters "kws" (LMUFormer) and "kws-spiking" (spiking LMUFormer).

Data: ``wavestream.data.keywords.KeywordClips`` (seeded per index): keywords of the TTS voices and
recorded corpora, unknown words and running speech, background only; noise/music/babble at 0-20 dB,
rooms, speed/pitch, new talkers (pitch without tempo, formants), band-limiting, level, time shift (see
that module).

Loss (``loss.kind``):

- ``frame``: per-frame cross-entropy against frame targets made from where the word is. A frame is
  labelled with what has been *said by its end*: background before the word; the keyword from
  ``onset_s`` before the word ends until ``hold_s`` after (the detector's window); nothing (ignored)
  while the word is still going on before that and for ``release_s`` after the hold; background
  again afterwards (the model must let go). Unknown words are "unknown" from their start to the end
  of the hold. This is what streaming detection needs: posteriors that rise when a word is complete
  and fall again.
- ``pooled``: one cross-entropy per clip on the log-sum-exp of the frame logits over the clip (a
  soft max-pool; no timing).
- ``both``: their sum.

``loss.distill`` (optional; ``{"teacher": "kws", "weights": null, "weight": 1.0, "temperature": 2.0}``)
adds knowledge distillation: the KL divergence from a frozen teacher's per-frame class posteriors (both
softened by ``temperature``, scaled by its square as usual) to the student's, on the same augmented
clips. It is how the spiking model learns from the ANN: the teacher's soft posteriors say which words
sound alike and when a word is complete, which hard frame targets cannot. ``weights: null`` means the
shipped teacher at the time the run (or its resume) starts: pin a file for a resume that must be exact.

Dev: the frozen keyword dev sets (``wavestream data devset --task keywords,keywords-real``); the
checkpoint is chosen on ``dev_real_top1`` (recorded English keywords of a corpus never trained on:
the out-of-domain set), with the synthetic dev voices logged beside it. ``--init`` starts from
another run's weights (e.g. the spiking model from the ANN's); weights of a model an integer factor
narrower are widened first (``widen``: the wide model starts with the narrow one's posteriors).
``--export`` writes the shipped weights + card.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from wavestream.data import default_root, load_entries
from wavestream.data.keywords import DEV_ONLY_CORPORA, KeywordClips, recorded_entries
from wavestream.evaluate.kws import argmax_keyword, detect, top_event, trained_real_corpora
from wavestream.models.registry import WEIGHTS_DIR, get_spec, load_model

from . import waveform
from .commands import apply_overrides
from .loop import BEST, LoopConfig, checkpoint_model, export_checkpoint, fit, load_config, start_weights, step_batches

METRIC = "dev_real_top1"
SECTIONS = ("name", "model", "data", "dev", "loss", "train")
IGNORE = -100
#: the detector settings ``tune_detector`` chooses (the rest of the card's config stays)
TUNED = ("smooth_frames", "threshold", "min_frames")


def build_model(config: dict) -> nn.Module:
    return get_spec(config["name"]).build(**config["model"])


# -- targets and losses ---------------------------------------------------------------------------

def frame_targets(labels: torch.Tensor, spans: torch.Tensor, frames: int, hop: int, rate: int, keywords: int,
                  onset_s: float = 0.15, hold_s: float = 0.3, release_s: float = 0.2) -> torch.Tensor:
    """``[B, frames]`` class targets (``IGNORE`` where none) for clips of ``labels`` with word ``spans``.

    Frame k ends at sample ``(k + 1) * hop``; label ``keywords`` is unknown, ``keywords + 1`` background.
    """
    ends = (torch.arange(frames) + 1) * hop  # [frames]
    silence = keywords + 1
    targets = torch.full((len(labels), frames), silence, dtype=torch.long)
    for b, (label, (start, end)) in enumerate(zip(labels.tolist(), spans.tolist(), strict=True)):
        if label == silence or start < 0:
            continue
        on = end - int(onset_s * rate) if label < keywords else start
        off = end + int(hold_s * rate)
        release = off + int(release_s * rate)
        row = targets[b]
        row[(ends > start) & (ends < on)] = IGNORE
        row[(ends >= on) & (ends <= off)] = label
        row[(ends > off) & (ends <= release)] = IGNORE
    return targets


class KeywordLoss(nn.Module):
    def __init__(self, kind: str = "frame", onset_s: float = 0.15, hold_s: float = 0.3, release_s: float = 0.2,
                 label_smoothing: float = 0.05):
        super().__init__()
        if kind not in ("frame", "pooled", "both"):
            raise ValueError(f"loss kind must be frame, pooled or both; got {kind!r}")
        self.kind, self.onset_s, self.hold_s, self.release_s = kind, onset_s, hold_s, release_s
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, spans: torch.Tensor, hop: int,
                rate: int) -> tuple[torch.Tensor, dict[str, float]]:
        """``logits [B, K, T]``; returns (loss, stats)."""
        keywords = logits.shape[1] - 2
        loss = logits.new_zeros(())
        stats: dict[str, float] = {}
        if self.kind in ("frame", "both"):
            targets = frame_targets(labels, spans, logits.shape[-1], hop, rate, keywords, self.onset_s, self.hold_s,
                                    self.release_s)
            frame = nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE,
                                                label_smoothing=self.label_smoothing)
            loss = loss + frame
            valid = targets != IGNORE
            stats["frame_acc"] = float((logits.argmax(1)[valid] == targets[valid]).float().mean())
            stats["frame_ce"] = frame.item()
        if self.kind in ("pooled", "both"):
            pooled = torch.logsumexp(logits, dim=-1) - np.log(logits.shape[-1])
            clip = nn.functional.cross_entropy(pooled, labels, label_smoothing=self.label_smoothing)
            loss = loss + clip
            stats["clip_ce"] = clip.item()
            stats["clip_acc"] = float((pooled.argmax(1) == labels).float().mean())
        return loss, stats


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over frames of KL(teacher || student) of the class posteriors at ``temperature``, times its
    square (so the gradient's scale does not depend on it); logits ``[B, K, T]``."""
    log_p = nn.functional.log_softmax(teacher / temperature, dim=1)
    log_q = nn.functional.log_softmax(student / temperature, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean() * temperature ** 2


def load_teacher(distill: dict) -> nn.Module:
    """The frozen teacher of ``loss.distill``: a registered model, its shipped weights or ``weights``."""
    teacher = load_model(distill["teacher"], distill.get("weights"), allow_untrained=False).eval()
    teacher.requires_grad_(False)
    return teacher


# -- data -------------------------------------------------------------------------------------------

def dataset(data: dict, split: str, length: int, seed: int) -> KeywordClips:
    options = {k: v for k, v in data.items() if k not in ("batch_size", "num_workers", "seed")}
    for key in ("snr_db", "level_db", "speed", "pitch_semitones", "formant_warp"):
        if key in options:
            options[key] = tuple(options[key])
    return KeywordClips(split=split, length=length, seed=seed, **options)


def dev_clips(config: dict, task: str) -> tuple[torch.Tensor, list[dict]] | None:
    """(audio ``[N, 1, T]``, entries) of a frozen keyword dev set, or None when it was not written."""
    from wavestream.data.devset import load_devset
    root = config["data"].get("root")
    try:
        folder, entries = load_devset(task, root, verify=False)
    except ValueError:
        return None
    limit = config["dev"].get("limit")
    if limit:
        entries = entries[:: max(1, len(entries) // limit)]
    audio = [sf.read(str(folder / e["audio"]), dtype="float32")[0] for e in entries]
    n = min(len(a) for a in audio)
    return torch.from_numpy(np.stack([a[:n] for a in audio]))[:, None], entries


def alarm_frames(model: nn.Module, audio: torch.Tensor, batch: int = 4, threshold: float = 0.5) -> float:
    """Share of frames of keyword-free audio where some keyword's smoothed posterior reaches ``threshold``
    (a threshold-light stand-in for false alarms, cheap enough for every dev evaluation)."""
    from wavestream.evaluate.kws import smooth
    keywords = len(model.classes) - 2
    frames = model.detector_config["smooth_frames"]
    n = audio.shape[-1] // model.hop * model.hop
    shares = []
    for i in range(0, len(audio), batch):
        for p in model(audio[i:i + batch, :, :n]).numpy():
            shares.append(float((smooth(p.T, frames)[:, :keywords].max(axis=1) >= threshold).mean()))
    return float(np.mean(shares))


def evaluate_on(model: nn.Module, audio: torch.Tensor, entries: list[dict], prefix: str,
                batch: int = 32, detector: dict | None = None) -> dict[str, float]:
    """Top-1 (argmax of the smoothed keyword posteriors) on keyword clips, and the mean peak keyword
    posterior on the others (lower is better: no keyword there). With ``detector`` (settings of the event
    detector), also the top-1 of the highest-scoring event (none = wrong), each clip followed by the
    model's end silence as the service feeds it: what a user gets, where the argmax is what the model knows."""
    keywords = len(model.classes) - 2
    smooth_frames = model.detector_config["smooth_frames"]
    n = audio.shape[-1] // model.hop * model.hop
    silence = round(getattr(model, "end_silence_s", 0.0) * model.sample_rate) // model.hop * model.hop
    audio = nn.functional.pad(audio[..., :n], (0, silence))
    post = torch.cat([model(audio[i:i + batch]) for i in range(0, len(audio), batch)]).numpy()
    right, events, peaks = [], [], []
    for p, e in zip(post, entries, strict=True):
        best, score = argmax_keyword(p.T, keywords, smooth_frames)
        if e["label"] in model.classes[:keywords]:
            right.append(model.classes[best] == e["label"])
            if detector is not None:
                top = top_event(detect(model, p.T, **detector))
                events.append(top is not None and top["label"] == e["label"])
        else:
            peaks.append(score)
    out = {f"{prefix}_top1": float(np.mean(right)) if right else float("nan")}
    if events:
        out[f"{prefix}_event_top1"] = float(np.mean(events))
    if peaks:
        out[f"{prefix}_other_peak"] = float(np.mean(peaks))
    return out


def widen(weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A narrower model's weights as a start for a model ``factor`` times as wide (every width: the embedding's,
    the residual stream's, the MLP's), computing the same function (Net2Net's widening): each channel is
    repeated ``factor`` times, and a layer reading repeated channels takes 1/``factor`` of the old weight from
    each copy. Layer norms see the same mean and variance, LIF neurons the same currents, so the wide model's
    posteriors are the narrow one's. The copies part ways in training: the residual dropout draws a mask per
    channel. Weights of the model's own shapes pass unchanged."""
    old_dim, new_dim = weights["head.weight"].shape[1], target["head.weight"].shape[1]
    if old_dim == new_dim:
        return weights
    if new_dim % old_dim:
        raise ValueError(f"--init: a model of width {new_dim} cannot grow from width {old_dim} (not a multiple)")
    factor = new_dim // old_dim
    out = {}
    for name, value in weights.items():
        want = target[name].shape if name in target else value.shape
        for axis, (old, new) in enumerate(zip(value.shape, want, strict=True)):
            if old == new:
                continue
            if axis == 0 and new == factor * old:  # output channels (and their biases, norm scales)
                value = torch.cat([value] * factor, dim=0)
            elif axis == 1 and (new - old) % (factor - 1) == 0:  # input channels
                # the repeated channels come after the ones that stay (memory_out reads the memory, then h)
                width = (new - old) // (factor - 1)
                kept, repeated = value.split([old - width, width], dim=1)
                value = torch.cat([kept] + [repeated / factor] * factor, dim=1)
            else:
                raise ValueError(f"--init: cannot grow {name} from {tuple(value.shape)} to {tuple(want)}")
        out[name] = value
    return out


def train(config: dict, out: str | Path, resume: bool = False, progress: bool = True,
          init: str | Path | None = None) -> dict:
    loop = LoopConfig.from_dict(config["train"])
    torch.manual_seed(loop.seed)
    model = build_model(config)
    init = start_weights(model, init, out, resume, allow_missing=True,
                         adapt=lambda weights: widen(weights, model.state_dict()))
    data = config["data"]
    batch_size = data["batch_size"]
    train_set = dataset(data, "train", loop.steps * batch_size, data.get("seed", 0))
    loss_config = dict(config["loss"])
    distill = loss_config.pop("distill", None)
    criterion = KeywordLoss(**loss_config)
    teacher = load_teacher(distill) if distill else None
    dev = {"real": dev_clips(config, "keywords-real"), "syn": dev_clips(config, "keywords")}
    metric = config["dev"].get("metric", METRIC)
    if metric == "dev_score":  # real top-1 minus the share of alarm frames on keyword-free speech/noise
        negative = dev_clips({**config, "dev": {"limit": config["dev"].get("negative_limit", 12)}},
                             "keywords-negative")
        if negative is None:
            raise ValueError("dev metric dev_score needs the keywords-negative dev set: "
                             "`wavestream data devset --task keywords-negative`")
        dev["neg"] = negative
    if dev["real"] is None:
        raise ValueError("no keywords-real dev set: run `wavestream data devset --task keywords-real` "
                         "(after `wavestream data prepare --only keywords`)")

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return step_batches(train_set, batch_size, start, loop.steps, data.get("num_workers", 0))

    def loss_fn(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        audio, labels, spans = batch
        audio = audio[..., :audio.shape[-1] // model.hop * model.hop]
        logits = model.frame_logits(audio)
        loss, stats = criterion(logits, labels, spans, model.hop, model.sample_rate)
        if teacher is not None:
            with torch.no_grad():
                soft = teacher.frame_logits(audio)
            kd = distillation_loss(logits, soft, distill.get("temperature", 2.0))
            loss = loss + distill.get("weight", 1.0) * kd
            stats["distill"] = kd.item()
        return loss, stats

    # events as the shipped model's detector would find them (its card's settings): logged beside the argmax
    shipped = get_spec(config["name"]).card().get("config", {})
    detector = {k: shipped[k] for k in TUNED if k in shipped}

    def evaluate(model: nn.Module) -> dict[str, float]:
        metrics = evaluate_on(model, *dev["real"], "dev_real", detector=detector)
        if dev["syn"] is not None:
            metrics.update(evaluate_on(model, *dev["syn"], "dev_syn"))
        if "neg" in dev:
            metrics["dev_neg_alarm_frames"] = alarm_frames(model, dev["neg"][0])
            metrics["dev_score"] = metrics[METRIC] - metrics["dev_neg_alarm_frames"]
        return metrics

    # the corpora as the run starts: the manifests change as corpora are added, and the card lists what was read
    corpora = _training_data(Path(data.get("root") or default_root()), config)
    return fit(model, loss_fn, batches, evaluate, loop, Path(out), metric, resume=resume,
               run_info={"config": config, "init": init, "corpora": corpora},
               progress=progress)


# -- export -----------------------------------------------------------------------------------------

def _training_data(root: Path, config: dict) -> list[dict]:
    """Corpora, licences and amounts of the training split that the config draws from."""
    data = config["data"]
    rows: dict[tuple[str, str, str], list[float]] = {}

    def add(kind: str, entries: list[dict]) -> None:
        for e in entries:
            row = rows.setdefault((kind, e["corpus"], e["licence"]), [0.0, 0])
            row[0] += e["duration"]
            row[1] += 1
    for kind in ("keywords", "speech", "noise", "music", "rir"):
        try:
            entries = load_entries(root, kind, "train")
        except ValueError:
            continue
        if kind == "keywords":
            chosen = data.get("corpora")
            entries = [e for e in entries if (e["corpus"] in chosen if chosen else e["corpus"] not in DEV_ONLY_CORPORA)]
            real = data.get("real_corpora") or []
            entries = [e for e in entries if e["corpus"] not in real] + recorded_entries(root, real)
        if kind == "rir" and not data.get("reverb_prob", 0.3):
            continue
        add(kind, entries)
    return [{"kind": k, "corpus": c, "licence": lic, "clips": n, "minutes": round(d / 60, 1)}
            for (k, c, lic), (d, n) in sorted(rows.items())]


def export(run: str | Path, weights_dir: str | Path = WEIGHTS_DIR, data_root: str | Path | None = None,
           detector: dict | None = None, tuning: dict | None = None, checkpoint: str = BEST) -> Path:
    """Write the best checkpoint of ``run`` (or ``checkpoint="last"``) as ``{weights_dir}/{name}.safetensors``
    + ``{name}.json``.

    ``detector`` overrides the event detector's settings in the card's config (tuned on the dev sets).
    Card fields training does not produce (``metrics``, ``evaluation``) are kept.
    """
    run, weights_dir = Path(run), Path(weights_dir)
    model, meta, last, card = export_checkpoint(run, weights_dir, build_model, checkpoint=checkpoint)
    config = meta["run"]["config"]
    name = config["name"]
    card_path = weights_dir / f"{name}.json"
    model_config = {**config["model"], **(detector or {})}
    real = config["data"].get("real_corpora") or []  # dev talkers a leave-one-source-out run trained on
    card.update({
        "name": name,
        "task": "kws",
        "description": ("Streaming keyword spotting at 16 kHz, one 10 ms frame per step: "
                        + ("spiking LMUFormer (LIF neurons between the layers). " if "spiking" in name
                           else "LMUFormer (Legendre Memory Unit token mixer). ")
                        + "Per-frame posteriors over 20 keywords + unknown + background, debounced into events."),
        "architecture": {
            "class": "wavestream.models.kws.LMUFormerKWS",
            "family": "LMUFormer (Liu et al.), made causal; spiking variant with LIF neurons",
            "summary": "log-mel 40 (25 ms / 10 ms) -> 4 causal convs k=3 -> LMU blocks (memory of theta frames + "
                       "channel MLP) -> per-frame linear head",
            "parameters": sum(p.numel() for p in model.parameters()),
            "sample_rate": model.sample_rate, "hop_samples": model.hop, "latency_samples": model.algorithmic_latency,
            "latency_ms": 1000 * model.algorithmic_latency / model.sample_rate,
            "classes": list(model.classes),
        },
        "config": model_config,
        "weights": {"format": "safetensors", "dtype": "float32", "file": f"{name}.safetensors"},
        "data": {
            "synthesis": {k: v for k, v in config["data"].items() if k not in ("num_workers", "root")},
            # runs from before the corpora were recorded fall back to today's manifests
            "corpora": last.get("run", {}).get("corpora")
            or _training_data(Path(config["data"].get("root") or data_root or default_root()), config),
            "never_trained_on": f"{', '.join(c for c in DEV_ONLY_CORPORA if c not in real)} (the real-speech dev "
                                "set) and the sources of the held-out test (never used for training, tuning or "
                                "evaluation)",
        },
        "training": {
            "recipe": waveform.recipe_line(config["name"], config, meta["run"].get("init")),
            "init": meta["run"].get("init"),
            "loss": config["loss"],
            "optimizer": {k: config["train"][k] for k in ("lr", "warmup_steps", "min_lr_ratio", "grad_clip",
                                                           "weight_decay") if k in config["train"]}
            | {"name": "Adam", "schedule": "warmup + cosine"},
            "batch_size": config["data"]["batch_size"],
            "clip_seconds": config["data"].get("seconds", 1.5),
            "best_step": meta["step"],
            "checkpoint": meta["checkpoint"],
            "steps_run": last["step"],
            "planned_steps": config["train"]["steps"],
            "training_hours": round(last["elapsed_s"] / 3600, 2),
            "hardware": f"2 shared CPU cores, torch.set_num_threads({config['train'].get('threads', 2)})",
            "dev_history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}
                            for h in last.get("history", [])],
        },
        "dev": {"chosen_on": (f"{METRIC}: top-1 on the recorded English keywords of keywords-real (Tux Paint, never "
                              "trained on)") if config["dev"].get("metric", METRIC) == METRIC else
                (f"dev_score = {METRIC} (top-1 on the recorded English keywords of keywords-real, never trained on) "
                 "minus dev_neg_alarm_frames (share of frames of keyword-free keywords-negative clips where a "
                 "smoothed keyword posterior reaches 0.5)"),
                **{k: round(v, 4) for k, v in meta["metrics"].items()}},
    })
    card["training"]["previous_phases"] = _phases(meta["run"].get("init"))
    if tuning is not None:
        card["detector_tuning"] = tuning
    card.setdefault("metrics", {})
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def _phases(init: str | None) -> list[dict]:
    """The runs this one started from (``--init RUN/best.safetensors``), oldest first, as far as their
    checkpoint folders are still there."""
    phases: list[dict] = []
    while init and (Path(init).parent / "last.json").exists():
        run = Path(init).parent
        last = json.loads((run / "last.json").read_text())
        best = json.loads((run / f"{BEST}.json").read_text())
        config = last["run"]["config"]
        phases.insert(0, {"run": str(run), "name": config["name"], "loss": config["loss"], "data": config["data"],
                          "train": config["train"], "dev": config["dev"], "best_step": best["step"],
                          "steps_run": last["step"], "training_hours": round(last["elapsed_s"] / 3600, 2),
                          "dev_history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}
                                          for h in last.get("history", [])]})
        init = last["run"].get("init")
    return phases


def _tune(model: nn.Module, root: str | Path | None, trained_corpora: list[str]) -> dict:
    """``tune_detector`` on one thread, as every figure of the cards is measured, on the real talkers the
    model did not train on."""
    from wavestream.evaluate.kws import tune_detector
    torch.set_num_threads(1)
    return tune_detector(model.eval(), root, trained_corpora=tuple(trained_corpora))


def retune_detector(name: str, weights_dir: str | Path = WEIGHTS_DIR, root: str | Path | None = None) -> Path:
    """Choose the event detector of the shipped weights ``name`` again on today's dev sets (the rule of
    ``--export --tune-detector``), for when the dev sets or the detector's input changed but the weights did
    not: the card's detector settings and ``detector_tuning`` are rewritten, the weights are untouched."""
    weights_dir = Path(weights_dir)
    weights = str(weights_dir / f"{name}.safetensors")
    tuning = _tune(load_model(name, weights), root, trained_real_corpora(name, weights))
    card_path = weights_dir / f"{name}.json"
    card = json.loads(card_path.read_text())
    card["config"].update({k: tuning[k] for k in TUNED})
    card["detector_tuning"] = tuning
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def record_evaluation(results: str | Path, name: str, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Copy ``wavestream eval kws`` results of model ``name`` into its card ("metrics" + "evaluation")."""
    data = json.loads(Path(results).read_text())
    if name not in data["systems"]:
        raise ValueError(f"{results} has no {name!r} results; run `wavestream eval kws --model {name}` first")
    s = data["systems"][name]
    card_path = Path(weights_dir) / f"{name}.json"
    card = json.loads(card_path.read_text())
    card["metrics"] = {
        "synthetic_top1": s["synthetic"].get("top1_event"), "real_top1": s["real"].get("top1_event"),
        "real_top1_argmax": s["real"].get("top1_argmax"), "false_alarms_per_hour": s["false_alarms_per_hour"],
        "delay_median_s": s["real"].get("delay_median_s"), "rtf": s["rtf"], "spike_rate": s["ops"].get("spike_rate"),
        "macs_per_s": s["ops"]["macs_per_s"], "synops_per_s": s["ops"]["synops_per_s"],
        "step_over_recompute": s["streaming"]["step_over_recompute"]}
    card["evaluation"] = {"date": data["date"], "command": data.get("command"), "devsets": data["devsets"],
                          "result": {k: v for k, v in s.items() if k not in ("config",)}}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def add_arguments(parser) -> None:
    parser.add_argument("--config", default=None,
                        help="recipe config (JSON); default wavestream/train/configs/RECIPE.json (kws or kws-spiking)")
    parser.add_argument("--init", default=None, metavar="SAFETENSORS",
                        help="start from these weights (e.g. the ANN's best.safetensors for the spiking model)")
    parser.add_argument("--weights-dir", default=str(WEIGHTS_DIR), help="with --export: where the weights + card go")
    parser.add_argument("--detector", default=None, metavar="JSON",
                        help='with --export: event detector settings for the card, e.g. \'{"threshold": 0.7}\'')
    parser.add_argument("--tune-detector", action="store_true",
                        help="with --export: choose the detector's smoothing, threshold and minimum event length "
                             "on the dev sets "
                             "(best real-speech top-1 at <= 1 false alarm per hour of the negative set); "
                             "without --export: do not train, choose it again for the shipped weights of --name")
    parser.add_argument("--record-eval", metavar="RESULTS_JSON", default=None,
                        help="do not train: copy `wavestream eval kws` results into the card of --name")
    parser.add_argument("--name", default=None,
                        help="with --record-eval or --tune-detector alone: the model (kws or kws-spiking)")


def run(args) -> int:
    if args.record_eval:
        print(record_evaluation(args.record_eval, args.name or "kws", args.weights_dir))
        return 0
    if args.tune_detector and not args.export:
        print(retune_detector(args.name or "kws", args.weights_dir))
        return 0
    if args.export:
        detector = json.loads(args.detector) if args.detector else None
        tuning = None
        if args.tune_detector:
            model, meta = checkpoint_model(args.out, build_model, args.checkpoint)
            data = meta["run"]["config"]["data"]
            tuning = _tune(model, data.get("root"), data.get("real_corpora") or [])
            detector = {k: tuning[k] for k in TUNED}
        print(export(args.out, args.weights_dir, detector=detector, tuning=tuning, checkpoint=args.checkpoint))
        return 0
    config = load_config(args.config or waveform.CONFIGS / f"{args.recipe}.json", SECTIONS)
    apply_overrides(config, args)
    started = time.time()
    meta = train(config, args.out, resume=args.resume, progress=not args.quiet, init=args.init)
    metric = config["dev"].get("metric", METRIC)
    print(f"trained to step {meta['step']} in {time.time() - started:.0f} s; best {metric} {meta['best']:.3f}; "
          f"checkpoints in {args.out}")
    return 0
