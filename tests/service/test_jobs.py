"""The job runner and store under faults (the REST side of jobs is in test_rest.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from wavestream.service.jobs import Job, JobRunner, JobStore


class FlakyStore(JobStore):
    """A real store whose ``save`` raises for one job (a full disk, say)."""

    def __init__(self, data_dir: Path):
        super().__init__(data_dir)
        self.broken: str | None = None

    def save(self, job: Job) -> None:
        if job.id == self.broken:
            raise OSError(28, "No space left on device")
        super().save(job)


def new_job(store: JobStore, tmp_path: Path, name: str) -> Job:
    upload = tmp_path / name
    upload.write_bytes(b"audio of " + name.encode())
    return store.create("test-filter", {}, "wav", upload, ".wav", 1.0)


async def copy(model: str, params: dict, source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def test_a_store_failure_costs_one_job_not_the_runner(tmp_path):
    store = FlakyStore(tmp_path / "data")
    first, second = new_job(store, tmp_path, "a"), new_job(store, tmp_path, "b")
    store.broken = first.id

    async def main():
        runner = JobRunner(store, copy)
        await runner.start()  # both jobs are queued from disk
        for _ in range(2000):
            if store.get(second.id).status == "done":
                break
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(main())
    assert store.get(first.id).status == "queued"  # never marked running: re-queued at the next start
    assert store.get(second.id).status == "done"
    assert store.result_path(store.get(second.id)).read_bytes() == b"audio of b"
