"""Manifests (JSONL, one clip per line) and hash-based train/dev splits by speaker or source.

Every entry has ``path`` (relative to the data root), ``duration`` (s), ``speaker`` (speech: who is
talking; noise/music: the source file), ``corpus``, ``licence``, ``split`` and ``kind``; optional
``text``, ``language`` and ``native_rate`` (the rate of the original recording: 8000 means the
clip is narrow-band even at 16 kHz); recorded speech also ``dnsmos`` {sig, bak, ovrl} and
``bandwidth_hz`` (see quality.py). Kind ``rir`` holds room impulse responses (speaker = room),
``keywords`` single TTS words (``text``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

KINDS = ("speech", "noise", "music", "rir", "keywords")
#: train / dev (held-out talkers and sources of the training corpora) / ood (whole corpora never trained on)
SPLITS = ("train", "dev", "ood")
#: share of speakers (or noise/music sources) held out for the dev split
DEV_FRACTION = 0.15
#: corpora kept out of training altogether: the out-of-domain dev sets are built from them alone, so a
#: model is chosen on talkers, microphones and noises it never met (a dev set drawn from the training
#: corpora flatters). tuxpaint-speech: words read by volunteers in 12 languages on their own microphones
#: (read speech, as users send); lincity: city, industry and machine ambience. Not Hedgewars' voice packs
#: (the set until 2026-11-29): game barks (screams, laughs, effects) that strong denoisers treat as noise
#: (benchmarks/ood_identity.py: DeepFilterNet3 keeps 8.8 dB SI-SDR of clean Hedgewars speech, 17 of Tux Paint's).
OUT_OF_DOMAIN = frozenset({"tuxpaint-speech", "lincity"})


def default_root() -> Path:
    """``$WAVESTREAM_DATA`` or ``data/`` in the current directory (the repository root in practice)."""
    return Path(os.environ.get("WAVESTREAM_DATA", "data"))


def split_of(kind: str, speaker: str, corpus: str | None = None, dev_fraction: float = DEV_FRACTION) -> str:
    """Deterministic split of a speaker/source: a hash, so it never changes when corpora are added.

    Keywords share the speech hash: a TTS voice is in the same split in both. Every clip of an
    ``OUT_OF_DOMAIN`` corpus is in the ``ood`` split.
    """
    if corpus in OUT_OF_DOMAIN:
        return "ood"
    kind = "speech" if kind == "keywords" else kind
    digest = hashlib.sha1(f"{kind}:{speaker}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction else "train"


def manifest_path(root: str | Path, kind: str, split: str) -> Path:
    return Path(root) / "manifests" / f"{kind}_{split}.jsonl"


def write_manifest(path: str | Path, entries: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for entry in entries:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"manifest {path} does not exist: run `wavestream data prepare` first "
                         f"(or pass --root / set WAVESTREAM_DATA)")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def load_entries(root: str | Path, kind: str, split: str, corpora: list[str] | None = None) -> list[dict]:
    """Entries of one kind and split, optionally only some corpora; ``path`` made absolute."""
    if kind not in KINDS or split not in SPLITS:
        raise ValueError(f"kind must be one of {KINDS} and split one of {SPLITS}, got {kind!r}/{split!r}")
    root = Path(root)
    path = manifest_path(root, kind, split)
    if not path.exists():
        hint = {"rir": " --only rooms (needs pyroomacoustics)", "keywords": " --only keywords"}.get(kind, "")
        raise ValueError(f"no {kind} manifest {path}: run `wavestream data prepare{hint}` first "
                         f"(or pass --root / set WAVESTREAM_DATA)")
    entries = read_manifest(path)
    if corpora is not None:
        entries = [e for e in entries if e["corpus"] in corpora]
    for e in entries:
        e["path"] = str(root / e["path"])
    return entries
