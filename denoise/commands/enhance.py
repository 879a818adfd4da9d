"""`denoise enhance IN...`: enhance files, folders and globs (a thin layer over `denoise.files`)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from denoise.commands.common import fail, load_model_or_fail

HELP = """Remove noise from speech in audio files, whole folders (recursively) or globs.

Each output keeps its input's sample rate, channels, sample format and exact length, and is
written atomically: an interrupted or failed file leaves no partial output, and inputs are never
modified. By default the output goes next to the input as NAME_enhanced.EXT. A bad file is
reported (one line) and skipped; the exit code is 1 if any file failed.

Reads whatever libsndfile reads: WAV (8/16/24/32-bit int, float), FLAC, OGG/Vorbis/Opus, MP3,
AIFF, CAF, W64, ... at any rate from 8 to 192 kHz.

[bold]Examples[/bold]

  denoise talk.wav                            # -> talk_enhanced.wav

  denoise talk.mp3 -o clean.flac              # choose the output file (and format)

  denoise recordings/ -o clean/ --jobs 2      # a folder, tree mirrored under clean/

  denoise "day*/**/*.wav" --skip-existing     # resume a big batch

  denoise meeting.wav --atten-lim 12          # remove at most 12 dB of noise

  denoise interview.wav --mono --sample-rate 16000 --subtype PCM_16

  denoise calls/ --json > report.jsonl        # one JSON record per file
"""


def enhance_command(
    inputs: list[str] = typer.Argument(..., metavar="IN...", show_default=False,
                                       help="Audio files, folders (searched recursively) or globs such as 'takes/**/*.flac'."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", show_default=False,
        help="Output file (one input file) or folder (mirrors input folders). Default: NAME_enhanced.EXT beside each input."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", show_default=False,
        help="Bundled model name, model folder, or Hub id owner/name or owner/name@revision. Default: the bundled 'small'."),
    strength: float = typer.Option(
        1.0, "--strength", "-s", min=0.0, max=1.0,
        help="How much of the enhanced signal to keep: 1 = fully enhanced, 0 = original, between = mix."),
    atten_lim: Optional[float] = typer.Option(
        None, "--atten-lim", "-a", min=0.0, metavar="DB", show_default=False,
        help="Remove at most DB decibels of noise (like DeepFilterNet's --atten-lim); with --strength the gentler wins."),
    overwrite: bool = typer.Option(False, "--overwrite", "-f", help="Replace outputs that already exist."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose output already exists (resume a batch)."),
    sample_rate: Optional[int] = typer.Option(
        None, "--sample-rate", "-r", min=8000, max=192000, show_default=False,
        help="Output sample rate in Hz. Default: the input's."),
    subtype: Optional[str] = typer.Option(
        None, "--subtype", show_default=False,
        help="Output sample format, e.g. PCM_16, PCM_24, FLOAT. Default: the input's (if the output format holds it)."),
    mono: bool = typer.Option(False, "--mono", help="Mix channels down to mono before enhancing. Default: each channel enhanced on its own."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Files enhanced in parallel."),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="onnxruntime threads per file."),
    block_seconds: float = typer.Option(10.0, "--block-seconds", min=0.01, hidden=True,
                                        help="Audio read and written per block (memory use)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, summary or warnings; errors are still printed."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON record per file to stdout (input, output, status, error, seconds, elapsed, rtf, warnings)."),
) -> None:
    from denoise.files import enhance_files

    if overwrite and skip_existing:
        fail("--overwrite and --skip-existing contradict each other; choose one")
    engine = load_model_or_fail(model, threads)

    console = _stderr_console()
    reporter = _Reporter(console, quiet=quiet)
    cancel = threading.Event()
    results = []
    started = time.perf_counter()
    try:
        with reporter:
            for result in enhance_files(
                inputs, output, model=engine, jobs=jobs, threads=threads, cancel=cancel,
                on_start=reporter.start, progress=reporter.advance_audio,
                strength=strength, atten_lim_db=atten_lim, overwrite=overwrite, skip_existing=skip_existing,
                sample_rate=sample_rate, subtype=subtype, mono=mono, block_seconds=block_seconds,
            ):
                results.append(result)
                reporter.file_finished(result)
                if as_json:
                    typer.echo(json.dumps(result.to_dict()))
    except KeyboardInterrupt:
        cancel.set()
        done = sum(r.status == "done" for r in results)
        typer.echo(f"denoise: interrupted: {done} file(s) finished and kept; the file in progress left no output",
                   err=True)
        raise typer.Exit(130) from None

    if not quiet:
        _print_summary(console, results, time.perf_counter() - started)
    failed = [r for r in results if r.status == "failed"]
    for result in failed:
        typer.echo(f"denoise: error: {result.error}", err=True)
    raise typer.Exit(1 if failed else 0)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _Reporter:
    """Progress bar over files and audio seconds (stderr), warnings as they come."""

    def __init__(self, console, quiet: bool):
        self.console, self.quiet = console, quiet
        self.progress = None
        self._lock = threading.Lock()

    def __enter__(self):
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start(self, jobs) -> None:
        if self.progress is None:
            return
        import soundfile as sf

        total = 0.0
        for job in jobs:
            if job.error is None:
                try:
                    info = sf.info(str(job.input))
                    total += info.frames / info.samplerate
                except Exception:  # noqa: BLE001  unreadable files are reported when processed
                    pass
        self.files = self.progress.add_task("files", total=len(jobs))
        self.audio = self.progress.add_task("audio seconds", total=max(int(round(total)), 1))

    def advance_audio(self, seconds: float) -> None:
        if self.progress is not None:
            self.progress.advance(self.audio, seconds)

    def file_finished(self, result) -> None:
        if self.progress is not None:
            self.progress.advance(self.files, 1)
        if not self.quiet:
            for warning in result.warnings:
                self.console.print(f"denoise: warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _print_summary(console, results, wall_seconds: float) -> None:
    from rich.table import Table

    done = [r for r in results if r.status == "done"]
    audio = sum(r.seconds for r in done)
    table = Table(title="Summary", show_header=True, title_justify="left")
    for column in ("done", "skipped", "failed", "audio", "time", "real-time factor"):
        table.add_column(column, justify="right")
    rtf = f"{wall_seconds / audio:.4f}" if audio > 0 else "-"
    table.add_row(
        str(len(done)), str(sum(r.status == "skipped" for r in results)), str(sum(r.status == "failed" for r in results)),
        f"{audio:.1f} s", f"{wall_seconds:.1f} s", rtf,
    )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command(
        "enhance", help=HELP, short_help="Enhance audio files, folders and globs (the default command).",
        no_args_is_help=True,
    )(enhance_command)
