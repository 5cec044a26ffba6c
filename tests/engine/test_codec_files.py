"""`wavestream encode` / `wavestream decode` (.wsc token files) and the codec round trip of `wavestream process`."""

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from wavestream.cli import main
from wavestream.engine import Output, StreamPipeline
from wavestream.models.codec import SpectralCodec
from wavestream.models.registry import get_spec
from wavestream.streaming.tokens import read_token_file, write_token_file

#: the shipped card's config: what a command builds for weights with no card beside them
CONFIG = get_spec("codec").card().get("config", {})


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """One set of random weights for every command (each command builds its own model instance)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("codec") / "codec.safetensors"
    save_file({k: v.contiguous() for k, v in SpectralCodec(**CONFIG).state_dict().items()}, str(path))
    return path


def write_input(path, rate, channels, seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = (0.2 * np.sin(2 * np.pi * 180 * t)[:, None] * (np.sin(2 * np.pi * 3 * t)[:, None] > 0)
         + rng.normal(0, 0.02, (len(t), channels))).astype(np.float32)
    sf.write(path, x, rate, subtype="FLOAT")
    return x


def model(weights, **config) -> SpectralCodec:
    m = SpectralCodec(**{**CONFIG, **config}).eval()
    m.load_state_dict(load_file(str(weights)))
    return m


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2)])
def test_encode_decode_and_round_trip(tmp_path, weights, rate, channels, capsys):
    x = write_input(tmp_path / "in.wav", rate, channels, 1.37, seed=rate)
    w = ["--weights", str(weights)]
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "x.wsc"), "--bitrate", "3", *w]) == 0
    printed = capsys.readouterr().out
    header, codes = read_token_file(tmp_path / "x.wsc")
    frames = -(-(round(len(x) * 16000 / rate) + 320) // 320)  # the last samples need the next frame's codes
    assert (header.model, header.sample_rate, header.channels, header.samples) == ("codec", rate, channels, len(x))
    assert (header.n_q, header.codebook_size, header.frame_rate, header.frames) == (6, 1024, 50.0, frames)
    # the codes are the encode pipeline's
    pipe = StreamPipeline(model(weights, mode="encode"), rate, channels, params={"bitrate": 3})
    assert np.array_equal(codes, Output.concat([pipe.process(x), pipe.finish()]).frames)
    # the bitrate printed beside the nominal one is counted from the file
    rates = header.bitrates()
    assert rates["nominal"] == 3.0 * channels and f"nominal {3.0 * channels:.3f} kbps" in printed
    assert f"{rates['payload']:.3f} kbps (codes), {rates['file']:.3f} kbps (with the header)" in printed
    seconds = len(x) / rate
    assert rates["file"] == pytest.approx((tmp_path / "x.wsc").stat().st_size * 8 / seconds / 1000)

    assert main(["decode", str(tmp_path / "x.wsc"), str(tmp_path / "y.wav"), "--subtype", "FLOAT", *w]) == 0
    y, y_rate = sf.read(tmp_path / "y.wav", dtype="float32", always_2d=True)
    assert y_rate == rate and y.shape == x.shape
    assert main(["process", "codec", str(tmp_path / "in.wav"), str(tmp_path / "rt.wav"), "--param", "bitrate=3",
                 "--subtype", "FLOAT", *w]) == 0
    rt, rt_rate = sf.read(tmp_path / "rt.wav", dtype="float32", always_2d=True)
    assert rt_rate == rate and rt.shape == x.shape
    # decode(encode(x)) is the round trip; at another rate than the model's, except the last 10 ms: the
    # round trip resamples audio cut at the input's end, the decoder the whole last frame
    tail = 0 if rate == 16000 else rate // 100
    assert np.abs(y[:len(y) - tail] - rt[:len(rt) - tail]).max() <= 1e-5
    assert not list(tmp_path.glob("*.partial"))


def test_encode_other_bitrates_and_encodec(tmp_path, weights):
    write_input(tmp_path / "in.wav", 24000, 1, 0.5)
    for bitrate, n_q in (("1.5", 3), ("6", 12)):
        assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "x.wsc"), "--bitrate", bitrate,
                     "--weights", str(weights)]) == 0
        assert read_token_file(tmp_path / "x.wsc")[0].n_q == n_q
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "e.wsc"), "--model", "encodec_24khz",
                 "--bitrate", "12"]) == 0
    header, _ = read_token_file(tmp_path / "e.wsc")
    assert (header.model, header.n_q, header.frame_rate, header.frames) == ("encodec_24khz", 16, 75.0, 38)
    assert main(["decode", str(tmp_path / "e.wsc"), str(tmp_path / "e.flac")]) == 0
    assert sf.info(tmp_path / "e.flac").frames == 12000


@pytest.mark.parametrize("args, words", [
    (["encode", "{in}", "{tmp}/x.npy"], "write tokens to a .wsc file"),
    (["encode", "{in}", "{tmp}/x.wsc", "--bitrate", "4"], "bitrate must be one of 1.5, 3, 6"),
    (["encode", "{in}", "{tmp}/x.wsc", "--model", "enhance"], "does not take params ['mode']"),
    (["encode", "{tmp}/missing.wav", "{tmp}/x.wsc"], "cannot read audio"),
    (["decode", "{in}", "{tmp}/y.wav"], "not a wavestream token file"),
    (["decode", "{other}", "{tmp}/y.wav"], "not what model 'codec' decodes here"),
    (["decode", "{good}", "{tmp}/y.npy"], "write audio to a .wav, .flac or .ogg file"),
])
def test_errors_are_explained(tmp_path, capsys, args, words):
    write_input(tmp_path / "in.wav", 16000, 1, 0.2)
    good = tmp_path / "good.wsc"
    assert main(["encode", str(tmp_path / "in.wav"), str(good)]) == 0
    header, codes = read_token_file(good)
    other = tmp_path / "other.wsc"  # a codec whose frames are 40 Hz: not this model's
    write_token_file(other, type(header)(**{**header.__dict__, "frame_rate": 40.0}), codes)
    capsys.readouterr()
    paths = {"in": tmp_path / "in.wav", "tmp": tmp_path, "good": good, "other": other}
    assert main([a.format(**paths) for a in args]) == 2
    assert words in capsys.readouterr().err
