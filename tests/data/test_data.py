"""Corpus preparation, splits, synthesis and frozen dev sets on a tiny generated corpus."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from wavestream.data.audio import read_audio, trim_silence
from wavestream.data.devset import load_devset, write_devset
from wavestream.data.manifest import load_entries, split_of
from wavestream.data.noise import NOISE_TYPES, SYNTHETIC_KINDS, generate_noise, synthetic_noise
from wavestream.data.sentences import sentences
from wavestream.data.synth import NoisySpeech, SpeakerMixtures, biquad, equalize, random_eq

from .tiny import SPEAKERS, make_tiny_corpus, prepare_tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepare_tiny(tmp_path_factory.mktemp("tiny"))


def test_prepare_resamples_trims_and_writes_manifests(root):
    entries = load_entries(root, "speech", "train") + load_entries(root, "speech", "dev")
    assert len(entries) == SPEAKERS * 3
    for e in entries[:5]:
        audio, rate = sf.read(e["path"])
        assert rate == 16000 and audio.ndim == 1
        assert abs(len(audio) / rate - e["duration"]) < 1e-3
        assert e["native_rate"] == 22050 and e["kind"] == "speech" and e["licence"]
        # 0.2 s of digital silence was on each side: trimming keeps at most the 60 ms margin
        assert np.abs(audio[: int(0.1 * rate)]).max() > 0 or np.abs(audio[-int(0.1 * rate):]).max() > 0


def test_splits_are_disjoint_by_speaker_and_deterministic(root):
    train = {e["speaker"] for e in load_entries(root, "speech", "train")}
    dev = {e["speaker"] for e in load_entries(root, "speech", "dev")}
    assert train and dev and not train & dev
    assert len(train | dev) == SPEAKERS
    for e in load_entries(root, "speech", "dev"):
        assert split_of("speech", e["speaker"]) == "dev"
    assert split_of("speech", "someone") == split_of("speech", "someone")
    assert split_of("keywords", "someone") == split_of("speech", "someone")  # one voice, one split


def test_prepare_is_incremental_and_refuses_another_rate(root):
    from wavestream.data.prepare import prepare
    before = sorted(p.stat().st_mtime_ns for p in (root / "speech").rglob("*.flac"))
    speech_dir = root.parent / "raw" / "speech"
    lines = []
    summary = prepare(root, 16000, speech_dirs=[str(speech_dir)], install=False, workers=1, log=lines.append)
    assert any("already prepared" in line and "processing 0 clips" in line for line in lines)
    assert sorted(p.stat().st_mtime_ns for p in (root / "speech").rglob("*.flac")) == before
    assert summary["manifests"]["noise_train"]["clips"] > 0  # other corpora kept
    with pytest.raises(ValueError, match="prepared at 16000 Hz"):
        prepare(root, 8000, speech_dirs=[str(speech_dir)], install=False, workers=1, log=lambda _: None)


def test_cli_prepare_and_devset(tmp_path, capsys):
    from wavestream.cli import main
    dirs = make_tiny_corpus(tmp_path / "raw")
    assert main(["data", "prepare", "--root", str(tmp_path / "d"), "--speech-dir", str(dirs["speech"]),
                 "--noise-dir", str(dirs["noise"]), "--music-dir", str(dirs["music"]), "--no-install",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "speech_train" in out and "MB on disk" in out and "clean h" in out  # the quality table
    # the tiny talkers are tones, not clean speech to DNSMOS: the rule refuses them unless switched off
    assert main(["data", "devset", "--root", str(tmp_path / "d"), "--task", "codec"]) == 1
    out = capsys.readouterr().out
    assert "codec" in out and "not written" in out and "clean clips" in out
    assert main(["data", "devset", "--root", str(tmp_path / "d"), "--task", "codec", "--min-bak", "0",
                 "--score"]) == 0
    out = capsys.readouterr().out
    assert "codec" in out and "references DNSMOS SIG" in out
    with pytest.raises(ValueError, match="unknown corpus or kind"):
        main(["data", "prepare", "--root", str(tmp_path / "d"), "--only", "nonsense", "--no-install"])


def test_noisy_speech_is_reproducible_per_seed_and_index(root):
    data = NoisySpeech(root, "train", seconds=1.0, length=8, seed=3, bandlimit_prob=0.3, clip_prob=0.3)
    noisy, clean = data[5]
    assert noisy.shape == clean.shape == (1, 16000) and noisy.dtype == torch.float32
    again = NoisySpeech(root, "train", seconds=1.0, length=8, seed=3, bandlimit_prob=0.3, clip_prob=0.3)[5]
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    other = NoisySpeech(root, "train", seconds=1.0, length=8, seed=4)[5]
    assert not torch.equal(noisy, other[0])
    assert not torch.equal(data[4][0], noisy)
    with pytest.raises(IndexError):
        data[8]


def test_noisy_speech_hits_the_requested_snr(root):
    data = NoisySpeech(root, "dev", seconds=1.0, length=4, snr_db=(7.0, 7.0), bandlimit_prob=0.0, clip_prob=0.0,
                       background={"noise": 1.0}, min_native_rate=0)
    for i in range(4):
        noisy, clean = (t.double().numpy()[0] for t in data[i])
        snr = 10 * np.log10(np.sum(clean ** 2) / np.sum((noisy - clean) ** 2))
        assert abs(snr - 7.0) < 0.05
        assert np.abs(noisy).max() < 1.0


def test_synthetic_noise_is_tonal_or_hiss_and_reproducible():
    rate, n = 16000, 32000
    freqs = np.fft.rfftfreq(n, 1 / rate)
    seen = set()
    for seed in range(30):
        x, kind = synthetic_noise(np.random.default_rng(seed), n, rate)
        y, again = synthetic_noise(np.random.default_rng(seed), n, rate)
        assert np.array_equal(x, y) and kind == again and x.dtype == np.float32
        assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 1) < 1e-3
        power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
        blocks = power[:16000].reshape(80, 200)  # 100 Hz blocks
        lines = blocks > 10 * np.median(blocks, axis=1, keepdims=True)
        tonal = blocks[lines].sum() / blocks.sum()  # share of the power in spectral lines
        seen.add(kind)
        if kind == "hiss":
            assert tonal < 0.2, tonal
        else:  # harmonics of one fundamental, nothing near Nyquist (no aliased partials)
            assert tonal > 0.9, (kind, tonal)
            top = power[freqs > 0.92 * rate / 2]  # harmonics end at 0.9 x Nyquist: only the hiss floor up there
            assert top.max() < 30 * np.median(top)
    assert seen == set(SYNTHETIC_KINDS)


def test_synthetic_noise_kinds_can_be_weighed():
    def drawn(kinds):
        return [synthetic_noise(np.random.default_rng(seed), 1600, kinds=kinds)[1] for seed in range(200)]

    assert set(drawn({"hiss": 1.0})) == {"hiss"}
    share = drawn({"hum": 1, "buzz": 1, "hiss": 3}).count("hiss") / 200
    assert 0.5 < share < 0.7  # 3 of 5
    with pytest.raises(ValueError, match="synthetic kinds"):
        synthetic_noise(np.random.default_rng(0), 1600, kinds={"rumble": 1.0})


def test_channel_eq_biquads_match_the_cookbook_and_filter_exactly():
    rate = 16000
    signal = pytest.importorskip("scipy.signal")

    def gain_db(b, a, hz):
        return 20 * np.log10(np.abs(signal.freqz(b, a, worN=[hz], fs=rate)[1][0]))

    assert gain_db(*biquad("peak", 1000, 6.0, 1.0, rate), 1000) == pytest.approx(6.0, abs=1e-6)
    assert gain_db(*biquad("peak", 1000, 6.0, 1.0, rate), 7000) == pytest.approx(0.0, abs=0.1)
    assert gain_db(*biquad("low", 200, -8.0, 1.0, rate), 1e-3) == pytest.approx(-8.0, abs=1e-3)
    assert gain_db(*biquad("low", 200, -8.0, 1.0, rate), 7999) == pytest.approx(0.0, abs=0.01)
    assert gain_db(*biquad("high", 3000, 5.0, 1.0, rate), 1e-3) == pytest.approx(0.0, abs=1e-3)
    assert gain_db(*biquad("high", 3000, 5.0, 1.0, rate), 7999) == pytest.approx(5.0, abs=0.05)
    x = np.random.default_rng(0).standard_normal(20000)
    for seed in range(5):
        filters = random_eq(np.random.default_rng(seed), rate)
        expected = x
        for b, a in filters:
            expected = signal.lfilter(b, a, expected)
        assert 1 <= len(filters) <= 3 and np.abs(equalize(x, filters) - expected).max() < 1e-9


def test_noisy_speech_synthetic_noise_and_one_channel_for_input_and_target(root):
    """The channel EQ colours the noisy input and the target alike: the model removes noise, not the channel.
    With eq_prob 1 an item draws everything else as with eq_prob 0, so the two can be compared band by band."""
    options = dict(seconds=1.0, length=6, seed=2, bandlimit_prob=0.0, clip_prob=0.0, min_native_rate=0,
                   background={"synthetic": 1.0})
    plain = NoisySpeech(root, "train", eq_prob=0.0, **options)
    coloured = NoisySpeech(root, "train", eq_prob=1.0, **options)
    spread = []
    for i in range(6):
        noisy0, clean0, info0 = plain.synthesize(plain.rng(i))
        noisy1, clean1, info1 = coloured.synthesize(coloured.rng(i))
        assert info0["background"] == "synthetic" and info0["synthetic"] in SYNTHETIC_KINDS
        assert info1["eq"] and "eq" not in info0 and info1["synthetic"] == info0["synthetic"]

        def bands(x):  # dB per 100 Hz band up to 4 kHz
            power = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
            return 10 * np.log10(power[:4000].reshape(40, 100).sum(1) + 1e-30)

        voiced = bands(clean0) > bands(clean0).max() - 20  # the bands the tiny talker has energy in
        channel_speech = (bands(clean1) - bands(clean0))[voiced]
        channel_noisy = (bands(noisy1) - bands(noisy0))[voiced]
        assert np.abs(channel_speech - channel_noisy).max() < 1.0
        spread.append(np.ptp(channel_speech))
    assert max(spread) > 3.0  # a channel that colours, not a flat gain
    assert torch.equal(coloured[3][0], NoisySpeech(root, "train", eq_prob=1.0, **options)[3][0])  # reproducible


def test_noisy_speech_rejects_bad_arguments(root, tmp_path):
    with pytest.raises(ValueError, match="background"):
        NoisySpeech(root, background={"thunder": 1.0})
    with pytest.raises(ValueError, match="eq_prob"):
        NoisySpeech(root, eq_prob=1.5)
    with pytest.raises(ValueError, match="ordered"):
        NoisySpeech(root, snr_db=(10, 0))
    with pytest.raises(ValueError, match="wavestream data prepare"):
        NoisySpeech(tmp_path)
    with pytest.raises(ValueError, match="rooms"):
        NoisySpeech(root, reverb_prob=0.5)  # the tiny corpus has no rooms


def test_speaker_mixtures_sum_and_overlap(root):
    data = SpeakerMixtures(root, "train", seconds=1.0, length=4, overlap=0.0, sir_db=(0.0, 0.0))
    mixture, sources = data[1]
    assert mixture.shape == (1, 16000) and sources.shape == (2, 16000)
    assert torch.allclose(mixture[0], sources.sum(0), atol=1e-6)
    assert not ((sources[0] != 0) & (sources[1] != 0)).any()  # no overlap at all
    _, _, info = data.synthesize(np.random.default_rng(0))
    assert info["speakers"][0] != info["speakers"][1]
    full = SpeakerMixtures(root, "train", seconds=1.0, length=4, overlap=1.0)
    _, sources = full[0]
    assert (sources[0, :100] != 0).any() or (sources[1, :100] != 0).any()
    with pytest.raises(ValueError, match="overlap"):
        SpeakerMixtures(root, overlap=1.5)


def test_devset_is_frozen_and_verified(root):
    folder = write_devset("enhance", root)
    _, entries = load_devset("enhance", root)
    assert len(entries) == 100
    assert {e["snr_db"] for e in entries} == {-5.0, 0.0, 5.0, 10.0, 15.0}
    dev_speakers = {e["speaker"] for e in load_entries(root, "speech", "dev")}
    assert {e["speaker"] for e in entries} <= dev_speakers
    assert all(4.0 <= e["duration"] <= 6.0 for e in entries)
    checksum = (folder / "checksum.txt").read_text()
    # rewriting from the same corpora gives the same files
    copy = folder.parent / "copy"
    shutil.copytree(folder, copy)
    write_devset("enhance", root, force=True)
    assert (folder / "checksum.txt").read_text() == checksum
    assert (folder / "noisy" / "0007.wav").read_bytes() == (copy / "noisy" / "0007.wav").read_bytes()
    # tampering is caught
    audio, rate = sf.read(folder / "clean" / "0003.wav")
    sf.write(folder / "clean" / "0003.wav", audio * 0.5, rate, subtype="PCM_16")
    with pytest.raises(ValueError, match="sha256"):
        load_devset("enhance", root)
    write_devset("enhance", root, force=True)
    load_devset("enhance", root)
    shutil.rmtree(copy)


def test_separation_devset_has_two_references(root):
    write_devset("separate", root)
    folder, entries = load_devset("separate", root)
    e = entries[0]
    mixture = sf.read(folder / e["mixture"])[0]
    s1, s2 = sf.read(folder / e["s1"])[0], sf.read(folder / e["s2"])[0]
    assert np.abs(mixture - s1 - s2).max() < 3 / 32768  # 16-bit rounding of three files
    with pytest.raises(ValueError, match="unknown dev-set task"):
        write_devset("nonsense", root)


def test_trim_silence_and_read_audio(tmp_path):
    rate = 16000
    x = np.concatenate([np.zeros(8000), 0.3 * np.sin(np.arange(16000) / 5), np.zeros(8000)]).astype(np.float32)
    trimmed = trim_silence(x, rate)
    assert 16000 <= len(trimmed) <= 16000 + 2 * int(0.06 * rate) + 320
    assert len(trim_silence(np.zeros(1000, np.float32), rate)) == 0
    sf.write(tmp_path / "a.ogg", np.stack([x, x], 1), 22050)
    audio, out_rate = read_audio(tmp_path / "a.ogg", 16000)
    assert out_rate == 16000 and audio.ndim == 1 and abs(len(audio) - len(x) * 16000 / 22050) < 2
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="cannot read"):
        read_audio(tmp_path / "bad.wav")


def test_generated_noise_and_sentences():
    for kind in NOISE_TYPES:
        x = generate_noise(kind, 1, 16000, 2.0)
        assert x.shape == (32000,) and np.isfinite(x).all()
        assert abs(10 * np.log10(np.mean(x.astype(np.float64) ** 2)) + 25) < 0.01
        assert np.array_equal(x, generate_noise(kind, 1, 16000, 2.0))
        assert not np.array_equal(x, generate_noise(kind, 2, 16000, 2.0))
    with pytest.raises(ValueError):
        generate_noise("purple", 0)
    lines = sentences(300)
    assert len(set(lines)) == 300 and lines == sentences(300)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tts_clip_renders_speech(tmp_path):
    from wavestream.data.corpora import CORPORA
    from wavestream.data.prepare import _process
    clip = next(iter(CORPORA["espeak"].lister()))
    entry = _process(clip, tmp_path, 16000)
    assert entry["text"] and entry["duration"] > 1.0
    assert json.loads(json.dumps(entry)) == entry


def test_one_package_without_a_candidate_does_not_block_the_others(monkeypatch):
    """apt-get refuses a whole list when one name has no candidate (MBROLA voices without contrib/non-free):
    the others are then installed one by one, and only the one that failed is reported missing."""
    from wavestream.data import corpora
    installed, calls = set(), []

    def apt_get(command, **_):  # stands in for apt-get as root: this test must not touch the system
        calls.append(command)
        names = command[4:] if command[1] == "install" else []
        ok = "mbrola" not in names
        if ok:
            installed.update(names)
        return subprocess.CompletedProcess(command, 0 if ok else 100)

    monkeypatch.setattr(corpora.os, "geteuid", lambda: 0)
    monkeypatch.setattr(corpora.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(corpora.subprocess, "run", apt_get)
    monkeypatch.setattr(corpora, "missing_packages", lambda packages: [p for p in packages if p not in installed])
    still, message = corpora.install_packages(["flite", "mbrola", "saytime"])
    assert still == ["mbrola"] and installed == {"flite", "saytime"}
    assert message == "installed flite saytime; could not install mbrola (their corpora are skipped)"
    assert ["apt-get", "update"] in calls


def test_missing_packages_give_a_clear_message_without_root(monkeypatch):
    from wavestream.data import corpora
    monkeypatch.setattr(corpora.os, "geteuid", lambda: 1000)
    missing, message = corpora.install_packages(["wavestream-no-such-package"])
    assert missing == ["wavestream-no-such-package"]
    assert "sudo apt-get install wavestream-no-such-package" in message and "skipped" in message
    skipped = []
    from wavestream.data.prepare import _available
    fake = corpora.Corpus("fake", "speech", lambda: iter(()), ("wavestream-no-such-package",))
    assert _available([fake], install=True, log=skipped.append) == []
    assert any("skipping fake" in line for line in skipped)


def test_two_sources_named_alike_stop_the_run(tmp_path, monkeypatch):
    from wavestream.data import corpora
    from wavestream.data.corpora import Clip, Corpus
    from wavestream.data.prepare import prepare
    files = []
    for folder, seed in (("us", 0), ("canadian", 1)):  # different recordings, one stamp name
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "penny.wav")
        sf.write(files[-1], 0.1 * np.random.default_rng(seed).standard_normal(8000).astype(np.float32), 16000)
    corpus = Corpus("twins", "speech", lambda: (Clip("speech", "twins", "one", "coins/penny", "CC0", path=str(f))
                                               for f in files))
    monkeypatch.setitem(corpora.CORPORA, "twins", corpus)
    with pytest.raises(ValueError, match="name its clips apart"):
        prepare(tmp_path / "data", 16000, only=["twins"], install=False, workers=1, log=lambda _: None)
    assert not (tmp_path / "data" / "speech").exists()  # stopped before any work


def test_tux_paint_names_every_recording_apart():
    from wavestream.data import corpora
    from wavestream.data.prepare import _check_names, _unique
    if corpora.missing_packages(["tuxpaint-stamps-default"]):
        pytest.skip("tuxpaint-stamps-default is not installed")
    for name in ("tuxpaint", "tuxpaint-en", "tuxpaint-speech"):
        _check_names(_unique(list(corpora.CORPORA[name].lister())))  # money/us/coins and money/canadian/coins


def test_a_room_is_the_same_impulse_response_on_every_build():
    """The ray tracer's rays come from pyroomacoustics' generators: seeded per room, a room id gives the same
    tail wherever and whenever it is built (the dev sets with rooms keep their checksums across machines)."""
    pytest.importorskip("pyroomacoustics")
    import pyroomacoustics as pra

    from wavestream.data.prepare import simulate_room
    first, meta = simulate_room(3, 16000)
    pra.random.seed(numpy=99, libroom=99)  # whatever the generators held before
    again, _ = simulate_room(3, 16000)
    assert np.array_equal(first, again) and meta["rt60"] > 0
    other, _ = simulate_room(4, 16000)
    assert len(other) != len(first) or not np.array_equal(other, first)
