"""`wavestream train enhance` end to end on a tiny generated corpus: train, interrupt, resume, export."""

import json

import pytest
import torch

from tests.data.tiny import prepare_tiny
from tests.train.resume import assert_resume_is_exact
from wavestream.cli import main
from wavestream.models.registry import load_model


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enhance_recipe")
    root = prepare_tiny(folder)
    config = {
        "model": {"n_fft": 512, "hop_length": 256, "embed": 8, "hidden": 16, "layers": 1},
        "data": {"root": str(root), "batch_size": 2, "seconds": 1.0, "num_workers": 0, "seed": 0,
                 "snr_db": [0, 10], "reverb_prob": 0.0, "background": {"noise": 1.0}},
        "dev": {"items": 2, "seconds": 1.0, "seed": 5},
        "loss": {"sisdr_weight": 0.1, "stft_weight": 1.0},
        # constant LR, so a run cut short with --steps follows the same schedule as the whole run
        "train": {"steps": 4, "lr": 0.003, "warmup_steps": 0, "min_lr_ratio": 1.0, "log_every": 1,
                  "eval_every": 2, "checkpoint_every": 2, "threads": 1},
    }
    path = folder / "enhance.json"
    path.write_text(json.dumps(config))
    return path


def _train(config_path, out, *extra):
    assert main(["train", "enhance", "--config", str(config_path), "--out", str(out), "--quiet", *extra]) == 0


def test_interrupted_and_resumed_run_equals_whole_run(config_path, tmp_path):
    assert_resume_is_exact(lambda out, *extra: _train(config_path, out, *extra), tmp_path)
    assert "resumed at step 2" in (tmp_path / "cut" / "train.log").read_text()
    # the log has progress lines and dev scores
    log = (tmp_path / "whole" / "train.log").read_text()
    assert "step 4 lr" in log and "dev step 4 dev_si_sdr=" in log


def test_export_writes_loadable_weights_and_card(config_path, tmp_path):
    _train(config_path, tmp_path / "run")
    assert main(["train", "enhance", "--out", str(tmp_path / "run"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "enhance.json").read_text())
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["training"]["best_step"] == best["step"] and card["dev"]["dev_si_sdr"] == round(best["best"], 3)
    assert card["config"] == json.loads(config_path.read_text())["model"]
    assert {c["kind"] for c in card["data"]["corpora"]} >= {"speech", "noise"}
    model = load_model("enhance", weights=tmp_path / "weights" / "enhance.safetensors", **card["config"])
    assert model.trained and sum(p.numel() for p in model.parameters()) == card["architecture"]["parameters"]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 2560)).shape == (1, 1, 2560)


def test_config_without_a_section_is_rejected(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {}}))
    with pytest.raises(ValueError, match="lacks section"):
        main(["train", "enhance", "--config", str(path), "--out", str(tmp_path / "x"), "--quiet"])


def test_record_eval_copies_harness_results_into_the_card(config_path, tmp_path):
    """The shipped model through the real eval harness (tiny dev set, SI-SDR only), recorded in a card copy."""
    import shutil

    from wavestream.data.devset import write_devset
    from wavestream.models.registry import get_spec

    root = json.loads(config_path.read_text())["data"]["root"]
    write_devset("enhance", root)
    out = tmp_path / "eval"
    assert main(["eval", "enhance", "--model", "enhance", "--peers", "noisy", "--root", root, "--metrics", "si_sdr",
                 "--limit", "3", "--out", str(out), "--no-plots"]) == 0
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(get_spec("enhance").card_path, weights / "enhance.json")
    assert main(["train", "enhance", "--record-eval", str(out / "results.json"), "--weights-dir", str(weights)]) == 0
    card = json.loads((weights / "enhance.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert card["metrics"] == results["systems"]["enhance"]["mean"]
    assert set(card["evaluation"]["systems"]) == {"enhance", "noisy"}
    assert card["evaluation"]["devset"] == results["devset"]
