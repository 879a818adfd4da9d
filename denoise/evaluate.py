"""Score enhanced speech against clean references: pairing, loading, scoring, summaries, reports.

    pairs, problems = pair_folders("clean/", "enhanced/")
    results = score_pairs(pairs, system="mine", metrics=["pesq_wb", "stoi"], snr=read_snr_csv("snr.csv"))
    table = summarize(results, ["pesq_wb", "stoi"])        # mean and 95 % CI per system (and per SNR)

Files pair by relative path without extension (``a/b.wav`` <-> ``a/b.flac``); an enhanced file may
also carry the ``_enhanced`` suffix that `denoise enhance` writes. Everything is scored at 16 kHz mono:
other rates are resampled with soxr, channels are averaged, and each such change is noted on the row.
A file that cannot be read or paired is reported on its row (``error``), never raised.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from denoise import metrics as metric_library
from denoise.data import read_audio
from denoise.files import OUTPUT_SUFFIX, is_audio_name

SAMPLE_RATE = metric_library.SAMPLE_RATE
# Lengths may differ by this fraction (codec padding, resampler rounding) and are trimmed to the
# shorter; a larger difference means the files are probably not the same recording.
LENGTH_TOLERANCE = 0.01
_SNR_PATTERN = re.compile(r"(?:^|[_\-\s.])snr_?(-?\d+(?:\.\d+)?)(?:db)?(?=$|[_\-\s.])", re.IGNORECASE)


@dataclass
class Pair:
    name: str  # relative path without extension, the pairing key
    clean: Path
    degraded: Path


@dataclass
class PairingProblems:
    missing: list[str] = field(default_factory=list)  # clean files with no enhanced partner
    unmatched: list[str] = field(default_factory=list)  # enhanced files with no clean partner
    ambiguous: list[str] = field(default_factory=list)  # several files share one key

    def lines(self) -> list[str]:
        out = [f"no enhanced file for clean {name}" for name in self.missing]
        out += [f"no clean file for enhanced {name}" for name in self.unmatched]
        out += [f"several files share the name {name} (extensions differ); skipped" for name in self.ambiguous]
        return out


@dataclass
class FileResult:
    system: str
    file: str
    snr: float | None
    scores: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class SummaryRow:
    system: str
    group: str  # "all" or "SNR 5 dB"
    metric: str
    mean: float
    ci95: float  # half-width of the 95 % confidence interval of the mean
    count: int  # files with a finite value


def _audio_files(folder: Path) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    found: dict[str, list[Path]] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if not name.startswith(".") and is_audio_name(path):
                found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), []).append(path)
    return found


def pair_folders(clean_dir: str | Path, degraded_dir: str | Path) -> tuple[list[Pair], PairingProblems]:
    """Match files by relative path without extension; ``x_enhanced`` in ``degraded_dir`` matches ``x``."""
    clean = _audio_files(Path(clean_dir))
    degraded = _audio_files(Path(degraded_dir))
    for key in [k for k in degraded if k.endswith(OUTPUT_SUFFIX)]:
        plain = key[: -len(OUTPUT_SUFFIX)]
        if plain in clean and plain not in degraded:
            degraded[plain] = degraded.pop(key)
    problems = PairingProblems()
    pairs = []
    for key in sorted(clean):
        if key not in degraded:
            problems.missing.append(clean[key][0].relative_to(clean_dir).as_posix())
        elif len(clean[key]) > 1 or len(degraded[key]) > 1:
            problems.ambiguous.append(key)
        else:
            pairs.append(Pair(key, clean[key][0], degraded[key][0]))
    problems.unmatched = [paths[0].relative_to(degraded_dir).as_posix() for key, paths in sorted(degraded.items()) if key not in clean]
    return pairs, problems


def snr_from_name(name: str) -> float | None:
    """The SNR a file name carries: ``x_snr5``, ``x_snr-5``, ``x_snr_-5``, ``snr10dB_x`` -> 5, -5, -5, 10.

    A minus right after ``snr`` is the sign (the prepared test sets name ``0001_snr-5.wav`` for -5 dB)."""
    match = _SNR_PATTERN.search(Path(name).name)
    return float(match.group(1)) if match else None


def read_snr_csv(path: str | Path) -> dict[str, float]:
    """``file,snr`` rows -> {file key without extension: snr}. Raises ValueError naming the file."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"file", "snr"} <= set(reader.fieldnames):
                raise ValueError("needs columns file,snr")
            return {Path(row["file"]).with_suffix("").as_posix(): float(row["snr"]) for row in reader}
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: cannot read SNR table ({error})") from None


