"""Deep-feature loss: the baseline Model as Loss is compared against.

    L_deep = mean over layers l of || phi_l(clean) - phi_l(enhanced) ||_1 / || phi_l(clean) ||_1

where phi is a frozen self-supervised speech model (wav2vec2, WavLM, HuBERT via `transformers`):
the CNN feature encoder output and every transformer layer's hidden states.

Pretrained weights: no PyPI package ships wav2vec2/WavLM weights for offline use (the packages that
wrap them download from the Hugging Face Hub at run time), so a real baseline needs a local model
folder (``config.json`` + weights, e.g. a copy of ``microsoft/wavlm-base-plus``). ``"tiny-random"``
builds a tiny randomly initialised wav2vec2 (tests, plumbing checks; it is not a meaningful loss).
Same normalisation as MAL, so only the feature extractor differs in the comparison.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

TINY_RANDOM = "tiny-random"


def tiny_config():
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def load_speech_model(source) -> nn.Module:
    """A frozen speech model: a local model folder, ``"tiny-random"``, or a `transformers` config object."""
    try:
        import transformers
    except ImportError:
        raise RuntimeError("the deep-feature loss needs transformers: pip install transformers") from None
    if source is None:
        raise ValueError("the deep-feature loss needs a model: a local wav2vec2/WavLM folder or 'tiny-random'")
    if isinstance(source, transformers.PretrainedConfig):
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(source)
    elif str(source) == TINY_RANDOM:
        torch.manual_seed(0)
        model = transformers.Wav2Vec2Model(tiny_config())
    else:
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise ValueError(f"{source}: not a local transformers model folder (no config.json); "
                             "the Hugging Face Hub is not used for the deep-feature loss")
        model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
    return model.eval().requires_grad_(False)


class DeepFeatureLoss(nn.Module):
    """``forward(enhanced_wave, clean_wave) -> scalar``; waveforms (batch, samples) at 16 kHz."""

    def __init__(self, source, layers: list[int] | None = None):
        super().__init__()
        self.speech_model = load_speech_model(source)
        self.layers = layers  # indices into hidden_states (0 = feature projection); None = all

    def train(self, mode: bool = True):
        super().train(mode)
        self.speech_model.eval()  # always frozen, no dropout
        return self

    def features(self, wave: torch.Tensor) -> list[torch.Tensor]:
        # the models were trained on per-utterance normalised input (their feature extractor does this)
        wave = (wave - wave.mean(-1, keepdim=True)) / (wave.std(-1, keepdim=True) + 1e-5)
        hidden = self.speech_model(wave, output_hidden_states=True, return_dict=True).hidden_states
        return [hidden[i] for i in (self.layers or range(len(hidden)))]

    def forward(self, enhanced_wave: torch.Tensor, clean_wave: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self.features(clean_wave)
        estimates = self.features(enhanced_wave)
        terms = [(t - e).abs().mean() / (t.abs().mean() + 1e-8) for t, e in zip(targets, estimates)]
        return torch.stack(terms).mean()
