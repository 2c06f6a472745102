#!/usr/bin/env bash
# The seed's three stages for one dataset: pretrain (stl_frn), meta-train (meta_frn 20-way 5-shot), test (5-way
# 1-shot and 5-shot, 600 episodes). What differs between datasets is in a recipe file: DATASET and MODEL, and
# optionally PRETRAIN_EXTRA (an array of extra pretraining flags).
#
# Usage: bash scripts/seed_stages.sh pretrain|metatrain|test RECIPE DATA [extra flags]
# scripts/<dataset>/run_pretrain.sh, run_metatrain.sh and run_test.sh are links to this file: called through
# one, the stage is the link's name and the recipe is recipe.sh beside it (bash scripts/cub/run_test.sh DATA).
# A new dataset is one folder with a recipe.sh (and the three links, if you want the short commands).
set -euo pipefail
NAME=$(basename "$0" .sh)
if [[ $NAME == run_* ]]; then
  STAGE=${NAME#run_}
  RECIPE=$(dirname "$0")/recipe.sh
else
  STAGE=${1:?usage: seed_stages.sh pretrain|metatrain|test RECIPE DATA [extra flags]}
  RECIPE=${2:?usage: seed_stages.sh pretrain|metatrain|test RECIPE DATA [extra flags]}
  shift 2
fi
PRETRAIN_EXTRA=()
# shellcheck disable=SC1090
source "$RECIPE"
DATA=${1:?usage: $0 DATA_PATH [extra flags]}; shift
DATA=$(realpath "$DATA")   # absolute, because the next line changes folder
cd "$(dirname "$(realpath "$0")")/.."  # checkpoints/ and results/ of this checkout
CKPT=./checkpoints/$DATASET
case $STAGE in
  pretrain)
    python pretrain.py --dataset "$DATASET" --data_path "$DATA" --method stl_frn --lr 1e-1 --gamma 1e-1 --epoch 350 \
      --milestones 200 300 --batch_size 512 "${PRETRAIN_EXTRA[@]}" --val_n_episode 600 --image_size 84 \
      --model "$MODEL" --n_shot 1 --n_query 15 --gpu "$@" ;;
  metatrain)
    python meta_train.py --dataset "$DATASET" --data_path "$DATA" --method meta_frn --lr 1e-3 --gamma 1e-1 \
      --epoch 150 --train_n_episode 1000 --val_n_episode 600 --milestones 70 120 --image_size 84 --model "$MODEL" \
      --train_n_way 20 --val_n_way 5 --n_shot 5 --n_query 15 --gpu \
      --pretrain_path "$CKPT/${MODEL}_stl_frn_pretrain/best_model.pdparams" "$@" ;;
  test)
    for SHOT in 1 5; do
      python test.py --dataset "$DATASET" --data_path "$DATA" --model "$MODEL" --method meta_frn --image_size 84 \
        --gpu --n_shot "$SHOT" --test_task_nums 1 --test_n_episode 600 \
        --model_path "$CKPT/${MODEL}_meta_frn_20way_5shot_metatrain/best_model.pdparams" "$@"
    done ;;
  *) echo "error: unknown stage '$STAGE'; choose pretrain, metatrain or test" >&2; exit 2 ;;
esac
