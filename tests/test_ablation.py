"""bench/ablation.py at a tiny scale: one shared stage 1, stage-2 variants, scored, written to results."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import DATA, SAMPLE_RATE, load, mix_at_snr

pytest.importorskip("torch")
if importlib.util.find_spec("denoise.train") is None:
    pytest.skip("training API missing", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import ablation  # noqa: E402


@pytest.fixture()
def prepared(tmp_path):
    layout = {"train/speech": ["speech_en.flac", "speech_de.flac"], "train/noise": ["noise_rain.flac", "noise_crowd.flac"],
              "val/speech": ["speech_en2.flac"], "val/noise": ["noise_campfire.flac"]}
    for folder, names in layout.items():
        (tmp_path / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(DATA / name, tmp_path / folder / name)
    clean = load("speech_en2.flac")[: 2 * SAMPLE_RATE]
    for sub, audio in (("clean", clean), ("noisy", mix_at_snr(clean, load("noise_campfire.flac"), 5.0))):
        (tmp_path / "testset_ood" / sub).mkdir(parents=True)
        sf.write(tmp_path / "testset_ood" / sub / "0000_snr5.wav", audio, SAMPLE_RATE)
    return tmp_path


def test_tiny_ablation_trains_shared_stage1_scores_variants_and_writes_results(prepared, tmp_path):
    scale = ablation.Scale("small", stage1_steps=2, stage2_steps=2, batch_size=2, test_files=1, device="cpu")
    extra = dict(val_items=2, val_seconds=1.0, segment_seconds=1.0, num_threads=1)
    rows = ablation.run(tmp_path / "runs", prepared, scale, ["conventional", "deep-feature", "mal-dynamic"], ["si_sdr"],
                        None, prepared, extra=extra)
    assert [r["variant"] for r in rows] == ["unprocessed", "stage 1 only", "conventional", "mal-dynamic"]
    assert {r["test set"] for r in rows} == {"testset_ood"}
    assert all(abs(r["si_sdr"][0]) < 60 for r in rows)
    assert abs(rows[0]["si_sdr"][0] - 5.0) < 1.0  # the unprocessed row scores the 5 dB mixture itself
    assert (tmp_path / "runs" / "stage1" / "last" / "config.json").is_file()

    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Peers\n\nkeep me\n")
    section = ablation.markdown(rows, ["si_sdr"], "reduced", scale)
    ablation.write_results(results, section)
    ablation.write_results(results, section)  # rerun replaces its own section only
    text = results.read_text()
    assert text.count(ablation.RESULTS_SECTION) == 1 and "keep me" in text and "| testset_ood | mal-dynamic |" in text
