import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.module import StreamingSequential
from wavestream.streaming.stft import ISTFT, STFT
from wavestream.streaming.testing import check_all, max_abs_diff, partitions, run_chunked

# (n_fft, hop) pairs the models use, plus an uneven overlap and a plain Hann window
CONFIGS = [(512, 256, "sqrt_hann"), (320, 160, "sqrt_hann"), (256, 128, "sqrt_hann"), (64, 16, "sqrt_hann"),
           (48, 16, "hann"), (20, 8, "sqrt_hann")]


@settings(max_examples=20, deadline=None)
@given(config=st.sampled_from(CONFIGS), channels=st.integers(1, 2), frames=st.integers(2, 12), data=st.data())
def test_stft_streaming(config, channels, frames, data):
    n_fft, hop, window = config
    x = torch.randn(3, channels, frames * hop, generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames * hop - 1))
    check_all(lambda: STFT(n_fft, hop, window, channels), x, parts, t, out_per_in=1 / hop)


@settings(max_examples=20, deadline=None)
@given(config=st.sampled_from(CONFIGS), channels=st.integers(1, 2), frames=st.integers(2, 12), data=st.data())
def test_istft_streaming(config, channels, frames, data):
    n_fft, hop, window = config
    x = torch.randn(3, channels, n_fft // 2 + 1, frames, dtype=torch.complex64,
                    generator=torch.Generator().manual_seed(frames))
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames - 1))
    check_all(lambda: ISTFT(n_fft, hop, window, channels), x, parts, t, out_per_in=hop)


def test_stft_frames_cover_left_context_only():
    n_fft, hop = 8, 4
    x = torch.arange(1, 13, dtype=torch.float64).reshape(1, 1, 12)
    stft = STFT(n_fft, hop).double()
    spec = stft(x)
    assert spec.shape == (1, 1, 5, 3)
    # frame k covers samples [(k+1)*hop - n_fft, (k+1)*hop), zeros before the start
    padded = torch.cat([torch.zeros(n_fft - hop, dtype=torch.float64), x[0, 0]])
    for k in range(3):
        expected = torch.fft.rfft(padded[k * hop:k * hop + n_fft] * stft.window.double())
        assert torch.allclose(spec[0, 0, :, k], expected, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(config=st.sampled_from(CONFIGS), frames=st.integers(1, 16), data=st.data())
def test_istft_of_stft_is_delayed_identity(config, frames, data):
    n_fft, hop, window = config
    delay = n_fft - hop
    x = torch.randn(2, 2, frames * hop, generator=torch.Generator().manual_seed(frames))
    chain = StreamingSequential(STFT(n_fft, hop, window, channels=2), ISTFT(n_fft, hop, window, channels=2))
    assert chain.hop == hop and chain.out_per_in == 1
    for y in (chain(x), run_chunked(chain, x, data.draw(partitions(frames)))):
        expected = torch.cat([torch.zeros(2, 2, delay), x], dim=-1)[..., :frames * hop]
        assert max_abs_diff(y, expected) <= 1e-5


def test_stft_istft_chain_streaming_checks():
    x = torch.randn(2, 1, 320 * 6, generator=torch.Generator().manual_seed(1))
    check_all(lambda: StreamingSequential(STFT(320, 160), ISTFT(320, 160)), x, [1, 3, 2, 4, 2], 700)


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="uncovered"):
        STFT(16, 16)  # periodic sqrt-Hann is 0 at sample 0: without overlap it is never covered
    with pytest.raises(ValueError, match="hop_length"):
        STFT(16, 32)
    with pytest.raises(ValueError, match="window"):
        ISTFT(16, 8, window="kaiser")
    stft, istft = STFT(16, 8), ISTFT(16, 8)
    with pytest.raises(ValueError, match="multiple of hop"):
        stft(torch.zeros(1, 1, 12))
    with pytest.raises(ValueError, match="channel"):
        stft(torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="spectrum"):
        istft(torch.zeros(1, 1, 8, 3, dtype=torch.complex64))


def test_empty_chunk_keeps_state():
    stft, istft = STFT(16, 8), ISTFT(16, 8)
    s = stft.init_state(2)
    spec, s2 = stft.step(torch.zeros(2, 1, 0), s)
    assert spec.shape == (2, 1, 9, 0) and torch.equal(s2["prev"], s["prev"])
    y, _ = istft.step(spec, istft.init_state(2))
    assert y.shape == (2, 1, 0)
