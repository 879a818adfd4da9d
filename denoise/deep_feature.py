"""Deep-feature loss: the baseline Model as Loss is compared against.

    L_deep = mean over layers l of || phi_l(clean) - phi_l(enhanced) ||_1 / || phi_l(clean) ||_1

where phi is a frozen pretrained speech model. Two kinds:

``"resemblyzer"``  the GE2E speaker encoder shipped inside the PyPI package `Resemblyzer`
                   (``pip install Resemblyzer``; 3-layer LSTM over 40 mel bands, trained on
                   LibriSpeech/VoxCeleb): the hidden sequences of its three LSTM layers. Works
                   offline: the weights come with the package.
a local folder     a self-supervised model via `transformers` (wav2vec2, WavLM, HuBERT): the CNN
                   feature encoder output and every transformer layer's hidden states. No PyPI
                   package ships such weights for offline use (the wrappers download from the
                   Hugging Face Hub at run time), so this needs a local copy (``config.json`` +
                   weights, e.g. ``microsoft/wavlm-base-plus``).
``"tiny-random"``  a tiny randomly initialised wav2vec2 (tests, plumbing checks; not a meaningful loss).

Same normalisation as MAL, so only the feature extractor differs in the comparison.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

TINY_RANDOM = "tiny-random"
RESEMBLYZER = "resemblyzer"


def resemblyzer_available() -> bool:
    return importlib.util.find_spec("resemblyzer") is not None


class SpeakerEncoder(nn.Module):
    """Resemblyzer's `VoiceEncoder`, rebuilt so the mel spectrogram is differentiable and every LSTM
    layer's output is visible.

    Mirrors `resemblyzer.audio.wav_to_mel_spectrogram` (librosa power mel spectrogram, not log:
    25 ms Hann window, 10 ms hop, centred zero-padded frames, 40 Slaney mel bands) and
    `VoiceEncoder.forward` (LSTM 40 -> 256 x 3 layers, Linear 256 -> 256, ReLU, L2 norm).
    """

    sample_rate = 16000
    n_fft = 400  # 25 ms
    hop_length = 160  # 10 ms
    n_mels = 40
    hidden_size = 256
    num_layers = 3
    partial_frames = 160  # the encoder was trained on 1.6 s partial utterances
    target_dbfs = -30.0  # Resemblyzer normalises every utterance's level to this before embedding

    def __init__(self, state: dict[str, torch.Tensor] | None = None):
        import librosa

        super().__init__()
        mel_basis = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels)
        self.register_buffer("mel_basis", torch.from_numpy(mel_basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        # one single-layer LSTM per layer of Resemblyzer's stacked LSTM, so each layer's output is available
        sizes = [self.n_mels] + [self.hidden_size] * (self.num_layers - 1)
        self.lstm_layers = nn.ModuleList(nn.LSTM(size, self.hidden_size, batch_first=True) for size in sizes)
        self.linear = nn.Linear(self.hidden_size, self.hidden_size)
        if state is not None:
            self.load_resemblyzer_state(state)
        self.requires_grad_(False)

    @classmethod
    def pretrained(cls) -> "SpeakerEncoder":
        """The weights shipped in the installed `Resemblyzer` package (its package is not imported:
        its ``__init__`` pulls in webrtcvad, which needs ``pkg_resources``)."""
        spec = importlib.util.find_spec(RESEMBLYZER)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the 'resemblyzer' deep-feature loss needs the Resemblyzer package: "
                               "pip install Resemblyzer (or denoise[ablation])")
        path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
        if not path.is_file():
            raise RuntimeError(f"{path}: Resemblyzer's pretrained weights are missing; reinstall Resemblyzer")
        # A third party's file in torch's format (our own checkpoints are never pickles). weights_only=True
        # restricts unpickling to tensors and plain containers, so it cannot run code.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return cls(checkpoint["model_state"])

    def load_resemblyzer_state(self, state: dict[str, torch.Tensor]) -> None:
        renamed = {}
        for layer in range(self.num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                renamed[f"lstm_layers.{layer}.{name}_l0"] = state[f"lstm.{name}_l{layer}"]
        renamed["linear.weight"] = state["linear.weight"]
        renamed["linear.bias"] = state["linear.bias"]
        self.load_state_dict(renamed)

    def train(self, mode: bool = True):
        super().train(mode)
        # No dropout anywhere, so the mode changes nothing numerically; but cuDNN only runs the
        # LSTM backward pass (needed for the gradient w.r.t. the enhanced input) in training mode.
        for lstm in self.lstm_layers:
            lstm.train(True)
        return self

    def level_gain(self, reference_wave: torch.Tensor) -> torch.Tensor:
        """``(batch, 1)`` gain bringing ``reference_wave`` to Resemblyzer's -30 dBFS input level."""
        rms = reference_wave.detach().pow(2).mean(-1, keepdim=True).sqrt()
        return 10 ** (self.target_dbfs / 20) / rms.clamp_min(1e-5)

    def mel_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, samples) -> (batch, frames, 40)``, frames = 1 + samples // 160."""
        spec = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # |X|^2 without abs(), whose gradient at 0 is NaN
        return torch.matmul(self.mel_basis, power).transpose(1, 2)

    def hidden_states(self, mels: torch.Tensor, partial_frames: int | None = None) -> list[torch.Tensor]:
        """Each LSTM layer's output ``(batch, frames, 256)``. With ``partial_frames``, the frames are cut
        into independent partials of that length (as the encoder was trained), outputs joined back."""
        batch, frames, _ = mels.shape
        if partial_frames and frames > partial_frames:
            partials = -(-frames // partial_frames)
            # zero padding at the end: the LSTM is causal, so it never affects the real frames
            mels = nn.functional.pad(mels, (0, 0, 0, partials * partial_frames - frames))
            mels = mels.reshape(batch * partials, partial_frames, -1)
        outputs = []
        for lstm in self.lstm_layers:
            mels, _ = lstm(mels)
            outputs.append(mels)
        return [output.reshape(batch, -1, self.hidden_size)[:, :frames] for output in outputs]

    def embed(self, mels: torch.Tensor) -> torch.Tensor:
        """`VoiceEncoder.forward`: the speaker embedding of each ``(frames, 40)`` mel sequence."""
        last = self.hidden_states(mels)[-1][:, -1]
        embedding = torch.relu(self.linear(last))
        return embedding / embedding.norm(dim=1, keepdim=True)

    def forward(self, wave: torch.Tensor) -> list[torch.Tensor]:
        return self.hidden_states(self.mel_spectrogram(wave), self.partial_frames)


def tiny_config():
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def load_speech_model(source) -> nn.Module:
    """A frozen speech model: ``"resemblyzer"``, a local `transformers` model folder, ``"tiny-random"``,
    or a `transformers` config object."""
    if source is None:
        raise ValueError("the deep-feature loss needs a model: 'resemblyzer', a local wav2vec2/WavLM folder "
                         "or 'tiny-random'")
    if str(source) == RESEMBLYZER:
        return SpeakerEncoder.pretrained().eval()
    try:
        import transformers
    except ImportError:
        raise RuntimeError("the deep-feature loss needs transformers: pip install transformers") from None
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
        self.layers = layers  # indices into the feature list (transformers: 0 = feature projection); None = all

    def train(self, mode: bool = True):
        super().train(mode)
        self.speech_model.eval()  # always frozen, no dropout
        return self

    def features(self, wave: torch.Tensor, gain: torch.Tensor | None = None) -> list[torch.Tensor]:
        if isinstance(self.speech_model, SpeakerEncoder):
            hidden = self.speech_model(wave * gain)
        else:
            # the models were trained on per-utterance normalised input (their feature extractor does this)
            wave = (wave - wave.mean(-1, keepdim=True)) / (wave.std(-1, keepdim=True) + 1e-5)
            hidden = self.speech_model(wave, output_hidden_states=True, return_dict=True).hidden_states
        return [hidden[i] for i in (self.layers or range(len(hidden)))]

    def forward(self, enhanced_wave: torch.Tensor, clean_wave: torch.Tensor) -> torch.Tensor:
        gain = None
        if isinstance(self.speech_model, SpeakerEncoder):
            # one gain for both, taken from the clean signal: a level error in the estimate still counts
            gain = self.speech_model.level_gain(clean_wave)
        # targets: clean features without gradient. Not under no_grad(): there CPU LSTMs take another
        # kernel, whose last-bit differences would make the loss of identical signals non-zero.
        # Nothing here requires grad, so no graph is recorded anyway.
        targets = [t.detach() for t in self.features(clean_wave.detach(), gain)]
        estimates = self.features(enhanced_wave, gain)
        terms = [(t - e).abs().mean() / (t.abs().mean() + 1e-8) for t, e in zip(targets, estimates)]
        return torch.stack(terms).mean()
