"""Settings from env vars and flags, and `wavestream serve` as a real process."""

from __future__ import annotations

import argparse
import signal as signals
import subprocess
import sys
import time

import httpx
import pytest
from pydantic import ValidationError

from tests.service.conftest import free_port, signal
from wavestream.cli import main as cli_main
from wavestream.client.stream_client import StreamClient
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


def test_wavestream_serve_process(tmp_path):
    """The real command: flags reach the server, it streams, and Ctrl+C stops it cleanly."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wavestream.cli", "serve", "--port", str(port), "--api-key", "k",
         "--max-sessions", "3", "--data-dir", str(tmp_path), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
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
