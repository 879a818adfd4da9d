"""Shared fixtures: real speech (espeak-ng) and real recorded noise from tests/data (see its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).parent / "data"
SAMPLE_RATE = 16000


def load(name: str) -> np.ndarray:
    audio, rate = sf.read(DATA / name, dtype="float32", always_2d=False)
    assert rate == SAMPLE_RATE, f"{name} is {rate} Hz"
    return audio


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.resize(noise, speech.shape)
    gain = np.sqrt(np.mean(speech**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (speech + gain * noise).astype(np.float32)


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    return load("speech_en.flac")


@pytest.fixture(scope="session")
def noise() -> np.ndarray:
    return load("noise_rain.flac")


@pytest.fixture(scope="session")
def noisy(speech, noise) -> np.ndarray:
    """English espeak-ng speech + recorded rain at 5 dB SNR, 16 kHz mono."""
    return mix_at_snr(speech, noise, 5.0)
