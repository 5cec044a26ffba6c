"""Does more training on our data still help ``separate``, or does it learn the training talkers only?

Scores weights on dry mixtures drawn the way the recipe draws its dev mixtures (``dev_examples``: no noise,
no room, the config's overlap and level ranges) from three splits: ``train`` (the talkers the model trains
on), ``dev`` (held-out talkers of the same corpora) and ``ood`` (a corpus it never trains on). A model that
generalizes gains on all three as it trains; one that learns its training talkers gains on ``train`` and
loses on the other two. Each split's mixtures are the same for every weights file (one seed), so the
columns compare side by side.

    OMP_NUM_THREADS=1 python benchmarks/separate_generalization.py \\
        --weights wavestream/models/weights/separate.safetensors,runs/separate-gentle/last.safetensors

A checkpoint loads with the same-name ``.json`` beside it, as ``--weights`` does everywhere.
"""

from __future__ import annotations

import argparse

import torch

from wavestream.models.registry import load_model
from wavestream.train import separate as recipe
from wavestream.train.loop import load_config

SPLITS = ("train", "dev", "ood")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="comma-separated safetensors files")
    parser.add_argument("--config", default=str(recipe.DEFAULT_CONFIG), help="the data and dev settings to draw with")
    parser.add_argument("--items", type=int, default=96, help="mixtures per split")
    parser.add_argument("--seed", type=int, default=3000, help="a draw no run selected a checkpoint on")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = load_config(args.config, recipe.SECTIONS)
    config["dev"] = {**config["dev"], "items": args.items, "seed": args.seed}
    examples = {split: recipe.dev_examples(config, split) for split in SPLITS}
    print(f"{args.items} dry mixtures x {config['dev']['seconds']} s per split, seed {args.seed}; SI-SDRi dB")
    print("| weights | " + " | ".join(SPLITS) + " |")
    print("|---|" + "---|" * len(SPLITS))
    for path in args.weights.split(","):
        model = load_model(recipe.NAME, path).eval()
        with torch.no_grad():
            scores = [recipe.evaluate_on(model, *examples[split], split)[f"{split}_si_sdri"] for split in SPLITS]
        print(f"| {path} | " + " | ".join(f"{s:+.2f}" for s in scores) + " |")


if __name__ == "__main__":
    main()
