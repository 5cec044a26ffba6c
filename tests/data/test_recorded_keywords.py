"""Recorded English digits outside Tux Paint: the saytime and spokennumbers keyword corpora (listing, words said,
split), on files made here; the installed packages are checked when present."""

import os

import numpy as np
import pytest
import soundfile as sf

from wavestream.data import corpora
from wavestream.data.audio import read_audio
from wavestream.data.corpora import CORPORA, KEYWORDS, _said
from wavestream.data.keywords import sounds_like_keyword
from wavestream.data.manifest import split_of


def test_file_names_read_as_the_words_said():
    assert [_said(str(d), {}) for d in range(10)] == list(KEYWORDS[:10])
    assert _said("13", {}) == "thirteen" and _said("50", {}) == "fifty"
    assert _said("the_time_is", corpora.SAYTIME_WORDS) == "the time is"
    assert _said("oclock", corpora.SAYTIME_WORDS) == "o'clock" and _said("b", {}) == "b"


def _tone(path, rate, subtype):
    t = np.arange(int(0.4 * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, subtype=subtype)


def test_saytime_lists_digits_as_keywords_and_the_rest_as_other_words(tmp_path, monkeypatch):
    for stem in ("0", "7", "10", "18", "oh", "the_time_is", "oclock"):
        _tone(tmp_path / f"{stem}.au", 8000, "ULAW")
    monkeypatch.setattr(corpora, "SAYTIME_SOUNDS", tmp_path)
    clips = list(CORPORA["saytime"].lister())
    texts = {c.text for c in clips}
    assert texts == {"zero", "seven", "ten", "eighteen", "oh", "the time is", "o'clock"}
    assert {c.speaker for c in clips} == {"saytime-dawson"} and all(c.kind == "keywords" for c in clips)
    assert len({c.name for c in clips}) == len(clips)
    # what KeywordClips does with them: keywords by name, the rest unknown unless it sounds like one
    others = [t for t in texts if t not in KEYWORDS and not sounds_like_keyword(t, KEYWORDS)]
    assert set(others) == {"ten", "oh", "the time is", "o'clock"}  # "eighteen" is left out: "eight" drawn out
    audio, rate = read_audio(clips[0].path, 16000)  # 8 kHz mu-law .au reads and resamples
    assert rate == 16000 and 0.35 < len(audio) / rate < 0.45


def test_spokennumbers_lists_the_wheels_default_voice(tmp_path, monkeypatch):
    (tmp_path / "default").mkdir()
    for stem in ("3", "9", "a"):
        _tone(tmp_path / "default" / f"{stem}.wav", 44100, "PCM_16")
    monkeypatch.setattr(corpora, "_package_dir", lambda module: tmp_path if module == "spokennumbers" else None)
    clips = list(CORPORA["spokennumbers"].lister())
    assert sorted(c.text for c in clips) == ["a", "nine", "three"]
    assert {c.speaker for c in clips} == {"spokennumbers-default"}
    monkeypatch.setattr(corpora, "_package_dir", lambda module: None)
    assert list(CORPORA["spokennumbers"].lister()) == []  # not installed: nothing listed (prepare skips it)


def test_both_talkers_are_trained_on():
    for name, speaker in (("saytime", "saytime-dawson"), ("spokennumbers", "spokennumbers-default")):
        assert split_of("keywords", speaker, name) == "train"


@pytest.mark.parametrize("name", ["saytime", "spokennumbers"])
def test_installed_package_says_every_digit(name):
    clips = list(CORPORA[name].lister())
    if not clips:
        pytest.skip(f"{name} is not installed")
    assert set(KEYWORDS[:10]) <= {c.text for c in clips}
    assert all(os.path.isfile(c.path) for c in clips)
