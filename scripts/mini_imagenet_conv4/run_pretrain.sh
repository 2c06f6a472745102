#!/usr/bin/env bash
# FRN pretraining, Conv-4 on mini-ImageNet. Usage: run_pretrain.sh DATA [extra flags]
set -euo pipefail
DATA=${1:?usage: $0 DATA_PATH [extra flags]}; shift
DATA=$(realpath "$DATA")   # absolute, because the next line changes folder
cd "$(dirname "$0")/../.."  # checkpoints/ and results/ of this checkout
python pretrain.py --dataset mini_imagenet --data_path "$DATA" --method stl_frn --lr 1e-1 --gamma 1e-1 --epoch 350 \
  --milestones 200 300 --batch_size 512 --val_n_episode 600 --image_size 84 --model Conv4 --n_shot 1 \
  --n_query 15 --gpu "$@"
