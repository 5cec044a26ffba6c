"""Running the server: one process, or ``--processes N`` processes sharing one port.

One server process handles every message of its streams on one event-loop thread (the WebSocket
protocol, the ASGI stack, decoding, the pipeline, sending): on a machine with several cores that
thread is the ceiling while the engine's step threads still have room. ``--processes N`` runs N
complete servers (each its own engine, batching its own streams, REST, metrics) that each bind
the same port with ``SO_REUSEPORT``, so the kernel spreads new connections over them. They share
``data_dir``, through which jobs are shared (see jobs.py). ``/metrics`` describes the whole group,
whichever server answers: each writes its figures to a directory of the group (metrics.py).

The parent process only supervises: it starts the N servers, starts again one that dies (the
others keep serving; the streams of the dead one are lost, as with any crash), and passes SIGINT
or SIGTERM on to every server, each of which then drains its streams as a single process does. A
server that dies before it ever became ready stops the whole group (bad settings, a weights file
that does not load): starting it again would only fail again.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .metrics import MULTIPROC_ENV, mark_dead
from .settings import ServiceSettings

log = logging.getLogger(__name__)

#: a server that dies after it was ready is started again after this many seconds
RESTART_DELAY = 1.0
#: the parent waits this long beyond ``shutdown_timeout`` for its servers to drain, then kills them
STOP_MARGIN = 10.0


def tune_gc() -> None:
    """Garbage-collector settings for a server process, once its code and app are loaded.

    Every message allocates short-lived objects (futures, frames, arrays), so with the default
    thresholds the collector runs hundreds of times a second and each full pass walks every object
    of torch, FastAPI and the models: about 5 % of a loaded server's CPU. Freezing what exists
    after start-up takes those objects out of every collection, and a larger young generation
    makes collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve(settings: ServiceSettings, log_level: str, sock: socket.socket | None = None,
          on_started: Callable[[], None] | None = None, metrics_dir: str | None = None) -> None:
    """Run one server until it is stopped: the single-process mode, and each server of a group.

    ``sock``: a bound socket to serve on instead of binding ``settings.host``/``port``;
    ``on_started``: called once it accepts connections; ``metrics_dir``: the
    group's metrics directory (metrics.py). ValueError for settings the engine refuses."""
    from .app import make_server  # FastAPI and torch load only when serving

    server = make_server(settings, metrics_dir=None if metrics_dir is None else Path(metrics_dir), log_level=log_level)
    tune_gc()
    # said from the event loop as soon as it listens: no stream is served before it is said, so a
    # server that dies holding streams is never taken for one that failed to start
    server.on_started = on_started
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl+C it handled (after the graceful shutdown): not an error


