"""The one STFT setup, shared by training (torch) and inference (numpy).

Causal framing with no look-ahead: the signal is preceded by ``hop`` zeros, frame ``t`` covers
input samples ``[(t - 1) * hop, (t + 1) * hop)``, and a square-root Hann window is used for both
analysis and synthesis, so that with 50 % overlap the windows multiply to a Hann window that sums
to exactly one. Output samples ``[(t - 1) * hop, t * hop)`` are final once frame ``t`` is done,
which is what lets a streaming implementation reproduce the offline result sample for sample.

Spectra are real arrays of shape ``(..., frames, bins, 2)`` (real, imaginary), which is what the
ONNX graphs take and return.
"""

from __future__ import annotations

import math

import numpy as np


def sqrt_hann(n_fft: int) -> np.ndarray:
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def num_frames(num_samples: int, hop: int) -> int:
    """Frames needed so that every input sample is covered by two frames."""
    return math.ceil(num_samples / hop) + 1


def analyze(frames: np.ndarray) -> np.ndarray:
    """Windowed time frames ``(..., n_fft)`` -> spectra ``(..., bins, 2)`` float32."""
    spectrum = np.fft.rfft(frames * sqrt_hann(frames.shape[-1]), axis=-1)
    return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(np.float32)


def synthesize(spectrum: np.ndarray, n_fft: int) -> np.ndarray:
    """Spectra ``(..., bins, 2)`` -> windowed time frames ``(..., n_fft)`` float32, ready to overlap-add."""
    complex_spec = spectrum[..., 0] + 1j * spectrum[..., 1]
    return np.fft.irfft(complex_spec, n=n_fft, axis=-1).astype(np.float32) * sqrt_hann(n_fft)


def stft(signal: np.ndarray, n_fft: int = 320, hop: int = 160) -> np.ndarray:
    """``(..., samples)`` float signal -> ``(..., frames, bins, 2)`` float32 spectrum."""
    assert n_fft == 2 * hop, "the framing assumes 50 % overlap"
    signal = np.asarray(signal, dtype=np.float32)
    frames = num_frames(signal.shape[-1], hop)
    padded_length = (frames + 1) * hop
    pad = [(0, 0)] * (signal.ndim - 1) + [(hop, padded_length - hop - signal.shape[-1])]
    padded = np.pad(signal, pad)
    blocks = padded.reshape(*signal.shape[:-1], frames + 1, hop)
    return analyze(np.concatenate([blocks[..., :-1, :], blocks[..., 1:, :]], axis=-1))


def istft(spectrum: np.ndarray, num_samples: int, n_fft: int = 320, hop: int = 160) -> np.ndarray:
    """Inverse of `stft`: ``(..., frames, bins, 2)`` -> ``(..., num_samples)`` float32."""
    framed = synthesize(spectrum, n_fft)
    blocks = framed[..., :hop] + np.pad(framed[..., hop:], [(0, 0)] * (framed.ndim - 2) + [(1, 0), (0, 0)])[..., :-1, :]
    signal = blocks[..., 1:, :].reshape(*blocks.shape[:-2], -1)
    return signal[..., :num_samples]


def torch_stft(signal, n_fft: int = 320, hop: int = 160):
    """Differentiable torch twin of `stft` (same framing, same window): ``(B, samples) -> (B, T, F, 2)``."""
    import torch
    import torch.nn.functional as F

    frames = num_frames(signal.shape[-1], hop)
    padded = F.pad(signal, (hop, (frames + 1) * hop - hop - signal.shape[-1]))
    window = torch.from_numpy(sqrt_hann(n_fft)).to(signal.device)
    spec = torch.stft(padded, n_fft, hop, n_fft, window=window, center=False, return_complex=True)
    return torch.view_as_real(spec.transpose(-1, -2).contiguous())


def torch_istft(spectrum, num_samples: int, n_fft: int = 320, hop: int = 160):
    """Differentiable torch twin of `istft`: ``(B, T, F, 2) -> (B, num_samples)``."""
    import torch
    import torch.nn.functional as F

    window = torch.from_numpy(sqrt_hann(n_fft)).to(spectrum.device)
    framed = torch.fft.irfft(torch.view_as_complex(spectrum.contiguous()), n=n_fft, dim=-1) * window
    blocks = framed[..., :hop] + F.pad(framed[..., hop:], (0, 0, 1, 0))[..., :-1, :]
    return blocks[..., 1:, :].flatten(-2)[..., :num_samples]
