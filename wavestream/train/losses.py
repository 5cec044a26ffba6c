"""Training losses for waveform-output models: SI-SDR and a multi-resolution STFT magnitude loss."""

from __future__ import annotations

import torch
from torch import nn


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
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=getattr(self, f"window_{n_fft}"),
                          center=False, return_complex=True)
        return spec.abs().clamp_min(self.eps)

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
