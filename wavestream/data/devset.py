"""Frozen dev sets: small, deterministic evaluation sets written to disk with a manifest and checksums.

``<root>/devsets/<task>/`` holds the audio (16-bit WAV), ``manifest.jsonl`` (one clip per line with
its files, what was drawn and each file's sha256) and ``checksum.txt`` (sha256 over the manifest).
Everything is drawn from DEV speakers, noises, music and rooms only, from a fixed seed, so two
machines with the same prepared corpora write the same files; ``load_devset`` verifies them.

Tasks: ``enhance`` (noisy/clean at -5, 0, 5, 10, 15 dB SNR, 20 clips each, 4-6 s), ``separate``
(2 speakers at 25/50/100 % overlap), ``codec`` (clean speech), each also out-of-domain (``enhance-ood``,
``separate-ood``, ``codec-ood``: talkers of a corpus no model trains on, Tux Paint's volunteer
readers of 12 languages, over held-out city/industry/machine noise; see ``manifest.OUT_OF_DOMAIN``),
``keywords`` (labelled 2 s clips of the dev TTS voices and dev backgrounds: in-domain), ``keywords-real``
(recorded English digits and words of the corpora never trained on, ``keywords.DEV_ONLY_CORPORA``: Tux Paint,
saytime and spokennumbers, in quiet, noise and a room: out-of-domain, the set kws checkpoints are chosen on)
and ``keywords-negative`` (long stretches of dev speech without keywords, noise and music: false alarms per
hour).

References pass the clean-target rule (DNSMOS BAK >= 3.7, wide-band; ``quality.py``): a dev set
whose "clean" speech carries room tone rewards models that keep noise. ``checksum.txt`` records the
dev-set ``VERSION`` and the rule, and evaluation reports carry both.

The speech of the enhance, separate and codec sets is recorded human speech only (``RECORDED``):
TTS voices are training material, and peers trained on human speech treat formant-synthesized
voices as noise (DeepFilterNet3 and RNNoise lose 10-25 dB SI-SDR on clean espeak input), which
would measure the data rather than the systems.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from .keywords import DEV_ONLY_CORPORA, KeywordClips, recorded_entries
from .manifest import default_root, load_entries
from .quality import CLEAN_BAK
from .synth import NoisySpeech, SpeakerMixtures

#: the speech sets come in pairs: in-domain (dev talkers of the training corpora) and out-of-domain ("-ood":
#: whole corpora and noise sources no model trains on, manifest.OUT_OF_DOMAIN); models are chosen on the second
SPEECH_TASKS = ("enhance", "separate", "codec", "enhance-ood", "separate-ood", "codec-ood")
TASKS = (*SPEECH_TASKS, "keywords", "keywords-real", "keywords-negative")
ENHANCE_SNRS = (-5, 0, 5, 10, 15)
ENHANCE_PER_SNR = 20
SEPARATE_OVERLAPS = (0.25, 0.5, 1.0)
SEPARATE_PER_OVERLAP = 20
CODEC_CLIPS = 50
KEYWORD_CLIPS = 300
KEYWORD_SECONDS, KEYWORD_TAIL_S = 2.0, 0.5  # the word ends at least 0.5 s before the clip does
#: (name, snr dB or None for quiet, reverb): every real keyword recording in each condition
REAL_CONDITIONS = (("quiet", None, False), ("snr20", 20.0, False), ("snr10", 10.0, False), ("snr5", 5.0, False),
                   ("room-snr15", 15.0, True))
REAL_UNKNOWN, REAL_SILENCE = 40, 20
NEGATIVE_SPEECH, NEGATIVE_BACKGROUND, NEGATIVE_SECONDS = 30, 15, 60.0
SEED = 20240601
# codec2 is 8 kHz: dropped by the wide-band rule
RECORDED = ["fillets", "hedgewars", "klettres", "ktuberling", "asterisk", "codec2", "tuxpaint-speech"]
#: 2: references pass the clean-target rule (quality.py); out-of-domain sets (split "ood") added
#: 3: out-of-domain speech is Tux Paint's read words, not Hedgewars' game voices (manifest.OUT_OF_DOMAIN)
#: 4: keywords-real holds the recorded digits of three corpora (DEV_ONLY_CORPORA: four talkers), not Tux Paint's alone
#: 5: rooms' impulse responses are seeded (prepare.simulate_room): keywords and keywords-real, the sets with rooms,
#:    are the same on every machine (before, the ray tracer drew other tails on each build)
VERSION = 5


def devset_dir(root: str | Path | None, task: str) -> Path:
    return (Path(root) if root is not None else default_root()) / "devsets" / task


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(folder: Path, rel: str, audio: np.ndarray, rate: int) -> tuple[str, str]:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if np.abs(audio).max() >= 1.0:
        raise ValueError(f"{rel}: samples reach full scale; the synthesis should have kept headroom")
    sf.write(str(path), audio.T if audio.ndim == 2 else audio, rate, subtype="PCM_16")
    return rel, _sha256(path)


def _recorded(root, split: str) -> list[str]:
    """Corpora of recorded speech in ``split``: the packaged ones in ``RECORDED`` and users' own folders."""
    corpora = {e["corpus"] for e in load_entries(root if root is not None else default_root(), "speech", split)}
    return sorted(c for c in corpora if c in RECORDED or c.startswith("user-"))


