"""Denser two-talker mixtures: the pause range and edge-silence trimming of ``_Pools.speech_segment``, their
defaults (today's mixtures, bit for bit), and how the separation recipe passes them on (training only, not dev)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wavestream.data import synth
from wavestream.data.synth import SpeakerMixtures
from wavestream.data.voice import NEW_TALKER_OPTIONS
from wavestream.train import separate as recipe
from wavestream.train.loop import load_config

from .tiny import prepare_tiny

RATE = 16000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepare_tiny(tmp_path_factory.mktemp("tiny_density"))


def _speech_segment_before_options(self, rng, n, speaker=None, clean=True, **defaults):
    """``_Pools.speech_segment`` as it was before ``pause_s`` and ``trim_silence`` (which callers may still pass,
    at their defaults): the reference for the defaults."""
    assert defaults in ({}, {"pause_s": (0.1, 0.6), "trim_silence": False}), defaults
    speaker = speaker or self.pick_speaker(rng)
    utterances = (self.clean_by_speaker if clean else self.by_speaker)[speaker]
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        x = self.read(utterances[rng.integers(len(utterances))])
        if pos == 0 and len(x) > n:
            start = rng.integers(len(x) - n + 1)
            return x[start:start + n], speaker
        x = x[: n - pos] * rng.uniform(0.7, 1.0)
        out[pos:pos + len(x)] = x
        pos += len(x) + int(self.rate * rng.uniform(0.1, 0.6))
    return out, speaker


@pytest.mark.parametrize("seconds", [1.2, 3.0])  # 0.9-2.1 s clips: crops of one clip, and joined clips
def test_defaults_reproduce_the_mixtures_of_before(root, monkeypatch, seconds):
    options = dict(seconds=seconds, length=12, seed=7, noise_snr_db=(5, 20), noise_prob=0.5)
    now = SpeakerMixtures(root, "train", **options)
    items = [now[i] for i in range(12)]
    monkeypatch.setattr(synth._Pools, "speech_segment", _speech_segment_before_options)
    before = SpeakerMixtures(root, "train", **options)
    for i, (mixture, sources) in enumerate(items):
        reference = before[i]
        assert torch.equal(mixture, reference[0]) and torch.equal(sources, reference[1])


def _zero_runs(x: np.ndarray) -> list[int]:
    """Lengths of the runs of exact zeros inside ``x`` (between non-zero samples)."""
    nonzero = np.flatnonzero(x != 0)
    gaps = np.diff(nonzero) - 1
    return [int(g) for g in gaps if g > 0]


@pytest.fixture
def padded_tone_pools(root, monkeypatch):
    """Pools whose every clip is 0.5 s of tone between 0.3 s of digital silence each side."""
    pools = SpeakerMixtures(root, "train", seconds=1.0, length=1).pools
    t = np.arange(RATE // 2) / RATE
    tone = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.15).astype(np.float32)  # never zero: zeros are silence
    pad = np.zeros(int(0.3 * RATE), np.float32)
    monkeypatch.setattr(pools, "read", lambda entry: np.concatenate([pad, tone, pad]))
    return pools


def test_trimming_removes_edge_silence(padded_tone_pools):
    rng_seed, n = 3, 3 * RATE
    kept, _ = padded_tone_pools.speech_segment(np.random.default_rng(rng_seed), n, pause_s=(0.0, 0.0))
    trimmed, _ = padded_tone_pools.speech_segment(np.random.default_rng(rng_seed), n, pause_s=(0.0, 0.0),
                                                  trim_silence=True)
    margin = int(synth.TRIM_MARGIN_MS / 1000 * RATE)
    # untrimmed: each joint holds the two clips' 0.3 s of silence; trimmed: the two margins alone
    assert _zero_runs(kept) and min(_zero_runs(kept)) == 2 * int(0.3 * RATE)
    assert _zero_runs(trimmed) and max(_zero_runs(trimmed)) == 2 * margin
    assert np.count_nonzero(trimmed[:margin]) == 0 and trimmed[margin] != 0  # the lead-in is the margin alone
    assert np.count_nonzero(trimmed) > 1.8 * np.count_nonzero(kept)  # 96 % speech against 45 %


def test_trimming_keeps_a_silent_clip_whole(padded_tone_pools, monkeypatch):
    monkeypatch.setattr(padded_tone_pools, "read", lambda entry: np.zeros(RATE // 2, np.float32))
    segment, _ = padded_tone_pools.speech_segment(np.random.default_rng(0), RATE, pause_s=(0.0, 0.0),
                                                  trim_silence=True)
    assert segment.shape == (RATE,) and not segment.any()


def test_pauses_are_drawn_from_the_range(padded_tone_pools):
    low, high = 0.2, 0.3
    segment, _ = padded_tone_pools.speech_segment(np.random.default_rng(0), 8 * RATE, pause_s=(low, high),
                                                  trim_silence=True)
    margin = int(synth.TRIM_MARGIN_MS / 1000 * RATE)
    pauses = [g - 2 * margin for g in _zero_runs(segment)]  # a joint is margin + pause + margin
    assert len(pauses) >= 6
    assert all(int(low * RATE) <= p <= int(high * RATE) for p in pauses), pauses
    assert max(pauses) - min(pauses) > 0.02 * RATE  # drawn, not fixed


def test_mixture_options_are_checked_and_kept(root):
    data = SpeakerMixtures(root, "train", seconds=1.0, length=2, pause_s=(0.02, 0.15), trim_silence=True)
    assert data.pause_s == (0.02, 0.15) and data.trim_silence
    assert SpeakerMixtures(root, "train", seconds=1.0, length=2).pause_s == synth.PAUSE_S == (0.1, 0.6)
    with pytest.raises(ValueError, match="pause_s"):
        SpeakerMixtures(root, pause_s=(0.5, 0.1))
    with pytest.raises(ValueError, match="pause_s"):
        SpeakerMixtures(root, pause_s=(-0.1, 0.1))


def test_dense_settings_make_more_of_the_mixture_overlapped_speech(root):
    """The tiny clips are tones with 60 ms of silence left each side: shorter pauses between trimmed clips
    leave less silence in a talker's span."""
    def both_talking(**options) -> float:
        data = SpeakerMixtures(root, "train", seconds=3.0, length=16, overlap=1.0, **options)
        talking = [(s.abs() > 1e-4 * s.abs().max()).float() for _, s in (data[i] for i in range(16))]
        return float(np.mean([(t[0] * t[1]).mean() for t in talking]))
    assert both_talking(pause_s=(0.02, 0.15), trim_silence=True) > both_talking() + 0.05


