"""Bad input: one line naming the file and the cause, no partial output, inputs untouched, the batch goes on."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from denoise import atomic, files
from denoise.cli import _with_default_command, app
from denoise.files import AudioFileError, enhance_file

runner = CliRunner()
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + bytes(64)


def run(*args):
    return runner.invoke(app, _with_default_command([str(a) for a in args]))


def only_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("denoise: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def leftovers(folder) -> list[str]:
    """Temporary or partial outputs: hidden files or anything named *_enhanced*."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or "_enhanced" in p.name)


@pytest.fixture
def good(tmp_path, noisy):
    path = tmp_path / "good.wav"
    sf.write(path, noisy[:8000], 16000, subtype="PCM_16")
    return path


def make_empty(folder):
    (folder / "empty.wav").write_bytes(b"")
    return folder / "empty.wav", "empty file (0 bytes)"


def make_zero_length(folder):
    sf.write(folder / "zero.wav", np.zeros(0, np.float32), 16000)
    return folder / "zero.wav", "contains no audio (0 samples)"


def make_truncated_header(folder, noisy):
    sf.write(folder / "full.wav", noisy[:4000], 16000)
    (folder / "truncated.wav").write_bytes((folder / "full.wav").read_bytes()[:30])
    (folder / "full.wav").unlink()
    return folder / "truncated.wav", "not a readable audio file"


def make_corrupt_header(folder, noisy):
    sf.write(folder / "full.wav", noisy[:4000], 16000)
    data = bytearray((folder / "full.wav").read_bytes())
    data[8:16] = b"JUNKJUNK"  # RIFF....WAVEfmt  ->  RIFF....JUNKJUNK
    (folder / "corrupt.wav").write_bytes(bytes(data))
    (folder / "full.wav").unlink()
    return folder / "corrupt.wav", "not a readable audio file"


def make_text(folder):
    (folder / "notes.wav").write_text("meeting notes, not audio\n" * 20)
    return folder / "notes.wav", "not a readable audio file"


def make_image(folder):
    (folder / "photo.wav").write_bytes(PNG)
    return folder / "photo.wav", "not a readable audio file"


@pytest.mark.parametrize("maker", [make_empty, make_zero_length, make_truncated_header, make_corrupt_header,
                                   make_text, make_image])
def test_unusable_file_is_one_line_naming_it_and_the_batch_goes_on(tmp_path, good, noisy, maker):
    bad, cause = maker(tmp_path) if maker in (make_empty, make_zero_length, make_text, make_image) \
        else maker(tmp_path, noisy)
    before = bad.read_bytes()

    result = run(bad, good)

    assert result.exit_code == 1
    assert only_error_line(result).startswith(f"denoise: error: {bad}: {cause}")
    assert bad.read_bytes() == before
    assert leftovers(tmp_path) == ["good_enhanced.wav"]
    assert sf.info(tmp_path / "good_enhanced.wav").frames == 8000


