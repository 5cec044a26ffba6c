"""A real wavestream server (uvicorn on a free loopback port, in a thread) for the service tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.engine.models import FilterModel, registered_test_models
from wavestream.engine import Output
from wavestream.models.registry import _REGISTRY, register
from wavestream.service.app import Service, WavestreamServer, make_server
from wavestream.service.settings import ServiceSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    server: WavestreamServer
    thread: threading.Thread
    settings: ServiceSettings

    @property
    def service(self) -> Service:
        return self.server.service

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/v1/stream"

    def reference(self, model: str, x: np.ndarray, rate: int, params: dict | None = None) -> Output:
        """What the server's own model instance makes of ``x`` offline (unbatched, one call)."""
        pipeline = self.service.engine.pipeline(model, rate, x.shape[1], params)
        return Output.concat([pipeline.process(x), pipeline.finish()])

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until the server holds no session and no connection (nothing leaked)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.engine.active_sessions == 0 and not self.service.handlers:
                return
            time.sleep(0.02)
        raise AssertionError(f"server not idle: {self.service.engine.active_sessions} sessions, "
                             f"{len(self.service.handlers)} connections")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "server did not stop"


def start_server(data_dir: Path, **overrides) -> RunningServer:
    """A server with test defaults. ``allow_untrained`` is on by default because the test models (and
    new models whose weights are not trained yet) have random weights; pass False to get the
    production behaviour."""
    settings = ServiceSettings(host="127.0.0.1", port=free_port(), data_dir=data_dir,
                               **{"preload": ["enhance"], "max_message_bytes": 256 * 1024,
                                  "allow_untrained": True, **overrides})
    server = make_server(settings, log_level="warning")
    thread = threading.Thread(target=server.run, name=f"uvicorn:{settings.port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return RunningServer(server, thread, settings)


@contextlib.contextmanager
def running_server(data_dir: Path, **overrides) -> Iterator[RunningServer]:
    running = start_server(data_dir, **overrides)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package", autouse=True)
def test_models() -> Iterator[None]:
    """The engine's small test models (every output kind, a failing one) beside the real ones."""
    with registered_test_models():
        yield


class GatedModel(FilterModel):
    """Steps real input only once ``gate`` is set (the probe step of zeros passes): holds a stream
    mid-step for as long as a test needs."""

    gate, entered = threading.Event(), threading.Event()

    def step(self, x, state):
        if x.abs().max() > 0:
            self.entered.set()
            self.gate.wait()
        return super().step(x, state)


@pytest.fixture
def gated_model():
    register("test-gated", "test")(GatedModel)
    GatedModel.gate.clear()
    GatedModel.entered.clear()
    try:
        yield
    finally:
        GatedModel.gate.set()
        _REGISTRY.pop("test-gated", None)


@pytest.fixture(scope="package")
def server(tmp_path_factory, test_models) -> Iterator[RunningServer]:
    """The shared server: generous limits, no API key."""
    with running_server(tmp_path_factory.mktemp("data"), max_sessions=48, idle_timeout=30) as running:
        yield running


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=60) as client:
        yield client


def signal(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: a gliding harmonic tone with a syllable envelope, plus some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.empty((len(t), channels), np.float32)
    for c in range(channels):
        f0 = 110 + 40 * c + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + c)
        out[:, c] = 0.2 * envelope * voiced + 0.02 * rng.standard_normal(len(t))
    return out


def run(coro):
    return asyncio.run(coro)
