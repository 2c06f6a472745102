#!/usr/bin/env bash
# ProtoNet, ResNet-12, 1-shot, on CUB-200-2011 bounding-box crops (tools/prepare_cub.py), for the paper's Table 3:
# the official experiments/CUB_fewshot_cropped/Proto/ResNet-12_1-shot/train.sh
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=cub MODEL=ResNet12 METHOD=meta_proto WAY=15 SHOT=1 TEST_SHOTS="1"
TRANSFORMS=(--train_transform_type 0 --eval_resize square)
METATRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 1200 --milestones 400 800 --wd 5e-4 --val_freq 20)
source "$(dirname "$0")/../stages.sh"
