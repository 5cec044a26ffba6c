"""The codecs on a real server (random weights, --allow-untrained): tokens both ways over the WebSocket,
bitrates per stream on one model instance, REST round trip, encode and decode of token files."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.service.conftest import signal
from wavestream.cli import main as cli_main
from wavestream.client import StreamClient, StreamError
from wavestream.engine import Output
from wavestream.streaming.testing import ATOL
from wavestream.streaming.tokens import MAGIC, TokenFileHeader, unpack_codes

RATE, FRAME = 16000, 320
SPEECH = Path(__file__).parents[1] / "models" / "data" / "speech_16k.flac"  # real speech, see its README


def wav(x: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def reference(server, x: np.ndarray, rate: int, params: dict, channels: int = 1) -> Output:
    """What the server's own instance for ``params`` makes of ``x`` (audio, or codes for a decoder) offline."""
    pipeline = server.service.engine.pipeline("codec", rate, channels, params)
    return Output.concat([pipeline.process(x), pipeline.finish()])


def test_tokens_both_ways_over_the_wire(server):
    """An encode stream sends uint16 code frames as the ready message describes; a decode stream takes
    them back in the same layout and returns the audio the server's decoder makes of them."""
    x = signal(1.0, RATE, seed=21)
    params = {"mode": "encode", "bitrate": 3}
    with StreamClient(server.ws) as client:
        ready = client.start("codec", RATE, params=params)
        out = ready.output
        assert (out.kind, out.frame_rate, out.rows, out.codebooks, out.codebook_size, out.dtype) == \
            ("tokens", 50.0, 1, 6, 1024, "uint16")
        assert ready.latency_ms == 40.0 and ready.input is None  # a frame, plus the next frame that completes it
        tokens = client.stream(x, 3 * FRAME + 17).output  # messages that are not whole frames
        wire_kbps = 8 * client.bytes_received / (len(x) / RATE) / 1000
    ref = reference(server, x, RATE, params).frames
    # 1 s is 50 frames, and one more: its codes complete the last samples (the decoder's overlap)
    assert tokens.shape == (51, 1, 6) and np.array_equal(tokens, ref)
    assert wire_kbps == 4.896  # 6 codes x 16 bits x 51 frames in 1 s: the nominal 3 kbps counts 10 bits a code

    for rate in (RATE, 48000):  # the output rate is the one asked for in start
        decode = {"mode": "decode", "bitrate": 3}
        with StreamClient(server.ws) as client:
            ready = client.start("codec", rate, params=decode)
            assert ready.input.model_dump(exclude_none=True) == {
                "kind": "tokens", "frame_rate": 50.0, "rows": 1, "codebooks": 6, "codebook_size": 1024,
                "dtype": "uint16"}
            assert (ready.output.kind, ready.output.sample_rate, ready.output.channels) == ("audio", rate, 1)
            audio = client.stream(tokens[:, 0], 7).output
            assert client.bytes_sent == 2 * tokens.size
        expected = reference(server, tokens[:, 0], rate, decode).audio
        assert audio.shape == (51 * FRAME * rate // RATE, 1) and np.abs(audio - expected).max() <= ATOL
    server.wait_idle()


def test_bitrates_share_one_model_instance_and_metrics_label(server):
    """Streams at 1.5, 3 and 6 kbps at once: one round-trip instance, one scheduler, no label per bitrate;
    each stream gets what it would get alone."""
    x = signal(0.5, RATE, seed=22)
    engine = server.service.engine
    clients = [StreamClient(server.ws) for _ in range(3)]
    try:
        for client, bitrate in zip(clients, (1.5, 3, 6), strict=True):
            client.start("codec", RATE, params={"bitrate": bitrate})
        for client in clients:
            client.send(x)
        outs = []
        for client in clients:
            client.end()
            items = client.received()
            outs.append(np.concatenate(items))
    finally:
        for client in clients:
            client.close()
    for out, bitrate in zip(outs, (1.5, 3, 6), strict=True):
        assert np.abs(out - reference(server, x, RATE, {"bitrate": bitrate}).audio).max() <= ATOL
    assert [key for key in engine._models if key[0] == "codec" and "mode" not in key[1]] == [("codec", "{}")]
    assert "codec" in engine.stats()["models"] and not any("bitrate" in name for name in engine.stats()["models"])
    metrics = httpx.get(f"{server.http}/metrics").text
    assert 'model="codec"' in metrics and "bitrate" not in metrics
    server.wait_idle()


@pytest.mark.parametrize("params, message", [
    ({"bitrate": 7}, "bitrate must be one of 1.5, 3, 6 (kbps), got 7"),
    ({"bitrate": "3"}, "bitrate must be one of"),
    ({"mode": "decode", "bitrate": 12}, "bitrate must be one of"),
    ({"level": 1}, "does not take params"),
])
def test_bad_params_are_refused_at_start(server, params, message):
    with StreamClient(server.ws) as client, pytest.raises(StreamError) as err:
        client.start("codec", RATE, params=params)
    assert (err.value.code, err.value.close_code) == ("invalid_params", 1007) and message in err.value.message
    server.wait_idle()


def test_bad_tokens_are_refused(server):
    decode = {"mode": "decode", "bitrate": 1.5}  # 3 codebooks: 6 bytes a frame
    for payload, words in ((b"\x01\x00\x02", "whole frames of 3"),
                           (np.array([[1, 2, 1024]], "<u2").tobytes(), "token codes must be in [0, 1024)")):
        with StreamClient(server.ws) as client:
            client.start("codec", RATE, params=decode)
            client.send(payload)
            with pytest.raises(StreamError) as err:
                client.end()
        assert (err.value.code, err.value.close_code) == ("invalid_tokens", 1007) and words in err.value.message
    with StreamClient(server.ws) as client, pytest.raises(StreamError) as err:
        client.start("codec", RATE, channels=2, params=decode)
    assert err.value.code == "invalid_params" and "channels must be 1" in err.value.message
    with StreamClient(server.ws) as client:
        client.start("codec", RATE, params=decode)
        with pytest.raises(ValueError, match=r"integer codes \[frames, 3\]"):  # the client checks before sending
            client.send(np.zeros((4, 6), np.int64))
    server.wait_idle()


def test_rest_round_trip_keeps_rate_and_length(server, http):
    x = signal(0.7, 44100, channels=2, seed=23)
    r = http.post("/v1/process/codec", params={"params": '{"bitrate": 3}'}, content=wav(x, 44100))
    assert r.status_code == 200, r.text
    y, rate = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
    assert rate == 44100 and y.shape == x.shape
    assert np.abs(y - reference(server, x, 44100, {"bitrate": 3}, channels=2).audio).max() <= ATOL
    r = http.post("/v1/process/codec", params={"params": '{"bitrate": 2}'}, content=wav(x, 44100))
    assert r.status_code == 422 and "bitrate must be one of 1.5, 3, 6" in r.json()["detail"]


def test_rest_encode_and_decode_token_files(server, http):
    x = signal(1.3, 22050, channels=2, seed=24)
    r = http.post("/v1/encode/codec", params={"params": '{"bitrate": 1.5}'}, content=wav(x, 22050))
    assert r.status_code == 200, r.text
    data = r.content
    assert data[:4] == MAGIC and r.headers["content-type"] == "application/octet-stream"
    header = TokenFileHeader.unpack(data)
    assert (header.model, header.sample_rate, header.channels, header.samples) == ("codec", 22050, 2, len(x))
    # 1.3 s: 65 frames, and the one whose codes complete them
    assert (header.frame_rate, header.n_q, header.codebook_size, header.frames) == (50.0, 3, 1024, 66)
    assert len(data) == header.file_bytes == header.header_bytes + -(-66 * 2 * 3 * 10 // 8)
    codes = reference(server, x, 22050, {"mode": "encode", "bitrate": 1.5}, channels=2).frames
    assert np.array_equal(unpack_codes(data[header.header_bytes:], codes.size, 10).reshape(codes.shape), codes)

    r = http.post("/v1/decode", content=data)
    assert r.status_code == 200, r.text
    y, rate = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
    assert rate == 22050 and y.shape == x.shape  # the encoded file's rate and length
    for c in range(2):
        expected = reference(server, codes[:, c], 22050, {"mode": "decode", "bitrate": 1.5}).audio[:len(x), 0]
        assert np.abs(y[:, c] - expected).max() <= ATOL
    r = http.post("/v1/decode", params={"format": "flac"}, content=data)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    server.wait_idle()


@pytest.mark.parametrize("case, status, words", [
    ("wav", 422, "not a wavestream token file"),
    ("truncated", 422, "its header promises"),
    ("version", 422, "version 2 is not supported"),
    ("model", 422, "written by model 'nope'"),
    ("empty", 400, "empty request body"),
])
def test_bad_token_files_are_refused_before_any_work(server, http, case, status, words):
    good = http.post("/v1/encode/codec", content=wav(signal(0.2, RATE), RATE)).content
    header = TokenFileHeader.unpack(good)
    body = {"wav": wav(signal(0.2, RATE), RATE), "truncated": good[:-3],
            "version": good[:4] + (2).to_bytes(2, "little") + good[6:], "empty": b"",
            "model": TokenFileHeader(**{**header.__dict__, "model": "nope"}).pack()
            + good[header.header_bytes:]}[case]
    r = http.post("/v1/decode", content=body)
    assert r.status_code == status and words in r.json()["detail"], r.text
    server.wait_idle()


@pytest.mark.parametrize("path, params, words", [
    ("/v1/encode/codec", {"params": '{"bitrate": 5}'}, "bitrate must be one of"),
    ("/v1/encode/codec", {"params": '{"mode": "decode"}'}, "sets the mode itself"),
    ("/v1/encode/enhance", {}, "does not take params ['mode']"),
    ("/v1/decode", {"format": "json"}, "format must be wav or flac"),
])
def test_bad_encode_and_decode_requests(http, path, params, words):
    r = http.post(path, params=params, content=wav(signal(0.1, RATE), RATE))
    assert r.status_code == 422 and words in r.json()["detail"], r.text


def test_encodec_24khz_encodes_and_decodes_too(server, http):
    """The same endpoints and wire layout serve EnCodec 24 kHz (random weights in its official layout)."""
    x = signal(0.4, RATE, seed=25)
    with StreamClient(server.ws) as client:
        ready = client.start("encodec_24khz", RATE, params={"mode": "encode", "bitrate": 1.5})
        assert (ready.output.frame_rate, ready.output.codebooks, ready.output.codebook_size) == (75.0, 2, 1024)
        tokens = client.stream(x, 999).output
    assert tokens.shape == (30, 1, 2)  # 0.4 s at 24 kHz is 9600 samples: 30 frames of 320
    r = http.post("/v1/encode/encodec_24khz", params={"params": '{"bitrate": 1.5}'}, content=wav(x, RATE))
    assert r.status_code == 200, r.text
    header = TokenFileHeader.unpack(r.content)
    assert (header.model, header.n_q, header.frames) == ("encodec_24khz", 2, 30)
    r = http.post("/v1/decode", content=r.content)
    assert r.status_code == 200, r.text
    y, rate = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
    assert rate == RATE and y.shape == x.shape and header.samples == len(x)
    server.wait_idle()


def test_stream_command_writes_and_reads_the_token_files_of_encode_and_decode(server, tmp_path, capsys):
    """`wavestream stream codec IN.wav OUT.wsc` writes the file `wavestream encode` writes (byte for byte),
    and `wavestream stream codec IN.wsc OUT.wav` gives the audio `wavestream decode` gives, in 20 ms
    messages of tokens; the shipped weights, real speech."""
    speech = tmp_path / "speech.wav"
    x, rate = sf.read(SPEECH, dtype="float32")
    sf.write(speech, x, rate, subtype="FLOAT")
    offline, streamed = tmp_path / "offline.wsc", tmp_path / "streamed.wsc"
    assert cli_main(["encode", str(speech), str(offline), "--bitrate", "3"]) == 0
    assert cli_main(["stream", "codec", str(speech), str(streamed), "--url", server.ws,
                     "--params", '{"bitrate": 3}']) == 0
    out = capsys.readouterr().out
    assert f"wrote {streamed}: {-(-(len(x) + FRAME) // FRAME)} token frames" in out  # and one frame more
    assert "counted on the wire 4.8" in out  # 6 uint16 codes x 50 frames/s (and one more)
    assert streamed.read_bytes() == offline.read_bytes()

    assert cli_main(["decode", str(offline), str(tmp_path / "offline.wav"), "--subtype", "FLOAT"]) == 0
    assert cli_main(["stream", "codec", str(offline), str(tmp_path / "streamed.wav"), "--url", server.ws]) == 0
    assert f"{len(x)} frames at {rate} Hz" in capsys.readouterr().out
    expected, expected_rate = sf.read(tmp_path / "offline.wav", dtype="float32")
    y, y_rate = sf.read(tmp_path / "streamed.wav", dtype="float32")
    assert y_rate == expected_rate == rate and y.shape == expected.shape == x.shape
    assert np.abs(y - expected).max() <= ATOL and np.sqrt(np.mean(y**2)) > 0.1 * np.sqrt(np.mean(x**2))
    server.wait_idle()


def test_stream_command_decodes_every_channel_at_the_files_rate(server, tmp_path):
    """A stereo 24 kHz token file at 1.5 kbps: a decode session per channel, resampled to 24 kHz and cut
    to the file's length, as `wavestream decode` does; paced in real time."""
    x, rate = sf.read(SPEECH, dtype="float32")
    x = x[: rate * 3 // 2]
    stereo = soxr.resample(np.stack([x, 0.5 * x[::-1]], axis=1), rate, 24000).astype(np.float32)
    speech = tmp_path / "stereo.wav"
    sf.write(speech, stereo, 24000, subtype="FLOAT")
    tokens = tmp_path / "stereo.wsc"
    assert cli_main(["encode", str(speech), str(tokens), "--bitrate", "1.5"]) == 0
    assert cli_main(["decode", str(tokens), str(tmp_path / "offline.wav"), "--subtype", "FLOAT"]) == 0
    assert cli_main(["stream", "codec", str(tokens), str(tmp_path / "streamed.wav"), "--url", server.ws,
                     "--realtime", "--chunk-ms", "40", "--params", '{"mode": "decode"}']) == 0
    expected, _ = sf.read(tmp_path / "offline.wav", dtype="float32")
    y, y_rate = sf.read(tmp_path / "streamed.wav", dtype="float32")
    assert y_rate == 24000 and y.shape == expected.shape == stereo.shape
    assert np.abs(y - expected).max() <= ATOL
    server.wait_idle()


@pytest.mark.parametrize("argv, words", [
    (["stream", "enhance", "{wsc}", "{tmp}/o.wav"], "holds tokens of model 'codec', not 'enhance'"),
    (["stream", "codec", "{wsc}", "{tmp}/o.wav", "--params", '{"mode": "roundtrip"}'], "needs mode 'decode'"),
    (["stream", "codec", "{wsc}", "{tmp}/o.wav", "--params", '{"bitrate": 6}'], "at 3 kbps, but --params asks for 6"),
    (["stream", "codec", "{wsc}", "{tmp}/o.npy"], "write audio to .wav, .flac or .ogg"),
    (["stream", "codec", "{wav}", "{tmp}/o.wsc", "--params", '{"mode": "decode"}'], "needs mode 'encode'"),
    (["stream", "test-tokens", "{wav}", "{tmp}/o.wsc"], "does not take params ['mode']"),
    (["stream", "codec", "{wav}", "{tmp}/o.txt", "--params", '{"mode": "encode"}'], "write tokens to a .wsc or .npy"),
    (["stream", "codec", "{wav}", "{tmp}/o.wav", "--params", '{"mode": "decode"}'],
     "session decodes tokens: stream a token file (.wsc)"),
])
def test_stream_command_refuses_what_does_not_fit(server, tmp_path, capsys, argv, words):
    wav_path, wsc = tmp_path / "in.wav", tmp_path / "in.wsc"
    sf.write(wav_path, signal(0.2, RATE), RATE, subtype="FLOAT")
    assert cli_main(["encode", str(wav_path), str(wsc), "--bitrate", "3"]) == 0
    capsys.readouterr()
    argv = [a.replace("{wsc}", str(wsc)).replace("{wav}", str(wav_path)).replace("{tmp}", str(tmp_path))
            for a in argv]
    assert cli_main([*argv, "--url", server.ws]) == 1
    assert words in capsys.readouterr().err
    server.wait_idle()
