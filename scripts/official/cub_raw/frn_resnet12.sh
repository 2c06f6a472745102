#!/usr/bin/env bash
# FRN, ResNet-12, on CUB-200-2011 raw photos (tools/prepare_cub.py), for the paper's Table 4:
# the official experiments/CUB_fewshot_raw/FRN/ResNet-12/train.sh
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=cub MODEL=ResNet12 METHOD=meta_frn WAY=10 SHOT=5 TEST_SHOTS="1 5"
TRANSFORMS=(--train_transform_type 0 --eval_resize shorter)
METATRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 1200 --milestones 400 800 --wd 5e-4 --val_freq 20)
source "$(dirname "$0")/../stages.sh"
