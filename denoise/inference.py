"""Inference without torch: onnxruntime + numpy + soxr.

`Model` is a loaded model (an onnxruntime session on ``model.onnx`` plus its `ModelConfig`); load it
once and share it. `Streamer` enhances a live stream chunk by chunk with all state held explicitly:

    input resampler (rate -> 16 kHz) -> STFT framing buffer -> ONNX graph with its recurrent state
    -> overlap-add -> output resampler (16 kHz -> rate) -> wet/dry mix with the delayed original

`enhance` runs a whole signal through the same `Streamer` in blocks, so offline output equals streamed
output for any chunk size by construction, and memory stays bounded by the block size.

Output is sample-aligned with the input: the window and resampler delays are compensated by
emitting fewer samples early (the first chunks return little or nothing) and the rest on `flush`,
after which exactly as many samples came out as went in.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from denoise.checkpoint import (INPUT_NAMES, OFFLINE_FILE, OUTPUT_NAMES, STATE_NAMES, load_onnx, read_model_config,
                                resolve_model_dir, verify_file)
from denoise.config import ModelConfig
from denoise.registry import resolve_model
from denoise.stft import analyze, synthesize

RESAMPLE_QUALITY = "HQ"


class Model:
    """An exported model ready for inference: ``model.onnx`` (sha256-checked) in onnxruntime."""

    def __init__(self, model: str | Path | None = None, threads: int = 1):
        folder = resolve_model(model)
        self.folder = resolve_model_dir(folder)
        self.config, self.document = read_model_config(self.folder)
        self.session = load_onnx(verify_file(self.folder, OFFLINE_FILE, self.document), threads)
        self._state_inputs = [i for i in self.session.get_inputs() if i.name in STATE_NAMES]
        self._output_names = list(OUTPUT_NAMES)
        self.name = model if isinstance(model, str) and not Path(model).exists() else self.folder.name

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def latency_ms(self) -> float:
        return self.config.latency_ms

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        """Zero recurrent state for ``batch`` streams (shapes read from the graph: its symbolic axis is batch)."""
        return {
            i.name: np.zeros([d if isinstance(d, int) else batch for d in i.shape], dtype=np.float32)
            for i in self._state_inputs
        }

    def run(self, spec: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(batch, frames, bins, 2)`` spectrum + state -> enhanced spectrum + next state. One session call."""
        outputs = self.session.run(self._output_names, {INPUT_NAMES[0]: spec, **state})
        return outputs[0], {i.name: o for i, o in zip(self._state_inputs, outputs[1:])}

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {self.config.size}, {self.sample_rate} Hz, {self.latency_ms:g} ms)"


def strength_from_atten_lim(atten_lim_db: float) -> float:
    """DeepFilterNet's ``--atten-lim``: keep ``10^(-dB/20)`` of the original, so noise drops by at most ``dB``."""
    return 1.0 - 10.0 ** (-abs(float(atten_lim_db)) / 20.0)


