"""Python client for the WebSocket protocol v1: ``AsyncStreamClient`` and its blocking twin ``StreamClient``.

    async with AsyncStreamClient("ws://127.0.0.1:8000/v1/stream") as client:
        ready = await client.start("enhance", sample_rate=16000)
        await client.send(chunk)             # float array [frames] or [frames, channels]
        item = await client.receive()        # decoded output (None once the stream is done)
        await client.flush()                 # returns when all output for earlier audio arrived
        done = await client.end()

Received binary messages are decoded by the output kind announced in ``ready``: audio ->
float32 ``[frames, channels]``, sources -> float32 ``[frames, rows, sources]`` (a row per input
channel, or one row for a model that mixes its input down, as ``separate`` does), tokens ->
int64 codes ``[frames, rows, codebooks]``; events arrive as ``EventMessage`` (``label``, ``start``, ``end``,
``score``; ``.event`` is the plain dict that REST and `wavestream process` return).

Tokens both ways: an encode session (``params={"mode": "encode", "bitrate": 3}``) returns code
frames; a decode session (``{"mode": "decode", "bitrate": 3}``) takes them: ``send`` then takes integer
codes ``[frames, codebooks]`` (``ready.input`` gives the layout) and the session returns audio.
``bytes_sent`` / ``bytes_received`` count the binary payload bytes, e.g. for the bitrate on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wavestream.service.protocol import (
    DoneMessage,
    ErrorMessage,
    EventMessage,
    FlushedMessage,
    OutputInfo,
    ReadyMessage,
    StartMessage,
    parse_server_message,
)
from wavestream.streaming.pcm import decode_pcm, encode_pcm
from wavestream.streaming.tokens import decode_tokens, encode_tokens

Item = np.ndarray | EventMessage


class StreamError(Exception):
    """The server reported an error (``code`` from the protocol) or the connection dropped."""

    def __init__(self, code: str, message: str, close_code: int | None = None):
        super().__init__(f"{code}: {message}" + (f" (close {close_code})" if close_code else ""))
        self.code, self.message, self.close_code = code, message, close_code


@dataclass
class StreamResult:
    """Everything one stream produced: concatenated binary output, events, and the final message."""

    output: np.ndarray | None
    events: list[EventMessage] = field(default_factory=list)
    done: DoneMessage | None = None


def decode_output(data: bytes, info: OutputInfo) -> np.ndarray:
    """One binary server message -> array, by the layouts in docs/protocol.md."""
    if info.kind == "audio":
        return decode_pcm(data, info.encoding, info.channels)
    if info.kind == "sources":
        frames = decode_pcm(data, info.encoding, info.channels)
        return frames.reshape(len(frames), info.channels // info.sources, info.sources)
    if info.kind == "tokens":
        try:
            return decode_tokens(data, info.rows * info.codebooks).reshape(-1, info.rows, info.codebooks)
        except ValueError as exc:
            raise StreamError("invalid_message", str(exc)) from None
    raise StreamError("invalid_message", f"binary message for output kind {info.kind!r}")


def empty_output(info: OutputInfo) -> np.ndarray:
    if info.kind == "audio":
        return np.zeros((0, info.channels), np.float32)
    if info.kind == "sources":
        return np.zeros((0, info.channels // info.sources, info.sources), np.float32)
    return np.zeros((0, info.rows, info.codebooks), np.int64)


class AsyncStreamClient:
    """One streaming session over one WebSocket connection."""

    def __init__(self, url: str, api_key: str | None = None, open_timeout: float = 10.0,
                 max_message_bytes: int = 16 * 1024 * 1024):
        self.url = url
        self.api_key = api_key
        self.open_timeout = open_timeout
        self.max_message_bytes = max_message_bytes
        self.ready: ReadyMessage | None = None
        self.done: DoneMessage | None = None
        self.close_code: int | None = None
        self._ws: ClientConnection | None = None
        self._items: asyncio.Queue[Item | StreamError | None] | None = None
        self._flushes: dict[Any, asyncio.Future] = {}
        self._next_flush = 0
        self._receiver: asyncio.Task | None = None
        self._error: StreamError | None = None
        self._encoding = "pcm_f32le"
        self._sample_rate = 0
        self.bytes_sent = self.bytes_received = 0  # binary payloads (audio or tokens)

    async def __aenter__(self) -> AsyncStreamClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def output(self) -> OutputInfo:
        if self.ready is None:
            raise RuntimeError("call start() first")
        return self.ready.output

    async def start(self, model: str, sample_rate: int, channels: int = 1, encoding: str = "pcm_f32le",
                    params: dict | None = None, output_encoding: str | None = None,
                    debug: bool = False) -> ReadyMessage:
        """Connect, send ``start`` and wait for ``ready`` (a server error raises ``StreamError``)."""
        if self._ws is not None:
            raise RuntimeError("this client has already started a session")
        start = StartMessage(type="start", model=model, sample_rate=sample_rate, channels=channels,
                             encoding=encoding, params=params or {}, output_encoding=output_encoding, debug=debug)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        self._ws = await connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                                 max_size=self.max_message_bytes, compression=None)  # PCM barely compresses
        self._items = asyncio.Queue()
        try:
            await self._ws.send(start.model_dump_json(exclude_none=True))
        except ConnectionClosed:
            pass  # the server refused the connection at once (auth, shutdown): its error is queued
        try:
            first = await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None
        msg = parse_server_message(first) if isinstance(first, str) else None
        if isinstance(msg, ErrorMessage):
            await self._wait_closed()
            raise StreamError(msg.code, msg.message, self.close_code)
        if not isinstance(msg, ReadyMessage):
            await self.close()
            raise StreamError("invalid_message", f"expected a ready message, got {first!r:.200}")
        self.ready, self._encoding, self._sample_rate = msg, encoding, sample_rate
        self._receiver = asyncio.create_task(self._receive_loop())
        return msg

    async def send(self, samples: np.ndarray | bytes) -> None:
        """Send audio: float samples ``[frames]`` / ``[frames, channels]``, or raw bytes already encoded.
        A decode session takes integer codes ``[frames, codebooks]`` instead (``ready.input``)."""
        self._check_open()
        if not isinstance(samples, bytes | bytearray | memoryview):
            samples = self._encode(samples)
        self.bytes_sent += len(samples)
        try:
            await self._ws.send(bytes(samples))
        except ConnectionClosed as exc:
            raise await self._closed_while_sending(exc) from None

    async def flush(self, flush_id: int | str | None = None) -> None:
        """Marker barrier: returns once all output for the audio sent so far has been received."""
        self._check_open()
        if flush_id is None:
            self._next_flush += 1
            flush_id = self._next_flush
        future = asyncio.get_running_loop().create_future()
        self._flushes[flush_id] = future
        await self._send_text({"type": "flush", "id": flush_id})
        await future

    async def reset(self) -> None:
        """Forget the stream so far (state and buffered input); the next audio starts a fresh stream."""
        self._check_open()
        await self._send_text({"type": "reset"})

    async def end(self) -> DoneMessage:
        """Send ``end`` and wait until the final output and ``done`` arrived (keep calling ``receive``
        from another task, or read the items afterwards with ``receive``/``received``)."""
        self._check_open()
        await self._send_text({"type": "end"})
        await self._receiver
        if self.done is None:
            raise self._error or StreamError("closed", "connection closed before done")
        return self.done

    async def receive(self, timeout: float | None = None) -> Item | None:
        """The next output item; ``None`` once the stream is done. Raises the server's error."""
        item = await asyncio.wait_for(self._items.get(), timeout)
        if item is None:
            self._items.put_nowait(None)  # stay at the end for later callers
        if isinstance(item, StreamError):
            self._items.put_nowait(item)
            raise item
        return item

    def received(self) -> list[Item]:
        """All items that have arrived and were not read yet (does not wait)."""
        items = []
        while not self._items.empty():
            item = self._items.get_nowait()
            if item is None or isinstance(item, StreamError):
                self._items.put_nowait(item)
                break
            items.append(item)
        return items

    async def stream(self, samples: np.ndarray, chunk_frames: int, realtime: bool = False) -> StreamResult:
        """Send ``samples`` in chunks (paced at real time if asked), end, and collect everything."""
        self._check_open()
        x = np.asarray(samples) if self.ready.input is not None else np.asarray(samples, dtype=np.float32)
        x = x[:, None] if x.ndim == 1 else x
        collected: list[Item] = []

        async def collect():
            while (item := await self.receive()) is not None:
                collected.append(item)

        collector = asyncio.create_task(collect())
        rate = self.ready.input.frame_rate if self.ready.input is not None else self._sample_rate
        try:
            t0 = time.monotonic()
            for i, pos in enumerate(range(0, len(x), chunk_frames)):
                if realtime:
                    await asyncio.sleep(max(0.0, t0 + i * chunk_frames / rate - time.monotonic()))
                await self.send(x[pos:pos + chunk_frames])
            done = await self.end()
            await collector
        finally:
            collector.cancel()
        arrays = [c for c in collected if isinstance(c, np.ndarray)]
        events = [c for c in collected if isinstance(c, EventMessage)]
        output = None if self.output.kind == "events" else np.concatenate([empty_output(self.output), *arrays])
        return StreamResult(output, events, done)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            await self._wait_closed()
        if self._receiver is not None:
            with contextlib.suppress(BaseException):
                await self._receiver

    # -- internals ---------------------------------------------------------------------------------
    def _encode(self, samples: np.ndarray) -> bytes:
        layout = self.ready.input
        if layout is None:
            x = np.asarray(samples, dtype=np.float32)
            return encode_pcm(x[:, None] if x.ndim == 1 else x, self._encoding)
        codes = np.asarray(samples)
        if codes.ndim != 2 or codes.shape[1] != layout.codebooks or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"this decode session takes integer codes [frames, {layout.codebooks}], "
                             f"got {codes.dtype} {codes.shape}")
        return encode_tokens(codes)

    def _check_open(self) -> None:
        if self.ready is None:
            raise RuntimeError("call start() first")
        if self._error is not None:
            raise self._error
        if self.done is not None:
            raise StreamError("ended", f"the stream has ended ({self.done.reason})", self.close_code)

    async def _send_text(self, message: dict) -> None:
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise await self._closed_while_sending(exc) from None

    async def _closed_while_sending(self, exc: ConnectionClosed) -> StreamError:
        """The error to raise when a send finds the connection closed: what the server said last."""
        if self._receiver is not None:
            with contextlib.suppress(BaseException):
                await self._receiver  # it reads the server's final messages before it ends
        if self._error is not None:
            return self._error
        if self.done is not None:
            return StreamError("ended", f"the stream has ended ({self.done.reason})", self.close_code)
        return self._closed_error(exc)

    async def _receive_loop(self) -> None:
        info = self.ready.output
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    self.bytes_received += len(message)
                    self._items.put_nowait(decode_output(message, info))
                    continue
                msg = parse_server_message(message)
                if isinstance(msg, FlushedMessage):
                    future = self._flushes.pop(msg.id, None)
                    if future is not None and not future.done():
                        future.set_result(None)
                elif isinstance(msg, EventMessage):
                    self._items.put_nowait(msg)
                elif isinstance(msg, DoneMessage):
                    self.done = msg
                elif isinstance(msg, ErrorMessage):
                    self._error = StreamError(msg.code, msg.message)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a message we cannot decode: stop, and say why
            self._error = StreamError("invalid_message", str(exc))
            await self._ws.close()
        await self._wait_closed()
        if self._error is not None:
            self._error.close_code = self.close_code
        elif self.done is None:
            self._error = StreamError("closed", "connection closed before done", self.close_code)
        self._items.put_nowait(self._error)  # None when the stream ended cleanly
        for future in self._flushes.values():
            if not future.done():
                future.set_exception(self._error or StreamError("closed", "stream ended before flushed"))

    async def _wait_closed(self) -> None:
        await self._ws.wait_closed()
        self.close_code = self._ws.close_code

    def _closed_error(self, exc: ConnectionClosed) -> StreamError:
        rcvd = exc.rcvd
        return StreamError("closed", rcvd.reason if rcvd else "connection closed", rcvd.code if rcvd else None)


