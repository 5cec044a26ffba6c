"""What the recipes of waveform-output models (enhance, separate, codec) share: cropping to whole hops,
aligning a delayed output with its target, the training run of a recipe scored on dev splits, the
training corpora and licences for the card, copying the eval harness's measurements into the card, and
the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from wavestream.data import default_root, load_entries
from wavestream.models.registry import WEIGHTS_DIR

from .commands import apply_overrides
from .loop import LoopConfig, fit, load_config, start_weights, step_batches


def crop_to_hop(*signals: torch.Tensor, hop: int) -> tuple[torch.Tensor, ...]:
    """Drop the tail that does not fill a whole hop (the model steps in hops)."""
    n = signals[0].shape[-1] // hop * hop
    return tuple(s[..., :n] for s in signals)


def aligned(output: torch.Tensor, target: torch.Tensor, latency: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output sample t + latency answers input sample t: drop the first ``latency`` outputs."""
    n = output.shape[-1] - latency
    return output[..., latency:], target[..., :n]


def _per_clip(metric, output: torch.Tensor, reference: torch.Tensor) -> list[float]:
    """``metric(reference, output)`` of each aligned clip of ``[N, 1, T]`` tensors, in float64 numpy."""
    return [metric(r[0].numpy(), o[0].numpy())
            for r, o in zip(reference.detach().double(), output.detach().double(), strict=True)]


