"""Audio files to token files (.wsc) and back, through a codec's encode and decode modes.

``encode_file`` and ``decode_file`` run offline (`wavestream encode` / `wavestream decode`) through
the same ``StreamPipeline`` as a stream: the input is resampled to the model's rate and framed,
each channel is its own token stream, and decoding resamples back to the rate in the header and
cuts to the length in it, so ``decode(encode(x))`` has the rate and length of ``x``. The REST
endpoints (``wavestream.service.audio_files``) build and check headers with the helpers here.
The file layout is ``wavestream.streaming.tokens``'.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from wavestream.streaming.module import TOKENS, StreamingModule
from wavestream.streaming.tokens import SUFFIX, TokenFileHeader, read_token_file, write_token_file

from .engine import load_stream_model
from .pipeline import Output, StreamPipeline

BLOCK_SECONDS = 10.0
DECODE_BLOCK_FRAMES = 500  # token frames decoded per step (10 s at 50 Hz)


def header_for(model: str, output_info: dict[str, Any], sample_rate: int, samples: int,
               codes: np.ndarray) -> TokenFileHeader:
    """The header of ``codes [frames, rows, n_q]`` that an encode stream (``output_info``) made of
    ``samples`` frames of audio at ``sample_rate``."""
    if output_info["kind"] != TOKENS or "codebook_size" not in output_info:
        raise ValueError(f"model {model!r} does not output codec tokens (it outputs {output_info['kind']})")
    return TokenFileHeader(model=model, sample_rate=int(sample_rate), frame_rate=float(output_info["frame_rate"]),
                           n_q=int(output_info["codebooks"]), codebook_size=int(output_info["codebook_size"]),
                           frames=len(codes), samples=int(samples), channels=int(output_info["rows"]))


def decode_params(header: TokenFileHeader, model: StreamingModule) -> dict[str, Any]:
    """The stream params that make ``model`` (a decode-mode codec) take the header's codebooks;
    ValueError if it cannot."""
    bitrate_of = getattr(model, "bitrate_of", None)
    if model.input_kind != TOKENS or bitrate_of is None:
        raise ValueError(f"model {header.model!r} cannot decode tokens")
    return {"bitrate": bitrate_of(header.n_q)}


def check_layout(header: TokenFileHeader, input_info: dict[str, Any]) -> None:
    """ValueError unless the decoder takes the header's frames (rate, codebooks, codebook size)."""
    ours = (input_info["frame_rate"], input_info["codebooks"], input_info.get("codebook_size"))
    theirs = (header.frame_rate, header.n_q, header.codebook_size)
    if ours != theirs:
        raise ValueError(f"the file's tokens ({theirs[0]:g} frames/s, {theirs[1]} codebooks of {theirs[2]}) are not "
                         f"what model {header.model!r} decodes here ({ours[0]:g} frames/s, {ours[1]} codebooks of "
                         f"{ours[2]}): a differently configured model wrote it")


def encode_file(input_path: str | Path, output_path: str | Path, model_name: str = "codec",
                bitrate: float | None = None, weights: str | Path | None = None) -> dict[str, Any]:
    """Encode an audio file (any rate, any channels) into a token file; returns a summary with the
    header and its bitrates (nominal, and counted from the file's bytes)."""
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() != SUFFIX:
        raise ValueError(f"write tokens to a {SUFFIX} file, not {output_path.name!r}")
    params = {} if bitrate is None else {"bitrate": bitrate}
    model = load_stream_model(model_name, {"mode": "encode"}, weights)
    start = time.perf_counter()
    try:
        source = sf.SoundFile(str(input_path))
    except (sf.LibsndfileError, OSError) as exc:
        raise ValueError(f"cannot read audio from {input_path}: {exc}") from None
    with source:
        pipeline = StreamPipeline(model, source.samplerate, source.channels, params=params)
        outputs = [pipeline.process(block) for block in source.blocks(
            max(int(BLOCK_SECONDS * source.samplerate), 1), dtype="float32", always_2d=True)]
        outputs.append(pipeline.finish())
        codes = Output.concat(outputs).frames
        header = header_for(model_name, pipeline.output_info(), source.samplerate, source.frames, codes)
    partial = output_path.with_name(output_path.name + ".partial")
    try:
        write_token_file(partial, header, codes)
        partial.replace(output_path)  # only a complete file takes the output's name
    finally:
        partial.unlink(missing_ok=True)
    return {"input": str(input_path), "output": str(output_path), "header": header, "bitrates": header.bitrates(),
            "wall_seconds": time.perf_counter() - start, "trained": getattr(model, "trained", None)}


def decode_file(input_path: str | Path, output_path: str | Path, weights: str | Path | None = None,
                subtype: str | None = None) -> dict[str, Any]:
    """Decode a token file into audio at the header's rate and length (the format follows the suffix)."""
    input_path, output_path = Path(input_path), Path(output_path)
    header, codes = read_token_file(input_path)
    start = time.perf_counter()
    model = load_stream_model(header.model, {"mode": "decode"}, weights)
    params = decode_params(header, model)
    pipelines = [StreamPipeline(model, header.sample_rate, 1, params=params) for _ in range(header.channels)]
    check_layout(header, pipelines[0].input_info())
    partial = output_path.with_name(output_path.name + ".partial")
    try:
        with sf.SoundFile(str(partial), "w", header.sample_rate, header.channels, subtype,
                          format=_audio_format(output_path)) as out:
            written = 0
            for pos in range(0, header.frames, DECODE_BLOCK_FRAMES):
                block = codes[pos:pos + DECODE_BLOCK_FRAMES]
                written += write_columns(out, [p.process(block[:, c]).audio for c, p in enumerate(pipelines)],
                                         header.samples - written)
            written += write_columns(out, [p.finish().audio for p in pipelines], header.samples - written)
            out.write(np.zeros((header.samples - written, header.channels), np.float32))  # resampling can be 1 short
        partial.replace(output_path)
    finally:
        partial.unlink(missing_ok=True)
    return {"input": str(input_path), "output": str(output_path), "header": header,
            "wall_seconds": time.perf_counter() - start, "trained": getattr(model, "trained", None)}


def _audio_format(path: Path) -> str:
    formats = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
    if path.suffix.lower() not in formats:
        raise ValueError(f"write audio to a .wav, .flac or .ogg file, not {path.name!r}")
    return formats[path.suffix.lower()]


def write_columns(out: sf.SoundFile, columns: list[np.ndarray], room: int) -> int:
    """Write the channels' audio side by side, at most ``room`` frames (the header's length); returns frames written."""
    audio = np.concatenate(columns, axis=1)[:max(room, 0)]
    out.write(audio)
    return len(audio)