class Streamer:
    """Real-time enhancement of one (possibly multi-channel) stream.

    ``process(chunk)`` takes ``(samples,)`` or ``(samples, channels)`` float audio of any length and
    returns the samples that became final, in the same layout; ``flush()`` returns the tail. Channels
    run as one batch through the graph. ``strength`` (0..1) mixes enhanced and original:
    ``out = strength * enhanced + (1 - strength) * original``, the original delayed to match.
    ``atten_lim_db`` limits noise attenuation like DeepFilterNet's ``--atten-lim`` (it is the same
    mix with ``strength = 1 - 10^(-dB/20)``); given both, the gentler one wins.
    """

    def __init__(
        self,
        model: Model | str | Path | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        strength: float = 1.0,
        threads: int = 1,
        atten_lim_db: float | None = None,
    ):
        self.model = model if isinstance(model, Model) else Model(model, threads=threads)
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample rate must be a positive integer, got {sample_rate}")
        if int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.strength = float(strength)
        if atten_lim_db is not None:
            self.strength = min(self.strength, strength_from_atten_lim(atten_lim_db))
        config: ModelConfig = self.model.config
        self._hop = config.hop_length
        self.latency_ms = config.latency_ms + self._resampler_delay_ms()
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next `process` starts a new stream."""
        import soxr

        channels, model_rate = self.channels, self.model.sample_rate
        self._to_model = self._from_model = None
        if self.sample_rate != model_rate:
            self._to_model = soxr.ResampleStream(self.sample_rate, model_rate, channels, "float32", RESAMPLE_QUALITY)
            self._from_model = soxr.ResampleStream(model_rate, self.sample_rate, channels, "float32", RESAMPLE_QUALITY)
        self._state = self.model.initial_state(channels)
        self._frame_buffer = np.zeros((channels, self._hop), np.float32)  # the causal framing's leading zeros
        self._overlap = np.zeros((channels, self._hop), np.float32)
        self._frames_done = 0
        self._model_samples_in = 0
        self._model_samples_out = 0
        self._dry = np.zeros((0, channels), np.float32)  # original input waiting for its enhanced twin
        self._samples_in = 0
        self._samples_out = 0
        self._mono_layout = True
        self._flushed = False

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed ``chunk``; return the enhanced samples that are final now (possibly none)."""
        audio = self._validate(chunk)
        if self._flushed:
            raise ValueError("stream already flushed; call reset() to start a new one")
        self._samples_in += len(audio)
        self._dry = np.concatenate([self._dry, audio])
        if len(audio) == 0:
            return self._layout(np.zeros((0, self.channels), np.float32))
        at_model_rate = self._to_model.resample_chunk(audio) if self._to_model else audio
        enhanced = self._run_model(at_model_rate, last=False)
        if self._from_model and len(enhanced):
            enhanced = self._from_model.resample_chunk(enhanced)
        return self._layout(self._mix(enhanced, last=False))

    def flush(self) -> np.ndarray:
        """End of stream: return the remaining samples (total output length == total input length)."""
        if self._flushed:
            return self._layout(np.zeros((0, self.channels), np.float32))
        self._flushed = True
        empty = np.zeros((0, self.channels), np.float32)
        at_model_rate = self._to_model.resample_chunk(empty, last=True) if self._to_model else empty
        enhanced = self._run_model(at_model_rate, last=True)
        if self._from_model:
            enhanced = self._from_model.resample_chunk(enhanced, last=True)
        return self._layout(self._mix(enhanced, last=True))

    # -- internals ---------------------------------------------------------------------------------

    def _validate(self, chunk: np.ndarray) -> np.ndarray:
        """-> ``(samples, channels)`` float32; remembers whether the caller uses the 1-D mono layout."""
        chunk = np.asarray(chunk)
        if chunk.dtype.kind != "f" and chunk.size:  # int16 PCM would silently come out 32768x too loud
            raise ValueError(f"audio must be floating point in [-1, 1], got dtype {chunk.dtype}")
        if chunk.ndim == 1:
            if self.channels != 1:
                raise ValueError(f"got 1-D audio (mono) for a {self.channels}-channel stream")
            self._mono_layout = True
            chunk = chunk[:, None]
        elif chunk.ndim == 2:
            if chunk.shape[1] != self.channels:
                raise ValueError(f"got {chunk.shape[1]}-channel audio (shape {chunk.shape}) "
                                 f"for a {self.channels}-channel stream; expected (samples, {self.channels})")
            self._mono_layout = False
        else:
            raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise ValueError("audio contains NaN or infinite samples")
        return np.ascontiguousarray(chunk, dtype=np.float32)

    def _layout(self, audio: np.ndarray) -> np.ndarray:
        return audio[:, 0] if self._mono_layout and self.channels == 1 else audio

    def _run_model(self, audio: np.ndarray, last: bool) -> np.ndarray:
        """``(samples, channels)`` at the model rate -> newly final enhanced ``(samples, channels)``.

        Frame ``t`` covers padded samples ``[t * hop, (t + 2) * hop)`` (see `denoise.stft`); all frames
        complete in the buffer go through the graph in one call.
        """
        hop = self._hop
        self._model_samples_in += len(audio)
        buffer = np.concatenate([self._frame_buffer, audio.T], axis=1)
        if last:  # zero-pad exactly as `denoise.stft.stft` does for the whole signal
            total_frames = math.ceil(self._model_samples_in / hop) + 1
            needed = (total_frames + 1) * hop - self._frames_done * hop
            buffer = np.pad(buffer, [(0, 0), (0, max(0, needed - buffer.shape[1]))])
        count = (buffer.shape[1] - hop) // hop
        if count <= 0:
            self._frame_buffer = buffer
            return np.zeros((0, self.channels), np.float32)
        blocks = buffer[:, : (count + 1) * hop].reshape(self.channels, count + 1, hop)
        spec = analyze(np.concatenate([blocks[:, :-1], blocks[:, 1:]], axis=-1))
        enhanced, self._state = self.model.run(spec, self._state)
        signal = synthesize(enhanced, 2 * hop)
        previous_halves = np.concatenate([self._overlap[:, None], signal[:, :-1, hop:]], axis=1)
        output = (signal[:, :, :hop] + previous_halves).reshape(self.channels, -1)
        self._overlap = signal[:, -1, hop:]
        if self._frames_done == 0:
            output = output[:, hop:]  # frame 0's first half lies before the signal starts
        self._frames_done += count
        self._frame_buffer = buffer[:, count * hop:]
        if last:
            output = output[:, : self._model_samples_in - self._model_samples_out]
        self._model_samples_out += output.shape[1]
        return np.ascontiguousarray(output.T)

    def _mix(self, enhanced: np.ndarray, last: bool) -> np.ndarray:
        """Clip to the input length (pad at the end of stream) and mix with the aligned original."""
        remaining = self._samples_in - self._samples_out
        if last and len(enhanced) < remaining:
            enhanced = np.concatenate([enhanced, np.zeros((remaining - len(enhanced), self.channels), np.float32)])
        enhanced = enhanced[:remaining]
        count = len(enhanced)
        dry, self._dry = self._dry[:count], self._dry[count:]
        self._samples_out += count
        if self.strength >= 1.0:
            return enhanced
        return (self.strength * enhanced + (1.0 - self.strength) * dry).astype(np.float32)

    def _resampler_delay_ms(self) -> float:
        """Worst-case delay of the two soxr stages for 10 ms chunks (soxr works in blocks), measured once."""
        if self.sample_rate == self.model.sample_rate:
            return 0.0
        return 1000.0 * (_soxr_worst_delay(self.sample_rate, self.model.sample_rate)
                         + _soxr_worst_delay(self.model.sample_rate, self.sample_rate))


