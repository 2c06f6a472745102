#!/usr/bin/env bash
# 5-way 1-shot and 5-shot test of the meta-trained Conv-4. Usage: run_test.sh DATA [extra flags]
set -euo pipefail
DATA=${1:?usage: $0 DATA_PATH [extra flags]}; shift
DATA=$(realpath "$DATA")   # absolute, because the next line changes folder
cd "$(dirname "$0")/../.."  # checkpoints/ and results/ of this checkout
for SHOT in 1 5; do
  python test.py --dataset mini_imagenet --data_path "$DATA" --model Conv4 --method meta_frn --image_size 84 \
    --gpu --n_shot "$SHOT" --test_task_nums 1 --test_n_episode 600 \
    --model_path ./checkpoints/mini_imagenet/Conv4_meta_frn_20way_5shot_metatrain/best_model.pdparams "$@"
done
