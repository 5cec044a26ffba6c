import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from wavestream.models.enhance import GRUMaskEnhancer
from wavestream.models.registry import describe, get_spec, load_model
from wavestream.streaming.testing import (
    assert_batch_independent,
    assert_causal,
    assert_chunked_equals_offline,
    assert_step_is_pure,
    partitions,
)
from wavestream.train.losses import si_sdr

HOP = 256


@pytest.fixture(scope="module", params=[{}, {"embed": 64, "hidden": 96, "context": 3},
                                        {"embed": 64, "hidden": 96, "lookahead": 2},
                                        {"embed": 64, "hidden": 96, "filter_bins": 40, "filter_taps": 3}],
                ids=["default", "context3", "lookahead2", "filter3"])
def model(request):
    """The default architecture, a small one whose encoder looks back over three frames, a small one
    that waits two frames ahead before it masks a frame, and a small one whose lowest 40 bins are a deep
    filter over the current frame and the two before it."""
    torch.manual_seed(0)
    return GRUMaskEnhancer(**request.param).eval()


@pytest.fixture(scope="module")
def shipped():
    spec = get_spec("enhance")
    if not spec.weights_path.exists():
        pytest.fail(f"shipped weights missing: {spec.weights_path}")
    return load_model("enhance")


@settings(max_examples=10, deadline=None)
@given(units=st.integers(2, 24), data=st.data())
def test_chunked_equals_offline(model, units, data):
    x = torch.randn(2, 1, units * HOP, generator=torch.Generator().manual_seed(units))
    assert_chunked_equals_offline(model, x, data.draw(partitions(units)))


@settings(max_examples=8, deadline=None)
@given(t=st.integers(0, 16 * HOP - 1))
def test_causal(model, t):
    x = torch.randn(2, 1, 16 * HOP, generator=torch.Generator().manual_seed(t))
    assert_causal(model, x, t)


def _streams_at_three_levels(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 1, 20 * HOP, generator=g) * s for s in (0.01, 0.3, 1.0)]


def test_batch_independent_and_step_pure(model):
    assert_batch_independent(model, _streams_at_three_levels(3), warmups=[0, 3, 7], units=6)
    assert_step_is_pure(model, torch.randn(2, 1, 4 * HOP, generator=torch.Generator().manual_seed(4)), units=2)


def test_shipped_model_passes_streaming_checks(shipped):
    """The trained weights, not just a random init: chunked == offline, causal, each stream of a batch
    independent of the others (at different positions and levels, state through bytes), step pure."""
    x = torch.randn(2, 1, 12 * HOP, generator=torch.Generator().manual_seed(5)) * 0.1
    assert_chunked_equals_offline(shipped, x, [1, 4, 2, 5])
    assert_causal(shipped, x, 6 * HOP + 17)
    assert_batch_independent(shipped, _streams_at_three_levels(6), warmups=[0, 3, 7], units=6)
    assert_step_is_pure(shipped, x, units=2)


def test_size_latency_and_declared_attributes(model):
    assert model.latency == model.n_fft - model.hop_length + model.lookahead * model.hop_length
    assert model.algorithmic_latency == model.n_fft + model.lookahead * model.hop_length
    assert 1000 * model.algorithmic_latency / model.sample_rate <= 32 + 16 * model.lookahead
    assert 1000 * model.hop / model.sample_rate <= 16
    assert (model.sample_rate, model.input_kind, model.output_kind) == (16000, "audio", "audio")
    info = describe("enhance")
    assert info["task"] == "enhance" and info["latency_ms"] == 32.0  # the 512-sample STFT window


def test_rejects_bad_input(model):
    state = model.init_state(1)
    with pytest.raises(ValueError, match="mono audio"):
        model.step(torch.zeros(1, 2, HOP), state)
    with pytest.raises(ValueError, match="multiple of hop"):
        model.step(torch.zeros(1, 1, HOP + 1), state)
    with pytest.raises(ValueError, match="compress"):
        GRUMaskEnhancer(compress=0)
    with pytest.raises(ValueError, match="lookahead"):
        GRUMaskEnhancer(lookahead=-1)
    with pytest.raises(ValueError, match="filter_taps"):
        GRUMaskEnhancer(filter_bins=300, filter_taps=2)
    with pytest.raises(ValueError, match="not supported"):
        GRUMaskEnhancer(filter_bins=40, filter_taps=2, lookahead=1)