CONFIGS = recipe.DEFAULT_CONFIG.parent
_built: list[dict] = []


class _Recorder:
    """Stands in for SpeakerMixtures: keeps the keyword arguments the recipe builds it with (in ``_built``)."""

    def __init__(self, **kwargs):
        _built.append(kwargs)

    def __getitem__(self, index):
        return torch.zeros(1, 8), torch.zeros(2, 8)


def test_recipe_passes_the_options_to_training_but_not_to_dev(monkeypatch):
    monkeypatch.setattr(recipe, "SpeakerMixtures", _Recorder)
    _built.clear()
    base = load_config(CONFIGS / "separate.json", recipe.SECTIONS)
    dense = load_config(CONFIGS / "separate-dense.json", recipe.SECTIONS)
    recipe.dataset(dense["data"], "train", 10, 4.0, 0)
    train_options = _built.pop()
    assert train_options["pause_s"] == (0.02, 0.15) and train_options["trim_silence"] is True
    assert train_options["overlap"] == (0.5, 1.0)
    dev_options = []
    for config in (base, dense):
        recipe.dev_examples(config, "dev")
        dev_options.append(_built.pop())
    # the dense config pins the dev overlap: its dev mixtures are those of separate.json
    assert dev_options[0] == dev_options[1]
    assert "pause_s" not in dev_options[1] and "trim_silence" not in dev_options[1]
    assert dev_options[1]["overlap"] == tuple(base["data"]["overlap"])


