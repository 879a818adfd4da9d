"""File-level API: formats, rates, subtypes, channels, exact length, block-wise == whole-signal enhancement."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import denoise
from denoise import files
from denoise.files import AudioFileError, Denoiser, enhance_file, plan_jobs

# A subtype's quantisation step: the largest difference re-quantising the same signal may make.
QUANTUM = {"PCM_U8": 2 / 2**7, "PCM_S8": 2 / 2**7, "PCM_16": 2 / 2**15, "PCM_24": 2 / 2**23, "PCM_32": 2 / 2**31,
           "FLOAT": 1e-4, "DOUBLE": 1e-4}


@pytest.fixture(scope="module")
def model():
    return Denoiser()


def clip(audio: np.ndarray, rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    """``seconds`` of ``audio`` (16 kHz) resampled to ``rate``, with ``channels`` different channels."""
    import soxr

    signal = soxr.resample(audio[: int(seconds * 16000)], 16000, rate).astype(np.float32)
    if channels == 1:
        return signal
    return np.stack([np.roll(signal, 37 * c) * (1.0 - 0.2 * c) for c in range(channels)], axis=1)


@pytest.mark.parametrize(
    "extension, subtype, rate, channels",
    [
        ("wav", "PCM_U8", 8000, 1),
        ("wav", "PCM_16", 16000, 1),
        ("wav", "PCM_24", 44100, 2),
        ("wav", "PCM_32", 48000, 1),
        ("wav", "FLOAT", 22050, 3),
        ("flac", "PCM_16", 32000, 2),
        ("flac", "PCM_24", 192000, 1),
        ("aiff", "PCM_16", 11025, 1),
    ],
)
def test_lossless_formats_keep_rate_channels_subtype_and_exact_length(tmp_path, noisy, model, extension, subtype,
                                                                      rate, channels):
    source = tmp_path / f"in.{extension}"
    sf.write(source, clip(noisy, rate, 0.7, channels), rate, subtype=subtype)
    original = source.read_bytes()

    result = enhance_file(source, model=model)

    out = tmp_path / f"in_enhanced.{extension}"
    assert result.status == "done" and result.output == str(out)
    info_in, info_out = sf.info(source), sf.info(out)
    assert (info_out.samplerate, info_out.channels, info_out.subtype, info_out.frames) == (
        info_in.samplerate, info_in.channels, info_in.subtype, info_in.frames)
    assert source.read_bytes() == original
    assert result.seconds == pytest.approx(info_in.frames / rate)
    # the file path gives what the in-memory API gives for the same samples, up to re-quantisation
    audio, _ = sf.read(source, dtype="float32")
    expected = np.clip(denoise.enhance(audio, rate, model=model), -1, 1)
    written, _ = sf.read(out, dtype="float32")
    assert np.max(np.abs(written - expected)) <= QUANTUM[subtype] * 1.01


@pytest.mark.parametrize("extension, subtype, rate", [("ogg", "VORBIS", 44100), ("ogg", "OPUS", 48000),
                                                       ("mp3", "MPEG_LAYER_III", 44100)])
def test_lossy_formats_keep_rate_channels_and_length(tmp_path, noisy, model, extension, subtype, rate):
    if extension.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot handle {extension}")
    source = tmp_path / f"in.{extension}"
    sf.write(source, clip(noisy, rate, 1.0, 2), rate, subtype=subtype)

    enhance_file(source, model=model)

    info_in, info_out = sf.info(source), sf.info(tmp_path / f"in_enhanced.{extension}")
    assert (info_out.samplerate, info_out.channels, info_out.subtype, info_out.frames) == (
        info_in.samplerate, info_in.channels, info_in.subtype, info_in.frames)


def test_block_wise_file_equals_whole_signal_enhancement_and_reads_in_blocks(tmp_path, noisy, model, monkeypatch):
    source = tmp_path / "long.wav"
    sf.write(source, clip(noisy, 48000, 4.5, 2), 48000, subtype="FLOAT")
    requested = []
    real_read = sf.SoundFile.read

    def recording_read(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", recording_read)
    enhance_file(source, tmp_path / "out.wav", model=model, block_seconds=0.25)
    monkeypatch.undo()

    assert requested and max(requested) == 12000 and -1 not in requested  # never the whole file at once
    audio, _ = sf.read(source, dtype="float32")
    whole = denoise.enhance(audio, 48000, model=model, block_seconds=1000)
    written, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert written.shape == audio.shape
    assert np.max(np.abs(written - whole)) < 1e-4


def test_channels_are_enhanced_independently(tmp_path, noisy, noise, model):
    left, right = noisy[:16000], noise[:16000] * 0.3
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")

    enhance_file(tmp_path / "stereo.wav", model=model)

    stereo, _ = sf.read(tmp_path / "stereo_enhanced.wav", dtype="float32")
    assert np.max(np.abs(stereo[:, 0] - denoise.enhance(left, 16000, model=model))) < 1e-4
    assert np.max(np.abs(stereo[:, 1] - denoise.enhance(right, 16000, model=model))) < 1e-4


def test_mono_sample_rate_and_subtype_options(tmp_path, noisy, model):
    source = tmp_path / "in.wav"
    sf.write(source, clip(noisy, 44100, 1.0, 2), 44100, subtype="FLOAT")

    enhance_file(source, tmp_path / "out.wav", model=model, mono=True, sample_rate=16000, subtype="pcm_16")

    info = sf.info(tmp_path / "out.wav")
    assert (info.channels, info.samplerate, info.subtype) == (1, 16000, "PCM_16")
    assert abs(info.frames - 16000) <= 1


def test_output_format_follows_the_output_extension(tmp_path, speech, model):
    sf.write(tmp_path / "in.wav", speech[:8000], 16000, subtype="PCM_24")

    enhance_file(tmp_path / "in.wav", tmp_path / "out.flac", model=model)

    info = sf.info(tmp_path / "out.flac")
    assert (info.format, info.subtype, info.frames) == ("FLAC", "PCM_24", 8000)


def test_strength_zero_gives_back_the_input_and_atten_lim_is_a_mix(tmp_path, noisy, model):
    audio = noisy[:16000]
    sf.write(tmp_path / "in.wav", audio, 16000, subtype="FLOAT")

    enhance_file(tmp_path / "in.wav", tmp_path / "dry.wav", model=model, strength=0.0)
    enhance_file(tmp_path / "in.wav", tmp_path / "limited.wav", model=model, atten_lim_db=6.0)

    assert np.array_equal(sf.read(tmp_path / "dry.wav", dtype="float32")[0], audio)
    wet = denoise.enhance(audio, 16000, model=model)
    keep = 10 ** (-6 / 20)
    limited = sf.read(tmp_path / "limited.wav", dtype="float32")[0]
    assert np.max(np.abs(limited - ((1 - keep) * wet + keep * audio))) < 1e-4


def test_denoiser_loads_once_and_matches_the_functions(tmp_path, speech):
    model = Denoiser("small")
    sf.write(tmp_path / "a.wav", speech[:4000], 16000)
    sf.write(tmp_path / "b.flac", speech[4000:9000], 16000)

    assert model.enhance_file(tmp_path / "a.wav").status == "done"
    assert model.enhance_file(tmp_path / "b.flac", tmp_path / "b_clean.flac").output == str(tmp_path / "b_clean.flac")
    assert np.array_equal(model.enhance(speech[:4000], 16000), denoise.enhance(speech[:4000], 16000, model=model))
    assert sf.info(tmp_path / "a_enhanced.wav").frames == 4000


def test_public_api_imports_without_torch(tmp_path, speech):
    sf.write(tmp_path / "in.wav", speech[:4000], 16000)
    code = (
        "import sys\n"
        "from denoise import enhance, enhance_file, Denoiser, Streamer\n"
        f"result = enhance_file({str(tmp_path / 'in.wav')!r})\n"
        "assert result.status == 'done', result\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert sf.info(tmp_path / "in_enhanced.wav").frames == 4000


def test_plan_jobs_outputs(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("in/a.wav", "in/sub/b.flac", "in/a_enhanced.wav", "in/.hidden.wav", "in/notes.txt"):
        (tmp_path / name).write_bytes(b"x")

    beside = {job.input.name: job.output for job in plan_jobs([tmp_path / "in"])}
    mirrored = {job.input.name: job.output for job in plan_jobs([tmp_path / "in"], tmp_path / "out")}
    single = plan_jobs([tmp_path / "in" / "a.wav"], tmp_path / "x.flac")

    assert beside == {"a.wav": tmp_path / "in" / "a_enhanced.wav", "b.flac": tmp_path / "in" / "sub" / "b_enhanced.flac"}
    assert mirrored == {"a.wav": tmp_path / "out" / "a.wav", "b.flac": tmp_path / "out" / "sub" / "b.flac"}
    assert [(job.output, job.error) for job in single] == [(tmp_path / "x.flac", None)]


def test_output_extension_libsndfile_cannot_write_is_refused(tmp_path, speech, model):
    sf.write(tmp_path / "in.wav", speech[:1600], 16000)
    with pytest.raises(AudioFileError, match=r"out\.m4a.*cannot write '\.m4a'"):
        enhance_file(tmp_path / "in.wav", tmp_path / "out.m4a", model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_result_record_fields(tmp_path, speech, model):
    sf.write(tmp_path / "in.wav", speech[:16000], 16000)
    record = enhance_file(tmp_path / "in.wav", model=model).to_dict()
    assert set(record) >= {"input", "output", "status", "error", "seconds", "rtf"}
    assert record["seconds"] == 1.0 and 0 < record["rtf"] < 10 and record["error"] is None
    assert files.FileResult("x", None, "failed", "x: broken").rtf is None
