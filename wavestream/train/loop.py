"""A small, shared training loop: seeded, resumable, with checkpoints in safetensors + JSON.

Recipes (one per model family) provide the model, a loss on a batch, the batches from a given
step on, and a dev evaluation; this module does the rest: Adam with warmup + cosine LR, gradient
clipping, a tqdm bar and a log file, periodic checkpoints, dev evaluation every N steps and keeping
the best weights. Nothing is pickled: model and optimizer tensors go to safetensors, the rest to JSON.

Resuming is exact: batches are a function of the step (the recipe's data is seeded by index), the
LR is a function of the step, and the optimizer state and torch RNG are restored, so an interrupted
and resumed run ends with the same weights as an uninterrupted one.

With ``ema_decay`` the loop also keeps an exponential moving average of the weights; that average is
what is scored on dev, kept as ``best`` and ``last`` and exported, and the weights being trained ride in
the optimizer file for resuming. One late checkpoint of a short run is a noisy pick (a few dev clips
move between neighbours); the average of the last few hundred steps is steadier.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

LAST, BEST = "last", "best"


def load_config(path: str | Path, sections: tuple[str, ...]) -> dict:
    """A recipe's JSON config; every recipe names the sections it needs, and a missing one is refused."""
    config = json.loads(Path(path).read_text())
    missing = [s for s in sections if s not in config]
    if missing:
        raise ValueError(f"config {path} lacks section(s) {missing}; it needs {list(sections)}")
    return config


def checkpoint_model(run: str | Path, build_model: Callable[[dict], nn.Module],
                     checkpoint: str = BEST) -> tuple[nn.Module, dict]:
    """A checkpoint of ``run`` (``best``, the one the dev score kept, or ``last``): the model built from the
    run's config with its weights, and its meta. The meta says which checkpoint it is (``"checkpoint"``) and
    carries the dev scores of its step (``"metrics"``; empty for a last step that was not evaluated)."""
    if checkpoint not in (BEST, LAST):
        raise ValueError(f"checkpoint must be {BEST!r} or {LAST!r}, got {checkpoint!r}")
    run = Path(run)
    meta = json.loads((run / f"{checkpoint}.json").read_text())
    if checkpoint == LAST:  # only the best checkpoint stores its scores; the last one's are in the history
        scores = [h for h in meta.get("history", []) if h["step"] == meta["step"]]
        meta["metrics"] = {k: v for k, v in scores[-1].items() if k != "step"} if scores else {}
    meta["checkpoint"] = checkpoint
    model = build_model(meta["run"]["config"])
    model.load_state_dict(load_file(str(run / f"{checkpoint}.safetensors")))  # checks names and shapes
    return model, meta


def export_checkpoint(run: Path, weights_dir: Path, build_model: Callable[[dict], nn.Module],
                      name: str | None = None, checkpoint: str = BEST) -> tuple[nn.Module, dict, dict, dict]:
    """Write a checkpoint of ``run`` (``checkpoint_model``) as ``{weights_dir}/{name}.safetensors`` (float32;
    ``name`` defaults to the config's). Returns (model, that checkpoint's meta, the last checkpoint's meta,
    the card already there or ``{}``): a recipe updates the card, keeping fields training does not produce."""
    model, meta = checkpoint_model(run, build_model, checkpoint)
    name = name or meta["run"]["config"]["name"]
    weights_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.float().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights_dir / f"{name}.safetensors"))
    card_path = weights_dir / f"{name}.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    if checkpoint == LAST or not (run / f"{LAST}.json").exists():
        last = meta
    else:
        last = json.loads((run / f"{LAST}.json").read_text())
    return model, meta, last, card


@dataclass
class LoopConfig:
    steps: int
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # the cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    log_every: int = 25
    eval_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 2
    ema_decay: float = 0.0  # 0: off; else the weight average's decay per step (0.999: about the last 1000 steps)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options: {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1), 1.0)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_batches(dataset, batch_size: int, start: int, steps: int, num_workers: int = 0) -> Iterator[Any]:
    """The batches of steps ``start, start + 1, ..., steps - 1`` of a dataset seeded by index.

    Example indices are a function of the step, so a resumed run sees the same batches. The loader
    gets a generator of its own: otherwise making it draws its worker seed from the global RNG,
    which a resumed run restores from the checkpoint and dropout and quantizers draw from."""
    indices = range(start * batch_size, steps * batch_size)
    return iter(DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers, drop_last=True,
                           generator=torch.Generator()))


