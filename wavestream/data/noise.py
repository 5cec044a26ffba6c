"""Generated noises: coloured stationary noise, mains hum, and non-stationary bursts, wind and
speech-shaped modulated noise. Deterministic per (type, seed); normalised to -25 dBFS RMS.

``synthetic_noise`` draws stationary machine-like noise afresh for every training example instead
(NoisySpeech's ``synthetic`` background): hums and buzzes on any fundamental, and hiss."""

from __future__ import annotations

import numpy as np

NOISE_TYPES = ("white", "pink", "brown", "blue", "hum", "babble-like", "bursts", "wind")


def _coloured(rng: np.random.Generator, n: int, exponent: float, rate: int, flat_below_hz: float = 0.0) -> np.ndarray:
    """Gaussian noise with power spectrum ~ f**-exponent (0 white, 1 pink, 2 brown, -1 blue), flat below
    ``flat_below_hz`` (else brown noise puts most of its power below what anyone hears)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    freqs[0] = freqs[1]
    freqs = np.maximum(freqs, flat_below_hz)
    return np.fft.irfft(spectrum * freqs ** (-exponent / 2), n)


def _envelope(rng: np.random.Generator, n: int, rate: int, hz: float) -> np.ndarray:
    """A smooth random positive envelope varying at about ``hz``."""
    points = max(2, int(n / rate * hz) + 2)
    knots = rng.uniform(0.0, 1.0, points)
    return np.interp(np.arange(n), np.linspace(0, n, points), knots)


def generate_noise(kind: str, seed: int, rate: int = 16000, seconds: float = 20.0) -> np.ndarray:
    if kind not in NOISE_TYPES:
        raise ValueError(f"unknown noise type {kind!r}; choose from {', '.join(NOISE_TYPES)}")
    rng = np.random.default_rng([seed, NOISE_TYPES.index(kind)])
    n = int(rate * seconds)
    t = np.arange(n) / rate
    if kind in ("white", "pink", "brown", "blue"):
        x = _coloured(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}[kind], rate)
    elif kind == "hum":
        base = 50.0 if seed % 2 == 0 else 60.0
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
                for k in range(1, 12))
        x = x + 0.05 * _coloured(rng, n, 1.0, rate) / 30
    elif kind == "babble-like":
        # speech-shaped (pink, 100-4000 Hz) noise with syllable-rate (3-6 Hz) amplitude modulation
        spectrum = np.fft.rfft(_coloured(rng, n, 1.0, rate))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        spectrum[(freqs < 100) | (freqs > 4000)] *= 0.05
        x = np.fft.irfft(spectrum, n) * (0.3 + _envelope(rng, n, rate, rng.uniform(3, 6)))
    elif kind == "bursts":
        x = _coloured(rng, n, rng.uniform(0, 1.5), rate)
        gate = np.zeros(n)
        pos = 0
        while pos < n:
            length = int(rate * rng.uniform(0.05, 0.8))
            gate[pos:pos + length] = rng.uniform(0.1, 1.0)
            pos += length + int(rate * rng.uniform(0.1, 1.5))
        x = x * np.convolve(gate, np.hanning(int(rate * 0.01)) / (rate * 0.005), mode="same")
    else:  # wind: low-passed noise with slow gusts
        x = _coloured(rng, n, 2.5, rate) * (0.1 + _envelope(rng, n, rate, 0.5) ** 2)
    x = x - x.mean()
    x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * 10 ** (-25 / 20)
    return x.astype(np.float32)


#: what ``synthetic_noise`` draws, with equal chances
SYNTHETIC_KINDS = ("hum", "buzz", "hiss")
_TABLE = 2048  # samples in the one-period wavetable of a tone (harmonics up to 1023)


def synthetic_kind_chances(kinds: dict[str, float]) -> np.ndarray:
    """The chance of each of ``SYNTHETIC_KINDS`` from weights over them (checked: a bad config fails here)."""
    if not set(kinds) <= set(SYNTHETIC_KINDS) or sum(kinds.values()) <= 0 or min(kinds.values()) < 0:
        raise ValueError(f"synthetic kinds must weigh {', '.join(SYNTHETIC_KINDS)} (>= 0, some > 0); got {kinds}")
    weights = np.array([kinds.get(k, 0.0) for k in SYNTHETIC_KINDS], dtype=np.float64)
    return weights / weights.sum()


def synthetic_noise(rng: np.random.Generator, n: int, rate: int = 16000,
                    kinds: dict[str, float] | None = None) -> tuple[np.ndarray, str]:
    """``n`` samples of stationary noise drawn from ``rng``, and its kind (``SYNTHETIC_KINDS``, with equal chances,
    or as ``kinds`` weighs them).

    hum: mains (50 or 60 Hz, half the time) or a 40-400 Hz fundamental, harmonics falling as
    k**-p (p 0.5-2) with random weights; buzz: the same fundamentals, sawtooth-like (every harmonic at
    1/k) or square-like (odd harmonics only); both wobble slowly in amplitude (0.1-2 Hz, depth up to
    50 %) over a hiss 15-35 dB below, harmonics below 0.9 x Nyquist (no aliasing). hiss: noise of
    spectral slope 0 to -6 dB/octave (white to brown) above 50 Hz, flat below. RMS 1.
    """
    if kinds is None:  # the draw of older configs, so that their examples stay the same
        kind = SYNTHETIC_KINDS[rng.integers(len(SYNTHETIC_KINDS))]
    else:
        kind = SYNTHETIC_KINDS[rng.choice(len(SYNTHETIC_KINDS), p=synthetic_kind_chances(kinds))]
    hiss = _coloured(rng, n, rng.uniform(0.0, 2.0), rate, flat_below_hz=50.0)
    hiss /= np.sqrt(np.mean(hiss ** 2)) + 1e-12
    if kind == "hiss":
        return hiss.astype(np.float32), kind
    f0 = rng.choice([50.0, 60.0]) if rng.random() < 0.5 else float(np.exp(rng.uniform(np.log(40), np.log(400))))
    k = np.arange(1, int(0.45 * rate / f0) + 1)
    if kind == "hum":
        amplitude = k ** -rng.uniform(0.5, 2.0) * rng.uniform(0.3, 1.0, len(k))
    else:
        amplitude = (k % 2 == 1 if rng.random() < 0.5 else 1.0) / k
    spectrum = np.zeros(_TABLE // 2 + 1, complex)
    spectrum[k] = amplitude * np.exp(2j * np.pi * rng.uniform(0, 1, len(k)))
    table = np.fft.irfft(spectrum, _TABLE)
    t = np.arange(n) / rate
    x = np.interp((f0 * t + rng.uniform()) % 1 * _TABLE, np.arange(_TABLE), table, period=_TABLE)
    x *= 1 + rng.uniform(0.0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t + rng.uniform(0, 2 * np.pi))
    x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) + hiss * 10 ** (-rng.uniform(15, 35) / 20)
    return (x / np.sqrt(np.mean(x ** 2))).astype(np.float32), kind
