"""Prometheus metrics of one service instance (its own registry, so several apps can live in one process).

With ``wavestream serve --processes N`` a scrape of the shared port reaches one server at random,
so each server of the group also describes the whole group: ``ServiceMetrics(group_dir=...)``
uses prometheus_client's multiprocess mode. Every server's values live in small memory-mapped
files in ``group_dir`` (a local directory the supervisor creates for the group), written as they
change, and a scrape sums them all. The files of a server that died stay: a counter of the group
is the sum over every server that ever ran, so starting a server again never makes it go down.
Gauges are summed over the live servers only (``mark_dead`` drops a dead server's).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# chunk latencies of interest run from well under a millisecond to a few hops
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.024, 0.032, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)

#: prometheus_client writes every value to files in this directory when it is set as the
#: process starts (it picks its value store on import): the supervisor sets it for its servers
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ServiceMetrics:
    def __init__(self, group_dir: Path | str | None = None):
        """``group_dir``: the directory of the server group this process belongs to (None: a
        single server, whose figures are its own)."""
        self.group_dir = None if group_dir is None else Path(group_dir)
        if self.group_dir is not None and not (getattr(values.ValueClass, "_multiprocess", False)
                                               and os.environ.get(MULTIPROC_ENV) == str(self.group_dir)):
            raise RuntimeError(f"group metrics need {MULTIPROC_ENV}={self.group_dir} in the environment "
                               "before prometheus_client is imported")
        self.registry = CollectorRegistry()
        r = self.registry
        # the multiprocess modes matter only in a group (a single server ignores them): open
        # sessions and connections add up over the live servers; the job counts, which every
        # server reads from the one shared job directory, are those of the latest scrape
        self.active_sessions = Gauge("wavestream_active_sessions", "Streaming sessions open in the engine",
                                     registry=r, multiprocess_mode="livesum")
        self.connections = Gauge("wavestream_websocket_connections", "Open WebSocket connections", registry=r,
                                 multiprocess_mode="livesum")
        self.sessions = Counter("wavestream_sessions", "Streaming sessions by model and how they ended",
                                ["model", "outcome"], registry=r)
        self.chunk_latency = Histogram(
            "wavestream_chunk_latency_seconds",
            "Server time from receiving an audio message to having sent its output", ["model"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("wavestream_batch_size", "Streams stacked into one model step", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.rtf = Histogram("wavestream_rtf",
                             "Real-time factor of each model step: compute seconds / seconds of audio per stream",
                             ["model"], buckets=RTF_BUCKETS, registry=r)
        self.audio_seconds = Counter("wavestream_audio_seconds", "Seconds of input audio processed", ["model", "via"],
                                     registry=r)
        self.errors = Counter("wavestream_errors", "Protocol and request errors by code", ["code"], registry=r)
        self.jobs = Gauge("wavestream_jobs", "Async jobs by status", ["status"], registry=r,
                          multiprocess_mode="livemostrecent")
        if self.group_dir is not None:
            # what a scrape returns: every server's files merged (the registry above holds this one's)
            self.group_registry = CollectorRegistry()
            MultiProcessCollector(self.group_registry, path=str(self.group_dir))

    def observe_batch(self, model: str, size: int, seconds: float, audio_seconds: float) -> None:
        """One model step of ``size`` streams, each ``audio_seconds`` long, that took ``seconds``."""
        self.batch_size.labels(model).observe(size)
        if audio_seconds > 0:
            self.rtf.labels(model).observe(seconds / audio_seconds)

    def render(self) -> bytes:
        """The exposition: this server's figures, or in a group the group's (reads a few small files
        per server that ever ran: call it off the event loop)."""
        return generate_latest(self.registry if self.group_dir is None else self.group_registry)


def mark_dead(group_dir: Path | str, pid: int) -> None:
    """For the supervisor, once server ``pid`` of the group has exited: its gauges no longer count
    (its counters and histograms do, so that the group's never go down)."""
    mark_process_dead(pid, str(group_dir))
