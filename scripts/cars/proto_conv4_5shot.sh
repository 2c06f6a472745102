#!/usr/bin/env bash
# ProtoNet, Conv-4, 5-shot, on Stanford Cars crops (../shared/data/cars_fewshot.tar, or tools/prepare_cars.py) from scratch: the
# official cropped-CUB Conv-4 recipe (scripts/official/cub_cropped/proto_conv4_5shot.sh) with its 400 x 2-epoch schedule
# compressed to 80 x 2 (the rate cut by 10 halfway). Usage, stages and paths: scripts/official/stages.sh.
DATASET=cars MODEL=Conv4 METHOD=meta_proto WAY=20 SHOT=5 TEST_SHOTS="5"
TRANSFORMS=(--train_transform_type 0 --eval_resize square)
METATRAIN=(--opt sgd --lr 1e-1 --gamma 1e-1 --epoch 160 --milestones 80 --wd 5e-4 --val_freq 20)
CKPT=./checkpoints/cars RESULTS=./results/cars
source "$(dirname "$0")/../official/stages.sh"
