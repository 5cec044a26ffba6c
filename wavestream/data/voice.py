"""New talkers out of one recording: pitch shift without tempo change, and formant (vocal-tract length) shift.

One STFT pass does both. A pitch ratio ``r`` is a phase-vocoder time stretch by ``r`` followed by
resampling back to the original length (tempo unchanged, every frequency times ``r``). The formants
are moved separately: each frame's spectral envelope (cepstrally smoothed log magnitude) is warped
along the frequency axis while the harmonics stay where they are, in the spirit of VTLP (Jaitly &
Hinton 2013) but without moving the pitch with it. The warp is applied before the resampling, so it
is ``formant / r`` there: with ``formant = 1`` a pitch shift keeps the talker's formants.

numpy + soxr only: 1-2 ms of CPU per second of 16 kHz audio (``benchmarks/kws_voices.py``).
"""

from __future__ import annotations

import numpy as np
import soxr

#: cepstral coefficients kept for the envelope at 16 kHz (quefrency 2 ms: below the period of a 500 Hz voice)
ENVELOPE_MS = 2.0
#: most an envelope warp may raise or lower a bin (log gain), so a deep valley moved under noise stays sane
MAX_LOG_GAIN = 3.0


def _frame_size(rate: int) -> int:
    """A power of two near 32 ms: long enough to resolve the harmonics of a low voice."""
    return int(2 ** round(np.log2(0.032 * rate)))


def _stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.fft.rfft(frames * window, axis=1)


def _envelope_gain(mag: np.ndarray, factor: float, rate: int, n_fft: int) -> np.ndarray:
    """Per-bin gains that move each frame's envelope by ``factor`` along frequency (a peak at f goes to
    f * factor) and leave the harmonics in place."""
    cep = np.fft.irfft(np.log(mag + 1e-8), n=n_fft, axis=1)
    keep = max(2, int(rate * ENVELOPE_MS / 1000))
    cep[:, keep:n_fft - keep + 1] = 0.0
    env = np.fft.rfft(cep, axis=1).real
    bins = mag.shape[1]
    pos = np.minimum(np.arange(bins) / factor, bins - 1)  # beyond Nyquist: the top bin's level
    lo = np.minimum(pos.astype(int), bins - 2)
    frac = (pos - lo).astype(np.float32)
    warped = env[:, lo] * (1 - frac) + env[:, lo + 1] * frac
    return np.exp(np.clip(warped - env, -MAX_LOG_GAIN, MAX_LOG_GAIN))