def test_dense_config_fine_tunes_the_shipped_model():
    base = json.loads((CONFIGS / "separate.json").read_text())
    dense = json.loads((CONFIGS / "separate-dense.json").read_text())
    assert dense["model"] == base["model"]
    assert {k: v for k, v in dense["dev"].items() if k != "overlap"} == base["dev"]
    assert dense["data"]["pause_s"] == [0.02, 0.15] and dense["data"]["trim_silence"] is True
    assert dense["data"]["overlap"] == [0.5, 1.0]
    assert (dense["train"]["steps"], dense["train"]["lr"], dense["train"]["warmup_steps"]) == (5000, 0.0005, 100)
    assert {k: v for k, v in dense["train"].items() if k not in ("steps", "lr")} == \
        {k: v for k, v in base["train"].items() if k not in ("steps", "lr")}


def test_new_talkers_change_each_talker_and_keep_the_mixture_their_sum(root):
    options = dict(seconds=1.2, length=8, seed=5)
    on = SpeakerMixtures(root, "train", pitch_prob=1.0, formant_prob=1.0, **options)
    off = SpeakerMixtures(root, "train", **options)
    for i in range(8):
        mixture, sources = on[i]
        again = on[i]
        assert torch.equal(mixture, again[0]) and torch.equal(sources, again[1])  # seeded per index
        assert torch.allclose(mixture[0], sources.sum(dim=0), atol=1e-6)  # dry: still the sum of its sources
        assert not torch.equal(sources, off[i][1])
        _, _, info = on.synthesize(on.rng(i))
        assert len(info["talker_changes"]) == 2
        for voice in info["talker_changes"]:  # drawn for each talker on its own
            assert -4 <= voice["pitch_semitones"] <= 4 and 0.88 <= voice["formant_warp"] <= 1.12
    _, _, info = off.synthesize(off.rng(0))
    assert "talker_changes" not in info


def test_voices_config_is_the_gentle_run_plus_new_talkers_for_training_only(monkeypatch):
    gentle = json.loads((CONFIGS / "separate-gentle.json").read_text())
    voices = json.loads((CONFIGS / "separate-voices.json").read_text())
    added = set(NEW_TALKER_OPTIONS)
    assert set(voices["data"]) - set(gentle["data"]) == added
    assert {k: v for k, v in voices["data"].items() if k not in added} == gentle["data"]
    assert {k: v for k, v in voices.items() if k != "data"} == {k: v for k, v in gentle.items() if k != "data"}
    monkeypatch.setattr(recipe, "SpeakerMixtures", _Recorder)
    _built.clear()
    config = load_config(CONFIGS / "separate-voices.json", recipe.SECTIONS)
    recipe.dataset(config["data"], "train", 10, 4.0, 0)
    assert _built.pop()["pitch_prob"] == 0.5
    recipe.dev_examples(config, "dev")
    assert not added & set(_built.pop())  # the dev mixtures stay those of earlier runs


def test_channels_colour_each_talker_in_the_mixture_and_its_source_alike(root):
    options = dict(seconds=1.2, length=8, seed=5)
    on = SpeakerMixtures(root, "train", eq_prob=1.0, **options)
    off = SpeakerMixtures(root, "train", **options)
    for i in range(8):
        mixture, sources = on[i]
        assert torch.allclose(mixture[0], sources.sum(dim=0), atol=1e-6)
        assert not torch.equal(sources, off[i][1])
        _, _, info = on.synthesize(on.rng(i))
        assert info["talker_changes"] == [{"eq": True}, {"eq": True}]
    with pytest.raises(ValueError, match="eq_prob"):
        SpeakerMixtures(root, "train", eq_prob=1.5, **options)


def test_channels_config_is_the_gentle_run_plus_a_channel_per_talker():
    gentle = json.loads((CONFIGS / "separate-gentle.json").read_text())
    channels = json.loads((CONFIGS / "separate-channels.json").read_text())
    assert channels["data"] == gentle["data"] | {"eq_prob": 0.5}
    assert {k: v for k, v in channels.items() if k != "data"} == {k: v for k, v in gentle.items() if k != "data"}
    assert "eq_prob" not in recipe.DEV_DATA_KEYS  # the dev mixtures stay those of earlier runs
