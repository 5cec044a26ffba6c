"""`wavestream stream MODEL IN OUT --url ws://...`: stream a file to a server and save what comes back.

Audio (and sources, as interleaved channels) is written as it arrives, so memory stays bounded for
any file length; tokens are saved as a ``.npy`` array ``[frames, rows, codebooks]``, events as one
JSON list ``[{"label", "start", "end", "score"}, ...]`` in a ``.json`` file (``[]``: nothing heard),
the same as ``wavestream process`` writes. ``--realtime`` paces the chunks by the wall clock, as a
live source would send them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from .stream_client import AsyncStreamClient, StreamError

SUBTYPES = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name (see `wavestream models`)")
    parser.add_argument("input", type=Path, help="audio file to send (WAV, FLAC, Ogg)")
    parser.add_argument("output", type=Path, help="where to write the result (.wav/.flac; .npy for tokens, "
                                                  ".json for events)")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="server WebSocket URL")
    parser.add_argument("--api-key", default=None, help="API key, if the server needs one")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="audio per message in milliseconds")
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
        done = asyncio.run(stream_file(args.url, args.model, args.input, args.output, chunk_ms=args.chunk_ms,
                                       realtime=args.realtime, encoding=args.encoding, params=params,
                                       api_key=args.api_key))
    except (StreamError, ValueError, OSError, sf.LibsndfileError) as exc:
        print(f"wavestream stream: {exc}", file=sys.stderr)
        return 1
    stats = done.get("latency_ms") or {}
    print(f"wrote {args.output}: {done.get('samples_out', 0)} frames; server latency per message "
          f"p50 {stats.get('p50', float('nan'))} ms, p99 {stats.get('p99', float('nan'))} ms")
    return 0


async def stream_file(url: str, model: str, source: Path, target: Path, chunk_ms: float = 20.0,
                      realtime: bool = False, encoding: str = "pcm_f32le", params: dict | None = None,
                      api_key: str | None = None) -> dict:
    """Stream ``source`` through ``model`` on the server into ``target``; returns the ``done`` stats."""
    with sf.SoundFile(str(source)) as src:
        chunk = max(1, round(src.samplerate * chunk_ms / 1000))
        async with AsyncStreamClient(url, api_key=api_key) as client:
            ready = await client.start(model, src.samplerate, channels=src.channels, encoding=encoding,
                                       params=params or {})
            with _Writer(target, ready.output) as writer:
                sender = asyncio.create_task(_send_all(client, src, chunk, realtime))
                try:
                    while (item := await client.receive()) is not None:
                        writer.write(item)
                except BaseException:
                    sender.cancel()  # the server's error (or ours) says it all; stop sending
                    await asyncio.gather(sender, return_exceptions=True)
                    raise
                await sender
            return client.done.stats


async def _send_all(client: AsyncStreamClient, src: sf.SoundFile, chunk: int, realtime: bool) -> None:
    t0 = time.monotonic()
    for i, block in enumerate(src.blocks(chunk, dtype="float32", always_2d=True)):
        if realtime:
            await asyncio.sleep(max(0.0, t0 + i * chunk / src.samplerate - time.monotonic()))
        await client.send(block)
    await client.end()


class _Writer:
    """Writes output items by kind: sound file for audio/sources, .npy for tokens, a JSON list for events."""

    def __init__(self, path: Path, info):
        self.path, self.info = path, info
        self.tokens: list[np.ndarray] = []
        self.events: list[dict] = []
        self.file = None

    def __enter__(self) -> _Writer:
        kind = self.info.kind
        if kind in ("audio", "sources"):
            subtype = SUBTYPES.get(self.path.suffix.lower())
            if subtype is None:
                raise ValueError(f"write audio to .wav, .flac or .ogg, not {self.path.name}")
            self.file = sf.SoundFile(str(self.path), "w", samplerate=self.info.sample_rate,
                                     channels=self.info.channels, subtype=subtype)
        elif kind == "events" and self.path.suffix.lower() != ".json":
            raise ValueError(f"write events to a .json file, not {self.path.name}")
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
            empty = np.zeros((0, self.info.rows, self.info.codebooks), np.int32)
            np.save(self.path, np.concatenate([empty, *self.tokens]))
