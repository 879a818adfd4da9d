"""`denoise models list|info|download|push`: bundled models, the Hub cache, and publishing to the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from denoise.commands.common import fail

models_app = typer.Typer(
    name="models",
    help="List, inspect, download and publish models (bundled, local folders, Hugging Face Hub ids owner/name or owner/name@rev).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _metrics_text(metrics: dict, limit: int = 3) -> str:
    from denoise.modelcard import metric_rows

    rows = metric_rows(metrics)
    text = ", ".join(f"{metric} {value}" + (f" ({test_set})" if test_set else "") for test_set, metric, value in rows[:limit])
    return text + (", …" if len(rows) > limit else "") if text else "—"


def _rows() -> list[dict]:
    from denoise.checkpoint import CheckpointError
    from denoise.hub import cached_models
    from denoise.modelcard import model_summary
    from denoise.registry import DEFAULT_MODEL, bundled_models

    entries = [(name + (" (default)" if name == DEFAULT_MODEL else ""), "bundled", folder)
               for name, folder in bundled_models().items()]
    entries += [(cached.hub_id, "hub cache", cached.folder) for cached in cached_models()]
    rows = []
    for name, source, folder in entries:
        try:
            info = model_summary(folder)
        except CheckpointError as error:
            rows.append({"name": name, "source": source, "path": str(folder), "error": str(error)})
            continue
        rows.append({"name": name, "source": source, "path": str(folder), "size_bytes": info["size_bytes"],
                     "parameters": info["parameters"], "mmacs": info["mmacs"], "latency_ms": info["latency_ms"],
                     "metrics": info["metrics"]})
    return rows


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="One JSON record per model instead of a table.")) -> None:
    """Bundled models and the Hub models in the local cache (HF_HOME), with size, compute and metrics.

    Example: denoise models list
    """
    rows = _rows()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="denoise models")
    for column in ("Model", "Source", "Size", "Params", "MMAC/s", "Latency", "Metrics"):
        table.add_column(column, justify="right" if column in ("Size", "Params", "MMAC/s", "Latency") else "left")
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], row["source"], "", "", "", "", f"[red]{row['error']}[/]")
            continue
        table.add_row(
            row["name"], row["source"], _megabytes(row["size_bytes"]),
            f"{row['parameters']:,}" if row["parameters"] is not None else "—",
            f"{row['mmacs']:.1f}" if row["mmacs"] is not None else "—",
            f"{row['latency_ms']:g} ms", _metrics_text(row["metrics"]))
    Console(width=max(Console().width, 120)).print(table)
    if not any(row["source"] == "hub cache" for row in rows):
        typer.echo("No Hub models cached yet: `denoise models download owner/name[@revision]`.")


@models_app.command("info")
def info(model: str = typer.Argument(..., metavar="NAME|PATH|ID",
                                     help="Bundled name, model folder (or a file in one), or Hub id owner/name or owner/name@rev.")) -> None:
    """Everything about one model: config, files with sha256 (checked), parameters, compute, metrics, card.

    Example: denoise models info small
    """
    from denoise.checkpoint import CheckpointError, sha256_file
    from denoise.modelcard import metric_rows, model_summary
    from denoise.registry import resolve_model

    try:
        folder = resolve_model(model)
        summary = model_summary(folder)
    except CheckpointError as error:
        fail(str(error))
    config = summary["config"]
    typer.echo(f"model:      {model}")
    typer.echo(f"folder:     {folder}")
    typer.echo("config:     " + ", ".join(f"{key}={value}" for key, value in config.to_dict().items()))
    params = f"{summary['parameters']:,}" if summary["parameters"] is not None else "unknown"
    typer.echo(f"parameters: {params}")
    typer.echo("compute:    " + (f"{summary['mmacs']:.1f} MMAC/s" if summary["mmacs"] is not None
                                 else "unknown"))
    typer.echo(f"latency:    {summary['latency_ms']:g} ms (algorithmic)")
    typer.echo(f"size:       {_megabytes(summary['size_bytes'])}")
    for key, value in summary["metadata"].items():
        if key not in ("metrics", "description"):
            typer.echo(f"{key + ':':<11} {value if isinstance(value, str) else json.dumps(value)}")
    typer.echo("files:")
    for name, expected in sorted(summary["files"].items()):
        path = folder / name
        status = "missing" if not path.is_file() else ("ok" if sha256_file(path) == expected else "SHA256 MISMATCH")
        typer.echo(f"  {name:<20} {expected}  {status}")
    rows = metric_rows(summary["metrics"])
    typer.echo("metrics:" + ("" if rows else "    none recorded"))
    for test_set, metric, value in rows:
        typer.echo(f"  {(test_set + ' ') if test_set else ''}{metric}: {value}")
    if summary["summary"]:
        typer.echo(f"card:       {summary['summary']}")


@models_app.command("download")
def download(
    model_id: str = typer.Argument(..., metavar="ID[@REV]", help="Hub model id owner/name, optionally @branch, @tag or @commit."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached."),
) -> None:
    """Download a Hub model into the local cache (HF_HOME) so it works offline; files are sha256-checked.

    Example: denoise models download someone/denoise-base@v1.0
    """
    from denoise.checkpoint import CheckpointError
    from denoise.hub import download_model

    try:
        folder = download_model(model_id, force=force)
    except CheckpointError as error:
        fail(str(error))
    typer.echo(f"{model_id}: commit {folder.name}, verified, cached at {folder}")


@models_app.command("push")
def push(
    folder: Path = typer.Argument(..., help="Model folder: config.json, model.safetensors, model.onnx (see `denoise export`)."),
    model_id: str = typer.Argument(..., metavar="ID", help="Hub repo id owner/name (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    branch: Optional[str] = typer.Option(None, "--branch", "--revision", help="Push to this branch (created if missing)."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
) -> None:
    """Publish a model folder to the Hugging Face Hub (log in first: `hf auth login` or HF_TOKEN).

    The folder is checked first (hashes, safetensors, ONNX loadable); a README.md model card is generated into
    it if missing. Only config.json, README.md and the model files listed in config.json are uploaded.

    Example: denoise models push runs/mine/best me/denoise-mine --private
    """
    from denoise.checkpoint import CheckpointError
    from denoise.hub import push_model

    try:
        url, card_written = push_model(folder, model_id, private=private, branch=branch, message=message)
    except CheckpointError as error:
        fail(str(error))
    if card_written:
        typer.echo(f"wrote model card {folder / 'README.md'}")
    typer.echo(f"pushed {folder} to {model_id}: {url}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
