"""Enhancing audio files: one file (`enhance_file`) or a batch of files, folders and globs (`enhance_files`).

Files are read in blocks and fed through one `Streamer`, and the enhanced blocks are written as they
come, so memory does not grow with the length of a file. Outputs are written to a temporary file
beside the target and renamed into place only when complete (`denoise.atomic.atomic_path`): a bad
file, a full disk or Ctrl-C never leaves a partial output, and inputs are never written to.

Every failure is an `AudioFileError` whose message is one line naming the file and the cause.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from denoise.atomic import atomic_path
from denoise.inference import Model, Streamer, enhance

OUTPUT_SUFFIX = "_enhanced"
DEFAULT_BLOCK_SECONDS = 10.0
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
GLOB_CHARACTERS = set("*?[")
# libsndfile names its formats; these are the file name endings it recognises for each.
EXTENSIONS = {
    "wav": "WAV", "wave": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "opus": "OGG", "mp3": "MP3",
    "aif": "AIFF", "aiff": "AIFF", "aifc": "AIFF", "au": "AU", "snd": "AU", "caf": "CAF", "w64": "W64",
    "rf64": "RF64",
}


class AudioFileError(Exception):
    """A file that cannot be enhanced; ``str(error)`` is one line naming the file and the cause."""


class Cancelled(KeyboardInterrupt):
    """Raised inside a worker when the batch is interrupted, so that its temporary output is removed."""


@dataclass
class FileResult:
    """What happened to one input: ``status`` is "done", "skipped" or "failed"."""

    input: str
    output: str | None
    status: str
    error: str | None = None
    seconds: float = 0.0  # length of the audio
    elapsed: float = 0.0  # wall-clock time spent enhancing it
    warnings: list[str] = field(default_factory=list)

    @property
    def rtf(self) -> float | None:
        """Real-time factor: processing time / audio time (below 1 is faster than real time)."""
        return self.elapsed / self.seconds if self.seconds > 0 and self.status == "done" else None

    def to_dict(self) -> dict:
        return {**asdict(self), "rtf": self.rtf}


# ---------------------------------------------------------------------------------------------- one file


def default_output_path(path: str | Path) -> Path:
    """``talk.wav`` -> ``talk_enhanced.wav`` in the same folder (``.flac`` if libsndfile cannot write the input's format)."""
    path = Path(path)
    suffix = path.suffix if EXTENSIONS.get(path.suffix.lower().lstrip(".")) in sf.available_formats() else ".flac"
    return path.with_name(f"{path.stem}{OUTPUT_SUFFIX}{suffix}")


def output_format(path: Path) -> str:
    """libsndfile's format name for an output path, from its extension."""
    format_name = EXTENSIONS.get(path.suffix.lower().lstrip("."))
    if format_name is None or format_name not in sf.available_formats():
        known = ", ".join(sorted({f".{ext}" for ext, name in EXTENSIONS.items() if name in sf.available_formats()}))
        raise AudioFileError(f"{path}: cannot write '{path.suffix or '(no extension)'}' files (writable: {known})")
    return format_name


def output_subtype(format_name: str, input_subtype: str, sample_rate: int, requested: str | None, path: Path) -> str:
    """The input's subtype when the output format can hold it, otherwise the format's default."""
    if requested is not None:
        requested = requested.upper()
        if not sf.check_format(format_name, requested):
            choices = ", ".join(sf.available_subtypes(format_name))
            raise AudioFileError(f"{path}: {format_name} cannot store subtype {requested} (choose one of: {choices})")
        subtype = requested
    elif sf.check_format(format_name, input_subtype):
        subtype = input_subtype
    else:
        subtype = sf.default_subtype(format_name)
    if subtype == "OPUS" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        raise AudioFileError(f"{path}: Opus cannot store {sample_rate} Hz (use --sample-rate 48000 or another format)")
    return subtype


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _describe(error: BaseException) -> str:
    """A short cause for an exception from the OS or libsndfile, without tracebacks or repeated paths."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text


def _open_input(path: Path) -> sf.SoundFile:
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder (give folders as inputs to the batch command)")
    try:
        size = path.stat().st_size
    except OSError as error:
        raise AudioFileError(f"{path}: cannot open ({_describe(error)})") from None
    if size == 0:
        raise AudioFileError(f"{path}: empty file (0 bytes)")
    try:
        with open(path, "rb"):  # checked here so that permission errors read as such, not as "not audio"
            pass
    except OSError as error:
        raise AudioFileError(f"{path}: cannot open ({_describe(error)})") from None
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        cause = _describe(error).replace(f"Error opening {str(path)!r}: ", "").rstrip(".")
        raise AudioFileError(f"{path}: not a readable audio file ({cause})") from None


def _resolve_model(model, threads: int) -> Model:
    return model if isinstance(model, Model) else Denoiser(model, threads=threads)


def enhance_file(
    path: str | Path,
    out: str | Path | None = None,
    model=None,
    strength: float = 1.0,
    atten_lim_db: float | None = None,
    overwrite: bool = False,
    sample_rate: int | None = None,
    subtype: str | None = None,
    mono: bool = False,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    threads: int = 1,
    skip_existing: bool = False,
    progress: Callable[[float], None] | None = None,
) -> FileResult:
    """Enhance the audio file ``path`` into ``out`` (default: ``NAME_enhanced.EXT`` beside it).

    ``model``: None (the bundled default), a bundled name, a model folder, a Hub id, or a loaded
    `denoise.Denoiser` to reuse across files. The output keeps the input's sample rate, channels,
    subtype and exact length unless ``sample_rate``/``subtype``/``mono`` say otherwise; channels
    are enhanced independently (``mono=True`` mixes them down first). ``strength`` (0..1) and
    ``atten_lim_db`` (DeepFilterNet's ``--atten-lim``) limit how much noise is removed (see
    `denoise.inference.Streamer`). NaN/Inf samples are replaced with silence (and reported in
    ``warnings``). ``progress`` is called with the seconds of audio
    finished after each block.

    Returns a `FileResult` ("done", or "skipped" when ``skip_existing`` and the output exists);
    raises `AudioFileError` (one line naming the file and the cause) without leaving any output.
    """
    path = Path(path)
    out = default_output_path(path) if out is None else Path(out)
    if same_file(path, out):
        raise AudioFileError(f"{path}: output would overwrite the input (choose another output path)")
    if out.exists() and not overwrite:
        if skip_existing:
            return FileResult(str(path), str(out), "skipped")
        raise AudioFileError(f"{path}: output {out} already exists (use --overwrite to replace it)")
    if out.is_dir():
        raise AudioFileError(f"{path}: output {out} is a folder")
    format_name = output_format(out)
    if not 0.0 <= strength <= 1.0:
        raise AudioFileError(f"{path}: strength must be between 0 and 1, got {strength}")

    started = time.perf_counter()
    with _open_input(path) as source:
        rate, channels = source.samplerate, source.channels
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioFileError(f"{path}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        if source.frames == 0:
            raise AudioFileError(f"{path}: contains no audio (0 samples)")
        out_rate = sample_rate or rate
        if not MIN_SAMPLE_RATE <= out_rate <= MAX_SAMPLE_RATE:
            raise AudioFileError(f"{path}: output sample rate {out_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        out_channels = 1 if mono else channels
        out_subtype = output_subtype(format_name, source.subtype, out_rate, subtype, out)
        engine = _resolve_model(model, threads)
        result = FileResult(str(path), str(out), "done")
        created = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
        temp = None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out, suffix=".tmp") as temp:
                read = _stream_enhance(source, temp, engine, strength, atten_lim_db, mono, out_rate, format_name, out_subtype,
                                       out_channels, block_seconds, progress, result)
        except BaseException as error:
            for folder in created:  # leave no empty output folders behind (deepest first)
                try:
                    folder.rmdir()
                except OSError:
                    break
            if isinstance(error, AudioFileError) or not isinstance(error, Exception):
                raise
            cause = _describe(error).replace(str(temp), str(out)) if temp else _describe(error)
            if isinstance(error, OSError):
                raise AudioFileError(f"{path}: cannot write {out} ({cause})") from None
            if isinstance(error, (sf.LibsndfileError, RuntimeError)):
                raise AudioFileError(f"{path}: {cause}") from None
            raise
    result.seconds = read / rate
    result.elapsed = time.perf_counter() - started
    return result


def _stream_enhance(source, temp, engine, strength, atten_lim_db, mono, out_rate, format_name, out_subtype, out_channels,
                    block_seconds, progress, result) -> int:
    """Read, enhance and write block by block; return the number of input frames read."""
    rate = source.samplerate
    block = max(1, int(round(block_seconds * rate)))
    streamer = Streamer(engine, sample_rate=rate, channels=out_channels, strength=strength, atten_lim_db=atten_lim_db)
    resampler = None
    if out_rate != rate:
        import soxr

        resampler = soxr.ResampleStream(rate, out_rate, out_channels, dtype="float32", quality="HQ")
    clip = not out_subtype.startswith(("FLOAT", "DOUBLE"))  # integer/lossy formats: keep within full scale
    non_finite = clipped = read = 0
    with sf.SoundFile(temp, "w", samplerate=out_rate, channels=out_channels, subtype=out_subtype,
                      format=format_name) as sink:

        def write(audio: np.ndarray, last: bool = False) -> None:
            if resampler is not None:
                audio = resampler.resample_chunk(audio, last=last)
            if clip:
                audio = np.clip(audio, -1.0, 1.0)
            if len(audio):
                sink.write(audio)

        while True:
            audio = source.read(block, dtype="float32", always_2d=True)
            if len(audio) == 0:
                break
            read += len(audio)
            bad = ~np.isfinite(audio)
            if bad.any():
                non_finite += int(bad.sum())
                audio = np.where(bad, np.float32(0.0), audio)
            clipped += int(np.count_nonzero(np.abs(audio) >= 1.0))
            if mono:
                audio = audio.mean(axis=1, keepdims=True)
            write(streamer.process(audio))
            if progress is not None:
                progress(len(audio) / rate)
        if read == 0:  # the header promised samples that are not there; raised before the output is renamed
            raise AudioFileError(f"{result.input}: contains no audio (0 samples)")
        write(streamer.flush(), last=True)
    if non_finite:
        result.warnings.append(f"{result.input}: {non_finite} NaN/Inf samples replaced with silence")
    if clipped > max(10, read * out_channels // 10000):
        result.warnings.append(f"{result.input}: {clipped} samples at full scale (clipped input); "
                               "clipping distortion is not removed")
    return read


class Denoiser(Model):
    """A model loaded once and reused across signals and files: ``Denoiser("small").enhance_file("talk.wav")``."""

    def __init__(self, model: str | Path | None = None, threads: int = 1):
        super().__init__(model, threads=threads)
        self.threads = threads

    def enhance(self, audio: np.ndarray, sample_rate: int, **options) -> np.ndarray:
        """`denoise.enhance` with this model."""
        return enhance(audio, sample_rate, model=self, threads=self.threads, **options)

    def enhance_file(self, path: str | Path, out: str | Path | None = None, **options) -> FileResult:
        """`denoise.enhance_file` with this model."""
        return enhance_file(path, out, model=self, threads=self.threads, **options)


# ---------------------------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Job:
    """One planned input -> output pair, or a problem found while planning (``error``)."""

    input: Path
    output: Path | None
    error: str | None = None


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in EXTENSIONS


def _is_enhanced_output(path: Path) -> bool:
    return path.stem.endswith(OUTPUT_SUFFIX)


def _folder_audio(folder: Path) -> list[Path]:
    """Audio files under ``folder``, recursively, minus hidden files and earlier ``*_enhanced`` outputs."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            candidate = Path(root, name)
            if not name.startswith(".") and is_audio_name(candidate) and not _is_enhanced_output(candidate):
                found.append(candidate)
    return found


def plan_jobs(inputs: Iterable[str | Path], output: str | Path | None = None) -> list[Job]:
    """Expand files, folders (recursive) and globs into input/output pairs.

    No ``output``: ``NAME_enhanced.EXT`` beside each input. ``output`` is a file when there is one
    input file and ``output`` is not an existing folder and has an extension; otherwise a folder
    that mirrors each input folder's tree (files given directly land at its top).
    """
    expanded: list[tuple[Path, Path | None]] = []  # (file, the folder it was found in, for mirroring)
    problems: list[Job] = []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if path.is_dir():
            files = _folder_audio(path)
            if not files:
                problems.append(Job(path, None, f"{path}: no audio files in folder"))
            expanded += [(file, path) for file in files]
        elif path.exists() or path.is_symlink():
            expanded.append((path, None))
        elif GLOB_CHARACTERS & set(item):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(item), recursive=True))]
            matches = [m for m in matches if m.is_file() and not _is_enhanced_output(m)]
            if not matches:
                problems.append(Job(path, None, f"{item}: no files match"))
            expanded += [(m, None) for m in matches]
        else:
            problems.append(Job(path, None, f"{path}: no such file or folder"))

    output_path = None if output is None else Path(output).expanduser()
    single_file_output = (
        output_path is not None and len(expanded) == 1 and expanded[0][1] is None
        and not output_path.is_dir() and bool(output_path.suffix) and not str(output).endswith(os.sep)
    )
    jobs, claimed, seen = [], {}, set()
    for file, root in expanded:
        key = file.resolve()
        if key in seen:
            continue
        seen.add(key)
        if output_path is None:
            target = default_output_path(file)
        elif single_file_output:
            target = output_path
        else:
            target = output_path / (file.relative_to(root) if root is not None else Path(file.name))
        owner = claimed.setdefault(target.resolve(), file)
        if owner != file:
            jobs.append(Job(file, None, f"{file}: output {target} is also the output of {owner}"))
        else:
            jobs.append(Job(file, target))
    return problems + jobs


