"""Engine and Session: the async API the service drives (see the package docstring)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavestream.models.registry import describe, load_model, model_names
from wavestream.streaming.module import StreamingModule
from wavestream.streaming.resample import check_quality

from .pipeline import Output, StreamPipeline, check_stream_params, per_stream_params
from .scheduler import BatchObserver, Scheduler, Stream


class CapacityError(RuntimeError):
    """``max_sessions`` sessions are open already (the service answers 1013 / 503)."""


def _init_worker() -> None:
    # one intra-op thread per worker: parallelism comes from workers and batching, not from
    # several pools fighting over the same cores
    torch.set_num_threads(1)


def _params_key(params: dict[str, Any]) -> str:
    try:
        return json.dumps(params, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params must be JSON values: {exc}") from None


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _check_params(params: dict[str, Any] | None) -> dict[str, Any]:
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ValueError(f"params must be an object, got {type(params).__name__}")
    _params_key(params)
    return params


def load_stream_model(name: str, params: dict[str, Any] | None = None,
                      weights: str | Path | None = None, allow_untrained: bool = True) -> StreamingModule:
    """Load model ``name`` for streaming with client ``params``.

    ``params`` may only name what the model lists in its ``stream_params`` attribute; they are
    passed to ``load_model`` as config overrides (the engine passes only the construction params,
    see ``Engine.load``). ValueError for an unknown model or bad params; UntrainedModelError (a
    ValueError) for a model without weights unless ``allow_untrained``.
    """
    params = _check_params(params)
    try:
        model = load_model(name, weights, allow_untrained=allow_untrained)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if not params:
        return model
    allowed = tuple(getattr(model, "stream_params", ()))
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} does not take params {unknown}; it takes: {', '.join(allowed) or 'none'}")
    try:
        return load_model(name, weights, **params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad params for model {name!r}: {exc}") from None


#: largest accepted sample magnitude (full scale is 1.0): generous headroom for hot float files,
#: but far below values (1e19, say) that overflow inside a model and come out as NaN
MAX_SAMPLE = 64.0


def _check_range(samples: np.ndarray) -> None:
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if not peak <= MAX_SAMPLE:  # also catches NaN
        raise ValueError(f"sample values must lie within +-{MAX_SAMPLE:g} (1.0 is full scale); got {peak:.3g}")


class Session:
    """One client stream. Calls on one session are serialized; sessions run concurrently."""

    def __init__(self, engine: Engine, name: str, params: dict[str, Any], pipeline: StreamPipeline,
                 stream: Stream, info: dict[str, Any]):
        self.id = info["session"]
        self.engine, self.model_name, self.params = engine, name, params
        self.pipeline = pipeline
        self.info = info
        self._stream = stream
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self._stream.closed

    @property
    def queue_depth(self) -> int:
        """Chunks waiting in this session's queue now."""
        return len(self._stream.chunks)

    @property
    def max_queue_depth(self) -> int:
        """The most chunks that ever waited in this session's queue (never above ``queue_chunks``)."""
        return self._stream.max_queue_depth

    async def process(self, samples: np.ndarray) -> Output:
        """``float32 [n, channels]`` at the session's rate (for a token-input model: integer codes
        ``[n, codebooks]``, see ``info["input"]``) -> the output of every whole hop now ready.

        ValueError for bad samples (the session stays usable); StepError if the model failed on
        this stream (the session stays failed until ``reset``); RuntimeError once closed.
        """
        async with self._lock:
            self._stream.check()
            if not self.pipeline.tokens_in:  # codes are checked against the codebook by the pipeline
                _check_range(samples)
            x = self.pipeline.begin(samples)
            y = await self._stream.run(x) if x is not None else None
            return self.pipeline.end(y)

    async def finish(self) -> Output:
        """End of input: the rest of the output (the stream is then finished until ``reset``)."""
        async with self._lock:
            self._stream.check()
            x = self.pipeline.begin_finish()
            y = await self._stream.run(x) if x is not None else None
            return self.pipeline.end_finish(y)

    def reset(self) -> None:
        """Start a new stream in this session: zero state, empty buffers, failure forgotten."""
        if self.closed:
            raise RuntimeError("session is closed")
        if self._lock.locked():
            raise RuntimeError("cannot reset while a process() or finish() call is running")
        self.pipeline.reset()
        self._stream.clear()

    def close(self) -> None:
        """Release the session (idempotent); pending calls fail with RuntimeError."""
        if not self.closed:
            self._stream.scheduler.remove_stream(self._stream)
            self.engine._sessions.pop(self.id, None)