def mean_pesq(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean PESQ-WB (the eval harness's, ``wavestream.evaluate.metrics.pesq_wb``) of aligned clips
    ``[N, 1, T]``, for a recipe's dev scores: a clip where PESQ finds no speech is skipped; none at all scores
    PESQ's floor (1.0). Needs the eval extra."""
    import numpy as np

    from wavestream.evaluate.metrics import pesq_wb  # the eval extra

    values = _per_clip(pesq_wb, output, reference)
    return float(np.nanmean(values)) if not np.all(np.isnan(values)) else 1.0


def mean_stoi(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean STOI (the eval harness's, ``wavestream.evaluate.metrics.stoi``) of aligned clips ``[N, 1, T]``, for
    a recipe's dev scores. Needs the eval extra."""
    from wavestream.evaluate.metrics import stoi  # the eval extra

    values = _per_clip(stoi, output, reference)
    return sum(values) / len(values)


def fit_recipe(recipe, config: dict, out: str | Path, resume: bool, progress: bool, init: str | Path | None,
               loss_fn: Callable[[nn.Module, object], tuple[torch.Tensor, dict[str, float]]],
               evaluate_split: Callable[[nn.Module, tuple, str], dict[str, float]], score: str) -> dict:
    """The training run of ``recipe`` (a module with ``build_model``, ``dataset``, ``dev_examples``,
    ``DEV_SPLITS``, ``METRIC`` and ``CORPUS_KINDS``, optionally ``adapt_init``): fresh weights for the loop's
    seed, or ``init``'s (``start_weights``, through ``recipe.adapt_init(weights, model.state_dict())`` where the
    recipe turns other shapes into the model's, as kws's ``widen`` does); batches of the config's training
    examples; every dev split of the config scored by ``evaluate_split(model, examples, name)``, and ``METRIC``,
    what picks the best checkpoint, the mean of their ``{name}_{score}``."""
    loop = LoopConfig.from_dict(config["train"])
    torch.manual_seed(loop.seed)  # the same initial weights for the same seed
    model = recipe.build_model(config)
    adapt = getattr(recipe, "adapt_init", None)
    init = start_weights(model, init, out, resume,
                         adapt=adapt and (lambda weights: adapt(weights, model.state_dict())))
    data = config["data"]
    batch_size = data["batch_size"]
    train_set = recipe.dataset(data, "train", loop.steps * batch_size, data["seconds"], data.get("seed", 0))
    dev_sets = {recipe.DEV_SPLITS[split]: recipe.dev_examples(config, split)
                for split in config["dev"].get("splits", recipe.DEV_SPLITS)}

    def batches(start: int) -> Iterator:
        return step_batches(train_set, batch_size, start, loop.steps, data.get("num_workers", 0))

    def evaluate(model: nn.Module) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, examples in dev_sets.items():
            metrics.update(evaluate_split(model, examples, name))
        metrics[recipe.METRIC] = sum(metrics[f"{name}_{score}"] for name in dev_sets) / len(dev_sets)
        return metrics

    return fit(model, loss_fn, batches, evaluate, loop, Path(out), recipe.METRIC, resume=resume,
               run_info={"config": config, "init": init, "corpora": run_corpora(config, recipe.CORPUS_KINDS)},
               progress=progress)


def training_corpora(root: Path, kinds: tuple[str, ...] = ("speech", "noise", "music", "rir")) -> list[dict]:
    """Corpora and licences of the training split, read from the manifests that were used."""
    rows: dict[tuple[str, str, str], float] = {}
    for kind in kinds:
        try:
            entries = load_entries(root, kind, "train")
        except ValueError:
            continue
        for e in entries:
            key = (kind, e["corpus"], e["licence"])
            rows[key] = rows.get(key, 0.0) + e["duration"]
    return [{"kind": k, "corpus": c, "licence": lic, "minutes": round(d / 60, 1)}
            for (k, c, lic), d in sorted(rows.items())]


def run_corpora(config: dict, kinds: tuple[str, ...], data_root: str | Path | None = None) -> list[dict]:
    """The corpora a run starts on, for its ``run_info``: the manifests change as corpora are added, so the
    card must list what the run read, not what the manifests hold at export."""
    return training_corpora(Path(config["data"].get("root") or data_root or default_root()), kinds)


def card_data(last: dict, config: dict, kinds: tuple[str, ...], data_root: str | Path | None = None) -> dict:
    """The card's ``data``: the run's synthesis settings (not its loader or where it read from) and its corpora,
    as recorded when the run (or its last resume) started; runs from before that was recorded fall back to
    today's manifests."""
    recorded = last.get("run", {}).get("corpora")
    return {"synthesis": {k: v for k, v in config["data"].items() if k not in ("num_workers", "root")},
            "corpora": recorded if recorded is not None else run_corpora(config, kinds, data_root)}


CONFIGS = Path(__file__).parent / "configs"


def recipe_line(name: str, config: dict, init: str | None = None) -> str:
    """The command that trains this run: the shipped config file with the same content (data root, seeds and
    step count aside; a run with other seeds says ``--seed N``, one of another length ``--steps N``, given at
    its start or to ``--resume``)."""
    def plain(c: dict) -> dict:
        return {**c, "data": {k: v for k, v in c["data"].items() if k not in ("root", "seed")},
                "train": {k: v for k, v in c["train"].items() if k not in ("steps", "seed")}}
    files = ((f, json.loads(f.read_text())) for f in sorted(CONFIGS.glob(f"{name}*.json")))
    path, shipped = next(((f, c) for f, c in files if plain(c) == plain(config)), (None, config))
    source = f"wavestream/train/configs/{path.name}" if path else "<the config in this card>"
    line = f"wavestream train {name} --config {source}" + (f" --init {init}" if init else "")
    seeds = (config["data"].get("seed"), config["train"].get("seed"))
    if seeds != (shipped["data"].get("seed"), shipped["train"].get("seed")):
        # --seed sets both; a config whose two seeds differ from each other has no such flag
        line += f" --seed {seeds[1]}" if seeds[0] == seeds[1] else f" (data seed {seeds[0]}, training seed {seeds[1]})"
    if shipped["train"]["steps"] != config["train"]["steps"]:
        line += f" --steps {config['train']['steps']} (at the start, or later with --resume)"
    return line


def training_section(name: str, config: dict, meta: dict, last: dict, loss, init: bool = False) -> dict:
    """The card's "training" entry: recipe, loss, optimizer, batches, steps and time (the recipe adds its
    dev history); ``meta`` is the best checkpoint's, ``last`` the last one's. ``init``: the recipe offers
    ``--init``, and a fine-tune's entry says what it started from (the run's ``init``)."""
    started = meta["run"].get("init") if init else None
    return {
        "recipe": recipe_line(name, config, started),
        **({"init": started} if started else {}),
        "loss": loss,
        "optimizer": {k: config["train"][k] for k in ("lr", "warmup_steps", "min_lr_ratio", "grad_clip")
                      if k in config["train"]} | {"name": "Adam", "schedule": "warmup + cosine"},
        "batch_size": config["data"]["batch_size"],
        "segment_seconds": config["data"]["seconds"],
        "best_step": meta["step"],
        "checkpoint": meta["checkpoint"],  # which one was exported (--checkpoint)
        "steps_run": last["step"],
        "planned_steps": config["train"]["steps"],
        "training_hours": round(last["elapsed_s"] / 3600, 2),
        "hardware": f"2 shared CPU cores, torch.set_num_threads({config['train'].get('threads', 2)})",
    }


def record_evaluation(results: str | Path, name: str, card_path: Path, group_key: str | None) -> Path:
    """Copy the eval harness's measurements of model ``name`` (and the peers beside it) into its card.

    ``results`` is the ``results.json`` written by ``wavestream eval TASK --model NAME``; the card's
    "metrics" gets our model's mean scores, "evaluation" the whole comparison by system (and by group
    under ``group_key``, for tasks whose clips are grouped).
    """
    results_data = json.loads(Path(results).read_text())
    systems = results_data["systems"]
    if name not in systems:
        raise ValueError(f"{results} has no {name!r} results; run `wavestream eval ... --model {name}` first")
    card = json.loads(card_path.read_text())
    card["metrics"] = dict(systems[name]["mean"])
    card["evaluation"] = {
        "devset": results_data["devset"],
        "date": results_data["date"],
        "command": results_data["command"],
        "systems": {n: {"parameters": s["parameters"], "latency_ms": s["latency_ms"], "rtf": s["rtf"],
                        **{k: s[k] for k in ("rtf_batched", "batch", "batch_chunk_ms") if s.get(k) is not None},
                        **s["mean"]}
                    for n, s in systems.items()},
    }
    if group_key is not None:
        card["evaluation"][group_key] = {n: s["by_group"] for n, s in systems.items()}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def add_arguments(parser, name: str, default_config: Path, init: bool = False) -> None:
    """The command-line options of a waveform recipe (`wavestream train NAME ...`); ``init``: the recipe's
    ``train`` takes ``init=`` (a fine-tune's starting weights), offered as ``--init``."""
    parser.add_argument("--config", default=str(default_config), help="recipe config (JSON)")
    if init:
        parser.add_argument("--init", default=None, metavar="SAFETENSORS",
                            help="start from these weights (a run's best.safetensors or the shipped ones) instead "
                                 "of fresh ones; the config's LR schedule starts over")
    parser.add_argument("--record-eval", metavar="RESULTS_JSON", default=None,
                        help=f"do not train: copy `wavestream eval` results for {name} into the card in --weights-dir")
    parser.add_argument("--weights-dir", default=str(WEIGHTS_DIR),
                        help=f"with --export: where {name}.safetensors + {name}.json go (the shipped ones)")


def run(args, recipe) -> int:
    """Train, export or record an evaluation for ``recipe`` (a module with ``train``, ``export``,
    ``record_evaluation``, ``SECTIONS`` and ``METRIC``), as the options in ``args`` say."""
    if args.record_eval:
        print(recipe.record_evaluation(args.record_eval, args.weights_dir))
        return 0
    if args.export:
        print(recipe.export(args.out, args.weights_dir, checkpoint=args.checkpoint))
        return 0
    config = load_config(args.config, recipe.SECTIONS)
    apply_overrides(config, args)
    started = time.time()
    extra = {"init": args.init} if hasattr(args, "init") else {}  # only recipes that offer --init
    meta = recipe.train(config, args.out, resume=args.resume, progress=not args.quiet, **extra)
    print(f"trained to step {meta['step']} in {time.time() - started:.0f} s; best {recipe.METRIC} {meta['best']:.2f} "
          f"dB; checkpoints in {args.out}")
    return 0