def _backgrounds(split: str) -> dict[str, float]:
    """In-domain: the training kinds; out-of-domain: held-out noise and held-out talkers' babble (no music)."""
    return {"noise": 0.7, "music": 0.1, "babble": 0.2} if split == "dev" else {"noise": 0.8, "babble": 0.2}


def enhance_mixing(root, split: str) -> dict:
    """NoisySpeech options of the enhance dev sets of ``split`` ("dev" or "ood"), less the SNR: recorded
    talkers of the split over its own noises (held out from training: dev sources of the training
    corpora, or for "ood" a corpus no model trains on), music in-domain, and babble of the split's other
    talkers; no rooms, band limits, clipping, channel EQ or synthetic noise (training kinds, not held out).
    The enhance recipe draws its out-of-domain dev examples with the same options."""
    return dict(level_db=(-35.0, -20.0), bandlimit_prob=0.0, clip_prob=0.0, reverb_prob=0.0,
                background=_backgrounds(split), speech_corpora=_recorded(root, split))


def _seconds(rng: np.random.Generator, rate: int) -> int:
    return int(rate * rng.uniform(4.0, 6.0))


def _enhance(folder: Path, root, rate: int, split: str = "dev", min_bak: float | None = CLEAN_BAK) -> list[dict]:
    entries = []
    for s, snr in enumerate(ENHANCE_SNRS):
        data = NoisySpeech(root, split, rate=rate, snr_db=(snr, snr), min_bak=min_bak, **enhance_mixing(root, split))
        for i in range(ENHANCE_PER_SNR):
            rng = np.random.default_rng([SEED, s, i])
            noisy, clean, info = data.synthesize(rng, _seconds(rng, rate))
            clip = f"{len(entries):04d}"
            n, n_sha = _write(folder, f"noisy/{clip}.wav", noisy, rate)
            c, c_sha = _write(folder, f"clean/{clip}.wav", clean, rate)
            entries.append({"id": clip, "noisy": n, "clean": c, "duration": round(len(noisy) / rate, 3), **info,
                            "sha256": {"noisy": n_sha, "clean": c_sha}})
    return entries


def _separate(folder: Path, root, rate: int, split: str = "dev", min_bak: float | None = CLEAN_BAK) -> list[dict]:
    entries = []
    for o, overlap in enumerate(SEPARATE_OVERLAPS):
        data = SpeakerMixtures(root, split, rate=rate, overlap=overlap, level_db=(-30.0, -20.0),
                               speech_corpora=_recorded(root, split), min_bak=min_bak)
        for i in range(SEPARATE_PER_OVERLAP):
            rng = np.random.default_rng([SEED, 100 + o, i])
            mixture, sources, info = data.synthesize(rng, _seconds(rng, rate))
            clip = f"{len(entries):04d}"
            files = {"mixture": _write(folder, f"mixture/{clip}.wav", mixture, rate),
                     "s1": _write(folder, f"s1/{clip}.wav", sources[0], rate),
                     "s2": _write(folder, f"s2/{clip}.wav", sources[1], rate)}
            entries.append({"id": clip, **{k: v[0] for k, v in files.items()},
                            "duration": round(len(mixture) / rate, 3), **info,
                            "sha256": {k: v[1] for k, v in files.items()}})
    return entries


