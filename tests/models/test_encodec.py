"""encodec_24khz against transformers' EncodecModel with random weights in the official layout."""

import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from wavestream.engine.pipeline import Output, StreamPipeline
from wavestream.models.convert_encodec import convert_file, convert_state_dict
from wavestream.models.encodec import EncodecStreaming
from wavestream.models.registry import describe, load_model
from wavestream.streaming.quantize import UNUSED
from wavestream.streaming.state import stack_states
from wavestream.streaming.testing import (
    assert_batch_independent,
    assert_causal,
    assert_chunked_equals_offline,
    assert_step_is_pure,
    max_abs_diff,
    partitions,
    run_chunked,
)

transformers = pytest.importorskip("transformers")

FRAME = 320
AUDIO_ATOL = 1e-4


def official(pad_mode: str):
    """transformers' EncodecModel, random init, with random codebooks (its init leaves them at zero)."""
    torch.manual_seed(0)
    model = transformers.EncodecModel(transformers.EncodecConfig(pad_mode=pad_mode)).eval()
    with torch.no_grad():
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_(0, 0.03)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    return model


def ours(state_dict: dict, **config) -> EncodecStreaming:
    model = EncodecStreaming(**config).eval()
    model.load_state_dict(state_dict)
    return model


@pytest.fixture(scope="module")
def reference():
    """The official 24 kHz model with its causal padding made zeros (what a stream starts from)."""
    return official("constant")


@pytest.fixture(scope="module")
def converted(reference):
    return convert_state_dict(reference.state_dict())


@pytest.fixture(scope="module")
def audio():
    return torch.randn(2, 1, 24 * FRAME, generator=torch.Generator().manual_seed(1)) * 0.1


