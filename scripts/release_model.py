"""Copy a trained model into models/NAME with its training record and a model card.

    python scripts/release_model.py runs/release/small-stage2/best models/small --recipe models/small/recipe.env \
        --stage1-run runs/release/small-stage1 --stage2-run runs/release/small-stage2 [--metrics results.json]

The folder gets model.safetensors, model.onnx, model_stream.onnx, config.json (config, sha256 of every file and
the training record) and README.md (the Hub model card). ``--metrics`` is a JSON {test set: {metric: value}}.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from denoise.checkpoint import OFFLINE_FILE, STREAM_FILE, WEIGHTS_FILE, read_model_config, write_config
from denoise.modelcard import write_model_card

TRAINING_DATA = (
    "real recorded speech and noise from Debian game-data packages, prepared by scripts/prepare_data.py "
    "(16 kHz): speech = fillets-ng-data-cs (Czech voice acting, GPL-2), fillets-ng-data, hedgewars-data voices "
    "(~106 min); noise = megaglest-data ambience, supertuxkart-data ambience, widelands-data workshop/animal "
    "sounds (~19 min); mixed on the fly at -5..20 dB SNR, -10..+6 dB level, 2 s segments. Validation: held-out "
    "files of the same sources (val/). Never trained on test/ or the out-of-domain sources."
)


def last_validation(run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_si_sdr" in line]
    best = max(lines, key=lambda line: line["val_si_sdr"]) if lines else {}
    return {k: round(v, 3) for k, v in best.items() if k.startswith("val_")} | ({"step": best["step"]} if best else {})


def stage_settings(run: Path, keys: tuple[str, ...]) -> dict:
    config = json.loads((run / "train_config.json").read_text())
    return {key: config[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="trained model folder (config.json, model.safetensors, ONNX)")
    parser.add_argument("target", type=Path, help="models/NAME")
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--stage1-run", type=Path, required=True)
    parser.add_argument("--stage2-run", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, help="JSON {test set: {metric: value}} for the card")
    parser.add_argument("--note", help="a caveat shown at the top of the model card")
    parser.add_argument("--training-time", help="e.g. '35 min stage 1 + 8 min stage 2 on one CPU core'")
    args = parser.parse_args()

    args.target.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, OFFLINE_FILE, STREAM_FILE):
        shutil.copyfile(args.source / name, args.target / name)
    if args.recipe.resolve() != (args.target / args.recipe.name).resolve():
        shutil.copyfile(args.recipe, args.target / args.recipe.name)
    config, _ = read_model_config(args.source)
    common = ("batch_size", "segment_seconds", "snr_range", "gain_range", "seed")
    metadata = {
        "training_data": TRAINING_DATA,
        "recipe": f"scripts/train_release.sh {args.target.name} (settings in {args.recipe.name})",
        "stage1": stage_settings(args.stage1_run, ("steps", "lr", "loss_weights", *common)),
        "stage2": stage_settings(args.stage2_run, ("steps", "lr", "mal_encoder", "mal_layers", "mal_weight",
                                                   "conventional_weight", *common)),
        "validation": {"stage1": last_validation(args.stage1_run), "stage2": last_validation(args.stage2_run)},
        "license": "gpl-2.0",  # trained on GPL-2 speech; see the card
    }
    if args.note:
        metadata["note"] = args.note
    if args.training_time:
        metadata["training_time"] = args.training_time
    if args.metrics:
        metadata["metrics"] = json.loads(args.metrics.read_text())
    write_config(args.target, config, metadata)
    write_model_card(args.target)
    print(f"released {args.source} -> {args.target}")


if __name__ == "__main__":
    main()