def _codec(folder: Path, root, rate: int, split: str = "dev", min_bak: float | None = CLEAN_BAK) -> list[dict]:
    data = NoisySpeech(root, split, rate=rate, background={"noise": 1.0}, speech_corpora=_recorded(root, split),
                       min_bak=min_bak)
    entries = []
    for i in range(CODEC_CLIPS):
        rng = np.random.default_rng([SEED, 200, i])
        n = _seconds(rng, rate)
        speech, speaker = data.pools.speech_segment(rng, n)
        speech = speech * (10 ** (rng.uniform(-30, -18) / 20) / (np.sqrt(np.mean(speech ** 2)) + 1e-9))
        speech = speech * min(1.0, 0.99 / (np.abs(speech).max() + 1e-9))
        clip = f"{i:04d}"
        rel, sha = _write(folder, f"clean/{clip}.wav", speech.astype(np.float32), rate)
        entries.append({"id": clip, "clean": rel, "duration": round(n / rate, 3), "speaker": speaker,
                        "sha256": {"clean": sha}})
    return entries


def _keyword_entry(folder: Path, i: int, audio: np.ndarray, rate: int, label: int, info: dict) -> dict:
    clip = f"{i:04d}"
    rel, sha = _write(folder, f"audio/{clip}.wav", audio, rate)
    return {"id": clip, "audio": rel, "duration": round(len(audio) / rate, 3), "label_index": label,
            **info, "sha256": {"audio": sha}}


def _keywords(folder: Path, root, rate: int) -> list[dict]:
    """Dev TTS voices (in-domain): balanced over the 20 keywords, unknown and silence."""
    data = KeywordClips(root, "dev", rate=rate)
    classes = len(data.labels)
    entries = []
    for i in range(KEYWORD_CLIPS):
        rng = np.random.default_rng([SEED, 300, i])
        audio, label, info = data.synthesize(rng, int(KEYWORD_SECONDS * rate), label=i % classes, tail_s=KEYWORD_TAIL_S)
        entries.append(_keyword_entry(folder, i, audio, rate, label, info))
    return entries


def _real_words(root, rate: int) -> tuple[list[dict], list[dict]]:
    """(keyword recordings, other word recordings) of the real-speech corpora (``DEV_ONLY_CORPORA``), both
    splits."""
    words = recorded_entries(root if root is not None else default_root(), DEV_ONLY_CORPORA)
    # a set frozen without one of them would be another set under the same name, its figures not comparable
    missing = [c for c in DEV_ONLY_CORPORA if c not in {e["corpus"] for e in words}]
    if missing:
        raise ValueError(f"keywords-real is made of every recorded dev corpus ({', '.join(DEV_ONLY_CORPORA)}); "
                         f"{root} has no clips of {', '.join(missing)}: run `wavestream data prepare --only "
                         f"{','.join(missing)}` (what it skips, it says how to install)")
    from .corpora import KEYWORDS
    return [e for e in words if e.get("text") in KEYWORDS], [e for e in words if e.get("text") not in KEYWORDS]


