"""`wavestream bench NAME [ARGS...]`: run one of the speed benchmarks under ``benchmarks/``.

The benchmarks are scripts in the source checkout (they print figures; they never assert timings),
so this command only finds and runs them with the same interpreter.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import wavestream

BENCH_DIR = Path(wavestream.__file__).resolve().parents[1] / "benchmarks"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py")) if BENCH_DIR.is_dir() else []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help=f"benchmark to run: {', '.join(available()) or 'none found'}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    names = available()
    if not names:
        print(f"no benchmarks found (expected a source checkout with {BENCH_DIR})", file=sys.stderr)
        return 2
    if args.name not in names:
        print(f"unknown benchmark {args.name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    script = BENCH_DIR / f"{args.name}.py"
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0
