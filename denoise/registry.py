"""Where models come from: a bundled name, a local folder/file, or (see `denoise.hub`) a Hub id.

`resolve_model` is the single entry point the API and the CLI use.
"""

from __future__ import annotations

from pathlib import Path

from denoise.checkpoint import CheckpointError, resolve_model_dir

DEFAULT_MODEL = "small"


def bundled_models_dir() -> Path:
    """The released models: ``denoise/models`` when installed, the repository's ``models/`` otherwise."""
    try:
        import denoise.models as package

        return Path(next(iter(package.__path__)))
    except (ImportError, StopIteration):
        return Path(__file__).resolve().parent.parent / "models"


def bundled_models() -> dict[str, Path]:
    root = bundled_models_dir()
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()} if root.is_dir() else {}


def resolve_model(spec: str | Path | None = None) -> Path:
    """Model folder for ``spec``: None (the default), a bundled name, a local path, or ``owner/name[@rev]``."""
    spec = DEFAULT_MODEL if spec is None else spec
    bundled = bundled_models()
    if isinstance(spec, str) and spec in bundled:
        return bundled[spec]
    path = Path(spec).expanduser()
    if path.exists():
        return resolve_model_dir(path)
    text = str(spec)
    if text.split("@", 1)[0].count("/") == 1 and not text.startswith((".", "/", "~")):
        from denoise.hub import download_model  # imported here: only Hub ids need huggingface_hub

        return download_model(text)
    known = ", ".join(sorted(bundled)) or "none"
    raise CheckpointError(f"{spec}: no such model (bundled models: {known}; or give a folder path or a Hub id owner/name)")
