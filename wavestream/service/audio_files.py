"""REST audio files in bounded memory: spool an upload to disk, validate it, process it block by block.

Nothing here holds a whole file in memory: the upload is written to a temporary file as it
arrives (and cut off at the size limit), read back in blocks, streamed through an engine session,
and written block by block; the response streams the result file.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from fastapi import HTTPException, Request

from wavestream.engine import Engine
from wavestream.engine.codec_files import DECODE_BLOCK_FRAMES, check_layout, decode_params, header_for, write_columns
from wavestream.streaming.tokens import TokenFileHeader, read_token_file, read_token_header, write_token_file

from .protocol import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

#: libsndfile container -> suffix; WAVEX (WAVE_FORMAT_EXTENSIBLE) and RF64 are WAV as ffmpeg writes it
INPUT_FORMATS = {"WAV": ".wav", "WAVEX": ".wav", "RF64": ".wav", "FLAC": ".flac", "OGG": ".ogg"}
#: output format -> (libsndfile format, subtype, media type); float WAV keeps every bit of the output.
#: Events models answer with a JSON list of their detections instead of a sound file.
OUTPUT_FORMATS = {"wav": ("WAV", "FLOAT", "audio/wav"), "flac": ("FLAC", "PCM_24", "audio/flac"),
                  "json": (None, None, "application/json")}
EVENTS_FORMAT = "json"
BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class UploadInfo:
    path: Path
    suffix: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


async def spool_upload(request: Request, directory: Path, max_bytes: int) -> Path:
    """Write the request body to a temporary file; 413 past ``max_bytes``, 400 if empty."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"upload of {int(declared)} bytes is over the limit of {max_bytes} bytes")
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(413, f"upload is over the limit of {max_bytes} bytes")
                f.write(chunk)
        if size == 0:
            raise HTTPException(400, "empty request body: send the audio file as the body "
                                     "(e.g. curl --data-binary @in.wav)")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def validate_upload(path: Path, max_seconds: float) -> UploadInfo:
    """Check format, rate, channels and duration before any work starts (4xx with the reason)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise HTTPException(415, f"not a readable WAV, FLAC or Ogg file: {_reason(exc)}") from None
    if info.format not in INPUT_FORMATS:
        raise HTTPException(415, f"unsupported audio format {info.format}; send WAV, FLAC or Ogg")
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise HTTPException(422, f"sample rate {info.samplerate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise HTTPException(422, f"{info.channels} channels; at most {MAX_CHANNELS} are supported")
    if info.frames <= 0:
        raise HTTPException(422, "the file has no audio frames")
    upload = UploadInfo(path, INPUT_FORMATS[info.format], info.samplerate, info.channels, info.frames)
    if upload.duration > max_seconds:
        raise HTTPException(413, f"{upload.duration:.1f} s of audio is over the limit of {max_seconds:g} s")
    return upload


async def process_file(engine: Engine, model: str, params: dict, source: Path, target: Path, fmt: str) -> float:
    """Stream ``source`` through an engine session of ``model`` into ``target``; returns seconds of audio.

    Raises ValueError (bad model/params/output kind) and CapacityError like ``open_session``.
    """
    file_format, subtype, _ = OUTPUT_FORMATS[fmt]
    with sf.SoundFile(str(source)) as src:
        await asyncio.to_thread(engine.load, model, params)  # weights are read off the event loop
        session = engine.open_session(model, src.samplerate, src.channels, params)
        try:
            kind = session.info["output"]["kind"]
            if kind == "events" or fmt == EVENTS_FORMAT:
                if kind != "events" or fmt != EVENTS_FORMAT:
                    raise ValueError(f"model {model!r} outputs {kind}: ask for format=" +
                                     (EVENTS_FORMAT if kind == "events" else "wav or flac"))
                await _write_events(session, src, target)
                return src.frames / src.samplerate
            if kind not in ("audio", "sources"):
                raise ValueError(f"model {model!r} outputs {kind}; files can carry audio, sources or events only "
                                 "(encode token files with /v1/encode, or stream over /v1/stream)")
            channels = session.info["output"]["channels"]
            with sf.SoundFile(str(target), "w", samplerate=src.samplerate, channels=channels,
                              format=file_format, subtype=subtype) as dst:
                async for block in _blocks(src):
                    await _write(dst, (await session.process(block)).audio)
                await _write(dst, (await session.finish()).audio)
            return src.frames / src.samplerate
        finally:
            session.close()


async def _write_events(session, src: sf.SoundFile, target: Path) -> None:
    """The stream's detections as one JSON list ``[{"label", "start", "end", "score"}, ...]``."""
    events = []
    async for block in _blocks(src):
        events += (await session.process(block)).events
    events += (await session.finish()).events
    target.write_text(json.dumps(events))


