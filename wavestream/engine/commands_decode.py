"""`wavestream decode IN.wsc OUT.wav`: token file -> audio at the encoded file's rate and length, offline.

The header names the model; ``--weights`` decodes with other weights of it (e.g. converted official ones).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .codec_files import decode_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="token file (.wsc) written by `wavestream encode` or /v1/encode")
    parser.add_argument("output", type=Path, help="audio file to write (.wav, .flac, .ogg)")
    parser.add_argument("--weights", type=Path, help="safetensors weights instead of the shipped ones")
    parser.add_argument("--subtype", help="output sample format, e.g. PCM_16, FLOAT (default: the format's)")


def run(args: argparse.Namespace) -> int:
    try:
        summary = decode_file(args.input, args.output, args.weights, args.subtype)
    except (ValueError, OSError) as exc:
        print(f"wavestream decode: error: {exc}", file=sys.stderr)
        return 2
    h = summary["header"]
    if summary["trained"] is False:
        print(f"wavestream decode: warning: model {h.model!r} has no trained weights (random init)", file=sys.stderr)
    print(f"{summary['input']} -> {summary['output']}: {h.seconds:.2f} s, {h.channels} ch at {h.sample_rate} Hz "
          f"from {h.frames} frames of {h.model!r}, in {summary['wall_seconds']:.2f} s")
    return 0
