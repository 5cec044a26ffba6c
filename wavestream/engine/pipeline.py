"""StreamPipeline: the one code path from client audio to client output for one stream.

    client samples [n, channels] at the client rate
      -> StreamResampler (client rate -> model rate)
      -> Framer (whole multiples of the model hop)
      -> model step (injected: called directly, or by the engine's batching scheduler)
      -> latency compensation, StreamResampler (model rate -> client rate)
      -> Output

Rows: each client channel is its own stream, i.e. one batch row ``[channels, 1, T]``, unless the
model takes several channels at once (``model.audio_channels > 1``), then the stream is one row
``[1, channels, T]`` and the client must send exactly that many channels, or the model declares
``mixdown = True`` (a mono model whose output is about the whole scene, e.g. separation: a stereo
mixture holds the same talkers in both channels, so separating each channel would give every talker
twice), then the client's channels are averaged to one row ``[1, 1, T]`` before resampling.

Time alignment (audio and sources): ``model.latency`` is the model's output delay in samples,
``y[t + latency]`` belongs to ``x[t]``. The pipeline drops the first ``latency`` output samples and,
at ``finish``, feeds ``latency`` zeros (plus the hop padding) to push the last ones out, so the
complete output is time-aligned with the input and has exactly as many frames (a resampling
round trip can be a frame short or long; the tail is zero-padded or cut to the input's length).

Events: a model with ``output_kind == "events"`` may offer ``event_detector(rows, frame_rate,
**detector_params)``, which returns a fresh per-stream detector with ``push(frames [n, rows, K]) -> list[dict]`` (events
completed in these frames) and ``flush() -> list[dict]`` (events still open at the end), and
``end_silence_s``: seconds of silence fed after the end of a stream, so that a word said at the very
end is still judged (a keyword's posteriors rise after the word; the event times may then reach
past the input's end by up to that much). The
pipeline makes one in ``reset`` and feeds it every frame in order, so debouncing carries across
chunk borders and the events do not depend on how the stream was cut. An event is a JSON-able
dict ``{"label", "start", "end", "score"}`` (seconds of the stream; ``"channel"`` when the
stream has several rows).

Tokens: a token model (a codec) carries ``codebooks`` codes per frame, each in
``[0, codebook_size)``, and marks the codebooks a stream does not use with -1 (its bitrate is part of
its state, see ``params``). Token output is cut to the codebooks in use ([frames, rows, n_q]). Token
input (a decoder) takes frames ``[n, k]`` of integer codes, ``k = model.stream_codebooks(params)``
(e.g. the codebooks of the stream's bitrate; the rest are sent to the model as -1), as one row, and
returns mono audio (``channels`` must be 1) at ``sample_rate`` (the output rate: there is no input
audio to resample). ``output_info``/``input_info`` describe both layouts.

Params: ``params`` are the model's per-stream params (``per_stream_params``): those that live in
its state (``model.state_params``, applied by ``model.configure_state``), e.g. a codec's bitrate,
and those of its event detector (``model.detector_params``, passed to ``event_detector``), e.g. a
keyword threshold. So one model instance serves streams that differ in them, even in one batch.

The step is injected by splitting each call in two halves around it: ``begin(samples)`` returns
the model input (or None when no whole hop is ready) and ``end(y)`` turns the model output into
an ``Output``; whoever runs the step between them must also carry ``pipeline.state`` forward.
``process``/``finish`` do all three with a direct step, for offline use and as the reference.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wavestream.streaming.framing import Framer, check_samples
from wavestream.streaming.module import AUDIO, EVENTS, SOURCES, TOKENS, StreamingModule
from wavestream.streaming.resample import StreamResampler
from wavestream.streaming.state import State

Step = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]
AUDIO_LIKE = (AUDIO, SOURCES)
OUTPUT_KINDS = (AUDIO, SOURCES, TOKENS, EVENTS)
MAX_CHANNELS = 64

#: per model instance: the output layout its probe step found, by input shape and state params.
#: A session's pipeline is built on the event loop, and a probe is a whole model step (milliseconds
#: for the larger models): it runs once per layout, e.g. on a worker thread ahead of the session
_LAYOUTS: weakref.WeakKeyDictionary[StreamingModule, dict] = weakref.WeakKeyDictionary()
_LAYOUTS_LOCK = threading.Lock()


@dataclass
class Output:
    """What one call produced for one stream.

    - ``audio`` / ``sources``: ``audio`` is ``float32 [frames, out_channels]`` at the client rate.
      For sources, ``out_channels = rows * sources`` and column ``row * sources + s`` is source
      ``s`` of input channel ``row`` (channel-major; a multi-channel or mixdown model has one row,
      so its columns are just the sources).
    - ``tokens`` / ``events``: ``frames`` is the model's frame output ``[n_frames, rows, K]``
      (integer codes of K codebooks, or K class scores) and ``first_frame`` the stream index of
      ``frames[0]``; for events, ``events`` holds what the model's ``detect_events`` hook made of
      them (a list of JSON-able dicts; empty for a model without a detector).
    """

    kind: str
    audio: np.ndarray | None = None
    frames: np.ndarray | None = None
    first_frame: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        data = self.audio if self.kind in AUDIO_LIKE else self.frames
        return (data is None or not len(data)) and not self.events

    @staticmethod
    def concat(outputs: Sequence[Output]) -> Output:
        """Join consecutive outputs of one stream."""
        if not outputs:
            raise ValueError("Output.concat needs at least one output")
        first = outputs[0]
        joined = Output(first.kind, first_frame=first.first_frame,
                        events=[e for o in outputs for e in o.events])
        if first.audio is not None:
            joined.audio = np.concatenate([o.audio for o in outputs])
        if first.frames is not None:
            joined.frames = np.concatenate([o.frames for o in outputs])
        return joined


def _check_int(value: Any, name: str, low: int = 1, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low or \
            (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")


def direct_step(model: StreamingModule) -> Step:
    """The unbatched step: ``model.step`` in inference mode."""
    def step(x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        with torch.inference_mode():
            return model.step(x, state)
    return step


def per_stream_params(model: StreamingModule) -> tuple[str, ...]:
    """The params a stream sets for itself on a shared model instance: state and detector params."""
    return tuple(getattr(model, "state_params", ())) + tuple(getattr(model, "detector_params", ()))


def split_stream_params(model: StreamingModule, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` -> (state params, detector params); ValueError for a key that is neither."""
    state_keys, detector_keys = tuple(getattr(model, "state_params", ())), tuple(getattr(model, "detector_params", ()))
    unknown = sorted(set(params) - set(state_keys) - set(detector_keys))
    if unknown:
        raise ValueError(f"{type(model).__name__} takes no per-stream params {unknown}; "
                         f"it takes: {', '.join(state_keys + detector_keys) or 'none'}")
    return ({k: v for k, v in params.items() if k in state_keys},
            {k: v for k, v in params.items() if k in detector_keys})


