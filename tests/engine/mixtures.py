"""A synthetic two-talker mixture for the separation tests: two voices that differ in pitch and rhythm."""

from __future__ import annotations

import numpy as np


def two_talkers(seconds: float, rate: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mixture [n, 1], sources [n, 2])``, float32: two gliding harmonic voices (low and high
    pitch) with their own syllable envelopes, so they overlap some of the time and alternate the rest."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sources = np.empty((len(t), 2), np.float32)
    for s, (f0, syllables) in enumerate([(105.0, 3.1), (220.0, 4.3)]):
        pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 2 * np.pi)))
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 10))
        envelope = np.clip(np.sin(2 * np.pi * syllables * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
        sources[:, s] = 0.15 * envelope * voiced + 0.005 * rng.standard_normal(len(t))
    return sources.sum(1, keepdims=True), sources
