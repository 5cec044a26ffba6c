"""wavestream on Ray Serve (wavestream/service/ray_serve.py): a local Ray cluster on loopback, two
replicas, real streams through Ray's HTTP proxy. Select with `-k ray`; needs the `ray` extra."""

from __future__ import annotations

import io
import json
import os
import signal as signals
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.service.conftest import free_port, signal
from wavestream.client import StreamClient, StreamError
from wavestream.engine import Output, StreamPipeline
from wavestream.engine.engine import load_stream_model

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
serve = pytest.importorskip("ray.serve")

CONFIG = Path(__file__).parents[2] / "docker" / "ray-serve.yaml"
KUBERAY = Path(__file__).parents[2] / "docker" / "ray-service.yaml"
SLOTS = 3  # max_sessions per replica: small, so that the test can fill both replicas


@pytest.fixture(scope="module")
def ray_data(tmp_path_factory) -> Path:
    """The replicas' shared data directory (jobs)."""
    return tmp_path_factory.mktemp("ray-data")


@pytest.fixture(scope="module")
def ray_app(ray_data):
    from wavestream.service.ray_serve import build

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build({"replicas": 2, "num_cpus": 1, "max_sessions": SLOTS, "preload": "enhance",
                         "data_dir": str(ray_data)}),
                  name="wavestream", route_prefix="/")
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def offline(model: str, x: np.ndarray, rate: int) -> np.ndarray:
    """The model's output for ``x`` in this process, unbatched and in one call."""
    pipeline = StreamPipeline(load_stream_model(model), rate, x.shape[1])
    return Output.concat([pipeline.process(x), pipeline.finish()]).audio


def test_ray_streams_equal_the_single_process_output(ray_app):
    x = signal(1.5, 48000, seed=4)
    expected = offline("enhance", x, 48000)
    # more streams at once than one replica has slots: both replicas take some
    clients = [StreamClient(f"ws://{ray_app}/v1/stream") for _ in range(SLOTS + 1)]
    for client in clients:
        client.__enter__()
        assert client.start("enhance", 48000, encoding="pcm_f32le").output.kind == "audio"
    try:
        for client in clients:
            np.testing.assert_allclose(client.stream(x, 960).output, expected, atol=1e-5)
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def test_ray_rest_equals_the_single_process_output(ray_app):
    x = signal(1.0, 16000, seed=5)
    with httpx.Client(base_url=f"http://{ray_app}", timeout=60) as http:
        assert {m["name"] for m in http.get("/v1/models").json()["models"]} >= {"enhance"}
        r = http.post("/v1/process/enhance", content=wav_bytes(x, 16000))
        assert r.status_code == 200, r.text
        y, rate = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        assert rate == 16000
        np.testing.assert_allclose(y, offline("enhance", x, 16000), atol=1e-5)
        assert http.get("/").status_code == 200 and http.get("/static/app.js").status_code == 200


def open_stream(url: str, attempts: int) -> StreamClient | None:
    """A started stream, retrying a full replica's 1013 as a client should; None if every try was refused."""
    for _ in range(attempts):
        client = StreamClient(url)
        client.__enter__()
        try:
            client.start("enhance", 16000)
            return client
        except StreamError as exc:
            assert exc.code == "at_capacity" and exc.close_code == 1013, exc
            client.__exit__(None, None, None)
    return None


