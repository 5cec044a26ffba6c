"""Clean targets: speech scoring (DNSMOS + bandwidth), its cache, the target rule, held-out corpora, decoding gaps."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest
import soundfile as sf
import soxr

from wavestream.data import quality
from wavestream.data.audio import read_audio
from wavestream.data.corpora import CORPORA, missing_packages
from wavestream.data.manifest import OUT_OF_DOMAIN, load_entries, manifest_path, read_manifest, split_of, write_manifest
from wavestream.data.synth import NoisySpeech, SpeakerMixtures

from .tiny import prepare_tiny

RATE = 16000


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def test_effective_bandwidth_tells_narrow_band_from_wide_band():
    wide = _noise(3.0)
    narrow = soxr.resample(soxr.resample(wide, RATE, 8000), 8000, RATE)  # an 8 kHz recording upsampled
    assert quality.effective_bandwidth(wide) > 7500
    assert 3500 < quality.effective_bandwidth(narrow) < 4500
    assert quality.effective_bandwidth(np.zeros(RATE, np.float32)) == 0.0


def test_dnsmos_matches_speechmos_on_one_window():
    pytest.importorskip("speechmos")
    from speechmos import dnsmos
    rng = np.random.default_rng(1)
    t = np.arange(int(quality.WINDOW_S * RATE)) / RATE
    clip = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    ours = quality.dnsmos_p835(clip)
    theirs = dnsmos.run(clip.astype(np.float64), RATE)
    assert ours["sig"] == pytest.approx(theirs["sig_mos"], abs=2e-3)
    assert ours["bak"] == pytest.approx(theirs["bak_mos"], abs=2e-3)
    assert ours["ovrl"] == pytest.approx(theirs["ovrl_mos"], abs=2e-3)
    with pytest.raises(ValueError, match="silent"):
        quality.dnsmos_p835(np.zeros(RATE, np.float32))


def test_a_silent_clip_scores_as_never_clean(tmp_path):
    sf.write(tmp_path / "silence.flac", np.zeros(RATE, np.float32), RATE)
    score = quality.score_file(tmp_path / "silence.flac")
    assert score["dnsmos"]["bak"] == 0.0 and not quality.is_clean_target({"corpus": "x", "kind": "speech", **score})


def test_clean_target_rule():
    clean = {"corpus": "fillets", "kind": "speech", "dnsmos": {"sig": 3.4, "bak": 3.9, "ovrl": 3.0},
             "bandwidth_hz": 7600}
    assert quality.is_clean_target(clean)
    assert not quality.is_clean_target({**clean, "dnsmos": {**clean["dnsmos"], "bak": 3.2}})
    assert not quality.is_clean_target({**clean, "bandwidth_hz": 3900})  # narrow-band upsampled
    unscored = {"corpus": "fillets", "kind": "speech"}
    assert not quality.is_clean_target(unscored)
    assert quality.is_clean_target(unscored, min_bak=None) and quality.is_clean_target(unscored, min_bak=0)
    assert quality.is_clean_target({"corpus": "espeak", "kind": "speech"})  # TTS: clean by construction


@pytest.fixture(scope="module")
def scored_root(tmp_path_factory):
    pytest.importorskip("speechmos")
    return prepare_tiny(tmp_path_factory.mktemp("quality"), score=True)


def test_prepare_scores_every_recorded_clip_once(scored_root):
    entries = load_entries(scored_root, "speech", "train") + load_entries(scored_root, "speech", "dev")
    assert entries and all("dnsmos" in e and "bandwidth_hz" in e for e in entries)
    # a fresh manifest (scores dropped) is filled from the cache without running DNSMOS again
    stripped = [{k: v for k, v in e.items() if k not in ("dnsmos", "bandwidth_hz")} for e in
                read_manifest(manifest_path(scored_root, "speech", "train"))]
    assert quality.score_entries(scored_root, stripped, workers=1, log=lambda _: None) == 0
    assert all("dnsmos" in e for e in stripped)


def test_a_fresh_root_takes_scores_from_the_shipped_table(scored_root, tmp_path, monkeypatch):
    """A table written from one root's cache scores the same clips in another root without DNSMOS."""
    table = tmp_path / "scores.jsonl.gz"
    written = quality.write_score_table(scored_root, table)
    rows = [json.loads(line) for line in gzip.decompress(table.read_bytes()).decode().splitlines()]
    assert len(rows) == written and [r["sha1"] for r in rows] == sorted(r["sha1"] for r in rows)
    first = table.read_bytes()
    quality.write_score_table(scored_root, table)
    assert table.read_bytes() == first  # byte-stable: the shipped table diffs by content only
    entries = read_manifest(manifest_path(scored_root, "speech", "train"))
    stripped = [{k: v for k, v in e.items() if k not in ("dnsmos", "bandwidth_hz")} for e in entries]
    fresh = tmp_path / "fresh"  # the same FLACs, no cache
    for e in entries:
        (fresh / e["path"]).parent.mkdir(parents=True, exist_ok=True)
        (fresh / e["path"]).write_bytes((scored_root / e["path"]).read_bytes())

    def no_dnsmos(path):
        raise AssertionError(f"{path} was scored again")
    monkeypatch.setattr(quality, "score_file", no_dnsmos)
    assert quality.score_entries(fresh, stripped, workers=1, log=lambda _: None, shipped=table) == 0
    assert [(e["dnsmos"], e["bandwidth_hz"]) for e in stripped] == [(e["dnsmos"], e["bandwidth_hz"]) for e in entries]
    assert not quality.cache_path(fresh).exists()


