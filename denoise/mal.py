"""Model as Loss (Phaye, Cernak, Harper, Interspeech 2025).

The model's own encoder is the feature extractor of the loss:

    L_MAL = sum_l w_l * || E_l(clean) - E_l(enhanced) ||_1 / || E_l(clean) ||_1

``frozen``     E is a copy of the stage-1 encoder, never updated.
``frozen-fe``  E is a frozen copy of only the encoder's front layers (everything below the
               recurrent bottleneck): the paper's "frozen feature extractor".
``dynamic``    E is the live encoder being trained; it keeps changing with the model.

Clean features are targets (no gradient). Gradients always flow through E(enhanced) into the
model that produced ``enhanced``; in ``dynamic`` mode they also reach the encoder through E.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from denoise.model import DenoiseNet

MAL_ENCODERS = ("frozen", "frozen-fe", "dynamic")


class ModelAsLoss(nn.Module):
    def __init__(self, model: DenoiseNet, encoder: str = "frozen", layers: list[str] | None = None,
                 layer_weights: list[float] | None = None):
        super().__init__()
        if encoder not in MAL_ENCODERS:
            raise ValueError(f"unknown MAL encoder {encoder!r}; choose from {MAL_ENCODERS}")
        names = model.config.layer_names
        front = names[:-1]
        layers = list(layers or (front[-1:] if encoder == "frozen-fe" else ["bottleneck"]))
        if layers == ["all"]:
            layers = front if encoder == "frozen-fe" else names
        available = front if encoder == "frozen-fe" else names
        for name in layers:
            if name not in available:
                raise ValueError(f"MAL layer {name!r} not available with {encoder!r}; choose from {available}")
        self.mode = encoder
        self.layer_indices = [names.index(name) for name in layers]
        self.layer_weights = list(layer_weights or [1.0] * len(layers))
        if encoder == "dynamic":
            self.loss_model = None
            self._live = [model]  # a list, so the live model is not registered as a submodule twice
        else:
            self.loss_model = copy.deepcopy(model).requires_grad_(False)
            self._live = []
        self.train()

    def train(self, mode: bool = True) -> "ModelAsLoss":
        # The frozen copy stays in training mode: the network has no dropout or normalisation statistics,
        # so nothing changes on CPU, and cuDNN runs a recurrent layer's backward pass only in training mode.
        return super().train(True)

    @property
    def encoder_model(self) -> DenoiseNet:
        return self._live[0] if self.loss_model is None else self.loss_model

    def features(self, spec: torch.Tensor) -> list[torch.Tensor]:
        layers = self.encoder_model.encode(spec).layers
        return [layers[i] for i in self.layer_indices]

    def forward(self, enhanced_spec: torch.Tensor, clean_spec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self.features(clean_spec)
        estimates = self.features(enhanced_spec)
        loss = enhanced_spec.new_zeros(())
        for weight, target, estimate in zip(self.layer_weights, targets, estimates):
            loss = loss + weight * (target - estimate).abs().mean() / (target.abs().mean() + 1e-8)
        return loss
