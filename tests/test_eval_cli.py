"""`denoise eval` and denoise.evaluate: pairing, SNR groups, rate/length handling, JSON/CSV reports."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import soxr
from typer.testing import CliRunner

from conftest import SAMPLE_RATE, mix_at_snr
from denoise import evaluate
from denoise.cli import app

FAST_METRICS = "pesq_wb,stoi,si_sdr"


def write(path, audio, rate=SAMPLE_RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate)
    return path


@pytest.fixture(scope="module")
def clips(speech, noise):
    """Two 2-second speech clips with their noisy versions at 0 and 10 dB."""
    first, second = speech[: 2 * SAMPLE_RATE], speech[2 * SAMPLE_RATE: 4 * SAMPLE_RATE]
    return {"a_snr0": (first, mix_at_snr(first, noise, 0.0)), "b_snr10": (second, mix_at_snr(second, noise, 10.0))}


@pytest.fixture()
def dataset(tmp_path, clips):
    for name, (clean, noisy) in clips.items():
        write(tmp_path / "clean" / "sub" / f"{name}.wav", clean)
        write(tmp_path / "noisy" / "sub" / f"{name}.flac", noisy)  # other extension: still pairs
    return tmp_path


def test_pairs_by_relative_path_ignoring_extension_and_enhanced_suffix(tmp_path, clips):
    clean, noisy = clips["a_snr0"]
    write(tmp_path / "clean" / "x" / "one.wav", clean)
    write(tmp_path / "clean" / "y" / "one.wav", clean)
    write(tmp_path / "clean" / "two.wav", clean)
    write(tmp_path / "out" / "x" / "one.flac", noisy)
    write(tmp_path / "out" / "y" / "one_enhanced.wav", noisy)  # `denoise enhance` default name
    write(tmp_path / "out" / "stray.wav", noisy)
    pairs, problems = evaluate.pair_folders(tmp_path / "clean", tmp_path / "out")
    assert [(p.name, p.degraded.name) for p in pairs] == [("x/one", "one.flac"), ("y/one", "one_enhanced.wav")]
    assert problems.missing == ["two.wav"] and problems.unmatched == ["stray.wav"]


@pytest.mark.parametrize("name, snr", [("0000_snr5.wav", 5.0), ("0001_snr-5.wav", -5.0), ("x_snr_-5", -5.0),
                                       ("SNR10dB_take", 10.0), ("snr_2.5_b", 2.5), ("transnr5", None), ("plain", None)])
def test_snr_is_parsed_from_file_names(name, snr):
    assert evaluate.snr_from_name(name) == snr


def test_resampled_and_slightly_longer_files_are_scored_with_notes(tmp_path, clips):
    clean, noisy = clips["a_snr0"]
    write(tmp_path / "clean" / "a.wav", clean)
    write(tmp_path / "out" / "a.wav", soxr.resample(np.concatenate([noisy, noisy[:100]]), SAMPLE_RATE, 48000), 48000)
    pairs, _ = evaluate.pair_folders(tmp_path / "clean", tmp_path / "out")
    [result] = evaluate.score_pairs(pairs, "test", ["si_sdr"])
    assert result.error is None and result.scores["si_sdr"] == pytest.approx(0.0, abs=1.5)
    assert any("48000 Hz -> 16000 Hz" in n for n in result.notes) and any("trimmed" in n for n in result.notes)


def test_a_much_shorter_file_and_an_unreadable_file_are_errors_on_their_rows(tmp_path, clips):
    clean, noisy = clips["a_snr0"]
    write(tmp_path / "clean" / "short.wav", clean)
    write(tmp_path / "clean" / "broken.wav", clean)
    write(tmp_path / "out" / "short.wav", noisy[: len(noisy) // 2])
    (tmp_path / "out" / "broken.wav").write_bytes(b"RIFF not really a wav")
    pairs, _ = evaluate.pair_folders(tmp_path / "clean", tmp_path / "out")
    results = {r.file: r for r in evaluate.score_pairs(pairs, "test", ["si_sdr"])}
    assert "lengths differ by 50.0%" in results["short"].error and "short.wav" in results["short"].error
    assert "broken.wav" in results["broken"].error and results["broken"].scores == {}


def test_summary_has_mean_and_confidence_interval_per_snr():
    rows = [evaluate.FileResult("s", f"f{i}", snr, {"si_sdr": value}) for i, (snr, value) in
            enumerate([(0, 1.0), (0, 3.0), (10, 10.0), (10, math.nan)])]
    summary = {(r.group, r.metric): r for r in evaluate.summarize(rows, ["si_sdr"])}
    assert summary[("all", "si_sdr")].mean == pytest.approx(14 / 3) and summary[("all", "si_sdr")].count == 3
    assert summary[("SNR 0 dB", "si_sdr")].mean == 2.0
    assert summary[("SNR 0 dB", "si_sdr")].ci95 == pytest.approx(12.706 * np.std([1, 3], ddof=1) / np.sqrt(2), rel=1e-3)
    assert summary[("SNR 10 dB", "si_sdr")].count == 1 and math.isnan(summary[("SNR 10 dB", "si_sdr")].ci95)


def test_cli_writes_json_and_csv_with_per_snr_groups(dataset):
    result = CliRunner().invoke(app, [
        "eval", "--clean", str(dataset / "clean"), "--enhanced", str(dataset / "noisy"), "--metrics", FAST_METRICS,
        "--json", str(dataset / "r.json"), "--csv", str(dataset / "r.csv"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "PESQ-WB" in result.output and "SNR 10 dB" in result.output
    report = json.loads((dataset / "r.json").read_text())
    files = {row["file"]: row for row in report["files"]}
    assert set(files) == {"sub/a_snr0", "sub/b_snr10"} and files["sub/a_snr0"]["snr"] == 0
    assert files["sub/a_snr0"]["scores"]["pesq_wb"] < files["sub/b_snr10"]["scores"]["pesq_wb"]
    groups = {(row["group"], row["metric"]) for row in report["summary"]}
    assert ("all", "stoi") in groups and ("SNR 0 dB", "si_sdr") in groups
    with open(dataset / "r.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == ["sub/a_snr0", "sub/b_snr10"]
    assert float(rows[1]["si_sdr"]) == pytest.approx(10.0, abs=1.0)
    assert (dataset / "r_summary.csv").read_text().startswith("system,group,metric,mean,ci95,count")


def test_cli_snr_csv_overrides_names_and_missing_pairs_are_warned(dataset, clips):
    (dataset / "noisy" / "sub" / "b_snr10.flac").unlink()
    (dataset / "snr.csv").write_text("file,snr\nsub/a_snr0.wav,7\n")
    result = CliRunner().invoke(app, [
        "eval", "--clean", str(dataset / "clean"), "--enhanced", str(dataset / "noisy"), "--metrics", "si_sdr",
        "--snr-csv", str(dataset / "snr.csv"), "--json", str(dataset / "r.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "no enhanced file for clean sub/b_snr10.wav" in result.output
    assert json.loads((dataset / "r.json").read_text())["files"][0]["snr"] == 7


def test_cli_enhances_noisy_with_a_model_and_scores_the_noisy_baseline(dataset):
    result = CliRunner().invoke(app, [
        "eval", "--clean", str(dataset / "clean"), "--noisy", str(dataset / "noisy"), "--model", "small",
        "--metrics", "si_sdr", "--json", str(dataset / "r.json"), "--save-enhanced", str(dataset / "enh"), "--quiet"])
    assert result.exit_code == 0, result.output
    systems = {row["system"] for row in json.loads((dataset / "r.json").read_text())["files"]}
    assert systems == {"noisy", "small"}
    assert sorted(p.name for p in (dataset / "enh" / "sub").iterdir()) == ["a_snr0.wav", "b_snr10.wav"]
    assert sorted(p.name for p in (dataset / "noisy" / "sub").iterdir()) == ["a_snr0.flac", "b_snr10.flac"]  # inputs untouched


def test_cli_file_that_fails_to_enhance_is_an_error_and_left_out_of_the_noisy_baseline(dataset):
    corrupt = dataset / "noisy" / "sub" / "b_snr10.wav"
    (dataset / "noisy" / "sub" / "b_snr10.flac").unlink()
    corrupt.write_text("this is not audio\n")
    result = CliRunner().invoke(app, [
        "eval", "--clean", str(dataset / "clean"), "--noisy", str(dataset / "noisy"), "--model", "small",
        "--metrics", "si_sdr", "--json", str(dataset / "r.json"), "--quiet"])
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("denoise: error:")]
    assert len(error_lines) == 1 and str(corrupt) in error_lines[0]
    report = json.loads((dataset / "r.json").read_text())
    counts = {row["system"]: row["count"] for row in report["summary"] if row["group"] == "all"}
    assert counts == {"noisy": 1, "small": 1}
    assert sorted(row["system"] for row in report["files"]) == ["noisy", "small"]
    assert corrupt.read_text() == "this is not audio\n"  # input untouched


@pytest.mark.parametrize("arguments, message", [
    (["--metrics", "nope"], "unknown metric 'nope'"),
    (["--model", "small"], "--model needs --noisy"),
    (["--snr-csv", "missing.csv"], "missing.csv: cannot read SNR table"),
])
def test_cli_bad_arguments_give_one_line_errors(dataset, arguments, message):
    result = CliRunner().invoke(app, ["eval", "--clean", str(dataset / "clean"), "--enhanced", str(dataset / "noisy"), *arguments])
    assert result.exit_code == 2 and message in result.output