def load_mono_16k(path: Path, notes: list[str]) -> np.ndarray:
    return read_audio(path, SAMPLE_RATE, notes)


def align_lengths(clean: np.ndarray, degraded: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Trim to the shorter signal when lengths differ slightly; raise ValueError when they differ a lot."""
    if len(clean) == len(degraded):
        return clean, degraded
    longer = max(len(clean), len(degraded))
    difference = abs(len(clean) - len(degraded))
    if difference > LENGTH_TOLERANCE * longer:
        raise ValueError(
            f"lengths differ by {100 * difference / longer:.1f}% ({len(clean) / SAMPLE_RATE:.2f} s clean vs "
            f"{len(degraded) / SAMPLE_RATE:.2f} s); not the same recording?")
    notes.append(f"lengths differ by {difference} samples; trimmed to the shorter")
    shortest = min(len(clean), len(degraded))
    return clean[:shortest], degraded[:shortest]


def score_signals(clean: np.ndarray, degraded: np.ndarray, metrics: list[str], notes: list[str]) -> dict[str, float]:
    """Metric values for two 16 kHz mono signals; metric warnings go to ``notes``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metric_library.MetricWarning)
        scores = metric_library.score(clean, degraded, metrics)
    notes.extend(str(w.message) for w in caught if issubclass(w.category, metric_library.MetricWarning))
    return scores


def score_pair(pair: Pair, system: str, metrics: list[str], snr: float | None = None) -> FileResult:
    """One row: never raises for a bad file, the problem goes to ``error``."""
    result = FileResult(system, pair.name, snr)
    try:
        clean = load_mono_16k(pair.clean, result.notes)
        degraded = load_mono_16k(pair.degraded, result.notes)
        clean, degraded = align_lengths(clean, degraded, result.notes)
        result.scores = score_signals(clean, degraded, metrics, result.notes)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        result.error = f"{pair.degraded}: {error}"
    return result


def _snr_for(pair: Pair, snr_table: dict[str, float] | None) -> float | None:
    if snr_table:
        for key in (pair.name, Path(pair.name).name):
            if key in snr_table:
                return snr_table[key]
    return snr_from_name(pair.name)


def _score_job(args) -> FileResult:
    return score_pair(*args)


