"""`denoise stream`: enhance a live stream, stdin -> stdout (or files, or a sound card), as it arrives.

Raw PCM in gives raw PCM out in the same format; a WAV header on the input (detected from its
first bytes) gives WAV out with the same sample format, rate and channels. Output is sample-aligned
with the input and exactly as long.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import typer

from denoise.commands.common import fail, load_model_or_fail

FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
WAV_PCM, WAV_FLOAT, WAV_EXTENSIBLE = 1, 3, 0xFFFE
UNKNOWN_SIZE = 0xFFFFFFFF


class StreamFormatError(ValueError):
    """Input whose header or sample format cannot be streamed."""


class PcmReader:
    """Reads whole samples (all channels) from a byte stream; remembers a trailing partial sample."""

    def __init__(self, handle: BinaryIO, sample_format: str, channels: int, prefix: bytes = b"", limit: int | None = None):
        self.handle, self.dtype, self.channels = handle, FORMATS[sample_format], channels
        self.frame_bytes = self.dtype.itemsize * channels
        self.pending = prefix
        self.remaining = limit  # bytes left in a WAV data chunk of known size
        self.dropped_bytes = 0

    def read(self, frames: int) -> np.ndarray | None:
        """Up to ``frames`` samples as ``(frames, channels)`` float32; None at the end of the stream."""
        needed = max(0, frames * self.frame_bytes - len(self.pending))
        if self.remaining is not None:
            needed = min(needed, self.remaining)
        fresh = self.handle.read(needed) if needed else b""
        if self.remaining is not None:
            self.remaining -= len(fresh)
        data, self.pending = self.pending + fresh, b""
        usable = len(data) - len(data) % self.frame_bytes
        if usable == 0:
            self.dropped_bytes = len(data)
            return None
        if usable < len(data):  # a short read mid-stream: keep the partial sample for the next read
            self.pending = data[usable:]
        samples = np.frombuffer(data[:usable], dtype=self.dtype).reshape(-1, self.channels)
        if self.dtype.kind == "i":
            return samples.astype(np.float32) / 32768.0
        return samples.astype(np.float32)


def to_bytes(audio: np.ndarray, sample_format: str) -> bytes:
    if sample_format == "s16le":
        return np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()
    return audio.astype("<f4").tobytes()


def read_wav_header(handle: BinaryIO, source: str) -> tuple[str, int, int, int | None]:
    """After ``RIFF``: parse up to the data chunk -> (sample format, rate, channels, data bytes or None)."""
    riff = handle.read(8)
    if len(riff) < 8 or riff[4:8] != b"WAVE":
        raise StreamFormatError(f"{source}: RIFF header without WAVE (not a WAV stream)")
    fmt = None
    while True:
        header = handle.read(8)
        if len(header) < 8:
            raise StreamFormatError(f"{source}: WAV header ends before the data chunk")
        name, size = header[:4], struct.unpack("<I", header[4:])[0]
        if name == b"data":
            break
        body = handle.read(size + size % 2)
        if name == b"fmt ":
            fmt = body
    if fmt is None or len(fmt) < 16:
        raise StreamFormatError(f"{source}: WAV without a fmt chunk")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == WAV_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    if (tag, bits) == (WAV_PCM, 16):
        sample_format = "s16le"
    elif (tag, bits) == (WAV_FLOAT, 32):
        sample_format = "f32le"
    else:
        raise StreamFormatError(f"{source}: WAV sample format (tag {tag}, {bits} bit) is not streamable; "
                                "use 16-bit PCM or 32-bit float")
    return sample_format, rate, channels, None if size in (0, UNKNOWN_SIZE) else size


def wav_header(sample_format: str, rate: int, channels: int, data_bytes: int = UNKNOWN_SIZE) -> bytes:
    tag, bits = (WAV_PCM, 16) if sample_format == "s16le" else (WAV_FLOAT, 32)
    block = channels * bits // 8
    riff_size = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


class Stats:
    """Compute time per 10 ms of audio, for ``--stats``."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.per_hop, self.compute, self.samples = sample_rate, [], 0.0, 0

    def add(self, seconds: float, samples: int) -> None:
        if samples:
            self.per_hop.append(seconds / (samples / (self.sample_rate / 100)))
            self.compute += seconds
            self.samples += samples

    def report(self, latency_ms: float) -> str:
        if not self.per_hop:
            return f"denoise: stats: latency {latency_ms:.1f} ms (algorithmic); no audio processed"
        per_hop_ms = np.array(self.per_hop) * 1000
        rtf = self.compute / (self.samples / self.sample_rate)
        return (f"denoise: stats: latency {latency_ms:.1f} ms (algorithmic), compute per 10 ms hop "
                f"mean {per_hop_ms.mean():.3f} ms, p99 {np.percentile(per_hop_ms, 99):.3f} ms, RTF {rtf:.4f} "
                f"({self.samples / self.sample_rate:.1f} s of audio)")


