"""Run systems (our registry models and peers) over a frozen dev set and score every clip.

One code path for all systems: read the dev-set WAV, ``peer.reset()`` (untimed), time
``peer.process(audio, sr)`` on one thread, score the output against the clean reference. Separation
is scored per talker on the pairing of outputs and talkers with the best SI-SDR (PIT), with SI-SDRi
and SDRi over the unprocessed mixture. Our models also get a batched real-time factor: dev clips
stepped as streams of one batch in 16 ms chunks, as the server runs many streams. Results
of systems evaluated earlier on the same dev set (same checksum, same metrics) are reused from the
previous ``results.json`` unless ``fresh`` is set, so evaluating a new model does not re-run peers.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from wavestream.data.audio import resample
from wavestream.data.devset import load_devset

from .metrics import available_metrics, pit_order, score, si_sdr
from .peers import PEERS, OracleMask, Peer, RegistryModel, load_peer, missing_for

#: per task: the dev set's input file key, reference keys, and the field that groups clips in tables
TASKS = {
    "enhance": {"input": "noisy", "references": ["clean"], "group": "snr_db",
                "metrics": ["si_sdr", "pesq", "stoi", "dnsmos", "visqol"]},
    "codec": {"input": "clean", "references": ["clean"], "group": None,
              "metrics": ["si_sdr", "pesq", "stoi", "dnsmos", "visqol"]},
    "separate": {"input": "mixture", "references": ["s1", "s2"], "group": "overlap",
                 "metrics": ["si_sdr", "sdr", "pesq", "stoi"]},
}
#: the batched real-time factor: up to BATCH dev clips as streams of one batch, CHUNK_S seconds per step
BATCH, CHUNK_S = 16, 0.016


def build_system(name: str, weights: dict[str, str] | None = None) -> Peer:
    """A peer by name, else a model from the registry; ``MODEL@KBPS`` is a codec at that bitrate
    (``codec@6``), so one report compares every bitrate of a model. ``weights`` maps model names to
    weights files (``codec@6`` runs ``codec``'s)."""
    if name in PEERS:
        return load_peer(name)
    model, at, bitrate = name.partition("@")
    weights = (weights or {}).get(model)
    if not at:
        return RegistryModel(name, weights)
    try:
        kbps = float(bitrate)
    except ValueError:
        raise ValueError(f"{name!r}: the bitrate after '@' must be a number of kbps") from None
    return RegistryModel(model, weights, name_as=name, bitrate=kbps)


def _read(folder: Path, rel: str) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(folder / rel), dtype="float32")
    return audio, rate


def _score_separation(references: list[np.ndarray], estimate: np.ndarray, metrics: list[str],
                      mixture_scores: list[dict]) -> dict:
    """Permutation-invariant scores of the estimated sources, each talker scored against the output the
    best-SI-SDR pairing gives it, then averaged over talkers; SI-SDRi and SDRi against ``mixture_scores``
    (each talker's scores of the unprocessed mixture)."""
    estimates = np.atleast_2d(estimate)
    if estimates.shape[0] == 1:  # a single output (the unprocessed mixture) stands for every source
        estimates = np.repeat(estimates, len(references), axis=0)
    if estimates.shape[0] != len(references):
        raise ValueError(f"expected {len(references)} sources, got {estimates.shape[0]}")
    best = pit_order(np.stack(references), estimates)
    per_source = [score(r, estimates[i], metrics) for r, i in zip(references, best, strict=True)]
    for scores, base in zip(per_source, mixture_scores, strict=True):
        scores.update({f"{k}i": scores[k] - base[k] for k in base})
    return {k: float(np.mean([s[k] for s in per_source])) for k in per_source[0]}


