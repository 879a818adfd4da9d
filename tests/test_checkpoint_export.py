import json

import numpy as np
import pytest
import torch

from denoise.checkpoint import CheckpointError, load_model, save_model
from denoise.config import ModelConfig
from denoise.export import export_onnx, max_deviation
from denoise.model import DenoiseNet


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(1)
    model = DenoiseNet(ModelConfig.preset("small"))
    folder = tmp_path_factory.mktemp("model")
    save_model(model, folder, {"note": "test"})
    export_onnx(model, folder)
    return model, folder


def test_round_trip_is_exact_and_records_hashes(saved):
    model, folder = saved
    loaded = load_model(folder / "model.safetensors")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    document = json.loads((folder / "config.json").read_text())
    assert set(document["files"]) == {"model.safetensors", "model.onnx", "model_stream.onnx"}
    assert document["note"] == "test"


@pytest.mark.parametrize("frames", [1, 5, 123])
def test_onnx_matches_torch(saved, frames):
    model, folder = saved
    assert max_deviation(model, folder / "model.onnx", frames) < 1e-4
    assert max_deviation(model, folder / "model_stream.onnx", 1) < 1e-4


def test_corrupt_or_tampered_weights_are_refused(saved, tmp_path):
    _, folder = saved
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    document["files"] = {}
    (tmp_path / "config.json").write_text(json.dumps(document))
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(tmp_path)


def test_mismatched_config_gives_clear_error(saved, tmp_path):
    _, folder = saved
    document = json.loads((folder / "config.json").read_text())
    document["model"]["hidden"] = 32
    document["files"] = {}
    (tmp_path / "config.json").write_text(json.dumps(document))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path.parent)


def test_export_cli(saved, tmp_path):
    from typer.testing import CliRunner

    from denoise.cli import app

    _, folder = saved
    result = CliRunner().invoke(app, ["export", str(folder), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.onnx").is_file() and (tmp_path / "model_stream.onnx").is_file()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
