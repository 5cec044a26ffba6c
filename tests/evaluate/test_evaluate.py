"""Metrics on generated signals, every peer adapter on one second of audio, the harness end to end."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.data.tiny import prepare_tiny, voiced
from wavestream.data.devset import VERSION, write_devset
from wavestream.evaluate import metrics
from wavestream.evaluate.peers import PEERS, OracleMask, load_peer, missing_for
from wavestream.streaming.module import AUDIO, StreamingModule

RATE = 16000


def speech_like(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    return voiced(np.random.default_rng(seed), RATE, seconds, 140.0)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_si_sdr_of_scaled_copy_is_very_high_and_of_noise_very_low():
    x = speech_like()
    assert metrics.si_sdr(x, 0.3 * x) > 80
    noise = np.random.default_rng(1).standard_normal(len(x))
    assert metrics.si_sdr(x, noise) < -20
    mixture = x + 0.1 * noise * np.std(x) / np.std(0.1 * noise)  # 0 dB
    assert abs(metrics.si_sdr(x, mixture)) < 1.0
    with pytest.raises(ValueError, match="length"):
        metrics.si_sdr(x, x[:-1])


@pytest.mark.skipif(not has("pesq"), reason="pesq is not installed (pip install pesq)")
def test_pesq_of_identical_signals_is_maximal():
    x = speech_like()
    assert metrics.pesq_wb(x, x) > 4.5
    noisy = x + 0.05 * np.random.default_rng(2).standard_normal(len(x))
    assert metrics.pesq_wb(x, noisy) < 3.0


@pytest.mark.skipif(not has("pystoi"), reason="pystoi is not installed (pip install pystoi)")
def test_stoi_of_identical_signals_is_maximal():
    x = speech_like()
    assert metrics.stoi(x, x) > 0.999
    noisy = x + 0.2 * np.random.default_rng(2).standard_normal(len(x))
    assert metrics.stoi(x, noisy) < 0.9


@pytest.mark.skipif(not has("visqol"), reason="visqol-python is not installed")
def test_visqol_prefers_the_clean_signal():
    x = speech_like()
    noisy = x + 0.05 * np.random.default_rng(2).standard_normal(len(x))
    assert metrics.visqol(x, x) > metrics.visqol(x, noisy) + 0.5


@pytest.mark.skipif(not has("mir_eval"), reason="mir_eval is not installed (pip install 'mir_eval<0.9')")
def test_sdr_allows_a_short_filter_that_si_sdr_counts_as_error():
    x = speech_like()
    filtered = np.convolve(x, [1, -0.9])[: len(x)]  # a short high-pass filter: a distortion BSS-eval forgives
    assert metrics.sdr(x, filtered) > 40 and metrics.si_sdr(x, filtered) < 0
    noise = np.random.default_rng(4).standard_normal(len(x))
    noisy = x + noise * np.std(x) / np.std(noise) * 10 ** (-20 / 20)  # 20 dB SNR: the filter cannot undo noise
    assert metrics.sdr(x, noisy) == pytest.approx(20, abs=0.5)
    assert np.isnan(metrics.sdr(x, np.zeros_like(x)))


def test_pit_order_pairs_each_talker_with_its_output():
    a, b = speech_like(1.0, 1), voiced(np.random.default_rng(5), RATE, 1.0, 230.0)[: len(speech_like(1.0, 1))]
    assert metrics.pit_order(np.stack([a, b]), np.stack([b + 0.1 * a, a])) == (1, 0)
    assert metrics.pit_order(np.stack([a, b]), np.stack([a, b + 0.1 * a])) == (0, 1)


def test_available_metrics_names_what_to_install():
    available = metrics.available_metrics()
    assert available["si_sdr"] is None
    for name, note in available.items():
        assert note is None or "pip install" in note, name


@pytest.mark.parametrize("name", [n for n in PEERS if not n.startswith("oracle-")])
def test_peer_runs_on_one_second(name):
    if (missing := missing_for(name)) is not None:
        pytest.skip(f"peer {name} not installed: {missing}")
    peer = load_peer(name)
    x = 0.5 * speech_like(1.0, seed=3)
    for sr in (16000, 22050):  # any client rate: the adapter resamples
        peer.reset()
        y = peer.process(x if sr == RATE else np.interp(np.arange(int(len(x) * sr / RATE)) * RATE / sr,
                                                        np.arange(len(x)), x).astype(np.float32), sr)
        assert y.shape == (int(len(x) * sr / RATE),) and y.dtype == np.float32 and np.isfinite(y).all()
    assert peer.info()["name"] == name


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (real speech needed)")
@pytest.mark.parametrize("name", ["rnnoise", "dtln", "deepfilternet", "opus-12k"])
def test_peer_output_is_aligned_with_its_input(name, tmp_path):
    """Each adapter removes its own delay: on clean speech, output and input line up (lag 0)."""
    if (missing := missing_for(name)) is not None:
        pytest.skip(f"peer {name} not installed: {missing}")
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Seven quiet engineers measured the narrow bridge."], check=True)
    from wavestream.data.audio import read_audio
    x, _ = read_audio(wav, RATE)
    x = 0.3 * x / np.abs(x).max()
    peer = load_peer(name)
    peer.reset()
    y = peer.process(x, RATE)
    lags = range(-200, 201)
    corr = [np.dot(y[max(0, k):len(y) + min(0, k)], x[max(0, -k):len(x) - max(0, k)]) for k in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 2


@pytest.mark.parametrize("kind", ["irm", "ibm"])
def test_oracle_masks_beat_the_mixture(kind):
    a, b = speech_like(2.0, 1), 0.8 * voiced(np.random.default_rng(5), RATE, 2.0, 230.0)
    n = min(len(a), len(b))
    sources = np.stack([a[:n], b[:n]])
    mixture = sources.sum(0)
    oracle = load_peer(f"oracle-{kind}")
    assert oracle.name == f"oracle-{kind}" and oracle.with_sources(sources).kind == kind
    estimate = oracle.with_sources(sources).process(mixture, RATE)
    assert estimate.shape == (2, n)
    for s, e in zip(sources, estimate, strict=True):
        assert metrics.si_sdr(s, e) > metrics.si_sdr(s, mixture) + 10
    with pytest.raises(ValueError, match="true sources"):
        oracle.process(mixture, RATE)


def test_oracle_binary_mask_gives_each_bin_to_its_loudest_source():
    noise = np.random.default_rng(6).standard_normal(RATE).astype(np.float32)
    sources = np.stack([noise, 0.5 * noise])  # the same spectrum, 6 dB apart: the first is louder in every bin
    mixture = sources.sum(0)
    ibm = OracleMask("ibm", sources).process(mixture, RATE)
    irm = OracleMask("irm", sources).process(mixture, RATE)
    np.testing.assert_allclose(ibm[0], mixture, atol=1e-5)
    np.testing.assert_allclose(ibm[1], 0, atol=1e-5)
    np.testing.assert_allclose(irm[1], np.sqrt(0.25 / 1.25) * mixture, atol=1e-4)  # the ratio mask shares it
    with pytest.raises(ValueError, match="unknown oracle mask"):
        OracleMask("wiener")


class Delay(StreamingModule):
    """Output = input delayed by ``latency`` samples (state: the last ``latency`` inputs)."""

    sample_rate, hop, latency, input_kind, output_kind = RATE, 4, 37, AUDIO, AUDIO

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def own_state(self, batch, device, dtype):
        return {"buffer": torch.zeros(batch, 1, self.latency, device=device, dtype=dtype)}

    def step(self, x, state):
        self.check_length(x)
        joined = torch.cat([state["buffer"], x], dim=-1)
        return self.gain * joined[..., : x.shape[-1]], {"buffer": joined[..., x.shape[-1]:]}


@pytest.fixture
def delay_model():
    from wavestream.models import registry
    registry.register("test-delay", "enhance", "a pure delay, to test latency compensation")(lambda: Delay())
    yield "test-delay"
    registry._REGISTRY.pop("test-delay", None)


def test_registry_model_latency_is_compensated(delay_model):
    from wavestream.evaluate.peers import RegistryModel
    peer = RegistryModel(delay_model)
    assert peer.latency_ms == pytest.approx(1000 * (4 + 37) / RATE) and peer.parameters == 1  # hop + delay
    x = speech_like(1.0)[:16001]  # not a multiple of hop
    y = peer.process(x, RATE)
    np.testing.assert_allclose(y, x, atol=1e-7)
    y8 = peer.process(x[::2].copy(), 8000)  # other rates are resampled to the model's and back
    assert y8.shape == x[::2].shape


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = prepare_tiny(tmp_path_factory.mktemp("eval"))
    for task in ("enhance", "separate", "codec"):
        write_devset(task, root)
    return root


def test_harness_enhance_end_to_end(tiny_root, tmp_path, delay_model, capsys):
    from wavestream.cli import main
    out = tmp_path / "report"
    args = ["eval", "enhance", "--model", delay_model, "--peers", "noisy", "--root", str(tiny_root),
            "--metrics", "si_sdr,pesq" if has("pesq") else "si_sdr", "--limit", "10", "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    noisy, delay = results["systems"]["noisy"], results["systems"][delay_model]
    assert results["devset"]["clips"] == 10 and len(noisy["clips"]) == 10
    assert noisy["mean"]["si_sdri"] == 0.0
    assert delay["mean"]["si_sdr"] == pytest.approx(noisy["mean"]["si_sdr"], abs=1e-3)  # a delay, compensated
    assert set(noisy["by_group"]) == {"-5.0", "0.0", "5.0", "10.0", "15.0"}
    assert noisy["mean"]["si_sdr"] == pytest.approx(5.0, abs=1.0)  # mean of -5..15 dB SNR mixtures
    table = (out / "README.md").read_text()
    assert "| noisy |" in table and "untrained" in table and "wavestream eval enhance" in table
    if has("matplotlib"):
        assert (out / "spectrograms.png").stat().st_size > 0 and (out / "quality_vs_rtf.png").exists()
    # a second run reuses the peer's results and re-runs the model
    assert main(args) == 0
    assert "noisy: reusing results" in capsys.readouterr().out


def test_harness_separation_with_oracle(tiny_root, tmp_path):
    from wavestream.evaluate.harness import evaluate
    results = evaluate("separate", ["noisy", "oracle-irm"], tiny_root, ["si_sdr"], limit=6, log=lambda _: None)
    mixture, oracle = results["systems"]["noisy"]["mean"]["si_sdr"], results["systems"]["oracle-irm"]["mean"]["si_sdr"]
    assert oracle > mixture + 5
    assert results["systems"]["noisy"]["mean"]["si_sdri"] == 0.0
    assert results["systems"]["oracle-irm"]["mean"]["si_sdri"] == pytest.approx(oracle - mixture, abs=1e-3)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate("separate", ["noisy"], tiny_root, ["loudness"], log=lambda _: None)
    with pytest.raises(ValueError, match="no codec dev set"):
        evaluate("codec", ["opus-6k"], tmp_path, log=lambda _: None)


@pytest.mark.skipif(not has("mir_eval"), reason="mir_eval is not installed (pip install 'mir_eval<0.9')")
def test_eval_separate_command_end_to_end(tiny_root, tmp_path):
    """`wavestream eval separate --model separate`: PIT scores per talker, SI-SDRi/SDRi over the mixture,
    both oracles, batched RTF for the model, grouped tables and plots."""
    from wavestream.cli import main
    out = tmp_path / "report"
    args = ["eval", "separate", "--model", "separate", "--root", str(tiny_root), "--metrics", "si_sdr,sdr,stoi",
            "--limit", "3", "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    systems = results["systems"]
    assert list(systems) == ["separate", "noisy", "oracle-irm", "oracle-ibm"]
    for name in ("noisy", "oracle-irm", "oracle-ibm", "separate"):
        assert {"si_sdr", "si_sdri", "sdr", "sdri", "stoi"} <= set(systems[name]["mean"]), name
        assert set(systems[name]["by_group"]) == {"0.25", "0.5", "1.0"}
    assert systems["noisy"]["mean"]["si_sdri"] == systems["noisy"]["mean"]["sdri"] == 0.0
    for oracle in ("oracle-irm", "oracle-ibm"):
        assert systems[oracle]["mean"]["sdri"] > 5 and systems[oracle]["mean"]["si_sdri"] > 5
    model = systems["separate"]
    assert model["trained"] is True and model["batch"] == 3 and model["batch_chunk_ms"] == 16.0  # the shipped weights
    assert 0 < model["rtf_batched"] and "rtf_batched" not in systems["oracle-irm"]
    table = (out / "README.md").read_text()
    assert "| separate |" in table and "RTF batched" in table and "SDRi dB by overlap" in table
    assert "SI-SDRi dB by overlap" in table and "BSS-eval" in table
    if has("matplotlib"):
        assert (out / "spectrograms.png").stat().st_size > 0 and (out / "quality_vs_rtf.png").exists()


def test_devset_audio_is_readable_by_peers(tiny_root):
    folder = tiny_root / "devsets" / "enhance"
    audio, rate = sf.read(folder / "noisy" / "0000.wav", dtype="float32")
    assert rate == RATE and load_peer("noisy").process(audio, rate).shape == audio.shape


@pytest.mark.skipif(missing_for("opus-12k") is not None, reason="opuslib-next-bundled is not installed")
def test_harness_codec_reports_bitrates(tiny_root, tmp_path):
    from wavestream.evaluate.harness import evaluate
    from wavestream.evaluate.report import markdown
    results = evaluate("codec", ["opus-12k"], tiny_root, ["si_sdr"], limit=4, log=lambda _: None)
    opus = results["systems"]["opus-12k"]
    assert opus["bitrate_kbps"] == 12 and "si_sdri" not in opus["mean"]  # the input is the reference itself
    assert opus["mean"]["si_sdr"] > 0  # a waveform codec, delay removed: the waveform lines up
    assert "kbps" in markdown(results, "wavestream eval codec")


def test_harness_runs_our_codec_at_its_bitrate(tiny_root):
    from wavestream.evaluate.harness import evaluate
    results = evaluate("codec", ["codec", "codec@6", "codec@1.5"], tiny_root, ["si_sdr"], limit=2,
                       log=lambda _: None)
    ours = results["systems"]["codec"]
    assert ours["bitrate_kbps"] == 3.0 and ours["latency_ms"] == 40.0 and ours["trained"] is True  # shipped weights
    # MODEL@KBPS: the same model at another bitrate, its own row
    assert results["systems"]["codec@6"]["bitrate_kbps"] == 6.0
    assert results["systems"]["codec@1.5"]["bitrate_kbps"] == 1.5
    with pytest.raises(ValueError, match="bitrate must be one of"):
        evaluate("codec", ["codec@12"], tiny_root, ["si_sdr"], limit=1, log=lambda _: None)
    with pytest.raises(ValueError, match="must be a number of kbps"):
        evaluate("codec", ["codec@fast"], tiny_root, ["si_sdr"], limit=1, log=lambda _: None)


def test_out_of_domain_devset_uses_only_held_out_corpora(tiny_root, tmp_path):
    """Held-out talkers and noises (the "ood" split) alone make the -ood dev set; reports name set and version."""
    import shutil

    from wavestream.data.manifest import manifest_path, read_manifest, write_manifest
    from wavestream.evaluate.harness import evaluate
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root, ignore=shutil.ignore_patterns("devsets"))
    held = {"speech": set(), "noise": set()}
    for kind, count in (("speech", 6), ("noise", 4)):  # stand-ins for a held-out corpus: some train talkers/noises
        train = read_manifest(manifest_path(root, kind, "train"))
        held[kind] = {e["speaker"] for e in train[: 3 * count]} if kind == "speech" else \
            {e["speaker"] for e in train[:count]}
        write_manifest(manifest_path(root, kind, "ood"), [{**e, "split": "ood"} for e in train
                                                         if e["speaker"] in held[kind]])
    write_devset("enhance-ood", root)
    results = evaluate("enhance", ["noisy"], root, ["si_sdr"], limit=5, log=lambda _: None, devset="enhance-ood")
    assert results["devset"]["name"] == "enhance-ood" and results["devset"]["version"] == VERSION
    assert results["devset"]["min_bak"] == 3.7
    manifest = root / "devsets" / "enhance-ood" / "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line]
    assert entries and {e["speaker"] for e in entries} <= held["speech"]
    assert {e["background"] for e in entries} <= {"noise", "babble"}  # no music: none is held out
