"""`denoise models ...` and Hub ids on the command line, against the fake Hub; never the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import soundfile as sf
from fakehub import fake_hub, hub_env, set_offline  # noqa: F401  (pytest fixtures)
from typer.testing import CliRunner

from denoise.cli import _with_default_command, app
from denoise.registry import bundled_models

MODEL_FILES = ("config.json", "model.safetensors", "model.onnx", "model_stream.onnx")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, _with_default_command(list(args)))


def publish_small(hub, repo_id: str = "acme/small") -> str:
    hub.create_repo(repo_id)
    small = bundled_models()["small"]
    return hub.commit(repo_id, {name: (small / name).read_bytes() for name in MODEL_FILES})


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("denoise: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_list_shows_bundled_and_cached_hub_models(fake_hub):
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    assert "small (default)" in result.stdout and "bundled" in result.stdout and "83,170" in result.stdout
    assert "No Hub models cached yet" in result.stdout
    sha = publish_small(fake_hub)
    assert run("models", "download", "acme/small").exit_code == 0
    assert run("models", "download", f"acme/small@{sha}").exit_code == 0
    result = run("models", "list", "--json")
    names = [line for line in result.stdout.splitlines() if '"hub cache"' in line]
    assert len(names) == 1 and '"acme/small@main"' in names[0]  # one snapshot, named by its branch


def test_info_shows_config_hashes_and_card(fake_hub, tmp_path):
    result = run("models", "info", "small")
    assert result.exit_code == 0, result.output
    small = bundled_models()["small"]
    for text in ("hidden=64", "parameters: 83,170", "latency:    20 ms", "model.safetensors", "ok"):
        assert text in result.stdout
    folder = tmp_path / "mine"
    shutil.copytree(small, folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n\n# Mine\n\nTuned on my own podcast.\n")
    (folder / "model_stream.onnx").write_bytes(b"tampered")
    result = run("models", "info", str(folder))
    assert result.exit_code == 0
    assert "card:       Tuned on my own podcast." in result.stdout
    assert "model_stream.onnx" in result.stdout and "SHA256 MISMATCH" in result.stdout


def test_download_and_push_commands(fake_hub, tmp_path):
    publish_small(fake_hub)
    result = run("models", "download", "acme/small")
    assert result.exit_code == 0, result.output
    assert "verified, cached at" in result.stdout
    folder = tmp_path / "mine"
    shutil.copytree(bundled_models()["small"], folder)
    (folder / "README.md").unlink()  # push writes a card when the folder has none
    result = run("models", "push", str(folder), "acme/mine", "--private", "--branch", "dev", "-m", "tuned")
    assert result.exit_code == 0, result.output
    assert "wrote model card" in result.stdout and (folder / "README.md").is_file()
    repo = fake_hub.repos["acme/mine"]
    assert repo.private and repo.commits[repo.branches["dev"]].message == "tuned"


def test_bad_model_ids_and_folders_give_one_line_errors(fake_hub, tmp_path):
    assert "not a Hub model id" in one_line_error(run("models", "download", "not-an-id"))
    assert "acme/none: no such local folder and no such model on the Hub" in one_line_error(
        run("models", "info", "acme/none"))
    assert "nothere: no such model (bundled models: " in one_line_error(run("models", "info", "./nothere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no config.json found" in one_line_error(run("models", "push", str(empty), "acme/x"))
    assert "acme/x" not in fake_hub.repos


def test_enhance_with_a_hub_model_then_offline(fake_hub, monkeypatch, tmp_path, noisy):
    publish_small(fake_hub)
    source = tmp_path / "noisy.wav"
    sf.write(source, noisy[:16000], 16000)
    assert run(str(source), "--model", "acme/small", "-o", str(tmp_path / "a.wav")).exit_code == 0
    fake_hub.stop()
    set_offline(monkeypatch, True)
    result = run(str(source), "--model", "acme/small", "-o", str(tmp_path / "b.wav"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])
    message = one_line_error(run(str(source), "--model", "acme/other", "-o", str(tmp_path / "c.wav")))
    assert "acme/other: not in the local cache and the Hub is unreachable (offline)" in message
    assert not (tmp_path / "c.wav").exists()


def test_cli_process_reads_hub_environment_and_works_offline_with_bundled_model(fake_hub, hub_env, tmp_path, noisy):
    """Real processes: huggingface_hub reads HF_ENDPOINT/HF_HOME/HF_HUB_OFFLINE at import time."""
    publish_small(fake_hub, "acme/env")
    env = {**os.environ, **hub_env, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "denoise.cli"]
    download = subprocess.run([*command, "models", "download", "acme/env"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert download.returncode == 0, download.stderr
    assert hub_env["HF_HOME"] in download.stdout

    source = tmp_path / "noisy.wav"
    sf.write(source, noisy[:16000], 16000)
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty_home"),
               "HF_HUB_CACHE": str(tmp_path / "empty_home" / "hub")}
    enhance = subprocess.run([*command, str(source), "-o", str(tmp_path / "out.wav")], env=offline,
                             capture_output=True, text=True, timeout=120)
    assert enhance.returncode == 0, enhance.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == 16000
    missing = subprocess.run([*command, "models", "download", "acme/env"], env=offline, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "denoise: error: acme/env: not in the local cache and the Hub is unreachable (offline); download it once "
        "with `denoise models download acme/env` or use a bundled model")
