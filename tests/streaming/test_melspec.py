import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.melspec import LogMelSpectrogram, hz_to_mel, mel_filterbank, mel_to_hz
from wavestream.streaming.testing import check_all, partitions

# (window, hop, mels): the kws front end (25 ms / 10 ms at 16 kHz), 64 mels, a small odd one
CONFIGS = [(400, 160, 40), (400, 160, 64), (96, 32, 8)]


@settings(max_examples=20, deadline=None)
@given(config=st.sampled_from(CONFIGS), frames=st.integers(2, 14), scale=st.sampled_from([1e-3, 1.0, 30.0]),
       data=st.data())
def test_melspec_streaming(config, frames, scale, data):
    window, hop, mels = config
    x = torch.randn(3, 1, frames * hop, generator=torch.Generator().manual_seed(frames)) * scale
    parts = data.draw(partitions(frames))
    t = data.draw(st.integers(0, frames * hop - 1))
    check_all(lambda: LogMelSpectrogram(16000, window, hop, mels), x, parts, t)



@pytest.mark.parametrize("config", CONFIGS)
def test_frame_is_the_step_of_one_frame(config):
    """``frame`` pads the window before the FFT instead of in it: the same values and state as ``step``."""
    window, hop, mels = config
    layer = LogMelSpectrogram(16000, window, hop, mels)
    g = torch.Generator().manual_seed(window)
    x, prev = torch.randn(3, 1, hop, generator=g), torch.randn(3, 1, window - hop, generator=g)
    want, state = layer.step(x, {"prev": prev})
    y, new_prev = layer.frame(x, prev)
    assert torch.equal(y, want[..., 0]) and torch.equal(new_prev, state["prev"])

def test_frames_cover_left_context_only_and_match_a_direct_computation():
    window, hop, mels = 400, 160, 40
    layer = LogMelSpectrogram(16000, window, hop, mels).double()
    x = torch.randn(1, 1, 5 * hop, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = layer(x)
    assert y.shape == (1, mels, 5)
    padded = np.concatenate([np.zeros(window - hop), x[0, 0].numpy()])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    filters = mel_filterbank(mels, 512, 16000, 20.0, 8000.0).numpy()
    for k in range(5):
        frame = padded[k * hop:k * hop + window] * hann  # ends with sample (k + 1) * hop - 1
        power = np.abs(np.fft.rfft(frame, 512)) ** 2
        expected = np.log(np.maximum(filters @ power, 1e-6))
        np.testing.assert_allclose(y[0, :, k].numpy(), expected, atol=1e-5)  # filters are stored in float32


def test_silence_is_the_floor_and_a_tone_lights_its_own_band():
    layer = LogMelSpectrogram()
    assert torch.equal(layer(torch.zeros(2, 1, 1600)), torch.full((2, 40, 10), float(np.log(1e-6))))
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t)[None, None]
    y = layer(tone)[0, :, 5:].mean(-1)  # after the first window has filled
    edges = mel_to_hz(torch.linspace(hz_to_mel(20.0), hz_to_mel(8000.0), 42))
    assert edges[y.argmax()] < 1000 < edges[y.argmax() + 2]  # the peak filter's band holds 1 kHz


def test_level_only_shifts_the_log_features():
    layer = LogMelSpectrogram()
    x = torch.randn(1, 1, 3200, generator=torch.Generator().manual_seed(2))
    shift = layer(x * 10) - layer(x)
    assert torch.allclose(shift, torch.full_like(shift, float(np.log(100))), atol=1e-4)


def test_filterbank_shape_and_peaks():
    filters = mel_filterbank(40, 512, 16000, 20.0, 8000.0)
    assert filters.shape == (40, 257) and (filters.sum(1) > 0).all() and filters.max() <= 1


def test_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="hop_length"):
        LogMelSpectrogram(window_length=160, hop_length=400)
    with pytest.raises(ValueError, match="empty filters"):
        LogMelSpectrogram(n_mels=256)
    layer = LogMelSpectrogram()
    with pytest.raises(ValueError, match="mono audio"):
        layer(torch.zeros(1, 2, 160))
    with pytest.raises(ValueError, match="multiple of hop"):
        layer(torch.zeros(1, 1, 100))
    y, s = layer.step(torch.zeros(2, 1, 0), layer.init_state(2))
    assert y.shape == (2, 40, 0) and s["prev"].shape == (2, 1, 240)
