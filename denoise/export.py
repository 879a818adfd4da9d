"""Export a trained model to the ONNX graphs that inference runs (no torch needed there).

``model.onnx``         spectrum frames (any number) + state in -> enhanced frames + state out
``model_stream.onnx``  the same graph fixed to one frame per call, for embedding in real-time hosts

The STFT stays outside the graph (see `denoise.stft`), as in GTCRN's stream/ export.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from denoise.atomic import atomic_path
from denoise.checkpoint import (CONFIG_FILE, load_onnx, INPUT_NAMES, OFFLINE_FILE, OUTPUT_NAMES, STATE_NAMES, STREAM_FILE,
                                refresh_hashes)
from denoise.model import DenoiseNet, StreamingDenoiser


def _example_inputs(model: DenoiseNet, frames: int, batch: int = 1):
    state = model.initial_state(batch)
    spec = torch.randn(batch, frames, model.config.num_bins, 2)
    return spec, state.conv, state.encoder, state.decoder


def _export(model: DenoiseNet, path: Path, frames: int, dynamic: bool) -> None:
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"spec": {0: "batch", 1: "frames"}, "enhanced": {0: "batch", 1: "frames"}}
        for name in STATE_NAMES:
            dynamic_axes[name] = dynamic_axes[f"{name}_out"] = {1: "batch"}
    with atomic_path(path) as temp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about the conv loop and GRU batch size; both are handled
        torch.onnx.export(
            StreamingDenoiser(model).eval(), _example_inputs(model, frames), str(temp),
            input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
            opset_version=17, dynamo=False,
        )


def export_onnx(model: DenoiseNet, folder: str | Path, verify: bool = True) -> list[Path]:
    """Write both graphs into ``folder``; with ``verify``, check onnxruntime against torch (1e-4)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    paths = [folder / OFFLINE_FILE, folder / STREAM_FILE]
    _export(model, paths[0], frames=8, dynamic=True)
    _export(model, paths[1], frames=1, dynamic=False)
    if (folder / CONFIG_FILE).is_file():
        refresh_hashes(folder)
    if verify:
        for path, frames in ((paths[0], 37), (paths[0], 1), (paths[1], 1)):
            error = max_deviation(model, path, frames)
            if error > 1e-4:
                raise RuntimeError(f"{path}: ONNX output deviates from torch by {error:.2e} (> 1e-4)")
    return paths


def max_deviation(model: DenoiseNet, path: str | Path, frames: int) -> float:
    """Largest absolute difference between torch and onnxruntime on random input, states included."""
    torch.manual_seed(0)
    inputs = _example_inputs(model, frames)
    inputs = (inputs[0] * 3, *(torch.randn_like(s) * 0.5 for s in inputs[1:]))
    with torch.no_grad():
        expected = StreamingDenoiser(model)(*inputs)
    outputs = load_onnx(path).run(list(OUTPUT_NAMES), {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})
    return max(float(np.abs(o - e.numpy()).max()) for o, e in zip(outputs, expected))