def _keywords_real(folder: Path, root, rate: int) -> list[dict]:
    """Every recorded keyword of ``DEV_ONLY_CORPORA`` in each of ``REAL_CONDITIONS`` (dev noises and rooms),
    plus recorded other words and background-only clips."""
    keywords, others = _real_words(root, rate)
    base = dict(rate=rate, speed_prob=0.0, bandlimit_prob=0.0, context_prob=0.0, quiet_prob=0.0,
                level_db=(-35.0, -20.0), background={"noise": 0.8, "music": 0.2})
    entries = []
    for c, (condition, snr, reverb) in enumerate(REAL_CONDITIONS):
        data = KeywordClips(root, "dev", snr_db=(snr, snr) if snr is not None else (45.0, 45.0),
                            reverb_prob=1.0 if reverb else 0.0, **base)
        for k, entry in enumerate(keywords):
            rng = np.random.default_rng([SEED, 400 + c, k])
            word = (data.read(entry), {"speaker": entry["speaker"], "corpus": entry["corpus"], "text": entry["text"]})
            label = data.keywords.index(entry["text"])
            audio, label, info = data.synthesize(rng, int(KEYWORD_SECONDS * rate), label=label, word=word,
                                                 tail_s=KEYWORD_TAIL_S)
            entries.append(_keyword_entry(folder, len(entries), audio, rate, label, {**info, "condition": condition}))
    data = KeywordClips(root, "dev", snr_db=(5.0, 20.0), reverb_prob=0.0, **base)
    pick = np.random.default_rng([SEED, 450]).choice(len(others), min(REAL_UNKNOWN, len(others)), replace=False)
    for j, o in enumerate(sorted(pick)):
        entry = others[o]
        rng = np.random.default_rng([SEED, 451, j])
        word = (data.read(entry), {"speaker": entry["speaker"], "corpus": entry["corpus"], "text": entry["text"]})
        audio, label, info = data.synthesize(rng, int(KEYWORD_SECONDS * rate), label=len(data.keywords), word=word,
                                             tail_s=KEYWORD_TAIL_S)
        entries.append(_keyword_entry(folder, len(entries), audio, rate, label, {**info, "condition": "unknown"}))
    for j in range(REAL_SILENCE):
        rng = np.random.default_rng([SEED, 452, j])
        audio, label, info = data.synthesize(rng, int(KEYWORD_SECONDS * rate), label=len(data.keywords) + 1)
        entries.append(_keyword_entry(folder, len(entries), audio, rate, label, {**info, "condition": "silence"}))
    return entries


