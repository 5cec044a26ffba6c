"""New-talker augmentation (``wavestream.data.voice.shift_voice``) and its use in KeywordClips: length and rate
kept, pitch moved without the tempo, formants moved without the pitch, off by default."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.tiny import prepare_tiny
from tests.data.tiny_keywords import add_tiny_keywords
from wavestream.data.keywords import KeywordClips
from wavestream.data.voice import shift_voice

RATE = 16000
CONFIGS = Path(__file__).parents[2] / "wavestream" / "train" / "configs"


def harmonic_tone(f0: float, seconds: float = 1.0, formant: float | None = None, width: float = 250.0,
                  rate: int = RATE) -> np.ndarray:
    """Harmonics of ``f0`` up to 7 kHz; 1/k amplitudes, or a Gaussian envelope around ``formant``."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        amp = 1 / k if formant is None else np.exp(-0.5 * ((k * f0 - formant) / width) ** 2) + 0.01
        x += amp * np.sin(2 * np.pi * k * f0 * t + k * k)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def f0_autocorrelation(x: np.ndarray, rate: int = RATE) -> float:
    """Fundamental from the autocorrelation peak (60-500 Hz), refined by a parabola; edges left out."""
    x = x[len(x) // 8:-len(x) // 8].astype(np.float64)
    x = x - x.mean()
    r = np.correlate(x, x, "full")[len(x) - 1:]
    lo, hi = rate // 500, rate // 60
    lag = lo + int(np.argmax(r[lo:hi]))
    a, b, c = r[lag - 1], r[lag], r[lag + 1]
    return rate / (lag + 0.5 * (a - c) / (a - 2 * b + c))


def spectral_centroid(x: np.ndarray, low: float = 200.0, high: float = 4000.0, rate: int = RATE) -> float:
    x = x[len(x) // 8:-len(x) // 8]
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    band = (f > low) & (f < high)
    return float((power[band] * f[band]).sum() / power[band].sum())


def relative_error(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - x) ** 2) / np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize("n", [16000, 12345, 3000])
@pytest.mark.parametrize("semitones,formant", [(4.0, 1.0), (-4.0, 1.0), (0.0, 0.88), (-2.5, 1.12), (3.0, 0.9)])
def test_length_and_type_are_kept(n, semitones, formant):
    x = harmonic_tone(140)[:n]
    y = shift_voice(x, RATE, semitones, formant)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert 0.3 < np.sqrt(np.mean(y ** 2) / np.mean(x ** 2)) < 3  # a level change at most, not silence or a blow-up


def test_no_shift_is_near_identity():
    x = harmonic_tone(130)
    assert shift_voice(x, RATE, 0.0, 1.0) is x
    # through the whole analysis/synthesis: a factor of (almost) 1 and (almost) 0 semitones change nothing
    assert relative_error(shift_voice(x, RATE, 0.0, 1 + 1e-9), x) < 1e-4
    assert relative_error(shift_voice(x, RATE, 1e-7, 1.0), x) < 1e-2


@pytest.mark.parametrize("semitones", [-4.0, -1.0, 2.0, 4.0])
def test_pitch_moves_the_fundamental_by_the_ratio(semitones):
    x = harmonic_tone(150)
    y = shift_voice(x, RATE, semitones, 1.0)
    ratio = f0_autocorrelation(y) / f0_autocorrelation(x)
    assert ratio == pytest.approx(2 ** (semitones / 12), rel=0.005)


def test_pitch_keeps_the_tempo():
    # a tone burst from 0.3 to 0.7 s: a tape-speed change by 4 semitones would move its end by ~90 ms
    x = harmonic_tone(150)
    x[: int(0.3 * RATE)] = 0
    x[int(0.7 * RATE):] = 0
    for semitones in (-4.0, 4.0):
        y = shift_voice(x, RATE, semitones, 1.0)
        loud = np.flatnonzero(np.convolve(y ** 2, np.ones(160) / 160, "same") > 0.1 * np.mean(x[x != 0] ** 2))
        assert abs(loud[0] / RATE - 0.3) < 0.02 and abs(loud[-1] / RATE - 0.7) < 0.02


@pytest.mark.parametrize("factor", [0.88, 1.12])
def test_formant_warp_moves_the_spectral_peak_not_the_pitch(factor):
    x = harmonic_tone(100, formant=1200.0)
    y = shift_voice(x, RATE, 0.0, factor)
    assert spectral_centroid(y) / spectral_centroid(x) == pytest.approx(factor, rel=0.02)
    assert f0_autocorrelation(y) / f0_autocorrelation(x) == pytest.approx(1.0, rel=0.005)


def test_pitch_shift_keeps_the_formants_unless_asked():
    x = harmonic_tone(100, formant=1200.0)
    kept = shift_voice(x, RATE, 3.0, 1.0)
    moved = shift_voice(x, RATE, 3.0, 1.12)
    assert spectral_centroid(kept) / spectral_centroid(x) == pytest.approx(1.0, rel=0.02)
    assert spectral_centroid(moved) / spectral_centroid(x) == pytest.approx(1.12, rel=0.02)
    assert f0_autocorrelation(moved) / f0_autocorrelation(x) == pytest.approx(2 ** (3 / 12), rel=0.005)


# -- in KeywordClips ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return add_tiny_keywords(prepare_tiny(tmp_path_factory.mktemp("voicedata")))


def test_clips_with_new_talkers_are_reproducible(root):
    on = KeywordClips(root, "train", seconds=1.0, length=30, pitch_prob=1.0, formant_prob=1.0)
    off = KeywordClips(root, "train", seconds=1.0, length=30)
    shifted = 0
    for i in range(30):
        audio, label, span = on[i]
        again, label2, span2 = on[i]
        assert audio.shape == (1, 16000) and np.array_equal(audio, again) and label == label2
        _, _, info = on.synthesize(on.rng(i))
        if "pitch_semitones" in info:
            assert -4 <= info["pitch_semitones"] <= 4 and 0.88 <= info["formant_warp"] <= 1.12
            shifted += 1
            assert not np.array_equal(audio, off[i][0])
    assert shifted >= 15  # every clip with a word


def test_off_by_default_draws_nothing(root):
    data = KeywordClips(root, "train", seconds=1.0, length=4)
    assert data.new_talker.pitch_prob == 0 and data.new_talker.formant_prob == 0
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    word = np.ones(100, np.float32)
    assert data.new_talker(rng, word, RATE, {}) is word
    assert rng.bit_generator.state == before  # so the clips of older configs stay the same


@pytest.mark.parametrize("bad", [{"pitch_prob": 1.5}, {"formant_prob": -0.1}, {"pitch_semitones": (4, -4)},
                                 {"pitch_semitones": (-13, 0)}, {"formant_warp": (0.5, 1.0)},
                                 {"formant_warp": (1.1, 0.9)}])
def test_bad_ranges_are_rejected(root, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        KeywordClips(root, "train", seconds=1.0, length=4, **bad)


def test_voices_recipe_is_the_fine_tune_plus_the_augmentation(root):
    from wavestream.train.kws import dataset
    ft = json.loads((CONFIGS / "kws-ft.json").read_text())
    voices = json.loads((CONFIGS / "kws-voices.json").read_text())
    added = {"pitch_semitones", "pitch_prob", "formant_warp", "formant_prob"}
    assert set(voices["data"]) - set(ft["data"]) == added
    assert {k: v for k, v in voices["data"].items() if k not in added} == ft["data"]
    assert {k: v for k, v in voices.items() if k != "data"} == {k: v for k, v in ft.items() if k != "data"}
    assert voices["data"]["pitch_prob"] > 0 and voices["data"]["formant_prob"] > 0
    options = {k: voices["data"][k] for k in added} | {"root": root, "seconds": 1.0, "batch_size": 2}
    data = dataset(options, "train", 4, 0)  # lists from JSON arrive as ranges
    assert data.new_talker.pitch_semitones == (-4, 4) and data.new_talker.formant_warp == (0.88, 1.12)
