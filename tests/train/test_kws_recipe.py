"""`wavestream train kws` / `kws-spiking` end to end on tiny generated keywords: train, interrupt, resume, export."""

import json

import pytest
import torch

from tests.data.tiny import prepare_tiny
from tests.data.tiny_keywords import add_tiny_keywords, write_tiny_keyword_devsets
from tests.train.resume import assert_resume_is_exact
from wavestream.cli import main
from wavestream.models.kws import LMUFormerKWS
from wavestream.models.registry import load_model
from wavestream.streaming import LIF
from wavestream.train.kws import IGNORE, KeywordLoss, distillation_loss, frame_targets, widen


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kws_recipe")
    root = add_tiny_keywords(prepare_tiny(folder))
    write_tiny_keyword_devsets(root)
    config = {
        "name": "kws",
        "model": {"dim": 16, "blocks": 1, "memory_channels": 2, "memory_order": 8, "theta": 32, "mlp_ratio": 1},
        "data": {"root": str(root), "batch_size": 3, "seconds": 1.0, "num_workers": 0, "seed": 0, "reverb_prob": 0.3},
        "dev": {"limit": 30},
        "loss": {"kind": "both"},
        # constant LR, so a run cut short with --steps follows the same schedule as the whole run
        "train": {"steps": 4, "lr": 0.003, "warmup_steps": 0, "min_lr_ratio": 1.0, "log_every": 1,
                  "eval_every": 2, "checkpoint_every": 2, "threads": 1},
    }
    path = folder / "kws.json"
    path.write_text(json.dumps(config))
    return path


def _train(config_path, out, *extra, recipe="kws"):
    assert main(["train", recipe, "--config", str(config_path), "--out", str(out), "--quiet", *extra]) == 0


def test_frame_targets_follow_the_word():
    hop, rate, k = 160, 16000, 20
    labels = torch.tensor([3, k, k + 1])
    spans = torch.tensor([[4000, 8000], [4000, 8000], [-1, -1]])
    t = frame_targets(labels, spans, 100, hop, rate, k, onset_s=0.1, hold_s=0.2, release_s=0.1)
    ends = (torch.arange(100) + 1) * hop
    assert (t[0][ends <= 4000] == k + 1).all()  # background before the word
    assert (t[0][(ends > 4000) & (ends < 8000 - 1600)] == IGNORE).all()  # the word is still going on
    assert (t[0][(ends >= 6400) & (ends <= 8000 + 3200)] == 3).all()  # keyword from onset to the end of the hold
    assert (t[0][(ends > 11200) & (ends <= 12800)] == IGNORE).all()
    assert (t[0][ends > 12800] == k + 1).all()  # and background again
    assert (t[1][(ends > 4000) & (ends <= 11200)] == k).all()  # unknown from its start
    assert (t[2] == k + 1).all()


def test_losses_are_finite_and_differentiable():
    logits = torch.randn(2, 22, 50, requires_grad=True)
    labels, spans = torch.tensor([1, 21]), torch.tensor([[1600, 4800], [-1, -1]])
    for kind in ("frame", "pooled", "both"):
        loss, stats = KeywordLoss(kind)(logits, labels, spans, 160, 16000)
        loss.backward()
        assert torch.isfinite(loss) and logits.grad is not None and stats
    with pytest.raises(ValueError, match="loss kind"):
        KeywordLoss("nope")


def test_distillation_loss_is_zero_only_when_the_student_agrees_with_the_teacher():
    teacher = torch.randn(2, 22, 30)
    assert distillation_loss(teacher, teacher, 2.0).abs() < 1e-6
    assert distillation_loss(teacher + 5.0, teacher, 2.0).abs() < 1e-6  # a shift of all logits: the same posteriors
    student = torch.randn(2, 22, 30, requires_grad=True)
    loss = distillation_loss(student, teacher, 2.0)
    loss.backward()
    assert loss > 0.1
    # a small step against the gradient moves the student's posteriors toward the teacher's
    assert distillation_loss(student.detach() - 0.1 * student.grad, teacher, 2.0) < loss


def test_interrupted_and_resumed_run_equals_whole_run(config_path, tmp_path):
    assert_resume_is_exact(lambda out, *extra: _train(config_path, out, *extra), tmp_path)
    log = (tmp_path / "whole" / "train.log").read_text()
    assert "dev step 4 dev_real_top1=" in log and "dev_syn_top1=" in log
    assert "dev_real_event_top1=" in log  # the events of the shipped detector's settings, beside the argmax


