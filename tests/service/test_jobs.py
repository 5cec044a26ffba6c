"""The job runner and store under faults (the REST side of jobs is in test_rest.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx

from tests.service.conftest import GatedModel, running_server, signal
from tests.service.test_rest import audio_bytes, wait_job
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


def test_jobs_listing_delete_retention_and_queue_cap(tmp_path, gated_model):
    """Disk use is bounded: jobs can be listed and deleted, finished ones expire, the queue is capped."""
    wav = audio_bytes(signal(0.2, 16000), 16000)
    stale = tmp_path / "tmp" / "upload-left-by-a-killed-server"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half an upload")
    # a retention of ~4 microseconds: a finished job is gone by the next create
    with running_server(tmp_path, max_queued_jobs=1, job_retention_hours=1e-9) as srv, \
            httpx.Client(base_url=srv.http, timeout=60) as http:
        assert not stale.exists()  # spooled uploads of a killed server are cleaned at start
        held = http.post("/v1/jobs", params={"model": "test-gated"}, content=wav).json()
        GatedModel.entered.wait(60)
        full = http.post("/v1/jobs", params={"model": "test-filter"}, content=wav)
        assert full.status_code == 503 and "queue is full" in full.json()["detail"]
        running = http.delete(f"/v1/jobs/{held['id']}")
        assert running.status_code == 409 and "running" in running.json()["detail"]
        listed = http.get("/v1/jobs", params={"status": "running"}).json()["jobs"]
        assert [job["id"] for job in listed] == [held["id"]]
        GatedModel.gate.set()
        assert wait_job(http, held["id"])["status"] == "done"

        second = http.post("/v1/jobs", params={"model": "test-filter"}, content=wav).json()
        assert http.get(f"/v1/jobs/{held['id']}").status_code == 404  # expired when the second came
        assert not (tmp_path / "jobs" / held["id"]).exists()
        wait_job(http, second["id"])
        assert [job["id"] for job in http.get("/v1/jobs").json()["jobs"]] == [second["id"]]
        assert http.delete(f"/v1/jobs/{second['id']}").status_code == 204
        assert http.get(f"/v1/jobs/{second['id']}").status_code == 404
        assert not (tmp_path / "jobs" / second["id"]).exists()
        assert http.delete(f"/v1/jobs/{second['id']}").status_code == 404
        assert http.get("/v1/jobs").json()["jobs"] == []
        metrics = http.get("/metrics").text
        assert 'wavestream_jobs{status="done"} 0.0' in metrics


def test_auth_comes_before_validation_and_openapi_lists_errors(tmp_path):
    with running_server(tmp_path, api_keys=["k"]) as srv, httpx.Client(base_url=srv.http, timeout=60) as http:
        assert http.post("/v1/jobs").status_code == 401  # no model given, but no key either: 401 first
        assert http.get("/v1/jobs", params={"status": "nope"}).status_code == 401
        spec = http.get("/openapi.json").json()
        post_jobs = spec["paths"]["/v1/jobs"]["post"]["responses"]
        assert {"401", "413", "415", "422", "503"} <= set(post_jobs)
        assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
        assert "delete" in spec["paths"]["/v1/jobs/{job_id}"]
        assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
