"""The paper's comparison, one command: same network and step budget, five stage-2 losses.

    (a) conventional   stage 2 continues with the stage-1 conventional loss
    (b) deep-feature   stage 2 with a deep-feature loss: L1 between the activations of a pretrained
                       speech model (default: Resemblyzer's GE2E speaker encoder, a 3-layer LSTM over
                       mel bands, whose weights ship with `pip install Resemblyzer`; or a local
                       wav2vec2/WavLM folder via --deep-feature-model DIR)
    (c) mal-frozen     Model as Loss, frozen copy of the stage-1 encoder
    (d) mal-frozen-fe  Model as Loss, frozen copy of the stage-1 encoder's front layers
    (e) mal-dynamic    Model as Loss, the live encoder

All five start from ONE stage-1 model and train the same number of stage-2 steps, then are scored
with `denoise eval`'s metrics on the in-domain and the out-of-domain test set. Writes a table and a
plot into docs/results.md (section "Ablation") and docs/ablation.png.

    python bench/ablation.py                      # reduced scale: small model, < 1 h on 2 CPU cores
    python bench/ablation.py --scale full         # base model, GPU
    python bench/ablation.py --deep-feature-model ~/models/wavlm-base-plus   # (b) with WavLM instead
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from denoise import evaluate
from denoise import metrics as metric_library

PREPARED = Path("data/prepared")
TEST_SETS = ("testset_indomain", "testset_ood")
RESULTS_SECTION = "## Ablation: stage-2 losses"


@dataclass(frozen=True)
class Scale:
    model: str
    stage1_steps: int
    stage2_steps: int
    batch_size: int
    test_files: int | None  # per test set; None = all
    device: str


SCALES = {
    "reduced": Scale("small", 600, 300, 8, 30, "cpu"),
    "full": Scale("base", 20000, 10000, 32, None, "cuda"),
}

VARIANTS = {
    "conventional": dict(mal_weight=0.0, conventional_weight=1.0),
    "deep-feature": dict(mal_weight=0.0, deep_feature_weight=1.0),
    "mal-frozen": dict(mal_encoder="frozen"),
    "mal-frozen-fe": dict(mal_encoder="frozen-fe"),
    "mal-dynamic": dict(mal_encoder="dynamic"),
}
METRICS = ["pesq_wb", "stoi", "si_sdr", "dnsmos"]


def default_deep_feature_model() -> str | None:
    """Resemblyzer's speaker encoder when the package is installed: its weights need no download."""
    from denoise.deep_feature import RESEMBLYZER, resemblyzer_available

    return RESEMBLYZER if resemblyzer_available() else None


def data_settings(data: Path) -> dict:
    return dict(clean=str(data / "train" / "speech"), noise=str(data / "train" / "noise"),
                val_clean=str(data / "val" / "speech"), val_noise=str(data / "val" / "noise"))