def test_export_writes_loadable_weights_and_card(config_path, tmp_path):
    _train(config_path, tmp_path / "run")
    assert main(["train", "kws", "--out", str(tmp_path / "run"), "--export", "--weights-dir", str(tmp_path / "w"),
                 "--detector", '{"threshold": 0.7}']) == 0
    card = json.loads((tmp_path / "w" / "kws.json").read_text())
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["training"]["best_step"] == best["step"] and card["config"]["threshold"] == 0.7
    assert {c["kind"] for c in card["data"]["corpora"]} >= {"keywords", "speech", "noise", "rir"}
    assert not {c["corpus"] for c in card["data"]["corpora"]} & {"tuxpaint-en", "saytime"}  # the dev talkers
    assert "saytime" in card["data"]["never_trained_on"]
    assert card["data"]["corpora"] == json.loads((tmp_path / "run" / "last.json").read_text())["run"]["corpora"]
    model = load_model("kws", weights=tmp_path / "w" / "kws.safetensors", **card["config"])
    assert model.trained and model.detector_config["threshold"] == 0.7
    with torch.no_grad():
        assert model(torch.randn(1, 1, 3200) * 0.05).shape == (1, 22, 20)


def test_a_run_on_real_corpora_lists_them_as_trained_on(config_path, tmp_path):
    config = json.loads(config_path.read_text())
    config["data"]["real_corpora"] = ["saytime"]
    config["train"]["steps"] = 2
    path = tmp_path / "real.json"
    path.write_text(json.dumps(config))
    _train(path, tmp_path / "run")
    assert main(["train", "kws", "--out", str(tmp_path / "run"), "--export", "--weights-dir", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "kws.json").read_text())
    assert "saytime" in {c["corpus"] for c in card["data"]["corpora"]}
    assert "tuxpaint-en" not in {c["corpus"] for c in card["data"]["corpora"]}
    assert "saytime" not in card["data"]["never_trained_on"] and "tuxpaint-en" in card["data"]["never_trained_on"]


def test_the_card_lists_the_corpora_recorded_when_the_run_started(config_path, tmp_path):
    # corpora prepared after a run started are in the manifests at export but were never read by the run
    _train(config_path, tmp_path / "run")
    last_path = tmp_path / "run" / "last.json"
    last = json.loads(last_path.read_text())
    last["run"]["corpora"] = [c for c in last["run"]["corpora"] if c["kind"] != "rir"]
    last_path.write_text(json.dumps(last))
    assert main(["train", "kws", "--out", str(tmp_path / "run"), "--export", "--weights-dir", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "kws.json").read_text())
    assert card["data"]["corpora"] == last["run"]["corpora"]
    assert "rir" not in {c["kind"] for c in card["data"]["corpora"]}


def test_spiking_recipe_starts_from_the_ann_weights(config_path, tmp_path):
    _train(config_path, tmp_path / "ann")
    spiking = json.loads(config_path.read_text()) | {"name": "kws-spiking"}
    path = tmp_path / "spiking.json"
    path.write_text(json.dumps(spiking))
    _train(path, tmp_path / "snn", "--steps", "2", "--init", str(tmp_path / "ann" / "best.safetensors"),
           recipe="kws-spiking")
    meta = json.loads((tmp_path / "snn" / "last.json").read_text())
    assert meta["run"]["config"]["name"] == "kws-spiking" and meta["run"]["init"].endswith("best.safetensors")


def test_spiking_recipe_learns_the_decays_and_exports_them(config_path, tmp_path):
    """``lif_learn_decay``: started from ANN weights (which have no decays), the neurons' decays start at the
    fixed one, train, and come back from the exported weights and card as they were learned."""
    _train(config_path, tmp_path / "ann")
    spiking = json.loads(config_path.read_text()) | {"name": "kws-spiking"}
    spiking["model"] = spiking["model"] | {"lif_learn_decay": True}
    path = tmp_path / "plif.json"
    path.write_text(json.dumps(spiking))
    _train(path, tmp_path / "snn", "--steps", "2", "--init", str(tmp_path / "ann" / "best.safetensors"),
           recipe="kws-spiking")
    assert main(["train", "kws-spiking", "--out", str(tmp_path / "snn"), "--export", "--checkpoint", "last",
                 "--weights-dir", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "kws-spiking.json").read_text())
    assert card["config"]["lif_learn_decay"] is True
    model = load_model("kws-spiking", weights=tmp_path / "w" / "kws-spiking.safetensors")
    neurons = [lif for lif in model.modules() if isinstance(lif, LIF)]
    assert neurons and all(lif.decay.shape == (lif.channels,) for lif in neurons)
    assert all(0 < lif.decay.min() and lif.decay.max() < 1 for lif in neurons)
    assert any((lif.decay != 0.5).any() for lif in neurons)  # two steps moved them


