"""`wavestream eval enhance | codec | separate`: our models and peers on a frozen dev set -> JSON, Markdown, plots.

    wavestream eval enhance --model enhance                  # + the default peers, report in docs/results/enhance
    wavestream eval enhance --model noisy --peers rnnoise,dtln,deepfilternet
    wavestream eval enhance --devset enhance-ood --model enhance   # out-of-domain: docs/results/enhance-ood
    wavestream eval codec --peers opus-6k,opus-12k,codec2-3200,codec2-1600
    wavestream eval separate --model separate         # + mixture, oracle IRM and IBM: docs/results/separate
    wavestream eval kws --model kws,kws-spiking            # keyword spotting (see wavestream.evaluate.kws)
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .harness import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_task", required=True)
    for task in TASKS:
        from .peers import DEFAULT_PEERS
        p = sub.add_parser(task, help=f"evaluate {task} systems on the frozen {task} dev set")
        p.add_argument("--model", default="", help="comma-separated registry models (or peer names) to evaluate")
        p.add_argument("--peers", default=",".join(DEFAULT_PEERS[task]),
                       help=f"comma-separated peers (default {','.join(DEFAULT_PEERS[task])}; '' for none)")
        p.add_argument("--devset", default=task, choices=[task, f"{task}-ood"],
                       help=f"in-domain dev set ({task}, the default) or out-of-domain ({task}-ood: corpora and "
                            "noises no model trains on)")
        p.add_argument("--out", default=None, help="report folder (default docs/results/DEVSET)")
        p.add_argument("--root", default=None, help="data folder with devsets/ (default $WAVESTREAM_DATA or ./data)")
        p.add_argument("--metrics", default=None,
                       help=f"comma-separated metrics (default {','.join(TASKS[task]['metrics'])})")
        p.add_argument("--limit", type=int, default=None, help="only this many clips, spread over the dev set")
        p.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                       help="evaluate a model with these safetensors weights instead of the shipped ones")
        p.add_argument("--fresh", action="store_true", help="re-run peers instead of reusing earlier results")
        p.add_argument("--no-plots", action="store_true", help="skip the spectrogram figure")
    k = sub.add_parser("kws", help="evaluate keyword spotters on the frozen keyword dev sets (synthetic, real, "
                                   "negative): top-1, false alarms/h, delay, cost, spikes")
    k.add_argument("--model", default="kws,kws-spiking",
                   help="comma-separated registry models (default kws,kws-spiking)")
    k.add_argument("--out", default="docs/results/kws", help="report folder (default docs/results/kws)")
    k.add_argument("--root", default=None, help="data folder with devsets/ (default $WAVESTREAM_DATA or ./data)")
    k.add_argument("--limit", type=int, default=None, help="about this many clips per dev set (negative: a tenth)")
    k.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                   help="evaluate a model with these safetensors weights instead of the shipped ones")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run_kws(args: argparse.Namespace) -> int:
    from . import kws
    weights = dict(w.split("=", 1) for w in args.weights)
    results = kws.evaluate(_names(args.model), args.root, weights, args.limit)
    command = "wavestream eval " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("kws"):]) \
        if "kws" in sys.argv else "wavestream eval kws"
    for path in kws.write_report(results, args.out, command):
        print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.eval_task == "kws":
        return run_kws(args)
    import numpy as np
    import soundfile as sf

    from wavestream.data.devset import load_devset

    from .harness import build_system, evaluate, load_previous
    from .peers import OracleMask
    from .report import example_signals, write_report

    task, spec = args.eval_task, TASKS[args.eval_task]
    systems = list(dict.fromkeys(_names(args.model) + _names(args.peers)))
    if not systems:
        raise ValueError("nothing to evaluate: give --model and/or --peers")
    weights = dict(w.split("=", 1) for w in args.weights)
    out = args.out or f"docs/results/{args.devset}"
    previous = None if args.fresh else load_previous(out)
    results = evaluate(task, systems, args.root, _names(args.metrics) if args.metrics else None, args.limit,
                       previous, weights, devset=args.devset)
    example = None
    if not args.no_plots:
        folder, entries = load_devset(args.devset, args.root, verify=False)
        # a 0 dB clip with a noise background (babble looks like speech), a half-overlapped mixture
        wanted = {"enhance": {"snr_db": 0, "background": "noise"}, "separate": {"overlap": 0.5}}.get(task, {})
        entry = next((e for e in entries if all(e.get(k) == v for k, v in wanted.items())), entries[0])
        references = np.stack([sf.read(str(folder / entry[r]), dtype="float32")[0] for r in spec["references"]])
        built = {}
        for name in results["systems"]:  # only systems that ran, so each can be built here
            system = build_system(name, weights)
            built[name] = system.with_sources(references) if isinstance(system, OracleMask) else system
        example = example_signals(built, folder, entry, spec)
    command = "wavestream eval " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index(task):]) \
        if task in sys.argv else f"wavestream eval {task}"
    for path in write_report(results, out, command, example):
        print(f"wrote {path}")
    return 0

