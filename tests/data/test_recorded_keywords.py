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


def _words(path, rate, gaps_s):
    """Tones of 0.3 s separated by the given pauses: a recording of ``len(gaps_s) + 1`` words."""
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(0.3 * rate)) / rate)
    parts = [tone]
    for gap in gaps_s:
        parts += [np.zeros(int(gap * rate)), tone]
    sf.write(path, np.concatenate(parts).astype(np.float32), rate, subtype="PCM_16")


def test_speech_segments_split_at_pauses_only():
    from wavestream.data.audio import speech_segments
    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(0.3 * rate)) / rate)
    two = np.concatenate([tone, np.zeros(int(0.3 * rate)), tone]).astype(np.float32)
    spans = speech_segments(two, rate)
    assert len(spans) == 2
    (a0, a1), (b0, b1) = spans
    assert a0 == 0 and abs(a1 - 0.33 * rate) < 0.02 * rate and abs(b0 - 0.57 * rate) < 0.02 * rate and b1 == len(two)
    short_pause = np.concatenate([tone, np.zeros(int(0.1 * rate)), tone]).astype(np.float32)
    assert speech_segments(short_pause, rate) == [(0, len(short_pause))]  # a 100 ms pause is inside a word
    assert speech_segments(np.zeros(rate, np.float32), rate) == []


def test_alsa_channels_lists_each_word_of_each_channel_name(tmp_path, monkeypatch):
    for stem in ("Front_Left", "Rear_Right", "Side_Left", "Front_Center"):
        _words(tmp_path / f"{stem}.wav", 48000, [0.3])
    _tone(tmp_path / "Noise.wav", 48000, "PCM_16")
    monkeypatch.setattr(corpora, "ALSA_CHANNEL_SOUNDS", tmp_path)
    clips = list(CORPORA["alsa-channels"].lister())
    assert sorted((c.text, c.segment) for c in clips) == [
        ("center", 1), ("front", 0), ("front", 0), ("left", 1), ("left", 1), ("rear", 0), ("right", 1), ("side", 0)]
    assert {c.speaker for c in clips} == {"alsa-channels"} and len({c.name for c in clips}) == len(clips)


def test_prepare_writes_one_word_of_a_two_word_recording(tmp_path, monkeypatch):
    from wavestream.data import prepare
    from wavestream.data.corpora import Clip
    _words(tmp_path / "Rear_Left.wav", 48000, [0.3])
    clips = [Clip("keywords", "alsa-channels", "alsa-channels", f"rear_left-{w}", "GPL-2", path=str(tmp_path /
                  "Rear_Left.wav"), text=w, segment=k) for k, w in enumerate(("rear", "left", "ghost"))]
    assert len(prepare._unique(clips)) == 3  # one file, three clips: not duplicates
    rows = [prepare._process(c, tmp_path / "out", 16000) for c in clips]
    assert rows[2] is None  # there is no third word
    for row in rows[:2]:
        audio, _ = read_audio(tmp_path / "out" / row["path"], 16000)
        assert 0.3 <= len(audio) / 16000 < 0.45  # one tone and its margins, not both


def test_parselmouth_digits_come_from_the_source_archive(tmp_path, monkeypatch):
    audio = tmp_path / "praat-parselmouth-0.4.7" / "praat_parselmouth-0.4.7" / "docs" / "examples" / "audio"
    audio.mkdir(parents=True)
    for stem in ("1_b", "5_y", "bat", "the_north_wind_and_the_sun"):
        _tone(audio / f"{stem}.wav", 44100, "PCM_16")
    monkeypatch.setattr(corpora, "sdist", lambda requirement, fetch=False: tmp_path / "praat-parselmouth-0.4.7")
    clips = list(CORPORA["parselmouth"].lister())
    assert sorted((c.speaker, c.text) for c in clips) == [("parselmouth-b", "one"), ("parselmouth-y", "five")]
    monkeypatch.setattr(corpora, "sdist", lambda requirement, fetch=False: None)
    assert list(CORPORA["parselmouth"].lister()) == []  # not fetched: nothing listed (prepare skips it)


def test_new_talkers_are_trained_on():
    for name, speaker in (("parselmouth", "parselmouth-b"), ("parselmouth", "parselmouth-y"),
                          ("alsa-channels", "alsa-channels")):
        assert split_of("keywords", speaker, name) == "train"
