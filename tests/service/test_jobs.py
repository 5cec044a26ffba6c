"""The job runner and store under faults, and servers sharing one job directory (the REST side of
jobs is in test_rest.py, jobs over Ray replicas in test_ray.py)."""

from __future__ import annotations

import asyncio
import collections
import shutil
import signal as signals
import subprocess
import sys
import textwrap
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


class StaleListingStore(JobStore):
    """A real store whose first listing fails, as on a network mount that went stale for a moment."""

    def __init__(self, data_dir: Path):
        super().__init__(data_dir)
        self.listings = 0

    def unfinished(self) -> list[Job]:
        self.listings += 1
        if self.listings == 1:
            raise OSError(116, "Stale file handle")
        return super().unfinished()


def test_a_failed_listing_costs_one_look_not_the_runner(tmp_path):
    store = StaleListingStore(tmp_path / "data")
    job = new_job(store, tmp_path, "a")

    async def main():
        runner = JobRunner(store, copy, poll=0.05)
        await runner.start()
        for _ in range(2000):
            if store.get(job.id).status == "done" or runner._task.done():
                break
            await asyncio.sleep(0.01)
        alive = not runner._task.done()
        await runner.stop()
        return alive

    assert asyncio.run(main()), "the runner ended"
    assert store.listings >= 2 and store.get(job.id).status == "done"


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


def test_jobs_two_runners_sharing_a_directory_run_each_job_once(tmp_path):
    """Two stores and runners on one directory, as two replicas: each job runs exactly once, both
    runners take some, and each store sees the other's jobs."""
    first = JobStore(tmp_path / "data")
    early = [new_job(first, tmp_path, f"early{i}") for i in range(4)]  # queued before the second exists
    second = JobStore(tmp_path / "data")
    runs = collections.Counter()

    async def slow_copy(model: str, params: dict, source: Path, target: Path) -> None:
        runs[source.read_bytes()] += 1
        await asyncio.sleep(0.1)  # long enough that the other runner looks meanwhile
        shutil.copyfile(source, target)

    async def main() -> list[Job]:
        runners = [JobRunner(first, slow_copy, poll=0.02), JobRunner(second, slow_copy, poll=0.02)]
        for runner in runners:
            await runner.start()
        late = [new_job(second, tmp_path, f"late{i}") for i in range(4)]
        for job in late:
            runners[1].submit(job)
        jobs = early + late
        for _ in range(3000):
            if all(first.get(job.id).status == "done" for job in jobs):
                break
            await asyncio.sleep(0.01)
        for runner in runners:
            await runner.stop()
        return jobs

    jobs = asyncio.run(main())
    assert sorted(runs.values()) == [1] * 8, runs  # no job ran twice
    for job in jobs:
        for store in (first, second):
            done = store.get(job.id)
            assert done.status == "done" and done.attempts == 1
            assert store.result_path(done).read_bytes() == store.input_path(done).read_bytes()
    assert len({first.get(job.id).runner for job in jobs}) == 2  # both runners took jobs
    assert first.counts() == second.counts() == {"queued": 0, "running": 0, "done": 8, "failed": 0}


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from wavestream.service.jobs import JobRunner, JobStore

    async def hold(model, params, source, target):
        print("running", flush=True)
        await asyncio.Event().wait()

    async def main():
        await JobRunner(JobStore(Path(sys.argv[1])), hold, poll=0.02).start()
        await asyncio.Event().wait()

    asyncio.run(main())
""")


def test_jobs_of_a_killed_runner_run_again_elsewhere(tmp_path):
    """A runner's process killed mid-job (no chance to clean up) frees the job for another runner;
    while it lives, nobody else runs that job."""
    store = JobStore(tmp_path / "data")
    job = new_job(store, tmp_path, "a")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "data")], stdout=subprocess.PIPE,
                              text=True)
    ran = []

    async def record(model: str, params: dict, source: Path, target: Path) -> None:
        ran.append(source)
        await copy(model, params, source, target)

    async def main() -> None:
        runner = JobRunner(store, record, poll=0.02)
        await runner.start()
        try:
            await asyncio.sleep(0.3)  # many looks at the job while its runner lives
            assert ran == [] and store.get(job.id).status == "running"
            holder.send_signal(signals.SIGKILL)
            await asyncio.to_thread(holder.wait, 30)
            for _ in range(3000):
                if store.get(job.id).status == "done":
                    break
                await asyncio.sleep(0.01)
        finally:
            await runner.stop()

    try:
        assert holder.stdout.readline() == "running\n"
        held = store.get(job.id)
        assert held.status == "running" and held.runner.split(":")[1] == str(holder.pid)
        asyncio.run(main())
    finally:
        holder.kill()
        holder.wait(30)
    done = store.get(job.id)
    assert done.status == "done" and done.attempts == 2 and len(ran) == 1
    assert store.result_path(done).read_bytes() == b"audio of a"


def test_jobs_two_servers_sharing_a_data_dir(tmp_path, gated_model):
    """Two servers on one data directory (as Ray replicas): a job created on one is polled, refused
    deletion while it runs, downloaded and expired through the other; the queue cap counts both."""
    wav = audio_bytes(signal(0.2, 16000), 16000)
    shared = dict(preload=[], max_queued_jobs=1, job_retention_hours=1e-9)
    with running_server(tmp_path, **shared) as one, running_server(tmp_path, **shared) as two, \
            httpx.Client(base_url=one.http, timeout=60) as http1, httpx.Client(base_url=two.http, timeout=60) as http2:
        assert one.service.spool.is_dir() and two.service.spool.is_dir()  # the second start kept the first's
        held = http1.post("/v1/jobs", params={"model": "test-gated"}, content=wav).json()
        GatedModel.entered.wait(60)
        seen = http2.get(f"/v1/jobs/{held['id']}")
        assert seen.status_code == 200 and seen.json()["status"] == "running"
        full = http2.post("/v1/jobs", params={"model": "test-filter"}, content=wav)
        assert full.status_code == 503 and "queue is full" in full.json()["detail"]
        assert http2.delete(f"/v1/jobs/{held['id']}").status_code == 409
        assert [job["id"] for job in http2.get("/v1/jobs").json()["jobs"]] == [held["id"]]
        GatedModel.gate.set()
        assert wait_job(http2, held["id"])["status"] == "done"
        assert http2.get(f"/v1/jobs/{held['id']}/result").content == \
            http1.get(f"/v1/jobs/{held['id']}/result").content
        assert 'wavestream_jobs{status="done"} 1.0' in http2.get("/metrics").text

        second = http2.post("/v1/jobs", params={"model": "test-filter"}, content=wav).json()
        assert http1.get(f"/v1/jobs/{held['id']}").status_code == 404  # expired by the other server
        assert wait_job(http1, second["id"])["status"] == "done"
        assert http1.delete(f"/v1/jobs/{second['id']}").status_code == 204
        assert http2.get(f"/v1/jobs/{second['id']}").status_code == 404
