"""How much clean speech a recorded corpus yields as recorded and after cleaning, estimated from a random sample.

``wavestream data prepare`` gives the exact figures, but it cleans and scores every clip (about an
hour of one core for the game dialogue). This draws ``--clips`` clips of each named corpus at random
(seeded), prepares each as ``prepare`` does (the same decoding, trimming and scoring code, into a
temporary folder), and for each clip that fails the clean-target rule also its cleaned copy
(``<corpus>-dfn``, the same code path). It prints, per corpus, the share of speech time that
passes as recorded and after cleaning, scaled to the corpus's listed clips, and the talkers seen
passing. One thread; about 1 s a clip. Nothing is asserted.

    python benchmarks/cleaning_yield.py fillets klettres ktuberling asterisk tuxpaint-speech [--clips 80] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpora", nargs="+", help="recorded speech corpora that have a cleaned copy")
    parser.add_argument("--clips", type=int, default=80, help="clips drawn per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jsonl", default=None, help="also write one row per clip here")
    args = parser.parse_args()

    from wavestream.data.cleaning import SUFFIX
    from wavestream.data.corpora import CORPORA
    from wavestream.data.prepare import _process, _unique
    from wavestream.data.quality import is_clean_target, score_file

    out = open(args.jsonl, "w") if args.jsonl else None
    print(f"{'corpus':16s} {'clips':>5s} {'hours':>6s} {'drawn':>5s} {'clean':>6s} {'cleaned':>7s} "
          f"{'est. h':>6s} {'+ h':>5s} {'talkers (clean / +cleaned / drawn)':>36s}")
    for name in args.corpora:
        if f"{name}-{SUFFIX['deepfilternet']}" not in CORPORA:
            raise SystemExit(f"{name} has no cleaned copy (wavestream.data.corpora.CLEANED_SOURCES)")
        clips = _unique(list(CORPORA[name].lister()))
        drawn = random.Random(args.seed).sample(clips, min(args.clips, len(clips)))
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
                        row.update({"cleaned_seconds": cleaned["duration"], "cleaned_dnsmos": cleaned["dnsmos"],
                                    "cleaned_bandwidth_hz": cleaned["bandwidth_hz"], **cleaned["cleaning"],
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


if __name__ == "__main__":
    main()
