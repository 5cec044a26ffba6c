"""`wavestream train RECIPE [--config FILE] [--out DIR] [--resume] [--steps N] [--seed N] [--export
[--checkpoint last]]`.

Each recipe module (one per model family) exposes ``add_arguments(parser)`` for its own options,
``run(args)`` to train (or, with ``--export``, to write the best checkpoint as shipped weights + card).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

RECIPES = {
    "codec": "wavestream.train.codec",
    "enhance": "wavestream.train.enhance",
    "kws": "wavestream.train.kws",
    "kws-spiking": "wavestream.train.kws",
    "separate": "wavestream.train.separate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="recipe", required=True)
    for name, module_path in RECIPES.items():
        p = sub.add_parser(name, help=f"train the {name!r} model")
        p.add_argument("--out", default=f"runs/{name}", help=f"run folder: checkpoints and train.log (runs/{name})")
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
        p.add_argument("--steps", type=int, default=None, help="override the config's number of steps")
        p.add_argument("--seed", type=int, default=None,
                       help="override the config's seeds (fresh weights and training examples alike): "
                            "the same recipe run again, to tell a change from the spread between runs")
        p.add_argument("--quiet", action="store_true", help="no progress bar (the log file is still written)")
        p.add_argument("--export", action="store_true",
                       help="do not train: export the best checkpoint in --out as the shipped weights + card")
        p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                       help="with --export: the checkpoint the run's dev score kept (best), or the last one "
                            "(when a larger dev set, such as a frozen out-of-domain one, prefers it)")
        importlib.import_module(module_path).add_arguments(p)


def apply_overrides(config: dict, args: argparse.Namespace) -> dict:
    """The command line's ``--steps`` and ``--seed`` over the recipe's config (in place; returned)."""
    if args.steps is not None:
        config["train"]["steps"] = args.steps
    if args.seed is not None:
        config["train"]["seed"] = config["data"]["seed"] = args.seed
    return config


def run(args: argparse.Namespace) -> int:
    from wavestream.models.catalog import write_catalog  # not at the top: listing the models loads no torch
    from wavestream.models.registry import WEIGHTS_DIR
    rc = importlib.import_module(RECIPES[args.recipe]).run(args)
    wrote_card = args.export or getattr(args, "record_eval", None) or getattr(args, "tune_detector", False)
    if rc == 0 and wrote_card and Path(args.weights_dir).resolve() == WEIGHTS_DIR.resolve():
        # the catalog copies the shipped cards' configs (detector settings, stream params): keep it in step
        write_catalog()
    return rc
