#!/usr/bin/env bash
# FRN meta-training (20-way 5-shot), ResNet-12 on mini-ImageNet (the seed's command). Usage: run_metatrain.sh DATA [extra flags]
set -euo pipefail
DATA=${1:?usage: $0 DATA_PATH [extra flags]}; shift
DATA=$(realpath "$DATA")   # absolute, because the next line changes folder
cd "$(dirname "$0")/../.."  # checkpoints/ and results/ of this checkout
python meta_train.py --dataset mini_imagenet --data_path "$DATA" --method meta_frn --lr 1e-3 --gamma 1e-1 \
  --epoch 150 --train_n_episode 1000 --val_n_episode 600 --milestones 70 120 --image_size 84 --model ResNet12 \
  --train_n_way 20 --val_n_way 5 --n_shot 5 --n_query 15 --gpu \
  --pretrain_path ./checkpoints/mini_imagenet/ResNet12_stl_frn_pretrain/best_model.pdparams "$@"
