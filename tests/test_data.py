"""Training data: on-the-fly mixing (SNR, level, determinism), paired folders, splits, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from denoise import data
from conftest import DATA


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(data.power(clean) / data.power(noisy - clean))


@pytest.fixture(scope="module")
def pools():
    speech = data.load_pool(DATA, [DATA / "speech_en.flac", DATA / "speech_de.flac"])
    noise = data.load_pool(DATA, [DATA / "noise_rain.flac", DATA / "noise_crowd.flac"])
    return speech, noise


def test_mixture_has_the_drawn_snr(pools):
    dataset = data.MixingDataset(*pools, config=data.MixingConfig(snr_range=(5.0, 5.0), gain_range=(0.0, 0.0)))
    for index in range(5):
        noisy, clean = dataset.example(seed=1, index=index)
        assert noisy.shape == clean.shape == (32000,)
        assert snr_db(clean, noisy) == pytest.approx(5.0, abs=0.05)


def test_random_snr_and_gain_stay_in_range_without_clipping(pools):
    config = data.MixingConfig(snr_range=(-5.0, 20.0), gain_range=(-10.0, 6.0))
    dataset = data.MixingDataset(*pools, config=config)
    snrs = []
    for index in range(40):
        noisy, clean = dataset.example(seed=3, index=index)
        assert np.abs(noisy).max() <= data.PEAK_LEVEL + 1e-6
        snrs.append(snr_db(clean, noisy))
    assert min(snrs) >= -5.1 and max(snrs) <= 20.1
    assert max(snrs) - min(snrs) > 10  # really drawn at random across the range


def test_examples_are_a_pure_function_of_seed_and_index(pools):
    first = data.MixingDataset(*pools)
    second = data.MixingDataset(*pools)
    a, b = first.example(7, 11), second.example(7, 11)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(first.example(7, 12)[0], a[0])
    assert not np.array_equal(first.example(8, 11)[0], a[0])


def test_ranks_share_the_same_global_batch(pools):
    dataset = data.MixingDataset(*pools, config=data.MixingConfig(segment_seconds=0.5))
    whole_noisy, whole_clean = data.make_batch(dataset, seed=0, step=3, batch_size=4)
    parts = [data.make_batch(dataset, 0, 3, 4, rank=r, world_size=2) for r in range(2)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), whole_noisy)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), whole_clean)
    with pytest.raises(data.DataError, match="not divisible"):
        data.make_batch(dataset, 0, 3, 3, rank=0, world_size=2)


def test_reverberation_target_is_the_early_part(pools):
    speech, noise = pools
    rir = np.zeros(8000, dtype=np.float32)
    rir[100] = 1.0
    rir[300:] = 0.3 * np.random.default_rng(0).standard_normal(7700) * np.exp(-np.arange(7700) / 2000)
    reverberant, target = data.reverberate(speech[0][:16000], rir)
    late_energy = data.power(reverberant - target)
    assert late_energy > 0.01 * data.power(target)  # the input keeps the late tail ...
    assert np.allclose(data.reverberate(speech[0][:16000], rir[:200])[1], speech[0][:16000], atol=1e-4)  # ... a pure delay is removed


def test_validation_split_is_fixed_and_disjoint(tmp_path):
    files = [tmp_path / f"f{i:02d}.wav" for i in range(40)]
    train_a, val_a = data.split_files(files, 0.05, seed=0)
    train_b, val_b = data.split_files(files, 0.05, seed=0)
    assert val_a == val_b and len(val_a) == 2
    assert not set(val_a) & set(train_a) and len(train_a) + len(val_a) == 40


def test_unreadable_file_is_skipped_with_a_warning_naming_it(tmp_path):
    shutil.copy(DATA / "speech_en.flac", tmp_path / "good.flac")
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.warns(UserWarning, match="broken.wav"):
        pool = data.load_pool(tmp_path)
    assert len(pool) == 1


def test_folder_without_audio_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(data.DataError, match=f"^{tmp_path}: no audio files found$"):
        data.find_audio_files(tmp_path)
    with pytest.raises(data.DataError, match="no such folder"):
        data.find_audio_files(tmp_path / "missing")


def test_other_rates_and_stereo_are_resampled_to_16k_mono(tmp_path, speech):
    stereo = np.stack([speech[:16000], speech[:16000]], axis=1)
    import soxr

    sf.write(tmp_path / "a.wav", soxr.resample(stereo, 16000, 44100), 44100)
    audio = data.read_audio(tmp_path / "a.wav")
    assert audio.ndim == 1 and abs(audio.size - 16000) <= 2


def test_paired_folders_match_by_relative_name(tmp_path, speech, noisy):
    for side, signal in (("clean", speech), ("noisy", noisy)):
        (tmp_path / side / "sub").mkdir(parents=True)
        sf.write(tmp_path / side / "sub" / "one.wav", signal, 16000, subtype="FLOAT")
    sf.write(tmp_path / "noisy" / "orphan.wav", noisy, 16000)
    with pytest.warns(UserWarning, match="orphan.wav"):
        pairs = data.paired_files(tmp_path / "noisy", tmp_path / "clean")
    assert [p[0].name for p in pairs] == ["one.wav"]
    dataset = data.PairedDataset(data.load_pairs(pairs), data.MixingConfig(segment_seconds=1.0))
    noisy_segment, clean_segment = dataset.example(0, 0)
    offset = next(i for i in range(len(speech)) if np.allclose(speech[i : i + 50], clean_segment[:50], atol=1e-6))
    assert np.allclose(noisy[offset : offset + 16000], noisy_segment, atol=1e-6)  # the two sides stay aligned


def test_data_spec_rejects_conflicting_or_missing_folders(tmp_path):
    with pytest.raises(data.DataError, match="exclude each other"):
        data.DataSpec(clean=str(DATA), noise=str(DATA), noisy=str(DATA)).check()
    with pytest.raises(data.DataError, match="--noise DIR"):
        data.DataSpec(clean=str(DATA)).check()
    with pytest.raises(data.DataError, match="no audio files found"):
        data.DataSpec(clean=str(tmp_path), noise=str(DATA)).check()
