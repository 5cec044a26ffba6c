"""Keyword events from the real kws model everywhere a user meets them: WebSocket, Python client,
REST (process and jobs), `wavestream stream` and `wavestream process`. Random weights are enough for
the plumbing: a low detector threshold (a stream param) makes the untrained model fire."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from websockets.sync.client import connect

from tests.service.conftest import signal
from tests.service.test_rest import wait_job
from wavestream.cli import main as cli_main
from wavestream.client import StreamClient
from wavestream.service.protocol import EventMessage

# a detector that fires on synthetic bursts whatever the shipped weights and their card (min_frames 1)
FIRING = {"threshold": 0.09, "smooth_frames": 5, "refractory_frames": 10, "min_frames": 1}
EVENT_KEYS = {"label", "start", "end", "score"}


def bursts(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Speech-like sound switching on and off every 100 ms, so the detector opens and closes."""
    x = signal(seconds, rate, seed=seed)
    gate = np.random.default_rng(seed).choice([0.0, 0.05, 1.0], int(seconds * 10) + 1)
    return (x * np.repeat(gate, rate // 10)[:len(x), None]).astype(np.float32)


def assert_same_events(got: list[dict], expected: list[dict]) -> None:
    """Same labels and frame times; scores equal up to their rounding to 4 decimals (the streamed and the
    offline posteriors differ by ~1e-7, which can flip the last rounded digit)."""
    assert [(e["label"], e["start"], e["end"]) for e in got] == [(e["label"], e["start"], e["end"]) for e in expected]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=1.01e-4)


def wav_bytes(x: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clip():
    x = bursts(4.0, 48000, seed=3)
    return x, 48000


@pytest.fixture(scope="module")
def reference(server, clip):
    x, rate = clip
    events = server.reference("kws", x, rate, FIRING).events
    assert len(events) >= 2 and all(set(e) == EVENT_KEYS for e in events)
    return events


def test_websocket_sends_flat_event_messages(server, clip, reference):
    x, rate = clip
    start = {"type": "start", "model": "kws", "sample_rate": rate, "channels": 1, "encoding": "pcm_f32le",
             "params": FIRING}
    with connect(server.ws) as ws:
        ws.send(json.dumps(start))
        ready = json.loads(ws.recv())
        assert ready["type"] == "ready" and ready["output"] == {"kind": "events", "frame_rate": 100.0, "rows": 1,
                                                                "classes": 22}
        for piece in np.array_split(x, 37):
            ws.send(piece.tobytes())
        ws.send(json.dumps({"type": "end"}))
        messages = []
        while (msg := json.loads(ws.recv()))["type"] != "done":
            messages.append(msg)
    assert all(set(m) == {"type", *EVENT_KEYS} and m["type"] == "event" for m in messages)
    assert_same_events([{k: v for k, v in m.items() if k != "type"} for m in messages], reference)
    server.wait_idle()


def test_python_client_returns_the_events(server, clip, reference):
    x, rate = clip
    with StreamClient(server.ws) as client:
        ready = client.start("kws", rate, params=FIRING)
        assert ready.output.kind == "events"
        result = client.stream(x, 1111)
    assert result.output is None and all(isinstance(e, EventMessage) for e in result.events)
    assert_same_events([e.event for e in result.events], reference)
    assert result.events[0].label == reference[0]["label"] and result.events[0].start == reference[0]["start"]
    server.wait_idle()


def test_rest_returns_the_json_list(server, http, clip, reference):
    x, rate = clip
    r = http.post("/v1/process/kws", params={"params": json.dumps(FIRING)}, content=wav_bytes(x, rate))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert_same_events(r.json(), reference)
    silent = http.post("/v1/process/kws", params={"params": json.dumps({"threshold": 1.0})},
                       content=wav_bytes(np.zeros((16000, 1), np.float32), 16000))
    assert silent.status_code == 200 and silent.json() == []  # nothing heard: an empty list
    wrong = http.post("/v1/process/kws", params={"format": "wav"}, content=wav_bytes(x, rate))
    assert wrong.status_code == 422 and "format=json" in wrong.json()["detail"]
    wrong = http.post("/v1/process/enhance", params={"format": "json"}, content=wav_bytes(x[:4800], rate))
    assert wrong.status_code == 422 and "wav or flac" in wrong.json()["detail"]


def test_job_result_is_the_json_list(server, http, clip, reference):
    x, rate = clip
    r = http.post("/v1/jobs", params={"model": "kws", "params": json.dumps(FIRING)}, content=wav_bytes(x, rate))
    assert r.status_code == 202, r.text
    job = wait_job(http, r.json()["id"])
    assert job["status"] == "done", job
    result = http.get(job["result_url"])
    assert result.headers["content-type"] == "application/json"
    assert_same_events(result.json(), reference)


def test_cli_stream_and_process_write_the_same_json_list(server, tmp_path, clip, reference, capsys):
    x, rate = clip
    source = tmp_path / "in.wav"
    sf.write(source, x, rate, subtype="FLOAT")
    streamed, processed = tmp_path / "streamed.json", tmp_path / "processed.json"
    assert cli_main(["stream", "kws", str(source), str(streamed), "--url", server.ws,
                     "--params", json.dumps(FIRING)]) == 0
    assert_same_events(json.loads(streamed.read_text()), reference)
    count = len(reference)
    assert f"wrote {streamed}: {count} event{'s' * (count != 1)};" in capsys.readouterr().out
    # `process` builds its own model: random weights differ from the server's, so only the form is checked
    params = [arg for key, value in FIRING.items() for arg in ("--param", f"{key}={value}")]
    assert cli_main(["process", "kws", str(source), str(processed), *params]) == 0
    events = json.loads(processed.read_text())
    assert isinstance(events, list) and all(set(e) == EVENT_KEYS for e in events)
    assert cli_main(["stream", "kws", str(source), str(tmp_path / "events.wav"), "--url", server.ws]) == 1
