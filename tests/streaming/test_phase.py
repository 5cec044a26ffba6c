"""The causal phase vocoder: the streaming checks, and that its phase makes a magnitude into coherent audio."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.streaming.phase import PhaseVocoder
from wavestream.streaming.stft import ISTFT, STFT
from wavestream.streaming.testing import check_all, partitions

N_FFT, HOP = 640, 320


def magnitudes(batch: int, channels: int, frames: int, seed: int) -> torch.Tensor:
    """Random magnitudes with a few partials per frame over a floor (peaks of every kind: tall, flat, at
    the edges), in float64 as the served decoder runs it."""
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(batch, channels, N_FFT // 2 + 1, frames, generator=g, dtype=torch.float64) * 1e-3
    for _ in range(8):
        k = torch.randint(0, N_FFT // 2 + 1, (batch, channels, 1, frames), generator=g)
        m.scatter_add_(2, k, torch.rand(batch, channels, 1, frames, generator=g, dtype=torch.float64))
    return m


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 2), frames=st.integers(2, 12), data=st.data())
def test_vocoder_streaming(channels, frames, data):
    x = magnitudes(3, channels, frames, seed=frames)
    check_all(lambda: PhaseVocoder(N_FFT, HOP, channels), x, data.draw(partitions(frames)),
              data.draw(st.integers(0, frames - 1)))


def test_output_keeps_the_magnitude_and_its_gradient():
    x = magnitudes(2, 1, 6, seed=0).float().requires_grad_(True)
    y = PhaseVocoder(N_FFT, HOP)(x)
    assert y.dtype == torch.complex64 and torch.allclose(y.abs(), x, atol=1e-6)
    y.real.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def tone_spectrum(freq: float, seconds: float = 1.0, rate: int = 16000) -> tuple[torch.Tensor, STFT, ISTFT]:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    x = (0.5 * torch.sin(2 * math.pi * freq * t)).float()
    stft, istft = STFT(N_FFT, HOP, "sqrt_hann"), ISTFT(N_FFT, HOP, "sqrt_hann")
    return stft(x[None, None]), stft, istft


@pytest.mark.parametrize("freq", [220.0, 1234.5, 3030.0])
def test_a_steady_tone_comes_back_coherent(freq):
    """The magnitude of a steady tone with the vocoder's phase resynthesizes the tone: the re-analysed
    magnitude matches within 1 dB, where a random phase loses several dB of energy to the overlap-add."""
    spec, stft, istft = tone_spectrum(freq)
    magnitude = spec.abs()
    vocoded = istft(PhaseVocoder(N_FFT, HOP)(magnitude))
    g = torch.Generator().manual_seed(0)
    random = istft(torch.polar(magnitude, torch.rand(magnitude.shape, generator=g) * 2 * math.pi))
    inner = slice(4, -4)  # steady frames, away from the start and the end

    def level_error_db(audio: torch.Tensor) -> float:
        again = stft(audio).abs()[..., inner]
        ref = magnitude[..., inner]
        return float(10 * torch.log10(again.square().sum() / ref.square().sum()).abs())

    assert level_error_db(vocoded) < 1.0
    assert level_error_db(random) > 2.0
    # and it is a tone at that frequency, not at its bin's centre (bins are 25 Hz apart): the peak of
    # 0.5 s of the steady part, zero-padded to a 0.5 Hz grid
    steady = vocoded[0, 0, 4000:12000].double().numpy()
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady)), n=32000))
    assert abs(spectrum.argmax() * 0.5 - freq) <= 1.0


def test_bad_inputs():
    vocoder = PhaseVocoder(N_FFT, HOP)
    with pytest.raises(ValueError, match="magnitudes"):
        vocoder(torch.zeros(1, 1, 100, 3))
    with pytest.raises(ValueError, match="magnitudes"):
        vocoder(torch.zeros(1, 1, N_FFT // 2 + 1, 3, dtype=torch.complex64))
