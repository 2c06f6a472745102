#!/usr/bin/env bash
# ProtoNet, Conv-4, 5-shot, on meta-iNat, 84x84 (tools/prepare_inat.py), for the paper's meta-iNat table:
# the official experiments/meta-iNat/Proto/Conv-4_5-shot/train.sh
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=meta_inat MODEL=Conv4 METHOD=meta_proto WAY=20 SHOT=5 TEST_SHOTS="5"
TRANSFORMS=(--train_transform_type 1 --eval_resize none)
METATRAIN=(--opt adam --lr 1e-3 --gamma 5e-1 --epoch 100 --milestones 20 40 60 80 --wd 5e-4 --val last)
source "$(dirname "$0")/../stages.sh"
