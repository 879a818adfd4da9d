import pytest
import torch

from denoise.config import ModelConfig
from denoise.mal import ModelAsLoss
from denoise.model import DenoiseNet
from denoise.stft import torch_stft


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DenoiseNet(ModelConfig.preset("small"))


@pytest.fixture
def specs(speech, noisy):
    clean = torch_stft(torch.from_numpy(speech[None, :16000]))
    noisy_spec = torch_stft(torch.from_numpy(noisy[None, :16000]))
    return clean, noisy_spec


def _grad_norms(module):
    return {name: (p.grad.abs().sum().item() if p.grad is not None else 0.0) for name, p in module.named_parameters()}


@pytest.mark.parametrize("mode", ["frozen", "frozen-fe", "dynamic"])
def test_zero_for_clean_and_positive_otherwise(model, specs, mode):
    clean, noisy = specs
    mal = ModelAsLoss(model, encoder=mode, layers=["all"])
    assert mal(clean, clean).item() == 0.0
    assert mal(model.enhance(noisy), clean).item() > 0.01


def test_layer_selection_and_errors(model, specs):
    clean, noisy = specs
    bottleneck = ModelAsLoss(model, layers=["bottleneck"])(noisy, clean)
    every = ModelAsLoss(model, layers=["all"])(noisy, clean)
    assert every > bottleneck > 0
    with pytest.raises(ValueError, match="bottleneck"):
        ModelAsLoss(model, encoder="frozen-fe", layers=["bottleneck"])
    with pytest.raises(ValueError, match="unknown MAL encoder"):
        ModelAsLoss(model, encoder="wavlm")


@pytest.mark.parametrize("mode", ["frozen", "frozen-fe"])
def test_frozen_loss_encoder_gets_no_gradient_and_stays_identical(model, specs, mode):
    clean, noisy = specs
    mal = ModelAsLoss(model, encoder=mode)
    before = {k: v.clone() for k, v in mal.loss_model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    decoder_before = model.mask.weight.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        mal(model.enhance(noisy), clean).backward()
        optimizer.step()
    assert all(p.grad is None for p in mal.loss_model.parameters())
    assert all(torch.equal(before[k], v) for k, v in mal.loss_model.state_dict().items())
    assert not torch.equal(decoder_before, model.mask.weight)
    assert list(mal.parameters()) == [] or all(not p.requires_grad for p in mal.parameters())
    assert mal.eval().loss_model.training  # cuDNN needs training mode for the backward pass through its GRU


def test_frozen_gradient_reaches_the_model_only_through_enhanced(model, specs):
    """With a frozen loss encoder, the live encoder's gradient comes only from producing `enhanced`."""
    clean, noisy = specs
    mal = ModelAsLoss(model, encoder="frozen")
    enhanced = model.enhance(noisy).detach().requires_grad_(True)
    mal(enhanced, clean).backward()
    assert enhanced.grad.abs().sum() > 0
    assert all(g == 0.0 for g in _grad_norms(model).values())


def test_dynamic_gradient_reaches_the_live_encoder(model, specs):
    clean, noisy = specs
    mal = ModelAsLoss(model, encoder="dynamic")
    assert mal.loss_model is None and list(mal.parameters()) == []
    enhanced = model.enhance(noisy).detach()  # cut the path through `enhanced`: only the loss path remains
    mal(enhanced, clean).backward()
    norms = _grad_norms(model)
    assert norms["encoder_gru.weight_ih_l0"] > 0 and norms["input_projection.0.weight"] > 0
    assert norms["mask.weight"] == 0.0 and norms["decoder_gru.weight_ih_l0"] == 0.0
