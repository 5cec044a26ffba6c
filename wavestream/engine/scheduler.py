"""Cross-stream batching: one Scheduler per loaded model gathers ready chunks from many streams,
stacks their inputs and states, runs ONE ``model.step`` on a worker thread and splits the results.

Rules:
- A stream has at most one chunk in a step at a time (its next chunk needs the state the current
  one produces), and its chunks wait in a bounded queue (``queue_chunks``): a client far ahead of
  real time waits in ``Stream.run`` instead of growing memory.
- A batch runs when ``max_batch`` streams are ready or the oldest ready chunk has waited
  ``max_wait`` seconds, and only while fewer than ``workers`` batches are in flight (so that under
  load the ready set grows into bigger batches instead of queueing small ones).
- Scheduling is event-driven: a stream that becomes ready joins a FIFO of ready streams, and the
  dispatch decision runs right there, when a batch ends, or when the oldest chunk's wait is up (one
  timer). Nothing scans all streams or wakes a task per chunk: the cost per chunk does not grow
  with the number of streams.
- Chunk lengths: a client that sends a large message gets several hops per chunk (at most
  ``max_chunk_hops``). A batch steps the *common* number of hops: the fewest hops any of its chunks
  has left; longer chunks keep their remainder at the head of their queue for the next batch. So
  streams with different chunk sizes still share steps, and every step has one shape.
- A step that raises is retried stream by stream, so the exception reaches only the stream(s)
  whose input makes it fail; they are marked failed, the others go on.
- States live in a ``StateBank``: the rows of a few preallocated tensors, gathered for a step and
  written back after it with one tensor op per state entry, whatever the batch size (stacking and
  splitting per-stream tensors cost a few ops per stream and entry, which at a batch of 32 is a
  sixth of the model's own time). ``pipeline.state`` of a scheduled stream views its rows.
- A bug in the scheduler itself fails the streams it was serving (their callers get StepError, the
  service closes them with 1011) and the scheduler goes on serving the others and new ones; a
  batch observer that raises is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch

from wavestream.streaming.module import StreamingModule
from wavestream.streaming.state import State

from .pipeline import StreamPipeline

log = logging.getLogger(__name__)

#: ``on_batch(model, streams, compute_seconds, audio_seconds_per_stream)`` after every step
BatchObserver = Callable[[str, int, float, float], None]
#: a batch whose wait is up within this many seconds goes now: loop timers fire up to ~1 ms early
TIMER_SLACK = 0.001


class StepError(RuntimeError):
    """The model step failed for this stream (the cause is chained); the stream stays failed until reset."""


@dataclass(eq=False)
class _Chunk:
    x: torch.Tensor                      # [rows, C, n * hop] model-rate input
    future: asyncio.Future
    queued_at: float
    done: int = 0                        # time steps already stepped
    outputs: list[np.ndarray] = field(default_factory=list)


class StateBank:
    """The states of one scheduler's streams, as rows of preallocated tensors (batch on dim 0).

    A stream owns ``pipeline.rows`` consecutive rows, and its ``pipeline.state`` is a dict of views
    on them: it always reads what the stream carries now. Rows of closed streams are reused; the
    tensors grow (doubling) and never shrink, like the streams' own tensors would at their peak."""

    def __init__(self):
        self.tensors: State = {}
        self._layout: dict[str, tuple] | None = None  # key -> (shape after the batch dim, dtype)
        self._capacity = self._top = 0
        self._free: dict[int, list[int]] = {}  # row count -> starts of released ranges
        self._rows: dict[Stream, range] = {}

    def add(self, stream: Stream) -> None:
        """Give ``stream`` rows holding its ``pipeline.state``; ValueError if that state does not
        have the layout of the others (a model instance gives every stream the same one)."""
        state, n = stream.pipeline.state, stream.pipeline.rows
        layout = {k: (tuple(v.shape[1:]), v.dtype) for k, v in state.items()}
        if self._layout is None:
            self._layout = layout
        elif layout != self._layout:
            raise ValueError(f"this stream's state layout {layout} differs from its model's {self._layout}")
        free = self._free.get(n)
        if free:
            start = free.pop()
        else:
            if self._top + n > self._capacity:
                self._grow(max(16, 2 * self._capacity, self._top + n))
            start, self._top = self._top, self._top + n
        self._rows[stream] = range(start, start + n)
        self.write(stream)

    def write(self, stream: Stream) -> None:
        """Store ``stream.pipeline.state`` (e.g. a fresh one after a reset) in its rows."""
        rows, state = self._rows[stream], stream.pipeline.state
        for key, tensor in self.tensors.items():
            tensor[rows.start:rows.stop] = state[key]
        self._point(stream)

    def release(self, stream: Stream) -> None:
        rows = self._rows.pop(stream, None)
        if rows is not None:
            self._free.setdefault(len(rows), []).append(rows.start)

    def rows(self, stream: Stream) -> range:
        return self._rows[stream]

    def scatter(self, index: torch.Tensor, state: State) -> None:
        """Write a step's new state (row i of ``state`` to bank row ``index[i]``)."""
        for key, tensor in self.tensors.items():
            tensor.index_copy_(0, index, state[key])

    def _point(self, stream: Stream) -> None:
        rows = self._rows[stream]
        stream.pipeline.state = {key: tensor[rows.start:rows.stop] for key, tensor in self.tensors.items()}

    def _grow(self, capacity: int) -> None:
        # steps in flight gathered from the old tensors (still valid for their rows) and write back
        # into the new ones, on the event loop: nothing is lost
        grown = {key: torch.zeros((capacity, *shape), dtype=dtype) for key, (shape, dtype) in self._layout.items()}
        for key, tensor in self.tensors.items():
            grown[key][:self._top] = tensor[:self._top]
        self.tensors, self._capacity = grown, capacity
        for stream in self._rows:
            self._point(stream)


