"""`wavestream train enhance` end to end on a tiny generated corpus: train, interrupt, resume, export."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from tests.data.tiny import prepare_tiny
from tests.train.resume import assert_resume_is_exact
from wavestream.cli import main
from wavestream.data.manifest import manifest_path, read_manifest, write_manifest
from wavestream.data.voice import NEW_TALKER_OPTIONS
from wavestream.models.registry import get_spec, load_model
from wavestream.train.enhance import DEFAULT_CONFIG, EnhanceLoss, dataset, dev_examples

TONE_HZ = 5000.0  # the held-out noise: far above the tiny talkers' harmonics (< 3.6 kHz); training noise is white


def _add_ood_split(root):
    """An out-of-domain split for the tiny corpus: some talkers moved out of training, and a noise corpus of
    5 kHz tones that only the ood split has."""
    train = read_manifest(manifest_path(root, "speech", "train"))
    held = {e["speaker"] for e in train[:9]}
    write_manifest(manifest_path(root, "speech", "train"), [e for e in train if e["speaker"] not in held])
    write_manifest(manifest_path(root, "speech", "ood"), [{**e, "split": "ood"} for e in train if e["speaker"] in held])
    tones = []
    for k in range(3):
        rel = f"noise/tones/tone{k}.flac"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(3 * 16000) / 16000
        sf.write(root / rel, (0.1 * np.sin(2 * np.pi * TONE_HZ * t + k)).astype(np.float32), 16000)
        tones.append({"path": rel, "duration": 3.0, "speaker": f"tones-{k}", "corpus": "tones",
                      "licence": "CC0 (test)", "split": "ood", "kind": "noise", "native_rate": 16000})
    write_manifest(manifest_path(root, "noise", "ood"), tones)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enhance_recipe")
    root = prepare_tiny(folder)
    _add_ood_split(root)
    config = {
        "model": {"n_fft": 512, "hop_length": 256, "embed": 8, "hidden": 16, "layers": 1},
        "data": {"root": str(root), "batch_size": 2, "seconds": 1.0, "num_workers": 0, "seed": 0,
                 "snr_db": [0, 10], "reverb_prob": 0.0, "eq_prob": 0.5,
                 "background": {"noise": 0.5, "synthetic": 0.5}},
        "dev": {"items": 2, "seconds": 1.0, "seed": 5, "splits": ["dev", "ood"]},
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
    # the log has progress lines and dev scores of both dev splits, and their mean
    log = (tmp_path / "whole" / "train.log").read_text()
    assert "step 4 lr" in log and "dev step 4 in_domain_si_sdr=" in log
    assert "out_of_domain_si_sdr=" in log and "out_of_domain_si_sdri=" in log and "dev_score=" in log
    history = json.loads((tmp_path / "whole" / "last.json").read_text())["history"]
    for h in history:
        assert h["dev_score"] == pytest.approx((h["in_domain_si_sdr"] + h["out_of_domain_si_sdr"]) / 2)


def test_pesq_picks_the_checkpoint_when_the_config_asks(config_path, tmp_path):
    """With ``dev.pesq`` the dev score is the mean PESQ-WB of the two splits, each on PESQ's scale; ``dev.stoi``
    adds their STOI."""
    config = json.loads(config_path.read_text())
    config["dev"]["pesq"] = config["dev"]["stoi"] = True
    config["train"]["steps"] = 2
    path = tmp_path / "pesq.json"
    path.write_text(json.dumps(config))
    _train(path, tmp_path / "run")
    for h in json.loads((tmp_path / "run" / "last.json").read_text())["history"]:
        assert 1.0 <= h["in_domain_pesq"] <= 4.64 and 1.0 <= h["out_of_domain_pesq"] <= 4.64
        assert 1.0 not in (h["in_domain_pesq"], h["out_of_domain_pesq"])  # measured, not the no-speech floor
        assert h["dev_score"] == pytest.approx((h["in_domain_pesq"] + h["out_of_domain_pesq"]) / 2)
        assert 0 < h["in_domain_stoi"] <= 1 and 0 < h["out_of_domain_stoi"] <= 1


def test_the_card_lists_the_corpora_the_run_started_on(config_path, tmp_path):
    """Corpora added to the manifests after a run started are not in its card: the run records its own."""
    _train(config_path, tmp_path / "run")
    last_path = tmp_path / "run" / "last.json"
    last = json.loads(last_path.read_text())
    recorded = last["run"]["corpora"]
    assert {c["kind"] for c in recorded} >= {"speech", "noise"} and all(c["minutes"] > 0 for c in recorded)
    # stand-in for the manifests having changed since: the card follows the run's record, not the manifests
    last["run"]["corpora"] = recorded[:1]
    last_path.write_text(json.dumps(last))
    assert main(["train", "enhance", "--out", str(tmp_path / "run"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "enhance.json").read_text())
    assert card["data"]["corpora"] == recorded[:1]


def test_out_of_domain_dev_examples_hold_only_held_out_noise(config_path):
    """What is added to the ood talkers is the held-out tone corpus or their babble, never the (white)
    training noise nor synthetic noise, whatever the training mixture says."""
    config = json.loads(config_path.read_text())
    config["dev"]["items"] = 12
    noisy, clean = dev_examples(config, "ood")
    freqs = np.fft.rfftfreq(noisy.shape[-1], 1 / 16000)
    kinds = []
    for residual in (noisy - clean)[:, 0].double().numpy():
        power = np.abs(np.fft.rfft(residual)) ** 2
        tone = power[np.abs(freqs - TONE_HZ) < 50].sum() / power.sum()
        high = power[freqs > 4000].sum() / power.sum()
        assert tone > 0.95 or high < 0.01, (tone, high)  # the tone, or babble of the tiny talkers (below 4 kHz)
        kinds.append(tone > 0.95)
    assert any(kinds) and not all(kinds)
    # in-domain examples carry the training mixture: white or synthetic noise, with energy above 4 kHz
    noisy, clean = dev_examples(config, "dev")
    power = np.abs(np.fft.rfft((noisy - clean)[:, 0].double().numpy())) ** 2
    assert (power[:, freqs > 4000].sum(1) / power.sum(1)).max() > 0.05


def test_export_writes_loadable_weights_and_card(config_path, tmp_path):
    _train(config_path, tmp_path / "run")
    assert main(["train", "enhance", "--out", str(tmp_path / "run"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "enhance.json").read_text())
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["training"]["best_step"] == best["step"] and card["dev"]["dev_score"] == round(best["best"], 3)
    assert {"in_domain_si_sdr", "out_of_domain_si_sdr", "dev_score"} <= set(card["training"]["dev_history"][-1])
    assert card["config"] == json.loads(config_path.read_text())["model"]
    assert {c["kind"] for c in card["data"]["corpora"]} >= {"speech", "noise"}
    model = load_model("enhance", weights=tmp_path / "weights" / "enhance.safetensors", **card["config"])
    assert model.trained and sum(p.numel() for p in model.parameters()) == card["architecture"]["parameters"]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 2560)).shape == (1, 1, 2560)


def test_export_of_the_last_checkpoint_ships_its_weights_and_says_so(config_path, tmp_path):
    _train(config_path, tmp_path / "run")
    weights = tmp_path / "weights"
    assert main(["train", "enhance", "--out", str(tmp_path / "run"), "--export", "--checkpoint", "last",
                 "--weights-dir", str(weights)]) == 0
    card = json.loads((weights / "enhance.json").read_text())
    last = json.loads((tmp_path / "run" / "last.json").read_text())
    assert card["training"]["checkpoint"] == "last" and card["training"]["best_step"] == last["step"] == 4
    # the dev scores of the last step (it is evaluated: the run ends on an eval step), not the best one's
    assert card["dev"]["dev_score"] == round(last["history"][-1]["dev_score"], 3)
    shipped = load_file(str(weights / "enhance.safetensors"))
    trained = load_file(str(tmp_path / "run" / "last.safetensors"))
    assert shipped.keys() == trained.keys() and all(torch.equal(shipped[k], trained[k]) for k in shipped)
    with pytest.raises(SystemExit):  # only the two checkpoints a run writes
        main(["train", "enhance", "--out", str(tmp_path / "run"), "--export", "--checkpoint", "step3"])


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


def test_default_loss_is_the_loss_of_before():
    """Without ``compressed_weight`` (or at 0) the loss is stft_weight x STFT - sisdr_weight x SI-SDR, bit for bit,
    and logs what it logged before."""
    from wavestream.train.losses import MultiResolutionSTFTLoss, si_sdr

    torch.manual_seed(0)
    clean = 0.1 * torch.randn(2, 1, 8000)
    output = clean + 0.05 * torch.randn_like(clean)
    before = MultiResolutionSTFTLoss()(output, clean) - 0.1 * si_sdr(output, clean).mean()
    shipped = json.loads((CONFIGS / "enhance.json").read_text())["loss"]
    for criterion in (EnhanceLoss(), EnhanceLoss(**shipped), EnhanceLoss(**shipped, compressed_weight=0.0)):
        loss, logged = criterion(output, clean)
        assert torch.equal(loss, before) and set(logged) == {"si_sdr", "stft"} and criterion.compressed is None


def test_compressed_weight_mixes_in_the_compressed_loss():
    from wavestream.train.losses import CompressedSpectrumLoss

    torch.manual_seed(0)
    clean = 0.1 * torch.randn(2, 1, 8000)
    output = clean + 0.05 * torch.randn_like(clean)
    options = {"resolutions": [[512, 256]], "power": 0.3, "complex_weight": 0.3, "normalize": True}
    base, _ = EnhanceLoss()(output, clean)
    loss, logged = EnhanceLoss(compressed_weight=2.0, compressed=options)(output, clean)
    compressed = CompressedSpectrumLoss(**options)(output, clean)
    assert logged["compressed"] == pytest.approx(compressed.item())
    assert loss.item() == pytest.approx((base + 2.0 * compressed).item(), rel=1e-6)


def test_stoi_weight_adds_the_intelligibility_loss():
    from wavestream.train.losses import IntelligibilityLoss

    torch.manual_seed(0)
    clean = 0.1 * torch.randn(2, 1, 16000)
    output = clean + 0.05 * torch.randn_like(clean)
    base, _ = EnhanceLoss()(output, clean)
    loss, logged = EnhanceLoss(stoi_weight=3.0)(output, clean)
    intelligibility = IntelligibilityLoss()(output, clean)
    assert 0 < logged["stoi"] == pytest.approx(intelligibility.item())
    assert loss.item() == pytest.approx((base + 3.0 * intelligibility).item(), rel=1e-6)


CONFIGS = DEFAULT_CONFIG.parent


def test_stoi_config_is_the_shipped_fine_tune_plus_the_intelligibility_term():
    previous = json.loads((CONFIGS / "enhance-pesqmix2.json").read_text())
    stoi = json.loads((CONFIGS / "enhance-stoi.json").read_text())
    assert stoi["model"] == previous["model"] == get_spec("enhance").card()["config"]
    assert stoi["data"] == previous["data"] | {"seed": 4}  # fresh examples
    assert stoi["dev"] == previous["dev"] | {"stoi": True}
    assert stoi["loss"] == previous["loss"] | {"stoi_weight": 10.0}
    EnhanceLoss(**stoi["loss"])


def test_voices_config_is_the_stoi_fine_tune_plus_new_talkers():
    stoi = json.loads((CONFIGS / "enhance-stoi.json").read_text())
    voices = json.loads((CONFIGS / "enhance-voices.json").read_text())
    added = {k: voices["data"][k] for k in NEW_TALKER_OPTIONS}
    assert added["pitch_prob"] > 0 and added["formant_prob"] > 0
    assert voices["data"] == stoi["data"] | added | {"seed": 5}  # fresh examples
    assert {k: v for k, v in voices.items() if k not in ("data", "train")} == \
        {k: v for k, v in stoi.items() if k not in ("data", "train")}
    assert voices["train"] == stoi["train"] | {"seed": 5}


def test_new_talkers_reach_training_but_not_the_dev_examples(config_path):
    config = json.loads(config_path.read_text())
    voices = {**config, "data": config["data"] | {"pitch_prob": 1.0, "formant_prob": 1.0}}
    train = dataset(voices["data"], "train", 4, 1.0, 0)
    for i in range(4):
        _, _, info = train.synthesize(train.rng(i))
        assert -4 <= info["pitch_semitones"] <= 4 and 0.88 <= info["formant_warp"] <= 1.12
    for split in ("dev", "ood"):
        for a, b in zip(dev_examples(voices, split), dev_examples(config, split), strict=True):
            assert torch.equal(a, b)


def test_pesq_config_fine_tunes_the_shipped_model_with_the_compressed_loss():
    base = json.loads((CONFIGS / "enhance.json").read_text())
    pesq = json.loads((CONFIGS / "enhance-pesq.json").read_text())
    assert pesq["model"] == base["model"] == get_spec("enhance").card()["config"]
    assert pesq["data"] == base["data"] and pesq["dev"] == base["dev"] and pesq["dev"]["pesq"] is True
    assert pesq["loss"]["compressed_weight"] > 0 and pesq["loss"]["compressed"]["power"] == 0.3
    assert (pesq["train"]["steps"], pesq["train"]["lr"], pesq["train"]["warmup_steps"],
            pesq["train"]["eval_every"]) == (2500, 0.0003, 100, 250)
    EnhanceLoss(**pesq["loss"])  # every option is one the loss takes


def test_init_fine_tunes_from_the_shipped_weights(config_path, tmp_path):
    """A 2-step fine-tune of the shipped model with the PESQ config's loss, on the tiny corpus: at LR 0 it keeps
    the weights it starts from, which must be the shipped ones; the run, its resumption and its card say so."""
    from safetensors.torch import load_file

    shipped = get_spec("enhance").weights_path
    tiny = json.loads(config_path.read_text())
    pesq = json.loads((CONFIGS / "enhance-pesq.json").read_text())
    config = {**tiny, "model": pesq["model"], "loss": pesq["loss"],
              "train": {**tiny["train"], "steps": 2, "lr": 0.0}}
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(config))
    _train(path, tmp_path / "tune", "--init", str(shipped))
    weights, tuned = load_file(str(shipped)), load_file(str(tmp_path / "tune" / "last.safetensors"))
    assert weights.keys() == tuned.keys() and all(torch.equal(weights[k], tuned[k]) for k in weights)
    last = json.loads((tmp_path / "tune" / "last.json").read_text())
    assert last["run"]["init"] == str(shipped) and last["step"] == 2
    assert "compressed=" in (tmp_path / "tune" / "train.log").read_text()
    _train(path, tmp_path / "tune", "--resume", "--steps", "3")  # a resumed fine-tune keeps saying where it started
    assert json.loads((tmp_path / "tune" / "last.json").read_text())["run"]["init"] == str(shipped)
    assert main(["train", "enhance", "--out", str(tmp_path / "tune"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "enhance.json").read_text())
    assert card["training"]["init"] == str(shipped) and card["training"]["recipe"].endswith(f"--init {shipped}")
    assert card["training"]["loss"]["compressed_weight"] == pesq["loss"]["compressed_weight"]
    with pytest.raises(RuntimeError, match="size mismatch"):  # the tiny model: weights of another shape
        _train(config_path, tmp_path / "mismatch", "--init", str(shipped))


def test_a_run_from_fresh_weights_records_no_init(config_path, tmp_path):
    _train(config_path, tmp_path / "run", "--steps", "2")
    assert json.loads((tmp_path / "run" / "last.json").read_text())["run"]["init"] is None
    assert main(["train", "enhance", "--out", str(tmp_path / "run"), "--export",
                 "--weights-dir", str(tmp_path / "weights")]) == 0
    training = json.loads((tmp_path / "weights" / "enhance.json").read_text())["training"]
    assert "init" not in training and "--init" not in training["recipe"]


def test_lookahead_config_is_the_stoi_fine_tune_waiting_one_frame():
    stoi = json.loads((CONFIGS / "enhance-stoi.json").read_text())
    ahead = json.loads((CONFIGS / "enhance-lookahead.json").read_text())
    assert ahead["model"] == stoi["model"] | {"lookahead": 1}
    assert ahead["data"] == stoi["data"] | {"seed": 6} and ahead["train"] == stoi["train"] | {"seed": 6}
    assert (ahead["dev"], ahead["loss"]) == (stoi["dev"], stoi["loss"])
    two = json.loads((CONFIGS / "enhance-lookahead2.json").read_text())
    assert two == ahead | {"model": ahead["model"] | {"lookahead": 2}}


def test_a_lookahead_model_starts_as_the_shipped_model_delayed_by_its_lookahead():
    """``--init`` of the look-ahead model from the shipped weights: the frames ahead start with zero weight, so
    its output is the shipped model's, a hop later; the file's other weights load unchanged."""
    from wavestream.train.enhance import adapt_init, build_model

    shipped = load_model("enhance")
    ahead = build_model({"model": get_spec("enhance").card()["config"] | {"lookahead": 1}})
    weights = load_file(str(get_spec("enhance").weights_path))
    ahead.load_state_dict(adapt_init(weights, ahead.state_dict()))
    x = torch.randn(1, 1, 40 * 256, generator=torch.Generator().manual_seed(9)) * 0.1
    with torch.no_grad():
        before, after = shipped(x), ahead(x)
    assert ahead.latency == shipped.latency + 256
    torch.testing.assert_close(after[..., 256:], before[..., :-256], rtol=0, atol=1e-6)
    assert torch.equal(after[..., :256], torch.zeros(1, 1, 256))


def test_filter_config_is_the_stoi_fine_tune_with_a_deep_filter_below_2_khz():
    stoi = json.loads((CONFIGS / "enhance-stoi.json").read_text())
    filtered = json.loads((CONFIGS / "enhance-filter.json").read_text())
    assert filtered["model"] == stoi["model"] | {"filter_bins": 64, "filter_taps": 3}
    assert filtered["data"] == stoi["data"] | {"seed": 10} and filtered["train"] == stoi["train"] | {"seed": 10}
    assert (filtered["dev"], filtered["loss"]) == (stoi["dev"], stoi["loss"])


def test_scratch_configs_are_the_stoi_recipe_from_fresh_weights_with_and_without_a_deep_filter():
    stoi = json.loads((CONFIGS / "enhance-stoi.json").read_text())
    scratch = json.loads((CONFIGS / "enhance-scratch.json").read_text())
    assert scratch["train"] == stoi["train"] | {"seed": 11, "steps": 2500, "lr": 0.001, "warmup_steps": 200}
    assert scratch["data"] == stoi["data"] | {"seed": 11}
    assert (scratch["model"], scratch["dev"], scratch["loss"]) == (stoi["model"], stoi["dev"], stoi["loss"])
    filtered = json.loads((CONFIGS / "enhance-filter-scratch.json").read_text())
    assert filtered == scratch | {"model": scratch["model"] | {"filter_bins": 64, "filter_taps": 3}}


def test_a_deep_filter_model_starts_as_the_shipped_model():
    """``--init`` of a deep-filter model from the shipped weights: the past frames' coefficients start at zero,
    so its output is the shipped model's until the fine-tune moves them."""
    from wavestream.train.enhance import adapt_init, build_model

    shipped = load_model("enhance")
    filtered = build_model({"model": get_spec("enhance").card()["config"] | {"filter_bins": 64, "filter_taps": 3}})
    filtered.load_state_dict(adapt_init(load_file(str(get_spec("enhance").weights_path)), filtered.state_dict()))
    x = torch.randn(1, 1, 40 * 256, generator=torch.Generator().manual_seed(9)) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(filtered(x), shipped(x), rtol=0, atol=1e-6)
    assert filtered.latency == shipped.latency


def test_hiss_config_is_the_stoi_fine_tune_with_more_hiss():
    stoi = json.loads((CONFIGS / "enhance-stoi.json").read_text())
    hiss = json.loads((CONFIGS / "enhance-hiss.json").read_text())
    more_hiss = {"seed": 8, "synthetic_kinds": {"hum": 1, "buzz": 1, "hiss": 6}}
    assert hiss["data"] == stoi["data"] | more_hiss and hiss["train"] == stoi["train"] | {"seed": 8}
    assert (hiss["model"], hiss["dev"], hiss["loss"]) == (stoi["model"], stoi["dev"], stoi["loss"])
