"""What a model folder is (size, compute, latency, metrics) and its Hugging Face Hub model card (README.md).

Works without torch: parameters are counted from the safetensors header, never by loading weights.

Training details come from ``config.json`` metadata (or the ``metadata`` argument, which wins). Keys used:
``description``, ``license`` (default "mit"), ``training_data``, ``recipe``, ``stage1``, ``stage2``,
``metrics`` ({metric: value} or {test set: {metric: value}}), ``datasets`` (Hub dataset ids), ``note``.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from denoise.checkpoint import WEIGHTS_FILE, CheckpointError, read_model_config
from denoise.config import ModelConfig

CARD_FILE = "README.md"
TAGS = ("speech-enhancement", "denoising", "onnx", "model-as-loss")
PAPER = "Phaye, Cernak, Harper: Model as Loss, Interspeech 2025 ([arXiv:2505.21156](https://arxiv.org/abs/2505.21156))"
_MAX_HEADER_BYTES = 100 << 20


def read_safetensors_header(path: Path) -> dict:
    """The tensor table of a safetensors file, checked against the file size. Reads JSON only: no code runs."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= header_length <= min(size - 8, _MAX_HEADER_BYTES):
                raise ValueError("bad header length")
            header = json.loads(handle.read(header_length))
        tensors = {name: spec for name, spec in header.items() if name != "__metadata__"}
        data_size = size - 8 - header_length
        if not tensors:
            raise ValueError("no tensors")
        ends = [spec["data_offsets"][1] for spec in tensors.values()]
        if any(not 0 <= spec["data_offsets"][0] <= spec["data_offsets"][1] <= data_size for spec in tensors.values()):
            raise ValueError("tensor data outside the file")
        if max(ends) != data_size:
            raise ValueError("file size does not match its tensors")
        return tensors
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error) as error:
        raise CheckpointError(f"{path}: not a valid safetensors file ({error})") from None


def count_parameters(path: Path) -> int:
    return sum(math.prod(spec["shape"]) for spec in read_safetensors_header(path).values())


def folder_size(folder: Path) -> int:
    """Bytes on disk of the model files (following the Hub cache's symlinks)."""
    return sum(p.resolve().stat().st_size for p in Path(folder).iterdir() if p.is_file())


