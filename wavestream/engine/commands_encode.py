"""`wavestream encode IN OUT.wsc [--model codec] [--bitrate 3]`: audio file -> token file, offline.

Prints the bitrate counted from the file's bytes (codes only, and with the header) beside the nominal one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .codec_files import encode_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="audio file (wav, flac, ogg, ...; any rate and channels)")
    parser.add_argument("output", type=Path, help="token file to write (.wsc)")
    parser.add_argument("--model", default="codec", help="codec model (default codec; e.g. encodec_24khz)")
    parser.add_argument("--bitrate", type=float, default=None, help="kbps, one the model offers (default: its own)")
    parser.add_argument("--weights", type=Path, help="safetensors weights instead of the shipped ones")


def run(args: argparse.Namespace) -> int:
    try:
        summary = encode_file(args.input, args.output, args.model, args.bitrate, args.weights)
    except ValueError as exc:
        print(f"wavestream encode: error: {exc}", file=sys.stderr)
        return 2
    if summary["trained"] is False:
        print(f"wavestream encode: warning: model {args.model!r} has no trained weights (random init)",
              file=sys.stderr)
    h, rates = summary["header"], summary["bitrates"]
    print(f"{summary['input']} -> {summary['output']}: {h.seconds:.2f} s, {h.channels} ch, {h.frames} frames x "
          f"{h.n_q} codebooks of {h.codebook_size} at {h.frame_rate:g} frames/s; {h.file_bytes} bytes "
          f"({h.header_bytes} header), in {summary['wall_seconds']:.2f} s")
    per_channel = f" ({rates['nominal'] / h.channels:g} kbps x {h.channels} channels)" if h.channels > 1 else ""
    print(f"bitrate: nominal {rates['nominal']:.3f} kbps{per_channel}; counted in the file {rates['payload']:.3f} "
          f"kbps (codes), {rates['file']:.3f} kbps (with the header)")
    return 0
