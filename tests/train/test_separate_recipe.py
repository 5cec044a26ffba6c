"""`wavestream train separate` end to end on a tiny generated corpus: train, interrupt, resume, export."""

import json

import pytest
import torch

from tests.data.tiny import prepare_tiny
from tests.train.resume import assert_resume_is_exact
from wavestream.cli import main
from wavestream.models.registry import load_model
from wavestream.train.losses import si_sdr
from wavestream.train.separate import pit_si_sdr


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("separate_recipe")
    root = prepare_tiny(folder)
    config = {
        "model": {"filters": 16, "window": 16, "bottleneck": 8, "hidden": 16, "blocks": 2, "repeats": 1},
        "data": {"root": str(root), "batch_size": 2, "seconds": 1.0, "num_workers": 0, "seed": 0,
                 "overlap": [0.25, 1.0], "noise_snr_db": [5, 20], "noise_prob": 0.5},
        "dev": {"items": 2, "seconds": 1.0, "seed": 5, "splits": ["dev"]},  # the tiny corpus has no ood split
        # constant LR, so a run cut short with --steps follows the same schedule as the whole run
        "train": {"steps": 4, "lr": 0.003, "warmup_steps": 0, "min_lr_ratio": 1.0, "log_every": 1,
                  "eval_every": 2, "checkpoint_every": 2, "threads": 1},
    }
    path = folder / "separate.json"
    path.write_text(json.dumps(config))
    return path


def _train(config_path, out, *extra):
    assert main(["train", "separate", "--config", str(config_path), "--out", str(out), "--quiet", *extra]) == 0


def test_pit_picks_the_better_order():
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(3, 2, 800, generator=g)
    estimates = sources + 0.1 * torch.randn(3, 2, 800, generator=g)
    estimates[1] = estimates[1].flip(0)  # example 1 comes out swapped
    score, ordered = pit_si_sdr(estimates, sources)
    assert torch.allclose(score, si_sdr(ordered, sources).mean(1))
    assert torch.equal(ordered[1], estimates[1].flip(0)) and torch.equal(ordered[0], estimates[0])
    assert (score > 15).all()


def test_interrupted_and_resumed_run_equals_whole_run(config_path, tmp_path):
    assert_resume_is_exact(lambda out, *extra: _train(config_path, out, *extra), tmp_path)
    assert "resumed at step 2" in (tmp_path / "cut" / "train.log").read_text()
    log = (tmp_path / "whole" / "train.log").read_text()
    assert "step 4 lr" in log and "in_domain_si_sdri=" in log and "dev_si_sdri=" in log


def test_export_writes_loadable_weights_and_card(config_path, tmp_path):
    _train(config_path, tmp_path / "run")
    assert main(["train", "separate", "--out", str(tmp_path / "run"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "separate.json").read_text())
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["training"]["best_step"] == best["step"] and card["dev"]["dev_si_sdri"] == round(best["best"], 3)
    assert card["config"] == json.loads(config_path.read_text())["model"]
    assert {c["kind"] for c in card["data"]["corpora"]} >= {"speech", "noise"}
    assert all(c["licence"] for c in card["data"]["corpora"])
    model = load_model("separate", weights=tmp_path / "weights" / "separate.safetensors", **card["config"])
    assert model.trained and sum(p.numel() for p in model.parameters()) == card["architecture"]["parameters"]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 1600)).shape == (1, 2, 1600)


def test_init_starts_a_fine_tune_from_given_weights(config_path, tmp_path):
    from safetensors.torch import load_file
    _train(config_path, tmp_path / "first")
    start = tmp_path / "first" / "best.safetensors"
    # at LR 0 the fine-tune keeps the weights it starts from: they must be the --init ones, not fresh ones
    config = json.loads(config_path.read_text())
    config["train"]["lr"] = 0.0
    frozen = tmp_path / "frozen.json"
    frozen.write_text(json.dumps(config))
    _train(frozen, tmp_path / "tune", "--init", str(start), "--steps", "2")
    weights, tuned = load_file(str(start)), load_file(str(tmp_path / "tune" / "last.safetensors"))
    assert weights.keys() == tuned.keys() and all(torch.equal(weights[k], tuned[k]) for k in weights)
    assert json.loads((tmp_path / "tune" / "last.json").read_text())["run"]["init"] == str(start)
    _train(frozen, tmp_path / "tune", "--resume")  # a resumed fine-tune keeps saying where it started
    assert json.loads((tmp_path / "tune" / "last.json").read_text())["run"]["init"] == str(start)
    assert main(["train", "separate", "--out", str(tmp_path / "tune"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "separate.json").read_text())
    assert card["training"]["init"] == str(start) and card["training"]["recipe"].endswith(f"--init {start}")
    other = {**config, "model": {**config["model"], "hidden": 8}}  # weights of another shape: refused
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(RuntimeError, match="size mismatch"):
        _train(tmp_path / "other.json", tmp_path / "mismatch", "--init", str(start))
