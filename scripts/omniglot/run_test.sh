#!/usr/bin/env bash
# Omniglot (Vinyals test split, 1692 classes), 5,000 seeded episodes per setting:
# 5-way and 20-way, 1-shot and 5-shot.
# Usage: bash scripts/omniglot/run_test.sh DATA_DIR [MODEL_PATH] [RESULTS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?usage: run_test.sh DATA_DIR [MODEL_PATH] [RESULTS_DIR]}
MODEL=${2:-./checkpoints/omniglot/Conv4_meta_frn_60way_1shot_metatrain/best_model.pdparams}
RESULTS=${3:-./results}
for WAY in 5 20; do
  for SHOT in 1 5; do
    python test.py --dataset omniglot --omniglot_split vinyals --data_path "$DATA" --model Conv4 --image_size 42 \
      --method meta_frn --test_n_way "$WAY" --n_shot "$SHOT" --n_query 15 \
      --test_task_nums 1 --test_n_episode 5000 --seed 0 --model_path "$MODEL" --results_dir "$RESULTS"
  done
done
