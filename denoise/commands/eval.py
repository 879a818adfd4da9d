"""`denoise eval`: score enhanced speech against clean references (a thin layer over `denoise.evaluate`)."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

from denoise.commands.common import fail, load_model_or_fail

HELP = """Score enhanced speech against clean references: PESQ (wide- and narrow-band), STOI, ESTOI,
SI-SDR and DNSMOS (SIG/BAK/OVRL), with the mean and 95% confidence interval per metric.

Either give the enhanced files (--enhanced), or the noisy files and a model (--noisy, --model):
then the noisy files are enhanced first and the unprocessed noisy input is scored too, as the
baseline row. Files pair by relative path without extension (a.wav <-> a.flac; a_enhanced.wav
<-> a.wav). Everything is scored at 16 kHz mono (other rates are resampled, with a note). Missing
pairs, unreadable files and recordings of different length are reported, not fatal; the exit code
is 1 if any file could not be enhanced or scored (the noisy baseline then covers only the files
that were enhanced).

Results per SNR appear when file names carry it (x_snr5.wav, x_snr-5.wav, x_snr_-5.wav) or with
--snr-csv (columns file,snr). Metrics need optional packages: pip install "denoise[metrics]".

[bold]Examples[/bold]

  denoise eval --clean test/clean --enhanced out/

  denoise eval --clean test/clean --noisy test/noisy --model small --json report.json

  denoise eval --clean c/ --enhanced e/ --metrics pesq_wb,stoi --jobs 2 --csv scores.csv