def test_ray_full_replicas_answer_1013_and_a_retry_finds_a_free_one(ray_app):
    url = f"ws://{ray_app}/v1/stream"
    clients = []
    try:
        # every slot of both replicas can be filled: a refused start, tried again, lands elsewhere
        for _ in range(2 * SLOTS):
            client = open_stream(url, attempts=20)
            assert client is not None, f"only {len(clients)} streams open of {2 * SLOTS} slots"
            clients.append(client)
        # all full: every replica answers at_capacity
        assert open_stream(url, attempts=4) is None
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def wav_bytes(x: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def job_file(data: Path, job_id: str) -> dict:
    """What the shared job directory says of a job (``runner`` is host:pid:runner, never sent to clients)."""
    return json.loads((data / "jobs" / job_id / "job.json").read_text())


def runner_pid(job: dict) -> int:
    return int(job["runner"].split(":")[1])


def finished(http: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    """The finished job, polled through the proxy; a failed request (a replica going away) is polled again."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            r = http.get(f"/v1/jobs/{job_id}")
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code == 200 and r.json()["status"] in ("done", "failed"):
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished")


def test_ray_jobs_answer_on_every_replica_and_spread_over_them(ray_app, ray_data):
    x = signal(20.0, 16000, seed=6)  # long enough that the other replica looks for work meanwhile
    expected = offline("enhance", x, 16000)
    with httpx.Client(base_url=f"http://{ray_app}", timeout=60) as http:
        ids = []
        for _ in range(6):
            r = http.post("/v1/jobs", params={"model": "enhance"}, content=wav_bytes(x, 16000))
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        for job_id in ids:
            assert finished(http, job_id)["status"] == "done"
        # Ray picks a replica per request: with a store per replica about half of these would be 404
        for job_id in ids:
            for _ in range(4):
                assert http.get(f"/v1/jobs/{job_id}").json()["attempts"] == 1
            y, rate = sf.read(io.BytesIO(http.get(f"/v1/jobs/{job_id}/result").content), dtype="float32",
                              always_2d=True)
            np.testing.assert_allclose(y, expected, atol=1e-5)
        listed = {job["id"] for job in http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
        assert set(ids) <= listed
    # both replicas' runners took jobs
    assert len({runner_pid(job_file(ray_data, job_id)) for job_id in ids}) == 2


def test_ray_a_job_whose_replica_dies_runs_again_on_another(ray_app, ray_data):
    """Kill the replica process running a job (no clean-up at all): another replica runs it again."""
    x = signal(60.0, 16000, seed=7)
    with httpx.Client(base_url=f"http://{ray_app}", timeout=60) as http:
        job_id = http.post("/v1/jobs", params={"model": "enhance"}, content=wav_bytes(x, 16000)).json()["id"]
        give_up = time.monotonic() + 120
        while job_file(ray_data, job_id)["status"] == "queued" and time.monotonic() < give_up:
            time.sleep(0.01)
        running = job_file(ray_data, job_id)
        assert running["status"] == "running", running
        os.kill(runner_pid(running), signals.SIGKILL)
        job = finished(http, job_id)
        assert job["status"] == "done" and job["attempts"] == 2
        assert runner_pid(job_file(ray_data, job_id)) != runner_pid(running)
        y, _ = sf.read(io.BytesIO(http.get(f"/v1/jobs/{job_id}/result").content), dtype="float32", always_2d=True)
        np.testing.assert_allclose(y, offline("enhance", x, 16000), atol=1e-5)


def test_ray_builder_ties_requests_to_stream_slots():
    from wavestream.service.ray_serve import EXTRA_REQUESTS, deployment_options

    options, env = deployment_options({"replicas": "auto", "max_replicas": 6, "max_sessions": 40,
                                       "preload": ["enhance", "kws"], "num_cpus": 2})
    assert options["max_ongoing_requests"] == 40 + EXTRA_REQUESTS
    assert options["num_replicas"] == "auto"
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 6, "target_ongoing_requests": 20.0}
    assert env == {"WAVESTREAM_MAX_SESSIONS": "40", "WAVESTREAM_PRELOAD": "enhance,kws", "WAVESTREAM_WORKERS": "2"}
    assert options["ray_actor_options"] == {"num_cpus": 2.0, "runtime_env": {"env_vars": env}}
    with pytest.raises(ValueError):
        deployment_options({"max_sessions": 0})


def test_ray_config_file_is_a_valid_serve_config():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from wavestream.service.ray_serve import deployment_options

    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (app,) = config.applications
    assert app.import_path == "wavestream.service.ray_serve:build" and app.route_prefix == "/"
    options, env = deployment_options(app.args)
    assert options["num_replicas"] == "auto" and env["WAVESTREAM_DATA_DIR"] == "/data"


def test_ray_kuberay_manifest_runs_the_config_file_on_a_shared_volume():
    """docker/ray-service.yaml cannot run here (no Kubernetes): check what a cluster would rely on."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from wavestream.service.ray_serve import deployment_options

    claim, service = yaml.safe_load_all(KUBERAY.read_text())
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve_config["applications"] == yaml.safe_load(CONFIG.read_text())["applications"]
    ServeDeploySchema.model_validate(serve_config)
    args = serve_config["applications"][0]["args"]
    options, _ = deployment_options(args)
    cluster = service["spec"]["rayClusterConfig"]
    (workers,) = cluster["workerGroupSpecs"]
    for group in (cluster["headGroupSpec"], workers):
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounted = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        # every replica's data_dir is the one shared claim
        assert volumes[mounted[args["data_dir"]]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        # KubeRay starts Ray with its own command, so the image's entrypoint (root -> uid 10001) never runs
        assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 10001
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # replicas only on workers
    worker_pod = workers["template"]["spec"]
    assert float(worker_pod["containers"][0]["resources"]["limits"]["cpu"]) >= args["num_cpus"]
    assert workers["maxReplicas"] >= args["max_replicas"] and options["num_replicas"] == "auto"
    assert worker_pod["terminationGracePeriodSeconds"] > options["graceful_shutdown_timeout_s"]
