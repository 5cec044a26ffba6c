"""`wavestream stream MODEL IN OUT --url ws://...`: stream a file to a server and save what comes back.

Audio (and sources, as interleaved channels) is written as it arrives, so memory stays bounded for
any file length; events as one JSON list ``[{"label", "start", "end", "score"}, ...]`` in a ``.json``
file (``[]``: nothing heard), the same as ``wavestream process`` writes. Tokens go to a ``.npy``
array ``[frames, rows, codebooks]``, or, for a codec, to a token file (``.wsc``, the format of
``wavestream encode``). A codec's mode follows the files: ``IN.wav OUT.wsc`` streams an encode
session, ``IN.wsc OUT.wav`` a decode session (the file names the model and its bitrate; each channel
is a session of its own, run side by side), audio to audio a round trip. ``--realtime`` paces the
messages by the wall clock, as a live source would send them (audio by its rate, tokens by their
frame rate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

import numpy as np
import soundfile as sf

from wavestream.streaming.tokens import SUFFIX, TokenFileHeader, read_token_file, write_token_file

from .stream_client import AsyncStreamClient, StreamError

SUBTYPES = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name (see `wavestream models`)")
    parser.add_argument("input", type=Path, help="file to send: audio (WAV, FLAC, Ogg), or a codec token file "
                                                 "(.wsc) to decode")
    parser.add_argument("output", type=Path, help="where to write the result (.wav/.flac/.ogg for audio; .wsc or "
                                                  ".npy for tokens, .json for events)")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="server WebSocket URL")
    parser.add_argument("--api-key", default=None, help="API key, if the server needs one")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="audio (or tokens) per message in milliseconds")
    parser.add_argument("--realtime", action="store_true", help="send at real-time pace instead of at once")
    parser.add_argument("--encoding", default="pcm_f32le", choices=["pcm_f32le", "pcm_s16le"])
    parser.add_argument("--params", default=None, help="model params as a JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        params = json.loads(args.params) if args.params else {}
        if not isinstance(params, dict):
            raise ValueError("--params must be a JSON object")
        if args.chunk_ms <= 0:
            raise ValueError("--chunk-ms must be positive")
        summary = asyncio.run(stream_file(args.url, args.model, args.input, args.output, chunk_ms=args.chunk_ms,
                                          realtime=args.realtime, encoding=args.encoding, params=params,
                                          api_key=args.api_key))
    except (StreamError, ValueError, OSError, sf.LibsndfileError) as exc:
        print(f"wavestream stream: {exc}", file=sys.stderr)
        return 1
    stats, header = summary["done"].get("latency_ms") or {}, summary["header"]
    wrote = f"{summary['done'].get('samples_out', 0)} frames"
    if (events := summary["events"]) is not None:  # an events model sends no audio: say what the file holds
        wrote = f"{events} event{'s' * (events != 1)}"
    if header is not None:  # a token file written (encode) or read (decode, cut to the file's length)
        wrote = f"{header.frames} token frames" if args.output.suffix.lower() == SUFFIX else \
            f"{header.samples} frames at {header.sample_rate} Hz"
    print(f"wrote {args.output}: {wrote}; server latency per message "
          f"p50 {stats.get('p50', float('nan'))} ms, p99 {stats.get('p99', float('nan'))} ms")
    if header is not None:
        rates = header.bitrates()
        wire = 8 * summary["token_bytes"] / (header.seconds or float("nan")) / 1000
        print(f"bitrate: nominal {rates['nominal']:.3f} kbps; counted on the wire {wire:.3f} kbps (uint16 codes), "
              f"in the file {rates['payload']:.3f} kbps (codes), {rates['file']:.3f} kbps (with the header)")
    return 0


async def stream_file(url: str, model: str, source: Path, target: Path, chunk_ms: float = 20.0,
                      realtime: bool = False, encoding: str = "pcm_f32le", params: dict | None = None,
                      api_key: str | None = None) -> dict:
    """Stream ``source`` through ``model`` on the server into ``target``. Returns ``done`` (the server's
    stats), ``header`` (the token file's, when one is read or written, else None), ``events`` (how many
    an events model sent, else None) and ``token_bytes`` (token bytes on the wire, both ways)."""
    source, target = Path(source), Path(target)
    if source.suffix.lower() == SUFFIX:
        return await _decode_token_file(url, model, source, target, chunk_ms, realtime, encoding, params, api_key)
    if target.suffix.lower() == SUFFIX:
        params = _with_mode(params, "encode", f"writing a token file ({SUFFIX})")
    with sf.SoundFile(str(source)) as src:
        chunk = max(1, round(src.samplerate * chunk_ms / 1000))
        async with AsyncStreamClient(url, api_key=api_key) as client:
            ready = await client.start(model, src.samplerate, channels=src.channels, encoding=encoding,
                                       params=params or {})
            if ready.input is not None:
                raise ValueError(f"this {model!r} session decodes tokens: stream a token file ({SUFFIX}) to it")
            with _Writer(target, ready.output, model, src.samplerate, src.frames) as writer:
                await _pump(client, _send_audio(client, src, chunk, realtime), writer.write)
            tokens = ready.output.kind == "tokens"
            events = len(writer.events) if ready.output.kind == "events" else None
            return {"done": client.done.stats, "header": writer.header, "events": events,
                    "token_bytes": client.bytes_received if tokens else 0}


def _with_mode(params: dict | None, mode: str, why: str) -> dict:
    """``params`` with a codec's ``mode``; ValueError if they ask for another one."""
    params = dict(params or {})
    if params.setdefault("mode", mode) != mode:
        raise ValueError(f"{why} needs mode {mode!r}, but --params asks for mode {params['mode']!r}")
    return params


