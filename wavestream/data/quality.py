"""How clean is each speech clip: DNSMOS P.835 (SIG, BAK, OVRL) and the effective bandwidth.

Models learn to reproduce their targets, so a target with room tone, music or effects teaches them
to keep noise. ``data prepare`` scores every recorded speech clip once and stores the scores in its
manifest entry (a re-run reuses them); the synthesis datasets then take targets only from clips
that pass ``is_clean_target``. The rest still serve as babble and interferers.

TTS output is noise-free by construction (its middling BAK reflects vocoder artifacts, not
background), so TTS clips are not scored and always count as clean; the datasets keep them as a
minority of targets (``tts_share``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RATE = 16000
#: DNSMOS BAK at or above which a recorded clip counts as a clean target (studio speech scores ~3.9)
CLEAN_BAK = 3.7
#: effective bandwidth below which a clip is narrow-band (e.g. 8 kHz telephone speech upsampled)
WIDEBAND_HZ = 6000
#: synthetic speech corpora: clean by construction, never scored
TTS_CORPORA = frozenset({"espeak", "flite"})
#: TTS voices by the speaker name's source (up to its first "-"): keyword corpora mix them with recordings
TTS_VOICES = frozenset({"espeak", "flite", "festival", "mbrola", "piper", "kokoro"})
#: DNSMOS judges 9.01 s windows; longer clips are scored on non-overlapping windows, averaged
WINDOW_S = 9.01
#: at most this many windows per clip (a 90 s clip is judged on its first 90 s)
MAX_WINDOWS = 10
#: a cleaned copy (cleaning.py) must also have kept the speech: STOI against the original, level on the
#: original's loud frames, and DNSMOS SIG (the enhancer's speech distortion)
CLEANED_MIN_STOI = 0.85
CLEANED_MIN_KEPT_DB = -3.0
CLEANED_MIN_SIG = 3.0


def effective_bandwidth(audio: np.ndarray, rate: int = RATE, floor: float = 1e-4) -> float:
    """The frequency (Hz) below which all but ``floor`` of the clip's energy lies.

    Speech keeps ~1 % of its energy above 4 kHz; an 8 kHz recording upsampled to 16 kHz keeps
    almost none, so its effective bandwidth comes out near 4 kHz instead of 7-8 kHz.
    """
    audio = np.asarray(audio, np.float64)
    n_fft = 512
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[:: n_fft // 2]
    power = (np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2).sum(axis=0)
    total = power.sum()
    if total <= 0:
        return 0.0
    above = 1.0 - np.cumsum(power) / total  # energy share above each bin
    edge = int(np.argmax(above <= floor))
    return float(edge * rate / n_fft)


def _dnsmos_session():
    """The DNSMOS P.835 ONNX model that speechmos ships, on one intra-op thread (one per worker process)."""
    import onnxruntime as ort
    import speechmos
    path = Path(speechmos.__file__).parent / "dnsmos_models" / "sig_bak_ovr.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_session = None


def dnsmos_p835(audio: np.ndarray, rate: int = RATE) -> dict[str, float]:
    """SIG, BAK, OVRL of a mono clip (a short clip is looped to one window, as DNSMOS itself does)."""
    global _session
    if rate != RATE:
        raise ValueError(f"DNSMOS needs {RATE} Hz audio, got {rate}")
    if _session is None:
        _session = _dnsmos_session()
    audio = np.asarray(audio, np.float32)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak == 0.0:
        raise ValueError("DNSMOS of a silent clip is undefined")
    audio = audio / max(peak, 1.0)
    window = int(WINDOW_S * rate)
    if len(audio) < window:
        audio = np.tile(audio, -(-window // len(audio)))
    starts = range(0, len(audio) - window + 1, window)
    raw = np.array([_session.run(None, {"input_1": audio[s:s + window][None]})[0][0]
                    for s in list(starts)[:MAX_WINDOWS]])
    # speechmos's calibration of the raw outputs to the MOS scale (non-personalized P.835)
    from speechmos.dnsmos import DNSMOS
    sig, bak, ovrl = DNSMOS.get_polyfit_val(None, *raw.T, False)
    return {"sig": round(float(np.mean(sig)), 3), "bak": round(float(np.mean(bak)), 3),
            "ovrl": round(float(np.mean(ovrl)), 3)}


def score_file(path: str | Path) -> dict:
    """What goes into a manifest entry: ``dnsmos`` {sig, bak, ovrl} and ``bandwidth_hz``."""
    import soundfile as sf
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if not np.abs(audio).max(initial=0.0):  # digital silence: scored as the worst, so it is never a target
        return {"dnsmos": {"sig": 0.0, "bak": 0.0, "ovrl": 0.0}, "bandwidth_hz": 0}
    return {"dnsmos": dnsmos_p835(audio, rate), "bandwidth_hz": round(effective_bandwidth(audio, rate))}


def needs_score(entry: dict) -> bool:
    """Recorded speech not yet scored, except a cleaned copy whose speech the cleaning already damaged: no
    score can make that one a target, and DNSMOS is the costly part of ``prepare``."""
    if entry["kind"] != "speech" or entry["corpus"] in TTS_CORPORA or "dnsmos" in entry:
        return False
    return "cleaning" not in entry or cleaning_kept_speech(entry["cleaning"])


#: the scores of the packaged corpora's clips as ``data prepare`` writes them on Debian bookworm, keyed by
#: the FLAC's content: scoring them all takes ~3 hours of CPU, so a fresh machine reads them from here
SHIPPED_SCORES = Path(__file__).parent / "quality_scores.jsonl.gz"


def _read_scores(path: Path) -> dict[str, dict]:
    """sha1 -> {dnsmos, bandwidth_hz} from a JSONL score file (gzip if it ends in .gz)."""
    if not path.exists():
        return {}
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    scores = {}
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            scores[row.pop("sha1")] = row
    return scores


def cache_path(root: str | Path) -> Path:
    return Path(root) / "manifests" / "quality_cache.jsonl"


def write_score_table(root: str | Path, path: str | Path = SHIPPED_SCORES) -> int:
    """Write ``root``'s score cache, with the table already shipped, as a sorted gzip JSONL table (what
    ``SHIPPED_SCORES`` holds); returns its rows. Sorted and without a timestamp, so it diffs by content."""
    scores = {**_read_scores(SHIPPED_SCORES), **_read_scores(cache_path(root))}
    lines = "".join(json.dumps({"sha1": key, **scores[key]}) + "\n" for key in sorted(scores))
    Path(path).write_bytes(gzip.compress(lines.encode(), mtime=0))
    return len(scores)


def score_entries(root: str | Path, entries: list[dict], workers: int | None = None,
                  log: Callable[[str], None] = print, shipped: Path | None = SHIPPED_SCORES) -> int:
    """Score (in place) every entry that ``needs_score``; returns how many were newly scored.

    A clip whose content is in the ``shipped`` table or in ``<root>/manifests/quality_cache.jsonl`` takes
    its scores from there; new scores are appended to the cache as they come, so an interrupted run
    resumes and a re-run of ``prepare`` costs nothing.
    """
    root = Path(root)
    todo = [e for e in entries if needs_score(e)]
    if not todo:
        return 0
    cache_file_path = cache_path(root)
    cache = {**(_read_scores(shipped) if shipped else {}), **_read_scores(cache_file_path)}
    keys = {e["path"]: hashlib.sha1((root / e["path"]).read_bytes()).hexdigest() for e in todo}
    for e in todo:
        if keys[e["path"]] in cache:
            e.update(cache[keys[e["path"]]])
    todo = [e for e in todo if needs_score(e)]
    if not todo:
        return 0
    log(f"scoring {len(todo)} speech clips (DNSMOS P.835 + bandwidth; cached in {cache_file_path}) ...")
    workers = workers or min(2, os.cpu_count() or 1)
    from tqdm import tqdm
    cache_file_path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool, cache_file_path.open("a") as cache_file:
        scores = pool.map(score_file, [root / e["path"] for e in todo], chunksize=8)
        for entry, score in tqdm(zip(todo, scores, strict=True), total=len(todo), unit="clip", mininterval=5.0):
            entry.update(score)
            cache_file.write(json.dumps({"sha1": keys[entry["path"]], **score}) + "\n")
            cache_file.flush()
    return len(todo)


def is_tts(entry: dict) -> bool:
    return entry["corpus"] in TTS_CORPORA or entry.get("speaker", "").split("-", 1)[0] in TTS_VOICES


def is_clean_target(entry: dict, min_bak: float = CLEAN_BAK, min_bandwidth: float = WIDEBAND_HZ) -> bool:
    """May this speech clip be a training/dev target? TTS: yes. Recorded: only clean and wide-band.

    ``min_bak`` None or 0 switches the rule off (every clip passes). Otherwise a recorded clip
    without scores (prepared without the eval extra) does not pass, and a cleaned copy (``cleaning``
    in its entry) passes only if the cleaning also kept the speech (``kept_speech``).
    """
    if is_tts(entry) or not min_bak:
        return True
    scores = entry.get("dnsmos")
    if scores is None:
        return False
    if "cleaning" in entry and not kept_speech(entry):
        return False
    return scores["bak"] >= min_bak and entry.get("bandwidth_hz", 0) >= min_bandwidth


def cleaning_kept_speech(cleaning: dict) -> bool:
    """The checks made when the copy is cleaned: STOI against the original and level where the speech is."""
    return cleaning.get("stoi", 0.0) >= CLEANED_MIN_STOI and cleaning.get("kept_db", -99.0) >= CLEANED_MIN_KEPT_DB


def kept_speech(entry: dict) -> bool:
    """A cleaned clip's speech survived: the cleaning step's checks, and DNSMOS SIG."""
    scores = entry.get("dnsmos") or {}
    return cleaning_kept_speech(entry["cleaning"]) and scores.get("sig", 0.0) >= CLEANED_MIN_SIG


def clean_summary(entries: list[dict], min_bak: float = CLEAN_BAK) -> list[dict]:
    """Per corpus: clips, hours, speakers in all and passing ``is_clean_target``, mean scores."""
    rows = []
    for corpus in sorted({e["corpus"] for e in entries if e["kind"] == "speech"}):
        mine = [e for e in entries if e["kind"] == "speech" and e["corpus"] == corpus]
        clean = [e for e in mine if is_clean_target(e, min_bak)]
        scored = [e["dnsmos"] for e in mine if "dnsmos" in e]
        row = {"corpus": corpus, "clips": len(mine), "hours": round(sum(e["duration"] for e in mine) / 3600, 3),
               "speakers": len({e["speaker"] for e in mine}), "clean_clips": len(clean),
               "clean_hours": round(sum(e["duration"] for e in clean) / 3600, 3),
               "clean_speakers": len({e["speaker"] for e in clean}), "tts": corpus in TTS_CORPORA}
        if scored:
            row.update({k: round(float(np.mean([s[k] for s in scored])), 2) for k in ("sig", "bak", "ovrl")})
        rows.append(row)
    return rows


def clean_total(entries: list[dict], min_bak: float = CLEAN_BAK) -> dict:
    """Recorded speech the training corpora offer as targets (not TTS, not the out-of-domain split): clean hours
    and distinct clean talkers over all corpora (a talker's cleaned copies count as that talker)."""
    recorded = [e for e in entries if e["kind"] == "speech" and not is_tts(e) and e.get("split") != "ood"]
    clean = [e for e in recorded if is_clean_target(e, min_bak)]
    return {"hours": round(sum(e["duration"] for e in recorded) / 3600, 2),
            "talkers": len({e["speaker"] for e in recorded}),
            "clean_hours": round(sum(e["duration"] for e in clean) / 3600, 2),
            "clean_talkers": len({e["speaker"] for e in clean})}
