"""How much clean speech a recorded corpus yields as recorded and after cleaning, estimated from a random sample.

``wavestream data prepare`` gives the exact figures, but it cleans and scores every clip (about an
hour of one core for the game dialogue). This draws ``--clips`` clips of each named corpus at random
(seeded), prepares each as ``prepare`` does (the same decoding, trimming and scoring code, into a
temporary folder), and for each clip that fails the clean-target rule also its cleaned copy
(``<corpus>-dfn``, the same code path). It prints, per corpus, the share of speech time that
passes as recorded and after cleaning, scaled to the corpus's listed clips, and the talkers seen
passing. Any recorded speech corpus can be measured, cleaned or not yet (``--clips 0``: every clip, exact).

Whether a cleaned copy is still speech: besides ``prepare``'s own checks (STOI against the original, the
level kept on its loud frames, DNSMOS SIG) it prints, over the copies, the median SI-SDR of the cleaned
copy against the original (low: the cleaner removed or changed much of the clip, as with game barks that
DeepFilterNet treats as noise) and the median energy change, for all copies and for those that pass, and
why the others fail. One thread; about 1 s a clip. Nothing is asserted.

    python benchmarks/cleaning_yield.py fillets klettres ktuberling asterisk hedgewars [--clips 80] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from cleaning_calibration import si_sdr  # this folder is on sys.path when the script runs


def _fails(entry: dict) -> list[str]:
    """Why a cleaned copy is not a target (empty: it is)."""
    from wavestream.data import quality
    scores, cleaning = entry["dnsmos"], entry["cleaning"]
    reasons = [name for name, bad in (
        ("BAK", scores["bak"] < quality.CLEAN_BAK), ("bandwidth", entry["bandwidth_hz"] < quality.WIDEBAND_HZ),
        ("STOI", cleaning["stoi"] < quality.CLEANED_MIN_STOI),
        ("kept_db", cleaning["kept_db"] < quality.CLEANED_MIN_KEPT_DB),
        ("SIG", scores["sig"] < quality.CLEANED_MIN_SIG)) if bad]
    return reasons


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpora", nargs="+", help="recorded speech corpora (not TTS)")
    parser.add_argument("--clips", type=int, default=80, help="clips drawn per corpus (0: all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jsonl", default=None, help="also write one row per clip here")
    args = parser.parse_args()

    from wavestream.data.audio import read_audio
    from wavestream.data.cleaning import SUFFIX
    from wavestream.data.cleaning import clean as run_cleaner
    from wavestream.data.corpora import CORPORA
    from wavestream.data.prepare import _process, _unique
    from wavestream.data.quality import TTS_CORPORA, is_clean_target, score_file

    out = open(args.jsonl, "w") if args.jsonl else None
    print(f"{'corpus':16s} {'clips':>5s} {'hours':>6s} {'drawn':>5s} {'clean':>6s} {'cleaned':>7s} "
          f"{'est. h':>6s} {'+ h':>5s} {'talkers (clean / +cleaned / drawn)':>36s}")
    for name in args.corpora:
        if name not in CORPORA or CORPORA[name].kind != "speech" or name in TTS_CORPORA:
            raise SystemExit(f"{name} is not a recorded speech corpus")
        if f"{name}-{SUFFIX['deepfilternet']}" not in CORPORA:
            print(f"({name} has no cleaned copy in prepare yet: measured as it would be)")
        clips = _unique(list(CORPORA[name].lister()))
        drawn = random.Random(args.seed).sample(clips, min(args.clips or len(clips), len(clips)))
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for clip in drawn:
                entry = _process(clip, Path(tmp), 16000)
                if entry is None:  # silent or too short: prepare skips it too
                    continue
                entry.update(score_file(Path(tmp) / entry["path"]))
                row = {"corpus": name, "speaker": entry["speaker"], "seconds": entry["duration"],
                       "dnsmos": entry["dnsmos"], "bandwidth_hz": entry["bandwidth_hz"],
                       "clean": is_clean_target(entry)}
                if not row["clean"]:
                    copy = replace(clip, corpus=f"{name}-dfn", cleaner="deepfilternet", source=name)
                    cleaned = _process(copy, Path(tmp), 16000)
                    if cleaned is not None:
                        cleaned.update(score_file(Path(tmp) / cleaned["path"]))
                        original = read_audio(clip.path, 16000)[0]  # untrimmed, as the cleaner saw it
                        output = run_cleaner(original, 16000)
                        energy = 10 * np.log10((np.sum(output.astype(np.float64) ** 2) + 1e-12)
                                               / (np.sum(original.astype(np.float64) ** 2) + 1e-12))
                        row.update({"cleaned_seconds": cleaned["duration"], "cleaned_dnsmos": cleaned["dnsmos"],
                                    "cleaned_bandwidth_hz": cleaned["bandwidth_hz"], **cleaned["cleaning"],
                                    "si_sdr_vs_original": round(si_sdr(original, output), 2),
                                    "energy_db": round(float(energy), 2), "fails": _fails(cleaned),
                                    "cleaned_clean": is_clean_target(cleaned)})
                rows.append(row)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
        seconds = sum(r["seconds"] for r in rows) or 1.0
        clean = sum(r["seconds"] for r in rows if r["clean"]) / seconds
        cleaned = sum(r.get("cleaned_seconds", 0.0) for r in rows if r.get("cleaned_clean")) / seconds
        hours = seconds / max(1, len(rows)) * len(clips) / 3600  # the corpus, from the drawn clips' mean length
        talkers = {r["speaker"] for r in rows}
        clean_talkers = {r["speaker"] for r in rows if r["clean"]}
        plus = {r["speaker"] for r in rows if r.get("cleaned_clean")} - clean_talkers
        print(f"{name:16s} {len(clips):5d} {hours:6.2f} {len(rows):5d} {clean:6.1%} {cleaned:7.1%} "
              f"{hours * clean:6.2f} {hours * cleaned:5.2f} {len(clean_talkers):>20d} / +{len(plus)} / {len(talkers)}")
        copies = [r for r in rows if "cleaned_seconds" in r]
        kept = [r for r in copies if r["cleaned_clean"]]
        reasons: dict[str, int] = {}
        for r in copies:
            for reason in r["fails"]:
                reasons[reason] = reasons.get(reason, 0) + 1
        sdr, energy = "si_sdr_vs_original", "energy_db"
        print(f"{'':16s} {len(copies)} copies: SI-SDR vs original median "
              f"{_median([r[sdr] for r in copies]):.1f} dB (kept {_median([r[sdr] for r in kept]):.1f}), "
              f"energy change median {_median([r[energy] for r in copies]):.1f} dB "
              f"(kept {_median([r[energy] for r in kept]):.1f}); "
              f"{len(kept)} kept; failing on " + (", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "-"))


if __name__ == "__main__":
    main()