"""


def eval_command(
    clean: Path = typer.Option(..., "--clean", "-c", show_default=False, help="Folder of clean reference files."),
    enhanced: Optional[Path] = typer.Option(None, "--enhanced", "-e", show_default=False, help="Folder of enhanced files to score."),
    noisy: Optional[Path] = typer.Option(None, "--noisy", "-n", show_default=False,
                                         help="Folder of noisy files: enhanced with --model, then scored with the noisy baseline."),
    model: Optional[str] = typer.Option(None, "--model", "-m", show_default=False,
                                        help="Model for --noisy: bundled name, folder or Hub id. Default: the bundled 'small'."),
    metrics: Optional[str] = typer.Option(
        None, "--metrics", show_default=False,
        help="Comma-separated: pesq_wb, pesq_nb, stoi, estoi, si_sdr, dnsmos (default: all installed)."),
    snr_csv: Optional[Path] = typer.Option(None, "--snr-csv", show_default=False, help="CSV with columns file,snr for the per-SNR breakdown."),
    json_path: Optional[Path] = typer.Option(None, "--json", show_default=False, help="Write per-file scores and the summary as JSON."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", show_default=False,
                                            help="Write per-file scores as CSV (and the summary as NAME_summary.csv)."),
    save_enhanced: Optional[Path] = typer.Option(None, "--save-enhanced", show_default=False,
                                                 help="With --noisy: keep the enhanced files in this folder (default: a temporary one)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Files scored in parallel (processes)."),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="onnxruntime threads when enhancing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or notes; the table and errors are still printed."),
) -> None:
    from rich.console import Console

    from denoise import evaluate
    from denoise import metrics as metric_library

    if (enhanced is None) == (noisy is None):
        fail("give either --enhanced DIR, or --noisy DIR (with --model) to enhance and score")
    if model is not None and noisy is None:
        fail("--model needs --noisy (the files to enhance); with --enhanced the files are already enhanced")
    for name, folder in (("--clean", clean), ("--enhanced", enhanced), ("--noisy", noisy)):
        if folder is not None and not folder.is_dir():
            fail(f"{folder}: {name} must be a folder")
    try:
        names = metric_library.parse_metric_names(metrics)
    except ValueError as error:
        fail(str(error))
    unavailable = metric_library.unavailable_metrics(names)
    console = Console(stderr=True)
    if unavailable:
        explicit = metrics is not None and metrics.strip().lower() != "all"
        for hint in unavailable.values():
            console.print(f"denoise: {'error' if explicit else 'note'}: metric unavailable: {hint}", markup=False, highlight=False)
        if explicit:
            raise typer.Exit(2)
        names = [n for n in names if n not in unavailable]
        if not names:
            fail("no metric available: pip install \"denoise[metrics]\"")
    snr_table = None
    if snr_csv is not None:
        try:
            snr_table = evaluate.read_snr_csv(snr_csv)
        except ValueError as error:
            fail(str(error))

    pairs, problems = evaluate.pair_folders(clean, enhanced if enhanced is not None else noisy)
    problem_lines = problems.lines()
    if not pairs:
        fail(f"no file pairs between {clean} and {enhanced or noisy} ({len(problem_lines)} unmatched files)")

    runs: list[tuple[str, list]] = []
    enhance_errors: list[str] = []
    enhance_seconds = None
    with tempfile.TemporaryDirectory(prefix="denoise-eval-") as scratch:
        if noisy is not None:
            engine = load_model_or_fail(model, threads)
            out_dir = save_enhanced if save_enhanced is not None else Path(scratch)
            started = time.perf_counter()
            with _progress(console, quiet, f"enhancing with {engine.name}", len(pairs)) as advance:
                def note(pair, error):
                    advance()
                    if error:
                        enhance_errors.append(error)

                enhanced_pairs = evaluate.enhance_folder(pairs, out_dir, model=engine, threads=threads, on_file=note)
            enhance_seconds = time.perf_counter() - started
            # the baseline covers the same files as the enhanced run, so the two means compare
            enhanced_names = {p.name for p in enhanced_pairs}
            runs = [("noisy", [p for p in pairs if p.name in enhanced_names]), (engine.name, enhanced_pairs)]
        else:
            runs = [(enhanced.name or "enhanced", pairs)]

        results = []
        for system, system_pairs in runs:
            with _progress(console, quiet, f"scoring {system}", len(system_pairs)) as advance:
                results += evaluate.score_pairs(system_pairs, system, names, snr=snr_table, jobs=jobs,
                                                on_result=lambda _result: advance())

    summary = evaluate.summarize(results, names)
    failed = [r for r in results if r.error]
    if not quiet:
        for r in results:
            for line in r.notes:
                console.print(f"denoise: note: {r.system} {r.file}: {line}", markup=False, highlight=False)
    _print_table(summary, names, enhance_seconds)
    extra = {"metrics": names, "clean": str(clean), "degraded": str(enhanced or noisy), "model": model,
             "pairing_problems": problem_lines, "enhance_errors": enhance_errors}
    try:
        if json_path is not None:
            evaluate.write_json(json_path, results, summary, extra)
        if csv_path is not None:
            evaluate.write_csv(csv_path, results, names, summary)
    except OSError as error:
        fail(f"cannot write report: {error}")
    for line in problem_lines:
        typer.echo(f"denoise: warning: {line}", err=True)
    for line in enhance_errors:
        typer.echo(f"denoise: error: cannot enhance {line}", err=True)
    for r in failed:
        typer.echo(f"denoise: error: {r.error}", err=True)
    raise typer.Exit(1 if failed or enhance_errors else 0)


class _progress:
    """A transient rich progress bar on stderr; ``with _progress(...) as advance: advance()``."""

    def __init__(self, console, quiet: bool, description: str, total: int):
        self.console, self.quiet, self.description, self.total = console, quiet, description, total
        self.bar = None

    def __enter__(self):
        if self.quiet:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=self.console, transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total)
        return lambda: self.bar.advance(task, 1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def format_value(mean: float, ci95: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" if not math.isfinite(ci95) else f"{mean:.{digits}f}±{ci95:.{digits}f}"


DIGITS = {"stoi": 3, "estoi": 3, "si_sdr": 1}


def _print_table(summary, names: list[str], enhance_seconds: float | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from denoise import metrics as metric_library

    columns = metric_library.columns(names)
    title = "Mean ± 95% CI, higher is better" + (" (SIG/BAK/OVRL: DNSMOS)" if "dnsmos" in names else "")
    table = Table(title=title, title_justify="left", padding=(0, 1))
    table.add_column("system", no_wrap=True)
    table.add_column("files", justify="right")
    for column in columns:
        table.add_column(metric_library.COLUMN_LABELS[column].replace("DNSMOS ", ""), justify="right", no_wrap=True)
    keys = list(dict.fromkeys((row.system, row.group) for row in summary))
    by_key = {(row.system, row.group, row.metric): row for row in summary}
    previous_system = None
    for system, group in keys:
        if previous_system is not None and system != previous_system:
            table.add_section()
        previous_system = system
        cells = [by_key[(system, group, c)] for c in columns]
        label = system if group == "all" else f"  {group}"  # per-SNR rows sit under their system
        table.add_row(label, str(max(c.count for c in cells)), *(format_value(c.mean, c.ci95, DIGITS.get(c.metric, 2)) for c in cells))
    Console().print(table)
    if enhance_seconds is not None:
        Console().print(f"enhancement took {enhance_seconds:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("eval", help=HELP, short_help="Score enhanced speech: PESQ, STOI, SI-SDR, DNSMOS, per SNR.",
                no_args_is_help=True)(eval_command)
