"""`ready.latency_ms` measured end to end against the real server, for a client at 48 kHz.

The output of a stream is time-aligned with its input (input sample p comes back as output sample p:
the cross-correlation of the two peaks at lag 0); its latency is how much more input the server needs
before it can send that output. Audio goes in one sample per message with a `flush` after each
(`flushed` comes after all output for the audio before it), so the output count is known after every
input sample, at the finest arrival there is: sample q can leave once the output count passes q. The
longest such wait over every sample q is the stream's algorithmic latency, what `ready.latency_ms` states.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

from tests.service.conftest import run
from wavestream.streaming.resample import resample

RATE = 48000  # the client's; enhance runs at 16 kHz, so both resamplers are in the path
SPEECH = Path(__file__).parents[1] / "models" / "data" / "speech_16k.flac"
CLICKS = (9001, 13334, 17669, 21999)  # clicks at several phases of the model's 768-sample hop


def speech_with_clicks(seconds: float) -> np.ndarray:
    speech, rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    x = resample(speech[:int(seconds * rate)], rate, RATE)
    x *= 0.3 / np.abs(x).max()
    for p in CLICKS:
        x[p] = 0.9
    return x


async def stream_sample_by_sample(url: str, x: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """(ready, the whole output, output samples received after each of 0..len(x) input samples)."""
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "model": "enhance", "sample_rate": RATE,
                                  "encoding": "pcm_f32le"}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        counts = np.zeros(len(x) + 1, np.int64)
        pieces = []

        async def send():
            for i in range(len(x)):
                await ws.send(x[i].astype("<f4").tobytes())
                await ws.send(json.dumps({"type": "flush", "id": i + 1}))
            await ws.send(json.dumps({"type": "end"}))

        async def receive():
            received = 0
            async for message in ws:
                if isinstance(message, bytes):
                    pieces.append(np.frombuffer(message, "<f4"))
                    received += len(pieces[-1])
                    continue
                reply = json.loads(message)
                if reply["type"] == "flushed":
                    counts[reply["id"]] = received
                elif reply["type"] == "done":
                    return
                else:
                    raise AssertionError(reply)

        await asyncio.gather(send(), receive())
        return ready, np.concatenate(pieces), counts


def test_ready_latency_is_the_longest_wait_of_a_48khz_stream(server):
    x = speech_with_clicks(0.5)  # 24,000 samples: the latency's whole saw-tooth pattern recurs in it
    ready, y, counts = run(stream_sample_by_sample(server.ws, x))
    assert len(y) == len(x)

    # time-aligned: the output lines up with the input at lag 0 (speech and clicks alike)
    lags = np.arange(-200, 201)
    xcorr = [np.dot(x[200:-200, 0], y[200 + lag:len(y) - 200 + lag]) for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0

    # each click's output sample leaves once enough input has arrived. (Where exactly a click's peak
    # comes back is the model's business, not the service's: a denoiser may take a click for noise, and
    # the weights of 2026-11-30 remove the first one; the alignment is the cross-correlation's above.)
    stated = ready["latency_ms"] * RATE / 1000  # in client samples
    for p in CLICKS:
        sent = int(np.searchsorted(counts, p + 1))  # input samples in when output sample p went out
        assert 0 < sent - p <= stated + 3

    # every sample as if it were an impulse: the longest wait is the stated latency, to one
    # 16 kHz sample period (3 samples at 48 kHz)
    q = np.arange(len(x))
    leaves = np.searchsorted(counts, q + 1)  # input samples in when output sample q went out
    waits = leaves[leaves <= len(x)] - q[leaves <= len(x)]
    assert abs(int(waits.max()) - stated) <= 3, (int(waits.max()), stated)
    assert ready["latency_ms"] > 32.0  # more than the model's own 32 ms at 16 kHz