def enhance_files(
    inputs: Iterable[str | Path],
    output: str | Path | None = None,
    model=None,
    jobs: int = 1,
    threads: int = 1,
    cancel: threading.Event | None = None,
    on_start: Callable[[list[Job]], None] | None = None,
    progress: Callable[[float], None] | None = None,
    **options,
) -> Iterator[FileResult]:
    """Enhance many files; yield one `FileResult` per input as each finishes. A failure never stops the batch.

    ``options`` go to `enhance_file` (strength, overwrite, skip_existing, sample_rate, subtype, mono,
    block_seconds). ``jobs`` files are enhanced at a time in threads sharing one model (onnxruntime
    releases the GIL and its sessions are thread-safe). Setting ``cancel`` (or Ctrl-C in the caller) stops the batch:
    files in progress leave no output and a `KeyboardInterrupt` is raised.
    """
    planned = plan_jobs(inputs, output)
    if on_start is not None:
        on_start(planned)
    cancel = cancel or threading.Event()
    engine = _resolve_model(model, threads)  # one model for all workers: onnxruntime sessions are thread-safe

    def report(seconds: float) -> None:
        if cancel.is_set():
            raise Cancelled()
        if progress is not None:
            progress(seconds)

    def run(job: Job) -> FileResult:
        if job.error is not None:
            return FileResult(str(job.input), None, "failed", job.error)
        try:
            return enhance_file(job.input, job.output, model=engine, threads=threads, progress=report, **options)
        except AudioFileError as error:
            return FileResult(str(job.input), str(job.output), "failed", str(error))
        except MemoryError:
            return FileResult(str(job.input), str(job.output), "failed", f"{job.input}: out of memory")
        except Exception as error:  # noqa: BLE001  an unforeseen failure must not stop the rest of the batch
            return FileResult(str(job.input), str(job.output), "failed", f"{job.input}: {_describe(error)}")

    if jobs <= 1:
        for job in planned:
            if cancel.is_set():
                raise KeyboardInterrupt
            yield run(job)
        return

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = set()
        queue = iter(planned)
        try:
            for job in queue:
                pending.add(pool.submit(run, job))
                if len(pending) >= jobs * 2:
                    break
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    if future.exception() is not None and isinstance(future.exception(), KeyboardInterrupt):
                        raise KeyboardInterrupt
                    yield future.result()
                    next_job = next(queue, None)
                    if next_job is not None:
                        pending.add(pool.submit(run, next_job))
                if cancel.is_set():
                    raise KeyboardInterrupt
        except BaseException:
            cancel.set()  # workers raise Cancelled at their next block, which removes their temporary outputs
            for future in pending:
                future.cancel()
            wait(pending)
            raise


