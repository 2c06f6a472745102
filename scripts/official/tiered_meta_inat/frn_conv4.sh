#!/usr/bin/env bash
# FRN, Conv-4, on tiered meta-iNat, 84x84 (tools/prepare_inat.py), for the paper's meta-iNat table:
# the official experiments/tiered-meta-iNat/FRN/Conv-4/train.sh
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=tiered_meta_inat MODEL=Conv4 METHOD=meta_frn WAY=20 SHOT=5 TEST_SHOTS="1 5"
TRANSFORMS=(--train_transform_type 1 --eval_resize none)
METATRAIN=(--opt adam --lr 1e-3 --gamma 5e-1 --epoch 100 --milestones 20 40 60 80 --wd 5e-4 --val last)
source "$(dirname "$0")/../stages.sh"
