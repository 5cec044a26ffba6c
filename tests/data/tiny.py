"""A tiny generated corpus (voiced "speech" per speaker, noise, music) so tests never need `data prepare`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SPEAKERS = 24
STUDIO_SCORES = {"sig": 3.5, "bak": 3.95, "ovrl": 3.1}


def voiced(rng: np.random.Generator, rate: int, seconds: float, f0: float) -> np.ndarray:
    """Speech-like: a harmonic tone with syllable-rate bursts, vibrato, and silence around it."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None)
    x = 0.1 * x * syllables
    pad = np.zeros(int(0.2 * rate))
    return np.concatenate([pad, x, pad]).astype(np.float32)


def make_tiny_corpus(folder: Path, rate: int = 22050) -> dict[str, Path]:
    """speech/<speaker>/*.wav (native 22.05 kHz, so preparing resamples), noise/*.wav, music/*.wav."""
    rng = np.random.default_rng(0)
    speech, noise, music = folder / "speech", folder / "noise", folder / "music"
    for s in range(SPEAKERS):
        (speech / f"talker{s:02d}").mkdir(parents=True, exist_ok=True)
        for u in range(3):
            sf.write(speech / f"talker{s:02d}" / f"utt{u}.wav", voiced(rng, rate, rng.uniform(0.8, 2.0),
                                                                           90 + 10 * s), rate)
    noise.mkdir(parents=True, exist_ok=True)
    music.mkdir(parents=True, exist_ok=True)
    for k in range(16):
        sf.write(noise / f"noise{k:02d}.wav", (0.05 * rng.standard_normal(int(rate * 3))).astype(np.float32), rate)
        t = np.arange(int(rate * 6)) / rate
        chord = sum(np.sin(2 * np.pi * f * t) for f in (110 + 20 * k, 277, 330)) * 0.05
        sf.write(music / f"song{k:02d}.wav", chord.astype(np.float32), rate)
    return {"speech": speech, "noise": noise, "music": music}


def prepare_tiny(folder: Path, score: bool = False) -> Path:
    """Prepared data root (16 kHz manifests) built from the tiny corpus.

    Unless ``score`` (real DNSMOS, ~10 s), the tiny talkers get studio-like scores: they are noise-free
    tones, which DNSMOS (made for speech) does not call clean, and the tests that use them are about
    synthesis, not about the clean-target rule (tests/data/test_quality.py tests that).
    """
    from wavestream.data.manifest import SPLITS, manifest_path, read_manifest, write_manifest
    from wavestream.data.prepare import prepare
    dirs = make_tiny_corpus(folder / "raw")
    root = folder / "data"
    prepare(root, 16000, speech_dirs=[str(dirs["speech"])], noise_dirs=[str(dirs["noise"])],
            music_dirs=[str(dirs["music"])], install=False, workers=1, score=score, log=lambda _: None)
    if not score:
        for split in SPLITS:
            path = manifest_path(root, "speech", split)
            if path.exists():
                write_manifest(path, [{**e, "dnsmos": STUDIO_SCORES, "bandwidth_hz": 7800}
                                      for e in read_manifest(path)])
    return root
