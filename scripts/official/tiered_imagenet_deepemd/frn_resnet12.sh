#!/usr/bin/env bash
# FRN, ResNet-12, on DeepEMD's tiered-ImageNet (224x224 class folders), for the paper's Table 7 (its club-marked
# row): pretraining, then episodic fine-tuning from it, each tested as the official
# experiments/tiered-ImageNet_DeepEMD/FRN/ResNet-12_pretrain/train.sh and ResNet-12_finetune/train.sh do
# (usage, stages and paths: scripts/official/stages.sh).
DATASET=tiered_imagenet MODEL=ResNet12 METHOD=meta_frn WAY=20 SHOT=5 TEST_SHOTS="1 5"
TRANSFORMS=(--train_transform_type 0 --eval_resize shorter)
PRETRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 90 --milestones 30 60 --wd 5e-4 --val_freq 5 --batch_size 128
          --n_shot 1 --num_classes 351)
METATRAIN=(--opt sgd --lr 1e-3 --gamma 1e-1 --epoch 70 --milestones 40 60 --wd 5e-4 --val_freq 5)
source "$(dirname "$0")/../stages.sh"
