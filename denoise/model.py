"""The network: a causal STFT-domain encoder-decoder, and its streaming form.

    enhanced = decode(encode(noisy), noisy)

The encoder maps each frame's log-power spectrum through an input projection, causal temporal
convolutions and a GRU (the bottleneck). The decoder runs a second GRU over the bottleneck and
predicts a real-valued mask on the noisy spectrum. Every layer only looks at the current and
past frames, so the model adds no latency beyond the STFT window.

All recurrent and convolutional memory is explicit (`State`): offline processing starts from a
zero state, streaming carries it from call to call, and `StreamingDenoiser` exposes it as named
tensors for the ONNX graph. Offline and streaming are the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoise.config import ModelConfig


@dataclass
class State:
    conv: torch.Tensor  # (num_convs, batch, hidden, kernel - 1): past conv inputs
    encoder: torch.Tensor  # (1, batch, hidden): encoder GRU
    decoder: torch.Tensor  # (1, batch, hidden): decoder GRU


@dataclass
class Encoded:
    layers: list[torch.Tensor]  # one (batch, frames, hidden) tensor per `ModelConfig.layer_names`
    conv_state: torch.Tensor
    encoder_state: torch.Tensor

    @property
    def bottleneck(self) -> torch.Tensor:
        return self.layers[-1]


class CausalConv(nn.Module):
    """Temporal convolution over frames that sees only the current and past frames."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel)
        self.activation = nn.PReLU(channels)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (batch, channels, frames); past: (batch, channels, kernel - 1)
        extended = torch.cat([past, x], dim=-1)
        return self.activation(self.conv(extended)), extended[..., -past.shape[-1] :]


class DenoiseNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden
        self.input_projection = nn.Sequential(nn.Linear(config.num_bins, hidden), nn.PReLU())
        self.convs = nn.ModuleList(CausalConv(hidden, config.conv_kernel) for _ in range(config.num_convs))
        self.encoder_gru = nn.GRU(hidden, hidden, batch_first=True)
        self.decoder_gru = nn.GRU(hidden, hidden, batch_first=True)
        self.mask = nn.Linear(hidden, config.num_bins)

    def initial_state(self, batch: int = 1, device=None) -> State:
        c = self.config
        return State(
            conv=torch.zeros(c.num_convs, batch, c.hidden, c.conv_kernel - 1, device=device),
            encoder=torch.zeros(1, batch, c.hidden, device=device),
            decoder=torch.zeros(1, batch, c.hidden, device=device),
        )

    @staticmethod
    def spectral_features(spec: torch.Tensor) -> torch.Tensor:
        """(batch, frames, bins, 2) spectrum -> scaled log power (batch, frames, bins)."""
        return 0.1 * torch.log(spec.pow(2).sum(-1) + 1e-10)

    def encode(self, spec: torch.Tensor, state: State | None = None) -> Encoded:
        """Spectrum -> per-layer features (front layers first, bottleneck last) and encoder state."""
        state = state or self.initial_state(spec.shape[0], spec.device)
        x = self.input_projection(self.spectral_features(spec))
        layers = [x]
        h = x.transpose(1, 2)
        conv_states = []
        for conv, past in zip(self.convs, state.conv):
            h, new_past = conv(h, past)
            conv_states.append(new_past)
            layers.append(h.transpose(1, 2))
        bottleneck, encoder_state = self.encoder_gru(layers[-1], state.encoder)
        layers.append(bottleneck)
        return Encoded(layers, torch.stack(conv_states), encoder_state)

    def decode(
        self, encoded: Encoded, spec: torch.Tensor, decoder_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features + noisy spectrum -> (enhanced spectrum, decoder state)."""
        if decoder_state is None:
            decoder_state = spec.new_zeros(1, spec.shape[0], self.config.hidden)
        h, decoder_state = self.decoder_gru(encoded.bottleneck, decoder_state)
        mask = torch.sigmoid(self.mask(h + encoded.layers[-2]))
        return spec * mask.unsqueeze(-1), decoder_state

    def forward(self, spec: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        state = state or self.initial_state(spec.shape[0], spec.device)
        encoded = self.encode(spec, state)
        enhanced, decoder_state = self.decode(encoded, spec, state.decoder)
        return enhanced, State(encoded.conv_state, encoded.encoder_state, decoder_state)

    def enhance(self, spec: torch.Tensor) -> torch.Tensor:
        """Offline enhancement of whole spectra from a zero state."""
        return self(spec)[0]


class StreamingDenoiser(nn.Module):
    """The exported graph: spectrum frames + named state in, enhanced frames + state out.

    The same graph serves offline (all frames at once), block-wise (long files) and streaming
    (one frame per call) use: only the number of frames differs.
    """

    def __init__(self, model: DenoiseNet):
        super().__init__()
        self.model = model

    def forward(self, spec, conv_state, encoder_state, decoder_state):
        enhanced, state = self.model(spec, State(conv_state, encoder_state, decoder_state))
        return enhanced, state.conv, state.encoder, state.decoder


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

