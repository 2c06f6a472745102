#!/usr/bin/env bash
# Omniglot (Vinyals split: 4112 training classes incl. rotations), Conv-4 at 42x42 px (a 2x2 map):
# FRN meta-training from random initialisation, 20-way 5-shot 15-query episodes,
# 9 epochs of 100 episodes, lr 0.1, then 0.01 from epoch 6 and 0.001 from epoch 8 (about 50 minutes on 2 CPU cores).
# No pretraining stage here: on this split one pretraining epoch (642 batches of 128) costs about
# 25 minutes on 2 CPU cores (measured: 100 batches in about 4 minutes, the loss still at ln 4112),
# the time of about 500 episodes, so the CPU budget goes to episodes.
# Usage: bash scripts/omniglot/run_metatrain.sh DATA_DIR [CHECKPOINT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?usage: run_metatrain.sh DATA_DIR [CHECKPOINT_DIR]}
CKPT=${2:-./checkpoints}
python meta_train.py --dataset omniglot --omniglot_split vinyals --data_path "$DATA" --model Conv4 --image_size 42 \
  --method meta_frn --train_n_way 20 --val_n_way 5 --n_shot 5 --n_query 15 \
  --lr 0.1 --gamma 0.1 --epoch 9 --milestones 6 8 --train_n_episode 100 --val_n_episode 300 \
  --print_freq 50 --checkpoint_dir "$CKPT"
