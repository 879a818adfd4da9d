"""Helpers shared by the CLI commands."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line to stderr and exit non-zero."""
    typer.echo(f"denoise: error: {message}", err=True)
    raise typer.Exit(code)


def load_model_or_fail(model: str | None, threads: int = 1):
    """The `denoise.files.Denoiser` for ``model``, or one error line and exit 2."""
    from denoise.checkpoint import CheckpointError
    from denoise.files import Denoiser

    try:
        return Denoiser(model, threads=threads)
    except (CheckpointError, OSError, ValueError) as error:
        fail(f"cannot load model: {error}")