def test_shipped_weights_are_safetensors_and_card_is_complete(shipped):
    assert sum(p.numel() for p in shipped.parameters()) <= 2_000_000  # the budget
    spec = get_spec("enhance")
    assert spec.weights_path.stat().st_size < 10 * 2**20
    with safe_open(str(spec.weights_path), "pt") as f:  # a plain safetensors file, no pickle
        keys = set(f.keys())
        assert all(f.get_tensor(k).dtype == torch.float32 for k in keys)
    assert keys == set(GRUMaskEnhancer(**spec.card()["config"]).state_dict())
    assert shipped.trained
    card = json.loads(spec.card_path.read_text())
    for key in ("name", "description", "architecture", "config", "weights", "data", "training", "dev", "metrics"):
        assert card.get(key), f"model card lacks {key!r}"
    assert card["architecture"]["parameters"] == sum(p.numel() for p in shipped.parameters())
    assert card["training"]["best_step"] > 0 and card["training"]["training_hours"] > 0
    assert all(c["licence"] for c in card["data"]["corpora"])
    assert {"speech", "noise"} <= {c["kind"] for c in card["data"]["corpora"]}


SPEECH = Path(__file__).parent / "data" / "speech_16k.flac"  # real recorded speech, see data/README.md


def _speech_clip() -> np.ndarray:
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    return audio


@torch.no_grad()
def test_shipped_model_improves_si_sdr_on_real_speech_in_white_noise(shipped):
    clean = torch.from_numpy(_speech_clip()).float()
    clean = clean[: len(clean) // HOP * HOP] * (0.1 / clean.pow(2).mean().sqrt())
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noise = noise * clean.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()  # 0 dB SNR
    noisy = (clean + noise)[None, None]
    out = shipped(noisy)[0, 0, shipped.latency:]
    ref = clean[: len(out)]
    before = si_sdr(noisy[0, 0, : len(out)], ref).item()
    after = si_sdr(out, ref).item()
    assert after > before + 5, f"SI-SDR {before:.1f} dB -> {after:.1f} dB"


def test_deep_filter_adds_the_past_frames_of_the_lowest_bins():
    """The filtered spectrum, written out: bin f < filter_bins of frame t is M X[t] + sum_k C_k X[t - k] (X zero
    before the stream), every other bin M X[t]; the model's output is that spectrum's inverse STFT."""
    from wavestream.models.enhance import bounded

    torch.manual_seed(1)
    model = GRUMaskEnhancer(embed=32, hidden=48, filter_bins=20, filter_taps=3).eval()
    with torch.no_grad():  # a decoder whose taps are far from zero
        model.decoder.conv.weight.mul_(30)
    x = torch.randn(1, 1, 10 * HOP, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        spec = model.stft(x)[:, 0]
        power = spec.real.square() + spec.imag.square() + 1e-12
        low = spec[:, :20] * power[:, :20].pow((model.compress - 1) / 2)
        features = torch.cat([power.pow(model.compress / 2), low.real, low.imag], dim=1)
        out = model.decoder(model.gru(torch.relu(model.encoder(features))))
        f, n = model.freqs, spec.shape[-1]
        mask = torch.complex(*bounded(*out[:, :2 * f].chunk(2, dim=1)))
        c_re, c_im = bounded(*out[:, 2 * f:].reshape(1, 2, 2, 20, n).unbind(1))
        expected = mask * spec
        for k in (1, 2):
            past = torch.nn.functional.pad(spec[:, :20], (k, 0))[..., :n]
            expected[:, :20] += torch.complex(c_re[:, k - 1], c_im[:, k - 1]) * past
        assert (c_re.abs() + c_im.abs()).mean() > 0.1
        torch.testing.assert_close(model(x), model.istft(expected[:, None]), rtol=0, atol=1e-5)
