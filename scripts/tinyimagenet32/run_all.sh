#!/usr/bin/env bash
# Tiny-ImageNet at 32 px in the mini-ImageNet format (images/ + train.csv/val.csv/test.csv: 128/32/40
# classes of 550 images), the whole chain on a CPU: file lists -> pretrain -> meta-train -> test,
# plus the nearest-prototype baseline on the pretrained backbone. Conv-4 at 32 px (a 2x2 feature map).
# 39 minutes on 2 CPU cores (pretraining 25, meta-training 7, the six tests 6).
#
# Usage: bash scripts/tinyimagenet32/run_all.sh DATA [CHECKPOINT_DIR] [RESULTS_DIR]
#   DATA: the dataset folder, or the .tar.gz that holds it (extracted next to CHECKPOINT_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?usage: run_all.sh DATA [CHECKPOINT_DIR] [RESULTS_DIR]}
CKPT=${2:-./checkpoints/tinyimagenet32}
RESULTS=${3:-./results/tinyimagenet32}
if [ -f "$DATA" ]; then
  mkdir -p "$CKPT/data"
  tar -xzf "$DATA" -C "$CKPT/data"
  DATA=$(dirname "$(find "$CKPT/data" -name train.csv | head -1)")
fi
COMMON=(--dataset mini_imagenet --data_path "$DATA" --model Conv4 --image_size 32 --checkpoint_dir "$CKPT")

echo "== 1/4 file lists"
python write_miniImagenet_filelist.py --data_path "$DATA"

echo "== 2/4 pretraining: a class matrix per base class, 4 epochs of 550 batches"
python pretrain.py "${COMMON[@]}" --method stl_frn --num_classes 64 --batch_size 128 --lr 0.1 --gamma 0.1 \
  --epoch 4 --milestones 3 --val_n_episode 300 --n_shot 1 --n_query 15 --print_freq 100
PRE=$CKPT/mini_imagenet/Conv4_stl_frn_pretrain/best_model.pdparams

echo "== 3/4 meta-training: 20-way 5-shot 15-query, 2 epochs of 100 episodes"
python meta_train.py "${COMMON[@]}" --method meta_frn --train_n_way 20 --val_n_way 5 --n_shot 5 --n_query 15 \
  --lr 0.01 --gamma 0.1 --epoch 2 --milestones 10 --train_n_episode 100 --val_n_episode 300 --print_freq 50 \
  --pretrain_path "$PRE"
META=$CKPT/mini_imagenet/Conv4_meta_frn_20way_5shot_metatrain/best_model.pdparams

echo "== 4/4 testing: 5-way 1-shot and 5-shot, 5 x 2,000 seeded episodes each"
for SHOT in 1 5; do
  TEST=(--dataset mini_imagenet --data_path "$DATA" --model Conv4 --image_size 32 --n_shot "$SHOT" --n_query 15
        --test_task_nums 5 --test_n_episode 2000 --seed 0 --results_dir "$RESULTS")
  python test.py "${TEST[@]}" --method meta_frn --model_path "$META"                       # FRN, meta-trained
  python test.py "${TEST[@]}" --method stl_frn --model_path "$PRE"                         # FRN head, pretrained only
  python test.py "${TEST[@]}" --method stl_frn --model_path "$PRE" --classifier proto      # baseline
done
