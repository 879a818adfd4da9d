"""`denoise export`: checkpoint -> ONNX graphs for inference."""

from __future__ import annotations

from pathlib import Path

import typer

from denoise.commands.common import fail


def export(
    checkpoint: Path = typer.Argument(..., help="Model folder (config.json + model.safetensors) or a file in one."),
    output: Path = typer.Option(None, "-o", "--output",
                                help="Folder for the graphs, or a path ending in .onnx. Default: the checkpoint's folder."),
) -> None:
    """Export a trained model to ONNX: [bold]model.onnx[/] (any number of frames + named state in/out) and
    [bold]model_stream.onnx[/] (one 10 ms frame per call). Both are checked against torch to 1e-4.

    Example: denoise export runs/mine/best -o exported/
    """
    from denoise.checkpoint import CheckpointError, load_model, resolve_model_dir
    from denoise.export import export_onnx

    try:
        model = load_model(checkpoint)
    except CheckpointError as error:
        fail(str(error))
    folder = resolve_model_dir(checkpoint)
    target = output or folder
    if target.suffix == ".onnx":
        target.parent.mkdir(parents=True, exist_ok=True)
        paths = export_onnx(model, target.parent)
        offline = paths[0]
        if offline != target:
            offline.replace(target)
            paths[0] = target
    else:
        paths = export_onnx(model, target)
    for path in paths:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command(name="export")(export)
