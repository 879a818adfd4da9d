"""Conventional training losses (stage 1, and the optional term beside Model as Loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from denoise.stft import torch_istft, torch_stft


def si_sdr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item, ``(batch, samples) -> (batch,)``."""
    estimate = estimate - estimate.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    noise = estimate - projection
    return 10 * torch.log10((projection.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_sdr_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -si_sdr(estimate, target).mean()


def multi_resolution_stft_loss(
    estimate: torch.Tensor, target: torch.Tensor, resolutions=((512, 128), (1024, 256), (256, 64))
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions (Yamamoto et al.)."""
    total = estimate.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=estimate.device)
        est = torch.stft(estimate, n_fft, hop, window=window, return_complex=True).abs() + 1e-7
        ref = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs() + 1e-7
        convergence = torch.linalg.norm(ref - est, dim=(-2, -1)) / torch.linalg.norm(ref, dim=(-2, -1)).clamp_min(1e-7)
        total = total + convergence.mean() + F.l1_loss(est.log(), ref.log())
    return total / len(resolutions)


def compressed_spectral_loss(
    estimate_spec: torch.Tensor, target_spec: torch.Tensor, power: float = 0.3, complex_weight: float = 0.3
) -> torch.Tensor:
    """MSE of power-law compressed magnitude and compressed complex spectra, ``(B, T, F, 2)`` inputs."""

    def compress(spec):
        magnitude = spec.pow(2).sum(-1).add(1e-12).sqrt()
        compressed = magnitude.pow(power)
        return compressed, spec * (compressed / magnitude).unsqueeze(-1)

    est_mag, est_complex = compress(estimate_spec)
    ref_mag, ref_complex = compress(target_spec)
    return (1 - complex_weight) * F.mse_loss(est_mag, ref_mag) + complex_weight * F.mse_loss(est_complex, ref_complex)


CONVENTIONAL_LOSSES = ("mrstft", "spectral", "sisdr")


class ConventionalLoss(torch.nn.Module):
    """Weighted sum of the conventional losses; ``weights`` maps names in CONVENTIONAL_LOSSES to floats."""

    def __init__(self, weights: dict[str, float], n_fft: int = 320, hop: int = 160):
        super().__init__()
        unknown = set(weights) - set(CONVENTIONAL_LOSSES)
        if unknown:
            raise ValueError(f"unknown loss {sorted(unknown)}; choose from {CONVENTIONAL_LOSSES}")
        self.weights = {name: w for name, w in weights.items() if w}
        self.n_fft, self.hop = n_fft, hop

    def forward(self, enhanced_spec, clean_spec, enhanced_wave=None, clean_wave=None) -> dict[str, torch.Tensor]:
        if enhanced_wave is None and {"mrstft", "sisdr"} & set(self.weights):
            enhanced_wave = torch_istft(enhanced_spec, clean_wave.shape[-1], self.n_fft, self.hop)
        terms = {}
        if "spectral" in self.weights:
            terms["spectral"] = compressed_spectral_loss(enhanced_spec, clean_spec)
        if "mrstft" in self.weights:
            terms["mrstft"] = multi_resolution_stft_loss(enhanced_wave, clean_wave)
        if "sisdr" in self.weights:
            # scaled so that its magnitude is comparable to the spectral terms
            terms["sisdr"] = 0.01 * si_sdr_loss(enhanced_wave, clean_wave)
        return {name: self.weights[name] * value for name, value in terms.items()}


