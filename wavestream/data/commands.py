"""`wavestream data prepare | devset | scores`: corpora -> resampled clips + manifests, frozen dev sets with
checksums, the shipped table of speech-quality scores."""

from __future__ import annotations

import argparse

from .manifest import default_root
from .quality import CLEAN_BAK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("prepare", help="gather speech/noise/music corpora, resample, trim, write manifests")
    p.add_argument("--root", default=None, help="data folder (default: $WAVESTREAM_DATA or ./data)")
    p.add_argument("--rate", type=int, default=16000, help="target sample rate in Hz (default 16000)")
    p.add_argument("--only", default=None,
                   help="comma-separated kinds (speech, noise, music) or corpus names (default: all)")
    p.add_argument("--speech-dir", action="append", default=[], help="your own folder of speech (repeatable; "
                   "first sub-folder = speaker)")
    p.add_argument("--noise-dir", action="append", default=[], help="your own folder of noise (repeatable)")
    p.add_argument("--music-dir", action="append", default=[], help="your own folder of music (repeatable)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing corpus packages")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: min(2, cores))")
    p.add_argument("--devsets", action="store_true", help="also write the frozen dev sets afterwards")
    d = sub.add_parser("devset", help="write the frozen dev sets (from dev speakers/noises) with checksums")
    d.add_argument("--root", default=None, help="data folder (default: $WAVESTREAM_DATA or ./data)")
    d.add_argument("--task", default=None, help="comma-separated dev sets to write (default: all)")
    d.add_argument("--rate", type=int, default=16000)
    d.add_argument("--force", action="store_true", help="rewrite even when an intact dev set exists")
    d.add_argument("--score", action="store_true",
                   help="also print the mean DNSMOS of each speech dev set's clean references (~0.3 s a clip)")
    s = sub.add_parser("scores", help="write the shipped table of speech-quality scores from a data folder's "
                       "cache (what lets a fresh `prepare` skip scoring the packaged corpora)")
    s.add_argument("--root", default=None, help="data folder (default: $WAVESTREAM_DATA or ./data)")
    s.add_argument("--out", default=None, help="table to write (default: the one shipped in the package)")
    for q in (p, d):
        q.add_argument("--min-bak", type=float, default=CLEAN_BAK,
                       help=f"dev-set references: recorded clips need DNSMOS BAK >= this and wide-band "
                            f"(default {CLEAN_BAK}; 0 takes every clip)")


def run(args: argparse.Namespace) -> int:
    root = args.root or default_root()
    if args.data_command == "prepare":
        from .prepare import prepare
        only = [t.strip() for t in args.only.split(",") if t.strip()] if args.only else None
        summary = prepare(root, args.rate, only, args.speech_dir, args.noise_dir, args.music_dir,
                          install=not args.no_install, workers=args.workers)
        if summary["empty_corpora"]:
            return 1
        if not args.devsets:
            return 0
        args.task, args.force, args.score = None, False, False
    if args.data_command == "scores":
        from .quality import SHIPPED_SCORES, write_score_table
        out = args.out or SHIPPED_SCORES
        print(f"{write_score_table(root, out)} clips' scores -> {out}")
        return 0
    if args.data_command in ("devset", "prepare"):
        from .devset import SPEECH_TASKS, TASKS, load_devset, reference_scores, write_devset
        tasks = [t.strip() for t in args.task.split(",") if t.strip()] if args.task else TASKS
        status = 0
        for task in tasks:
            try:
                folder = write_devset(task, root, args.rate, args.force, args.min_bak)
            except ValueError as error:  # a corpus it needs is missing: say which, write the other sets
                print(f"{task:12s} not written: {error}")
                status = 1
                continue
            _, entries = load_devset(task, root, verify=False)
            hours = sum(e.get("duration", 0) for e in entries) / 60
            scores = ""
            if args.score and task in SPEECH_TASKS:
                scores = "  references DNSMOS " + " ".join(f"{k.upper()} {v:.2f}" for k, v in
                                                            reference_scores(task, root).items())
            print(f"{task:12s} {len(entries):4d} clips, {hours:5.1f} min -> {folder}{scores}")
        return status
    raise ValueError(f"unknown data command {args.data_command!r}")
