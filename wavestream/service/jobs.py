"""Async jobs for long files, kept in one job directory that any number of servers may share.

Layout: ``DATA_DIR/jobs/<id>/job.json`` (status, replaced atomically), ``input.<ext>`` (the
upload), ``result.<format>`` and ``claim`` (below). The directory is the only place a job lives:
every server (a `wavestream serve` process, or each replica of the Ray Serve deployment, all given
the same ``data_dir``) reads it, so a job created through one replica is polled, downloaded or
deleted through any other, and the queue cap and the retention count every job of every replica.
Finished jobs are deleted after the retention time or by ``DELETE /v1/jobs/{id}``.

Exactly one runner runs a job: it runs it only while it holds an exclusive ``flock`` on the job's
``claim`` file, taken without waiting. The operating system (on a network file system, its lock
manager) drops the lock when the holder's process ends, however it ends. So a job whose runner
died (a killed replica, a crashed machine, a restart) is a queued or running job whose claim is
free, and the next runner that looks takes it and runs it again from its input: an interrupted
run costs time, nothing else. Runners look every ``POLL_SECONDS`` and at once when their own
server takes a job, and each runs one job at a time, so jobs spread over idle replicas.

Why this design: it is the single-process store with a lock per job, one code path for one
server and for many. Leases written into files would need heartbeats, clocks that agree across
machines and fencing of a runner that was only slow; a store actor in Ray would be a second store
beside the single-process one, would still need shared files for uploads and results (up to
``max_upload_mb`` each), and would need its own way to notice dead owners. The price: ``data_dir``
must be one file system with working locks for all servers (a local disk for one machine; across
machines NFSv4 not mounted ``nolock``/``local_lock``, CephFS, or a cloud file store with locks),
and listings read the job files (they keep the parsed ones until a file changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed"]
_ID = re.compile(r"^[0-9a-f]{32}$")
#: seconds between a runner's looks for work queued by other servers (or left by dead runners)
POLL_SECONDS = 1.0


class Job(BaseModel):
    id: str
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    format: str
    status: JobStatus = "queued"
    created: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    input_name: str
    #: seconds of input audio (from validation)
    duration: float
    #: how many times a run was started (> 1 after a runner died or stopped during one)
    attempts: int = 0
    #: the runner of the latest attempt (host:pid:runner), for operators; not shown to clients
    runner: str | None = None

    def public(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"input_name", "runner"})
        data["result_url"] = f"/v1/jobs/{self.id}/result" if self.status == "done" else None
        return data


class JobBusy(RuntimeError):
    """The job is running and cannot be deleted now."""


class Claim:
    """An exclusive lock on a file, held until ``release`` or until this process ends."""

    #: (device, inode) of the files this process holds claims on. On a network file system flock
    #: becomes a POSIX lock, which never conflicts within one process and is dropped when the
    #: process closes *any* descriptor of the file; so claims of one process are kept apart here,
    #: and a held file is never opened a second time
    _held: set[tuple[int, int]] = set()
    _guard = threading.Lock()

    def __init__(self, fd: int, key: tuple[int, int]):
        self._fd: int | None = fd
        self._key = key

    @classmethod
    def take(cls, path: Path) -> Claim | None:
        """The claim on ``path`` (created if missing), or None if another holder has it or the
        directory is gone. Never waits."""
        with cls._guard:
            try:
                known = os.stat(path)
                if (known.st_dev, known.st_ino) in cls._held:
                    return None
            except FileNotFoundError:
                pass
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                return None
            try:
                opened = os.fstat(fd)
                key = (opened.st_dev, opened.st_ino)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # the file may have been deleted (and made anew) between open and lock: a lock on
                # a file no longer at ``path`` guards nothing
                here = os.stat(path)
                if (here.st_dev, here.st_ino) != key:
                    raise FileNotFoundError(path)
            except (BlockingIOError, FileNotFoundError):
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            cls._held.add(key)
            return cls(fd, key)

    def release(self) -> None:
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)  # closing the only descriptor drops the lock
                self._held.discard(self._key)
                self._fd = None


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def spool_dir(tmp: Path) -> tuple[Path, Claim]:
    """A directory of this server's own for receiving uploads, ``tmp/<random>``, claimed for as long
    as the server runs. Servers sharing ``tmp`` keep out of each other's; what dead servers were
    receiving (entries whose claim is free) is removed first."""
    tmp.mkdir(parents=True, exist_ok=True)
    for base in {entry.name.removesuffix(".lock") for entry in tmp.iterdir()}:
        claim = Claim.take(tmp / f"{base}.lock")
        if claim is None:
            continue  # a live server's
        try:
            remove(tmp / base)
            (tmp / f"{base}.lock").unlink(missing_ok=True)
        finally:
            claim.release()
    name = uuid.uuid4().hex
    claim = Claim.take(tmp / f"{name}.lock")
    if claim is None:
        raise RuntimeError(f"cannot lock {tmp / name}.lock")
    (tmp / name).mkdir()
    return tmp / name, claim


class JobStore:
    """Jobs in a directory that several servers may share (see the module doc). Every read goes to
    the files, so what one server writes, all see; parsed job files are kept until they change.
    Finished jobs older than ``retention`` seconds are deleted (at start and whenever a job is
    created); 0 keeps them forever."""

    def __init__(self, data_dir: Path, retention: float = 0.0):
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        # job id -> (identity of the job.json read, the job or None if unreadable)
        self._parsed: dict[str, tuple[tuple[int, int, int], Job | None]] = {}
        for entry in self.root.glob(".deleted-*"):  # a delete interrupted before its files were gone
            remove(entry)
        self.expire()

    def job_dir(self, job_id: str) -> Path:
        if not _ID.match(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def create(self, model: str, params: dict, fmt: str, upload: Path, suffix: str, duration: float) -> Job:
        """Take ownership of the spooled ``upload`` (moved into the job's directory)."""
        self.expire()
        job = Job(id=uuid.uuid4().hex, model=model, params=params, format=fmt, created=time.time(),
                  input_name=f"input{suffix}", duration=duration)
        directory = self.root / job.id
        directory.mkdir()
        shutil.move(str(upload), directory / job.input_name)
        self.save(job)  # last: a runner sees the job only once its input is in place
        return job

    def save(self, job: Job) -> None:
        path = self.root / job.id / "job.json"
        tmp = path.with_name(f"job.{uuid.uuid4().hex}.tmp")
        tmp.write_text(job.model_dump_json())
        tmp.replace(path)  # atomic: a reader sees the old or the new status, never half of one

    def get(self, job_id: str) -> Job:
        """The job as its file says now (a copy: change it, then ``save``); KeyError if there is none."""
        job = self._read(self.job_dir(job_id) / "job.json")
        if job is None:
            raise KeyError(job_id)
        return job.model_copy()

    def _read(self, path: Path) -> Job | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        # job.json is only ever replaced, so a new inode or mtime means new content
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        known = self._parsed.get(path.parent.name)
        if known is not None and known[0] == key:
            return known[1]
        try:
            job: Job | None = Job.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.error("skipping unreadable job file %s: %s", path, exc)  # once per version of the file
            job = None
        self._parsed[path.parent.name] = (key, job)
        return job

    def _all(self) -> list[Job]:
        jobs, seen = [], set()
        for entry in os.scandir(self.root):
            if _ID.match(entry.name):
                seen.add(entry.name)
                job = self._read(Path(entry.path) / "job.json")
                if job is not None:
                    jobs.append(job)
        for gone in self._parsed.copy().keys() - seen:  # a copy: other threads read jobs too
            self._parsed.pop(gone, None)
        return jobs

    def claim(self, job_id: str) -> Claim | None:
        """The right to run (or delete) the job, or None while another runner holds it."""
        return Claim.take(self.job_dir(job_id) / "claim")

    def delete(self, job_id: str) -> None:
        """Delete a job and its files; KeyError if there is none, JobBusy while it runs."""
        directory = self.job_dir(job_id)
        claim = self.claim(job_id)
        if claim is None:
            if directory.exists():
                raise JobBusy(f"job {job_id} is running; delete it once it is done")
            raise KeyError(job_id)
        try:
            self.get(job_id)
            # renamed away first, so that no runner can open the job (or make a claim file in it)
            # while its files are removed
            trash = self.root / f".deleted-{job_id}-{uuid.uuid4().hex[:8]}"
            directory.rename(trash)
        finally:
            claim.release()
        shutil.rmtree(trash, ignore_errors=True)

    def expire(self) -> int:
        """Delete the finished jobs older than the retention; returns how many went."""
        if not self.retention:
            return 0
        cutoff = time.time() - self.retention
        gone = 0
        for job in self._all():
            if job.status in ("done", "failed") and (job.finished or job.created) < cutoff:
                with contextlib.suppress(KeyError, JobBusy):  # another server deleted it first
                    self.delete(job.id)
                    gone += 1
        return gone

    def input_path(self, job: Job) -> Path:
        return self.root / job.id / job.input_name

    def result_path(self, job: Job) -> Path:
        return self.root / job.id / f"result.{job.format}"

    def jobs(self, status: JobStatus | None = None) -> list[Job]:
        """Jobs (with ``status`` if given), newest first."""
        return sorted((job.model_copy() for job in self._all() if status in (None, job.status)),
                      key=lambda j: j.created, reverse=True)

    def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first (the order to run them in)."""
        return sorted((job.model_copy() for job in self._all() if job.status in ("queued", "running")),
                      key=lambda j: j.created)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        for job in self._all():
            counts[job.status] += 1
        return counts


ProcessFile = Callable[[str, dict, Path, Path], Awaitable[None]]


class JobRunner:
    """Runs the store's jobs one at a time in the background with ``process(model, params, input,
    output)``: those its own server takes, those of other servers sharing the store, and those
    whose runner died (module doc)."""

    def __init__(self, store: JobStore, process: ProcessFile, poll: float = POLL_SECONDS):
        self.store = store
        self.process = process
        self.poll = poll
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._work(), name="wavestream-jobs")

    def submit(self, job: Job) -> None:
        """Look for work now (``job`` was just created; any runner may take it)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _work(self) -> None:
        while True:
            self._wake.clear()
            try:
                unfinished = await asyncio.to_thread(self.store.unfinished)
            except Exception:
                # the job directory could not be listed (a network mount gone stale, say): look
                # again at the next poll instead of ending the runner
                log.exception("the job directory could not be listed")
                unfinished = []
            for job in unfinished:
                try:
                    await self._run(job.id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # the store failed (disk full, unreadable job.json): this job waits for the next
                    # look, but the runner must live on for every other one
                    log.exception("job %s could not be run", job.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    async def _run(self, job_id: str) -> None:
        # taken here, not on a thread: a claim taken by a thread could outlive a cancelled runner
        claim = self.store.claim(job_id)
        if claim is None:
            return  # another runner has it
        try:
            try:
                # read again under the claim: another runner may have finished it since the listing
                job = await asyncio.to_thread(self.store.get, job_id)
            except KeyError:
                return  # deleted
            if job.status not in ("queued", "running"):
                return
            if job.status == "running":
                log.info("re-running job %s: its runner %s stopped during attempt %d", job.id, job.runner,
                         job.attempts)
            job.status, job.started, job.attempts, job.runner = "running", time.time(), job.attempts + 1, self.name
            await asyncio.to_thread(self.store.save, job)
            await self._process(job)
        finally:
            claim.release()

    async def _process(self, job: Job) -> None:
        result = self.store.result_path(job)
        partial = result.with_name("partial." + job.format)
        try:
            await self.process(job.model, job.params, self.store.input_path(job), partial)
            partial.replace(result)
            job.status = "done"
        except asyncio.CancelledError:
            # stopped by shutdown: left "running" with its claim free, so another runner (or the next
            # start of this one) re-runs it
            partial.unlink(missing_ok=True)
            raise
        except Exception as exc:
            log.exception("job %s failed", job.id)
            partial.unlink(missing_ok=True)
            job.status, job.error = "failed", public_error(exc)
        job.finished = time.time()
        await asyncio.to_thread(self.store.save, job)


def public_error(exc: Exception) -> str:
    """What a client may read about a failure: our own ValueError messages (bad input) are written
    for it; anything else may carry server paths or internals, so it gets only its kind."""
    if isinstance(exc, ValueError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); see the server log"
