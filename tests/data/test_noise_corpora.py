"""The recorded noise corpora of other games (corpora.py): registered, named packages, listers without voices."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavestream.data import corpora
from wavestream.data.corpora import CORPORA, missing_packages

#: corpus -> the Debian package it reads
NEW_NOISE = {"0ad": "0ad-data", "redeclipse": "redeclipse-data", "megaglest": "megaglest-data",
             "widelands": "widelands-data", "scorched3d": "scorched3d-data"}
#: folders and file-name starts that would mean voices, speech or music slipped in
VOCAL_FOLDERS = ("/voice/", "/voices/", "/music/", "/announcer/", "/human/death/", "/interface/", "/military/",
                 "/techs/")
VOCAL_STEMS = ("scream", "fight4life", "lobby_", "message_", "amb_trade")


@pytest.mark.parametrize("name,package", NEW_NOISE.items())
def test_registered_as_noise_with_their_package(name, package):
    corpus = CORPORA[name]
    assert corpus.kind == "noise" and package in corpus.packages
    assert corpus in corpora.select(["noise"]) and name in corpora.DEFAULT_CORPORA


@pytest.mark.parametrize("name,package", NEW_NOISE.items())
def test_listers_yield_existing_non_vocal_files(name, package):
    if missing_packages([package]):
        pytest.skip(f"{package} is not installed")
    clips = list(CORPORA[name].lister())
    assert clips, f"{name}: no clips although {package} is installed"
    assert len({c.name for c in clips}) == len(clips)  # one output file per clip
    for clip in clips:
        assert clip.kind == "noise" and clip.corpus == name and package in clip.licence
        assert clip.speaker.startswith(f"{name}-")  # speaker = source file: the split is by file
        assert clip.path and Path(clip.path).is_file(), clip.path
        assert not any(folder in clip.path.lower() for folder in VOCAL_FOLDERS), clip.path
        assert not Path(clip.path).stem.lower().startswith(VOCAL_STEMS), clip.path


def _ogg(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(8000 * seconds), np.float32), 8000, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def test_zip_audio_unpacks_chosen_members_once(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    archive = tmp_path / "game" / "pak0.pk3"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("sound/world/wind.ogg", _ogg())
        z.writestr("sound/voices/hello.ogg", _ogg())
        z.writestr("sound/world/readme.txt", "not audio")
        z.writestr("../escape.ogg", _ogg())  # never written outside the cache

    found = list(corpora._zip_audio(archive, lambda name: "/voices/" not in name))
    assert [member for member, _ in found] == ["sound/world/wind.ogg"]
    path = found[0][1]
    assert path.is_file() and path.is_relative_to(tmp_path / "cache")
    assert sf.info(str(path)).frames == 4000
    assert not (tmp_path / "escape.ogg").exists()

    os.utime(path, (1, 1))  # an outdated copy is replaced, a current one is kept
    list(corpora._zip_audio(archive, lambda name: "/world/" in name))
    assert path.stat().st_mtime != 1
    before = path.stat().st_mtime_ns
    list(corpora._zip_audio(archive, lambda name: "/world/" in name))
    assert path.stat().st_mtime_ns == before
    assert list(corpora._zip_audio(tmp_path / "missing.zip", lambda name: True)) == []


def test_typing_sequences_type_only_keys_of_their_split(tmp_path, monkeypatch):
    if missing_packages(["bucklespring-data"]):
        pytest.skip("bucklespring-data is not installed")
    monkeypatch.setattr(corpora, "CACHE", tmp_path)
    monkeypatch.setattr(corpora, "TYPING_SECONDS", 2.0)
    typed = {}
    write = corpora._write_typing

    def spy(path, keys, seed):
        typed[seed] = keys
        if seed < 3:  # make a few for real, the rest empty: fast
            write(path, keys, seed)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    monkeypatch.setattr(corpora, "_write_typing", spy)
    clips = list(CORPORA["typing"].lister())
    assert len(clips) == corpora.TYPING_SEQUENCES == len(typed) and len({c.speaker for c in clips}) == len(clips)
    splits = {corpora.split_of("noise", c.speaker) for c in clips}
    assert splits == {"train", "dev"}  # both splits get typing
    for k, clip in enumerate(clips):
        split = corpora.split_of("noise", clip.speaker)
        assert typed[k] and all(corpora.split_of("noise", f"bucklespring-key-{key}") == split for key in typed[k])
    for clip in clips[:3]:
        audio, rate = sf.read(clip.path)
        assert len(audio) == 2 * rate and np.abs(audio).max() > 0.1  # keystrokes, not silence
    assert list(CORPORA["typing"].lister()) == clips and len(typed) == len(clips)  # made once
