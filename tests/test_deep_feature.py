"""Deep-feature loss (the baseline MAL is compared with), on a tiny randomly initialised wav2vec2."""

from __future__ import annotations

import shutil

import pytest
import torch

pytest.importorskip("transformers")

from denoise.deep_feature import DeepFeatureLoss, load_speech_model, tiny_config  # noqa: E402
from denoise.train import TrainConfig, train  # noqa: E402
from tests.conftest import DATA  # noqa: E402


@pytest.fixture(scope="module")
def loss():
    return DeepFeatureLoss("tiny-random")


def test_zero_for_identical_signals_and_grows_with_noise(loss, speech, noise):
    clean = torch.from_numpy(speech[:16000]).unsqueeze(0)
    slightly, very = (clean + level * torch.from_numpy(noise[:16000]) for level in (0.01, 0.3))
    assert float(loss(clean, clean)) == 0.0
    assert 0 < float(loss(slightly, clean)) < float(loss(very, clean))


def test_gradient_reaches_the_signal_but_not_the_frozen_speech_model(loss, speech):
    clean = torch.from_numpy(speech[:16000]).unsqueeze(0)
    estimate = (clean * 0.8).requires_grad_()
    loss(estimate, clean).backward()
    assert estimate.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_local_model_folder_and_config_sources(tmp_path):
    model = load_speech_model(tiny_config())
    model.save_pretrained(tmp_path / "w2v")
    reloaded = load_speech_model(tmp_path / "w2v")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    with pytest.raises(ValueError, match="not a local transformers model folder"):
        load_speech_model(tmp_path / "nothing")


def test_stage_two_with_deep_feature_loss_instead_of_mal(tmp_path):
    for kind in ("speech", "noise"):
        (tmp_path / kind).mkdir()
        for path in DATA.glob(f"{kind}_*.flac"):
            shutil.copy(path, tmp_path / kind)
    config = TrainConfig(clean=str(tmp_path / "speech"), noise=str(tmp_path / "noise"), out=str(tmp_path / "run"),
                         steps=2, batch_size=2, segment_seconds=0.5, val_items=1, val_seconds=1.0, val_every=2,
                         mal_weight=0.0, deep_feature_model="tiny-random", deep_feature_weight=1.0,
                         export_onnx=False, progress=False)
    out = train(config)
    import json

    stage2 = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    stage2 = [r for r in stage2 if r.get("stage") == "2" and "loss" in r]
    assert stage2 and all("deep" in r and "mal" not in r for r in stage2)