def run(out: Path, data: Path, scale: Scale, variants: list[str], metrics: list[str], deep_feature_model: str | None,
        test_root: Path, extra: dict | None = None, jobs: int = 1, stage1_model: Path | None = None) -> list[dict]:
    """Train stage 1 once (or take ``stage1_model``), every variant's stage 2 from it, score each on the test sets.

    Two reference rows come first: the unprocessed input and the stage-1 model itself.
    """
    from denoise.checkpoint import load_model
    from denoise.export import export_onnx
    from denoise.train import TrainConfig, train

    base = TrainConfig(**data_settings(data), model=scale.model, batch_size=scale.batch_size, device=scale.device,
                       val_every=max(1, scale.stage2_steps // 2), progress=False, **(extra or {}))
    stage1_run = out / "stage1"
    if stage1_model is not None:
        stage1 = stage1_model
    else:
        stage1 = stage1_run / "last"
        if not (stage1 / "config.json").is_file():
            started = time.perf_counter()
            train(replace(base, stage="1", steps=scale.stage1_steps, out=str(stage1_run), export_onnx=False))
            print(f"# stage 1: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if not (stage1 / "model.onnx").is_file():
        export_onnx(load_model(stage1), stage1)
    rows = []

    def score(name: str, test_set: str, pairs, model: str | None) -> None:
        enhanced = pairs if model is None else evaluate.enhance_folder(pairs, out / "enhanced" / test_set / name, model=model)
        results = evaluate.score_pairs(enhanced, name, metrics, jobs=jobs)
        row = {"variant": name, "test set": test_set}
        for summary in evaluate.summarize(results, metrics, by_snr=False):
            row[summary.metric] = (summary.mean, summary.ci95)
        rows.append(row)

    for test_set, pairs in test_pairs(test_root, scale.test_files):
        score("unprocessed", test_set, pairs, None)
        score("stage 1 only", test_set, pairs, str(stage1))
    for name in variants:
        settings = dict(VARIANTS[name])
        if name == "deep-feature":
            if not deep_feature_model:
                print("# skipping deep-feature: pip install Resemblyzer, or give --deep-feature-model DIR "
                      "(a local wav2vec2/WavLM folder)", file=sys.stderr)
                continue
            settings["deep_feature_model"] = deep_feature_model
        target = out / name
        if not (target / "best" / "model.onnx").is_file():
            started = time.perf_counter()
            train(replace(base, stage="2", init=str(stage1), steps=scale.stage2_steps, out=str(target), **settings))
            print(f"# {name}: stage 2 in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for test_set, pairs in test_pairs(test_root, scale.test_files):
            score(name, test_set, pairs, str(target / "best"))
    order = {name: i for i, name in enumerate(["unprocessed", "stage 1 only", *VARIANTS])}
    return sorted(rows, key=lambda row: (row["test set"], order[row["variant"]]))


def test_pairs(test_root: Path, limit: int | None):
    for test_set in TEST_SETS:
        clean, noisy = test_root / test_set / "clean", test_root / test_set / "noisy"
        if clean.is_dir():
            pairs, _ = evaluate.pair_folders(clean, noisy)
            yield test_set, pairs[:limit] if limit else pairs


def markdown(rows: list[dict], metrics: list[str], scale_name: str, scale: Scale, stage1: Path | None = None,
             deep_feature_model: str | None = None) -> str:
    columns = metric_library.columns(metrics)
    shared = f"the stage-1 model `{stage1}` shared" if stage1 else f"{scale.stage1_steps} stage-1 steps shared"
    lines = [RESULTS_SECTION, "",
             f"Generated by `python bench/ablation.py --scale {scale_name}`: `{scale.model}` model, "
             f"{shared}, then {scale.stage2_steps} stage-2 steps per variant, "
             f"batch {scale.batch_size}; mean ± 95% CI over {scale.test_files or 'all'} files per test set."
             + (f" Deep-feature loss model: `{deep_feature_model}`." if deep_feature_model else ""), "",
             "| test set | stage-2 loss | " + " | ".join(metric_library.COLUMN_LABELS[c] for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            mean, ci = row.get(column, (math.nan, math.nan))
            digits = 1 if column == "si_sdr" else 3 if "stoi" in column else 2
            cells.append("—" if not math.isfinite(mean) else f"{mean:.{digits}f} ± {ci:.{digits}f}" if math.isfinite(ci) else f"{mean:.{digits}f}")
        lines.append(f"| {row['test set']} | {row['variant']} | " + " | ".join(cells) + " |")
    lines += ["", "![stage-2 losses](ablation.png)", ""]
    return "\n".join(lines)


def write_results(path: Path, section: str) -> None:
    """Replace this script's section of docs/results.md (or create the file), leaving other sections alone."""
    text = path.read_text() if path.is_file() else "# Results\n\n"
    if RESULTS_SECTION in text:
        start = text.index(RESULTS_SECTION)
        following = text.find("\n## ", start + len(RESULTS_SECTION))
        text = text[:start] + section + (text[following + 1:] if following >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def plot(rows: list[dict], metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in ("pesq_wb", "dnsmos_ovrl", "stoi") if c in metric_library.columns(metrics)]
    test_sets = list(dict.fromkeys(r["test set"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    figure, axes = plt.subplots(1, max(1, len(columns)), figsize=(4 * max(1, len(columns)), 3.5), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for axis, column in zip(axes[0], columns):
        for i, variant in enumerate(variants):
            values = [next((r[column] for r in rows if r["variant"] == variant and r["test set"] == t), (math.nan, 0))
                      for t in test_sets]
            axis.bar([x + i * width for x in range(len(test_sets))], [v[0] for v in values], width,
                     yerr=[v[1] if math.isfinite(v[1]) else 0 for v in values], capsize=2, label=variant)
        axis.set_xticks([x + width * (len(variants) - 1) / 2 for x in range(len(test_sets))], test_sets)
        axis.set_title(metric_library.COLUMN_LABELS[column])
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--scale", choices=sorted(SCALES), default="reduced")
    parser.add_argument("--data", type=Path, default=PREPARED, help="prepared data: train/, val/, testset_* (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="training runs and enhanced audio (resumable)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--deep-feature-model", default=default_deep_feature_model(),
                        help="'resemblyzer' or a local wav2vec2/WavLM folder for variant (b) "
                             "(default: %(default)s; 'resemblyzer' when that package is installed, else (b) is skipped)")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--jobs", type=int, default=1, help="processes for scoring")
    parser.add_argument("--results", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--stage1", type=Path, help="an existing stage-1 model folder to share (skips stage-1 training)")
    parser.add_argument("--stage2-steps", type=int, help="override the scale's stage-2 steps per variant")
    parser.add_argument("--batch-size", type=int, help="override the scale's batch size")
    parser.add_argument("--test-files", type=int, help="override the scale's files per test set (0: all)")
    args = parser.parse_args(argv)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    metrics = metric_library.parse_metric_names(args.metrics)
    metrics = [m for m in metrics if m not in metric_library.unavailable_metrics(metrics)]
    scale = SCALES[args.scale]
    overrides = {"stage2_steps": args.stage2_steps, "batch_size": args.batch_size,
                 "test_files": None if args.test_files == 0 else args.test_files}
    scale = replace(scale, **{k: v for k, v in overrides.items() if v is not None or (k == "test_files" and args.test_files == 0)})
    rows = run(args.out, args.data, scale, variants, metrics, args.deep_feature_model, args.data, jobs=args.jobs,
               stage1_model=args.stage1)
    used_deep_feature = args.deep_feature_model if "deep-feature" in variants else None
    section = markdown(rows, metrics, args.scale, scale, args.stage1, used_deep_feature)
    print(section)
    write_results(args.results, section)
    plot(rows, metrics, args.results.parent / "ablation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
