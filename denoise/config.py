"""The one model configuration: network size and the STFT it works on."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; stored as ``config.json`` next to the weights."""

    size: str = "small"
    sample_rate: int = 16000
    n_fft: int = 320  # 20 ms window
    hop_length: int = 160  # 10 ms hop, no look-ahead
    hidden: int = 64
    num_convs: int = 1
    conv_kernel: int = 3

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: one analysis window (the model sees no future frames)."""
        return 1000.0 * self.n_fft / self.sample_rate

    @property
    def macs_per_second(self) -> float:
        """Multiply-accumulates per second of audio (matrix products; activations not counted)."""
        h, bins = self.hidden, self.num_bins
        gru = 2 * 3 * (h * h + h * h)  # encoder + decoder GRU: three gates, input and recurrent weights
        per_frame = bins * h + self.num_convs * self.conv_kernel * h * h + gru + h * bins
        return per_frame * self.sample_rate / self.hop_length

    @property
    def layer_names(self) -> list[str]:
        """Names of the encoder layers whose outputs `encode` returns, front to bottleneck."""
        return ["input"] + [f"conv{i + 1}" for i in range(self.num_convs)] + ["bottleneck"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def preset(cls, size: str) -> "ModelConfig":
        try:
            return PRESETS[size]
        except KeyError:
            raise ValueError(f"unknown model size {size!r}; choose from {sorted(PRESETS)}") from None


PRESETS = {
    "small": ModelConfig(size="small", hidden=64, num_convs=1),
    "base": ModelConfig(size="base", hidden=256, num_convs=2),
}


def read_config_file(path: str | Path) -> tuple[ModelConfig, dict]:
    """Read a ``config.json``; returns the model config and the whole document (metadata, hashes)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
        return ModelConfig.from_dict(document["model"]), document
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a denoise model config ({error})") from None