@torch.no_grad()
def run_official(model, x: torch.Tensor, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
    out = model.encode(x, bandwidth=bandwidth)
    return out.audio_codes[0], model.decode(out.audio_codes, out.audio_scales).audio_values


@pytest.mark.parametrize("bitrate", [24.0, 6.0])
def test_same_codes_and_audio_as_transformers_offline_and_chunked(reference, converted, audio, bitrate):
    ref_codes, ref_audio = run_official(reference, audio, bitrate)
    n_q = ref_codes.shape[1]
    assert n_q == int(bitrate * 1000 / 750)
    encoder = ours(converted, mode="encode", bitrate=bitrate)
    roundtrip = ours(converted, bitrate=bitrate)
    decoder = ours(converted, mode="decode")
    with torch.no_grad():
        parts = [1, 7, 2, 9, 5]  # frames per chunk
        for codes in (encoder(audio), run_chunked(encoder, audio, parts)):
            assert torch.equal(codes[:, :n_q], ref_codes)
            assert (codes[:, n_q:] == UNUSED).all()
        for y in (roundtrip(audio), run_chunked(roundtrip, audio, parts),
                  run_chunked(decoder, ref_codes, [3, 17, 4])):
            assert max_abs_diff(y, ref_audio) <= AUDIO_ATOL


def test_official_reflect_padding_differs_only_at_the_stream_start():
    """The official model reflect-pads each causal conv at the start, i.e. looks ahead there; a stream
    cannot, so the first frames differ. The difference decays through the LSTMs' memory: with these
    random weights latents differ by 4e-4 at frame 8 and 9e-7 at frame 24 (the last differing code
    was at frame 11, audio within 1e-4 from frame 18); past that start-up transient codes and audio
    are the same."""
    audio = torch.randn(1, 1, 36 * FRAME, generator=torch.Generator().manual_seed(1)) * 0.1
    model = official("reflect")
    ref_codes, ref_audio = run_official(model, audio, 24.0)
    converted = convert_state_dict(model.state_dict())
    with torch.no_grad():
        codes = ours(converted, mode="encode", bitrate=24.0)(audio)
        y = ours(converted, bitrate=24.0)(audio)
    assert not torch.equal(codes, ref_codes)  # the start differs (else this test shows nothing)
    assert torch.equal(codes[..., 24:], ref_codes[..., 24:])
    assert max_abs_diff(y[..., 25 * FRAME:], ref_audio[..., 25 * FRAME:]) <= AUDIO_ATOL


@pytest.fixture(scope="module")
def modes(converted):
    return {mode: ours(converted, mode=mode, bitrate=3.0) for mode in ("roundtrip", "encode", "decode")}


@pytest.mark.parametrize("mode", ["roundtrip", "encode"])
@settings(max_examples=3, deadline=None)
@given(units=st.integers(3, 5), data=st.data())
def test_streaming_checks_audio_input(modes, mode, units, data):
    model = modes[mode]
    x = torch.randn(3, 1, units * FRAME, generator=torch.Generator().manual_seed(units)) * 0.1
    assert_step_is_pure(model, x)
    assert_chunked_equals_offline(model, x, data.draw(partitions(units)))  # codes: error 0, i.e. identical
    assert_causal(model, x, data.draw(st.integers(0, units * FRAME - 1)))
    assert_batch_independent(model, [x[i:i + 1] for i in range(3)], [0, 1, 2], units // 2)


@settings(max_examples=3, deadline=None)
@given(frames=st.integers(3, 6), data=st.data())
def test_streaming_checks_decode(modes, frames, data):
    model = modes["decode"]
    gen = torch.Generator().manual_seed(frames)
    codes = torch.randint(0, 1024, (3, 4, frames), generator=gen)
    assert_step_is_pure(model, codes)
    assert_chunked_equals_offline(model, codes, data.draw(partitions(frames)))
    # causality with codes changed from frame t on (the generic check perturbs with float noise)
    t = data.draw(st.integers(0, frames - 1))
    changed = codes.clone()
    changed[..., t:] = torch.randint(0, 1024, changed[..., t:].shape, generator=gen)
    with torch.no_grad():
        assert max_abs_diff(model(codes)[..., :t * FRAME], model(changed)[..., :t * FRAME]) == 0
    assert_batch_independent(model, [codes[i:i + 1] for i in range(3)], [0, 1, 2], frames // 2)


def test_bitrate_is_per_stream_state(converted, audio):
    model = ours(converted, mode="encode", bitrate=6.0)
    assert model.n_q_for(1.5) == 2 and model.n_q_for(24) == 32
    assert model.init_state(1)["quantizer.n_q"].tolist() == [8]
    states = [model.configure_state(model.init_state(1), {"bitrate": b}) for b in (1.5, 12.0)]
    with torch.no_grad():
        batch, _ = model.step(audio, stack_states(states))
        full = ours(converted, mode="encode", bitrate=24.0)(audio)
    assert torch.equal(batch[0, :2], full[0, :2]) and (batch[0, 2:] == UNUSED).all()
    assert torch.equal(batch[1, :16], full[1, :16]) and (batch[1, 16:] == UNUSED).all()
    for bad in (5, 2.0, "6", True):
        with pytest.raises(ValueError, match="bitrate"):
            model.configure_state(model.init_state(1), {"bitrate": bad})
        with pytest.raises(ValueError, match="bitrate"):
            EncodecStreaming(bitrate=bad)
    with pytest.raises(ValueError, match="mode"):
        EncodecStreaming(mode="stream")


def test_declared_streaming_attributes():
    for mode, hop, ratio, kinds in (("roundtrip", FRAME, 1, ("audio", "audio")),
                                    ("encode", FRAME, Fraction(1, FRAME), ("audio", "tokens")),
                                    ("decode", 1, FRAME, ("tokens", "audio"))):
        model = EncodecStreaming(mode=mode)
        assert (model.sample_rate, model.hop, model.out_per_in, model.latency) == (24000, hop, ratio, 0)
        assert (model.input_kind, model.output_kind) == kinds
        assert (model.frame_rate, model.codebooks, model.codebook_size) == (75, 32, 1024)
    assert set(EncodecStreaming(mode="decode").init_state(1)) == \
        {k for k in EncodecStreaming().init_state(1) if k.startswith("decoder.")}


TRANSPOSED = {3, 6, 9, 12}  # decoder: input conv, LSTM, then (ELU, transposed conv, unit) per stage


def encodec_package_layout(state: dict) -> dict:
    """transformers' keys renamed to the `encodec` package's (encoder.model.{i}.conv.conv.weight_g,
    decoder.model.{i}.convtr.convtr..., quantizer.vq.layers.{q}._codebook...)."""
    out = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v")
        if m := re.match(r"^quantizer\.layers\.(\d+)\.codebook\.(.+)$", key):
            key = f"quantizer.vq.layers.{m[1]}._codebook.{m[2]}"
        elif m := re.match(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)$", key):
            wrapper = "convtr" if m[1] == "decoder" and int(m[2]) in TRANSPOSED else "conv"
            key = f"{m[1]}.model.{m[2]}." + m[3].replace("conv.", f"{wrapper}.{wrapper}.", 1)
        out[key] = value
    return out


def test_conversion_of_both_official_layouts_and_files(reference, converted, audio, tmp_path):
    state = reference.state_dict()
    package = encodec_package_layout(state)
    assert "decoder.model.3.convtr.convtr.weight_g" in package and "encoder.model.0.conv.conv.weight_v" in package
    for variant in (package, {k.replace("parametrizations.weight.original0", "weight_g")
                              .replace("parametrizations.weight.original1", "weight_v"): v
                              for k, v in state.items()}):
        again = convert_state_dict(variant)
        assert again.keys() == converted.keys()
        assert all(torch.equal(again[k], converted[k]) for k in converted)
    # files: the package's pickle (read with weights_only) and transformers' safetensors
    torch.save(package, tmp_path / "encodec_24khz.th")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    for source in ("encodec_24khz.th", "model.safetensors"):
        target = tmp_path / f"{source}.ours.safetensors"
        convert_file(tmp_path / source, target)
        model = load_model("encodec_24khz", weights=target, mode="encode", bitrate=24.0)
        assert model.trained
        with torch.no_grad():
            assert torch.equal(model(audio), ours(converted, mode="encode", bitrate=24.0)(audio))
    with pytest.raises(ValueError, match="not part of EnCodec"):
        convert_state_dict({**state, "encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="codebooks"):
        convert_state_dict({k: v for k, v in state.items() if "quantizer.layers.31." not in k})


def test_registered_and_described():
    info = describe("encodec_24khz")
    assert info["task"] == "codec" and info["sample_rate"] == 24000 and info["hop"] == FRAME
    assert info["input"] == info["output"] == "audio" and info["trained"] is False


def test_pipeline_encode_decode_and_roundtrip_sessions(modes, converted):
    """Tokens through StreamPipeline: an encode stream sends only its bitrate's codebooks, a decode
    stream takes them back (any chunking), a round trip keeps the input's rate and length."""
    x = np.random.default_rng(0).standard_normal((4 * FRAME + 100, 1)).astype(np.float32) * 0.1
    enc = StreamPipeline(modes["encode"], 24000, 1, params={"bitrate": 1.5})
    assert enc.output_info() == {"kind": "tokens", "frame_rate": 75.0, "rows": 1, "codebooks": 2, "codebook_size": 1024}
    first, rest = enc.process(x[:500]), enc.process(x[500:])
    tokens = Output.concat([first, rest, enc.finish()]).frames  # [frames, rows, codebooks]
    assert tokens.shape == (5, 1, 2) and tokens.dtype == np.int64  # the tail is padded to a whole frame
    with torch.no_grad():
        padded = torch.from_numpy(np.concatenate([x, np.zeros((FRAME * 5 - len(x), 1), np.float32)]).T[None])
        codes = modes["encode"](padded)
    assert np.array_equal(tokens[:, 0].T, codes[0, :2].numpy())
    assert StreamPipeline(modes["encode"], 24000, 1).per_row == 4  # the model's own default: 3 kbps

    dec = StreamPipeline(modes["decode"], 24000, 1, params={"bitrate": 1.5})  # the encoder's bitrate: 2 codebooks
    assert dec.output_info() == {"kind": "audio", "sample_rate": 24000, "channels": 1}
    assert dec.input_info() == {"kind": "tokens", "frame_rate": 75.0, "rows": 1, "codebooks": 2, "codebook_size": 1024}
    audio = Output.concat([dec.process(tokens[:2, 0]), dec.process(tokens[2:, 0]), dec.finish()]).audio
    with torch.no_grad():
        expected = modes["decode"](torch.from_numpy(tokens[:, 0].T[None]))
    assert audio.shape == (5 * FRAME, 1) and np.abs(audio[:, 0] - expected[0, 0].numpy()).max() <= 1e-5
    for bad in (tokens[:, 0].astype(np.float32), np.full((1, 2), 1024), np.zeros((1, 3), np.int64)):
        with pytest.raises(ValueError, match="token"):
            StreamPipeline(modes["decode"], 24000, 1, params={"bitrate": 1.5}).process(bad)
    with pytest.raises(ValueError, match="channels"):  # a decoder's output is mono; its frames' width is the bitrate's
        StreamPipeline(modes["decode"], 24000, 2)
    assert StreamPipeline(modes["decode"], 16000, 1, params={"bitrate": 1.5}).process(tokens[:3, 0]).audio.shape[0] \
        <= 3 * FRAME * 2 // 3

    rt = StreamPipeline(modes["roundtrip"], 48000, 1, params={"bitrate": 24.0})
    y = Output.concat([rt.process(np.repeat(x, 2, axis=0)), rt.finish()]).audio
    assert y.shape == (2 * len(x), 1)
    with pytest.raises(ValueError, match="bitrate"):
        StreamPipeline(modes["roundtrip"], 24000, 1, params={"bitrate": 7})