def test_folder_without_audio(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no audio here")

    result = run(tmp_path / "docs")

    assert result.exit_code == 1
    assert only_error_line(result) == f"denoise: error: {tmp_path / 'docs'}: no audio files in folder"


def test_missing_file_and_unmatched_glob(tmp_path, good):
    result = run(tmp_path / "missing.wav", str(tmp_path / "*.mp3"), good)

    assert result.exit_code == 1
    assert f"denoise: error: {tmp_path / 'missing.wav'}: no such file or folder" in result.stderr
    assert f"denoise: error: {tmp_path / '*.mp3'}: no files match" in result.stderr
    assert (tmp_path / "good_enhanced.wav").exists()


def test_nan_and_inf_are_replaced_with_silence_and_reported(tmp_path, noisy):
    audio = noisy[:8000].copy()
    audio[100:110] = np.nan
    audio[5000] = np.inf
    sf.write(tmp_path / "nan.wav", audio, 16000, subtype="FLOAT")

    result = run(tmp_path / "nan.wav")

    assert result.exit_code == 0
    assert f"denoise: warning: {tmp_path / 'nan.wav'}: 11 NaN/Inf samples replaced with silence" in result.stderr
    written, _ = sf.read(tmp_path / "nan_enhanced.wav", dtype="float32")
    assert len(written) == 8000 and np.isfinite(written).all()


def test_all_silence_gives_silence(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")

    enhance_file(tmp_path / "silence.wav")

    written, _ = sf.read(tmp_path / "silence_enhanced.wav", dtype="float32")
    assert len(written) == 16000 and np.max(np.abs(written)) < 1e-4


def test_clipping_input_works_and_warns(tmp_path, noisy):
    loud = np.clip(noisy[:8000] * 20, -1.0, 1.0)
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")

    result = run(tmp_path / "loud.wav")

    assert result.exit_code == 0
    assert "samples at full scale (clipped input)" in result.stderr
    written, _ = sf.read(tmp_path / "loud_enhanced.wav", dtype="float32")
    assert len(written) == 8000 and np.isfinite(written).all()


def test_one_sample_file(tmp_path):
    sf.write(tmp_path / "one.wav", np.array([0.25], np.float32), 44100, subtype="PCM_24")

    result = run(tmp_path / "one.wav")

    assert result.exit_code == 0, result.stderr
    info = sf.info(tmp_path / "one_enhanced.wav")
    assert (info.frames, info.samplerate, info.subtype) == (1, 44100, "PCM_24")


def test_unreadable_input(tmp_path, good, monkeypatch):
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if str(path) == str(good):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", guarded_open, raising=False)  # tests run as root: chmod 000 is no obstacle

    result = run(good)

    assert result.exit_code == 1
    assert only_error_line(result) == f"denoise: error: {good}: cannot open (Permission denied)"
    assert leftovers(tmp_path) == []


def test_unwritable_output_folder(tmp_path, good, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkstemp = atomic.tempfile.mkstemp

    def guarded_mkstemp(*args, dir=None, **kwargs):
        if str(dir) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", guarded_mkstemp)

    result = run(good, "-o", locked / "out.wav")

    assert result.exit_code == 1
    assert only_error_line(result) == f"denoise: error: {good}: cannot write {locked / 'out.wav'} (Permission denied)"
    assert list(locked.iterdir()) == []


def test_output_path_equal_to_input_is_refused(tmp_path, good):
    before = good.read_bytes()

    same_file = run(good, "-o", good, "--overwrite")
    same_folder = run(tmp_path, "-o", tmp_path, "--overwrite")

    for result in (same_file, same_folder):
        assert result.exit_code == 1
        assert only_error_line(result) == f"denoise: error: {good}: output would overwrite the input (choose another output path)"
    assert good.read_bytes() == before
    with pytest.raises(AudioFileError, match="overwrite the input"):
        enhance_file(good, tmp_path / "." / "good.wav", overwrite=True)


def test_failed_write_names_the_output_and_leaves_no_new_folders(tmp_path, good):
    target = tmp_path / "new" / "deeper" / "x.mp3"
    with pytest.raises(AudioFileError) as failure:
        enhance_file(good, target, sample_rate=192000)  # MP3 cannot hold 192 kHz
    message = str(failure.value)
    assert str(target) in message and ".tmp" not in message
    assert not (tmp_path / "new").exists()


def test_disk_full_while_writing_leaves_nothing_and_the_batch_goes_on(tmp_path, noisy, monkeypatch):
    for name in ("a", "b", "c"):
        sf.write(tmp_path / f"{name}.wav", noisy[:16000], 16000)
    real_write = sf.SoundFile.write
    writes = {"count": 0}

    def filling_write(self, data):
        if "b_enhanced" in str(self.name):
            writes["count"] += 1
            if writes["count"] == 2:  # the second file, midway
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", filling_write)

    result = run(tmp_path, "--block-seconds", "0.5", "--json")

    assert result.exit_code == 1
    assert only_error_line(result) == (
        f"denoise: error: {tmp_path / 'b.wav'}: cannot write {tmp_path / 'b_enhanced.wav'} (No space left on device)")
    assert leftovers(tmp_path) == ["a_enhanced.wav", "c_enhanced.wav"]
    assert writes["count"] == 2  # it failed after part of the file was written
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["done", "failed", "done"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_keeps_finished_files_and_leaves_nothing_of_the_one_in_progress(tmp_path, noisy, monkeypatch, jobs):
    for name in ("a", "b", "c", "d"):
        sf.write(tmp_path / f"{name}.wav", noisy[:16000], 16000)
    real_process = files.Streamer.process
    calls = {"count": 0}

    def interrupted_process(self, chunk):
        calls["count"] += 1
        if calls["count"] == 4:  # 2 blocks per file: the second block of the second file
            raise KeyboardInterrupt
        return real_process(self, chunk)

    monkeypatch.setattr(files.Streamer, "process", interrupted_process)

    result = run(tmp_path, "--block-seconds", "0.5", "--jobs", jobs, "--quiet")

    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    left = leftovers(tmp_path)
    assert not [name for name in left if name.startswith(".")]  # no temporary files
    assert all(sf.info(tmp_path / name).frames == 16000 for name in left)  # what exists is complete
    if jobs == "1":
        assert left == ["a_enhanced.wav"]