async def _blocks(src: sf.SoundFile):
    """The file's blocks, each read on a worker thread (file I/O and decoding stay off the event
    loop); a damaged file (truncated, corrupted, a header claiming more frames than there are) is a
    ValueError with the decoder's reason, as for any other bad input."""
    blocks = src.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True)
    frames = 0
    while True:
        try:
            block = await asyncio.to_thread(next, blocks, None)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise ValueError(f"the audio file is damaged after {frames} of {src.frames} frames: "
                             f"{_reason(exc)}") from None
        if block is None:
            return
        frames += len(block)
        yield np.ascontiguousarray(block)


def _reason(exc: Exception) -> str:
    """libsndfile's reason without the server path that ``str(exc)`` carries."""
    return getattr(exc, "error_string", None) or "the decoder failed"


async def _write(dst: sf.SoundFile, audio: np.ndarray | None) -> None:
    if audio is not None and len(audio):
        await asyncio.to_thread(dst.write, audio)


# -- codec token files (.wsc) -------------------------------------------------------------------------

async def encode_file(engine: Engine, model: str, params: dict, source: Path, target: Path) -> TokenFileHeader:
    """Stream an audio file through an encode session of codec ``model`` into a token file."""
    params = {**params, "mode": "encode"}
    with sf.SoundFile(str(source)) as src:
        await asyncio.to_thread(engine.load, model, params)
        session = engine.open_session(model, src.samplerate, src.channels, params)
        try:
            frames = [(await session.process(block)).frames async for block in _blocks(src)]
            frames.append((await session.finish()).frames)
            codes = np.concatenate(frames)
            header = header_for(model, session.info["output"], src.samplerate, src.frames, codes)
        finally:
            session.close()
    await asyncio.to_thread(write_token_file, target, header, codes)
    return header


def validate_token_upload(path: Path, max_seconds: float, models: list[str]) -> TokenFileHeader:
    """Check a token file's header before any work (422 with the reason; 413 over the duration limit)."""
    try:
        header = read_token_header(path)
    except ValueError as exc:
        raise HTTPException(422, f"not a usable token file: {exc}") from None
    if header.model not in models:
        raise HTTPException(422, f"the token file was written by model {header.model!r}, which this server does not "
                                 f"have; available: {', '.join(models)}")
    if not MIN_SAMPLE_RATE <= header.sample_rate <= MAX_SAMPLE_RATE:
        raise HTTPException(422, f"the token file's sample rate {header.sample_rate} Hz is outside "
                                 f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if header.channels > MAX_CHANNELS:
        raise HTTPException(422, f"the token file has {header.channels} channels; at most {MAX_CHANNELS} are supported")
    if header.seconds > max_seconds:
        raise HTTPException(413, f"{header.seconds:.1f} s of audio is over the limit of {max_seconds:g} s")
    return header


async def decode_file(engine: Engine, source: Path, target: Path, fmt: str) -> TokenFileHeader:
    """Decode a (validated) token file through decode sessions, one per channel, into an audio file at
    the header's rate and length."""
    header, codes = await asyncio.to_thread(read_token_file, source)
    model = header.model
    base = {"mode": "decode"}
    decoder = await asyncio.to_thread(engine.load, model, base)
    params = {**base, **decode_params(header, decoder)}
    sessions = []
    try:
        for _ in range(header.channels):
            sessions.append(engine.open_session(model, header.sample_rate, 1, params))
        check_layout(header, sessions[0].info["input"])
        file_format, subtype, _ = OUTPUT_FORMATS[fmt]
        with sf.SoundFile(str(target), "w", samplerate=header.sample_rate, channels=header.channels,
                          format=file_format, subtype=subtype) as dst:
            written = 0
            for pos in range(0, header.frames, DECODE_BLOCK_FRAMES):
                block = codes[pos:pos + DECODE_BLOCK_FRAMES]
                columns = [(await s.process(block[:, c])).audio for c, s in enumerate(sessions)]
                written += await asyncio.to_thread(write_columns, dst, columns, header.samples - written)
            columns = [(await s.finish()).audio for s in sessions]
            written += await asyncio.to_thread(write_columns, dst, columns, header.samples - written)
            await _write(dst, np.zeros((header.samples - written, header.channels), np.float32))
    finally:
        for session in sessions:
            session.close()
    return header
