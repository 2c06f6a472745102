#!/usr/bin/env bash
# FRN, ResNet-12, on mini-ImageNet (tools/prepare_mini_imagenet.py), for the paper's Table 7: pretraining, then
# episodic fine-tuning from it, each tested as the official experiments/mini-ImageNet/FRN/ResNet-12_pretrain/train.sh
# and ResNet-12_finetune/train.sh do (usage, stages and paths: scripts/official/stages.sh).
DATASET=mini_imagenet MODEL=ResNet12 METHOD=meta_frn WAY=20 SHOT=5 TEST_SHOTS="1 5"
TRANSFORMS=(--train_transform_type 0 --eval_resize shorter)
PRETRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 350 --milestones 200 300 --wd 5e-4 --val_freq 25 --batch_size 128
          --n_shot 1 --num_classes 64)
METATRAIN=(--opt sgd --lr 1e-3 --gamma 1e-1 --epoch 150 --milestones 70 120 --wd 5e-4 --val_freq 5)
source "$(dirname "$0")/../stages.sh"
