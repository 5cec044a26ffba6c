"""The spectral losses' STFT helper, the compressed-spectrum loss (issue 11's PESQ-oriented fine-tune) and the
STOI-shaped intelligibility loss (issue 9)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wavestream.train.losses import CompressedSpectrumLoss, IntelligibilityLoss, MultiResolutionSTFTLoss, stft

SPEECH = Path(__file__).parents[1] / "models" / "data" / "speech_16k.flac"  # real recorded speech


def _stft_loss_before_the_helper(estimate, reference, resolutions=((512, 128), (1024, 256), (256, 64)), eps=1e-6):
    """``MultiResolutionSTFTLoss`` as written before it used ``stft``: the reference for its values."""
    total = estimate.new_zeros(())
    for n_fft, hop in resolutions:
        mags = [torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=torch.hann_window(n_fft), center=False,
                           return_complex=True).abs().clamp_min(eps) for x in (estimate, reference)]
        est, ref = mags
        total = total + torch.linalg.norm(ref - est) / torch.linalg.norm(ref).clamp_min(eps)
        total = total + (ref.log() - est.log()).abs().mean()
    return total / len(resolutions)


def test_stft_loss_is_unchanged_by_the_shared_helper():
    torch.manual_seed(0)
    reference = torch.randn(3, 1, 8000)
    estimate = reference + 0.3 * torch.randn_like(reference)
    before = _stft_loss_before_the_helper(estimate, reference)
    assert torch.equal(MultiResolutionSTFTLoss()(estimate, reference), before)


@pytest.mark.parametrize("normalize", [False, True])
def test_compressed_loss_is_zero_for_identical_signals_and_grows_with_noise(normalize):
    torch.manual_seed(0)
    loss = CompressedSpectrumLoss(resolutions=[(512, 256), (256, 128)], normalize=normalize)
    x = 0.05 * torch.randn(2, 1, 8000)
    assert loss(x, x).item() == 0.0
    assert all(t.item() == 0.0 for t in loss.terms(x, x))
    assert 0 < loss(x + 0.005 * torch.randn_like(x), x) < loss(x + 0.05 * torch.randn_like(x), x)


def test_compressed_spectrum_keeps_the_phase_and_compresses_the_magnitude():
    torch.manual_seed(0)
    x = torch.randn(2, 4000)
    loss = CompressedSpectrumLoss(power=0.3)
    re, im, mag = loss.compressed(x, 512, 256)
    spec = stft(x, 512, 256, torch.hann_window(512))
    assert torch.allclose(mag, spec.abs().pow(0.3), rtol=1e-4)
    assert torch.allclose(torch.complex(re, im), spec.abs().pow(0.3) * torch.exp(1j * spec.angle()), rtol=1e-3,
                          atol=1e-5)
    # the mix: complex_weight of the complex MSE, the rest of the magnitude MSE
    y = x + 0.3 * torch.randn_like(x)
    complex_mse, magnitude_mse = loss.terms(y, x)
    assert loss(y, x) == pytest.approx(0.3 * complex_mse.item() + 0.7 * magnitude_mse.item(), rel=1e-6)
    assert CompressedSpectrumLoss(complex_weight=1.0)(y, x) == pytest.approx(complex_mse.item(), rel=1e-6)


def test_normalized_loss_ignores_the_level():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8000)
    y = x + 0.3 * torch.randn_like(x)
    loss = CompressedSpectrumLoss(normalize=True)
    assert loss(0.01 * y, 0.01 * x).item() == pytest.approx(loss(y, x).item(), rel=1e-4)
    plain = CompressedSpectrumLoss()
    assert plain(0.01 * y, 0.01 * x) < 0.1 * plain(y, x)  # without: MSE ~ level^0.6


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("reference_silent", [False, True])
def test_compressed_loss_has_finite_gradients_at_silence(normalize, reference_silent):
    """|S|^0.3 has an infinite slope at |S| = 0: digital silence (a closed mask, a silent target) must still
    give finite gradients."""
    torch.manual_seed(0)
    estimate = torch.zeros(2, 1, 4096, requires_grad=True)
    reference = torch.zeros(2, 1, 4096) if reference_silent else 0.1 * torch.randn(2, 1, 4096)
    loss = CompressedSpectrumLoss(resolutions=[(512, 256), (256, 64)], normalize=normalize)
    value = loss(estimate, reference)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(estimate.grad).all()
    if not reference_silent:
        assert estimate.grad.abs().max() > 0
    # silence in one part of the signal only: gradients stay finite there too
    partly = (0.1 * torch.randn(1, 1, 4096)).index_fill_(-1, torch.arange(1000, 3000), 0.0).requires_grad_()
    loss(partly, 0.1 * torch.randn(1, 1, 4096)).backward()
    assert torch.isfinite(partly.grad).all()


def test_compressed_loss_checks_its_options():
    with pytest.raises(ValueError, match="power"):
        CompressedSpectrumLoss(power=0.0)
    with pytest.raises(ValueError, match="complex_weight"):
        CompressedSpectrumLoss(complex_weight=1.5)
    with pytest.raises(ValueError, match="equal shapes"):
        CompressedSpectrumLoss()(torch.zeros(1, 4000), torch.zeros(1, 3000))


# -- the losses on a synthesized complex spectrum (issue 9: the codec's phase) ------------------------------


def _spectrum_of(x, n_fft=640, hop=320):
    from wavestream.streaming import STFT

    return STFT(n_fft, hop, "sqrt_hann")(x)


@pytest.mark.parametrize("power", [1.0, 0.3])
def test_consistency_is_zero_for_the_spectrum_of_a_signal_and_large_for_random_spectra(power):
    from wavestream.train.losses import SpectralConsistencyLoss

    torch.manual_seed(0)
    loss = SpectralConsistencyLoss(640, 320, power=power)
    x = 0.03 * torch.randn(2, 1, 320 * 30)
    spec = _spectrum_of(x)
    assert loss(spec, spec).item() < 1e-9  # an STFT is consistent: its re-analysis gives it back
    assert torch.allclose(loss.reanalysed(spec), spec[..., :-1], atol=1e-6)
    noise = torch.complex(torch.randn_like(spec.real), torch.randn_like(spec.real)) * spec.abs().mean()
    assert loss(noise, spec).item() > 0.1  # random frames: half their energy is not any signal's
    # level-independent: a louder reference and spectrum give the same value
    assert loss(10 * noise, 10 * spec).item() == pytest.approx(loss(noise, spec).item(), rel=1e-4)


@pytest.mark.parametrize("power", [1.0, 0.3])
def test_consistency_loss_has_finite_gradients(power):
    from wavestream.train.losses import SpectralConsistencyLoss

    torch.manual_seed(0)
    x = 0.03 * torch.randn(2, 1, 320 * 10)
    x[..., :1000] = 0  # digital silence: bins of exactly zero
    reference = _spectrum_of(x)
    estimate = (reference + 0.01 * torch.randn_like(reference.real)).detach().requires_grad_()
    silent = torch.zeros_like(reference).requires_grad_()
    for spec in (estimate, silent):
        value = SpectralConsistencyLoss(640, 320, power=power)(spec, reference)
        (grad,) = torch.autograd.grad(value, spec)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


def _speech() -> torch.Tensor:
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio)[None]


def _noisy(clean: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    return clean + noise * clean.norm() / noise.norm() * 10 ** (-snr_db / 20)


def test_intelligibility_is_one_for_the_reference_at_any_level_and_falls_with_noise():
    clean = _speech()
    loss = IntelligibilityLoss()
    assert loss.score(clean, clean).item() == pytest.approx(1.0, abs=1e-5)
    assert loss.score(0.1 * clean, clean).item() == pytest.approx(1.0, abs=1e-5)  # STOI ignores the level
    scores = [loss.score(_noisy(clean, snr), clean).item() for snr in (20, 10, 0, -10)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.7


@pytest.mark.skipif(importlib.util.find_spec("pystoi") is None, reason="pystoi is not installed (the eval extra)")
def test_intelligibility_follows_stoi_on_real_speech():
    from wavestream.evaluate.metrics import stoi
    clean = _speech()
    loss = IntelligibilityLoss()
    ours, theirs = [], []
    for snr in (15, 5, 0, -5, -10):
        noisy = _noisy(clean, snr, seed=snr + 20)
        ours.append(loss.score(noisy, clean).item())
        theirs.append(stoi(clean[0].numpy(), noisy[0].numpy()))
    assert np.corrcoef(ours, theirs)[0, 1] > 0.98
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 0.08


def test_intelligibility_loss_has_finite_gradients_and_checks_its_input():
    clean = _speech()[:, :16000].repeat(2, 1)
    estimate = torch.zeros_like(clean)
    estimate[1] = _noisy(clean[1:], 0)[0]
    estimate.requires_grad_(True)
    loss = IntelligibilityLoss()
    value = loss(estimate, clean)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(estimate.grad).all() and estimate.grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="equal shapes"):
        loss(clean[:, :-1], clean)
    too_short = loss.score(clean[:, :4000], clean[:, :4000])  # 19 frames, fewer than one 30-frame window
    assert torch.equal(too_short, torch.zeros(2))


def test_intelligibility_band_weights_weigh_each_band_s_correlation():
    clean = _speech()
    noisy = _noisy(clean, 0)
    # noise only below ~250 Hz: the lowest bands lose, the others keep the clean envelopes
    spectrum = torch.fft.rfft(noisy - clean)
    spectrum[..., int(250 * clean.shape[-1] / 16000):] = 0
    low_noise = clean + torch.fft.irfft(spectrum, n=clean.shape[-1])
    equal = IntelligibilityLoss()
    per_band = [IntelligibilityLoss(band_weights=[float(b == k) for b in range(15)]) for k in range(15)]
    # one-hot weights give the bands' own scores, whose mean is the unweighted score
    assert np.mean([loss.score(noisy, clean).item() for loss in per_band]) == pytest.approx(
        equal.score(noisy, clean).item(), abs=1e-5)
    assert IntelligibilityLoss(band_weights=[2.0] * 15).score(noisy, clean).item() == pytest.approx(
        equal.score(noisy, clean).item(), abs=1e-6)  # only the weights' ratios count
    assert per_band[0].score(low_noise, clean) < per_band[-1].score(low_noise, clean) - 0.1
    lows_first = IntelligibilityLoss(band_weights=[4.0] * 3 + [1.0] * 12)
    assert lows_first.score(low_noise, clean) < equal.score(low_noise, clean)
    for bad in ([1.0] * 14, [-1.0] + [1.0] * 14, [0.0] * 15):
        with pytest.raises(ValueError, match="band_weights"):
            IntelligibilityLoss(band_weights=bad)