async def _pump(client: AsyncStreamClient, sending: Coroutine, write: Callable) -> None:
    """Run ``sending`` while writing each item that comes back, until ``done``; the first failure
    (the server's error, or ours) stops both and is raised."""
    async def receive_all():
        while (item := await client.receive()) is not None:
            write(item)

    await _together(sending, receive_all())


async def _together(*coroutines: Coroutine) -> None:
    """Run ``coroutines`` side by side; the first failure cancels the others and is raised as it is."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


async def _send_audio(client: AsyncStreamClient, src: sf.SoundFile, chunk: int, realtime: bool) -> None:
    t0 = time.monotonic()
    for i, block in enumerate(src.blocks(chunk, dtype="float32", always_2d=True)):
        if realtime:
            await asyncio.sleep(max(0.0, t0 + i * chunk / src.samplerate - time.monotonic()))
        await client.send(block)
    await client.end()


async def _decode_token_file(url: str, model: str, source: Path, target: Path, chunk_ms: float, realtime: bool,
                             encoding: str, params: dict | None, api_key: str | None) -> dict:
    """A token file -> audio at its rate and length, as `wavestream decode` writes it, through one decode
    session per channel; messages of ``chunk_ms`` of frames, paced by the frame rate if ``realtime``."""
    header, codes = read_token_file(source)
    if model != header.model:
        raise ValueError(f"{source} holds tokens of model {header.model!r}, not {model!r}")
    params = _with_mode(params, "decode", f"reading a token file ({SUFFIX})")
    bitrate = round(header.bitrates()["nominal"] / header.channels, 6)  # a bitrate is quoted per channel
    if params.setdefault("bitrate", bitrate) != bitrate:
        raise ValueError(f"{source} holds tokens at {bitrate:g} kbps, but --params asks for {params['bitrate']}")
    subtype = SUBTYPES.get(target.suffix.lower())
    if subtype is None:
        raise ValueError(f"write audio to .wav, .flac or .ogg, not {target.name}")
    chunk = max(1, round(header.frame_rate * chunk_ms / 1000))
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(header.channels):
            client = await stack.enter_async_context(AsyncStreamClient(url, api_key=api_key))
            ready = await client.start(model, header.sample_rate, channels=1, encoding=encoding, params=params)
            _check_layout(header, ready.input, model)
            clients.append(client)
        with sf.SoundFile(str(target), "w", samplerate=header.sample_rate, channels=header.channels,
                          subtype=subtype) as out:
            columns = _Columns(out, header.channels, header.samples)
            await _together(*(_pump(client, _send_codes(client, codes[:, c], chunk, header.frame_rate, realtime),
                                     lambda item, c=c: columns.add(c, item)) for c, client in enumerate(clients)))
            columns.finish()
        return {"done": clients[0].done.stats, "header": header, "events": None,
                "token_bytes": sum(client.bytes_sent for client in clients)}


def _check_layout(header: TokenFileHeader, layout, model: str) -> None:
    """ValueError unless the decode session takes the file's frames (rate, codebooks, codebook size)."""
    if layout is None:
        raise ValueError(f"model {model!r} does not take tokens in mode 'decode'")
    ours = (header.frame_rate, header.n_q, header.codebook_size)
    theirs = (layout.frame_rate, layout.codebooks, layout.codebook_size)
    if ours != theirs:
        raise ValueError(f"the file's tokens ({ours[0]:g} frames/s, {ours[1]} codebooks of {ours[2]}) are not what "
                         f"the server's {model!r} decodes ({theirs[0]:g} frames/s, {theirs[1]} codebooks of "
                         f"{theirs[2]}): a differently configured model wrote it")


