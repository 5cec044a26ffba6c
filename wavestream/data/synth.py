"""On-the-fly mixture synthesis from prepared corpora: torch Datasets, reproducible per (seed, index).

Every item draws all its randomness from ``numpy.random.default_rng([seed, index])``, so item i is
the same in any worker, epoch or process; change ``seed`` for a new stream of examples.

Choices, documented once:
- Reverberation (``reverb_prob``, needs rooms from ``wavestream data prepare --only rooms``): the
  noisy input gets the full room response, the target gets the *early* part (direct path + the first
  50 ms): models learn to remove the late tail without being asked to undo early reflections, which
  the ear integrates anyway. Both are aligned to the dry speech (the direct-path delay is removed).
- Band-limiting (``bandlimit_prob``) low-passes the speech in both input and target (a narrow-band
  talker stays narrow-band; the model must not invent the missing band), the noise stays full-band.
- Clipping (``clip_prob``) is applied to the noisy input only; the target is unclipped.
- Channel EQ (``eq_prob``): 1-3 random peaking or shelving biquads (+-10 dB) colour the noisy input
  and the target alike, as a microphone or a phone line colours everything it carries; the model is
  asked to remove the noise, not to undo the channel (it could not: its mask only attenuates). The
  SNR is set before the channel.
- Synthetic backgrounds (``background={"synthetic": w}``): hum, buzz and hiss generated afresh for
  each example (``noise.synthetic_noise``), for the stationary tonal noise the recorded corpora lack.
- Gain: the noisy input is set to a random level (``level_db`` dBFS RMS) and the target scaled by the
  same factor, so targets keep their relation to the input.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from .audio import read_segment, resample
from .audio import trim_silence as trim_edges
from .manifest import default_root, load_entries, manifest_path
from .noise import synthetic_kind_chances, synthetic_noise
from .quality import CLEAN_BAK, is_clean_target, is_tts
from .voice import FORMANT_WARP, PITCH_SEMITONES, NewTalkers

EARLY_REFLECTIONS_S = 0.05
#: (low, high) pause in seconds between the utterances joined into one talker's segment
PAUSE_S = (0.1, 0.6)
#: with ``trim_silence``: 20 ms frames this far below a clip's loudest one are silence at its edges, and
#: this much of them is kept beside the speech (an onset's or a decay's first/last few ms)
TRIM_FLOOR_DB = -40.0
TRIM_MARGIN_MS = 10.0
#: share of targets spoken by TTS voices (clean, but not human): a minority
TTS_SHARE = 0.2


class _Pools:
    """Speech, noise, music and room entries of one split, with per-speaker indices."""

    def __init__(self, root: str | Path | None, split: str, rate: int, speech_corpora: list[str] | None,
                 noise_corpora: list[str] | None, min_native_rate: int, need: tuple[str, ...],
                 min_bak: float | None = CLEAN_BAK, tts_share: float = TTS_SHARE):
        self.root = Path(root) if root is not None else default_root()
        self.rate = rate
        rate_file = self.root / "manifests" / "rate.txt"
        if rate_file.exists() and int(rate_file.read_text()) != rate:
            raise ValueError(f"{self.root} holds {rate_file.read_text().strip()} Hz audio, not {rate} Hz")
        self.speech = [e for e in load_entries(self.root, "speech", split, speech_corpora)
                       if e.get("native_rate", rate) >= min_native_rate or e.get("native_rate", 0) == 0]
        if not self.speech:
            raise ValueError(f"no {split} speech in {self.root} (corpora={speech_corpora}, "
                             f"min_native_rate={min_native_rate})")
        # every clip may be babble or an interferer; only clean ones may be targets (quality.py)
        self.by_speaker = _by_speaker(self.speech)
        self.targets = [e for e in self.speech if is_clean_target(e, min_bak)]
        self.clean_by_speaker = _by_speaker(self.targets)
        self.speakers = sorted(self.clean_by_speaker)  # the talkers targets come from
        self.tts_speakers = [s for s in self.speakers if is_tts(self.clean_by_speaker[s][0])]
        self.recorded_speakers = [s for s in self.speakers if s not in self.tts_speakers]
        self.tts_share = tts_share if self.tts_speakers and self.recorded_speakers else float(bool(self.tts_speakers))
        self.min_bak, self.split = min_bak, split
        self.noise = load_entries(self.root, "noise", split, noise_corpora) if "noise" in need else []
        self.music = load_entries(self.root, "music", split) if "music" in need else []
        self.rooms = load_entries(self.root, "rir", split) if "rir" in need else []
        for kind, pool in (("noise", self.noise), ("music", self.music), ("rir", self.rooms)):
            if kind in need and not pool:
                raise ValueError(f"no {split} {kind} in {self.root}: run `wavestream data prepare` "
                                 f"(rooms: `--only rooms`, needs pyroomacoustics)")

    def read(self, entry: dict) -> np.ndarray:
        return read_clip(entry, self.rate)

    def require_targets(self, talkers: int = 1) -> None:
        if len(self.speakers) < talkers:
            raise ValueError(f"{len(self.speakers)} {self.split} talkers with clean clips in {self.root}, need "
                             f"{talkers}: recorded targets must pass DNSMOS BAK >= {self.min_bak} and be wide-band "
                             f"(`wavestream data prepare` scores them when the eval extra is installed), or pass "
                             f"min_bak=None to take every clip")

    def pick_speaker(self, rng: np.random.Generator, exclude: tuple[str, ...] = ()) -> str:
        """A target talker: TTS with probability ``tts_share``, else recorded (uniform over talkers)."""
        group = self.tts_speakers if rng.random() < self.tts_share else self.recorded_speakers
        choices = [s for s in group if s not in exclude] or [s for s in self.speakers if s not in exclude]
        return choices[rng.integers(len(choices))]

    def speech_segment(self, rng: np.random.Generator, n: int, speaker: str | None = None,
                       clean: bool = True, pause_s: tuple[float, float] = PAUSE_S,
                       trim_silence: bool = False) -> tuple[np.ndarray, str]:
        """``n`` samples of one speaker: a random crop, or utterances joined by pauses of ``pause_s``
        (a (low, high) range in seconds).

        ``clean``: from the speaker's clean clips (targets); otherwise from any of them (babble).
        ``trim_silence``: cut each clip's leading and trailing silence first (``TRIM_FLOOR_DB``, keeping
        ``TRIM_MARGIN_MS``), so that the pauses set the gaps between utterances (prepared clips keep 60 ms of
        edge silence each side: about 50 ms per clip goes; pauses inside a clip stay)."""
        speaker = speaker or self.pick_speaker(rng)
        utterances = (self.clean_by_speaker if clean else self.by_speaker)[speaker]
        out = np.zeros(n, np.float32)
        pos = 0
        while pos < n:
            x = self.read(utterances[rng.integers(len(utterances))])
            if trim_silence:  # no draw: the same random stream as untrimmed segments
                trimmed = trim_edges(x, self.rate, TRIM_FLOOR_DB, margin_ms=TRIM_MARGIN_MS)
                x = trimmed if len(trimmed) else x  # a silent clip stays whole: no empty utterance
            if pos == 0 and len(x) > n:
                start = rng.integers(len(x) - n + 1)
                return x[start:start + n], speaker
            x = x[: n - pos] * rng.uniform(0.7, 1.0)  # small level changes between utterances
            out[pos:pos + len(x)] = x
            pos += len(x) + int(self.rate * rng.uniform(*pause_s))
        return out, speaker

    def background(self, rng: np.random.Generator, pool: list[dict], n: int) -> np.ndarray:
        """``n`` samples of a noise/music file: a random crop, or the file looped from a random offset."""
        return clip_segment(rng, pool[rng.integers(len(pool))], n, self.rate)

    def room(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(full, early) impulse responses, direct path at sample 0, direct-path peak 1."""
        rir = self.read(self.rooms[rng.integers(len(self.rooms))])
        direct = int(np.argmax(np.abs(rir)))
        rir = rir[direct:] / (np.abs(rir[direct]) + 1e-9)
        return rir, rir[: int(EARLY_REFLECTIONS_S * self.rate)]


