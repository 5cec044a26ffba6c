"""Async jobs for long files, persisted under the data directory so that a restart loses nothing.

Layout: ``DATA_DIR/jobs/<id>/job.json`` (status, written atomically), ``input.<ext>`` (the upload)
and ``result.<format>``; the store keeps an index of every job in memory. At start every job that
was queued or running when the server stopped is queued again; a job is re-run from its input, so
an interrupted run costs time but nothing else. Finished jobs are deleted after the retention time
or by ``DELETE /v1/jobs/{id}``; the queue is capped (``max_queued_jobs``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed"]
_ID = re.compile(r"^[0-9a-f]{32}$")


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
    #: how many times a run was started (> 1 after a restart interrupted one)
    attempts: int = 0

    def public(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"input_name"})
        data["result_url"] = f"/v1/jobs/{self.id}/result" if self.status == "done" else None
        return data


class JobBusy(RuntimeError):
    """The job is running and cannot be deleted now."""


class JobStore:
    """Jobs on disk, with an index in memory (read once at start) so that status queries, listings
    and ``/metrics`` never read the disk. Finished jobs older than ``retention`` seconds are
    deleted (at start and whenever a job is created); 0 keeps them forever."""

    def __init__(self, data_dir: Path, retention: float = 0.0):
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._jobs: dict[str, Job] = {}
        for path in self.root.glob("*/job.json"):
            try:
                job = Job.model_validate(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                log.error("skipping unreadable job file %s: %s", path, exc)
                continue
            self._jobs[job.id] = job
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
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        path = self.root / job.id / "job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(job.model_dump_json())
        tmp.replace(path)  # atomic: a crash leaves the old or the new status, never half of one
        self._jobs[job.id] = job.model_copy()

    def get(self, job_id: str) -> Job:
        """The job (a copy: change it, then ``save``), or KeyError if there is none with this id."""
        if job_id not in self._jobs:
            raise KeyError(job_id)
        return self._jobs[job_id].model_copy()

    def delete(self, job_id: str) -> None:
        """Delete a job and its files; KeyError if there is none, JobBusy while it runs."""
        job = self.get(job_id)
        if job.status == "running":
            raise JobBusy(f"job {job_id} is running; delete it once it is done")
        del self._jobs[job_id]
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def expire(self) -> int:
        """Delete the finished jobs older than the retention; returns how many went."""
        if not self.retention:
            return 0
        cutoff = time.time() - self.retention
        old = [job.id for job in self._jobs.values()
               if job.status in ("done", "failed") and (job.finished or job.created) < cutoff]
        for job_id in old:
            self.delete(job_id)
        return len(old)

    def input_path(self, job: Job) -> Path:
        return self.root / job.id / job.input_name

    def result_path(self, job: Job) -> Path:
        return self.root / job.id / f"result.{job.format}"

    def jobs(self, status: JobStatus | None = None) -> list[Job]:
        """Jobs (with ``status`` if given), newest first."""
        return sorted((job.model_copy() for job in self._jobs.values() if status in (None, job.status)),
                      key=lambda j: j.created, reverse=True)

    def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first (the order to run them in)."""
        return sorted((job.model_copy() for job in self._jobs.values() if job.status in ("queued", "running")),
                      key=lambda j: j.created)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        for job in self._jobs.values():
            counts[job.status] += 1
        return counts


ProcessFile = Callable[[str, dict, Path, Path], Awaitable[None]]


class JobRunner:
    """Runs queued jobs one at a time in the background with ``process(model, params, input, output)``."""

    def __init__(self, store: JobStore, process: ProcessFile):
        self.store = store
        self.process = process
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        for job in self.store.unfinished():
            if job.status == "running":
                log.info("re-running job %s interrupted by a restart", job.id)
            self._queue.put_nowait(job.id)
        self._task = asyncio.create_task(self._work(), name="wavestream-jobs")

    def submit(self, job: Job) -> None:
        self._queue.put_nowait(job.id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                await self._run(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                # the store failed (disk full, unreadable job.json): this job is lost to this run,
                # but the runner must live on for every later one
                log.exception("job %s could not be run", job_id)

    async def _run(self, job_id: str) -> None:
        try:
            job = self.store.get(job_id)
        except KeyError:
            return  # deleted while queued
        if job.status not in ("queued", "running"):
            return
        job.status, job.started, job.attempts = "running", time.time(), job.attempts + 1
        self.store.save(job)
        result = self.store.result_path(job)
        partial = result.with_name("partial." + job.format)
        try:
            await self.process(job.model, job.params, self.store.input_path(job), partial)
            partial.replace(result)
            job.status = "done"
        except asyncio.CancelledError:
            # stopped by shutdown: left "running" on disk, so the next start re-runs it
            partial.unlink(missing_ok=True)
            raise
        except Exception as exc:
            log.exception("job %s failed", job.id)
            partial.unlink(missing_ok=True)
            job.status, job.error = "failed", public_error(exc)
        job.finished = time.time()
        self.store.save(job)


def public_error(exc: Exception) -> str:
    """What a client may read about a failure: our own ValueError messages (bad input) are written
    for it; anything else may carry server paths or internals, so it gets only its kind."""
    if isinstance(exc, ValueError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); see the server log"