_DELAY_CACHE: dict[tuple[int, int], float] = {}


def _soxr_worst_delay(in_rate: int, out_rate: int) -> float:
    """Largest number of pending output samples (in seconds) when fed 10 ms chunks."""
    import soxr

    key = (in_rate, out_rate)
    if key not in _DELAY_CACHE:
        stream = soxr.ResampleStream(in_rate, out_rate, 1, "float32", RESAMPLE_QUALITY)
        chunk = np.zeros(max(1, in_rate // 100), np.float32)
        worst = 0.0
        for _ in range(100):
            stream.resample_chunk(chunk)
            worst = max(worst, stream.delay())
        _DELAY_CACHE[key] = worst / out_rate
    return _DELAY_CACHE[key]


def enhance(
    audio: np.ndarray,
    sample_rate: int,
    model: Model | str | Path | None = None,
    strength: float = 1.0,
    threads: int = 1,
    block_seconds: float = 10.0,
    atten_lim_db: float | None = None,
) -> np.ndarray:
    """Enhance a whole signal ``(samples,)`` or ``(samples, channels)``; returns the same shape, float32.

    Runs the `Streamer` over blocks of ``block_seconds``, so the result equals streaming output.
    """
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {audio.shape}")
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    streamer = Streamer(model, sample_rate, channels, strength=strength, threads=threads, atten_lim_db=atten_lim_db)
    block = max(1, int(block_seconds * sample_rate))
    pieces = [streamer.process(audio[start:start + block]) for start in range(0, len(audio), block)]
    if len(audio) == 0:
        streamer.process(audio)  # validates shape/dtype and sets the output layout
    pieces.append(streamer.flush())
    return np.concatenate(pieces)
