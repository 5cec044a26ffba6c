"""Keyword-spotting clips synthesized on the fly: one word (or none) in background, with its position.

``KeywordClips`` draws, per (seed, index), a clip of ``seconds`` holding one of:

- a keyword (label 0..K-1) spoken by a TTS voice or a recording of the keyword corpora
  (``wavestream data prepare --only keywords``);
- an "unknown" (label K): another word (TTS other words, recorded words of Tux Paint, KTuberling,
  KLettres, Hedgewars), or a random stretch of running speech (any speech corpus; 0.3-1.2 s unless
  ``running_speech_s`` says otherwise; the clip length caps it);
- "silence" (label K+1): background only;

placed at a random offset (time shift), optionally after a short other word (context), then:
new talkers out of the word's recording (pitch without tempo, formants: ``voice.NewTalkers``; off by
default), speed/pitch perturbation (resampling: tape-speed, both change together), band-limiting (8-12 kHz
sample rate), a room (full impulse response from ``rir`` manifests), background noise / music /
babble at an SNR, and a random level. ``synthesize`` also returns where the word starts and ends (in
samples of the output clip: its frames within 30 dB of its loudest, ``voiced_span``; ``placed`` is
the whole recording's span), so a recipe can build per-frame targets and an evaluation can measure
detection delay. The split (train/dev) selects speakers and noise sources as everywhere else.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .audio import resample
from .manifest import default_root, load_entries
from .quality import is_tts
from .synth import _convolve, _lowpass, _scale_to_snr, _SeededDataset, clip_segment, read_clip
from .voice import FORMANT_WARP, PITCH_SEMITONES, NewTalkers

#: the recorded English keyword corpora, the real-speech dev set (``keywords-real``): never trained on, not even
#: their other words (a talker whose every word in training is "unknown" teaches the model that voice means
#: "unknown", which is what the shipped weights of 2026-11-30 did with saytime's and spokennumbers' talkers).
#: Keyword corpora trained on by default: every prepared one but these.
DEV_ONLY_CORPORA = ("tuxpaint-en", "saytime", "spokennumbers")
#: speech corpora whose short clips are single words or short phrases ("unknown" words)
WORD_CORPORA = ("hedgewars", "ktuberling", "klettres")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
#: how a foil is cut from a keyword take (``KeywordClips(foil_prob=...)``), and the share of the voiced
#: span a head or tail keeps: short enough not to be the keyword any more
FOIL_KINDS = ("reversed", "head", "tail")
FOIL_PART = (0.3, 0.55)


def recorded_entries(root: str | Path, corpora: list[str] | tuple[str, ...]) -> list[dict]:
    """Every keyword-manifest entry of ``corpora``, both splits, sorted by path: the real-speech corpora are
    a few talkers each, so their train/dev split by talker would hide one corpus or another from the dev set."""
    entries = []
    for split in ("train", "dev"):
        try:
            entries += load_entries(root, "keywords", split, list(corpora))
        except ValueError:  # no manifest for that split
            pass
    return sorted(entries, key=lambda e: e["path"])


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def voiced_span(x: np.ndarray, rate: int, floor_db: float = -30.0, frame_ms: float = 10.0) -> tuple[int, int]:
    """(first, end) sample of the 10 ms frames within ``floor_db`` of the loudest one: where the word is,
    without the leading/trailing room tone or breath a recording keeps (the word "ends" at ``end``)."""
    frame = max(1, int(rate * frame_ms / 1000))
    n = len(x) // frame
    if n == 0:
        return 0, len(x)
    energy = (x[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    active = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 10))
    if len(active) == 0:  # digital silence (a crop of a pause): the whole stretch
        return 0, len(x)
    return int(active[0] * frame), int((active[-1] + 1) * frame)


def mentions_keyword(text: str, keywords: tuple[str, ...]) -> bool:
    """A transcript with a keyword (or a digit, which TTS reads as one) among its words: not safe as
    keyword-free running speech ("Room 512 is on the left")."""
    words = re.findall(r"[a-z]+", text.lower().replace("-", " "))
    return any(ch.isdigit() for ch in text) or any(w in keywords for w in words)


def source_of(speaker: str) -> str:
    """The voice source of a keyword talker: its name up to the first "-" (espeak-en-us+m3-... -> espeak)."""
    return speaker.split("-", 1)[0]


def sounds_like_keyword(text: str, keywords: tuple[str, ...]) -> bool:
    """A recorded "unknown" word whose name is a keyword, or a keyword drawn out ("Nooo", "Yessir"):
    not safe as a negative."""
    t = _letters(text)
    return any(t == k or (t.startswith(k) and len(t) <= len(k) + 3) for k in keywords)


class KeywordClips(_SeededDataset):
    """``(audio [1, T], label, span [2])``: span = (start, end) sample of the word, (-1, -1) for silence.

    Labels ``0..K-1`` are ``keywords``, ``K`` unknown, ``K+1`` silence (``self.labels``).
    ``corpora``: keyword corpora to draw keywords and TTS other words from (default all but
    ``DEV_ONLY_CORPORA``); ``keyword_speakers`` optionally restricts them to some talkers.
    ``snr_db`` is drawn per clip; with probability ``quiet_prob`` the background sits at 30-50 dB
    below the word instead (near-clean speech must be recognised too). ``source_weights`` draws a
    keyword's source first (the speaker name up to its first "-": espeak, flite, festival, mbrola,
    piper, kokoro, ...; unnamed sources weigh 0), then one of its takes; without it every take weighs the same
    (the 144 espeak talkers would then say two keywords in three).
    ``pitch_semitones`` / ``pitch_prob`` and ``formant_warp`` / ``formant_prob`` make new talkers out of a
    keyword or unknown word (drawn independently; pitch moves without tempo, the formants by a
    vocal-tract length factor, > 1 shorter): TTS has few voices, real talkers are many. Off (0) by
    default: with both probabilities 0 no random number is drawn, so older configs give the same clips.
    ``unknown_tts_share`` draws an unknown word or stretch of running speech from TTS talkers with this
    probability, else from recordings (``quality.is_tts``). The keywords are TTS and about 80 % of the
    unknowns recorded, so "recorded" alone could predict "unknown" (a share of 0.5 did not help real speech
    in a 1000-step pilot; docs/models.md). None (default): every unknown weighs the same, no extra draw.
    ``digital_silence_prob``: the clip has no background at all (exact zeros around the word, as in a
    trimmed or zero-padded recording, whose log-mel frames sit at the floor); 0 by default, no draw.
    ``foil_prob``: an unknown word is, with this probability, a foil cut from a keyword take: the take
    reversed, or only its first or last 30-55 % (``FOIL_KINDS``). Keyword sounds in the wrong order or
    unfinished are what short foreign words and letter names look like to the spotter (its false alarms);
    a foil teaches that a keyword needs the whole word. 0 by default: no extra draw, older configs unchanged.
    ``real_corpora``: recorded corpora of ``DEV_ONLY_CORPORA`` to train on anyway, every clip of both splits
    (keywords and other words; their talkers' source names weigh as any source): for leave-one-source-out
    measurements, where the real dev set's other talkers are the held-out test.
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", seconds: float = 1.5,
                 rate: int = 16000, length: int = 10000, seed: int = 0, keywords: tuple[str, ...] | None = None,
                 corpora: list[str] | None = None, keyword_speakers: list[str] | None = None,
                 unknown_prob: float = 0.25, silence_prob: float = 0.08, running_speech_prob: float = 0.3,
                 running_speech_s: tuple[float, float] = (0.3, 1.2),
                 context_prob: float = 0.15, snr_db: tuple[float, float] = (0.0, 20.0), quiet_prob: float = 0.15,
                 level_db: tuple[float, float] = (-45.0, -15.0),
                 background: dict[str, float] | None = None, reverb_prob: float = 0.3,
                 speed: tuple[float, float] = (0.85, 1.15), speed_prob: float = 0.5, bandlimit_prob: float = 0.15,
                 source_weights: dict[str, float] | None = None,
                 pitch_semitones: tuple[float, float] = PITCH_SEMITONES, pitch_prob: float = 0.0,
                 formant_warp: tuple[float, float] = FORMANT_WARP, formant_prob: float = 0.0,
                 unknown_tts_share: float | None = None, digital_silence_prob: float = 0.0,
                 real_corpora: list[str] | None = None, foil_prob: float = 0.0):
        from .corpora import KEYWORDS
        if seconds <= 0 or length <= 0 or snr_db[0] > snr_db[1] or level_db[0] > level_db[1]:
            raise ValueError("seconds and length must be positive and ranges (low, high) ordered")
        if unknown_prob + silence_prob > 1:
            raise ValueError("unknown_prob + silence_prob must be at most 1")
        self.root = Path(root) if root is not None else default_root()
        self.keywords = tuple(keywords or KEYWORDS)
        self.labels = (*self.keywords, UNKNOWN, SILENCE)
        self.background = background or {"noise": 0.7, "music": 0.15, "babble": 0.15}
        if not set(self.background) <= {"noise", "music", "babble"} or sum(self.background.values()) <= 0:
            raise ValueError(f"background weights must be over noise, music, babble; got {self.background}")
        self._init_sampling(rate, seconds, length, seed)
        self.split = split
        words = load_entries(self.root, "keywords", split)
        chosen = corpora if corpora is not None else sorted({e["corpus"] for e in words} - set(DEV_ONLY_CORPORA))
        words = [e for e in words if e["corpus"] in chosen]
        if real_corpora:
            if not set(real_corpora) <= set(DEV_ONLY_CORPORA):
                raise ValueError(f"real_corpora must be among {DEV_ONLY_CORPORA}; got {real_corpora}")
            words = [e for e in words if e["corpus"] not in real_corpora] + recorded_entries(self.root, real_corpora)
        self.by_word: dict[str, list[dict]] = defaultdict(list)
        self.other_words: list[dict] = []
        for e in words:
            text = e.get("text", "")
            if text in self.keywords:
                if keyword_speakers is None or e["speaker"] in keyword_speakers:
                    self.by_word[text].append(e)
            elif not sounds_like_keyword(text, self.keywords):
                self.other_words.append(e)
        self.source_weights = source_weights
        if source_weights:
            # keep only sources with weight; per word: {source: takes}
            self.by_source = {w: defaultdict(list) for w in self.by_word}
            for w, takes in self.by_word.items():
                for e in takes:
                    if source_weights.get(source_of(e["speaker"]), 0) > 0:
                        self.by_source[w][source_of(e["speaker"])].append(e)
            self.by_word = {w: [e for es in by.values() for e in es] for w, by in self.by_source.items()}
            self.by_word = {w: es for w, es in self.by_word.items() if es}
        missing = [k for k in self.keywords if k not in self.by_word]
        if missing:
            raise ValueError(f"no {split} clips for keywords {missing} in corpora {chosen} of {self.root}: "
                             f"run `wavestream data prepare --only keywords`")
        self.speech = load_entries(self.root, "speech", split)
        self.other_words += [e for e in self.speech if e["corpus"] in WORD_CORPORA
                             and e["duration"] <= seconds - 0.2 and not sounds_like_keyword(e.get("text", ""),
                                                                                            self.keywords)]
        if not self.other_words:
            raise ValueError(f"no {split} non-keyword words in {self.root}")
        # running speech is an "unknown": only transcripts without a keyword (TTS sentences read numbers)
        self.running = [e for e in self.speech if e["duration"] >= 1.0
                        and not mentions_keyword(e.get("text", ""), self.keywords)]
        if unknown_tts_share is not None:
            if not 0 <= unknown_tts_share <= 1:
                raise ValueError(f"unknown_tts_share must be a probability in [0, 1] or None; got {unknown_tts_share}")
            # [recorded, TTS] pools of each kind of unknown; a share of 0 or 1 needs only one of them
            self.unknown_pools = {name: [[e for e in pool if is_tts(e) == tts] for tts in (False, True)]
                                  for name, pool in (("words", self.other_words), ("running", self.running))}
            kinds = [name for name, p in (("words", 1 - running_speech_prob), ("running", running_speech_prob))
                     if p > 0]
            voices = [tts for tts, p in ((False, 1 - unknown_tts_share), (True, unknown_tts_share)) if p > 0]
            empty = [f"{'TTS' if tts else 'recorded'} {'running speech' if name == 'running' else 'other words'}"
                     for name in kinds for tts in voices if not self.unknown_pools[name][tts]]
            if empty:
                raise ValueError(f"unknown_tts_share={unknown_tts_share} needs {', '.join(empty)} in {split}")
        self.unknown_tts_share = unknown_tts_share
        if not 0 <= digital_silence_prob <= 1:
            raise ValueError(f"digital_silence_prob must be a probability in [0, 1]; got {digital_silence_prob}")
        self.digital_silence_prob = digital_silence_prob
        if not 0 <= foil_prob <= 1:
            raise ValueError(f"foil_prob must be a probability in [0, 1]; got {foil_prob}")
        self.foil_prob = foil_prob
        self.noise = load_entries(self.root, "noise", split)
        self.music = load_entries(self.root, "music", split) if self.background.get("music", 0) > 0 else []
        if self.background.get("music", 0) > 0 and not self.music:
            raise ValueError(f"no {split} music in {self.root}")
        self.rooms = load_entries(self.root, "rir", split) if reverb_prob > 0 else []
        if reverb_prob > 0 and not self.rooms:
            raise ValueError(f"no {split} rooms in {self.root}: `wavestream data prepare --only rooms` "
                             f"(or reverb_prob=0)")
        self.unknown_prob, self.silence_prob = unknown_prob, silence_prob
        self.running_speech_prob, self.context_prob = running_speech_prob, context_prob
        if not 0 < running_speech_s[0] <= running_speech_s[1]:
            raise ValueError(f"running_speech_s must be (low, high) seconds, 0 < low <= high; got {running_speech_s}")
        self.running_speech_s = running_speech_s
        self.snr_db, self.quiet_prob, self.level_db = snr_db, quiet_prob, level_db
        self.reverb_prob, self.speed, self.speed_prob = reverb_prob, speed, speed_prob
        self.bandlimit_prob = bandlimit_prob
        self.new_talker = NewTalkers(pitch_semitones, pitch_prob, formant_warp, formant_prob)

    # -- reading -------------------------------------------------------------------------------
    def read(self, entry: dict) -> np.ndarray:
        return read_clip(entry, self.rate)

    def _crop(self, rng: np.random.Generator, entry: dict, n: int) -> np.ndarray:
        return clip_segment(rng, entry, n, self.rate)

    def _background(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
        kinds = [k for k, w in self.background.items() if w > 0]
        weights = np.array([self.background[k] for k in kinds], dtype=np.float64)
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "babble":
            talkers = [self._crop(rng, self.running[rng.integers(len(self.running))], n)
                       for _ in range(rng.integers(3, 7))]
            return np.sum([t / (np.sqrt(np.mean(t.astype(np.float64) ** 2)) + 1e-9) for t in talkers], axis=0), kind
        pool = self.noise if kind == "noise" else self.music
        return self._crop(rng, pool[rng.integers(len(pool))], n), kind

    # -- one clip ------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        audio, label, info = self.synthesize(self.rng(index))
        span = torch.tensor([info.get("start", -1), info.get("end", -1)], dtype=torch.long)
        return torch.from_numpy(np.ascontiguousarray(audio))[None], label, span

    def _keyword_take(self, rng: np.random.Generator, label: int) -> dict:
        takes = self.by_word[self.keywords[label]]
        if self.source_weights:
            by = self.by_source[self.keywords[label]]
            sources = sorted(s for s in by if by[s])
            weights = np.array([self.source_weights[s] for s in sources], dtype=np.float64)
            takes = by[sources[rng.choice(len(sources), p=weights / weights.sum())]]
        return takes[rng.integers(len(takes))]

    def _foil(self, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        entry = self._keyword_take(rng, int(rng.integers(len(self.keywords))))
        x = self.read(entry)
        kind = FOIL_KINDS[rng.integers(len(FOIL_KINDS))]
        if kind == "reversed":
            x = x[::-1].copy()
        else:
            on, off = voiced_span(x, self.rate)
            part = int((off - on) * rng.uniform(*FOIL_PART))
            x = x[:on + part] if kind == "head" else x[off - part:]
        return x, {"speaker": entry["speaker"], "corpus": entry["corpus"], "text": f"(foil: {kind} of {entry['text']})"}

    def _word(self, rng: np.random.Generator, label: int) -> tuple[np.ndarray, dict]:
        if label < len(self.keywords):
            entry = self._keyword_take(rng, label)
            return self.read(entry), {"speaker": entry["speaker"], "corpus": entry["corpus"], "text": entry["text"]}
        if self.foil_prob > 0 and rng.random() < self.foil_prob:
            return self._foil(rng)
        running = rng.random() < self.running_speech_prob  # a stretch of running speech (words cut anywhere)
        pool = self.running if running else self.other_words
        if self.unknown_tts_share is not None:
            pool = self.unknown_pools["running" if running else "words"][int(rng.random() < self.unknown_tts_share)]
        entry = pool[rng.integers(len(pool))]
        if running:
            x = self._crop(rng, entry, int(self.rate * rng.uniform(*self.running_speech_s)))
            return x, {"speaker": entry["speaker"], "corpus": entry["corpus"], "text": "(running speech)"}
        return self.read(entry), {"speaker": entry["speaker"], "corpus": entry["corpus"],
                                  "text": entry.get("text", "")}

    def synthesize(self, rng: np.random.Generator, samples: int | None = None, label: int | None = None,
                   word: tuple[np.ndarray, dict] | None = None, tail_s: float = 0.0) -> tuple[np.ndarray, int, dict]:
        """(audio, label, info); info has ``start``/``end`` (samples, keyword or unknown word) and what was drawn.

        ``label`` forces the class (dev sets balance them), ``word`` the recording (audio at ``rate``,
        info) of a keyword or unknown label; ``samples`` overrides the clip length; the word ends at
        least ``tail_s`` before the clip does (time for a streaming detector to answer).
        """
        n = samples or self.samples
        tail = int(tail_s * self.rate)
        if label is None:
            roll = rng.random()
            label = (len(self.keywords) + 1 if roll < self.silence_prob else len(self.keywords)
                     if roll < self.silence_prob + self.unknown_prob else int(rng.integers(len(self.keywords))))
        info: dict = {"label": self.labels[label]}
        dry = np.zeros(n, np.float32)
        if label <= len(self.keywords):
            word, drawn = word if word is not None else self._word(rng, label)
            info.update(drawn)
            word = self.new_talker(rng, word, self.rate, info)
            if rng.random() < self.speed_prob:
                factor = float(rng.uniform(*self.speed))  # > 1: faster and higher
                word = resample(word, int(round(self.rate * factor)), self.rate)
                info["speed"] = round(factor, 3)
            word = word[: n - tail - int(0.05 * self.rate)]
            start = int(rng.integers(0, n - tail - len(word) + 1))
            if label < len(self.keywords) and rng.random() < self.context_prob and start > 0.4 * self.rate:
                other, _ = self._word(rng, len(self.keywords))  # another word said before the keyword
                other = other[: start - int(0.1 * self.rate)]
                gap = int(self.rate * rng.uniform(0.05, 0.3))
                at = max(0, start - gap - len(other))
                dry[at:at + len(other)] = other[: start - at] * rng.uniform(0.5, 1.2)
                info["context"] = True
            dry[start:start + len(word)] += word
            on, off = voiced_span(word, self.rate)
            info.update(start=start + on, end=start + off, placed=[start, start + len(word)])
        if rng.random() < self.bandlimit_prob:
            cutoff_rate = int(rng.choice([8000, 11025, 12000]))
            dry = _lowpass(dry, self.rate, cutoff_rate)
            info["bandlimit_hz"] = cutoff_rate // 2
        speech = dry
        if rng.random() < self.reverb_prob:
            rir = self.read(self.rooms[rng.integers(len(self.rooms))])
            direct = int(np.argmax(np.abs(rir)))
            rir = rir[direct:] / (np.abs(rir[direct]) + 1e-9)
            speech = _convolve(dry, rir)
            speech *= np.sqrt(np.mean(dry.astype(np.float64) ** 2) / (np.mean(speech.astype(np.float64) ** 2) + 1e-20))
            info["reverb"] = True
        noise, kind = self._background(rng, n)
        if self.digital_silence_prob > 0 and rng.random() < self.digital_silence_prob:
            audio = np.zeros(n, np.float32) if label == len(self.keywords) + 1 else speech
            info["background"] = "none"
        elif label == len(self.keywords) + 1:
            audio = noise
            info["background"] = kind
        else:
            # SNR over the word's own span, so a short word in a long clip is as audible as asked
            ref = speech[info["placed"][0]:info["placed"][1]]
            snr = float(rng.uniform(30, 50)) if rng.random() < self.quiet_prob else float(rng.uniform(*self.snr_db))
            audio = speech + _scale_to_snr(ref, noise, snr)
            info.update(background=kind, snr_db=round(snr, 2))
        gain = 10 ** (rng.uniform(*self.level_db) / 20) / (np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-9)
        gain = min(gain, 0.99 / (np.abs(audio).max() + 1e-9))
        return (audio * gain).astype(np.float32), label, info