def card_summary(folder: Path) -> str:
    """First paragraph of the model card's body (after the YAML front matter), or ''."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")
    if text.startswith("---"):
        end = text.find("\n---", 3)
        text = text[end + 4:] if end != -1 else ""
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if lines and not lines[0].startswith(("#", "|", "```", "<")):
            return " ".join(lines)
    return ""


def model_summary(folder: Path, metadata: dict | None = None) -> dict:
    """Config, sizes, compute and metrics of a model folder, for `denoise models list/info` and the card."""
    folder = Path(folder)
    config, document = read_model_config(folder)
    meta = {k: v for k, v in document.items() if k not in ("format", "model", "files")}
    meta.update(metadata or {})
    weights = folder / WEIGHTS_FILE
    macs = meta.get("macs_per_second") or config.macs_per_second
    return {
        "config": config,
        "metadata": meta,
        "files": dict(document.get("files") or {}),
        "parameters": count_parameters(weights) if weights.is_file() else None,
        "mmacs": macs / 1e6 if macs else None,
        "latency_ms": config.latency_ms,
        "size_bytes": folder_size(folder),
        "metrics": meta.get("metrics") or {},
        "summary": card_summary(folder),
    }


def metric_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(test set, metric, value) rows from {metric: value} or {test set: {metric: value}}."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += [(key, name, _number(v)) for name, v in value.items()]
        else:
            rows.append(("", key, _number(value)))
    return rows


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _yaml_list(key: str, values) -> list[str]:
    return [f"{key}:"] + [f"- {json.dumps(str(v))}" for v in values]


def _settings(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def render_model_card(folder: Path, metadata: dict | None = None) -> str:
    """A Hub model card (README.md with YAML front matter) for the model in ``folder``."""
    info = model_summary(folder, metadata)
    config: ModelConfig = info["config"]
    meta = info["metadata"]
    license_id = str(meta.get("license", "mit"))
    front = ["---", f"license: {json.dumps(license_id)}", "library_name: denoise", "pipeline_tag: audio-to-audio",
             *_yaml_list("tags", TAGS)]
    if meta.get("datasets"):
        front += _yaml_list("datasets", meta["datasets"])
    front.append("---")

    hop_ms, window_ms = 1000 * config.hop_length / config.sample_rate, 1000 * config.n_fft / config.sample_rate
    params = f"{info['parameters']:,}" if info["parameters"] is not None else "unknown"
    mmacs = f"{info['mmacs']:.1f} MMAC/s" if info["mmacs"] is not None else "unknown"
    lines = [*front, "", f"# denoise `{config.size}` speech enhancement model", ""]
    lines.append(meta.get("description") or (
        f"A causal {config.sample_rate // 1000} kHz speech denoiser for the `denoise` command line tool and "
        "Python library, trained with Model as Loss."))
    if meta.get("note"):
        lines += ["", f"> **Note:** {meta['note']}"]
    lines += ["", "## Usage", "", "```bash", "pip install denoise", "denoise talk.wav --model <this repo id>",
              "```", "", "## Architecture", "",
              "STFT-domain encoder–decoder: input projection of the log-power spectrum, causal temporal convolutions "
              "and a GRU bottleneck (encoder); a second GRU predicting a real-valued spectral mask (decoder). "
              "No look-ahead: it runs frame by frame on live audio with named ONNX state tensors.", "",
              "| | |", "|---|---|",
              f"| Size | {config.size} |",
              f"| Sample rate | {config.sample_rate} Hz |",
              f"| Window / hop | {config.n_fft} / {config.hop_length} samples ({window_ms:g} ms / {hop_ms:g} ms) |",
              f"| Hidden units / encoder convolutions | {config.hidden} / {config.num_convs} "
              f"(kernel {config.conv_kernel}) |",
              f"| Parameters | {params} |",
              f"| Compute | {mmacs} |",
              f"| Algorithmic latency | {info['latency_ms']:g} ms |",
              "", "## Files", "", "| File | sha256 |", "|---|---|"]
    lines += [f"| `{name}` | `{digest}` |" for name, digest in sorted(info["files"].items())]
    lines += ["", "`config.json` holds the model configuration and these hashes; `denoise` checks them before "
              "loading. Weights are safetensors and ONNX only.", "", "## Training", "",
              f"- Method: Model as Loss — {PAPER}.",
              f"- Training data: {meta.get('training_data', 'not recorded')}",
              f"- Recipe: {meta.get('recipe', 'not recorded')}"]
    for key, label in (("stage1", "Stage 1 (conventional loss)"), ("stage2", "Stage 2 (Model as Loss)"),
                       ("training_time", "Training time")):
        if meta.get(key):
            lines.append(f"- {label}: {_settings(meta[key])}")
    for stage, values in (meta.get("validation") or {}).items():
        lines.append(f"- Validation after {stage} (held-out in-domain mixtures): {_settings(values)}")
    rows = metric_rows(info["metrics"])
    lines += ["", "## Metrics", ""]
    if rows:
        lines += ["| Test set | Metric | Value |", "|---|---|---|"]
        lines += [f"| {test_set or '—'} | {metric} | {value} |" for test_set, metric, value in rows]
    else:
        lines.append("Not measured yet.")
    lines += ["", "## License", "", f"{license_id}", ""]
    return "\n".join(lines)


def write_model_card(folder: Path, metadata: dict | None = None) -> Path:
    from denoise.atomic import write_bytes_atomic

    path = Path(folder) / CARD_FILE
    write_bytes_atomic(path, render_model_card(folder, metadata).encode())
    return path