def _parse_devices(device: str) -> tuple[str | int | None, str | int | None]:
    parts = [p.strip() for p in device.split(",")]
    if len(parts) > 2 or not parts[0]:
        raise typer.BadParameter("expected IN or IN,OUT (device names or numbers; see `python -m sounddevice`)")
    as_device = [int(p) if p.isdigit() else (p or None) for p in parts]
    return as_device[0], as_device[1] if len(as_device) == 2 else None


def stream(
    input: Path = typer.Option(None, "-i", "--input", help="Read from this file instead of stdin (raw PCM or WAV)."),
    output: Path = typer.Option(None, "-o", "--output", help="Write to this file instead of stdout (written atomically)."),
    sample_rate: int = typer.Option(16000, "-r", "--sample-rate", min=1, help="Sample rate of raw input (a WAV header overrides it)."),
    channels: int = typer.Option(1, "-c", "--channels", min=1, max=64, help="Channels of raw input, interleaved (a WAV header overrides it)."),
    sample_format: str = typer.Option("s16le", "-f", "--format", help="Raw sample format: s16le or f32le."),
    model: str = typer.Option(None, "-m", "--model", help="Bundled model name, model folder, or Hub id. Default: small."),
    strength: float = typer.Option(1.0, "-s", "--strength", min=0.0, max=1.0,
                                   help="1 = fully enhanced, 0 = original; in between mixes the two."),
    atten_lim: float = typer.Option(None, "-a", "--atten-lim", min=0.0,
                                    help="Limit noise attenuation to this many dB (keeps some background; like DeepFilterNet)."),
    threads: int = typer.Option(1, "-t", "--threads", min=1, help="onnxruntime threads."),
    block_ms: float = typer.Option(10.0, "--block-ms", min=0.1, help="Read size in milliseconds."),
    device: str = typer.Option(None, "--device",
                               help="Live mode: capture from sound card IN and play to OUT (`IN[,OUT]`, names or numbers; "
                                    "needs `pip install 'denoise[live]'`)."),
    stats: bool = typer.Option(False, "--stats", help="Print latency, compute time per 10 ms hop and RTF on stderr."),
) -> None:
    """Enhance a live stream as it arrives: raw PCM or WAV on stdin, enhanced audio on stdout.

    Raw in gives raw out in the same format; WAV in gives WAV out. Output is sample-aligned with the
    input and exactly as long. Ctrl-C ends the stream cleanly (the tail is still written).

    Example: sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | denoise stream | play -t raw -r 16000 -e signed -b 16 -c 1 -
    """
    from denoise.inference import Streamer

    if sample_format not in FORMATS:
        fail(f"--format {sample_format!r}: choose s16le or f32le")
    if device is not None:
        in_device, out_device = _parse_devices(device)
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError) as error:
            fail(f"live mode (--device) needs sounddevice: pip install 'denoise[live]' ({error})")
    from denoise.files import same_file

    if input is not None and output is not None and same_file(input, output):
        fail(f"{output}: output would overwrite the input (choose another output path)")
    loaded = load_model_or_fail(model, threads)
    if device is not None:
        return _live(loaded, in_device, out_device, sample_rate, channels, strength, atten_lim, block_ms, stats)

    source = str(input) if input else "stdin"
    try:
        handle = open(input, "rb") if input else sys.stdin.buffer
    except OSError as error:
        fail(f"{input}: cannot read ({error.strerror or error})")
    with handle if input else contextlib.nullcontext():
        magic = handle.read(4)
        wav = magic == b"RIFF"
        limit = None
        try:
            if wav:
                sample_format, sample_rate, channels, limit = read_wav_header(handle, source)
        except StreamFormatError as error:
            fail(str(error))
        if sample_rate <= 0 or channels <= 0:
            fail(f"{source}: sample rate {sample_rate} and channels {channels} must be positive")
        reader = PcmReader(handle, sample_format, channels, prefix=b"" if wav else magic, limit=limit)
        try:
            streamer = Streamer(loaded, sample_rate, channels, strength=strength, atten_lim_db=atten_lim)
        except ValueError as error:
            fail(f"{source}: {error}")
        header = wav_header(sample_format, sample_rate, channels) if wav else b""
        if output is not None:
            from denoise.atomic import atomic_path

            try:
                with atomic_path(output) as temp, open(temp, "wb") as sink:
                    written = _pump(reader, streamer, sink, header, sample_format, block_ms, stats, source)
                    if wav:
                        sink.seek(0)
                        sink.write(wav_header(sample_format, sample_rate, channels, written))
            except OSError as error:
                fail(f"{output}: cannot write ({error.strerror or error})")
        else:
            _pump(reader, streamer, sys.stdout.buffer, header, sample_format, block_ms, stats, source)
    if reader.dropped_bytes:
        typer.echo(f"denoise: warning: {source}: input ended inside a sample; dropped the last "
                   f"{reader.dropped_bytes} byte(s) (all complete samples were written)", err=True)
        raise typer.Exit(1)