def read_clip(entry: dict, rate: int) -> np.ndarray:
    """A prepared clip as mono float32 at ``rate``."""
    audio, native = sf.read(entry["path"], dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return resample(audio, native, rate) if native != rate else audio


def clip_segment(rng: np.random.Generator, entry: dict, n: int, rate: int) -> np.ndarray:
    """``n`` samples of a clip: a random crop (reading only that part), or the clip looped from a random offset."""
    frames = int(round(entry["duration"] * rate))
    if frames > n:
        x = read_segment(entry["path"], int(rng.integers(frames - n)), n)
        if len(x) == n:
            return x
    x = read_clip(entry, rate)
    reps = -(-n // max(1, len(x))) + 1
    return np.roll(np.tile(x, reps), -int(rng.integers(len(x))))[:n]


def _by_speaker(entries: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        groups[e["speaker"]].append(e)
    return groups


def _scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    ps, pn = np.mean(speech.astype(np.float64) ** 2), np.mean(noise.astype(np.float64) ** 2)
    return (noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10) + 1e-20))).astype(np.float32)


def _convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)].astype(np.float32)


def _lowpass(x: np.ndarray, rate: int, cutoff_rate: int) -> np.ndarray:
    """Band-limit by resampling down to ``cutoff_rate`` and back (soxr's steep anti-alias filter)."""
    return resample(resample(x, rate, cutoff_rate), cutoff_rate, rate)[: len(x)]


