#!/usr/bin/env bash
# FRN against the official ProtoNet baseline on natural images, trained from scratch under one budget.
# Tiny-ImageNet photos (32 px, in the mini-ImageNet format) upsampled to 84 px, so that Conv-4 gives
# the 5x5 feature maps FRN is designed for. The recipes are the official CUB Conv-4 ones (lr 0.1,
# Nesterov, weight decay 5e-4, the rate divided by 10 halfway), shortened to the same number of
# training images for each model:
#   FRN        meta_frn   20-way 5-shot 15-query, 8 epochs x 25 episodes = 80,000 images (tested at 1 and 5 shots)
#   ProtoNet   meta_proto 30-way 1-shot 15-query, 8 epochs x 21 episodes = 80,640 images (tested at 1 shot)
#   ProtoNet   meta_proto 20-way 5-shot 15-query, 8 epochs x 25 episodes = 80,000 images (tested at 5 shots)
# The three run side by side, one thread each, so they share the machine alike; no validation
# (--val last: the last epoch's model is tested). Then 5 x 2,000 seeded test episodes per setting.
#
# Usage: bash scripts/tinyimagenet32/run_compare84.sh DATA [CHECKPOINT_DIR] [RESULTS_DIR]
#   DATA: the dataset folder, or the .tar.gz that holds it (extracted next to CHECKPOINT_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?usage: run_compare84.sh DATA [CHECKPOINT_DIR] [RESULTS_DIR]}
CKPT=${2:-./checkpoints/tinyimagenet32_84}
RESULTS=${3:-./results/tinyimagenet32_84}
if [ -f "$DATA" ]; then
  mkdir -p "$CKPT/data"
  tar -xzf "$DATA" -C "$CKPT/data"
  DATA=$(dirname "$(find "$CKPT/data" -name train.csv | head -1)")
fi
COMMON=(--dataset mini_imagenet --data_path "$DATA" --model Conv4 --image_size 84 --checkpoint_dir "$CKPT"
        --lr 0.1 --gamma 0.1 --wd 5e-4 --epoch 8 --milestones 4 --n_query 15 --val last --print_freq 5 --threads 1)

echo "== training, three models side by side"
python meta_train.py "${COMMON[@]}" --method meta_frn --train_n_way 20 --n_shot 5 --train_n_episode 25 \
  > "$CKPT.frn.out" 2>&1 &
python meta_train.py "${COMMON[@]}" --method meta_proto --train_n_way 30 --n_shot 1 --train_n_episode 21 \
  > "$CKPT.proto1.out" 2>&1 &
python meta_train.py "${COMMON[@]}" --method meta_proto --train_n_way 20 --n_shot 5 --train_n_episode 25 \
  > "$CKPT.proto5.out" 2>&1 &
wait
RUNS=$CKPT/mini_imagenet

echo "== testing: 5-way 1-shot and 5-shot, 5 x 2,000 seeded episodes each"
TEST=(--dataset mini_imagenet --data_path "$DATA" --model Conv4 --image_size 84 --n_query 15 --test_task_nums 5
      --test_n_episode 2000 --seed 0 --results_dir "$RESULTS")
for SHOT in 1 5; do
  python test.py "${TEST[@]}" --n_shot "$SHOT" --method meta_frn \
    --model_path "$RUNS/Conv4_meta_frn_20way_5shot_metatrain/best_model.pdparams"
done
python test.py "${TEST[@]}" --n_shot 1 --method meta_proto \
  --model_path "$RUNS/Conv4_meta_proto_30way_1shot_metatrain/best_model.pdparams"
python test.py "${TEST[@]}" --n_shot 5 --method meta_proto \
  --model_path "$RUNS/Conv4_meta_proto_20way_5shot_metatrain/best_model.pdparams"
