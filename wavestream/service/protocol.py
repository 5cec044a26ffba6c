"""Wire protocol v1 (docs/protocol.md; docs/design.md): the JSON messages, error codes and close codes.

Shared by the server and the client so both sides parse the same schemas. Binary messages carry
audio (or tokens) and have no schema here; their layouts are described by ``OutputInfo``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
ENCODINGS = ("pcm_s16le", "pcm_f32le")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_CHANNELS = 8
#: deepest nesting of objects/arrays accepted in client JSON (deeper would exhaust the stack)
MAX_JSON_DEPTH = 32

# WebSocket close codes (RFC 6455 §7.4.1 plus the registered 1013)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutting down
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

#: error code -> close code; docs/protocol.md has the same table with the reasons
ERROR_CLOSE_CODES = {
    "not_started": CLOSE_UNSUPPORTED,         # binary audio (or a control) before "start"
    "already_started": CLOSE_UNSUPPORTED,     # a second "start"
    "unsupported_message": CLOSE_UNSUPPORTED, # unknown "type"
    "unsupported_encoding": CLOSE_UNSUPPORTED,
    "invalid_json": CLOSE_INVALID,
    "invalid_message": CLOSE_INVALID,         # right type, wrong fields
    "invalid_audio": CLOSE_INVALID,           # partial frames, NaN/Inf samples
    "invalid_tokens": CLOSE_INVALID,          # a decode stream's codes: partial frames, codes past the codebook
    "unknown_model": CLOSE_INVALID,
    "invalid_params": CLOSE_INVALID,
    "unauthorized": CLOSE_POLICY,
    "idle_timeout": CLOSE_POLICY,
    "send_timeout": CLOSE_POLICY,             # the client stopped reading our output
    "message_too_big": CLOSE_TOO_BIG,
    "internal_error": CLOSE_INTERNAL,
    "at_capacity": CLOSE_TRY_AGAIN,
    "shutting_down": CLOSE_TRY_AGAIN,
}


class ProtocolError(Exception):
    """A protocol violation: the server answers ``{"type":"error",...}`` then closes with ``close_code``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = ERROR_CLOSE_CODES[code]

    def to_message(self) -> ErrorMessage:
        return ErrorMessage(code=self.code, message=self.message)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- client -> server ------------------------------------------------------------------------------
class _ClientMessage(_Message):
    # strict: "16000" is not a sample rate and true is not a flush id
    model_config = ConfigDict(extra="forbid", strict=True)


class StartMessage(_ClientMessage):
    type: Literal["start"]
    model: str = Field(min_length=1, max_length=100)
    sample_rate: int = Field(ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    channels: int = Field(1, ge=1, le=MAX_CHANNELS)
    encoding: str = "pcm_s16le"
    #: encoding of output audio; defaults to the input encoding
    output_encoding: str | None = None
    #: model-specific options (e.g. a codec's bitrate)
    params: dict[str, Any] = Field(default_factory=dict)
    #: ask for per-chunk server latencies in the final "done" message (benchmarks)
    debug: bool = False


class FlushMessage(_ClientMessage):
    type: Literal["flush"]
    id: int | str


class ResetMessage(_ClientMessage):
    type: Literal["reset"]


class EndMessage(_ClientMessage):
    type: Literal["end"]


ClientMessage = Annotated[StartMessage | FlushMessage | ResetMessage | EndMessage, Field(discriminator="type")]
_client_adapter = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("start", "flush", "reset", "end")


def parse_client_message(text: str) -> StartMessage | FlushMessage | ResetMessage | EndMessage:
    """Parse one client text message or raise ``ProtocolError`` with the right code."""
    try:
        data = load_json(text)
    except ValueError as exc:
        raise ProtocolError("invalid_json", f"text message is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_json", "text message must be a JSON object")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unsupported_message",
                            f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_TYPES)}")
    try:
        msg = _client_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError("invalid_message", f"bad {kind!r} message: {_brief(exc)}") from None
    if isinstance(msg, StartMessage):
        for enc in (msg.encoding, msg.output_encoding):
            if enc is not None and enc not in ENCODINGS:
                raise ProtocolError("unsupported_encoding",
                                    f"unsupported encoding {enc!r}; use one of {', '.join(ENCODINGS)}")
    return msg


def load_json(text: str | bytes) -> Any:
    """``json.loads`` for client input: ValueError for bad JSON and for nesting deeper than
    ``MAX_JSON_DEPTH`` (which would otherwise end as RecursionError here or in later code)."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if _depth(value) <= MAX_JSON_DEPTH:
            return value
    raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion; stops past the limit."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())


# -- server -> client ------------------------------------------------------------------------------
class OutputInfo(BaseModel):
    """What the server's output messages carry; docs/protocol.md describes each binary layout.

    audio / sources: PCM frames of ``channels`` interleaved columns at ``sample_rate`` in
    ``encoding``; for sources, column ``c * sources + s`` is source ``s`` of input channel ``c``
    (``layout`` says it; a mixdown model has one input row, so column ``s`` is source ``s``), and
    ``order`` says that a column carries the same source for the whole stream.
    tokens: little-endian ``dtype`` (uint16) codes ``[frames, rows, codebooks]`` at ``frame_rate``, each
    below ``codebook_size``; ``codebooks`` is the stream's n_q (its bitrate's codebooks).
    events: text ``event`` messages (the model's detections); ``classes`` scores per frame.
    """

    model_config = ConfigDict(extra="allow")  # newer servers may describe more

    kind: Literal["audio", "sources", "tokens", "events"]
    sample_rate: int | None = None
    channels: int | None = None
    encoding: str | None = None
    sources: int | None = None
    layout: str | None = None
    order: str | None = None
    frame_rate: float | None = None
    rows: int | None = None
    codebooks: int | None = None
    codebook_size: int | None = None
    classes: int | None = None
    dtype: str | None = None


class ReadyMessage(_Message):
    type: Literal["ready"] = "ready"
    protocol: int = PROTOCOL_VERSION
    session: str
    model: dict[str, Any]
    latency_ms: float
    output: OutputInfo
    #: only for a stream that takes tokens (a codec's decode mode): the layout to send them in
    input: OutputInfo | None = None


class FlushedMessage(_Message):
    type: Literal["flushed"] = "flushed"
    id: int | str


class DoneMessage(_Message):
    type: Literal["done"] = "done"
    #: "end" after the client's end message, "shutdown" when the server is stopping
    reason: Literal["end", "shutdown"] = "end"
    stats: dict[str, Any] = Field(default_factory=dict)


class EventMessage(BaseModel):
    """One detection of an events model: ``{"type":"event","label":"seven","start":1.23,"end":1.71,
    "score":0.97}``; start/end in seconds of the stream's input audio (since start or the last
    reset), score in [0, 1]; ``channel`` only when the stream has several rows (channels)."""

    model_config = ConfigDict(extra="allow")  # a model may report more about a detection

    type: Literal["event"] = "event"
    label: str
    start: float
    end: float
    score: float
    channel: int | None = None

    @property
    def event(self) -> dict[str, Any]:
        """The detection without ``type``: the same dict REST and ``wavestream process`` return."""
        return self.model_dump(exclude={"type"}, exclude_none=True)


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str


ServerMessage = Annotated[ReadyMessage | FlushedMessage | DoneMessage | EventMessage | ErrorMessage,
                          Field(discriminator="type")]
_server_adapter = TypeAdapter(ServerMessage)


def parse_server_message(text: str) -> ReadyMessage | FlushedMessage | DoneMessage | EventMessage | ErrorMessage:
    return _server_adapter.validate_json(text)
