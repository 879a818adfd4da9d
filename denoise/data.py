"""Training data: noisy/clean pairs made on the fly from speech + noise folders, or read from paired folders.

Every example is a pure function of ``(seed, index)`` (a fresh ``numpy`` generator keyed on both), so
a batch depends only on the seed and the step: resuming a run replays exactly the same data, and
each distributed rank can draw its own share of the global batch without talking to the others.

Audio is decoded, downmixed and resampled to 16 kHz once and kept in memory (the datasets this is
built for are a few hours at most). Unreadable files are skipped with a warning naming the file.

Reverberation (``rir``): speech is convolved with a random room impulse response. The *target* is
the speech convolved with the direct path and early reflections only (the first 50 ms after the
main peak), so the model learns to remove late reverberation as well as noise, without being
asked to undo the colouration of the early part (which sounds natural and is hard to invert causally).

This module needs numpy, soundfile and soxr only; torch is not imported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus", ".w64", ".caf")
EARLY_REFLECTIONS_SECONDS = 0.05
PEAK_LEVEL = 0.99  # mixtures are scaled down to stay below this peak: no clipping


class DataError(ValueError):
    """Unusable training data; the message names the folder or file."""


def find_audio_files(folder: str | Path) -> list[Path]:
    """All audio files under ``folder`` (recursive), sorted; a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no audio files found")
    return files


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, notes: list[str] | None = None) -> np.ndarray:
    """Decode any soundfile format to mono float32 at ``sample_rate`` (soxr resampling).

    What had to be changed (channels mixed down, resampling) is appended to ``notes`` when given.
    """
    import soundfile as sf
    import soxr

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if notes is not None and audio.shape[1] > 1:
        notes.append(f"{Path(path).name}: {audio.shape[1]} channels averaged to mono")
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        if notes is not None:
            notes.append(f"{Path(path).name}: resampled {rate} Hz -> {sample_rate} Hz")
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise ValueError("contains NaN or Inf samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_folder(files: list[Path], min_samples: int = 1) -> list[tuple[Path, np.ndarray]]:
    """Read every file; unreadable, empty or too-short files are skipped with a warning naming them."""
    loaded = []
    for path in files:
        try:
            audio = read_audio(path)
        except Exception as error:  # soundfile raises several types; any unreadable file is skipped
            warnings.warn(f"{path}: skipped, cannot read audio ({error})", stacklevel=2)
            continue
        if audio.size < min_samples or not np.any(audio):
            warnings.warn(f"{path}: skipped, too short or silent", stacklevel=2)
            continue
        loaded.append((path, audio))
    return loaded


def load_pool(folder: str | Path, files: list[Path] | None = None) -> list[np.ndarray]:
    files = find_audio_files(folder) if files is None else files
    audio = [a for _, a in load_folder(files)]
    if not audio:
        raise DataError(f"{folder}: no readable audio files")
    return audio


def split_files(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """A fixed, seeded (train, validation) split of a file list; at least one file on each side if possible."""
    if len(files) < 2 or fraction <= 0:
        return list(files), []
    order = np.random.default_rng([seed, 7919]).permutation(len(files))
    count = min(len(files) - 1, max(1, round(fraction * len(files))))
    validation = sorted(files[i] for i in order[:count])
    chosen = set(validation)
    return [f for f in files if f not in chosen], validation


def random_segment(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample excerpt; shorter audio is zero-padded at a random offset."""
    if audio.size >= length:
        start = rng.integers(0, audio.size - length + 1)
        return audio[start : start + length]
    out = np.zeros(length, dtype=np.float32)
    start = rng.integers(0, length - audio.size + 1)
    out[start : start + audio.size] = audio
    return out


def looped_segment(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample excerpt of noise, looping short recordings."""
    start = rng.integers(0, audio.size)
    repeats = -(-(start + length) // audio.size)
    return np.tile(audio, repeats)[start : start + length]


def fft_convolve(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear convolution, truncated to ``len(signal)``."""
    size = signal.size + kernel.size - 1
    n = 1 << (size - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(signal, n) * np.fft.rfft(kernel, n), n)
    return out[: signal.size].astype(np.float32)


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2))


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g * noise`` with ``g`` chosen so that the SNR over the segment is ``snr_db``."""
    gain = np.sqrt(power(clean) / (power(noise) * 10 ** (snr_db / 10) + 1e-20))
    return (clean + gain * noise).astype(np.float32)


@dataclass
class MixingConfig:
    segment_seconds: float = 2.0
    snr_range: tuple[float, float] = (-5.0, 20.0)
    gain_range: tuple[float, float] = (-10.0, 6.0)  # overall level in dB, relative to the speech as recorded
    rir_probability: float = 0.5  # share of examples that get reverberation when an RIR folder is given

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * SAMPLE_RATE))


class SeededDataset:
    """``example(seed, index)`` is deterministic; also a map-style dataset (``dataset[index]`` with ``self.seed``)
    so it can feed a ``torch.utils.data.DataLoader``."""

    seed: int
    length: int

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.example(self.seed, index)

    def example(self, seed: int, index: int, segment_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class MixingDataset(SeededDataset):
    """Noisy/clean pairs mixed on the fly: random speech segment + random noise at a random SNR and level."""

    def __init__(self, speech: list[np.ndarray], noise: list[np.ndarray], rirs: list[np.ndarray] | None = None,
                 config: MixingConfig | None = None, seed: int = 0, length: int = 1 << 30):
        if not speech or not noise:
            raise DataError("need at least one speech and one noise recording")
        self.speech, self.noise, self.rirs = speech, noise, list(rirs or [])
        self.config = config or MixingConfig()
        self.seed, self.length = seed, length

    def example(self, seed: int, index: int, segment_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(noisy, clean) float32 arrays of ``segment_samples``."""
        config = self.config
        length = segment_samples or config.segment_samples
        rng = np.random.default_rng([seed, index])
        speech = self.speech[rng.integers(len(self.speech))]
        clean = random_segment(speech, length, rng)
        for _ in range(3):  # avoid near-silent segments: they carry no SNR and nothing to learn
            if power(clean) > 1e-6:
                break
            clean = random_segment(speech, length, rng)
        source = clean
        if self.rirs and rng.random() < config.rir_probability:
            source, clean = reverberate(clean, self.rirs[rng.integers(len(self.rirs))])
        noise = looped_segment(self.noise[rng.integers(len(self.noise))], length, rng)
        snr = rng.uniform(*config.snr_range)
        noisy = mix(source, noise, snr) if power(source) > 0 else noise * 0.01
        gain = 10 ** (rng.uniform(*config.gain_range) / 20)
        return scale_pair(noisy * gain, clean * gain)


def reverberate(speech: np.ndarray, rir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reverberant speech, target = direct path + early reflections); both aligned to the RIR's peak."""
    peak = int(np.argmax(np.abs(rir)))
    rir = rir[peak:] / (np.abs(rir[peak]) + 1e-12)
    early = rir[: int(EARLY_REFLECTIONS_SECONDS * SAMPLE_RATE)]
    return fft_convolve(speech, rir), fft_convolve(speech, early)


def scale_pair(noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both down together if the louder of the two would clip."""
    peak = max(float(np.abs(noisy).max()), float(np.abs(clean).max()), 1e-12)
    factor = min(1.0, PEAK_LEVEL / peak)
    return (noisy * factor).astype(np.float32), (clean * factor).astype(np.float32)


class PairedDataset(SeededDataset):
    """Pairs from ``noisy/`` and ``clean/`` folders with matching relative names (extension may differ)."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], config: MixingConfig | None = None, seed: int = 0,
                 length: int = 1 << 30):
        if not pairs:
            raise DataError("no noisy/clean pairs")
        self.pairs, self.config = pairs, config or MixingConfig()
        self.seed, self.length = seed, length

    def example(self, seed: int, index: int, segment_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        length = segment_samples or self.config.segment_samples
        rng = np.random.default_rng([seed, index])
        noisy, clean = self.pairs[rng.integers(len(self.pairs))]
        if noisy.size >= length:
            start = rng.integers(0, noisy.size - length + 1)
            return scale_pair(noisy[start : start + length], clean[start : start + length])
        pad = length - noisy.size
        return scale_pair(np.pad(noisy, (0, pad)), np.pad(clean, (0, pad)))


def paired_files(noisy_dir: str | Path, clean_dir: str | Path) -> list[tuple[Path, Path]]:
    """Match files by relative path without extension; a clear error when nothing matches."""
    noisy_dir, clean_dir = Path(noisy_dir), Path(clean_dir)
    clean = {p.relative_to(clean_dir).with_suffix(""): p for p in find_audio_files(clean_dir)}
    pairs = []
    for path in find_audio_files(noisy_dir):
        key = path.relative_to(noisy_dir).with_suffix("")
        if key in clean:
            pairs.append((path, clean[key]))
        else:
            warnings.warn(f"{path}: skipped, no matching file in {clean_dir}", stacklevel=2)
    if not pairs:
        raise DataError(f"{noisy_dir}: no file has a match with the same relative name in {clean_dir}")
    return pairs


def load_pairs(pairs: list[tuple[Path, Path]]) -> list[tuple[np.ndarray, np.ndarray]]:
    loaded = []
    for noisy_path, clean_path in pairs:
        try:
            noisy, clean = read_audio(noisy_path), read_audio(clean_path)
        except Exception as error:
            warnings.warn(f"{noisy_path}: skipped pair, cannot read audio ({error})", stacklevel=2)
            continue
        length = min(noisy.size, clean.size)
        if abs(noisy.size - clean.size) > SAMPLE_RATE // 100:
            warnings.warn(f"{noisy_path}: noisy and clean lengths differ ({noisy.size} vs {clean.size}); "
                          "using the common part", stacklevel=2)
        if length == 0:
            warnings.warn(f"{noisy_path}: skipped pair, empty", stacklevel=2)
            continue
        loaded.append((noisy[:length], clean[:length]))
    return loaded


@dataclass
class DataSpec:
    """Where the data is; exactly one of (clean + noise) or (noisy + clean) must be given."""

    clean: str | None = None
    noise: str | None = None
    noisy: str | None = None
    rir: str | None = None
    val_clean: str | None = None
    val_noise: str | None = None
    val_noisy: str | None = None
    val_fraction: float = 0.05

    def check(self) -> None:
        if self.noisy and self.noise:
            raise DataError("--noise (on-the-fly mixing) and --noisy (paired folders) exclude each other")
        if not self.clean:
            raise DataError("--clean is required (with --noise for on-the-fly mixing, or --noisy for paired folders)")
        if not (self.noise or self.noisy):
            raise DataError("give --noise DIR (mix on the fly) or --noisy DIR (paired folders) with --clean")
        for name in ("clean", "noise", "noisy", "rir", "val_clean", "val_noise", "val_noisy"):
            value = getattr(self, name)
            if value:
                find_audio_files(value)  # raises a clear error for a missing folder or one with no audio


def build_datasets(spec: DataSpec, mixing: MixingConfig, seed: int):
    """(training dataset, validation dataset) from a `DataSpec`; validation files never appear in training."""
    spec.check()
    if spec.noisy:
        pairs = paired_files(spec.noisy, spec.clean)
        if spec.val_noisy:
            val_pairs = paired_files(spec.val_noisy, spec.val_clean or spec.clean)
        else:
            order = np.random.default_rng([seed, 7919]).permutation(len(pairs))
            count = min(len(pairs) - 1, max(1, round(spec.val_fraction * len(pairs)))) if len(pairs) > 1 else 0
            chosen = {int(i) for i in order[:count]}
            val_pairs = [p for i, p in enumerate(pairs) if i in chosen] or pairs[:1]
            pairs = [p for i, p in enumerate(pairs) if i not in chosen] or pairs
        train = PairedDataset(_nonempty(load_pairs(pairs), spec.noisy), mixing, seed)
        return train, PairedDataset(_nonempty(load_pairs(val_pairs), spec.val_noisy or spec.noisy), mixing, seed)

    speech_files, noise_files = find_audio_files(spec.clean), find_audio_files(spec.noise)
    if spec.val_clean:
        val_speech_files = find_audio_files(spec.val_clean)
    else:
        speech_files, val_speech_files = split_files(speech_files, spec.val_fraction, seed)
    if spec.val_noise:
        val_noise_files = find_audio_files(spec.val_noise)
    else:
        noise_files, val_noise_files = split_files(noise_files, spec.val_fraction, seed)
    rirs = load_pool(spec.rir) if spec.rir else []
    train = MixingDataset(load_pool(spec.clean, speech_files), load_pool(spec.noise, noise_files), rirs, mixing, seed)
    validation = MixingDataset(
        load_pool(spec.val_clean or spec.clean, val_speech_files or speech_files[:1]),
        load_pool(spec.val_noise or spec.noise, val_noise_files or noise_files[:1]),
        rirs, mixing, seed,
    )
    return train, validation


def _nonempty(pairs, folder):
    if not pairs:
        raise DataError(f"{folder}: no readable noisy/clean pairs")
    return pairs


def make_batch(dataset, seed: int, step: int, batch_size: int, rank: int = 0, world_size: int = 1):
    """This rank's share of the global batch for ``step``: (noisy, clean) arrays of shape (batch/world, samples).

    Item ``i`` of the global batch at ``step`` is ``dataset.example(seed, step * batch_size + i)``,
    whatever the number of ranks: the same global batch for 1 process or N.
    """
    if batch_size % world_size:
        raise DataError(f"batch size {batch_size} is not divisible by the number of processes {world_size}")
    share = batch_size // world_size
    items = [dataset.example(seed, step * batch_size + rank * share + i) for i in range(share)]
    return np.stack([n for n, _ in items]), np.stack([c for _, c in items])


def validation_set(dataset, seed: int, count: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed list of ``count`` validation mixtures (noisy, clean), the same for every run with ``seed``."""
    samples = int(round(seconds * SAMPLE_RATE))
    items = [dataset.example(seed + 1_000_003, i, samples) for i in range(count)]
    return np.stack([n for n, _ in items]), np.stack([c for _, c in items])
