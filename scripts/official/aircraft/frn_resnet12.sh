#!/usr/bin/env bash
# FRN, ResNet-12, on FGVC-Aircraft crops (tools/prepare_aircraft.py), for the paper's Aircraft table:
# the official experiments/Aircraft_fewshot/FRN/ResNet-12/train.sh
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=aircraft MODEL=ResNet12 METHOD=meta_frn WAY=10 SHOT=5 TEST_SHOTS="1 5"
TRANSFORMS=(--train_transform_type 0 --eval_resize square)
METATRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 1200 --milestones 400 800 --wd 5e-4 --val_freq 20)
source "$(dirname "$0")/../stages.sh"
