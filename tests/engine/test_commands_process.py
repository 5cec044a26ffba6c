import json

import numpy as np
import pytest
import soundfile as sf

from tests.engine.models import DelayModel, FilterModel, TokensModel, registered_test_models
from wavestream.cli import main
from wavestream.engine import Output, StreamPipeline


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered_test_models():
        yield


def write_input(path, rate, channels, seconds, seed=0, subtype="FLOAT"):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + rng.uniform(-0.2, 0.2, (len(t), channels))).astype(np.float32)
    sf.write(path, x, rate, subtype=subtype)
    return x


def reference(model, rate, x) -> Output:
    pipe = StreamPipeline(model, rate, x.shape[1])
    return Output.concat([pipe.process(x), pipe.finish()])


@pytest.mark.parametrize("rate,channels", [(44100, 2), (8000, 1), (16000, 3)])
def test_process_in_blocks_equals_one_pipeline_pass(tmp_path, rate, channels, capsys):
    x = write_input(tmp_path / "in.wav", rate, channels, 1.3, seed=rate)
    rc = main(["process", "test-filter", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
               "--block-seconds", "0.17", "--subtype", "FLOAT"])
    assert rc == 0
    assert "1.30 s of audio" in capsys.readouterr().out
    y, out_rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert out_rate == rate and y.shape == x.shape
    assert np.abs(y - reference(FilterModel(), rate, x).audio).max() <= 1e-5
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("ext,fmt", [(".flac", "FLAC"), (".ogg", "OGG"), (".wav", "WAV")])
def test_output_format_follows_the_extension(tmp_path, ext, fmt):
    write_input(tmp_path / "in.flac", 22050, 2, 0.5, subtype="PCM_16")
    x, _ = sf.read(tmp_path / "in.flac", dtype="float32", always_2d=True)
    assert main(["process", "test-delay", str(tmp_path / "in.flac"), str(tmp_path / f"out{ext}")]) == 0
    info = sf.info(tmp_path / f"out{ext}")
    assert (info.format, info.samplerate, info.channels, info.frames) == (fmt, 22050, 2, len(x))
    if fmt != "OGG":  # lossless formats: the pipeline's result up to 16-bit rounding
        y, _ = sf.read(tmp_path / f"out{ext}", dtype="float32", always_2d=True)
        assert np.abs(y - reference(DelayModel(), 22050, x).audio).max() <= 1.5 / 32768  # libsndfile scales by 32767


def test_params_and_sources(tmp_path):
    x = write_input(tmp_path / "in.wav", 16000, 1, 0.4)
    assert main(["process", "test-filter", str(tmp_path / "in.wav"), str(tmp_path / "loud.wav"),
                 "--param", "gain=2", "--subtype", "FLOAT"]) == 0
    y, _ = sf.read(tmp_path / "loud.wav", dtype="float32", always_2d=True)
    np.testing.assert_allclose(y, reference(FilterModel(gain=2.0), 16000, x).audio, atol=1e-5)
    assert main(["process", "test-sources", str(tmp_path / "in.wav"), str(tmp_path / "sources.wav")]) == 0
    assert sf.info(tmp_path / "sources.wav").channels == 2


def test_tokens_and_events_outputs(tmp_path):
    x = write_input(tmp_path / "in.wav", 16000, 1, 0.5)
    assert main(["process", "test-tokens", str(tmp_path / "in.wav"), str(tmp_path / "codes.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), reference(TokensModel(), 16000, x).frames)
    loud = np.zeros((16000, 1), np.float32)
    loud[8000:8160] = 0.9
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    assert main(["process", "test-events", str(tmp_path / "loud.wav"), str(tmp_path / "events.json")]) == 0
    events = json.loads((tmp_path / "events.json").read_text())
    assert events == [{"label": "loud", "start": 0.5, "end": 0.51, "score": pytest.approx(0.81)}]
    sf.write(tmp_path / "quiet.wav", np.zeros((16000, 1), np.float32), 16000)
    assert main(["process", "test-events", str(tmp_path / "quiet.wav"), str(tmp_path / "none.json")]) == 0
    assert json.loads((tmp_path / "none.json").read_text()) == []  # nothing heard: an empty list


def test_progress_bar_for_long_files(tmp_path, capsys):
    write_input(tmp_path / "long.wav", 8000, 1, 61, subtype="PCM_16")
    assert main(["process", "test-delay", str(tmp_path / "long.wav"), str(tmp_path / "out.wav")]) == 0
    err = capsys.readouterr().err
    assert "long.wav" in err and "100%" in err and "61" in err
    assert main(["process", "test-delay", str(tmp_path / "long.wav"), str(tmp_path / "out.wav"), "--no-progress"]) == 0
    assert "100%" not in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["no-such-model", "in.wav", "out.wav"], "unknown model 'no-such-model'"),
    (["test-filter", "missing.wav", "out.wav"], "cannot read audio"),
    (["test-filter", "garbage.wav", "out.wav"], "cannot read audio"),
    (["test-filter", "in.wav", "out.mp4"], "write it to a .wav or .flac or .ogg file"),
    (["test-tokens", "in.wav", "out.wav"], "write it to a .npy file"),
    (["test-filter", "in.wav", "in.wav"], "different file"),
    (["test-filter", "in.wav", "out.wav", "--param", "color=red"], "does not take params"),
    (["test-filter", "in.wav", "out.wav", "--param", "gain"], "KEY=VALUE"),
    (["test-filter", "in.wav", "out.flac", "--subtype", "FLOAT"], "not valid for .flac"),
    (["test-filter", "in.wav", "out.wav", "--weights", "nope.safetensors"], "does not exist"),
    (["test-filter", "in.wav", "out.wav", "--block-seconds", "0"], "positive"),
    (["test-stereo", "in.wav", "out.wav"], "exactly 2 channels"),
])
def test_clear_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.wav", 16000, 1, 0.2)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really a wave file" * 10)
    assert main(["process", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.wav").exists() and not list(tmp_path.glob("*.partial"))