def gather(tensors: State, index: torch.Tensor) -> State:
    """The rows ``index`` of a bank's tensors: a step's input state (a copy: the step cannot touch the bank)."""
    return {key: tensor.index_select(0, index) for key, tensor in tensors.items()}


class Stream:
    """The scheduler's side of one session: its pipeline (whose state lives in the scheduler's
    bank) and its bounded queue of chunks."""

    def __init__(self, scheduler: Scheduler, pipeline: StreamPipeline, queue_chunks: int):
        self.scheduler, self.pipeline = scheduler, pipeline
        self.queue_chunks = queue_chunks
        self.chunks: deque[_Chunk] = deque()
        self._slots = asyncio.Semaphore(queue_chunks)
        self.busy = False
        self.ready_since = 0.0
        self.queued = False  # in the scheduler's ready FIFO
        self.error: BaseException | None = None
        self.closed = False
        self.max_queue_depth = 0

    @property
    def ready(self) -> bool:
        return bool(self.chunks) and not self.busy

    async def run(self, x: torch.Tensor) -> np.ndarray:
        """Step ``x`` (whole hops, ``[rows, C, T]``) through the scheduler; return the model output
        (as a numpy array)."""
        hop = self.pipeline.hop
        size = self.scheduler.max_chunk_hops * hop
        futures: list[asyncio.Future] = []
        loop = asyncio.get_running_loop()
        try:
            for start in range(0, x.shape[-1], size):
                await self._slots.acquire()  # back-pressure: wait while the queue is full
                if self.error is not None or self.closed:
                    self._slots.release()
                    break
                chunk = _Chunk(x[..., start:start + size] if x.shape[-1] > size else x, loop.create_future(),
                               time.perf_counter())
                self.chunks.append(chunk)
                futures.append(chunk.future)
                self.max_queue_depth = max(self.max_queue_depth, len(self.chunks))
                if len(self.chunks) == 1 and not self.busy:
                    self.scheduler.make_ready(self, chunk.queued_at)
            self.check()
            if len(futures) == 1:  # the usual case: one chunk, no copy
                return await futures[0]
            return np.concatenate([await f for f in futures], axis=-1)
        except asyncio.CancelledError:
            # the caller gave up halfway: the state no longer matches what the client saw
            self.fail(StepError("processing was cancelled midway; reset the session"))
            raise
        finally:
            for f in futures:  # mark exceptions as seen (the first one is raised above)
                if f.done() and not f.cancelled():
                    f.exception()

    def check(self) -> None:
        if self.closed:
            raise RuntimeError("session is closed")
        if self.error is not None:
            raise self.error

    def fail(self, error: BaseException) -> None:
        """Mark failed and drop every queued chunk (their awaiters get the error)."""
        if self.error is None:
            self.error = error
        self._drop_chunks(error)

    def clear(self) -> None:
        """The session was reset: forget a failure, carry the pipeline's fresh state from here."""
        self.error = None
        self.scheduler.bank.write(self)

    def close(self) -> None:
        self.closed = True
        self._drop_chunks(RuntimeError("session is closed"))

    def _drop_chunks(self, error: BaseException) -> None:
        self.scheduler.unready(self)
        while self.chunks:
            chunk = self.chunks.popleft()
            if not chunk.future.done():
                chunk.future.set_exception(error)
            self._slots.release()


