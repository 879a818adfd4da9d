import numpy as np
import pytest
import torch

from denoise.config import ModelConfig
from denoise.model import DenoiseNet, count_parameters
from denoise.stft import torch_stft


@pytest.fixture(scope="module", params=["small", "base"])
def model(request):
    torch.manual_seed(0)
    return DenoiseNet(ModelConfig.preset(request.param)).eval()


def test_size_budgets():
    small, base = ModelConfig.preset("small"), ModelConfig.preset("base")
    assert count_parameters(DenoiseNet(small)) <= 100_000
    assert small.macs_per_second <= 40e6
    assert count_parameters(DenoiseNet(base)) <= 1_500_000
    assert small.latency_ms == 20.0


def test_output_depends_only_on_the_past(model, noisy):
    """Causality: changing the input after frame t leaves every output frame <= t unchanged."""
    spec = torch_stft(torch.from_numpy(noisy[None, :16000]))
    cut = 40
    altered = spec.clone()
    altered[:, cut + 1 :] = torch.randn_like(altered[:, cut + 1 :]) * 10
    with torch.no_grad():
        original_out, altered_out = model.enhance(spec), model.enhance(altered)
    assert torch.equal(original_out[:, : cut + 1], altered_out[:, : cut + 1])
    assert not torch.allclose(original_out[:, cut + 1 :], altered_out[:, cut + 1 :])


def test_encode_and_decode_compose_to_forward(model, noisy):
    spec = torch_stft(torch.from_numpy(noisy[None, :8000]))
    with torch.no_grad():
        encoded = model.encode(spec)
        enhanced, _ = model.decode(encoded, spec)
        assert torch.equal(enhanced, model.enhance(spec))
    assert len(encoded.layers) == len(model.config.layer_names)
    assert all(layer.shape == (1, spec.shape[1], model.config.hidden) for layer in encoded.layers)
    assert encoded.bottleneck is encoded.layers[-1]


def test_frame_by_frame_with_state_equals_whole(model, noisy):
    spec = torch_stft(torch.from_numpy(noisy[None, :4800]))
    with torch.no_grad():
        whole = model.enhance(spec)
        state, frames = None, []
        for t in range(spec.shape[1]):
            out, state = model(spec[:, t : t + 1], state)
            frames.append(out)
    np.testing.assert_allclose(torch.cat(frames, 1).numpy(), whole.numpy(), atol=1e-5)


def test_mask_never_amplifies(model, noisy):
    spec = torch_stft(torch.from_numpy(noisy[None, :8000]))
    with torch.no_grad():
        enhanced = model.enhance(spec)
    assert torch.all(enhanced.pow(2).sum(-1) <= spec.pow(2).sum(-1) + 1e-6)