class StreamClient:
    """Blocking wrapper: the same methods as ``AsyncStreamClient``, run on a private event loop thread."""

    def __init__(self, url: str, api_key: str | None = None, **kwargs):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wavestream-client", daemon=True)
        self._thread.start()
        self._client = AsyncStreamClient(url, api_key=api_key, **kwargs)

    def _run(self, coro: Coroutine):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ready(self) -> ReadyMessage | None:
        return self._client.ready

    @property
    def bytes_sent(self) -> int:
        return self._client.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self._client.bytes_received

    def start(self, model: str, sample_rate: int, **kwargs) -> ReadyMessage:
        return self._run(self._client.start(model, sample_rate, **kwargs))

    def send(self, samples: np.ndarray | bytes) -> None:
        self._run(self._client.send(samples))

    def flush(self) -> None:
        self._run(self._client.flush())

    def reset(self) -> None:
        self._run(self._client.reset())

    def end(self) -> DoneMessage:
        return self._run(self._client.end())

    def receive(self, timeout: float | None = None) -> Item | None:
        return self._run(self._client.receive(timeout))

    def received(self) -> list[Item]:
        return self._run(_call(self._client.received))

    def stream(self, samples: np.ndarray, chunk_frames: int, realtime: bool = False) -> StreamResult:
        return self._run(self._client.stream(samples, chunk_frames, realtime))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


async def _call(fn):
    return fn()
