#!/usr/bin/env bash
# FRN, ResNet-12, on tiered-ImageNet at 84x84 (class folders), for the paper's Table 7: pretraining, then episodic
# fine-tuning from it, each tested as the official experiments/tiered-ImageNet/FRN/ResNet-12_pretrain/train.sh and
# ResNet-12_finetune/train.sh do (usage, stages and paths: scripts/official/stages.sh).
DATASET=tiered_imagenet MODEL=ResNet12 METHOD=meta_frn WAY=20 SHOT=5 TEST_SHOTS="1 5"
TRANSFORMS=(--train_transform_type 1 --eval_resize none)
PRETRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 90 --milestones 30 60 --wd 5e-4 --val_freq 5 --batch_size 128
          --n_shot 1 --num_classes 351)
METATRAIN=(--opt sgd --lr 1e-3 --gamma 1e-1 --epoch 60 --milestones 30 50 --wd 5e-4 --val_freq 5)
source "$(dirname "$0")/../stages.sh"