def test_spiking_recipe_distils_from_a_frozen_ann_teacher(config_path, tmp_path):
    _train(config_path, tmp_path / "ann")
    teacher = tmp_path / "ann" / "best.safetensors"
    spiking = json.loads(config_path.read_text()) | {"name": "kws-spiking"}
    spiking["loss"] = {"kind": "frame", "distill": {"teacher": "kws", "weights": str(teacher), "weight": 2.0,
                                                    "temperature": 3.0}}
    path = tmp_path / "distil.json"
    path.write_text(json.dumps(spiking))
    _train(path, tmp_path / "snn", "--steps", "2", "--init", str(teacher), recipe="kws-spiking")
    log = (tmp_path / "snn" / "train.log").read_text()
    terms = [float(line.split("distill=")[1].split()[0]) for line in log.splitlines() if "distill=" in line]
    assert terms and all(0 < t < 100 for t in terms)  # a spiking student disagrees with its ANN teacher
    spiking["loss"]["distill"]["weights"] = str(tmp_path / "missing.safetensors")
    path.write_text(json.dumps(spiking))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        _train(path, tmp_path / "snn2", "--steps", "1", recipe="kws-spiking")


@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("factor", [2, 3])
def test_a_widened_model_starts_with_the_narrow_models_posteriors(spiking, factor):
    """Every width grows (embedding, residual stream, MLP), and the grown model computes what the narrow one
    did: the same posteriors frame by frame, spikes included; the copies differ from the originals' values."""
    torch.manual_seed(0)
    sizes = dict(blocks=2, memory_channels=4, memory_order=8, theta=32, mlp_ratio=2, lif_decay=0.5, lif_slope=5.0)
    narrow = LMUFormerKWS(spiking=spiking, dim=16, **sizes).eval()
    with torch.no_grad():  # a trained model's norms are not all ones: grow those too
        for name, value in narrow.named_parameters():
            if "norm" in name:
                value.add_(0.3 * torch.randn_like(value))
    wide = LMUFormerKWS(spiking=spiking, dim=16 * factor, **sizes).eval()
    wide.load_state_dict(widen(narrow.state_dict(), wide.state_dict()))
    audio = 0.1 * torch.randn(2, 1, 16000)
    with torch.no_grad():
        expected, got = narrow.frame_logits(audio), wide.frame_logits(audio)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    if spiking:  # the head reads spikes only: logits that move over time mean spikes got through
        assert expected.std(dim=-1).mean() > 1e-3
    same = narrow.state_dict()
    assert widen(same, narrow.state_dict()) is same
    with pytest.raises(ValueError, match="not a multiple"):
        widen(narrow.state_dict(), LMUFormerKWS(dim=24, **sizes).state_dict())


def test_init_from_a_narrower_run_widens_its_weights(config_path, tmp_path):
    _train(config_path, tmp_path / "narrow", "--steps", "2")
    wide = json.loads(config_path.read_text())
    wide["model"]["dim"] = 32
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(wide))
    _train(path, tmp_path / "wide", "--steps", "1", "--init", str(tmp_path / "narrow" / "best.safetensors"))
    assert json.loads((tmp_path / "wide" / "last.json").read_text())["run"]["init"].endswith("best.safetensors")


def test_dev_score_counts_alarms_on_keyword_free_audio(config_path, tmp_path):
    config = json.loads(config_path.read_text())
    config["dev"] = {"limit": 30, "metric": "dev_score", "negative_limit": 3}
    path = tmp_path / "score.json"
    path.write_text(json.dumps(config))
    _train(path, tmp_path / "run", "--steps", "2")
    best = json.loads((tmp_path / "run" / "best.json").read_text())["metrics"]
    assert 0 <= best["dev_neg_alarm_frames"] <= 1
    assert best["dev_score"] == best["dev_real_top1"] - best["dev_neg_alarm_frames"]


def test_config_without_a_section_is_rejected(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {}}))
    with pytest.raises(ValueError, match="lacks section"):
        main(["train", "kws", "--config", str(path), "--out", str(tmp_path / "x"), "--quiet"])


def test_the_card_recipe_names_the_config_file_and_the_seed_the_run_was_given():
    """A run started with --seed N has the file's content but other seeds: the card's command says --seed N."""
    from wavestream.train.waveform import CONFIGS, recipe_line
    config = json.loads((CONFIGS / "kws-foils.json").read_text())
    line = "wavestream train kws --config wavestream/train/configs/kws-foils.json"
    assert recipe_line("kws", config) == line
    config["data"]["seed"] = config["train"]["seed"] = 2
    assert recipe_line("kws", config) == line + " --seed 2"
    config["train"]["steps"] = 100
    assert recipe_line("kws", config) == line + " --seed 2 --steps 100 (at the start, or later with --resume)"
    config["model"]["dim"] = 7  # no config file holds this: the card's own config is the recipe
    assert "<the config in this card>" in recipe_line("kws", config)