def check_stream_params(model: StreamingModule, params: dict[str, Any]) -> None:
    """ValueError unless ``params`` are per-stream params ``model`` accepts, with valid values
    (without building a whole pipeline: no probe step)."""
    state_params, detector_params = split_stream_params(model, params)
    _configured_state(model, 1, state_params)
    _detector(model, 1, 1.0, detector_params)


def _configured_state(model: StreamingModule, rows: int, params: dict[str, Any]) -> State:
    state = model.init_state(rows)
    return model.configure_state(state, params) if params else state


def _detector(model: StreamingModule, rows: int, frame_rate: float, params: dict[str, Any]):
    make = getattr(model, "event_detector", None)
    if make is None:
        return None
    try:
        return make(rows, frame_rate, **params)
    except TypeError as exc:  # e.g. a string where a number belongs
        raise ValueError(f"bad detector params {params}: {exc}") from None


#: stream seconds over which ``stream_latency`` looks for the longest wait (the first 0.2 s are
#: the resamplers' start, excluded); 2 s is within 0.25 ms of 8 s for 44.1 kHz, the slowest to settle
LATENCY_SECONDS, LATENCY_SETTLE = 2.0, 0.2


@functools.lru_cache(maxsize=256)
def stream_latency(sample_rate: int, model_rate: int, hop: int, lookahead: int, audio_out: bool,
                   quality: str = "LL") -> float:
    """Algorithmic latency of an audio-input stream in seconds: the longest any input sample waits,
    with input arriving sample by sample, until the output for it can be sent (not counting compute).

    At the model's rate this is the model's figure, ``hop + lookahead`` (a sample at the start of a
    hop waits for the hop and the lookahead). At another rate the two resamplers hold output back
    (the "LL" filter its half-length, 2.5 ms each way next to 16 kHz; soxr in blocks, a saw-tooth of
    6-37 ms each way at 48 kHz <-> 16 kHz for HQ), and the waits add up by phase, so the stream's
    counts are simulated once per geometry: client samples in one at a time, resampled to the
    model's rate, whole hops, the model's output less its ``lookahead`` (audio outputs), resampled
    back. ``audio_out`` False (events, tokens): ready once the model has the hop and lookahead.
    """
    total = int(LATENCY_SECONDS * sample_rate)
    # model samples after n client samples (n itself at equal rates: a passthrough)
    received = _output_counts(StreamResampler(sample_rate, model_rate, 1, quality), 1, total)
    q = np.arange(int(LATENCY_SETTLE * sample_rate), total)
    if audio_out:
        model_out = np.maximum(received // hop * hop - lookahead, 0)  # model output after n in
        out = model_out.copy()
        if sample_rate != model_rate:
            back = StreamResampler(model_rate, sample_rate, 1, quality)
            known = back.ready(model_out)
            if known is not None:
                out = known
            else:
                starts = np.flatnonzero(np.diff(model_out)) + 1
                produced = 0
                for start, stop in zip(starts, [*starts[1:], total + 1], strict=True):
                    produced += len(back.process(np.zeros((model_out[start] - model_out[start - 1], 1), np.float32)))
                    out[start:stop] = produced
                out[:starts[0] if len(starts) else total + 1] = 0
        out = np.minimum(out, np.arange(total + 1))  # never more out than in
        ready = np.searchsorted(out, q + 1)  # client samples in when sample q goes out
    else:
        need = q * model_rate // sample_rate // hop * hop + hop + lookahead
        ready = np.searchsorted(received, need)
    found = ready <= total
    return float((ready[found] - q[found]).max()) / sample_rate


def _output_counts(stream: StreamResampler, piece: int, pieces: int) -> np.ndarray:
    """Output samples ``stream`` has returned after 0, 1, .. ``pieces`` pieces of ``piece`` input samples."""
    counts = stream.ready(np.arange(pieces + 1) * piece)
    if counts is None:  # soxr: feed it to know
        zeros = np.zeros((piece, stream.channels), np.float32)
        fed = np.fromiter((len(stream.process(zeros)) for _ in range(pieces)), np.int64, pieces)
        counts = np.concatenate([[0], np.cumsum(fed)])
    return counts


@functools.lru_cache(maxsize=256)
def _resampler_hold(in_rate: int, out_rate: int, piece: int, quality: str = "LL") -> float:
    """The longest the resampler holds an output sample back, in seconds, fed ``piece`` samples at a time."""
    if in_rate == out_rate:
        return 0.0
    out = _output_counts(StreamResampler(in_rate, out_rate, 1, quality), piece, int(LATENCY_SECONDS * in_rate) // piece)
    q = np.arange(int(LATENCY_SETTLE * out_rate), out[-1])
    ready = np.searchsorted(out, q + 1) * piece  # input samples in when output sample q goes out
    return float((ready / in_rate - q / out_rate).max())


class StreamPipeline:
    def __init__(self, model: StreamingModule, sample_rate: int, channels: int, quality: str = "LL",
                 params: dict[str, Any] | None = None):
        if model.input_kind not in (AUDIO, TOKENS):
            raise ValueError(f"{type(model).__name__} takes {model.input_kind} input; a stream takes audio or tokens")
        if model.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"{type(model).__name__} outputs {model.output_kind}; streams carry {OUTPUT_KINDS}")
        if not model.sample_rate:
            raise ValueError(f"{type(model).__name__} declares no sample_rate")
        _check_int(sample_rate, "sample_rate", 1000, 384000)
        self.tokens_in = model.input_kind == TOKENS
        _check_int(channels, "channels", 1, MAX_CHANNELS)
        if self.tokens_in and channels != 1:
            raise ValueError(f"{type(model).__name__} takes tokens and outputs mono audio: channels must be 1, "
                             f"got {channels} (the codebooks per frame follow the stream's params)")
        model_channels = int(getattr(model, "audio_channels", 1))
        if model_channels > 1 and channels != model_channels:
            raise ValueError(f"this model takes exactly {model_channels} channels, got {channels}")
        self.mixdown = bool(getattr(model, "mixdown", False))
        if self.mixdown and (model_channels > 1 or self.tokens_in):
            raise ValueError(f"{type(model).__name__} declares mixdown, which needs mono audio input")
        self.model, self.sample_rate, self.channels = model, int(sample_rate), int(channels)
        self.kind = model.output_kind
        self.model_rate, self.hop, self.latency = int(model.sample_rate), int(model.hop), int(model.latency)
        self.end_silence = round(getattr(model, "end_silence_s", 0.0) * self.model_rate) if self.kind == EVENTS else 0
        self.rows = 1 if model_channels > 1 or self.tokens_in or self.mixdown else self.channels
        #: channels after the mixdown: what is resampled, framed and stepped
        self.model_in_channels = 1 if self.mixdown else self.channels
        self._model_channels = model_channels
        self.params = dict(params or {})
        self._state_params, self._detector_params = split_stream_params(model, self.params)
        #: values per input frame: codes per token frame, else the channels stepped
        self.in_width = int(model.stream_codebooks(self._state_params)) if self.tokens_in else self.model_in_channels
        if self._detector_params and self.kind != EVENTS:
            raise ValueError(f"{type(model).__name__} outputs {self.kind}: no event detector to take "
                             f"{sorted(self._detector_params)}")
        self._model_width, self.per_row, self.out_per_hop, self._frame_dtype = self._layout()
        if self.kind in AUDIO_LIKE and not self.tokens_in and self.out_per_hop != self.hop:
            raise ValueError(f"{type(model).__name__} outputs {self.kind} with {self.out_per_hop} samples per "
                             f"hop of {self.hop}; audio outputs must keep the input length")
        self.out_channels = self.rows * self.per_row
        self.to_model = None if self.tokens_in else StreamResampler(self.sample_rate, self.model_rate,
                                                                    self.model_in_channels, quality)
        self.framer = Framer(self.hop, self.model_in_channels)
        self.from_model = StreamResampler(self.model_rate, self.sample_rate, self.out_channels, quality) \
            if self.kind in AUDIO_LIKE else None
        #: the stream's algorithmic latency end to end, resamplers included (see ``stream_latency``)
        if self.tokens_in:  # the model's, in token frames of out_per_hop / hop model samples, + the way back
            frame_seconds = self.out_per_hop / self.hop / self.model_rate
            self.latency_seconds = model.algorithmic_latency * frame_seconds + _resampler_hold(
                self.model_rate, self.sample_rate, self.out_per_hop, quality)
        else:
            self.latency_seconds = stream_latency(self.sample_rate, self.model_rate, self.hop, self.latency,
                                                  self.kind in AUDIO_LIKE, quality)
        self.reset()

    # -- description -------------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        """Output frames per second (tokens/events)."""
        return self.model_rate * self.out_per_hop / self.hop

    def output_info(self) -> dict[str, Any]:
        """What a client needs to read the output (the protocol's ``ready.output``)."""
        if self.kind in AUDIO_LIKE:
            info = {"kind": self.kind, "sample_rate": self.sample_rate, "channels": self.out_channels}
            if self.kind == SOURCES:
                info["sources"] = self.per_row
                info["layout"] = ("input channels mixed down to one; source s -> column s" if self.mixdown
                                  else "channel c, source s -> column c * sources + s")
                # column s is always the model's output s: nothing re-pairs sources between chunks
                info["order"] = "source order is fixed for the whole stream"
            return info
        if self.kind == EVENTS:
            return {"kind": self.kind, "frame_rate": self.frame_rate, "rows": self.rows, "classes": self.per_row}
        return {"kind": self.kind, "frame_rate": self.frame_rate, "rows": self.rows, "codebooks": self.per_row,
                **self._codebook_size()}

    def input_info(self) -> dict[str, Any] | None:
        """The layout of token input (None for audio input): frames of ``codebooks`` codes, one row."""
        if not self.tokens_in:
            return None
        return {"kind": TOKENS, "frame_rate": self.model_rate * self.hop / self.out_per_hop, "rows": 1,
                "codebooks": self.in_width, **self._codebook_size()}

    def _codebook_size(self) -> dict[str, int]:
        size = getattr(self.model, "codebook_size", None)
        return {} if size is None else {"codebook_size": int(size)}

    def _layout(self) -> tuple[int, int, int, np.dtype]:
        """(values per row K, values in use per row, output steps per hop, frame dtype), from one probe
        step per model instance, input shape and state params (cached, see ``_LAYOUTS``)."""
        x = self._to_tensor(np.zeros((self.hop, self.in_width), np.float32))
        key = (tuple(x.shape), str(x.dtype), json.dumps(self._state_params, sort_keys=True, default=repr))
        with _LAYOUTS_LOCK:
            layout = _LAYOUTS.setdefault(self.model, {}).get(key)
        if layout is None:
            with torch.inference_mode():
                probe, _ = self.model.step(x, self._fresh_state())
            width = int(probe.shape[1])
            # tokens: only the codebooks this stream uses go out (the model marks the others -1)
            in_use = int((probe[:, :, 0] >= 0).sum(1).max()) if self.kind == TOKENS else width
            layout = (width, in_use, int(probe.shape[-1]), probe.numpy().dtype)
            with _LAYOUTS_LOCK:
                _LAYOUTS[self.model][key] = layout
        return layout

    # -- life cycle ----------------------------------------------------------------------------
    def _fresh_state(self) -> State:
        return _configured_state(self.model, self.rows, self._state_params)

    def reset(self) -> None:
        """Back to a fresh stream: zero state (with the stream's params), empty buffers, counters at 0."""
        self.state: State = self._fresh_state()
        if self.to_model is not None:
            self.to_model.reset()
        self.framer.reset()
        if self.from_model is not None:
            self.from_model.reset()
        self.samples_in = 0       # client-rate frames received (token frames for token input)
        self.samples_out = 0      # client-rate frames returned (audio)
        self.model_valid = 0      # model-rate frames of real input (no padding)
        self.frames_out = 0       # model output frames returned (tokens/events)
        self.finished = False
        self._to_drop = self.latency * self.out_per_hop // self.hop if self.kind in AUDIO_LIKE else 0
        self._model_kept = 0
        self._held = np.zeros((0, self.out_channels), np.float32)
        self.detector = _detector(self.model, self.rows, self.frame_rate, self._detector_params) \
            if self.kind == EVENTS else None

    def begin(self, samples: np.ndarray) -> torch.Tensor | None:
        """Take client samples; return the model input for the whole hops now ready, or None."""
        if self.finished:
            raise ValueError("stream finished; reset it to start a new one")
        if self.tokens_in:
            return self._begin_tokens(samples)
        check_samples(samples, self.channels)
        if not np.isfinite(samples).all():
            raise ValueError("samples contain NaN or Inf")
        self.samples_in += len(samples)
        if self.mixdown:  # the average, so that a mono file copied to both channels passes unchanged
            samples = samples.mean(axis=1, keepdims=True, dtype=np.float32)
        resampled = self.to_model.process(samples)
        self.model_valid += len(resampled)
        ready = self.framer.push(resampled)
        return self._to_tensor(ready) if len(ready) else None

    def _begin_tokens(self, frames: np.ndarray) -> torch.Tensor | None:
        size = int(self.model.codebook_size)
        if not isinstance(frames, np.ndarray) or not np.issubdtype(frames.dtype, np.integer) or \
                frames.ndim != 2 or frames.shape[1] != self.in_width:
            raise ValueError(f"tokens must be an integer array [frames, {self.in_width}]")
        if len(frames) and (frames.min() < 0 or frames.max() >= size):
            raise ValueError(f"token codes must be in [0, {size})")
        self.samples_in += len(frames)
        self.model_valid += len(frames) * self.out_per_hop
        return self._to_tensor(frames) if len(frames) else None

    def end(self, y: torch.Tensor | np.ndarray | None) -> Output:
        """Model output of the last ``begin`` (None if it returned None; a tensor or its numpy
        array, as the batching scheduler hands it over) -> client output."""
        return self._output(y, final=False)

    def begin_finish(self) -> torch.Tensor | None:
        """End of input: the model input that flushes everything out (None if nothing is left)."""
        if self.finished:
            raise ValueError("stream already finished; reset it to start a new one")
        self.finished = True
        if self.tokens_in:  # a frame is a whole step: nothing is held back; -1 frames push a latency out
            return self._to_tensor(np.full((self.latency, self.in_width), -1)) if self.latency else None
        rest = self.to_model.flush()
        self.model_valid += len(rest)
        if self.framer.frames_out == 0 and self.framer.pending + len(rest) == 0:
            return None  # nothing was ever sent: nothing to flush
        lead_out = np.zeros((self.latency + self.end_silence, self.model_in_channels), np.float32)
        ready = self.framer.push(np.concatenate([rest, lead_out]))
        tail, _ = self.framer.flush()
        x = np.concatenate([ready, tail])
        return self._to_tensor(x) if len(x) else None

    def end_finish(self, y: torch.Tensor | np.ndarray | None) -> Output:
        return self._output(y, final=True)

    # -- direct (unbatched) use -------------------------------------------------------------------
    def process(self, samples: np.ndarray, step: Step | None = None) -> Output:
        x = self.begin(samples)
        return self.end(self._run(x, step))

    def finish(self, step: Step | None = None) -> Output:
        x = self.begin_finish()
        return self.end_finish(self._run(x, step))

    def _run(self, x: torch.Tensor | None, step: Step | None) -> torch.Tensor | None:
        if x is None:
            return None
        y, self.state = (step or direct_step(self.model))(x, self.state)
        return y

    # -- conversions -------------------------------------------------------------------------------
    def _to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        if self.tokens_in:  # [n, k] -> [1, codebooks, n]; codebooks the stream does not send are -1
            codes = torch.full((1, int(self.model.codebooks), len(frames)), -1, dtype=torch.long)
            codes[0, :self.in_width] = torch.from_numpy(frames.T.astype(np.int64))
            return codes
        x = torch.from_numpy(np.ascontiguousarray(frames.T))  # [channels, T]
        return x.unsqueeze(0) if self._model_channels > 1 else x.unsqueeze(1)

    def _output(self, y: torch.Tensor | np.ndarray | None, final: bool) -> Output:
        if y is not None:
            if isinstance(y, torch.Tensor):
                y = y.detach().cpu().numpy()
            expected = (self.rows, self._model_width)
            if tuple(y.shape[:2]) != expected:
                raise ValueError(f"model output has shape {tuple(y.shape)}, "
                                 f"expected [{self.rows}, {self._model_width}, T]")
            # [rows, K, T] -> [T, rows * K], column r * K + k (K: the values in use); in numpy: a
            # tenth of the per-call cost of the same tensor ops, and this runs for every message
            y = y[:, :self.per_row].transpose(2, 0, 1).reshape(y.shape[-1], -1)
        if self.kind in AUDIO_LIKE:
            return Output(self.kind, audio=self._audio(y, final))
        frames = y if y is not None else np.zeros((0, self.out_channels), self._frame_dtype)
        frames = frames.reshape(len(frames), self.rows, self.per_row)
        out = Output(self.kind, frames=frames, first_frame=self.frames_out)
        self.frames_out += len(frames)
        if self.detector is not None:
            out.events = self.detector.push(frames) + (self.detector.flush() if final else [])
        return out

    def _audio(self, y: np.ndarray | None, final: bool) -> np.ndarray:
        model_audio = np.zeros((0, self.out_channels), np.float32) if y is None else y.astype(np.float32)
        drop = min(self._to_drop, len(model_audio))
        model_audio = model_audio[drop:]
        self._to_drop -= drop
        if final:  # the lead-out and hop padding produce frames past the real input: cut them
            model_audio = model_audio[:max(self.model_valid - self._model_kept, 0)]
        self._model_kept += len(model_audio)
        parts = [self._held, self.from_model.process(model_audio)]
        if final:
            parts.append(self.from_model.flush())
        audio = np.concatenate(parts)
        # never return more than was sent (for token input: the audio its frames stand for)
        sent = self.model_valid * self.sample_rate // self.model_rate if self.tokens_in else self.samples_in
        due = sent - self.samples_out
        if final:
            audio = np.concatenate([audio[:due], np.zeros((max(due - len(audio), 0), self.out_channels), np.float32)])
            self._held = audio[:0]
        else:
            audio, self._held = audio[:due], audio[due:]
        self.samples_out += len(audio)
        return audio
