"""Settings from env vars and flags, and `wavestream serve` as a real process."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal as signals
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from safetensors.torch import save_file

from tests.engine.models import FilterModel
from tests.service.conftest import free_port, running_server, signal
from tests.waiting import answers_ready, wait_until
from wavestream.cli import main as cli_main
from wavestream.client.stream_client import AsyncStreamClient, StreamClient, StreamError
from wavestream.engine import Output, StreamPipeline
from wavestream.engine.engine import load_stream_model
from wavestream.service.commands_serve import add_arguments, settings_from_args
from wavestream.service.settings import ServiceSettings


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("WAVESTREAM_API_KEYS", "a, b")
    monkeypatch.setenv("WAVESTREAM_MAX_SESSIONS", "7")
    monkeypatch.setenv("WAVESTREAM_PRELOAD", "enhance")
    monkeypatch.setenv("WAVESTREAM_MAX_WAIT_MS", "2.5")
    settings = ServiceSettings()
    assert settings.api_keys == ["a", "b"] and settings.max_sessions == 7
    assert settings.preload == ["enhance"] and settings.max_wait_ms == 2.5
    monkeypatch.setenv("WAVESTREAM_MAX_SESSIONS", "0")
    with pytest.raises(ValidationError, match="max_sessions"):
        ServiceSettings()


def test_flags_override_env(monkeypatch):
    monkeypatch.setenv("WAVESTREAM_PORT", "9000")
    monkeypatch.setenv("WAVESTREAM_MAX_BATCH", "8")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--port", "9100", "--api-key", "k1", "--api-key", "k2", "--idle-timeout", "0",
                              "--max-upload-mb", "5", "--data-dir", "/tmp/x"])
    settings = settings_from_args(args)
    assert settings.port == 9100 and settings.max_batch == 8  # flag wins; env fills the rest
    assert settings.api_keys == ["k1", "k2"] and settings.idle_timeout == 0
    assert settings.max_upload_bytes == 5 * 1024 * 1024 and str(settings.data_dir) == "/tmp/x"


def test_an_empty_api_key_is_refused_at_startup(monkeypatch, capsys):
    """`--api-key "$KEY"` with KEY unset must stop the server, not turn authentication off."""
    assert cli_main(["serve", "--api-key", "", "--port", str(free_port())]) == 2
    assert "API key is empty" in capsys.readouterr().out
    for value in ("", "a,,b", " "):
        monkeypatch.setenv("WAVESTREAM_API_KEYS", value)
        with pytest.raises(ValidationError, match="API key is empty"):
            ServiceSettings()
    monkeypatch.delenv("WAVESTREAM_API_KEYS")
    assert ServiceSettings().api_keys == []  # no key given at all: no authentication, as documented



def test_resample_quality_setting(monkeypatch, tmp_path, capsys):
    """`--resample-quality` / WAVESTREAM_RESAMPLE_QUALITY picks the streams' resampler (LL by
    default), a bad value stops the server at start, and `ready.latency_ms` follows the choice."""
    assert ServiceSettings().resample_quality == "LL"
    monkeypatch.setenv("WAVESTREAM_RESAMPLE_QUALITY", "hq")
    assert ServiceSettings().resample_quality == "HQ"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from_args(parser.parse_args(["--resample-quality", "VHQ"])).resample_quality == "VHQ"
    monkeypatch.setenv("WAVESTREAM_RESAMPLE_QUALITY", "best")
    with pytest.raises(ValidationError, match="unknown resample quality 'best'; choose one of LL, QQ"):
        ServiceSettings()
    monkeypatch.delenv("WAVESTREAM_RESAMPLE_QUALITY")
    assert cli_main(["serve", "--resample-quality", "soxr", "--port", str(free_port()),
                     "--data-dir", str(tmp_path / "bad")]) == 2
    assert "unknown resample quality 'soxr'" in capsys.readouterr().out
    stated = {}
    for quality in ("LL", "HQ"):
        with running_server(tmp_path / quality, resample_quality=quality) as srv:
            assert srv.service.engine.quality == quality
            with StreamClient(srv.ws) as client:
                stated[quality] = client.start("enhance", 48000).latency_ms
                y = client.stream(signal(0.2, 48000), 768).output
            assert y.shape == (9600, 1)
    # enhance at 48 kHz: 37.04 ms with LL, 97.79 with soxr HQ (docs/design.md)
    assert abs(stated["LL"] - 37.04) < 0.05 and abs(stated["HQ"] - 97.79) < 0.05, stated


def test_wavestream_serve_process(tmp_path):
    """The real command: flags reach the server, it streams, and Ctrl+C stops it cleanly."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wavestream.cli", "serve", "--port", str(port), "--api-key", "k",
         "--max-sessions", "3", "--data-dir", str(tmp_path), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers_ready(base), "server did not come up", process, timeout=90)
        ready = httpx.get(base + "/readyz").json()
        assert ready["max_sessions"] == 3
        assert httpx.get(base + "/v1/models").status_code == 401
        with StreamClient(f"ws://127.0.0.1:{port}/v1/stream", api_key="k") as client:
            client.start("enhance", 16000)
            assert client.stream(signal(0.2, 16000), 320).output.shape == (3200, 1)
    finally:
        process.send_signal(signals.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_wavestream_serve_ray_process(tmp_path):
    """`wavestream serve --ray`: two replicas on a Ray instance of its own behind Ray's proxy on the
    given port; the flags reach the replicas, streams equal the model's output, SIGTERM (an
    orchestrator's stop; Ctrl+C is Python's own) removes it."""
    pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": "local"}  # never the cluster of another test or user
    process = subprocess.Popen(
        [sys.executable, "-m", "wavestream.cli", "serve", "--ray", "--replicas", "2", "--num-cpus", "1",
         "--port", str(port), "--api-key", "k", "--max-sessions", "3", "--preload", "enhance",
         "--data-dir", "data", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers_ready(base), "the Ray app did not come up", process, timeout=240)
        assert httpx.get(base + "/readyz").json()["max_sessions"] == 3
        assert httpx.get(base + "/v1/models").status_code == 401
        assert (tmp_path / "data" / "jobs").is_dir()  # the relative --data-dir, from this directory
        x = signal(1.0, 16000, seed=3)
        pipeline = StreamPipeline(load_stream_model("enhance"), 16000, 1)
        expected = Output.concat([pipeline.process(x), pipeline.finish()]).audio
        for _ in range(2):
            with StreamClient(f"ws://127.0.0.1:{port}/v1/stream", api_key="k") as client:
                client.start("enhance", 16000, encoding="pcm_f32le")
                np.testing.assert_allclose(client.stream(x, 320).output, expected, atol=1e-5)
    finally:
        process.send_signal(signals.SIGTERM)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/healthz", timeout=2)  # the proxy went with it


def test_ray_flags_need_ray(capsys):
    assert cli_main(["serve", "--replicas", "2", "--port", str(free_port())]) == 2
    assert "--replicas only with --ray" in capsys.readouterr().out


def test_weights_flags_and_env(monkeypatch, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for path in (a, b):
        path.write_bytes(b"")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--weights", f"encodec_24khz={a}", "--weights", f"enhance={b}"])
    assert settings_from_args(args).weights == {"encodec_24khz": a, "enhance": b}
    monkeypatch.setenv("WAVESTREAM_WEIGHTS", f"encodec_24khz={a}, enhance={b}")
    assert ServiceSettings().weights == {"encodec_24khz": a, "enhance": b}
    for bad, message in ((f"encodec_24khz={tmp_path / 'missing.safetensors'}", "does not exist"),
                         (str(a), "MODEL=PATH"), (f"enhance={a},enhance={b}", "given twice")):
        monkeypatch.setenv("WAVESTREAM_WEIGHTS", bad)
        with pytest.raises(ValidationError, match=message):
            ServiceSettings()


@pytest.mark.parametrize("weights, message", [("encodec_24khz={missing}", "does not exist"),
                                              ("no-such-model={present}", "unknown model"),
                                              ("{present}", "MODEL=PATH")])
def test_bad_weights_stop_the_server_at_startup(tmp_path, capsys, weights, message):
    present = tmp_path / "w.safetensors"
    present.write_bytes(b"")
    flag = weights.format(missing=tmp_path / "missing.safetensors", present=present)
    assert cli_main(["serve", "--weights", flag, "--port", str(free_port()), "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().out


def test_served_weights_replace_the_shipped_ones(tmp_path):
    """A server that refuses untrained models serves one given ``--weights``: its streams and REST
    answers use those weights, ``/v1/models`` calls it trained, and a bad per-stream param value on
    it is 1007 over WebSocket and 422 over REST."""
    weights = tmp_path / "filter.safetensors"
    given = FilterModel(seed=5)
    save_file({k: v.contiguous() for k, v in given.state_dict().items()}, str(weights))
    x = signal(0.3, 16000)
    pipeline = StreamPipeline(given, 16000, 1)
    expected = Output.concat([pipeline.process(x), pipeline.finish()]).audio
    with running_server(tmp_path / "data", preload=[], allow_untrained=False,
                        weights={"test-filter": weights, "test-state-gain": weights}) as srv:
        with StreamClient(srv.ws) as client:
            client.start("test-filter", 16000)
            out = client.stream(x, 480).output
        assert np.abs(out - expected).max() <= 1e-4
        models = {m["name"]: m for m in httpx.get(srv.http + "/v1/models").json()["models"]}
        assert models["test-filter"]["trained"] and not models["test-delay"]["trained"]
        with StreamClient(srv.ws) as client, pytest.raises(StreamError) as info:
            client.start("test-state-gain", 16000, params={"gain": 99})
        assert (info.value.code, info.value.close_code) == ("invalid_params", 1007)
        assert "gain must be" in info.value.message
        with StreamClient(srv.ws) as client, pytest.raises(StreamError) as info:
            client.start("test-delay", 16000)
        assert (info.value.code, info.value.close_code) == ("unknown_model", 1007)
        wav = io.BytesIO()
        sf.write(wav, x, 16000, format="WAV")
        for path, query in (("/v1/process/test-state-gain", {}), ("/v1/jobs", {"model": "test-state-gain"})):
            r = httpx.post(srv.http + path, params={**query, "params": json.dumps({"gain": 0})},
                           content=wav.getvalue())
            assert r.status_code == 422 and "gain must be" in r.json()["detail"]
        srv.wait_idle()


def test_ray_sigterm_drains_the_streams_of_every_replica(tmp_path):
    """SIGTERM to `wavestream serve --ray` (an orchestrator's stop) with streams open on both
    replicas: each stream gets the output of all the audio it sent, ``done`` (shutdown) and close
    1001, as a single server's streams do, and the command exits 0 well before the replicas'
    graceful_shutdown_timeout_s would have cut them."""
    pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": "local"}
    process = subprocess.Popen(
        [sys.executable, "-m", "wavestream.cli", "serve", "--ray", "--replicas", "2", "--num-cpus", "1",
         "--port", str(port), "--max-sessions", "2", "--preload", "enhance", "--shutdown-timeout", "60",
         "--data-dir", "data", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    x = signal(0.5, 16000, seed=8)
    pipeline = StreamPipeline(load_stream_model("enhance"), 16000, 1)
    expected = Output.concat([pipeline.process(x), pipeline.finish()]).audio

    async def main():
        clients = []
        while len(clients) < 4:  # 2 slots per replica: both replicas hold two
            client = AsyncStreamClient(f"ws://127.0.0.1:{port}/v1/stream")
            try:
                await client.start("enhance", 16000, encoding="pcm_f32le")
                clients.append(client)
            except StreamError as exc:  # Ray sent it to the full replica: retry, as a client should
                assert exc.code == "at_capacity", exc
        outputs = [[] for _ in clients]
        for client, out in zip(clients, outputs, strict=True):
            await client.send(x)
            await client.flush()  # its audio is in: what comes back is counted exactly
            out.extend(client.received())
        stopped = time.monotonic()
        process.send_signal(signals.SIGTERM)
        for client, out in zip(clients, outputs, strict=True):
            while (item := await client.receive(timeout=120)) is not None:
                out.append(item)
        return clients, [np.concatenate(out) for out in outputs], time.monotonic() - stopped

    try:
        wait_until(lambda: answers_ready(f"http://127.0.0.1:{port}"), "the Ray app did not come up", process,
                   timeout=240)
        clients, outputs, seconds = asyncio.run(main())
    finally:
        if process.poll() is None:
            process.send_signal(signals.SIGTERM)
        output, _ = process.communicate(timeout=180)
    for client, out in zip(clients, outputs, strict=True):
        assert client.done is not None and client.done.reason == "shutdown", (client.done, client.close_code)
        assert client.close_code == 1001 and client.done.stats["samples_in"] == len(x)
        np.testing.assert_allclose(out, expected, atol=1e-5)
    assert seconds < 30, seconds  # drained, not cut after the 65 s graceful_shutdown_timeout_s
    assert process.returncode == 0, output
