"""Prometheus metrics of one service instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# chunk latencies of interest run from well under a millisecond to a few hops
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.024, 0.032, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class ServiceMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_sessions = Gauge("wavestream_active_sessions", "Streaming sessions open in the engine", registry=r)
        self.connections = Gauge("wavestream_websocket_connections", "Open WebSocket connections", registry=r)
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
        self.jobs = Gauge("wavestream_jobs", "Async jobs by status", ["status"], registry=r)

    def observe_batch(self, model: str, size: int, seconds: float, audio_seconds: float) -> None:
        """One model step of ``size`` streams, each ``audio_seconds`` long, that took ``seconds``."""
        self.batch_size.labels(model).observe(size)
        if audio_seconds > 0:
            self.rtf.labels(model).observe(seconds / audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
