"""The 16 kHz speech codec ``codec``: streaming checks on every part with random weights and on the shipped
weights, bitrates, sizes, and what the shipped weights do to real speech."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.engine.pipeline import Output, StreamPipeline
from wavestream.models.codec import SpectralCodec
from wavestream.models.registry import describe, get_spec, load_model
from wavestream.streaming.quantize import UNUSED, inference_state_dict
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
from wavestream.train.losses import MultiScaleMelLoss

FRAME, RATE = 320, 16000
CODES = 0  # codes are compared exactly (the states beside them are floats, checked within 1e-5)


def audio(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Noise whose level jumps per frame over 40 dB, no frame silent (a random codec's latents then spread
    over its codes; exactly silent frames would give identical latents, which collapse the later codebooks)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, frames * FRAME, generator=gen) * 0.1
    return x * 10 ** (-2 * torch.rand(batch, 1, frames, generator=gen).repeat_interleave(FRAME, -1))


@pytest.fixture(scope="module")
def weights() -> dict:
    """Random weights whose codebooks are initialized from the encoder's latents, as training starts them
    (random codebooks far from the latents would map every frame to one code and make the code checks empty)."""
    torch.manual_seed(0)
    model = SpectralCodec().train()
    with torch.no_grad():  # the first batch initializes the codebooks, the next ones move them by EMA
        for seed in range(3):
            model.quantizer.quantize(model.encoder(audio(16, 100, seed=99 + seed)), n_q=12)
    return model.state_dict()


@pytest.fixture(scope="module")
def modes(weights) -> dict[str, SpectralCodec]:
    out = {}
    for mode in ("roundtrip", "encode", "decode"):
        out[mode] = SpectralCodec(mode=mode).eval()
        out[mode].load_state_dict(weights)
    return out


def test_declared_attributes_bitrates_and_size():
    # the output lags by the inverse STFT's overlap: one frame of samples (roundtrip; encode, whose last
    # input samples need the next frame's codes), one token frame (decode)
    for mode, hop, ratio, lag, kinds in (("roundtrip", FRAME, 1, FRAME, ("audio", "audio")),
                                         ("encode", FRAME, Fraction(1, FRAME), FRAME, ("audio", "tokens")),
                                         ("decode", 1, FRAME, 1, ("tokens", "audio"))):
        model = SpectralCodec(mode=mode)
        assert (model.sample_rate, model.hop, model.out_per_in, model.latency) == (RATE, hop, ratio, lag)
        assert (model.input_kind, model.output_kind) == kinds
        assert (model.frame_rate, model.codebooks, model.codebook_size) == (50, 12, 1024)
    model = SpectralCodec()
    assert 1000 * model.algorithmic_latency / RATE == 40.0  # a frame plus the overlap, no look-ahead (<= 40 ms)
    # 10 bits x 50 frames/s = 500 bit/s per codebook
    assert [model.n_q_for(b) for b in (1.5, 3, 6.0)] == [3, 6, 12]
    assert [model.bitrate_of(k) for k in (3, 6, 12)] == [1.5, 3.0, 6.0]
    assert model.init_state(1)["quantizer.n_q"].tolist() == [6]  # 3 kbps unless a stream asks otherwise
    assert model.quantizer.dropout_choices == (3, 6, 12)  # training drops to exactly the offered bitrates
    for bad in (12, 2, 1.0, "3", True, None):
        with pytest.raises(ValueError, match="bitrate must be one of 1.5, 3, 6"):
            model.n_q_for(bad)
        with pytest.raises(ValueError, match="bitrate"):
            model.configure_state(model.init_state(1), {"bitrate": bad})
    # sized for two CPU cores, and shipped weights (without the EMA statistics) under 10 MB
    parameters = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= parameters <= 3_000_000
    assert sum(v.numel() * v.element_size() for v in inference_state_dict(model).values()) < 10_000_000
    info = describe("codec")
    assert (info["task"], info["sample_rate"], info["hop"], info["latency_ms"]) == ("codec", RATE, FRAME, 40.0)
    assert info["stream_params"] == {"bitrate": 3.0, "mode": "roundtrip"}


def test_random_codes_are_not_trivial(modes):
    with torch.no_grad():
        codes = modes["encode"](audio(2, 20))
    assert codes.shape == (2, 12, 20) and (codes[:, 6:] == UNUSED).all()
    assert len(codes[:, 0].unique()) > 10 and len(codes[:, 5].unique()) > 10


@settings(max_examples=4, deadline=None)
@given(units=st.integers(3, 8), data=st.data())
def test_encoder_streaming(modes, units, data):
    encoder, x = modes["roundtrip"].encoder, audio(3, units, seed=units)
    assert_step_is_pure(encoder, x)
    assert_chunked_equals_offline(encoder, x, data.draw(partitions(units)))
    assert_causal(encoder, x, data.draw(st.integers(0, units * FRAME - 1)))
    assert_batch_independent(encoder, [x[i:i + 1] for i in range(3)], [0, 1, 2], units // 2)


@settings(max_examples=4, deadline=None)
@given(frames=st.integers(3, 12), data=st.data())
def test_quantizer_streaming_codes_identical(modes, frames, data):
    model = modes["roundtrip"]
    with torch.no_grad():
        latents = model.encoder(audio(3, frames, seed=frames))
    quantizer = model.quantizer
    assert_step_is_pure(quantizer, latents)
    assert_chunked_equals_offline(quantizer, latents, data.draw(partitions(frames)), atol=CODES)
    assert_causal(quantizer, latents, data.draw(st.integers(0, frames - 1)), atol=CODES)
    assert_batch_independent(quantizer, [latents[i:i + 1] for i in range(3)], [0, 1, 2], frames // 2)


@settings(max_examples=4, deadline=None)
@given(frames=st.integers(3, 8), data=st.data())
def test_decoder_streaming(modes, frames, data):
    model = modes["roundtrip"]
    with torch.no_grad():
        latents = model.quantizer.decode(model.quantizer.encode(model.encoder(audio(3, frames, seed=frames)), 12))
    decoder = model.decoder
    assert_step_is_pure(decoder, latents)
    assert_chunked_equals_offline(decoder, latents, data.draw(partitions(frames)))
    assert_causal(decoder, latents, data.draw(st.integers(0, frames - 1)))
    assert_batch_independent(decoder, [latents[i:i + 1] for i in range(3)], [0, 1, 2], frames // 2)


@pytest.mark.parametrize("mode", ["encode", "roundtrip"])
@settings(max_examples=4, deadline=None)
@given(units=st.integers(3, 8), data=st.data())
def test_encode_and_roundtrip_streaming(modes, mode, units, data):
    """Whole models: encode's codes identical (error 0) in any chunking, the round trip within 1e-5."""
    model, x = modes[mode], audio(3, units, seed=units)
    atol = CODES if mode == "encode" else 1e-5
    assert_step_is_pure(model, x)
    assert_chunked_equals_offline(model, x, data.draw(partitions(units)), atol=atol)
    assert_causal(model, x, data.draw(st.integers(0, units * FRAME - 1)), atol=atol)
    assert_batch_independent(model, [x[i:i + 1] for i in range(3)], [0, 1, 2], units // 2)  # codes: 1e-5 = equal


@settings(max_examples=4, deadline=None)
@given(frames=st.integers(3, 8), data=st.data())
def test_decode_streaming(modes, frames, data):
    model = modes["decode"]
    gen = torch.Generator().manual_seed(frames)
    codes = torch.randint(0, 1024, (3, 6, frames), generator=gen)
    assert_step_is_pure(model, codes)
    assert_chunked_equals_offline(model, codes, data.draw(partitions(frames)))
    t = data.draw(st.integers(0, frames - 1))  # causality with codes (the generic check perturbs with floats)
    changed = codes.clone()
    changed[..., t:] = torch.randint(0, 1024, changed[..., t:].shape, generator=gen)
    with torch.no_grad():
        assert max_abs_diff(model(codes)[..., :t * FRAME], model(changed)[..., :t * FRAME]) == 0
    assert_batch_independent(model, [codes[i:i + 1] for i in range(3)], [0, 1, 2], frames // 2)


def test_round_trip_is_encode_then_decode(modes):
    x = audio(2, 9)
    with torch.no_grad():
        codes = modes["encode"](x)
        assert max_abs_diff(modes["roundtrip"](x), modes["decode"](codes[:, :6])) <= 1e-5
        assert max_abs_diff(run_chunked(modes["decode"], codes, [2, 5, 2]), modes["roundtrip"](x)) <= 1e-5


def test_streams_at_each_bitrate_share_one_batch(modes):
    """Three streams at 1.5, 3 and 6 kbps in one step: each gets the codes (a prefix of the 6 kbps
    codes) and the audio it gets alone."""
    encode, roundtrip, x = modes["encode"], modes["roundtrip"], audio(3, 6, seed=5)
    for model in (encode, roundtrip):
        states = [model.configure_state(model.init_state(1), {"bitrate": b}) for b in (1.5, 3, 6)]
        with torch.no_grad():
            batch, _ = model.step(x, stack_states(states))
            alone = [model.step(x[i:i + 1], s)[0] for i, s in enumerate(states)]
        for i in range(3):
            assert max_abs_diff(batch[i:i + 1], alone[i]) <= (CODES if model is encode else 1e-5)
    with torch.no_grad():
        full = encode.step(x, encode.configure_state(encode.init_state(3), {"bitrate": 6}))[0]
        for i, (bitrate, n_q) in enumerate(((1.5, 3), (3, 6), (6, 12))):
            codes, _ = encode.step(x[i:i + 1], encode.configure_state(encode.init_state(1), {"bitrate": bitrate}))
            assert torch.equal(codes[0, :n_q], full[i, :n_q]) and (codes[0, n_q:] == UNUSED).all()


def test_pipeline_keeps_rate_and_length_at_every_bitrate(modes):
    x = np.random.default_rng(0).standard_normal((44100 // 3 + 17, 1)).astype(np.float32) * 0.1
    for bitrate in (1.5, 3, 6):
        pipe = StreamPipeline(modes["roundtrip"], 44100, 1, params={"bitrate": bitrate})
        y = Output.concat([pipe.process(x[:999]), pipe.process(x[999:]), pipe.finish()]).audio
        assert y.shape == x.shape and np.isfinite(y).all()
    enc = StreamPipeline(modes["encode"], RATE, 1, params={"bitrate": 6})
    assert enc.output_info() == {"kind": "tokens", "frame_rate": 50.0, "rows": 1, "codebooks": 12,
                                 "codebook_size": 1024}
    dec = StreamPipeline(modes["decode"], RATE, 1, params={"bitrate": 6})
    assert dec.input_info() == {"kind": "tokens", "frame_rate": 50.0, "rows": 1, "codebooks": 12,
                                "codebook_size": 1024}
    with pytest.raises(ValueError, match="bitrate must be one of"):
        StreamPipeline(modes["roundtrip"], RATE, 1, params={"bitrate": 12})


def test_shipped_weights_leave_out_the_ema_statistics(modes, weights):
    """What an export writes loads into a fresh model and computes the same codes and audio."""
    slim = inference_state_dict(modes["roundtrip"])
    assert set(weights) - set(slim) == {"quantizer.embed_avg", "quantizer.cluster_size"}
    loaded = SpectralCodec().eval()
    loaded.load_state_dict(slim)
    x = audio(2, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x), modes["roundtrip"](x))
    # as after a fresh initialization: every code just alive
    assert torch.equal(loaded.quantizer.embed_avg, loaded.quantizer.embed * 0.1)
    assert (loaded.quantizer.cluster_size == 0.1).all()
    assert "quantizer.embed_avg" not in slim  # loading did not fill in the caller's dict


def test_inference_search_follows_every_codebook_change(weights):
    """The float64 codebooks are cached per version of ``embed``: an EMA step or a load must refresh them."""
    model = SpectralCodec().eval()
    model.load_state_dict(weights)
    latents = model.encoder(audio(2, 10, seed=7)).detach()
    before = model.quantizer.encode(latents, 12)
    model.train()
    model.quantizer.quantize(latents * 3, n_q=12)  # EMA step (and restarts) on other vectors
    model.eval()
    fresh = SpectralCodec().eval()
    fresh.load_state_dict(model.state_dict())
    after = model.quantizer.encode(latents, 12)
    assert torch.equal(after, fresh.quantizer.encode(latents, 12)) and not torch.equal(after, before)
    model.load_state_dict(weights)
    assert torch.equal(model.quantizer.encode(latents, 12), before)
    with torch.inference_mode():  # a model made under inference mode has no version counter to cache on
        made_here = SpectralCodec().eval()
        made_here.load_state_dict(weights)
        assert torch.equal(made_here.quantizer.encode(latents, 12), before)


def test_streaming_encodes_in_float64_and_follows_every_weight_change(weights):
    """Streaming runs the encoder on a float64 copy of its weights and a float64 state (codes then do not
    depend on how a stream is cut); the copy is remade when a weight changes (an optimizer's in-place step,
    a load). Outputs keep their dtypes, and the encoder that training calls stays float32."""
    model = SpectralCodec(mode="encode").eval()
    model.load_state_dict(weights)
    x = audio(2, 10, seed=3)
    with torch.no_grad():
        codes = model(x)
        assert codes.dtype == torch.int64 and model.encoder(x).dtype == torch.float32
        assert {v.dtype for k, v in model.init_state(2).items() if k.startswith("encoder.")} == {torch.float64}
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert SpectralCodec().eval()(x).dtype == torch.float32  # the round trip's audio
        latents = model._float64_copy("encoder")(x.double())  # the same encoder (its convs run as matrix products)
        assert latents.dtype == torch.float64 and max_abs_diff(latents.float(), model.encoder(x)) <= 1e-5
        model.encoder.output_conv.conv.weight.mul_(1.5)
        fresh = SpectralCodec(mode="encode").eval()
        fresh.load_state_dict(model.state_dict())
        changed = model(x)
        assert torch.equal(changed, fresh(x)) and not torch.equal(changed, codes)
        model.load_state_dict(weights)
        assert torch.equal(model(x), codes)
    with torch.inference_mode():  # a model made under inference mode has no version counter to cache on
        made_here = SpectralCodec(mode="encode").eval()
        made_here.load_state_dict(weights)
        assert torch.equal(made_here(x), codes)


# -- the shipped weights ----------------------------------------------------------------------------------
DATA = Path(__file__).parent / "data"  # real recordings, see data/README.md


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """4.48 s of a real male talker at 16 kHz, ``[1, 1, whole frames]``."""
    x, rate = sf.read(str(DATA / "speech_16k.flac"), dtype="float32")
    assert rate == RATE
    return torch.from_numpy(x[: len(x) // FRAME * FRAME])[None, None]


@pytest.fixture(scope="module")
def shipped() -> dict[str, SpectralCodec]:
    if not get_spec("codec").weights_path.exists():
        pytest.fail("shipped codec weights missing")
    return {mode: load_model("codec", mode=mode) for mode in ("roundtrip", "encode", "decode")}


def test_shipped_weights_pass_the_streaming_checks(shipped, speech):
    """On real speech: codes identical in any chunking (error 0), the round trip within 1e-5; causal;
    streams in one batch as alone; step pure."""
    x = torch.cat([speech[..., :200 * FRAME], speech[..., 20 * FRAME:220 * FRAME]])  # two streams
    encode, roundtrip = shipped["encode"], shipped["roundtrip"]
    assert_chunked_equals_offline(encode, x, [1, 7, 2, 90, 100], atol=CODES)
    assert_chunked_equals_offline(roundtrip, x, [3, 1, 96, 100])
    assert_causal(roundtrip, x, 123 * FRAME + 5)
    assert_causal(encode, x, 77 * FRAME + 11, atol=CODES)
    assert_batch_independent(roundtrip, [x[:1], x[1:]], [0, 60], 100)
    assert_step_is_pure(roundtrip, x[..., :20 * FRAME])
    with torch.no_grad():
        codes = encode(x)
        assert max_abs_diff(shipped["decode"](codes[:, :6]), roundtrip(x)) <= 1e-5  # 3 kbps, the default


def frames_per_step(piece_sizes: list[int], total: int) -> list[int]:
    """Frames stepped per arriving piece when ``total`` samples come in pieces of ``piece_sizes`` samples
    (cycled), each step taking the whole frames buffered so far, as a stream's framer does."""
    ends = np.minimum(np.cumsum(np.resize(piece_sizes, total)), total)
    return [int(n) for n in np.diff(ends // FRAME, prepend=0) if n]


@torch.no_grad()
def near_tie_levels(model: SpectralCodec, x: torch.Tensor) -> tuple[float, float]:
    """Two levels of ``x`` between which one frame's first code changes, bisected until the two signals
    differ only by float32 rounding: at both, that frame's two nearest codes are almost equidistant (~1e-6
    apart on the shipped weights, typical gaps ~0.8), far inside the up to ~3e-5 by which a float32
    encoder's per-chunk rounding moves the distances."""
    lo, hi = 1.0, 1.05
    first = model(x * lo)[0, 0]
    frame = int((model(x * hi)[0, 0] != first).nonzero()[0, 0])
    prefix = x[..., :(frame + 1) * FRAME]  # the encoder is causal: the frame's code needs nothing later
    for _ in range(40):
        mid = (lo + hi) / 2
        if model(prefix * mid)[0, 0, frame] == first[frame]:
            lo = mid
        else:
            hi = mid
    return lo, hi


@torch.no_grad()
def test_shipped_codes_are_identical_in_any_chunking_even_at_a_near_tie(shipped, speech):
    """Real speech, also at two levels that put a frame on a near tie between two codes, encoded in pieces
    of 1, 7, 333, 777 samples and random mixes: the codes equal a one-shot encoding's at every bitrate.
    The float32 encoder this replaced flipped that frame's codes in every one of these chunkings."""
    model = shipped["encode"]
    lo, hi = near_tie_levels(model, speech)
    x = torch.cat([speech, speech * lo, speech * hi])
    rng = np.random.default_rng(0)
    chunkings = [[1], [7], [333], [777]] + [
        rng.choice([1, 7, 333, 777, *rng.integers(1, 5000, 4)], 50).tolist() for _ in range(3)]
    for bitrate in (1.5, 3, 6):
        state = model.configure_state(model.init_state(3), {"bitrate": bitrate})
        whole = model.step(x, state)[0]
        for sizes in chunkings:
            units = frames_per_step(sizes, x.shape[-1])
            differ = int((run_chunked(model, x, units, state) != whole).sum())
            assert differ == 0, f"{bitrate:g} kbps, pieces of {sizes[:8]}...: {differ} codes differ"


@torch.no_grad()
def test_shipped_codec_follows_real_speech_at_every_bitrate(speech):
    """The round trip of a real talker at 1.5, 3 and 6 kbps stays within 8 dB of mean log-mel distance
    of its input, and within half the distance of the input from itself 50 ms later (a codec that kept
    only the talker's average spectrum would be near that). Measured with the shipped weights: 5.7 /
    5.6 / 5.6 dB against 12.7 dB for the 50 ms shift and 26.4 dB for random weights."""
    mel = MultiScaleMelLoss(RATE, (64, 128, 256, 512, 1024, 2048))
    n = speech.shape[-1]
    shift = RATE // 20
    moved = mel.distance_db(speech[..., shift:], speech[..., :n - shift]).item()
    for bitrate in (1.5, 3, 6):
        model = load_model("codec", bitrate=bitrate)
        out = model(F.pad(speech, (0, model.latency)))[..., model.latency:]
        distance = mel.distance_db(out, speech).item()
        assert distance < min(8.0, moved / 2), (bitrate, distance, moved)


# -- the phase-vocoder decoder (issue 9) ------------------------------------------------------------

def vocoder_codec(weights: dict, synthesis=None, mode: str = "roundtrip") -> SpectralCodec:
    """A vocoder codec with the absolute codec's random weights, its output conv converted by ``warm_start``'s
    rule (for other synthesis frames: resampled over frequency, one copy per synthesis frame)."""
    from wavestream.train.codec import _convert_head

    model = SpectralCodec(mode=mode, phase="vocoder", synthesis=synthesis).eval()
    state = dict(weights)
    head = ("decoder.output_conv.conv.weight", "decoder.output_conv.conv.bias")
    state[head[0]], state[head[1]] = _convert_head(weights[head[0]], weights[head[1]], model)
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("synthesis", [None, (480, 160)])
@settings(max_examples=4, deadline=None)
@given(frames=st.integers(3, 8), data=st.data())
def test_vocoder_decoder_streaming(weights, synthesis, frames, data):
    """The decoder on its own, in float64 as a served stream runs it (its peak picking compares values:
    float32 rounding that differs with the chunking could decide a near tie the other way); also with two
    synthesis frames of 480 / 160 samples per code frame."""
    model = vocoder_codec(weights, synthesis)
    decoder = model.decoder.double()
    with torch.no_grad():
        latents = model.quantizer.decode(model.quantizer.encode(model.encoder(audio(3, frames, seed=frames)), 12))
    latents = latents.double()
    assert_step_is_pure(decoder, latents)
    assert_chunked_equals_offline(decoder, latents, data.draw(partitions(frames)))
    assert_causal(decoder, latents, data.draw(st.integers(0, frames - 1)))
    assert_batch_independent(decoder, [latents[i:i + 1] for i in range(3)], [0, 1, 2], frames // 2)


@pytest.mark.parametrize("mode,synthesis", [("decode", None), ("roundtrip", None), ("decode", (480, 160))])
def test_vocoder_codec_long_stream_in_random_chunks(weights, mode, synthesis):
    """A served stream decodes in float64: 20 s cut anywhere give the audio of one call, to float32's
    rounding (the phase adds up over the whole stream; a float32 decoder would let it drift)."""
    frames = 1000
    model = vocoder_codec(weights, synthesis, mode)
    x = audio(1, frames, seed=5) if mode == "roundtrip" else \
        torch.randint(0, 1024, (1, 6, frames), generator=torch.Generator().manual_seed(5))
    rng = np.random.default_rng(0)
    cuts = np.cumsum(rng.integers(1, 40, size=frames))
    sizes = np.diff(np.concatenate([[0], cuts[cuts < frames], [frames]])).tolist()
    with torch.no_grad():
        offline = model(x)
        chunked = run_chunked(model, x, sizes)
    assert offline.dtype == torch.float32
    assert max_abs_diff(chunked, offline) <= 1e-7 * offline.abs().max()  # float32 rounding only


def test_vocoder_decoder_starts_from_absolute_weights(weights, tmp_path):
    """``warm_start`` takes an absolute-phase codec's weights for a vocoder one: the log-magnitude rows of
    the output conv are kept, its angle rows dropped, everything else loaded as it is."""
    from safetensors.torch import save_file

    from wavestream.train.codec import warm_start

    path = tmp_path / "absolute.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    model = SpectralCodec(phase="vocoder")
    warm_start(model, path, vectors_per_batch=1600)
    n_freqs = model.decoder.istft.n_freqs
    state = model.state_dict()
    assert state.keys() == weights.keys()
    for name, value in weights.items():
        assert torch.equal(state[name], value[:n_freqs] if name.startswith("decoder.output_conv.") else value), name


def test_finer_synthesis_frames_keep_the_latency_and_start_from_the_encoders_frames(weights, tmp_path):
    """480 / 160 synthesis frames lag by 320 samples as 640 / 320 ones do (latency 40 ms); their output conv
    starts from a 640 / 320 codec's, resampled over frequency and repeated per synthesis frame."""
    from safetensors.torch import save_file

    from wavestream.train.codec import warm_start

    assert SpectralCodec(phase="vocoder", synthesis=(480, 160)).algorithmic_latency == 640
    with pytest.raises(ValueError, match="divide the frame"):
        SpectralCodec(phase="vocoder", synthesis=(480, 192))
    path = tmp_path / "absolute.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    finer = SpectralCodec(phase="vocoder", synthesis=(480, 160))
    warm_start(finer, path, vectors_per_batch=1600)
    head = finer.decoder.output_conv.conv.bias
    assert head.shape == (2 * 241,) and torch.equal(head[:241], head[241:])
    # bin 0 and the top bin keep the old rows (0 Hz and 8 kHz exist in both), shifted by log(240 / 320)
    assert torch.allclose(head[0], weights["decoder.output_conv.conv.bias"][0] + np.log(240 / 320))
    assert torch.allclose(head[240], weights["decoder.output_conv.conv.bias"][320] + np.log(240 / 320))
    with pytest.raises(ValueError, match="cannot start"):
        warm_start(SpectralCodec(phase="absolute", synthesis=(480, 160)), path, vectors_per_batch=1600)


def test_deeper_decoder_starts_as_the_shallower_one(weights, tmp_path):
    """``warm_start`` into a decoder with more residual blocks: the added blocks start as identities, so the
    grown codec's first output is the old codec's; a block they cannot grow from (the encoder) is refused."""
    from safetensors.torch import save_file

    from wavestream.train.codec import warm_start

    path = tmp_path / "codec.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    old, deeper = SpectralCodec().eval(), SpectralCodec(decoder_blocks=5).eval()
    old.load_state_dict(weights)
    warm_start(deeper, path, vectors_per_batch=1600)
    assert not torch.equal(deeper.decoder.blocks[4].conv1.conv.weight, torch.zeros(()))
    x = audio(1, 20, seed=5)
    with torch.no_grad():
        assert torch.equal(deeper(x), old(x))
    with pytest.raises(RuntimeError, match="encoder.blocks.2"):
        warm_start(SpectralCodec(encoder_blocks=3), path, vectors_per_batch=1600)


def test_wider_decoder_starts_as_the_narrower_one(weights, tmp_path):
    """``warm_start`` into a wider decoder (``decoder_hidden``): old weights keep their places, added units keep
    random weights, and what an old unit reads from an added one starts at zero, so the first output is the old
    codec's (to float32's rounding); those zeros still get a gradient (the added units are not zero), so training
    can open them. A narrower decoder is refused."""
    from safetensors.torch import save_file

    from wavestream.train.codec import warm_start

    path = tmp_path / "codec.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    old, wider = SpectralCodec().eval(), SpectralCodec(decoder_hidden=320).eval()
    old.load_state_dict(weights)
    warm_start(wider, path, vectors_per_batch=1600)
    gru = wider.decoder.gru.rnn
    for gate in range(3):  # each gate's block of the GRU's stacked matrices: old rows first, reading old units only
        rows = slice(gate * 320, gate * 320 + 256)
        old_rows = weights["decoder.gru.rnn.weight_hh_l0"][gate * 256:(gate + 1) * 256]
        assert torch.equal(gru.weight_hh_l0[rows, :256], old_rows)
        assert not gru.weight_hh_l0[rows, 256:].any() and not gru.weight_ih_l0[rows, 256:].any()
        assert gru.weight_hh_l0[gate * 320 + 256:(gate + 1) * 320].abs().sum() > 0  # added units: random
    x = audio(1, 20, seed=5)
    with torch.no_grad():  # the same sums, but float32 matrix products of another width round differently
        torch.testing.assert_close(wider(x), old(x), rtol=0, atol=1e-5 * old(x).abs().max().item())
    wider.train()
    wider.decoder(wider.quantizer.quantize(wider.encoder(x)).latents).square().mean().backward()
    assert wider.decoder.output_conv.conv.weight.grad[:, 256:].abs().sum() > 0
    assert wider.decoder.blocks[0].conv1.conv.weight.grad[:, 256:].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot widen"):
        warm_start(SpectralCodec(decoder_hidden=128), path, vectors_per_batch=1600)


def test_fine_analysis_encoder_streams_and_starts_as_the_coarse_one(weights, tmp_path):
    """``fine_analysis``: a second STFT's magnitudes (480 / 160, two per frame) join the encoder's input. The
    encoder still streams (chunked == offline, causal, batch-independent, pure); ``warm_start`` from a codec
    without it gives the new inputs zero weight, so the first codes are the old codec's, exactly, and those
    zeros get a gradient. A hop that does not divide the frame is refused."""
    from safetensors.torch import save_file

    from wavestream.train.codec import warm_start

    with pytest.raises(ValueError, match="divide the frame"):
        SpectralCodec(fine_analysis=(480, 192))
    path = tmp_path / "codec.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    old, fine = SpectralCodec(mode="encode").eval(), SpectralCodec(mode="encode", fine_analysis=(480, 160)).eval()
    old.load_state_dict(weights)
    warm_start(fine, path, vectors_per_batch=1600)
    conv = fine.encoder.input_conv.conv.weight
    assert conv.shape[1] == 2 * 321 + 2 * 241 and not conv[:, 2 * 321:].any()
    x = audio(2, 20, seed=5)
    with torch.no_grad():
        assert torch.equal(fine(x), old(x))  # codes
    encoder, units = fine.encoder, 6
    x = audio(3, units, seed=units)
    assert_step_is_pure(encoder, x)
    for sizes in ([1, 2, 3], [6], [2, 1, 1, 2]):
        assert_chunked_equals_offline(encoder, x, sizes)
    assert_causal(encoder, x, 2 * FRAME + 17)
    assert_batch_independent(encoder, [x[i:i + 1] for i in range(3)], [0, 1, 2], units // 2)
    with torch.no_grad():  # served codes (the float64 encoder) do not depend on the chunking
        assert torch.equal(run_chunked(fine, x, [1, 2, 3]), fine(x))
    fine.train()
    fine.encoder(x).square().mean().backward()
    assert fine.encoder.input_conv.conv.weight.grad[:, 2 * 321:].abs().sum() > 0
