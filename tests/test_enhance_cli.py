"""`denoise enhance` / `denoise IN...`: outputs, folders, globs, resume, parallel jobs, JSON, summary, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import denoise
from denoise.cli import _with_default_command, app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, _with_default_command([str(a) for a in args]))


@pytest.fixture
def folder(tmp_path, noisy, speech):
    """in/a.wav (16 kHz PCM_16), in/sub/b.flac (48 kHz stereo PCM_24), in/sub/deeper/c.wav (8 kHz float)."""
    import soxr

    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    sf.write(root / "a.wav", noisy[:12000], 16000, subtype="PCM_16")
    stereo = soxr.resample(np.stack([noisy[:8000], speech[:8000]], axis=1), 16000, 48000)
    sf.write(root / "sub" / "b.flac", stereo, 48000, subtype="PCM_24")
    sf.write(root / "sub" / "deeper" / "c.wav", soxr.resample(noisy[:16000], 16000, 8000), 8000, subtype="FLOAT")
    return root


def audio_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_default_output_beside_each_input(folder):
    result = run(folder)

    assert result.exit_code == 0, result.output
    assert audio_files(folder) == ["a.wav", "a_enhanced.wav", "sub/b.flac", "sub/b_enhanced.flac",
                                   "sub/deeper/c.wav", "sub/deeper/c_enhanced.wav"]
    assert sf.info(folder / "sub" / "b_enhanced.flac").frames == sf.info(folder / "sub" / "b.flac").frames
    assert result.stdout == ""
    assert "Summary" in result.stderr and "real-time factor" in result.stderr

    again = run(folder, "--skip-existing", "--json")  # earlier *_enhanced outputs are not inputs
    assert again.exit_code == 0
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["skipped"] * 3


def test_output_folder_mirrors_the_tree(folder, tmp_path):
    result = run("enhance", folder, "-o", tmp_path / "out", "--quiet")

    assert result.exit_code == 0, result.output
    assert audio_files(tmp_path / "out") == ["a.wav", "sub/b.flac", "sub/deeper/c.wav"]
    assert sf.info(tmp_path / "out" / "sub" / "deeper" / "c.wav").subtype == "FLOAT"
    assert result.stderr == ""


def test_output_file_for_one_input_and_format_conversion(folder, tmp_path):
    result = run(folder / "a.wav", "-o", tmp_path / "clean.flac")

    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "clean.flac")
    assert (info.format, info.subtype, info.frames, info.samplerate) == ("FLAC", "PCM_16", 12000, 16000)


def test_glob_input(folder):
    result = run(str(folder / "**" / "*.wav"), "--quiet")

    assert result.exit_code == 0, result.output
    assert (folder / "a_enhanced.wav").exists() and (folder / "sub" / "deeper" / "c_enhanced.wav").exists()
    assert not (folder / "sub" / "b_enhanced.flac").exists()


def test_existing_output_needs_overwrite(folder):
    out = folder / "a_enhanced.wav"
    out.write_bytes(b"keep me")

    refused = run(folder / "a.wav")
    assert refused.exit_code == 1
    assert out.read_bytes() == b"keep me"
    assert f"denoise: error: {folder / 'a.wav'}: output {out} already exists (use --overwrite" in refused.stderr

    replaced = run(folder / "a.wav", "--overwrite", "--quiet")
    assert replaced.exit_code == 0
    assert sf.info(out).frames == 12000

    contradiction = run(folder / "a.wav", "--overwrite", "--skip-existing")
    assert contradiction.exit_code == 2 and "contradict" in contradiction.stderr


def test_json_records_one_per_file(folder):
    result = run(folder, "--json", "--quiet")

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0
    assert sorted(r["input"] for r in records) == sorted(
        str(folder / p) for p in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"))
    for record in records:
        assert record["status"] == "done" and record["error"] is None
        assert record["seconds"] == pytest.approx(sf.info(record["input"]).duration)
        assert record["rtf"] > 0 and record["output"].endswith(("_enhanced.wav", "_enhanced.flac"))


def test_parallel_jobs_give_the_same_outputs(folder, tmp_path):
    serial = run(folder, "-o", tmp_path / "serial", "--quiet")
    parallel = run(folder, "-o", tmp_path / "parallel", "--jobs", "3", "--quiet")

    assert serial.exit_code == parallel.exit_code == 0
    for name in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"):
        assert np.array_equal(sf.read(tmp_path / "serial" / name)[0], sf.read(tmp_path / "parallel" / name)[0])


def test_strength_and_atten_lim_options(folder, tmp_path):
    audio, rate = sf.read(folder / "sub" / "deeper" / "c.wav", dtype="float32")

    assert run(folder / "sub" / "deeper" / "c.wav", "-o", tmp_path / "dry.wav", "--strength", "0").exit_code == 0
    assert run(folder / "sub" / "deeper" / "c.wav", "-o", tmp_path / "lim.wav", "--atten-lim", "10").exit_code == 0

    assert np.array_equal(sf.read(tmp_path / "dry.wav", dtype="float32")[0], audio)
    expected = denoise.enhance(audio, rate, atten_lim_db=10)
    assert np.max(np.abs(sf.read(tmp_path / "lim.wav", dtype="float32")[0] - expected)) < 1e-4
    assert run(folder / "a.wav", "--strength", "1.5").exit_code == 2


def test_mixed_batch_reports_failures_at_the_end_and_exits_1(folder):
    (folder / "broken.wav").write_text("not audio")
    (folder / "empty.flac").write_bytes(b"")

    result = run(folder, "--json")

    assert result.exit_code == 1
    statuses = {json.loads(line)["input"].split("/")[-1]: json.loads(line)["status"] for line in result.stdout.splitlines()}
    assert statuses == {"a.wav": "done", "b.flac": "done", "c.wav": "done", "broken.wav": "failed", "empty.flac": "failed"}
    errors = [line for line in result.stderr.splitlines() if line.startswith("denoise: error:")]
    assert errors == [f"denoise: error: {folder / 'broken.wav'}: not a readable audio file (Format not recognised)",
                      f"denoise: error: {folder / 'empty.flac'}: empty file (0 bytes)"]
    assert result.stderr.rstrip().endswith(errors[-1])  # listed after the summary


def test_bad_model_is_one_line_and_exit_2(folder):
    result = run(folder / "a.wav", "--model", "no-such-model")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no-such-model" in result.stderr


def test_help_reads_like_documentation():
    top = runner.invoke(app, ["--help"])
    enhance = runner.invoke(app, ["enhance", "--help"])

    assert top.exit_code == enhance.exit_code == 0
    assert "denoise talk.wav" in top.stdout
    for text in ("Examples", "NAME_enhanced.EXT", "--skip-existing", "--atten-lim", "--jobs", "--json", "192 kHz"):
        assert text in enhance.stdout


def test_end_to_end_without_subcommand(tmp_path, noisy):
    sf.write(tmp_path / "talk.ogg", noisy[:16000], 16000, subtype="VORBIS")

    process = subprocess.run([sys.executable, "-m", "denoise.cli", str(tmp_path / "talk.ogg"), "--quiet"],
                             capture_output=True, text=True, timeout=60)

    assert process.returncode == 0, process.stderr
    assert process.stderr == "" and process.stdout == ""
    assert sf.info(tmp_path / "talk_enhanced.ogg").frames == 16000
