"""A server killed with SIGKILL in the middle of receiving an upload: the half-written spool file
stays on disk, and the next server on the same data directory removes it at start and serves.

Real `wavestream serve` processes on loopback; the upload is a real WAV of speech sent over a raw
socket in pieces, so the server is still reading its body when it dies.
"""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from tests.service.conftest import free_port
from tests.waiting import answers_ready, wait_until

SPEECH = Path(__file__).parents[1] / "models" / "data" / "speech_16k.flac"
PIECE = 64 * 1024


def speech_wav(seconds: float) -> tuple[bytes, int]:
    """(a 16-bit WAV of the repository's speech clip repeated to ``seconds``, its frames)."""
    speech, rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    frames = int(seconds * rate)
    x = np.tile(speech, (frames // len(speech) + 1, 1))[:frames]
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), frames


def serve(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wavestream.cli", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers_ready(base), "server did not come up", process, timeout=90)
    return process, base


def spooled(data_dir: Path) -> list[Path]:
    """Upload files in the servers' spool directories (data_dir/tmp/<server>/upload-*)."""
    return sorted((data_dir / "tmp").glob("*/upload-*"))


def test_a_server_killed_mid_upload_leaves_a_spool_file_the_next_start_removes(tmp_path):
    body, _ = speech_wav(120.0)  # ~3.8 MB
    first, base = serve(tmp_path)
    try:
        port = int(base.rsplit(":", 1)[1])
        upload = socket.create_connection(("127.0.0.1", port))
        upload.sendall(f"POST /v1/process/enhance HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n".encode())
        sent = 0
        for sent in range(0, len(body) // 2, PIECE):  # the first half, piece by piece
            upload.sendall(body[sent:sent + PIECE])
        sent += PIECE

        def receiving() -> bool:  # the server has written a good part of what was sent
            files = spooled(tmp_path)
            return len(files) == 1 and files[0].stat().st_size >= len(body) // 4

        wait_until(receiving, "the upload did not reach the spool", first)
        first.kill()  # SIGKILL, with the body still streaming in
        first.wait(timeout=30)
        assert first.returncode == -9
        upload.close()
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=30)
    left = spooled(tmp_path)
    assert len(left) == 1 and 0 < left[0].stat().st_size <= sent < len(body)  # half an upload, never cleaned
    dead = left[0].parent

    second, base = serve(tmp_path)
    try:
        assert not dead.exists() and not dead.with_suffix(".lock").exists()  # removed at start
        assert spooled(tmp_path) == []
        live = [p for p in (tmp_path / "tmp").iterdir() if p.is_dir()]
        assert len(live) == 1 and live[0] != dead  # the new server's own spool directory

        wav, frames = speech_wav(3.0)
        reply = httpx.post(base + "/v1/process/enhance", content=wav, headers={"Content-Type": "audio/wav"},
                           timeout=120)
        assert reply.status_code == 200, reply.text
        out, rate = sf.read(io.BytesIO(reply.content), always_2d=True)
        assert rate == 16000 and out.shape == (frames, 1) and np.isfinite(out).all()
        # the result file goes once the response is sent (a task after it): the spool empties
        wait_until(lambda: spooled(tmp_path) == [], "the finished upload left files behind", second)
    finally:
        second.send_signal(signal.SIGINT)  # Ctrl+C: a clean stop
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output
    assert "Traceback" not in output
