"""`wavestream process MODEL IN OUT`: run a model over an audio file, offline, in bounded memory.

The file is read and written in blocks and goes through the same ``StreamPipeline`` as a live
stream (resampling to the model rate and back, framing, latency compensation), with direct
model steps. Any sample rate and channel count; each channel is its own stream (unless the model
takes several channels). The output has the input's rate and length; its format follows the
extension: .wav/.flac/.ogg for audio and sources models, .npy for tokens ``[frames, rows,
codebooks]``, .json for events (a JSON list of ``{"label", "start", "end", "score"}``, times in
seconds of the input; ``[]`` when nothing was detected).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from wavestream.engine import StreamPipeline, load_stream_model

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
FRAME_FORMATS = {"tokens": ".npy", "events": ".json"}
PROGRESS_SECONDS = 60.0  # show a progress bar for inputs longer than this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name (see `wavestream models`)")
    parser.add_argument("input", type=Path, help="audio file (anything libsndfile reads: wav, flac, ogg, ...)")
    parser.add_argument("output", type=Path, help="output file; the extension picks the format")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="model parameter, value parsed as JSON when possible (repeatable)")
    parser.add_argument("--weights", type=Path, help="safetensors weights instead of the shipped ones")
    parser.add_argument("--subtype", help="output sample format, e.g. PCM_16, PCM_24, FLOAT (default: the format's)")
    parser.add_argument("--block-seconds", type=float, default=10.0, help="seconds read per block (default 10)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", default=None, help="always show a progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help=f"never show one (default: only for inputs over {PROGRESS_SECONDS:.0f} s)")


def parse_params(items: list[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param needs KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def process_file(model_name: str, input_path: Path, output_path: Path, params: dict[str, Any] | None = None,
                 weights: Path | None = None, subtype: str | None = None, block_seconds: float = 10.0,
                 progress: bool | None = None) -> dict[str, Any]:
    """Process ``input_path`` into ``output_path``; returns a summary. ValueError for bad input."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not block_seconds > 0:
        raise ValueError(f"--block-seconds must be positive, got {block_seconds}")
    if output_path.resolve() == input_path.resolve():
        raise ValueError("output must be a different file than the input")
    if weights is not None and not Path(weights).is_file():
        raise ValueError(f"weights file {weights} does not exist")
    model = load_stream_model(model_name, params, weights)
    kind = model.output_kind
    suffix = output_path.suffix.lower()
    allowed = [FRAME_FORMATS[kind]] if kind in FRAME_FORMATS else list(AUDIO_FORMATS)
    if suffix not in allowed:
        raise ValueError(f"model {model_name!r} outputs {kind}; write it to a {' or '.join(allowed)} file, "
                         f"not {output_path.name!r}")
    if subtype is not None and not sf.check_format(AUDIO_FORMATS.get(suffix, "WAV"), subtype):
        raise ValueError(f"subtype {subtype!r} is not valid for {suffix} files")
    try:
        source = sf.SoundFile(str(input_path))
    except (sf.LibsndfileError, OSError) as exc:
        raise ValueError(f"cannot read audio from {input_path}: {exc}") from None
    partial = output_path.with_name(output_path.name + ".partial")
    start = time.perf_counter()
    with source:
        rate, channels, frames = source.samplerate, source.channels, source.frames
        pipeline = StreamPipeline(model, rate, channels)
        seconds = frames / rate
        show = progress if progress is not None else seconds > PROGRESS_SECONDS
        bar = tqdm(total=round(seconds, 2), unit="s", disable=not show, desc=input_path.name, file=sys.stderr)
        try:
            with _OutputWriter(partial, kind, rate, pipeline.out_channels, AUDIO_FORMATS.get(suffix), subtype) as write:
                for block in source.blocks(blocksize=max(int(block_seconds * rate), 1), dtype="float32",
                                           always_2d=True):
                    write(pipeline.process(block))
                    bar.update(round(len(block) / rate, 2))
                write(pipeline.finish())
            partial.replace(output_path)  # only a complete result takes the output's name
        finally:
            bar.close()
            partial.unlink(missing_ok=True)
    wall = time.perf_counter() - start
    return {"model": model_name, "input": str(input_path), "output": str(output_path), "sample_rate": rate,
            "channels": channels, "seconds": seconds, "wall_seconds": wall,
            "rtf": wall / seconds if seconds else None, "trained": getattr(model, "trained", None)}


class _OutputWriter:
    """Context manager giving ``write(output)`` for the output kind; the file is closed on exit."""

    def __init__(self, path: Path, kind: str, rate: int, channels: int, fmt: str | None, subtype: str | None):
        self.path, self.kind, self.rate, self.channels = path, kind, rate, channels
        self.fmt, self.subtype = fmt, subtype
        self._frames: list[np.ndarray] = []
        self._events: list[dict[str, Any]] = []

    def __enter__(self):
        if self.kind in FRAME_FORMATS:
            self._file = open(self.path, "w" if self.kind == "events" else "wb")
        else:
            try:
                self._file = sf.SoundFile(str(self.path), "w", self.rate, self.channels, self.subtype,
                                          format=self.fmt)
            except (sf.LibsndfileError, OSError) as exc:
                raise ValueError(f"cannot write {self.fmt} with {self.channels} channels at {self.rate} Hz: "
                                 f"{exc}") from None
        return self.write

    def write(self, out) -> None:
        if self.kind == "events":
            self._events.extend(out.events)  # events are few: kept for one JSON list
        elif self.kind == "tokens":
            self._frames.append(out.frames)  # tokens are small (~100 frames/s): kept for one .npy
        else:
            self._file.write(out.audio)

    def __exit__(self, *exc) -> None:
        if self.kind == "tokens" and not exc[0]:
            np.save(self._file, np.concatenate(self._frames))
        if self.kind == "events" and not exc[0]:
            json.dump(self._events, self._file, indent=1)
            self._file.write("\n")
        self._file.close()


def run(args: argparse.Namespace) -> int:
    try:
        summary = process_file(args.model, args.input, args.output, parse_params(args.param), args.weights,
                               args.subtype, args.block_seconds, args.progress)
    except ValueError as exc:
        print(f"wavestream process: error: {exc}", file=sys.stderr)
        return 2
    if summary["trained"] is False:
        print(f"wavestream process: warning: model {args.model!r} has no trained weights (random init)",
              file=sys.stderr)
    print(f"{summary['input']} -> {summary['output']}: {summary['seconds']:.2f} s of audio, "
          f"{summary['channels']} ch at {summary['sample_rate']} Hz, in {summary['wall_seconds']:.2f} s")
    return 0