#: (low, high) centre / corner frequency in Hz of each biquad shape of the channel EQ
EQ_SHAPES = {"peak": (150.0, 6000.0), "low": (80.0, 400.0), "high": (2000.0, 6000.0)}


def biquad(shape: str, freq: float, gain_db: float, q: float, rate: int) -> tuple[tuple, tuple]:
    """(b, a) of a peaking or low/high shelving filter, by R. Bristow-Johnson's audio EQ cookbook (shelves
    with slope 1: ``q`` unused)."""
    g, w = 10 ** (gain_db / 40), 2 * np.pi * freq / rate
    cos, alpha = np.cos(w), np.sin(w) / (2 * (q if shape == "peak" else np.sqrt(0.5)))
    if shape == "peak":
        return (1 + alpha * g, -2 * cos, 1 - alpha * g), (1 + alpha / g, -2 * cos, 1 - alpha / g)
    sign, root = {"high": 1, "low": -1}[shape], 2 * np.sqrt(g) * alpha
    b = (g * (g + 1 + sign * (g - 1) * cos + root), -2 * sign * g * (g - 1 + sign * (g + 1) * cos),
         g * (g + 1 + sign * (g - 1) * cos - root))
    a = (g + 1 - sign * (g - 1) * cos + root, 2 * sign * (g - 1 - sign * (g + 1) * cos),
         g + 1 - sign * (g - 1) * cos - root)
    return b, a


def random_eq(rng: np.random.Generator, rate: int) -> list[tuple[tuple, tuple]]:
    """1-3 random biquads (a shape of ``EQ_SHAPES``, log-uniform frequency, -10..10 dB, peaks of Q 0.5-2)."""
    shapes = list(EQ_SHAPES)
    filters = []
    for _ in range(rng.integers(1, 4)):
        shape = shapes[rng.integers(len(shapes))]
        freq = np.exp(rng.uniform(*np.log(EQ_SHAPES[shape])))
        filters.append(biquad(shape, freq, rng.uniform(-10.0, 10.0), rng.uniform(0.5, 2.0), rate))
    return filters


