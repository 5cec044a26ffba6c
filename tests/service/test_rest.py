"""REST processing, async jobs (persisted across restarts), probes, metrics, the CLI client, shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.service.conftest import run, running_server, signal, start_server
from wavestream.cli import main as cli_main
from wavestream.client.stream_client import AsyncStreamClient, StreamError
from wavestream.service.jobs import JobStore
from wavestream.streaming.testing import ATOL

PCM24_ATOL = 2.0 ** -23 + ATOL  # FLAC output is 24-bit


def audio_bytes(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "FLOAT") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def read_audio(data: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(data), dtype="float32", always_2d=True)


def test_process_wav_equals_offline(server, http):
    x = signal(0.8, 44100, channels=2, seed=1)
    r = http.post("/v1/process/enhance", content=audio_bytes(x, 44100), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    y, rate = read_audio(r.content)
    assert rate == 44100 and y.shape == x.shape
    assert np.abs(y - server.reference("enhance", x, 44100).audio).max() <= ATOL


def test_process_flac_in_and_out(server, http):
    x = signal(0.5, 16000, seed=2)
    r = http.post("/v1/process/enhance", params={"format": "flac"}, content=audio_bytes(x, 16000, "FLAC", "PCM_16"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/flac"
    sent, _ = read_audio(audio_bytes(x, 16000, "FLAC", "PCM_16"))
    y, _ = read_audio(r.content)
    assert np.abs(y - server.reference("enhance", sent, 16000).audio).max() <= PCM24_ATOL


def test_process_ogg_input(server, http):
    x = signal(0.5, 24000, seed=3)
    r = http.post("/v1/process/enhance", content=audio_bytes(x, 24000, "OGG", "VORBIS"))
    assert r.status_code == 200, r.text
    sent, _ = read_audio(audio_bytes(x, 24000, "OGG", "VORBIS"))
    y, _ = read_audio(r.content)
    assert np.abs(y - server.reference("enhance", sent, 24000).audio).max() <= ATOL


def test_process_sources_model_writes_interleaved_channels(server, http):
    x = signal(0.3, 16000, channels=2, seed=4)
    r = http.post("/v1/process/test-sources", content=audio_bytes(x, 16000))
    assert r.status_code == 200, r.text
    y, _ = read_audio(r.content)
    assert y.shape == (len(x), 4)
    assert np.abs(y - server.reference("test-sources", x, 16000).audio).max() <= ATOL


@pytest.mark.parametrize("path,params,body,status,words", [
    ("/v1/process/nope", {}, "wav", 404, "unknown model"),
    ("/v1/process/enhance", {"format": "mp3"}, "wav", 422, "format must be"),
    ("/v1/process/enhance", {"params": "{bad"}, "wav", 422, "JSON object"),
    ("/v1/process/enhance", {"params": '{"gain": 2}'}, "wav", 422, "does not take params"),
    ("/v1/process/enhance", {}, b"this is not audio at all", 415, "not a readable"),
    ("/v1/process/enhance", {}, b"", 400, "empty request body"),
    ("/v1/process/enhance", {}, "4khz", 422, "sample rate 4000"),
    ("/v1/process/test-tokens", {}, "wav", 422, "outputs tokens"),
    ("/v1/jobs", {"model": "nope"}, "wav", 404, "unknown model"),
    ("/v1/jobs", {"model": "enhance", "params": '{"x": 1}'}, "wav", 422, "does not take params"),
])
def test_bad_uploads_get_clear_4xx(http, path, params, body, status, words):
    if body == "wav":
        body = audio_bytes(signal(0.1, 16000), 16000)
    elif body == "4khz":
        body = audio_bytes(np.zeros((400, 1), np.float32), 4000)
    r = http.post(path, params=params, content=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_upload_limits_413(tmp_path):
    with running_server(tmp_path, max_upload_mb=0.25, max_upload_seconds=2.0) as srv, \
            httpx.Client(base_url=srv.http, timeout=60) as http:
        big = audio_bytes(signal(2.0, 48000), 48000)  # 384 kB > 0.25 MiB
        r = http.post("/v1/process/enhance", content=big)
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit must hold while the body streams in
            for i in range(0, len(big), 8192):
                yield big[i:i + 8192]

        r = http.post("/v1/process/enhance", content=chunks())
        assert r.status_code == 413
        long = audio_bytes(signal(3.0, 8000), 8000, subtype="PCM_16")  # 48 kB but 3 s > 2 s
        r = http.post("/v1/jobs", params={"model": "enhance"}, content=long)
        assert r.status_code == 413 and "3.0 s of audio" in r.json()["detail"]
        assert not list(srv.service.spool.iterdir())  # refused uploads leave nothing behind


def test_rest_at_capacity_is_503(tmp_path):
    with running_server(tmp_path, max_sessions=1) as srv, httpx.Client(base_url=srv.http, timeout=60) as http:
        async def hold_and_post():
            async with AsyncStreamClient(srv.ws) as holder:
                await holder.start("enhance", 16000)
                async with httpx.AsyncClient(base_url=srv.http) as client:
                    return await client.post("/v1/process/enhance", content=audio_bytes(signal(0.1, 16000), 16000))

        r = run(hold_and_post())
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        srv.wait_idle()
        assert http.post("/v1/process/enhance", content=audio_bytes(signal(0.1, 16000), 16000)).status_code == 200


def wait_job(http: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished: {job}")


def test_job_round_trip(server, http):
    x = signal(1.0, 32000, seed=6)
    r = http.post("/v1/jobs", params={"model": "enhance", "format": "flac"}, content=audio_bytes(x, 32000))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["duration"] == pytest.approx(1.0)
    job = wait_job(http, job["id"])
    assert job["status"] == "done" and job["result_url"] == f"/v1/jobs/{job['id']}/result"
    r = http.get(job["result_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    y, rate = read_audio(r.content)
    assert rate == 32000 and np.abs(y - server.reference("enhance", x, 32000).audio).max() <= PCM24_ATOL
    assert http.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert http.get("/v1/jobs/../../etc").status_code == 404
    assert http.get("/v1/jobs/" + "0" * 32 + "/result").status_code == 404


def test_jobs_survive_a_restart(tmp_path):
    # test-filter has seeded weights, so the restarted server's model equals the first one's
    x = signal(0.5, 16000, seed=7)
    with running_server(tmp_path) as first, httpx.Client(base_url=first.http, timeout=60) as http:
        finished = wait_job(http, http.post("/v1/jobs", params={"model": "test-filter"},
                                            content=audio_bytes(x, 16000)).json()["id"])
        assert finished["status"] == "done"
    # a job the server was running when it died: on disk as "running", result never written
    upload = tmp_path / "upload.wav"
    upload.write_bytes(audio_bytes(x, 16000))
    store = JobStore(tmp_path)
    interrupted = store.create("test-filter", {}, "wav", upload, ".wav", 0.5)
    interrupted.status, interrupted.attempts, interrupted.started = "running", 1, time.time()
    store.save(interrupted)

    with running_server(tmp_path) as second, httpx.Client(base_url=second.http, timeout=60) as http:
        again = http.get(f"/v1/jobs/{finished['id']}").json()
        assert again["status"] == "done"
        y, _ = read_audio(http.get(again["result_url"]).content)
        reference = second.reference("test-filter", x, 16000).audio
        assert np.abs(y - reference).max() <= ATOL
        rerun = wait_job(http, interrupted.id)
        assert rerun["status"] == "done" and rerun["attempts"] == 2
        y, _ = read_audio(http.get(rerun["result_url"]).content)
        assert np.abs(y - reference).max() <= ATOL


def test_probes_docs_page_and_models(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "swagger" in http.get("/docs").text.lower()
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v1/process/{model}", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/models"):
        assert path in paths
    assert "/v1/stream" in http.get("/").text
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert models["enhance"]["sample_rate"] == 16000 and models["enhance"]["output"] == "audio"


def test_metrics_expose_sessions_latency_batches_rtf(server, http):
    x = signal(0.5, 16000, seed=9)

    async def streams():
        async def one(i):
            async with AsyncStreamClient(server.ws) as client:
                await client.start("enhance", 16000)
                await client.stream(x, 256 + 64 * i)
        await asyncio.gather(*(one(i) for i in range(4)))

    run(streams())
    text = http.get("/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["wavestream_active_sessions"] == 0
    assert values['wavestream_chunk_latency_seconds_count{model="enhance"}'] > 0
    assert values['wavestream_batch_size_count{model="enhance"}'] > 0
    assert values['wavestream_rtf_count{model="enhance"}'] > 0
    assert values['wavestream_sessions_total{model="enhance",outcome="end"}'] >= 4
    assert values['wavestream_audio_seconds_total{model="enhance",via="stream"}'] >= 2.0


def test_cli_stream_writes_the_processed_file(server, tmp_path, capsys):
    x = signal(0.7, 22050, channels=2, seed=10)
    source, target = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(source, x, 22050, subtype="FLOAT")
    assert cli_main(["stream", "enhance", str(source), str(target), "--url", server.ws, "--chunk-ms", "30"]) == 0
    assert "wrote" in capsys.readouterr().out
    y, rate = sf.read(target, dtype="float32", always_2d=True)
    assert rate == 22050 and np.abs(y - server.reference("enhance", x, 22050).audio).max() <= ATOL


def test_cli_stream_realtime_and_events(server, tmp_path):
    x = signal(0.4, 16000, seed=11)
    x[2000:2500] *= 8
    source, target = tmp_path / "in.flac", tmp_path / "events.json"
    sf.write(source, x, 16000, subtype="PCM_16")
    assert cli_main(["stream", "test-events", str(source), str(target), "--url", server.ws, "--realtime"]) == 0
    assert len(json.loads(target.read_text())) > 0


def test_cli_stream_reports_errors(server, tmp_path, capsys):
    source = tmp_path / "in.wav"
    sf.write(source, signal(0.1, 16000), 16000)
    assert cli_main(["stream", "nope", str(source), str(tmp_path / "o.wav"), "--url", server.ws]) == 1
    assert "unknown_model" in capsys.readouterr().err


def test_graceful_shutdown_finishes_live_streams(tmp_path):
    """Stopping the server mid-stream: the client still gets all its output, then done + close 1001."""
    srv = start_server(tmp_path)
    x = signal(3.0, 16000, seed=12)
    stopper = threading.Thread(target=srv.stop)

    async def live():
        client = AsyncStreamClient(srv.ws)
        await client.start("enhance", 16000)
        try:
            for i, pos in enumerate(range(0, len(x), 320)):
                await client.send(x[pos:pos + 320])
                if i == 10:
                    stopper.start()  # stop the server while this stream is live
                await asyncio.sleep(0.01)
        except StreamError as exc:
            assert exc.code == "ended"  # the server ended the stream; we stop sending
        items = []
        while (item := await client.receive()) is not None:
            items.append(item)
        return np.concatenate(items), client.done, client.close_code

    out, done, close_code = run(live())
    stopper.join()
    assert done is not None and done.reason == "shutdown" and close_code == 1001
    n = done.stats["samples_in"]
    assert 0 < n < len(x) and len(out) == n == done.stats["samples_out"]
    assert np.abs(out - srv.reference("enhance", x[:n], 16000).audio).max() <= ATOL