def _mark_clean(root, speakers: set[str]) -> None:
    """Give the tiny corpus studio-like scores for some speakers and noisy ones for the rest."""
    for split in ("train", "dev"):
        path = manifest_path(root, "speech", split)
        entries = read_manifest(path)
        for e in entries:
            good = e["speaker"] in speakers
            e["dnsmos"] = {"sig": 3.5, "bak": 3.95 if good else 2.6, "ovrl": 3.1}
            e["bandwidth_hz"] = 7800
        write_manifest(path, entries)


def test_targets_come_only_from_clean_clips_but_babble_from_all(tmp_path):
    root = prepare_tiny(tmp_path)
    speakers = sorted({e["speaker"] for e in load_entries(root, "speech", "train")})
    clean = set(speakers[:3])
    _mark_clean(root, clean)
    data = NoisySpeech(root, "train", seconds=1.0, length=40, background={"babble": 1.0})
    assert set(data.pools.speakers) == clean
    assert set(data.pools.by_speaker) == set(speakers)  # babble draws on everyone
    assert {data.synthesize(data.rng(i))[2]["speaker"] for i in range(40)} <= clean
    mixtures = SpeakerMixtures(root, "train", seconds=1.0, length=10)
    for i in range(10):
        assert set(mixtures.synthesize(mixtures.rng(i))[2]["speakers"]) <= clean
    everyone = NoisySpeech(root, "train", seconds=1.0, length=4, min_bak=None)
    assert set(everyone.pools.speakers) == set(speakers)
    _mark_clean(root, set())
    with pytest.raises(ValueError, match="DNSMOS BAK >= 3.7"):
        NoisySpeech(root, "train", seconds=1.0, length=4)


def test_out_of_domain_corpora_never_reach_training():
    assert split_of("speech", "tuxpaint-de", "tuxpaint-speech") == "ood"
    assert split_of("noise", "lincity-Mill1", "lincity") == "ood"
    assert all(split_of("speech", f"someone-{i}", "fillets") != "ood" for i in range(50))
    assert OUT_OF_DOMAIN <= set(CORPORA)


def test_ogg_vorbis_inside_a_wave_wrapper_is_read(tmp_path):
    """LMMS ships .ogg files that are RIFF/WAVE with format tag 0x674F around an Ogg Vorbis stream."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.float32)
    ogg = io.BytesIO()
    sf.write(ogg, tone, 22050, format="OGG", subtype="VORBIS")
    stream = ogg.getvalue()
    fmt = (0x674F).to_bytes(2, "little") + (1).to_bytes(2, "little") + (22050).to_bytes(4, "little") \
        + (22050 * 2).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(stream).to_bytes(4, "little") \
        + stream
    path = tmp_path / "wrapped.ogg"
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    with pytest.raises(sf.LibsndfileError):
        sf.read(str(path))
    audio, rate = read_audio(path, RATE)
    assert rate == RATE and abs(len(audio) - RATE) < 200
    assert np.abs(audio).max() == pytest.approx(0.3, abs=0.05)


def test_prepare_reports_a_corpus_that_lists_nothing(tmp_path, capsys):
    from wavestream.cli import main
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "prepare", "--root", str(tmp_path / "d"), "--speech-dir", str(empty), "--no-install"]) == 1
    assert "came out empty" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_installed_corpora_are_not_empty(name):
    """Where a corpus's packages are installed (a machine that ran `data prepare`), it must list clips."""
    corpus = CORPORA[name]
    if not corpus.packages or missing_packages(list(corpus.packages)):
        pytest.skip(f"{name}: packages {corpus.packages or 'none'} not installed here")
    assert next(iter(corpus.lister()), None) is not None, f"{name} lists no clips although its packages are installed"


def test_quality_summary_counts_clean_hours():
    entries = [{"corpus": "a", "kind": "speech", "speaker": "a1", "duration": 1800.0,
                "dnsmos": {"sig": 3.5, "bak": 3.9, "ovrl": 3.1}, "bandwidth_hz": 7800},
               {"corpus": "a", "kind": "speech", "speaker": "a2", "duration": 1800.0,
                "dnsmos": {"sig": 3.0, "bak": 2.5, "ovrl": 2.2}, "bandwidth_hz": 7800},
               {"corpus": "espeak", "kind": "speech", "speaker": "e", "duration": 360.0}]
    rows = {r["corpus"]: r for r in quality.clean_summary(entries)}
    assert rows["a"]["hours"] == 1.0 and rows["a"]["clean_hours"] == 0.5 and rows["a"]["clean_speakers"] == 1
    assert rows["a"]["bak"] == 3.2 and rows["espeak"]["tts"] and rows["espeak"]["clean_hours"] == 0.1
    json.dumps(rows)  # the summary goes into JSON as is