def _keywords_negative(folder: Path, root, rate: int) -> list[dict]:
    """Minutes of dev speech with no keyword in it (recorded talkers in several languages, TTS sentences
    without keyword words), some over noise, then minutes of noise and music alone."""
    root = root if root is not None else default_root()
    speech = negative_speech_pool(root)
    noise, music = load_entries(root, "noise", "dev"), load_entries(root, "music", "dev")
    data = KeywordClips(root, "dev", rate=rate)
    n = int(NEGATIVE_SECONDS * rate)
    entries = []
    for i in range(NEGATIVE_SPEECH + NEGATIVE_BACKGROUND):
        rng = np.random.default_rng([SEED, 500, i])
        if i < NEGATIVE_SPEECH:
            out, segments = negative_speech(rng, speech, data, n, rate)
            info = {"kind": "speech", "talkers": len({s["entry"]["speaker"] for s in segments})}
            out, snr = _negative_over_noise(rng, out, noise, data, n)
            if snr is not None:
                info["snr_db"] = round(snr, 1)
        else:
            pool = music if i % 3 == 0 and music else noise
            out = np.concatenate([data._crop(rng, pool[rng.integers(len(pool))], n // 4) for _ in range(4)])
            out = np.pad(out, (0, n - len(out)))
            info = {"kind": "music" if pool is music else "noise"}
        out = _negative_level(rng, out)
        entries.append(_keyword_entry(folder, i, out, rate, len(data.keywords) + 1, info))
    return entries


def negative_speech_pool(root) -> list[dict]:
    """The dev speech ``keywords-negative`` draws from: at least 0.5 s, no keyword word and no digit in its text."""
    from .corpora import KEYWORDS
    return [e for e in load_entries(root, "speech", "dev") if e["duration"] >= 0.5
            and not any(w in KEYWORDS for w in _words(e.get("text", "")))
            and not any(ch.isdigit() for ch in e.get("text", ""))]


def negative_speech(rng: np.random.Generator, speech: list[dict], data: KeywordClips, n: int,
                    rate: int) -> tuple[np.ndarray, list[dict]]:
    """The speech of one ``keywords-negative`` clip before noise and level: entries of ``speech`` one after
    another (each at the same RMS) with 0.2-1.5 s gaps, from a random start in the first second, the last
    one cut at ``n`` samples. Returns (audio, segments): each segment ``{"entry", "start", "end"}`` (samples)."""
    out, pos, segments = np.zeros(n, np.float32), int(rate * rng.uniform(0, 1)), []
    while pos < n:
        entry = speech[rng.integers(len(speech))]
        x = data.read(entry)[: n - pos]
        out[pos:pos + len(x)] = x / (np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9) * 0.05
        segments.append({"entry": entry, "start": pos, "end": pos + len(x)})
        pos += len(x) + int(rate * rng.uniform(0.2, 1.5))
    return out, segments


def _negative_over_noise(rng: np.random.Generator, out: np.ndarray, noise: list[dict], data: KeywordClips,
                         n: int) -> tuple[np.ndarray, float | None]:
    """Half the clips get a dev noise at 5-20 dB SNR: (audio, snr or None)."""
    if rng.random() < 0.5:
        snr = float(rng.uniform(5, 20))
        return out + _scale_to(out, data._crop(rng, noise[rng.integers(len(noise))], n), snr), snr
    return out, None


def _negative_level(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    out = out * (10 ** (rng.uniform(-35, -20) / 20) / (np.sqrt(np.mean(out.astype(np.float64) ** 2)) + 1e-9))
    return (out * min(1.0, 0.99 / (np.abs(out).max() + 1e-9))).astype(np.float32)


def _words(text: str) -> list[str]:
    return [w.strip(".,?!'\"").lower() for w in text.replace("-", " ").split()]


def _scale_to(reference: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    ps, pn = np.mean(reference.astype(np.float64) ** 2), np.mean(noise.astype(np.float64) ** 2)
    return (noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10) + 1e-20))).astype(np.float32)


BUILDERS: dict[str, Callable[..., list[dict]]] = {
    "enhance": _enhance, "separate": _separate, "codec": _codec,
    "enhance-ood": functools.partial(_enhance, split="ood"), "separate-ood": functools.partial(_separate, split="ood"),
    "codec-ood": functools.partial(_codec, split="ood"), "keywords": _keywords,
    "keywords-real": _keywords_real, "keywords-negative": _keywords_negative}


def write_devset(task: str, root: str | Path | None = None, rate: int = 16000, force: bool = False,
                 min_bak: float | None = CLEAN_BAK) -> Path:
    """Write (or, when present and intact, keep) the frozen dev set of ``task``; returns its folder.

    ``min_bak``: the clean-reference rule for the speech sets (None or 0: every recorded clip).
    """
    if task not in BUILDERS:
        raise ValueError(f"unknown dev-set task {task!r}; choose from {', '.join(TASKS)}")
    folder = devset_dir(root, task)
    if (folder / "checksum.txt").exists() and not force:
        load_devset(task, root)  # verifies
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    build = BUILDERS[task]
    entries = build(folder, root, rate, min_bak=min_bak) if task in SPEECH_TASKS else build(folder, root, rate)
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    rule = f"min_bak {min_bak}\n" if task in SPEECH_TASKS else ""
    (folder / "checksum.txt").write_text(f"{_sha256(manifest)}  manifest.jsonl\nrate {rate}\nversion {VERSION}\n{rule}")
    return folder


def reference_scores(task: str, root: str | Path | None = None) -> dict[str, float]:
    """Mean DNSMOS (SIG, BAK, OVRL) of a speech dev set's clean references (the sources, for separation)."""
    from .quality import dnsmos_p835
    folder, entries = load_devset(task, root, verify=False)
    keys = ("s1", "s2") if task.startswith("separate") else ("clean",)
    rows = [dnsmos_p835(sf.read(str(folder / e[k]), dtype="float32")[0]) for e in entries for k in keys]
    return {m: round(float(np.mean([r[m] for r in rows])), 2) for m in ("sig", "bak", "ovrl")}


def load_devset(task: str, root: str | Path | None = None, verify: bool = True) -> tuple[Path, list[dict]]:
    """(folder, entries) of a written dev set; with ``verify`` every file's sha256 is checked."""
    folder = devset_dir(root, task)
    checksum = folder / "checksum.txt"
    if not checksum.exists():
        raise ValueError(f"no {task} dev set in {folder}: run `wavestream data devset --task {task}`")
    expected = checksum.read_text().split()[0]
    manifest = folder / "manifest.jsonl"
    if _sha256(manifest) != expected:
        raise ValueError(f"{manifest} does not match checksum.txt: the dev set was modified; rebuild with --force")
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    if verify:
        for entry in entries:
            for key, sha in entry["sha256"].items():
                if _sha256(folder / entry[key]) != sha:
                    raise ValueError(f"{folder / entry[key]} does not match its sha256 in the manifest")
    return folder, entries