class Engine:
    def __init__(self, max_batch: int = 32, max_wait: float | None = None, workers: int | None = None,
                 max_sessions: int = 64, queue_chunks: int = 8, max_chunk_hops: int = 32, quality: str = "LL",
                 on_batch: BatchObserver | None = None, allow_untrained: bool = True,
                 weights: dict[str, str | Path] | None = None, max_instances: int = 8):
        for name, value in (("max_batch", max_batch), ("max_sessions", max_sessions),
                            ("queue_chunks", queue_chunks), ("max_chunk_hops", max_chunk_hops),
                            ("max_instances", max_instances)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max_wait is not None and not max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait!r}")
        check_quality(quality)  # the streams' resampler, refused here rather than at each stream's start
        workers = workers if workers is not None else (os.cpu_count() or 1)
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.max_batch, self.max_wait, self.workers = max_batch, max_wait, workers
        self.max_sessions, self.queue_chunks, self.max_chunk_hops = max_sessions, queue_chunks, max_chunk_hops
        self.quality, self.on_batch = quality, on_batch
        #: False: models without trained weights are refused (UntrainedModelError), as the server does
        self.allow_untrained = allow_untrained
        #: model name -> weights file served instead of the shipped one (e.g. converted official weights)
        self.weights = {name: Path(path) for name, path in (weights or {}).items()}
        for name, path in self.weights.items():
            if name not in model_names():
                raise ValueError(f"weights given for unknown model {name!r}; available: {', '.join(model_names())}")
            if not path.is_file():
                raise ValueError(f"weights file {path} for model {name!r} does not exist")
        #: most model instances per model name (one per distinct set of construction params)
        self.max_instances = max_instances
        self.sessions_opened = 0
        self._executor: ThreadPoolExecutor | None = None
        self._models: dict[tuple[str, str], StreamingModule] = {}
        self._loading = threading.Lock()
        self._descriptions: dict[str, dict] = {}
        self._schedulers: dict[tuple[str, str], Scheduler] = {}
        self._sessions: dict[str, Session] = {}

    @property
    def batching(self) -> bool:
        return self.max_batch > 1

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="wavestream-step",
                                                initializer=_init_worker)

    async def aclose(self) -> None:
        """Close every session (pending calls fail), stop the schedulers and the worker threads."""
        for session in list(self._sessions.values()):
            session.close()
        await asyncio.gather(*(s.aclose() for s in self._schedulers.values()))
        self._schedulers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- models --------------------------------------------------------------------------------
    def load(self, name: str, params: dict[str, Any] | None = None) -> StreamingModule:
        """The model instance that serves ``name`` with ``params``, loaded once and then shared.

        A model instance (and its scheduler and metrics label) is keyed by the *construction*
        params only; per-stream params (``per_stream_params``: state and detector params, e.g. a
        codec's bitrate, a keyword threshold) are checked here and set per stream, so any number
        of distinct values share one instance and one batch. ValueError for an unknown model, an
        unknown param or a bad value, or more than ``max_instances`` distinct construction params
        of one model. Safe to call from a worker thread (the service does, so that reading weights
        never stalls the event loop); ``open_session`` loads through it too."""
        return self._resolve(name, params)[1]

    def describe(self, name: str) -> dict:
        """``registry.describe(name)``, with ``trained`` true when this engine serves given weights."""
        if name not in self._descriptions:
            info = describe(name)
            self._descriptions[name] = {**info, "trained": info["trained"] or name in self.weights}
        return self._descriptions[name]

    def _resolve(self, name: str, params: dict[str, Any] | None) -> tuple[tuple[str, str], StreamingModule,
                                                                           dict[str, Any]]:
        """(instance key, shared instance, per-stream params) for a stream of ``name`` with ``params``."""
        params = _check_params(params)
        base = self._instance(name, {})
        allowed = tuple(getattr(base, "stream_params", ()))
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(f"model {name!r} does not take params {unknown}; it takes: {', '.join(allowed) or 'none'}")
        per_stream = set(per_stream_params(base))
        defaults = self.describe(name)["stream_params"]
        # a param given at its default value needs no instance of its own
        construction = {k: v for k, v in params.items() if k not in per_stream and not _same(v, defaults.get(k))}
        stream = {k: v for k, v in params.items() if k in per_stream}
        key = (name, _params_key(construction))
        model = self._instance(name, construction)
        try:
            check_stream_params(model, stream)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad params for model {name!r}: {exc}") from None
        return key, model, stream

    def _instance(self, name: str, construction: dict[str, Any]) -> StreamingModule:
        key = (name, _params_key(construction))
        if key in self._models:
            return self._models[key]
        with self._loading:  # one loader at a time: the instance count stays exact
            if key not in self._models:
                if sum(k[0] == name for k in self._models) >= self.max_instances:
                    raise ValueError(f"model {name!r} already runs {self.max_instances} configurations; "
                                     f"params {construction} would need another model instance")
                self._models[key] = load_stream_model(name, construction, self.weights.get(name),
                                                      allow_untrained=self.allow_untrained)
                self.describe(name)
        return self._models[key]

    def _scheduler(self, key: tuple[str, str], model: StreamingModule) -> Scheduler:
        if key not in self._schedulers:
            max_wait = self.max_wait if self.max_wait is not None else model.hop / model.sample_rate / 4
            name, construction = key
            label = name if construction == "{}" else f"{name}{construction}"
            self._schedulers[key] = Scheduler(label, model, self._executor, max_batch=self.max_batch,
                                              max_wait=max_wait, workers=self.workers,
                                              max_chunk_hops=self.max_chunk_hops, on_batch=self.on_batch)
        return self._schedulers[key]

    def pipeline(self, name: str, sample_rate: int, channels: int = 1,
                 params: dict[str, Any] | None = None) -> StreamPipeline:
        """A stream's pipeline on the shared model instance, with its per-stream params, stepped
        directly (not scheduled): what a session computes, e.g. as an offline reference."""
        return self._pipeline(name, sample_rate, channels, params)[1]

    def _pipeline(self, name: str, sample_rate: int, channels: int,
                  params: dict[str, Any] | None) -> tuple[tuple[str, str], StreamPipeline]:
        key, instance, stream_params = self._resolve(name, params)
        return key, StreamPipeline(instance, sample_rate, channels, self.quality, params=stream_params)

    # -- sessions ------------------------------------------------------------------------------
    def open_session(self, model: str, sample_rate: int, channels: int = 1,
                     params: dict[str, Any] | None = None) -> Session:
        """A new stream. ValueError for an unknown model or bad rate/channels/params;
        CapacityError when ``max_sessions`` are open; RuntimeError before ``start()``."""
        if self._executor is None:
            raise RuntimeError("call `await engine.start()` before opening sessions")
        if len(self._sessions) >= self.max_sessions:
            raise CapacityError(f"at capacity: {self.max_sessions} sessions are open")
        params = _check_params(params)
        key, pipeline = self._pipeline(model, sample_rate, channels, params)
        stream = self._scheduler(key, pipeline.model).add_stream(pipeline, self.queue_chunks)
        instance = pipeline.model  # the description of the model as this stream runs it (e.g. a codec's mode)
        described = {**self.describe(model), "hop": instance.hop, "input": instance.input_kind,
                     "output": instance.output_kind, "params": params}
        info = {"session": uuid.uuid4().hex, "model": described,
                "latency_ms": 1000 * pipeline.latency_seconds, "output": pipeline.output_info()}
        if pipeline.tokens_in:
            info["input"] = pipeline.input_info()
        session = Session(self, model, params, pipeline, stream, info)
        self._sessions[session.id] = session
        self.sessions_opened += 1
        return session

    # -- monitoring ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters for /metrics and benchmarks: per model (and params) and in total.

        ``rtf`` = compute seconds / seconds of audio stepped (summed over streams and channels);
        ``chunk_latency_ms`` = queueing + stepping time of recent chunks inside the engine.
        """
        models = {s.name: s.stats.snapshot() for s in self._schedulers.values()}
        steps = sum(m["steps"] for m in models.values())
        stream_steps = sum(s.stats.stream_steps for s in self._schedulers.values())
        compute = sum(m["compute_seconds"] for m in models.values())
        audio = sum(m["audio_seconds"] for m in models.values())
        return {
            "active_sessions": self.active_sessions,
            "sessions_opened": self.sessions_opened,
            "max_sessions": self.max_sessions,
            "max_batch": self.max_batch,
            "workers": self.workers,
            "batching": self.batching,
            "steps": steps,
            "mean_batch": stream_steps / steps if steps else None,
            "audio_seconds": audio,
            "compute_seconds": compute,
            "rtf": compute / audio if audio else None,
            "models": models,
        }