def shift_voice(x: np.ndarray, rate: int, semitones: float = 0.0, formant: float = 1.0) -> np.ndarray:
    """``x`` (mono float) with its pitch moved by ``semitones`` and its formants by the factor ``formant``
    (> 1: a shorter vocal tract); same length, same rate, float32. (0, 1) returns ``x`` itself."""
    if semitones == 0 and formant == 1:
        return x
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    ratio = 2.0 ** (semitones / 12)
    n_fft = _frame_size(rate)
    hop = n_fft // 4
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    # frame k is centred on sample k * hop; two spare hops at the end so the last frames can interpolate
    padded = np.pad(x, (n_fft // 2, n_fft // 2 + 2 * hop))
    spec = _stft(padded, n_fft, hop, window)
    frames = len(spec)
    stretched = int(round(n * ratio))  # samples of the stretched signal, before resampling back to n
    out_frames = stretched // hop + 2
    if ratio == 1:
        out = spec[:out_frames]
    else:
        # phase vocoder with the analysis hop as synthesis hop: output frame j reads input time j / ratio
        # (in frames) and turns each bin's phase on by what it turned by over the input hop nearest there,
        # so partials keep their frequencies (unit phasors: no angle/exp, no unwrapping needed)
        t = np.arange(out_frames) / ratio
        i0 = np.minimum(t.astype(int), frames - 2)
        frac = np.clip(t - i0, 0.0, 1.0).astype(np.float32)[:, None]
        mag = np.abs(spec)
        unit = np.where(mag > 1e-9, spec / np.maximum(mag, 1e-9), 1).astype(np.complex64)
        turn = unit[1:] * unit[:-1].conj()
        near = np.minimum(np.rint(t).astype(int), frames - 2)  # the input hop nearest each output frame
        phasor = np.cumprod(np.concatenate([unit[:1], turn[near[:-1]]]), axis=0)
        out = (mag[i0] * (1 - frac) + mag[i0 + 1] * frac) * phasor
    warp = formant / ratio  # the resampling below moves everything by the ratio again
    if warp != 1:
        out = out * _envelope_gain(np.abs(out), warp, rate, n_fft)
    # overlap-add with the analysis window again, normalised by the summed squared windows
    chunks = np.fft.irfft(out, n=n_fft, axis=1) * window
    length = (out_frames - 1) * hop + n_fft
    y = np.zeros(length, np.float32)
    norm = np.zeros(length, np.float32)
    for j in range(4):  # the frames of one phase of the hop do not overlap: add them in one slice each
        block = chunks[j::4]
        idx = ((j + 4 * np.arange(len(block))) * hop)[:, None] + np.arange(n_fft)
        y[idx] += block
        norm[idx] += window ** 2
    y = y[n_fft // 2:n_fft // 2 + stretched] / np.maximum(norm[n_fft // 2:n_fft // 2 + stretched], 1e-3)
    if ratio != 1:  # play the stretched signal faster (or slower) by the ratio: original duration, pitch * ratio
        y = soxr.resample(y, rate * ratio, rate, quality="HQ")
    result = np.zeros(n, np.float32)
    result[:min(n, len(y))] = y[:n]
    return result


#: the dataset options that switch NewTalkers on and shape it (dev sets leave them out)
NEW_TALKER_OPTIONS = ("pitch_semitones", "pitch_prob", "formant_warp", "formant_prob")
#: default ranges of a new talker's pitch shift (semitones) and formant factor, for every dataset that takes them
PITCH_SEMITONES = (-4.0, 4.0)
FORMANT_WARP = (0.88, 1.12)


class NewTalkers:
    """A random new talker out of a recording: with ``pitch_prob`` a pitch shift drawn from ``pitch_semitones``,
    with ``formant_prob`` (drawn independently) a formant factor from ``formant_warp`` (> 1: a shorter vocal
    tract). With both probabilities 0 no random number is drawn, so a dataset that has it switched off gives
    the same examples as before it existed."""

    def __init__(self, pitch_semitones: tuple[float, float] = PITCH_SEMITONES, pitch_prob: float = 0.0,
                 formant_warp: tuple[float, float] = FORMANT_WARP, formant_prob: float = 0.0):
        for name, p in (("pitch_prob", pitch_prob), ("formant_prob", formant_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]; got {p}")
        if len(pitch_semitones) != 2 or not -12 <= pitch_semitones[0] <= pitch_semitones[1] <= 12:
            raise ValueError(f"pitch_semitones must be (low, high) with -12 <= low <= high <= 12; "
                             f"got {pitch_semitones}")
        if len(formant_warp) != 2 or not 0.7 <= formant_warp[0] <= formant_warp[1] <= 1.4:
            raise ValueError(f"formant_warp must be (low, high) factors with 0.7 <= low <= high <= 1.4 (1: unchanged); "
                             f"got {formant_warp}")
        self.pitch_semitones, self.pitch_prob = tuple(pitch_semitones), pitch_prob
        self.formant_warp, self.formant_prob = tuple(formant_warp), formant_prob

    def __call__(self, rng: np.random.Generator, x: np.ndarray, rate: int, info: dict) -> np.ndarray:
        """``x`` as a new talker; what was drawn goes into ``info`` (``pitch_semitones``, ``formant_warp``)."""
        semitones, warp = 0.0, 1.0
        if self.pitch_prob > 0 and rng.random() < self.pitch_prob:
            semitones = float(rng.uniform(*self.pitch_semitones))
            info["pitch_semitones"] = round(semitones, 2)
        if self.formant_prob > 0 and rng.random() < self.formant_prob:
            warp = float(rng.uniform(*self.formant_warp))
            info["formant_warp"] = round(warp, 3)
        return shift_voice(x, rate, semitones, warp)