def equalize(x: np.ndarray, filters: list[tuple[tuple, tuple]]) -> np.ndarray:
    """``x`` (``[..., T]``) through the cascade of biquads ``filters`` (in the frequency domain, with at
    least 4096 samples of zeros after ``x`` so that the filters' decay does not wrap around)."""
    size = -(-(x.shape[-1] + 4096) // 4096) * 4096  # a multiple of 4096: a fast FFT length
    z = np.exp(-1j * np.pi * np.arange(size // 2 + 1) / (size // 2))  # z**-1 on the unit circle
    response = np.ones(len(z), complex)
    for b, a in filters:
        response *= (b[0] + b[1] * z + b[2] * z ** 2) / (a[0] + a[1] * z + a[2] * z ** 2)
    return np.fft.irfft(np.fft.rfft(x, size) * response, size)[..., : x.shape[-1]]


def _to_tensor(*arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, a.shape[-1])
                 for a in arrays)


class _SeededDataset(Dataset):
    """``length`` examples of ``seconds`` at ``rate``; example ``index`` is drawn from its own generator
    seeded by ``(seed, index)``, so any example can be rebuilt alone, in any order, in any worker."""

    def _init_sampling(self, rate: int, seconds: float, length: int, seed: int) -> None:
        self.rate, self.samples, self.length, self.seed = rate, int(round(seconds * rate)), length, seed

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return np.random.default_rng([self.seed, index])


class NoisySpeech(_SeededDataset):
    """(noisy, clean) float32 tensors of shape [1, seconds*rate]: speech + noise/music/babble at an SNR.

    ``background`` weights the interferer kind: real/generated noise, music, babble (3-6 other
    speakers of the same split) or synthetic hum, buzz and hiss (drawn per example, the same in every
    split: a training kind; ``synthetic_kinds`` weighs hum, buzz and hiss, equal by default).
    ``eq_prob`` colours that share of examples with a random channel EQ.
    ``min_native_rate=16000`` keeps 8 kHz recordings out of the clean
    targets. ``length`` is the epoch size (items are synthesized, so any number works).
    ``pitch_semitones`` / ``pitch_prob`` and ``formant_warp`` / ``formant_prob`` turn the talker into a new
    one (``voice.NewTalkers``; off by default, drawing nothing, so older configs give the same examples).
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", seconds: float = 4.0,
                 rate: int = 16000, length: int = 10000, seed: int = 0, snr_db: tuple[float, float] = (-5.0, 20.0),
                 level_db: tuple[float, float] = (-40.0, -15.0), reverb_prob: float = 0.0,
                 bandlimit_prob: float = 0.1, clip_prob: float = 0.03, eq_prob: float = 0.0,
                 background: dict[str, float] | None = None, synthetic_kinds: dict[str, float] | None = None,
                 speech_corpora: list[str] | None = None,
                 noise_corpora: list[str] | None = None, min_native_rate: int = 16000,
                 min_bak: float | None = CLEAN_BAK, tts_share: float = TTS_SHARE,
                 pitch_semitones: tuple[float, float] = PITCH_SEMITONES, pitch_prob: float = 0.0,
                 formant_warp: tuple[float, float] = FORMANT_WARP, formant_prob: float = 0.0):
        if seconds <= 0 or length <= 0 or snr_db[0] > snr_db[1] or level_db[0] > level_db[1]:
            raise ValueError("seconds and length must be positive and ranges (low, high) ordered")
        if not 0.0 <= eq_prob <= 1.0:
            raise ValueError(f"eq_prob must be within [0, 1], got {eq_prob}")
        self.background = background or {"noise": 0.75, "music": 0.1, "babble": 0.15}
        kinds = {"noise", "music", "babble", "synthetic"}
        if not set(self.background) <= kinds or sum(self.background.values()) <= 0:
            raise ValueError(f"background weights must be over {', '.join(sorted(kinds))}; got {self.background}")
        need = tuple(k for k, w in self.background.items() if w > 0 and k in ("noise", "music"))
        if reverb_prob > 0:
            need += ("rir",)
        self.pools = _Pools(root, split, rate, speech_corpora, noise_corpora, min_native_rate, need, min_bak, tts_share)
        self.pools.require_targets()
        self._init_sampling(rate, seconds, length, seed)
        self.snr_db, self.level_db = snr_db, level_db
        self.reverb_prob, self.bandlimit_prob, self.clip_prob = reverb_prob, bandlimit_prob, clip_prob
        if synthetic_kinds is not None:
            synthetic_kind_chances(synthetic_kinds)  # a bad config fails before any example is drawn
        self.eq_prob, self.synthetic_kinds = eq_prob, synthetic_kinds
        self.new_talker = NewTalkers(pitch_semitones, pitch_prob, formant_warp, formant_prob)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noisy, clean, _ = self.synthesize(self.rng(index))
        return _to_tensor(noisy, clean)

    def synthesize(self, rng: np.random.Generator, samples: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """One example (``samples`` long, default ``seconds``) as numpy arrays plus what was drawn."""
        n, rate, pools = samples or self.samples, self.rate, self.pools
        speech, speaker = pools.speech_segment(rng, n)
        info: dict = {"speaker": speaker}
        speech = self.new_talker(rng, speech, rate, info)
        if rng.random() < self.bandlimit_prob:
            cutoff_rate = int(rng.choice([8000, 11025, 12000]))
            speech = _lowpass(speech, rate, cutoff_rate)
            info["bandlimit_hz"] = cutoff_rate // 2
        clean = dry = speech
        if rng.random() < self.reverb_prob:
            full, early = pools.room(rng)
            speech, clean = _convolve(dry, full), _convolve(dry, early)
            info["reverb"] = True
        kinds = list(self.background)
        weights = np.array([self.background[k] for k in kinds], dtype=np.float64)
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "babble":
            others = [s for s in pools.by_speaker if s != speaker] or list(pools.by_speaker)
            talkers = [pools.speech_segment(rng, n, others[rng.integers(len(others))], clean=False)[0]
                       for _ in range(rng.integers(3, 7))]
            noise = np.sum([_scale_to_snr(dry, t, rng.uniform(-3, 3)) for t in talkers], axis=0)
        elif kind == "synthetic":
            noise, info["synthetic"] = synthetic_noise(rng, n, rate, self.synthetic_kinds)
        else:
            noise = pools.background(rng, pools.noise if kind == "noise" else pools.music, n)
            if kind == "noise" and rng.random() < 0.3:  # a second noise source now and then
                noise = noise + _scale_to_snr(noise, pools.background(rng, pools.noise, n), rng.uniform(0, 10))
        snr = float(rng.uniform(*self.snr_db))
        noise = _scale_to_snr(clean, noise, snr)
        noisy = speech + noise
        if self.eq_prob and rng.random() < self.eq_prob:  # no draw when off: older data sets stay the same
            noisy, clean = equalize(np.stack([noisy, clean]), random_eq(rng, rate))
            info["eq"] = True
        gain = 10 ** (rng.uniform(*self.level_db) / 20) / (np.sqrt(np.mean(noisy.astype(np.float64) ** 2)) + 1e-9)
        gain = min(gain, 0.99 / (np.abs(noisy).max() + 1e-9))  # no accidental clipping
        noisy, clean = noisy * gain, clean * gain
        if rng.random() < self.clip_prob:
            limit = np.abs(noisy).max() * rng.uniform(0.3, 0.8)
            noisy = np.clip(noisy, -limit, limit)
            info["clipped"] = True
        info.update(background=kind, snr_db=round(snr, 2))
        return noisy.astype(np.float32), clean.astype(np.float32), info


def has_rooms(root: str | Path | None = None, split: str = "train") -> bool:
    return manifest_path(Path(root) if root is not None else default_root(), "rir", split).exists()


class SpeakerMixtures(_SeededDataset):
    """Two-speaker mixtures for separation: (mixture [1, T], sources [2, T]); dry and quiet, mixture = sum of sources.

    ``overlap`` (a value or a (low, high) range) is the share of each talker's span that overlaps the
    other: 1.0 means both talk over the whole segment, 0.0 means one after the other. The two talkers
    are always different speakers; ``sir_db`` sets their level ratio, ``noise_snr_db`` adds noise to a
    share ``noise_prob`` of the mixtures (kept out of the sources, so separation also denoises), and
    ``reverb_prob`` gives each talker a room response of its own (the mixture gets the full responses,
    the sources their early part, as in NoisySpeech). ``pause_s`` and ``trim_silence`` shape each talker's
    span (``_Pools.speech_segment``): shorter pauses between trimmed clips leave less silence in it, so
    more of the overlap is both talking at once. ``pitch_semitones`` / ``pitch_prob`` and ``formant_warp`` /
    ``formant_prob`` turn each talker, drawn for each independently, into a new one (``voice.NewTalkers``):
    more talkers than the corpora hold. Off by default, drawing nothing, so older configs give the same
    mixtures; the dev sets never use it. ``eq_prob`` passes each talker, on its own, through a random channel
    EQ (``random_eq``), in the mixture and its source alike: two talkers recorded on two microphones.
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", seconds: float = 4.0,
                 rate: int = 16000, length: int = 10000, seed: int = 0,
                 overlap: float | tuple[float, float] = (0.3, 1.0), sir_db: tuple[float, float] = (-5.0, 5.0),
                 noise_snr_db: tuple[float, float] | None = None, level_db: tuple[float, float] = (-35.0, -15.0),
                 speech_corpora: list[str] | None = None, min_native_rate: int = 16000,
                 min_bak: float | None = CLEAN_BAK, tts_share: float = TTS_SHARE, noise_prob: float = 1.0,
                 reverb_prob: float = 0.0, pause_s: tuple[float, float] = PAUSE_S, trim_silence: bool = False,
                 pitch_semitones: tuple[float, float] = PITCH_SEMITONES, pitch_prob: float = 0.0,
                 formant_warp: tuple[float, float] = FORMANT_WARP, formant_prob: float = 0.0,
                 eq_prob: float = 0.0):
        low, high = (overlap, overlap) if isinstance(overlap, int | float) else overlap
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"overlap must be within [0, 1], got {overlap}")
        if not 0.0 <= pause_s[0] <= pause_s[1]:
            raise ValueError(f"pause_s must be a (low, high) range of seconds >= 0, got {pause_s}")
        self.pause_s, self.trim_silence = (float(pause_s[0]), float(pause_s[1])), bool(trim_silence)
        if not all(0.0 <= p <= 1.0 for p in (noise_prob, reverb_prob, eq_prob)):
            raise ValueError(f"noise_prob, reverb_prob and eq_prob must be within [0, 1], "
                             f"got {noise_prob}, {reverb_prob}, {eq_prob}")
        self.overlap = (float(low), float(high))
        need = (("noise",) if noise_snr_db and noise_prob > 0 else ()) + (("rir",) if reverb_prob > 0 else ())
        self.pools = _Pools(root, split, rate, speech_corpora, None, min_native_rate, need, min_bak, tts_share)
        self.pools.require_targets(talkers=2)
        self._init_sampling(rate, seconds, length, seed)
        self.sir_db, self.noise_snr_db, self.level_db = sir_db, noise_snr_db, level_db
        self.noise_prob, self.reverb_prob = noise_prob, reverb_prob
        self.new_talker = NewTalkers(pitch_semitones, pitch_prob, formant_warp, formant_prob)
        self.eq_prob = eq_prob

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mixture, sources, _ = self.synthesize(self.rng(index))
        return _to_tensor(mixture[None], sources)

    def _channel(self, rng: np.random.Generator, x: np.ndarray, info: dict) -> np.ndarray:
        if rng.random() >= self.eq_prob:
            return x
        info["eq"] = True
        return equalize(x, random_eq(rng, self.rate)).astype(np.float32)

    def synthesize(self, rng: np.random.Generator, samples: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        n, pools = samples or self.samples, self.pools
        overlap = float(rng.uniform(*self.overlap))
        span = int(n / (2 - overlap))  # two spans of this length overlapping by `overlap` fill n samples
        a_speaker = pools.pick_speaker(rng)
        b_speaker = pools.pick_speaker(rng, exclude=(a_speaker,))
        a, _ = pools.speech_segment(rng, span, a_speaker, pause_s=self.pause_s, trim_silence=self.trim_silence)
        b, _ = pools.speech_segment(rng, span, b_speaker, pause_s=self.pause_s, trim_silence=self.trim_silence)
        changes: list[dict] = [{}, {}]  # per talker: its new voice, its channel
        a, b = (self.new_talker(rng, x, self.rate, c) for x, c in zip((a, b), changes, strict=True))
        if self.eq_prob:  # no draw when off: older configs give the same mixtures
            a, b = (self._channel(rng, x, c) for x, c in zip((a, b), changes, strict=True))
        sources = np.zeros((2, n), np.float32)
        sources[0, :span] = a
        sources[1, n - span:] = b
        sir = float(rng.uniform(*self.sir_db))
        sources[1] = _scale_to_snr(sources[0], sources[1], sir)
        info = {"speakers": [a_speaker, b_speaker], "overlap": round(overlap, 3),
                "sir_db": round(sir, 2)}
        if any(changes):
            info["talker_changes"] = changes
        if self.reverb_prob and rng.random() < self.reverb_prob:
            rooms = [pools.room(rng) for _ in range(2)]
            heard = np.stack([_convolve(s, full) for s, (full, _) in zip(sources, rooms, strict=True)])
            sources = np.stack([_convolve(s, early) for s, (_, early) in zip(sources, rooms, strict=True)])
            mixture = heard.sum(axis=0)
            info["reverb"] = True
        else:
            mixture = sources.sum(axis=0)
        if self.noise_snr_db and rng.random() < self.noise_prob:
            snr = float(rng.uniform(*self.noise_snr_db))
            mixture = mixture + _scale_to_snr(mixture, pools.background(rng, pools.noise, n), snr)
            info["snr_db"] = round(snr, 2)
        gain = 10 ** (rng.uniform(*self.level_db) / 20) / (np.sqrt(np.mean(mixture.astype(np.float64) ** 2)) + 1e-9)
        gain = min(gain, 0.99 / (np.abs(mixture).max() + 1e-9), 0.99 / (np.abs(sources).max() + 1e-9))
        return (mixture * gain).astype(np.float32), (sources * gain).astype(np.float32), info


class CleanSpeech(_SeededDataset):
    """Clean speech alone, ``[1, T]`` float32 at a random level: what a codec learns to reproduce.

    One target talker's clean clips (crops, or utterances joined by short pauses; TTS as a
    ``tts_share`` minority), scaled to ``level_db`` dBFS RMS and kept below full scale.
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", seconds: float = 1.0,
                 rate: int = 16000, length: int = 10000, seed: int = 0,
                 level_db: tuple[float, float] = (-35.0, -15.0), speech_corpora: list[str] | None = None,
                 min_native_rate: int = 16000, min_bak: float | None = CLEAN_BAK, tts_share: float = TTS_SHARE):
        if seconds <= 0 or length <= 0 or level_db[0] > level_db[1]:
            raise ValueError("seconds and length must be positive and level_db (low, high) ordered")
        self.pools = _Pools(root, split, rate, speech_corpora, None, min_native_rate, (), min_bak, tts_share)
        self.pools.require_targets()
        self._init_sampling(rate, seconds, length, seed)
        self.level_db = level_db

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self.rng(index)
        speech, _ = self.pools.speech_segment(rng, self.samples)
        gain = 10 ** (rng.uniform(*self.level_db) / 20) / (np.sqrt(np.mean(speech.astype(np.float64) ** 2)) + 1e-9)
        gain = min(gain, 0.99 / (np.abs(speech).max() + 1e-9))
        return _to_tensor(speech * gain)[0]


class MusicSpeech(_SeededDataset):
    """Speech over music: (mixture [1, T], sources [2, T] = speech, music) at a speech-to-music ratio."""

    def __init__(self, root: str | Path | None = None, split: str = "train", seconds: float = 4.0,
                 rate: int = 16000, length: int = 10000, seed: int = 0, smr_db: tuple[float, float] = (-5.0, 15.0),
                 level_db: tuple[float, float] = (-35.0, -15.0), min_native_rate: int = 16000,
                 min_bak: float | None = CLEAN_BAK, tts_share: float = TTS_SHARE):
        self.pools = _Pools(root, split, rate, None, None, min_native_rate, ("music",), min_bak, tts_share)
        self.pools.require_targets()
        self._init_sampling(rate, seconds, length, seed)
        self.smr_db, self.level_db = smr_db, level_db

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        speech, _ = self.pools.speech_segment(rng, self.samples)
        music = _scale_to_snr(speech, self.pools.background(rng, self.pools.music, self.samples),
                              rng.uniform(*self.smr_db))
        sources = np.stack([speech, music])
        mixture = sources.sum(axis=0)
        gain = 10 ** (rng.uniform(*self.level_db) / 20) / (np.sqrt(np.mean(mixture.astype(np.float64) ** 2)) + 1e-9)
        gain = min(gain, 0.99 / (np.abs(mixture).max() + 1e-9), 0.99 / (np.abs(sources).max() + 1e-9))
        return _to_tensor(mixture[None] * gain, sources * gain)