# -- checkpoints ----------------------------------------------------------------------------------

def _atomic_save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _atomic_write_json(data: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (for safetensors) and JSON-able groups."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    # JSON turned tuples (Adam's betas) into lists
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


#: modules a recipe trains itself inside its loss function, each with its own optimizer (a GAN's discriminator)
Companions = dict[str, tuple[nn.Module, torch.optim.Optimizer]]


class WeightAverage:
    """An exponential moving average of a model's weights (buffers are copied, not averaged). The decay
    ramps up from 0.1 as (1 + updates) / (10 + updates), so the first steps do not drag the random start along."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        decay = min(self.decay, (1 + updates) / (10 + updates))
        for averaged, trained in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.lerp_(trained, 1 - decay)
        for averaged, trained in zip(self.model.buffers(), model.buffers(), strict=True):
            averaged.copy_(trained)


def save_checkpoint(out: Path, tag: str, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    meta: dict, companions: Companions | None = None, trained: nn.Module | None = None) -> None:
    """``{tag}.safetensors`` (weights), ``{tag}.optim.safetensors`` (optimizer + RNG), ``{tag}.json``; with an
    optimizer, each companion's weights and optimizer go to ``{tag}.{name}.safetensors``. ``trained``: the
    weights being trained when ``model`` is their average; they go to the optimizer file."""
    _atomic_save_file(model.state_dict(), out / f"{tag}.safetensors")
    meta = dict(meta)
    if optimizer is not None:
        tensors, opt_meta = optimizer_to_tensors(optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        if trained is not None:
            tensors.update({f"trained.{k}": v for k, v in trained.state_dict().items()})
        _atomic_save_file(tensors, out / f"{tag}.optim.safetensors")
        meta["optimizer"] = opt_meta
        for name, (module, companion_optimizer) in (companions or {}).items():
            opt_tensors, companion_meta = optimizer_to_tensors(companion_optimizer)
            _atomic_save_file({**{f"module.{k}": v for k, v in module.state_dict().items()},
                               **{f"optimizer.{k}": v for k, v in opt_tensors.items()}},
                              out / f"{tag}.{name}.safetensors")
            meta.setdefault("companions", {})[name] = companion_meta
    _atomic_write_json(meta, out / f"{tag}.json")  # last: the JSON is what makes a checkpoint count


def load_checkpoint(out: Path, tag: str, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    companions: Companions | None = None, trained: nn.Module | None = None) -> dict:
    """Restore what ``save_checkpoint`` wrote. A companion the checkpoint lacks (a run that adds one on
    resume) keeps its fresh state; the names of those are returned in the meta's ``"fresh_companions"``.
    ``trained`` gets the weights being trained (the saved weights themselves for a checkpoint without an average)."""
    meta = json.loads((out / f"{tag}.json").read_text())
    weights = load_file(str(out / f"{tag}.safetensors"))
    model.load_state_dict(weights)
    if optimizer is not None:
        tensors = load_file(str(out / f"{tag}.optim.safetensors"))
        if trained is not None:
            own = {k[len("trained."):]: v for k, v in tensors.items() if k.startswith("trained.")}
            trained.load_state_dict(own or weights)
        optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
        torch.set_rng_state(tensors["rng.torch"])
        saved = meta.get("companions", {})
        meta["fresh_companions"] = [name for name in (companions or {}) if name not in saved]
        for name, (module, companion_optimizer) in (companions or {}).items():
            if name not in saved:
                continue
            tensors = load_file(str(out / f"{tag}.{name}.safetensors"))
            module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")})
            optimizer_from_tensors(companion_optimizer, {k[len("optimizer."):]: v for k, v in tensors.items()
                                                         if k.startswith("optimizer.")}, saved[name])
    return meta


def start_weights(model: nn.Module, init: str | Path | None, out: str | Path, resume: bool,
                  allow_missing: bool = False,
                  adapt: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> str | None:
    """``--init``: load ``init`` (a checkpoint's or shipped safetensors) into ``model`` before a run starts; returns
    the path to record in the run's ``run_info``. A resumed run has its weights in its checkpoint already and
    keeps recording the path it started from. ``allow_missing``: the model may have weights the file lacks
    (they keep their fresh values); weights the model does not have are refused either way. ``adapt`` turns the
    file's weights into the model's shapes first (e.g. a wider model from a narrower one's weights)."""
    last = Path(out) / f"{LAST}.json"
    if resume and last.exists():
        return str(init) if init is not None else json.loads(last.read_text())["run"].get("init")
    if init is None:
        return None
    weights = load_file(str(init))
    missing, unexpected = model.load_state_dict(adapt(weights) if adapt else weights, strict=False)
    if unexpected or (missing and not allow_missing):
        raise ValueError(f"--init {init}: weights the model does not have: {unexpected[:5]}; "
                         f"weights the file lacks: {missing[:5]}")
    return str(init)


# -- the loop -------------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
Batches = Callable[[int], Iterator[Any]]
Evaluate = Callable[[nn.Module], dict[str, float]]


def _file_logger(path: Path) -> logging.Logger:
    logger = logging.getLogger(f"wavestream.train.{path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


def fit(model: nn.Module, loss_fn: LossFn, batches: Batches, evaluate: Evaluate, cfg: LoopConfig, out: Path,
        metric: str, resume: bool = False, run_info: dict | None = None, progress: bool = True,
        companions: Companions | None = None) -> dict:
    """Train ``model`` for ``cfg.steps`` steps; returns the final checkpoint's metadata.

    ``batches(start)`` yields the batches of steps ``start, start + 1, ...``; ``evaluate`` returns dev
    metrics, of which ``metric`` (higher is better) picks the best checkpoint. ``run_info`` (e.g. the
    recipe config) is stored in every checkpoint's JSON; with an ``init`` in it (a fine-tune), the starting
    weights are scored as step 0 before the first step. ``companions`` are modules the recipe trains
    itself inside ``loss_fn`` with optimizers of its own (a discriminator): the loop only keeps them in
    the resumable checkpoints (not in ``best``, which holds the model alone) and restores them on resume.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    log = _file_logger(out / "train.log")
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    scored = average.model if average else model  # what is evaluated, kept and exported
    trained = model if average else None

    step, best, elapsed, history = 0, -math.inf, 0.0, []
    if resume and (out / f"{LAST}.json").exists():
        meta = load_checkpoint(out, LAST, scored, optimizer, companions, trained)
        step, best, elapsed, history = meta["step"], meta["best"], meta["elapsed_s"], meta["history"]
        log.info("resumed at step %d (best %s %.3f)", step, metric, best)
        if meta["fresh_companions"]:
            log.info("not in the checkpoint, starting fresh: %s", ", ".join(meta["fresh_companions"]))
    elif resume:
        log.info("nothing to resume in %s: starting from scratch", out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("training %s (%d parameters) for %d steps: %s", type(model).__name__, n_params, cfg.steps, asdict(cfg))
    for name, (module, _) in (companions or {}).items():
        companion_params = sum(p.numel() for p in module.parameters())
        log.info("with %s: %s (%d parameters)", name, type(module).__name__, companion_params)

    def meta_now() -> dict:
        return {"step": step, "best": best, "elapsed_s": elapsed, "history": history, "loop": asdict(cfg),
                "run": run_info or {}}

    def run_eval() -> None:
        nonlocal best
        scored.eval()
        with torch.no_grad():
            metrics = evaluate(scored)
        model.train()
        history.append({"step": step, **metrics})
        line = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
        log.info("dev step %d %s", step, line)
        if metrics[metric] > best:
            best = metrics[metric]
            save_checkpoint(out, BEST, scored, None, {**meta_now(), "metrics": metrics})
            log.info("new best %s=%.3f at step %d", metric, best, step)

    if step == 0 and (run_info or {}).get("init"):
        # a fine-tune first scores the weights it starts from: the log says what it must beat, and a run
        # that never beats them keeps them as its best
        run_eval()
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, dynamic_ncols=True, desc="train")
    running: dict[str, float] = {}
    t_last = time.perf_counter()
    it = batches(step)
    while step < cfg.steps:
        batch = next(it)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        loss, stats = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if average:
            average.update(model, step)
        step += 1
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        stats = {"loss": loss.item(), "grad_norm": grad_norm.item(), **stats}
        for k, v in stats.items():
            running[k] = running.get(k, 0.0) + v
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            means = {k: v / n for k, v in running.items()}
            running = {}
            bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
            log.info("step %d lr %.2e %s (%.2f s/step)", step, cfg.lr_at(step - 1),
                     " ".join(f"{k}={v:.4f}" for k, v in means.items()), elapsed / max(step, 1))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            run_eval()
            t_last = time.perf_counter()  # evaluation time is not training time
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(out, LAST, scored, optimizer, meta_now(), companions, trained)
    bar.close()
    log.info("done: %d steps, %.0f s of training, best %s=%.3f", step, elapsed, metric, best)
    return meta_now()