def _batched_rtf(system: RegistryModel, inputs: list[np.ndarray], rate: int) -> dict:
    """Compute time per second of audio (all streams together) when the clips run as the streams of one
    batch, stepped in CHUNK_S chunks from a zero state on one thread: one ``step`` serves every stream,
    as the engine's scheduler runs them. The clips are cut to the shortest so the streams keep step."""
    model = system.model
    streams = [resample(a, rate, model.sample_rate) for a in inputs[:BATCH]]
    chunk = max(round(CHUNK_S * model.sample_rate) // model.hop, 1) * model.hop
    n = min(len(a) for a in streams) // chunk * chunk
    x = torch.from_numpy(np.stack([a[:n] for a in streams]).astype(np.float32))[:, None]
    with torch.inference_mode():
        state = model.init_state(len(streams))
        started = time.perf_counter()
        for i in range(0, n, chunk):
            _, state = model.step(x[..., i:i + chunk], state)
        seconds = time.perf_counter() - started
    return {"rtf_batched": round(seconds / (len(streams) * n / model.sample_rate), 4), "batch": len(streams),
            "batch_chunk_ms": round(1000 * chunk / model.sample_rate, 1)}


def evaluate(task: str, systems: list[str], root: str | Path | None = None, metrics: list[str] | None = None,
             limit: int | None = None, previous: dict | None = None, weights: dict[str, str] | None = None,
             log: Callable[[str], None] = print, devset: str | None = None) -> dict:
    """Evaluate ``systems`` on a ``task`` dev set (``devset``: the in-domain one named like the task, or
    ``TASK-ood``); returns the results dict that reports are made from."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[task]
    devset = devset or task
    folder, entries = load_devset(devset, root)
    stamp = dict(line.split(" ", 1) for line in (folder / "checksum.txt").read_text().splitlines()[1:] if " " in line)
    checksum = (folder / "checksum.txt").read_text().split()[0]
    if limit:
        entries = _spread(entries, limit)
    availability = available_metrics()
    requested = metrics or spec["metrics"]
    unknown = [m for m in requested if m not in availability]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(availability)}")
    metrics = [m for m in requested if availability[m] is None]
    notes = [f"{m}: {availability[m]}" for m in requested if availability[m] is not None]
    reusable = {}
    mixture_scores: dict[str, list[dict]] = {}  # separation: clip id -> each talker's scores of the mixture
    if previous and previous.get("devset", {}).get("checksum") == checksum \
            and previous.get("metrics") == metrics and previous.get("clip_ids") == [e["id"] for e in entries]:
        reusable = previous.get("systems", {})
    torch.set_num_threads(1)  # real-time factors are single-thread figures
    results = {"task": task, "devset": {"name": devset, "path": str(folder), "checksum": checksum,
                                        "clips": len(entries), "version": int(stamp.get("version", 1)),
                                        **({"min_bak": float(stamp["min_bak"])} if "min_bak" in stamp else {})},
               "metrics": metrics, "clip_ids": [e["id"] for e in entries], "notes": notes, "systems": {},
               "machine": _machine(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    for name in systems:
        if name in PEERS and name in reusable:  # models always re-run: their weights may have changed
            log(f"{name}: reusing results from the previous run on this dev set")
            results["systems"][name] = reusable[name]
            continue
        if name in PEERS and (missing := missing_for(name)):
            results["notes"].append(f"peer {name} skipped: {missing}")
            log(f"{name}: skipped ({missing})")
            continue
        system = build_system(name, weights)
        results["systems"][name] = _run_system(system, folder, entries, spec, metrics, log, mixture_scores)
    if task == "enhance" and "dnsmos" in metrics:
        results["clean_dnsmos"] = _reference_dnsmos(folder, entries, previous if reusable else None, log)
    return results


def _run_system(system: Peer, folder: Path, entries: list[dict], spec: dict, metrics: list[str],
                log: Callable[[str], None], mixture_scores: dict[str, list[dict]]) -> dict:
    clips, seconds, audio_seconds, inputs = [], 0.0, 0.0, []
    started = time.perf_counter()
    for k, entry in enumerate(entries):
        audio, rate = _read(folder, entry[spec["input"]])
        references = [_read(folder, entry[r])[0] for r in spec["references"]]
        if len(inputs) < BATCH:
            inputs.append(audio)
        if isinstance(system, OracleMask):
            system = system.with_sources(np.stack(references))
        system.reset()
        t0 = time.perf_counter()
        estimate = system.process(audio, rate)
        seconds += time.perf_counter() - t0
        audio_seconds += len(audio) / rate
        if len(references) > 1:
            if entry["id"] not in mixture_scores:
                improved = [m for m in metrics if m in ("si_sdr", "sdr")]
                mixture_scores[entry["id"]] = [score(r, audio, improved) for r in references]
            scores = _score_separation(references, estimate, metrics, mixture_scores[entry["id"]])
        else:
            scores = score(references[0], estimate, metrics)
            if "si_sdr" in metrics and spec["input"] != spec["references"][0]:  # codecs start from the reference
                scores["si_sdri"] = scores["si_sdr"] - si_sdr(references[0], audio)
        clips.append({"id": entry["id"], **({spec["group"]: entry[spec["group"]]} if spec["group"] else {}),
                      **{k: round(v, 4) for k, v in scores.items()}})
        if (k + 1) % 20 == 0:
            log(f"  {system.name}: {k + 1}/{len(entries)} clips")
    info = system.info()
    info.update(rtf=round(seconds / audio_seconds, 4), trained=getattr(system, "trained", None),
                mean=_means(clips), clips=clips)
    if isinstance(system, RegistryModel):
        info.update(_batched_rtf(system, inputs, rate))
    if spec["group"]:
        info["by_group"] = {str(g): _means([c for c in clips if c[spec["group"]] == g])
                            for g in sorted({c[spec["group"]] for c in clips})}
    log(f"{system.name}: RTF {info['rtf']:.3f}"
        + (f" (batched x{info['batch']}: {info['rtf_batched']:.4f})" if "rtf_batched" in info else "")
        + f" in {time.perf_counter() - started:.0f} s; "
        + ", ".join(f"{k} {v:.3f}" for k, v in info["mean"].items()))
    return info


def _reference_dnsmos(folder: Path, entries: list[dict], previous: dict | None, log) -> dict:
    """DNSMOS of the clean references: the ceiling DNSMOS gives this dev set."""
    if previous and "clean_dnsmos" in previous:
        return previous["clean_dnsmos"]
    log("clean reference: DNSMOS")
    rows = [score(None, _read(folder, e["clean"])[0], ["dnsmos"]) for e in entries]
    return _means(rows)


def _means(rows: list[dict]) -> dict[str, float]:
    keys = [k for k in rows[0] if k not in ("id", "snr_db", "overlap")] if rows else []
    return {k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in keys}


def _spread(entries: list[dict], limit: int) -> list[dict]:
    """``limit`` clips spread evenly over the dev set (so every SNR/overlap group keeps some)."""
    if limit >= len(entries):
        return entries
    index = np.linspace(0, len(entries) - 1, limit).round().astype(int)
    return [entries[i] for i in sorted(set(index))]


def _machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "load": machine_load()}


def machine_load() -> str:
    """The load averages against the core count, printed beside speed figures: figures taken while other
    work (a training run) holds the cores are slower than an idle machine's, and should say so."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def load_previous(out: str | Path) -> dict | None:
    path = Path(out) / "results.json"
    return json.loads(path.read_text()) if path.exists() else None