def _pump(reader: PcmReader, streamer, sink: BinaryIO, header: bytes, sample_format: str,
          block_ms: float, show_stats: bool, source: str) -> int:
    """Read, enhance, write until the input ends (or Ctrl-C); returns the audio bytes written."""
    block = max(1, round(streamer.sample_rate * block_ms / 1000))
    stats = Stats(streamer.sample_rate)
    written = 0
    try:
        sink.write(header)
        try:
            while (audio := reader.read(block)) is not None:
                started = time.perf_counter()
                try:
                    enhanced = streamer.process(audio)
                except ValueError as error:
                    fail(f"{source}: {error}")
                stats.add(time.perf_counter() - started, len(audio))
                data = to_bytes(enhanced, sample_format)
                sink.write(data)
                sink.flush()
                written += len(data)
        except KeyboardInterrupt:
            pass  # Ctrl-C ends the input; the tail below is still written
        data = to_bytes(streamer.flush(), sample_format)
        sink.write(data)
        sink.flush()
        written += len(data)
    except BrokenPipeError:
        # downstream closed (e.g. `| head`): stop quietly; point stdout at /dev/null so the
        # interpreter's final flush does not raise a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        typer.echo("denoise: output closed by the reader (broken pipe); stopped", err=True)
    if show_stats:
        typer.echo(stats.report(streamer.latency_ms), err=True)
    return written


def _live(model, in_device, out_device, sample_rate, channels, strength, atten_lim, block_ms, show_stats) -> None:
    """Sound card in -> enhanced -> sound card out, until Ctrl-C."""
    import sounddevice as sd

    from denoise.inference import Streamer

    streamer = Streamer(model, sample_rate, channels, strength=strength, atten_lim_db=atten_lim)
    block = max(1, round(sample_rate * block_ms / 1000))
    # the Streamer lags by at most its latency; start the playback queue that far behind so it never runs dry
    lag = int(np.ceil(streamer.latency_ms * sample_rate / 1000)) + block
    queue = np.zeros((lag, channels), np.float32)
    stats = Stats(sample_rate)

    def callback(indata, outdata, frames, _time, status):
        nonlocal queue
        started = time.perf_counter()
        queue = np.concatenate([queue, streamer.process(indata.astype(np.float32).reshape(frames, channels))])
        stats.add(time.perf_counter() - started, frames)
        ready = min(frames, len(queue))
        outdata[:] = 0
        outdata[frames - ready:] = queue[:ready]
        queue = queue[ready:]

    typer.echo(f"denoise: live {sample_rate} Hz x{channels}, latency {streamer.latency_ms:.0f} ms + sound card; "
               "Ctrl-C to stop", err=True)
    try:
        with sd.Stream(samplerate=sample_rate, blocksize=block, device=(in_device, out_device),
                       channels=channels, dtype="float32", callback=callback):
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except sd.PortAudioError as error:
        fail(f"sound device: {error}")
    if show_stats:
        typer.echo(stats.report(streamer.latency_ms), err=True)


def register(app: typer.Typer) -> None:
    app.command(name="stream")(stream)
