"""Training losses for waveform-output models: SI-SDR, a multi-resolution STFT magnitude loss, a
power-law compressed spectrum loss (enhancement) and a multi-scale mel loss (codecs)."""

from __future__ import annotations

import math

import torch
from torch import nn

from wavestream.streaming.melspec import mel_filterbank


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last dim (zero-mean signals), one value per leading index."""
    if estimate.shape != reference.shape:
        raise ValueError(f"si_sdr needs equal shapes, got {tuple(estimate.shape)} and {tuple(reference.shape)}")
    estimate = estimate - estimate.mean(-1, keepdim=True)
    reference = reference - reference.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    noise = estimate - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """The complex spectra ``[N, n_fft // 2 + 1, frames]`` of ``x [..., T]`` (leading dims flattened), frames
    from the first sample on (no padding): what the spectral losses compare."""
    return torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=window, center=False, return_complex=True)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over several STFT resolutions.

    Magnitude losses at several window sizes catch artefacts that SI-SDR (a waveform measure)
    under-weights, such as musical noise and spectral holes, and they pin down the output level.
    """

    def __init__(self, resolutions: list[tuple[int, int]] = ((512, 128), (1024, 256), (256, 64)), eps: float = 1e-6):
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        self.eps = eps
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _magnitude(self, x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        return stft(x, n_fft, hop, getattr(self, f"window_{n_fft}")).abs().clamp_min(self.eps)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if estimate.shape != reference.shape:
            raise ValueError(f"STFT loss needs equal shapes, got {tuple(estimate.shape)} and {tuple(reference.shape)}")
        total = estimate.new_zeros(())
        for n_fft, hop in self.resolutions:
            est, ref = self._magnitude(estimate, n_fft, hop), self._magnitude(reference, n_fft, hop)
            convergence = torch.linalg.norm(ref - est) / torch.linalg.norm(ref).clamp_min(self.eps)
            log_mag = (ref.log() - est.log()).abs().mean()
            total = total + convergence + log_mag
        return total / len(self.resolutions)


class CompressedSpectrumLoss(nn.Module):
    """MSE between power-law compressed spectra: ``complex_weight`` x the mean squared distance of the
    compressed complex spectra (``|S|^power`` with the phase of ``S``) + (1 - ``complex_weight``) x that of
    the compressed magnitudes ``|S|^power``, averaged over the resolutions (Hann window, frames as ``stft``).

    The compression evens out loud and quiet bins much as hearing (and PESQ's loudness model) does, so
    errors in the quiet parts of speech and residual noise between words weigh more than in a plain
    spectral MSE; the complex part also scores the phase. ``eps`` goes inside the power
    (``(|S|^2 + eps)^(power / 2)``): the gradient of ``|S|^power`` is infinite at ``|S| = 0`` (digital
    silence, a fully closed mask), with ``eps`` it stays finite.

    The MSE of compressed spectra grows with the level (as level^(2 x power)): ``normalize`` divides both
    signals by the reference's RMS (per example, a constant for the gradient) first, so that quiet examples
    weigh as much as loud ones, as in the SI-SDR and STFT losses (and in PESQ, which aligns levels).
    """

    def __init__(self, resolutions: list[tuple[int, int]] = ((512, 256),), power: float = 0.3,
                 complex_weight: float = 0.3, normalize: bool = False, eps: float = 1e-12):
        super().__init__()
        if not 0 < power <= 1:
            raise ValueError(f"power must be in (0, 1], got {power}")
        if not 0 <= complex_weight <= 1:
            raise ValueError(f"complex_weight must be in [0, 1], got {complex_weight}")
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.power, self.complex_weight, self.normalize, self.eps = power, complex_weight, normalize, eps
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def compressed(self, x: torch.Tensor, n_fft: int, hop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real part, imaginary part and magnitude of the compressed spectrum of ``x`` (each ``[N, F, frames]``)."""
        spec = stft(x, n_fft, hop, getattr(self, f"window_{n_fft}"))
        re, im = spec.real, spec.imag
        power = re.square() + im.square() + self.eps  # |S|^2, never 0: finite gradients at silence
        gain = power.pow((self.power - 1) / 2)  # |S|^(power - 1): S x gain has magnitude |S|^power, phase of S
        return re * gain, im * gain, power.pow(self.power / 2)

    def terms(self, estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The complex and the magnitude MSE, each averaged over the resolutions."""
        if estimate.shape != reference.shape:
            raise ValueError(f"compressed spectrum loss needs equal shapes, got {tuple(estimate.shape)} and "
                             f"{tuple(reference.shape)}")
        if self.normalize:
            scale = reference.detach().pow(2).mean(-1, keepdim=True).add(self.eps).rsqrt()
            estimate, reference = estimate * scale, reference * scale
        complex_mse = magnitude_mse = estimate.new_zeros(())
        for n_fft, hop in self.resolutions:
            est_re, est_im, est_mag = self.compressed(estimate, n_fft, hop)
            ref_re, ref_im, ref_mag = self.compressed(reference, n_fft, hop)
            complex_mse = complex_mse + ((est_re - ref_re).square() + (est_im - ref_im).square()).mean()
            magnitude_mse = magnitude_mse + (est_mag - ref_mag).square().mean()
        return complex_mse / len(self.resolutions), magnitude_mse / len(self.resolutions)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        complex_mse, magnitude_mse = self.terms(estimate, reference)
        return self.complex_weight * complex_mse + (1 - self.complex_weight) * magnitude_mse


class MultiScaleMelLoss(nn.Module):
    """L1 distance of log-mel magnitudes at several window sizes (hop a quarter window), plus the L1 of
    the mel magnitudes themselves, averaged over the scales.

    Short windows see the timing of onsets, long ones the harmonics: together they judge what a codec
    got wrong at every resolution a listener hears (EnCodec's and SoundStream's reconstruction losses
    work the same way). ``distance_db`` is the log part in dB, per example: the codec's dev score.
    """

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
                 n_mels: int = 64, floor: float = 1e-5):
        super().__init__()
        self.windows, self.floor = tuple(int(w) for w in windows), floor
        for w in self.windows:
            mels = min(n_mels, w // 4)  # short windows have few FFT bins: fewer filters, none empty
            filters = mel_filterbank(mels, w, sample_rate, 0.0, sample_rate / 2).float()
            self.register_buffer(f"filters_{w}", filters.T.contiguous(), persistent=False)  # [freqs, mels]
            self.register_buffer(f"window_{w}", torch.hann_window(w), persistent=False)

    def mel(self, x: torch.Tensor, w: int) -> torch.Tensor:
        """Mel magnitudes ``[N, frames, mels]`` of ``x [..., T]`` at window ``w``."""
        spec = torch.stft(x.reshape(-1, x.shape[-1]), w, w // 4, window=getattr(self, f"window_{w}"), center=False,
                          return_complex=True)
        return spec.abs().transpose(1, 2) @ getattr(self, f"filters_{w}")

    def _log_distances(self, estimate: torch.Tensor, reference: torch.Tensor) -> list[torch.Tensor]:
        if estimate.shape != reference.shape:
            raise ValueError(f"mel loss needs equal shapes, got {tuple(estimate.shape)} and {tuple(reference.shape)}")
        out = []
        for w in self.windows:
            est, ref = self.mel(estimate, w), self.mel(reference, w)
            out.append(((est + self.floor).log() - (ref + self.floor).log()).abs().mean((1, 2)))
            out.append((est - ref).abs().mean((1, 2)))
        return out

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return torch.stack(self._log_distances(estimate, reference)).mean(1).sum() / len(self.windows)

    def distance_db(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Mean absolute log-mel difference in dB over the scales, one value per example (lower is better)."""
        logs = self._log_distances(estimate, reference)[::2]
        return torch.stack(logs).mean(0) * 20 / math.log(10)
