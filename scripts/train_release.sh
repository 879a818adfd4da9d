#!/usr/bin/env bash
# The recipe of a released model: prepare the data, stage 1 (conventional losses), stage 2 (Model as Loss),
# then copy the result into models/NAME with its model card.
#
#   scripts/train_release.sh small        # ~35 min stage 1 + ~8 min stage 2 on one CPU core
#   scripts/train_release.sh base
#
# The settings of each model are in models/NAME/recipe.env (sourced below), so the released folder records them.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/train_release.sh small|base}
source "models/$name/recipe.env"
data=${DATA:-data/prepared}
runs=${RUNS:-runs/release}
threads=${THREADS:-1}

[ -d "$data/train/speech" ] || python scripts/prepare_data.py --out "$data"

common=(--clean "$data/train/speech" --noise "$data/train/noise" --val-clean "$data/val/speech" --val-noise "$data/val/noise"
        --batch-size "$BATCH_SIZE" --threads "$threads" --seed "$SEED")
denoise train "${common[@]}" --model "$name" --stage 1 --steps "$STAGE1_STEPS" --lr "$STAGE1_LR" \
    --val-every "$STAGE1_VAL_EVERY" --out "$runs/$name-stage1"
denoise train "${common[@]}" --init "$runs/$name-stage1/best" --stage 2 --steps "$STAGE2_STEPS" --lr "$STAGE2_LR" \
    --mal-encoder "$MAL_ENCODER" --mal-layers "$MAL_LAYERS" --conventional-weight "$CONVENTIONAL_WEIGHT" \
    --val-every "$STAGE2_VAL_EVERY" --out "$runs/$name-stage2"
python scripts/release_model.py "$runs/$name-stage2/best" "models/$name" --recipe "models/$name/recipe.env" \
    --stage1-run "$runs/$name-stage1" --stage2-run "$runs/$name-stage2"