def _bound(host: str, port: int, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def shared_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``: every server of the group binds its
    own, and the kernel hands each new connection to one of those that listen. A server listens
    only once its app has started (uvicorn does it), so no connection waits on a server that is
    still loading its models."""
    return _bound(host, port, reuse_port=True)


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent ends, however the parent ends (a
    killed supervisor must not leave servers holding the port)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child(settings: dict[str, Any], index: int, log_level: str, ready: Connection, metrics_dir: str) -> None:
    """One server of the group, in a fresh interpreter (multiprocessing's spawn); it sends on
    ``ready`` once it serves, so that the supervisor can tell a crash from a failed start."""
    os.setpgrp()  # the terminal's Ctrl+C reaches the supervisor only, which passes it on once
    _die_with_parent()
    logging.basicConfig(level=log_level.upper(),
                        format=f"%(asctime)s %(levelname)s [{index}] %(name)s: %(message)s")
    settings = ServiceSettings(**settings)
    try:
        serve(settings, log_level, shared_socket(settings.host, settings.port), lambda: ready.send(True),
              metrics_dir)
    except ValueError as exc:  # settings the engine refuses, e.g. weights for an unknown model
        print(f"wavestream serve: bad settings: {exc}", flush=True)
        sys.exit(2)


class Supervisor:
    """Starts ``processes`` servers on one port and keeps them running until told to stop."""

    def __init__(self, settings: ServiceSettings, processes: int, log_level: str):
        self.settings, self.processes, self.log_level = settings, processes, log_level
        self.context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self.children: list[Any] = [None] * processes
        self.ready: list[Connection | None] = [None] * processes  # a pipe per server: it says when it serves
        self.stopping = False
        self.metrics_dir: str | None = None  # the group's metric files (run)

    def child_settings(self, port: int) -> dict[str, Any]:
        values = self.settings.model_dump(mode="json", exclude={"processes"})
        values["port"] = port
        if "workers" not in self.settings.model_fields_set:
            # the cores are shared among the servers: one engine thread per core in all
            values["workers"] = max(1, (os.cpu_count() or 1) // self.processes)
        return values

    def start(self, index: int, port: int) -> None:
        if self.stopping:
            return
        self.ready[index], sender = self.context.Pipe(duplex=False)
        child = self.context.Process(target=_child, name=f"wavestream-server-{index}", daemon=False,
                                     args=(self.child_settings(port), index, self.log_level, sender,
                                           self.metrics_dir))
        child.start()
        sender.close()
        self.children[index] = child
        log.info("server %d started (pid %d)", index, child.pid)

    def served(self, index: int) -> bool:
        """Whether server ``index`` said it serves (a pipe closed by its exit says nothing)."""
        try:
            return self.ready[index].poll() and self.ready[index].recv()
        except EOFError:
            return False

    def stop(self, signum=None, frame=None) -> None:
        if not self.stopping:
            self.stopping = True
            for child in self.children:
                if child is not None and child.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGTERM)  # each server drains its own streams

    def run(self) -> int:
        # this socket only holds the port (it never listens, so it gets no connections): port 0
        # picks one free port for the whole group, and no other program can take it meanwhile
        try:
            if self.settings.port:  # in use, even by another group with SO_REUSEPORT: refuse, as one server would
                _bound(self.settings.host, self.settings.port, reuse_port=False).close()
            holder = shared_socket(self.settings.host, self.settings.port)
        except OSError as exc:
            print(f"wavestream serve: cannot bind {self.settings.host}:{self.settings.port}: {exc}")
            return 1
        port = holder.getsockname()[1]
        # the servers' metric files (metrics.py): a fresh directory per group, so that no file of an
        # earlier group is summed in; on a local disk, not in data_dir, which may be a network
        # file system shared with other machines. prometheus_client reads the variable as it is
        # imported, so the servers get it in their environment from the start.
        self.metrics_dir = tempfile.mkdtemp(prefix="wavestream-metrics-")
        os.environ[MULTIPROC_ENV] = self.metrics_dir
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        log.info("wavestream: %d server processes on %s:%d", self.processes, self.settings.host, port)
        try:
            for index in range(self.processes):
                self.start(index, port)
            return self._supervise(port)
        finally:
            self.stop()
            deadline = time.monotonic() + self.settings.shutdown_timeout + STOP_MARGIN
            for child in self.children:
                if child is not None:
                    child.join(max(0.0, deadline - time.monotonic()))
                    if child.is_alive():
                        log.warning("server pid %d did not stop in time; killing it", child.pid)
                        child.kill()
                        child.join()
            holder.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _supervise(self, port: int) -> int:
        while not self.stopping:
            wait([child.sentinel for child in self.children], timeout=1.0)
            for index, child in enumerate(self.children):
                if self.stopping or child.is_alive():
                    continue
                if not self.served(index):
                    log.error("server %d exited with %s before it was ready; stopping", index, child.exitcode)
                    return child.exitcode or 1
                log.warning("server %d (pid %d) exited with %s; starting it again", index, child.pid, child.exitcode)
                # its open sessions and connections are gone; its counters keep counting in the sums
                mark_dead(self.metrics_dir, child.pid)
                time.sleep(RESTART_DELAY)
                self.start(index, port)
        return 0


def serve_processes(settings: ServiceSettings, processes: int, log_level: str) -> int:
    """`wavestream serve --processes N` (N > 1); the exit status."""
    return Supervisor(settings, processes, log_level).run()
