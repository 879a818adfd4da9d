"""Training: MAL encoder modes, bit-exact resume, NaN stop, distributed == single process, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from denoise.checkpoint import load_model
from denoise.config import ModelConfig
from denoise.model import DenoiseNet
from denoise.train import StageLoss, TrainConfig, TrainingError, train
from conftest import DATA

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    for kind in ("speech", "noise"):
        (root / kind).mkdir()
        for path in DATA.glob(f"{kind}_*.flac"):
            shutil.copy(path, root / kind / path.name)
    return root


def tiny_config(folders: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(clean=str(folders / "speech"), noise=str(folders / "noise"), out=str(out), steps=4, batch_size=2,
                    segment_seconds=0.5, val_items=2, val_seconds=1.0, val_every=4, log_every=1, warmup_steps=2,
                    export_onnx=False, progress=False)
    return TrainConfig(**{**settings, **overrides})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_model(folder).state_dict()


# ------------------------------------------------------------------ Model as Loss encoder modes


def one_mal_step(mode: str, noisy, layers=("all",)):
    torch.manual_seed(0)
    model = DenoiseNet(ModelConfig.preset("small"))
    stage1 = DenoiseNet(ModelConfig.preset("small"))
    stage1.load_state_dict(model.state_dict())
    config = TrainConfig(mal_encoder=mode, mal_layers=list(layers) if layers else None)
    loss_fn = StageLoss("2", model, config, stage1)
    from denoise.stft import torch_stft

    wave = torch.from_numpy(noisy[:16000]).unsqueeze(0)
    clean_spec = torch_stft(wave * 0.5)
    terms = loss_fn.terms(model.enhance(torch_stft(wave)), clean_spec, wave * 0.5)
    assert list(terms) == ["mal"]
    terms["mal"].backward()
    return model, loss_fn


@pytest.mark.parametrize("mode", ["frozen", "frozen-fe"])
@pytest.mark.parametrize("layers", [("all",), None])
def test_frozen_loss_encoder_gets_no_gradient_and_stays_identical(mode, layers, noisy):
    model, loss_fn = one_mal_step(mode, noisy, layers)
    loss_model = loss_fn.mal.loss_model
    before = {k: v.clone() for k, v in loss_model.state_dict().items()}
    assert all(p.grad is None for p in loss_model.parameters())
    assert model.mask.weight.grad.abs().sum() > 0 and model.decoder_gru.weight_hh_l0.grad.abs().sum() > 0
    torch.optim.AdamW(model.parameters(), lr=1e-2).step()
    assert all(torch.equal(before[k], v) for k, v in loss_model.state_dict().items())
    assert not torch.equal(model.mask.weight, loss_model.mask.weight)  # the trained model did move


def test_dynamic_loss_encoder_is_the_live_model_and_gets_gradient_through_the_loss(noisy):
    frozen_model, _ = one_mal_step("frozen", noisy)
    dynamic_model, loss_fn = one_mal_step("dynamic", noisy)
    assert loss_fn.mal.loss_model is None and loss_fn.mal.encoder_model is dynamic_model
    # same weights, same loss value; the encoder gradient differs only by the path through the loss encoder
    encoder_difference = (frozen_model.encoder_gru.weight_ih_l0.grad - dynamic_model.encoder_gru.weight_ih_l0.grad).abs().max()
    assert encoder_difference > 1e-6


# ------------------------------------------------------------------ the loop


def test_two_stage_run_writes_checkpoints_and_metrics(folders, tmp_path):
    out = train(tiny_config(folders, tmp_path / "run", export_onnx=True))
    for name in ("last", "best", "stage1"):
        assert (out / name / "config.json").is_file() and (out / name / "model.safetensors").is_file()
    assert (out / "best" / "model.onnx").is_file()
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".bin") for p in out.rglob("*"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in records if "loss" in r]
    assert {r["stage"] for r in train_lines} == {"1", "2"}
    assert all("mal" in r for r in train_lines if r["stage"] == "2")
    assert sum("val_si_sdr" in r for r in records) == 2
    state = json.loads((out / "last" / "training_state.json").read_text())
    assert state["progress"]["stage"] == "2" and state["progress"]["step"] == 4
    # stage 1's final model, the frozen loss encoder's source, differs from the stage-2 result
    assert any(not torch.equal(a, b) for a, b in zip(weights(out / "stage1").values(), weights(out / "last").values()))


@pytest.mark.parametrize("stop_at", [("1", 2), ("2", 1)])
def test_resume_gives_bit_identical_weights(folders, tmp_path, stop_at):
    settings = dict(steps=3, save_every=1, mal_encoder="frozen")
    full = train(tiny_config(folders, tmp_path / "full", **settings))
    interrupted = tiny_config(folders, tmp_path / "resumed", **settings)
    train(interrupted, stop_at=stop_at)
    progress = json.loads((tmp_path / "resumed" / "last" / "training_state.json").read_text())["progress"]
    assert (progress["stage"], progress["step"]) == stop_at
    train(tiny_config(folders, tmp_path / "resumed", resume=True, **settings))
    expected, actual = weights(full / "last"), weights(tmp_path / "resumed" / "last")
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_resume_refuses_changed_settings_and_fresh_run_refuses_existing_out(folders, tmp_path):
    train(tiny_config(folders, tmp_path / "run", stage="1", steps=1))
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(tiny_config(folders, tmp_path / "run", stage="1", steps=1))
    with pytest.raises(TrainingError, match=r"steps=1 \(now 2\)"):
        train(tiny_config(folders, tmp_path / "run", stage="1", steps=2, resume=True))
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(tiny_config(folders, tmp_path / "other", resume=True))


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(folders, tmp_path, monkeypatch):
    original = StageLoss.terms
    calls = {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        terms = original(self, *args)
        return {k: v * float("nan") for k, v in terms.items()} if calls["n"] == 3 else terms

    monkeypatch.setattr(StageLoss, "terms", poisoned)
    with pytest.raises(TrainingError, match=r"^stage 1 step 3: loss is nan; stopped \(last good checkpoint kept"):
        train(tiny_config(folders, tmp_path / "run", stage="1", steps=5, save_every=1))
    state = json.loads((tmp_path / "run" / "last" / "training_state.json").read_text())
    assert state["progress"]["step"] == 2
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run" / "last").values())


def test_stage_two_fine_tunes_from_init_and_checks_size(folders, tmp_path):
    first = train(tiny_config(folders, tmp_path / "first", stage="1", steps=1))
    out = train(tiny_config(folders, tmp_path / "second", stage="2", steps=1, init=str(first / "last")))
    assert all(torch.equal(a, b) for a, b in zip(weights(first / "last").values(), weights(out / "stage1").values()))
    with pytest.raises(TrainingError, match="is a 'small' model, but --model base"):
        train(tiny_config(folders, tmp_path / "third", stage="2", init=str(first / "last"), model="base"))
    with pytest.raises(TrainingError, match="needs --init"):
        train(tiny_config(folders, tmp_path / "fourth", stage="2"))


# ------------------------------------------------------------------ distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, config_dict: dict) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(TrainConfig.from_dict(config_dict))
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(folders, tmp_path):
    import torch.multiprocessing as mp

    # mrstft is left out: its log-magnitude gradient at near-silent bins (1 / 1e-7) amplifies the float
    # rounding differences between batched and split FFTs, which is not what this test is about
    settings = dict(stage="1", steps=3, batch_size=4, loss_weights={"spectral": 1.0, "sisdr": 1.0})
    single = train(tiny_config(folders, tmp_path / "single", **settings))
    distributed = tiny_config(folders, tmp_path / "ddp", **settings)
    mp.spawn(_ddp_worker, args=(2, _free_port(), distributed.to_dict()), nprocs=2, join=True)
    expected, actual = weights(single / "last"), weights(tmp_path / "ddp" / "last")
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)  # the run's seed: the same initial weights
    initial = DenoiseNet(ModelConfig.preset("small")).state_dict()  # not vacuous: training moved the weights
    assert any((expected[k] - initial[k]).abs().max() > 1e-3 for k in expected)
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["world_size"] == 2


# ------------------------------------------------------------------ the command line


def run_cli(*args):
    from typer.testing import CliRunner

    from denoise.cli import app

    return CliRunner().invoke(app, ["train", *map(str, args)])


def test_cli_trains_end_to_end(folders, tmp_path):
    result = run_cli("--clean", folders / "speech", "--noise", folders / "noise", "--steps", 2, "--batch-size", 2,
                     "--segment-seconds", 0.5, "--val-items", 2, "--val-every", 2, "--threads", 1,
                     "--loss", "mrstft=1,spectral=1,mal=1", "--mal-encoder", "dynamic", "--mal-layers", "all",
                     "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "done: best model in" in result.output
    assert (tmp_path / "run" / "best" / "model.onnx").is_file()
    from denoise.checkpoint import read_model_config

    assert read_model_config(tmp_path / "run" / "best")[0].size == "small"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--clean", "{missing}", "--noise", "{noise}"], "{missing}: no such folder"),
        (["--clean", "{empty}", "--noise", "{noise}"], "{empty}: no audio files found"),
        (["--clean", "{text}", "--noise", "{noise}"], "{text}: no audio files found"),
        (["--clean", "{speech}", "--noise", "{noise}", "--noisy", "{noise}"], "exclude each other"),
        (["--clean", "{speech}"], "give --noise DIR"),
        (["--clean", "{speech}", "--noise", "{noise}", "--init", "{empty}"], "{empty}: no config.json found"),
        (["--clean", "{speech}", "--noise", "{noise}", "--loss", "mrstft=x"], "'mrstft=x' is not name=number"),
        (["--clean", "{speech}", "--noise", "{noise}", "--loss", "l2=1"], "unknown term 'l2'"),
        (["--clean", "{speech}", "--noise", "{noise}", "--mal-layers", "conv9"], "MAL layer 'conv9' not available"),
        (["--clean", "{speech}", "--noise", "{noise}", "--stage", "3"], "--stage must be 1, 2 or both"),
    ],
)
def test_cli_wrong_arguments_give_one_clear_line(folders, tmp_path, arguments, message):
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "text": tmp_path / "text",
             "speech": folders / "speech", "noise": folders / "noise"}
    paths["empty"].mkdir()
    paths["text"].mkdir()
    (paths["text"] / "readme.txt").write_text("not audio")
    arguments = [a.format(**paths) for a in arguments]
    result = run_cli(*arguments, "--steps", 1, "--batch-size", 2, "--segment-seconds", 0.5, "--val-items", 1,
                     "--out", tmp_path / "run")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("denoise: error: ")
    assert message.format(**paths) in lines[0]


def test_help_reads_like_documentation():
    result = run_cli("--help")
    assert result.exit_code == 0
    for text in ("--mal-encoder", "--resume", "Examples", "denoise train --clean speech/ --noise noise/"):
        assert text in result.output
