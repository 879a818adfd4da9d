"""Streaming: any chunking gives the offline result, and `denoise stream` works in pipelines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from denoise.inference import Model, Streamer, enhance

CLI = [sys.executable, "-m", "denoise.cli", "stream"]


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


def stream_in_chunks(streamer: Streamer, audio: np.ndarray, chunk: int) -> np.ndarray:
    pieces = [streamer.process(audio[start:start + chunk]) for start in range(0, len(audio), chunk)]
    return np.concatenate(pieces + [streamer.flush()])


def test_audio(noisy, speech, rate: int, channels: int, seconds: float) -> np.ndarray:
    mono = noisy[: int(16000 * seconds)]
    audio = mono if channels == 1 else np.stack([mono, speech[: len(mono)]], axis=1)
    return soxr.resample(audio, 16000, rate) if rate != 16000 else audio


test_audio.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("chunk", [1, 7, 160, 161, 1000, 16000])
def test_streamed_equals_offline_for_any_chunk_size(model, noisy, speech, rate, channels, chunk):
    seconds = 0.5 if chunk < 10 else 1.5  # tiny chunks are many Python calls: keep them short
    audio = test_audio(noisy, speech, rate, channels, seconds)
    offline = enhance(audio, rate, model)
    streamed = stream_in_chunks(Streamer(model, rate, channels), audio, chunk)
    assert streamed.shape == audio.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-4)


def test_irregular_chunks_including_empty_ones(model, noisy):
    audio = noisy[:24000]
    sizes = np.random.default_rng(3).choice([0, 1, 3, 80, 159, 480, 2000], size=400)
    streamer, pieces, start = Streamer(model, 44100), [], 0
    audio = soxr.resample(audio, 16000, 44100)
    for size in sizes:
        pieces.append(streamer.process(audio[start:start + size]))
        start += size
    pieces += [streamer.process(audio[start:]), streamer.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), enhance(audio, 44100, model), atol=1e-4)


def test_output_is_held_back_by_the_window_and_caught_up_on_flush(model, noisy):
    streamer = Streamer(model, 16000)
    assert streamer.latency_ms == 20.0
    assert len(streamer.process(noisy[:160])) == 0  # frame 1 needs 320 samples
    assert len(streamer.process(noisy[160:320])) == 160
    assert len(streamer.process(noisy[320:500])) == 160
    assert len(streamer.flush()) == 500 - 320
    assert Streamer(model, 48000).latency_ms > 20.0  # resampler delay is included


def test_reset_starts_a_fresh_stream(model, noisy, speech):
    audio = test_audio(noisy, speech, 48000, 2, 1.0)
    streamer = Streamer(model, 48000, 2)
    first = stream_in_chunks(streamer, audio, 480)
    streamer.reset()
    stream_in_chunks(streamer, audio[::-1].copy(), 333)  # dirty its state
    streamer.reset()
    again = stream_in_chunks(streamer, audio, 480)
    fresh = stream_in_chunks(Streamer(model, 48000, 2), audio, 480)
    np.testing.assert_array_equal(again, fresh)
    np.testing.assert_array_equal(first, fresh)


def test_mid_stream_errors(model, noisy):
    streamer = Streamer(model, 16000, channels=2)
    streamer.process(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="3-channel audio"):
        streamer.process(np.zeros((100, 3), np.float32))
    with pytest.raises(ValueError, match="1-D audio"):
        streamer.process(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        streamer.process(np.full((10, 2), np.inf, np.float32))
    streamer.flush()
    with pytest.raises(ValueError, match="reset"):
        streamer.process(np.zeros((10, 2), np.float32))


# -- the `denoise stream` command -----------------------------------------------------------------


def pcm16(audio: np.ndarray) -> bytes:
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def test_cli_raw_stdin_to_stdout(model, noisy):
    raw = pcm16(noisy[:16000])
    result = subprocess.run(CLI + ["--sample-rate", "16000", "--stats"], input=raw, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == len(raw)
    out = np.frombuffer(result.stdout, "<i2") / 32768.0
    expected = enhance(np.frombuffer(raw, "<i2") / np.float32(32768.0), 16000, model)
    assert np.abs(out - expected).max() <= 1.5 / 32768
    assert "latency 20.0 ms" in result.stderr.decode() and "p99" in result.stderr.decode()


def test_cli_wav_in_gives_wav_out_with_the_same_format(tmp_path, noisy):
    stereo = soxr.resample(np.stack([noisy[:8000], noisy[8000:16000]], axis=1), 16000, 48000)
    source = tmp_path / "in.wav"
    sf.write(source, stereo, 48000, subtype="FLOAT")
    piped = subprocess.run(CLI + ["-f", "s16le", "-r", "8000"], input=source.read_bytes(), capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr.decode()
    (tmp_path / "piped.wav").write_bytes(piped.stdout)
    by_file = subprocess.run(CLI + ["-i", str(source), "-o", str(tmp_path / "out.wav")], capture_output=True, timeout=120)
    assert by_file.returncode == 0, by_file.stderr.decode()
    written, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 48000 and written.shape == stereo.shape
    np.testing.assert_allclose(written, enhance(stereo.astype(np.float32), 48000), atol=1e-5)
    info = sf.info(tmp_path / "out.wav")
    assert info.subtype == "FLOAT" and info.channels == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    from_pipe, pipe_rate = sf.read(tmp_path / "piped.wav", dtype="float32")  # header overrides -f/-r
    assert pipe_rate == 48000
    np.testing.assert_array_equal(from_pipe, written)


def test_cli_broken_pipe_ends_cleanly(noisy):
    raw = pcm16(np.tile(noisy, 3))  # far more than a pipe buffer holds
    process = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(raw[: 1 << 16])
        process.stdin.flush()
        assert len(process.stdout.read(100)) == 100
        process.stdout.close()  # the reader goes away, like `| head -c 100`
        process.stdin.write(raw[1 << 16:])
        process.stdin.close()
    except BrokenPipeError:
        pass  # it already stopped reading: fine
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert "broken pipe" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_cli_truncated_input_keeps_complete_samples_and_warns(noisy):
    raw = pcm16(noisy[:1000]) + b"\x01"
    result = subprocess.run(CLI, input=raw, capture_output=True, timeout=120)
    assert result.returncode == 1
    assert len(result.stdout) == 2000
    assert "dropped the last 1 byte" in result.stderr.decode()


def test_cli_bad_input_gives_one_line_errors(tmp_path):
    nan_stream = np.full(400, np.nan, "<f4").tobytes()
    result = subprocess.run(CLI + ["-f", "f32le"], input=nan_stream, capture_output=True, timeout=120)
    assert result.returncode == 2 and "stdin: audio contains NaN" in result.stderr.decode()
    sf.write(tmp_path / "deep.wav", np.zeros(100), 16000, subtype="PCM_24")
    result = subprocess.run(CLI + ["-i", str(tmp_path / "deep.wav")], capture_output=True, timeout=120)
    assert result.returncode == 2 and "deep.wav: WAV sample format" in result.stderr.decode()
    result = subprocess.run(CLI + ["-i", str(tmp_path / "missing.raw")], capture_output=True, timeout=120)
    assert result.returncode == 2 and "missing.raw: cannot read" in result.stderr.decode()
    result = subprocess.run(CLI + ["-f", "s24le"], input=b"", capture_output=True, timeout=120)
    assert result.returncode == 2 and "--format" in result.stderr.decode()
    for stderr in (result.stderr.decode(),):
        assert len(stderr.strip().splitlines()) == 1


def test_cli_never_overwrites_its_input_and_reports_unwritable_output(tmp_path, noisy):
    source = tmp_path / "take.wav"
    sf.write(source, noisy[:8000], 16000, subtype="PCM_16")
    before = source.read_bytes()
    result = subprocess.run(CLI + ["-i", str(source), "-o", str(source)], capture_output=True, timeout=120)
    assert result.returncode == 2 and "would overwrite the input" in result.stderr.decode()
    assert source.read_bytes() == before
    missing = tmp_path / "no" / "such" / "out.wav"
    result = subprocess.run(CLI + ["-i", str(source), "-o", str(missing)], capture_output=True, timeout=120)
    stderr = result.stderr.decode().strip()
    assert result.returncode == 2 and "out.wav: cannot write" in stderr and len(stderr.splitlines()) == 1
    assert not missing.parent.exists()


def test_cli_live_mode_arguments(monkeypatch):
    from typer.testing import CliRunner

    from denoise.cli import app

    result = CliRunner().invoke(app, ["stream", "--device", "1,2,3"])
    assert result.exit_code == 2
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if not installed
    result = CliRunner().invoke(app, ["stream", "--device", "0,1"])
    assert result.exit_code == 2
    assert "pip install 'denoise[live]'" in result.output


def test_cli_ctrl_c_ends_the_stream_and_writes_the_tail(noisy):
    import signal

    raw = pcm16(noisy[:16000])
    process = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(raw)
    process.stdin.flush()
    held_back = 2 * 160  # after a whole number of hops, one hop (10 ms of 16-bit samples) waits for the input's end
    head = process.stdout.read(len(raw) - held_back)  # all input processed; it now waits for more
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert len(head) == len(raw) - held_back and len(rest) == held_back  # the tail came out on Ctrl-C
    assert b"Traceback" not in stderr
