#!/usr/bin/env bash
# ProtoNet, Conv-4, 5-shot, on CUB-200-2011 bounding-box crops (tools/prepare_cub.py), for the paper's Table 3:
# the official experiments/CUB_fewshot_cropped/Proto/Conv-4_5-shot/train.sh
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=cub MODEL=Conv4 METHOD=meta_proto WAY=20 SHOT=5 TEST_SHOTS="5"
TRANSFORMS=(--train_transform_type 0 --eval_resize square)
METATRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 800 --milestones 400 --wd 5e-4 --val_freq 20)
source "$(dirname "$0")/../stages.sh"
