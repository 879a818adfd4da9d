"""The one place that saves and loads model weights: safetensors + ``config.json``, never pickles.

A model folder (Hugging Face Hub layout) holds::

    config.json         {"format": "denoise-model", "model": {...ModelConfig}, "files": {name: sha256}, ...}
    model.safetensors   weights
    model.onnx          exported graph (optional; written by `denoise.export`)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from denoise.atomic import atomic_path, write_bytes_atomic
from denoise.config import ModelConfig, read_config_file

FORMAT = "denoise-model"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OFFLINE_FILE = "model.onnx"  # any number of frames per call
STREAM_FILE = "model_stream.onnx"  # one frame per call

# The exported graph's interface (see `denoise.model.StreamingDenoiser`).
STATE_NAMES = ("conv_state", "encoder_state", "decoder_state")
INPUT_NAMES = ("spec", *STATE_NAMES)
OUTPUT_NAMES = ("enhanced", *(f"{name}_out" for name in STATE_NAMES))


class CheckpointError(ValueError):
    """A model file or folder that cannot be used; the message names the path and the cause."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a file inside one (``config.json``, ``*.safetensors``, ``*.onnx``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path}: no {CONFIG_FILE} found (expected a denoise model folder)")
    return folder


def read_model_config(path: str | Path) -> tuple[ModelConfig, dict]:
    folder = resolve_model_dir(path)
    try:
        return read_config_file(folder / CONFIG_FILE)
    except ValueError as error:
        raise CheckpointError(str(error)) from None


def verify_file(folder: Path, name: str, document: dict) -> Path:
    """Path of ``name`` in ``folder``, checked against the sha256 recorded in the config, if any."""
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"{path}: file missing from model folder")
    expected = document.get("files", {}).get(name)
    if expected and sha256_file(path) != expected:
        raise CheckpointError(f"{path}: sha256 does not match config.json (corrupt or tampered download)")
    return path


def load_onnx(path: str | Path, threads: int = 1):
    """An onnxruntime session for ``path``; a broken graph gives `CheckpointError`, not a traceback."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first_line = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise CheckpointError(f"{path}: not a loadable ONNX graph ({first_line[:200]})") from None


def write_config(folder: str | Path, config: ModelConfig, metadata: dict | None = None) -> None:
    """(Re)write ``config.json`` with the hashes of every model file present in the folder."""
    folder = Path(folder)
    document = {"format": FORMAT, "model": config.to_dict(), **(metadata or {})}
    document["files"] = {
        p.name: sha256_file(p) for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in (".safetensors", ".onnx")
    }
    write_bytes_atomic(folder / CONFIG_FILE, (json.dumps(document, indent=2) + "\n").encode())


def refresh_hashes(folder: str | Path) -> None:
    """Recompute the sha256 map of an existing model folder's ``config.json``, keeping its metadata."""
    config, document = read_model_config(folder)
    write_config(folder, config, {k: v for k, v in document.items() if k not in ("format", "model", "files")})


def save_model(model, folder: str | Path, metadata: dict | None = None) -> Path:
    """Save a `denoise.model.DenoiseNet` as ``folder/model.safetensors`` + ``folder/config.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as temp:
        save_file(state, str(temp))
    existing = {}
    if (folder / CONFIG_FILE).is_file():
        existing = {k: v for k, v in read_model_config(folder)[1].items() if k not in ("format", "model", "files")}
    write_config(folder, model.config, {**existing, **(metadata or {})})
    return folder


def load_model(path: str | Path, expected: ModelConfig | None = None):
    """Load a `DenoiseNet` from a model folder (or a file in one). Raises `CheckpointError`, never executes code."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from denoise.model import DenoiseNet

    config, document = read_model_config(path)
    folder = resolve_model_dir(path)
    if expected is not None and config != expected:
        raise CheckpointError(f"{path}: model config {config.to_dict()} does not match {expected.to_dict()}")
    weights = verify_file(folder, WEIGHTS_FILE, document)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights}: cannot read weights ({error})") from None
    model = DenoiseNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{weights}: weights do not fit the config ({first})") from None
    return model.eval()