class SchedulerStats:
    """Counters one scheduler keeps; ``snapshot`` is what ``Engine.stats`` reports."""

    def __init__(self, latency_window: int = 4096):
        self.steps = 0
        self.stream_steps = 0            # stream-steps: sum of batch sizes
        self.batch_sizes: Counter[int] = Counter()
        self.compute_seconds = 0.0
        self.audio_seconds = 0.0         # seconds of audio stepped, summed over rows (channels)
        self.chunks = 0
        self.failures = 0
        self.chunk_latencies: deque[float] = deque(maxlen=latency_window)  # queued -> stepped, seconds

    def snapshot(self) -> dict:
        lat = sorted(self.chunk_latencies)

        def pct(q: float) -> float | None:
            return 1000 * lat[min(int(q * len(lat)), len(lat) - 1)] if lat else None

        return {
            "steps": self.steps,
            "chunks": self.chunks,
            "failures": self.failures,
            "mean_batch": self.stream_steps / self.steps if self.steps else None,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "audio_seconds": self.audio_seconds,
            "compute_seconds": self.compute_seconds,
            "rtf": self.compute_seconds / self.audio_seconds if self.audio_seconds else None,
            "chunk_latency_ms": {"mean": 1000 * sum(lat) / len(lat) if lat else None,
                                 "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                                 "max": 1000 * lat[-1] if lat else None},
        }


class Scheduler:
    def __init__(self, name: str, model: StreamingModule, executor: Executor, *, max_batch: int,
                 max_wait: float, workers: int, max_chunk_hops: int, on_batch: BatchObserver | None = None):
        self.name, self.model, self.executor = name, model, executor
        self.max_batch, self.max_wait, self.workers = max_batch, max_wait, workers
        self.max_chunk_hops = max_chunk_hops
        self.on_batch = on_batch
        self.streams: list[Stream] = []
        self.stats = SchedulerStats()
        self.bank = StateBank()
        self._ready: deque[Stream] = deque()  # ready streams, oldest first
        self._in_flight: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    def add_stream(self, pipeline: StreamPipeline, queue_chunks: int) -> Stream:
        stream = Stream(self, pipeline, queue_chunks)
        self.bank.add(stream)
        self.streams.append(stream)
        return stream

    def remove_stream(self, stream: Stream) -> None:
        stream.close()
        if stream in self.streams:
            self.streams.remove(stream)
            self.bank.release(stream)

    async def aclose(self) -> None:
        for stream in list(self.streams):
            self.remove_stream(stream)
        if self._timer is not None:
            self._timer.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    # -- scheduling ------------------------------------------------------------------------------
    def make_ready(self, stream: Stream, since: float) -> None:
        """``stream`` has a chunk to step and no step running: queue it and dispatch what is due."""
        self._requeue(stream, since)
        self._poke()

    def _requeue(self, stream: Stream, since: float) -> None:
        stream.ready_since = since
        if not stream.queued:
            stream.queued = True
            self._ready.append(stream)

    def unready(self, stream: Stream) -> None:
        """``stream`` dropped its chunks (failed, closed): out of the ready FIFO."""
        if stream.queued:
            stream.queued = False
            self._ready.remove(stream)

    def _poke(self) -> None:
        try:
            self._dispatch_due()
        except Exception as exc:
            # a bug here must not leave sessions waiting forever on futures nobody resolves: fail
            # the streams it was serving (their chunks are dropped, so none stays ready); the
            # scheduler itself carries on for the others and for new sessions
            log.exception("scheduler for %r failed; failing its %d streams", self.name, len(self.streams))
            for stream in self.streams:
                stream.fail(StepError(f"scheduler for {self.name!r} failed: {exc!r}"))

    def _dispatch_due(self) -> None:
        while self._ready and len(self._in_flight) < self.workers:
            due = self._ready[0].ready_since + self.max_wait
            if len(self._ready) < self.max_batch and time.perf_counter() < due - TIMER_SLACK:
                self._wake_at(due)
                return
            batch = [self._ready.popleft() for _ in range(min(self.max_batch, len(self._ready)))]
            for stream in batch:
                stream.queued = False
            self._dispatch(batch)

    def _wake_at(self, due: float) -> None:
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer_due = due
        # event loop timers have millisecond resolution (uvloop truncates): round up, never spin
        delay = math.ceil(max(due - time.perf_counter(), 0.0) * 1000) / 1000
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._poke()

    def _dispatch(self, batch: list[Stream]) -> None:
        hop = self.model.hop
        hops = min((s.chunks[0].x.shape[-1] - s.chunks[0].done) // hop for s in batch)
        items = [(s, s.chunks[0], s.chunks[0].x[..., s.chunks[0].done:s.chunks[0].done + hops * hop]) for s in batch]
        rows = [self.bank.rows(s) for s in batch]
        task = asyncio.get_running_loop().create_task(self._execute(items, rows, hops))
        self._in_flight.add(task)
        for stream in batch:  # only now: a stream is busy exactly while a task will clear it
            stream.busy = True

    async def _execute(self, items: list, rows: list[range], hops: int) -> None:
        try:
            await self._execute_batch(items, rows, hops)
        except Exception as exc:  # a bug in the bookkeeping: fail this batch's streams, never leave them busy
            log.exception("batch of %r failed", self.name)
            for stream, *_ in items:
                stream.busy = False
                stream.fail(StepError(f"scheduler for {self.name!r} failed: {exc!r}"))
        finally:
            # leave the in-flight set first, so that the dispatch sees the free worker
            self._in_flight.discard(asyncio.current_task())
            self._poke()

    async def _execute_batch(self, items: list, rows: list[range], hops: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            outputs, writes, seconds = await loop.run_in_executor(
                self.executor, self._step_batch, [x for _, _, x in items], rows, self.bank.tensors)
        except BaseException as exc:  # the executor itself failed (e.g. shut down): fail the batch
            outputs, writes, seconds = [exc] * len(items), [], 0.0
        stream_seconds = hops * self.model.hop / self.model.sample_rate
        self.stats.steps += 1
        self.stats.stream_steps += len(items)
        self.stats.batch_sizes[len(items)] += 1
        self.stats.compute_seconds += seconds
        self.stats.audio_seconds += stream_seconds * sum(x.shape[0] for _, _, x in items)
        if self.on_batch is not None:
            try:
                self.on_batch(self.name, len(items), seconds, stream_seconds)
            except Exception:  # an observer (metrics) bug must not cost the streams their output
                log.exception("batch observer of %r failed", self.name)
        # closed, failed or reset while stepping: the result belongs to no one
        kept = [not (s.closed or s.error is not None or not s.chunks or s.chunks[0] is not chunk)
                and not isinstance(y, BaseException) for (s, chunk, _), y in zip(items, outputs, strict=True)]
        for members, index, state in writes:
            self._write_back(members, index, state, rows, kept)
        now = time.perf_counter()
        for (stream, chunk, x), y, keep in zip(items, outputs, kept, strict=True):
            stream.busy = False
            if not keep:
                if isinstance(y, BaseException) and stream.chunks and stream.chunks[0] is chunk and not stream.closed \
                        and stream.error is None:
                    self.stats.failures += 1
                    error = StepError(f"model {self.name!r} failed: {y}")
                    error.__cause__ = y
                    stream.fail(error)
                continue
            chunk.outputs.append(y)
            chunk.done += x.shape[-1]
            if chunk.done == chunk.x.shape[-1]:
                stream.chunks.popleft()
                stream._slots.release()
                self.stats.chunks += 1
                self.stats.chunk_latencies.append(now - chunk.queued_at)
                if not chunk.future.done():
                    chunk.future.set_result(chunk.outputs[0] if len(chunk.outputs) == 1 else
                                            np.concatenate(chunk.outputs, axis=-1))
            if stream.chunks:
                self._requeue(stream, now)

    def _write_back(self, members: list[int], index: torch.Tensor, state: State, rows: list[range],
                    kept: list[bool]) -> None:
        """Store a step's new state for the ``members`` (positions in the batch) whose result is kept."""
        if all(kept[i] for i in members):
            self.bank.scatter(index, state)
            return
        positions, offset = [], 0
        for i in members:
            if kept[i]:
                positions.extend(range(offset, offset + len(rows[i])))
            offset += len(rows[i])
        if positions:
            select = torch.tensor(positions)
            self.bank.scatter(index[select], {key: value[select] for key, value in state.items()})

    # -- on a worker thread ----------------------------------------------------------------------
    def _step_batch(self, xs: list[torch.Tensor], rows: list[range], tensors: State) -> tuple[list, list, float]:
        """(output or exception per stream, the new states to write back, compute seconds)."""
        start = time.perf_counter()
        with torch.inference_mode():
            try:
                outputs, writes = self._step(xs, rows, tensors, list(range(len(xs))))
            except Exception as exc:
                if len(xs) == 1:
                    outputs, writes = [exc], []
                else:  # find out whose input fails: step each stream alone
                    outputs, writes = [], []
                    for i, (x, stream_rows) in enumerate(zip(xs, rows, strict=True)):
                        try:
                            output, write = self._step([x], [stream_rows], tensors, [i])
                        except Exception as single:
                            output, write = [single], []
                        outputs += output
                        writes += write
        return outputs, writes, time.perf_counter() - start

    def _step(self, xs: list[torch.Tensor], rows: list[range], tensors: State,
              members: list[int]) -> tuple[list[np.ndarray], list]:
        index = torch.tensor([row for stream_rows in rows for row in stream_rows], dtype=torch.long)
        y, state = self.model.step(xs[0] if len(xs) == 1 else torch.cat(xs), gather(tensors, index))
        # each stream's rows as a numpy view: slicing and the pipeline's reshaping cost a tenth of tensor ops
        y = y.detach().cpu().numpy()
        outputs, start = [], 0
        for stream_rows in rows:
            outputs.append(y[start:start + len(stream_rows)])
            start += len(stream_rows)
        return outputs, [(members, index, state)]