def score_pairs(
    pairs: list[Pair],
    system: str,
    metrics: list[str],
    snr: dict[str, float] | None = None,
    jobs: int = 1,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Score every pair (in ``jobs`` processes when > 1); ``on_result`` is called as each finishes."""
    work = [(pair, system, metrics, _snr_for(pair, snr)) for pair in pairs]
    results: list[FileResult] = []
    if jobs <= 1 or len(work) <= 1:
        for item in work:
            results.append(_score_job(item))
            if on_result:
                on_result(results[-1])
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(_score_job, work, chunksize=1):
            results.append(result)
            if on_result:
                on_result(result)
    return results


def confidence_interval(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % CI of the mean by Student's t, count) over the finite values."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(finite) == 0:
        return float("nan"), float("nan"), 0
    if len(finite) == 1:
        return float(finite[0]), float("nan"), 1
    try:
        from scipy.stats import t

        quantile = float(t.ppf(0.975, len(finite) - 1))
    except ImportError:  # scipy comes with pystoi/librosa; without it the normal quantile is close enough for n > 30
        quantile = 1.96
    return float(finite.mean()), quantile * float(finite.std(ddof=1)) / math.sqrt(len(finite)), len(finite)


def _format_snr(snr: float) -> str:
    return f"SNR {snr:g} dB"


def summarize(results: list[FileResult], metrics: list[str], by_snr: bool = True) -> list[SummaryRow]:
    """Mean and 95 % CI per system and value column, over all files and (if known) per SNR."""
    rows = []
    systems = list(dict.fromkeys(r.system for r in results))
    value_columns = metric_library.columns(metrics)
    for system in systems:
        mine = [r for r in results if r.system == system and r.error is None]
        groups = [("all", mine)]
        snrs = sorted({r.snr for r in mine if r.snr is not None})
        if by_snr and snrs:
            groups += [(_format_snr(s), [r for r in mine if r.snr == s]) for s in snrs]
        for group, members in groups:
            for column in value_columns:
                mean, ci95, count = confidence_interval(r.scores.get(column, float("nan")) for r in members)
                rows.append(SummaryRow(system, group, column, mean, ci95, count))
    return rows


def _clean_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(path: str | Path, results: list[FileResult], summary: list[SummaryRow], extra: dict | None = None) -> None:
    """Per-file rows and the summary in one JSON document (NaN written as null), atomically."""
    from denoise.atomic import atomic_path

    document = {
        **(extra or {}),
        "summary": [{k: _clean_number(v) for k, v in asdict(row).items()} for row in summary],
        "files": [{**asdict(r), "scores": {k: _clean_number(v) for k, v in r.scores.items()}} for r in results],
    }
    with atomic_path(path) as temp:
        Path(temp).write_text(json.dumps(document, indent=2) + "\n")


def write_csv(path: str | Path, results: list[FileResult], metrics: list[str], summary: list[SummaryRow] | None = None) -> None:
    """One row per file (system, file, snr, every value column, notes, error); the summary, if given,
    goes next to it as ``<stem>_summary.csv``. Written atomically."""
    from denoise.atomic import atomic_path

    value_columns = metric_library.columns(metrics)
    with atomic_path(path) as temp:
        with open(temp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["system", "file", "snr", *value_columns, "notes", "error"])
            for r in results:
                values = ["" if not math.isfinite(r.scores.get(c, math.nan)) else f"{r.scores[c]:.6g}" for c in value_columns]
                writer.writerow([r.system, r.file, "" if r.snr is None else f"{r.snr:g}", *values, "; ".join(r.notes), r.error or ""])
    if summary is not None:
        path = Path(path)
        with atomic_path(path.with_name(f"{path.stem}_summary.csv")) as temp:
            with open(temp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["system", "group", "metric", "mean", "ci95", "count"])
                for row in summary:
                    writer.writerow([row.system, row.group, row.metric, f"{row.mean:.6g}", f"{row.ci95:.6g}", row.count])


def enhance_folder(noisy_pairs: list[Pair], out_dir: Path, model=None, threads: int = 1,
                   on_file: Callable[[Pair, str | None], None] | None = None) -> list[Pair]:
    """Enhance each pair's degraded file with ``model`` into ``out_dir`` (same relative name, WAV);
    returns pairs (clean, enhanced) for the files that worked. ``on_file(pair, error)`` reports each,
    ``error`` being one line naming the file, or None."""
    from denoise.files import AudioFileError, enhance_file
    from denoise.inference import Model

    engine = model if isinstance(model, Model) else Model(model, threads=threads)
    enhanced_pairs = []
    for pair in noisy_pairs:
        target = out_dir / f"{pair.name}.wav"
        try:
            enhance_file(pair.degraded, target, model=engine, subtype="FLOAT", overwrite=True, threads=threads)
            enhanced_pairs.append(Pair(pair.name, pair.clean, target))
            error = None
        except AudioFileError as problem:
            error = str(problem)
        except MemoryError:
            error = f"{pair.degraded}: out of memory"
        if on_file:
            on_file(pair, error)
    return enhanced_pairs
