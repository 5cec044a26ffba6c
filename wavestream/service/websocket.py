"""The ``/v1/stream`` WebSocket: one ``StreamHandler`` per connection runs protocol v1 (docs/protocol.md).

Messages are handled strictly in order, one at a time: audio is decoded, stepped by the engine
and its output sent before the next message is read. That makes ``flush`` a true barrier for free,
and back-pressure is natural: a client that sends faster than the engine steps waits on TCP.
Every send is bounded by ``send_timeout``: a client that stops reading (its TCP window and our
write buffer full) is dropped instead of pinning its session forever.

Waits are bounded by a timer that cancels the handler's own task (``_interrupt``), armed only
around the wait it guards: a loop timer costs about a microsecond, a task or timeout scope per
message several, and this path runs for every message of every stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from wavestream.engine import CapacityError, Output, Session, StepError
from wavestream.models.registry import UntrainedModelError
from wavestream.streaming.pcm import decode_pcm, encode_pcm
from wavestream.streaming.tokens import decode_tokens, encode_tokens

from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    DoneMessage,
    EndMessage,
    EventMessage,
    FlushedMessage,
    FlushMessage,
    OutputInfo,
    ProtocolError,
    ReadyMessage,
    ResetMessage,
    StartMessage,
    parse_client_message,
)

if TYPE_CHECKING:
    from .app import Service

log = logging.getLogger(__name__)
LATENCY_WINDOW = 10_000  # messages kept for the per-stream latency summary in `done`


class StreamHandler:
    def __init__(self, ws: WebSocket, service: Service):
        self.ws, self.service = ws, service
        self.session: Session | None = None
        self.start_message: StartMessage | None = None
        self.output_encoding = "pcm_f32le"
        # seconds, receive -> output sent, of the latest audio messages (bounded: streams may run for days)
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.messages = 0
        self.model_label = "none"
        self._observe_latency = self._count_seconds = None  # this stream's metrics (label lookups once)
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._receiving = False
        self._interrupted: str | None = None  # why _interrupt cancelled the task

    def stop(self) -> None:
        """Ask the handler to wind down (server shutdown): final output, ``done``, close 1001."""
        self._stopping = True
        if self._receiving:  # waiting for the client: wake up now (a handler at work sees the flag)
            self._interrupt("stop")

    def _interrupt(self, reason: str) -> None:
        """End the wait the task is in: it gets CancelledError there and ``_interrupted`` says why."""
        if self._interrupted is None and self._task is not None:
            self._interrupted = reason
            self._task.cancel()

    def _take_interrupt(self) -> str | None:
        """In ``except CancelledError``: why ``_interrupt`` cancelled the task (the cancellation is
        then over), or None for a cancellation from elsewhere, which must go on."""
        reason, self._interrupted = self._interrupted, None
        if reason is not None:
            self._task.uncancel()
        return reason

    async def run(self) -> None:
        self._task = asyncio.current_task()
        await self.ws.accept()
        metrics = self.service.metrics
        metrics.connections.inc()
        outcome = "error"
        try:
            if not self.service.authorized(self.ws.headers, self.ws.query_params):
                raise ProtocolError("unauthorized", "missing or wrong API key (Authorization: Bearer KEY "
                                                    "or ?api_key=KEY)")
            if self.service.draining:
                raise ProtocolError("shutting_down", "the server is shutting down; connect again later")
            outcome = await self._loop()
        except ProtocolError as exc:
            await self._fail(exc)
        except WebSocketDisconnect:
            outcome = "disconnected"
        except Exception as exc:
            log.exception("stream %s failed", self.session.id if self.session else "(not started)")
            message = str(exc) if isinstance(exc, StepError) else "internal error"
            await self._fail(ProtocolError("internal_error", message))
        finally:
            if self.session is not None:
                self.session.close()
                metrics.sessions.labels(self.model_label, outcome).inc()
            metrics.connections.dec()

    async def _loop(self) -> str:
        """Handle messages until the stream ends; returns how it ended ("end" or "shutdown")."""
        limit = self.service.settings.max_message_bytes
        while True:
            message = await self._receive()
            if message is None:
                await self._finish("shutdown")
                return "shutdown"
            data = message.get("bytes")
            if data is not None:
                if len(data) > limit:
                    raise ProtocolError("message_too_big", f"binary message of {len(data)} bytes is over the "
                                                           f"limit of {limit} bytes; send smaller chunks")
                await self._audio(data)
                continue
            text = message.get("text") or ""
            if len(text) > limit:
                raise ProtocolError("message_too_big", f"text message of {len(text)} characters is over the "
                                                       f"limit of {limit}")
            msg = parse_client_message(text)
            if isinstance(msg, StartMessage):
                await self._start(msg)
            elif self.session is None:
                raise ProtocolError("not_started", f"{msg.type!r} before start; send a start message first")
            elif isinstance(msg, FlushMessage):
                # every earlier message was handled and its output sent: the barrier holds already
                await self._put(self.ws.send_text(FlushedMessage(id=msg.id).model_dump_json()))
            elif isinstance(msg, ResetMessage):
                self.session.reset()
            elif isinstance(msg, EndMessage):
                await self._finish("end")
                return "end"

    async def _receive(self) -> dict | None:
        """The next ASGI message; None when asked to stop; ProtocolError after the idle timeout.

        A stop wins over a message that is already waiting: a client sending faster than real time
        always has one, and would otherwise keep its stream alive through the whole drain."""
        if self._stopping:
            return None
        timeout = self.service.settings.idle_timeout
        timer = asyncio.get_running_loop().call_later(timeout, self._interrupt, "idle") if timeout else None
        self._receiving = True
        try:
            message = await self.ws.receive()
        except asyncio.CancelledError:
            reason = self._take_interrupt()
            if reason is None:
                raise
            if reason == "stop":
                return None
            raise ProtocolError("idle_timeout", f"no message for {timeout:g} s") from None
        finally:
            self._receiving = False
            if timer is not None:
                timer.cancel()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    async def _start(self, msg: StartMessage) -> None:
        if self.session is not None:
            raise ProtocolError("already_started", "this connection already has a stream; "
                                                   "use reset for a new one, or a new connection")
        if msg.model not in self.service.model_names:
            raise ProtocolError("unknown_model", f"unknown model {msg.model!r}; available: "
                                                 f"{', '.join(self.service.model_names)}")
        try:
            # on a worker thread: loading the model and the probe step of the session's pipeline
            # (which open_session, on the event loop, then finds done)
            await asyncio.to_thread(self.service.engine.pipeline, msg.model, msg.sample_rate, msg.channels, msg.params)
            self.session = self.service.engine.open_session(msg.model, msg.sample_rate, msg.channels, msg.params)
        except CapacityError as exc:
            raise ProtocolError("at_capacity", f"{exc}; try again later") from None
        except UntrainedModelError as exc:
            raise ProtocolError("unknown_model", str(exc)) from None
        except ValueError as exc:
            raise ProtocolError("invalid_params", str(exc)) from None
        self.start_message, self.model_label = msg, msg.model
        metrics = self.service.metrics
        self._observe_latency = metrics.chunk_latency.labels(msg.model).observe
        self._count_seconds = metrics.audio_seconds.labels(msg.model, "stream").inc
        self.output_encoding = msg.output_encoding or msg.encoding
        info = self.session.info
        output = OutputInfo(**info["output"])
        if output.kind in ("audio", "sources"):
            output.encoding = self.output_encoding
        elif output.kind == "tokens":
            output.dtype = "uint16"
        token_input = OutputInfo(**info["input"], dtype="uint16") if "input" in info else None
        ready = ReadyMessage(session=info["session"], model=info["model"], latency_ms=info["latency_ms"],
                             output=output, input=token_input)
        await self._put(self.ws.send_text(ready.model_dump_json(exclude_none=True)))

    async def _audio(self, data: bytes) -> None:
        received = time.perf_counter()
        if self.session is None:
            raise ProtocolError("not_started", "binary audio before start; send a start message first")
        msg = self.start_message
        pipeline = self.session.pipeline
        # a decode stream takes codes, everything else audio
        error = "invalid_tokens" if pipeline.tokens_in else "invalid_audio"
        try:
            if pipeline.tokens_in:
                samples = decode_tokens(data, pipeline.in_width)
                seconds = len(samples) / self.session.info["input"]["frame_rate"]
            else:
                samples = decode_pcm(data, msg.encoding, msg.channels)
                seconds = len(samples) / msg.sample_rate
            output = await self.session.process(samples)
        except ValueError as exc:  # a bad payload, or values the engine refuses (beyond +-64, past the codebook)
            raise ProtocolError(error, str(exc)) from None
        if await self._send(output):
            latency = time.perf_counter() - received
            self.latencies.append(latency)
            self.messages += 1
            self._observe_latency(latency)
        self._count_seconds(seconds)

    async def _send(self, output: Output) -> bool:
        """Send one engine output in the layout of its kind; True if anything was sent."""
        sent = False
        if output.kind in ("audio", "sources"):
            if output.audio is not None and len(output.audio):
                await self._put(self.ws.send_bytes(encode_pcm(output.audio, self.output_encoding)))
                sent = True
        elif output.kind == "tokens":
            if output.frames is not None and len(output.frames):
                await self._put(self.ws.send_bytes(encode_tokens(output.frames)))
                sent = True
        for event in output.events:
            await self._put(self.ws.send_text(EventMessage(**_plain(event)).model_dump_json(exclude_none=True)))
            sent = True
        return sent

    async def _finish(self, reason: str) -> None:
        """Final output, ``done``, close (1000 after end, 1001 on shutdown)."""
        if self.session is None:
            raise ProtocolError("shutting_down", "the server is shutting down; connect again later")
        await self._send(await self.session.finish())
        pipeline = self.session.pipeline
        stats = {"samples_in": pipeline.samples_in, "samples_out": pipeline.samples_out,
                 "messages": self.messages, "latency_ms": _summary(self.latencies)}
        if self.start_message.debug:
            stats["chunk_latency_ms"] = [round(1000 * t, 3) for t in self.latencies]
        await self._put(self.ws.send_text(DoneMessage(reason=reason, stats=stats).model_dump_json()))
        await self._put(self.ws.close(CLOSE_NORMAL if reason == "end" else CLOSE_GOING_AWAY))

    async def _fail(self, error: ProtocolError) -> None:
        self.service.metrics.errors.labels(error.code).inc()
        if error.code == "send_timeout":
            return  # it reads nothing: leaving closes the connection without another blocked send
        try:
            await self._put(self.ws.send_text(error.to_message().model_dump_json()))
            await self._put(self.ws.close(error.close_code, error.code))
        except (WebSocketDisconnect, RuntimeError, ProtocolError):
            pass  # the client is gone already, or reads nothing

    async def _put(self, send) -> None:
        """Await one send (or close) of the socket; ProtocolError("send_timeout") if it cannot go out
        within ``send_timeout`` seconds because the client stopped reading."""
        timeout = self.service.settings.send_timeout
        timer = asyncio.get_running_loop().call_later(timeout, self._interrupt, "send")
        try:
            await send
        except asyncio.CancelledError:
            if self._take_interrupt() is None:
                raise
            raise ProtocolError("send_timeout", f"the client read nothing for {timeout:g} s") from None
        finally:
            timer.cancel()


def _plain(value):
    """Model events may hold numpy scalars and arrays: make them plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def _summary(latencies: deque[float]) -> dict:
    if not latencies:
        return {}
    ms = np.asarray(latencies) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3),
            "max": round(float(ms.max()), 3)}