async def _send_codes(client: AsyncStreamClient, codes: np.ndarray, chunk: int, frame_rate: float,
                      realtime: bool) -> None:
    t0 = time.monotonic()
    for i, pos in enumerate(range(0, len(codes), chunk)):
        if realtime:
            await asyncio.sleep(max(0.0, t0 + i * chunk / frame_rate - time.monotonic()))
        await client.send(codes[pos:pos + chunk])
    await client.end()


class _Columns:
    """Writes each channel's decoded audio side by side as soon as every channel has it, cut to the
    file's length (``finish`` pads with silence when resampling leaves it a sample short)."""

    def __init__(self, out: sf.SoundFile, channels: int, samples: int):
        self.out, self.room = out, samples
        self.pending = [np.zeros(0, np.float32) for _ in range(channels)]

    def add(self, channel: int, audio: np.ndarray) -> None:
        self.pending[channel] = np.concatenate([self.pending[channel], audio[:, 0]])
        n = min(len(p) for p in self.pending)
        if n:
            block = np.stack([p[:n] for p in self.pending], axis=1)[:max(self.room, 0)]
            self.out.write(block)
            self.room -= len(block)
            self.pending = [p[n:] for p in self.pending]

    def finish(self) -> None:
        self.out.write(np.zeros((max(self.room, 0), len(self.pending)), np.float32))


class _Writer:
    """Writes output items by kind: sound file for audio/sources, a token file (.wsc) or .npy for
    tokens, a JSON list for events. ``header`` is the token file's, once written."""

    def __init__(self, path: Path, info, model: str, sample_rate: int, samples: int):
        self.path, self.info = path, info
        self.model, self.sample_rate, self.samples = model, sample_rate, samples
        self.tokens: list[np.ndarray] = []
        self.events: list[dict] = []
        self.file = None
        self.header: TokenFileHeader | None = None

    def __enter__(self) -> _Writer:
        kind, suffix = self.info.kind, self.path.suffix.lower()
        if kind in ("audio", "sources"):
            subtype = SUBTYPES.get(suffix)
            if subtype is None:
                raise ValueError(f"write audio to .wav, .flac or .ogg, not {self.path.name}")
            self.file = sf.SoundFile(str(self.path), "w", samplerate=self.info.sample_rate,
                                     channels=self.info.channels, subtype=subtype)
        elif kind == "events" and suffix != ".json":
            raise ValueError(f"write events to a .json file, not {self.path.name}")
        elif kind == "tokens" and suffix not in (SUFFIX, ".npy"):
            raise ValueError(f"write tokens to a {SUFFIX} or .npy file, not {self.path.name}")
        elif kind == "tokens" and suffix == SUFFIX and not self.info.codebook_size:
            raise ValueError(f"model {self.model!r} names no codebook size for a {SUFFIX} file: write a .npy file")
        return self

    def write(self, item) -> None:
        if self.info.kind in ("audio", "sources"):
            self.file.write(item.reshape(len(item), -1))
        elif self.info.kind == "tokens":
            self.tokens.append(item)
        else:
            self.events.append(item.event)

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()
        if self.info.kind == "events" and not exc[0]:
            self.path.write_text(json.dumps(self.events, indent=1) + "\n")
        if self.info.kind == "tokens":
            empty = np.zeros((0, self.info.rows, self.info.codebooks), np.int64)
            codes = np.concatenate([empty, *self.tokens])
            if self.path.suffix.lower() != SUFFIX:
                np.save(self.path, codes)
            elif not exc[0]:  # a token file only for a whole stream
                self.header = TokenFileHeader(
                    model=self.model, sample_rate=self.sample_rate, frame_rate=float(self.info.frame_rate),
                    n_q=self.info.codebooks, codebook_size=self.info.codebook_size, frames=len(codes),
                    samples=self.samples, channels=self.info.rows)
                write_token_file(self.path, self.header, codes)
