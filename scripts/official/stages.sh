#!/usr/bin/env bash
# What every recipe of scripts/official/ shares: the fixed settings of the official FRN protocol, the stages, the
# paths and the dry run. A recipe (scripts/official/<dataset>/<method>_<backbone>.sh) holds only the settings of its
# official experiments/<dataset>/<method>/<backbone>/train.sh and sources this file; tests/test_official_recipes.py
# holds every recipe to a transcription of those files.
#
# Usage: [FRN_STAGES="..."] [FRN_DRY_RUN=1] bash scripts/official/<dataset>/<recipe>.sh DATA [extra flags]
#   DATA           the dataset folder (train/, val/, test/ class folders, or images/ plus the mini-ImageNet CSVs)
#   extra flags    appended to every command run (a later flag wins: --gpu, --threads 1, --epoch 2); a flag only
#                  one script accepts (--resume auto, --pretrain_path W) goes with that stage alone (FRN_STAGES)
#   FRN_STAGES     the stages to run, in the recipe's order (default: all it has): pretrain, pretrain_test (the
#                  official pretraining scripts test their model too), metatrain, test
#   FRN_DRY_RUN=1  print the commands, a script that runs them, and run nothing
#   FRN_PROCS=N    train (pretrain, metatrain) as N processes of one thread each that share every batch
#                  (paddle.distributed.launch, --share_batches --threads 1): the same training as one process, and
#                  on a CPU faster than one process of N threads (docs/performance.md); default 1, one process
# Checkpoints go to checkpoints/official/<dataset folder>/, results to results/official/<dataset folder>/ of this
# checkout; each command is printed, after a comment line naming what it writes.
#
# A recipe sets DATASET, MODEL, METHOD (meta_frn or meta_proto), WAY and SHOT (training episodes), TEST_SHOTS,
# TRANSFORMS and METATRAIN (arrays: the train crop and eval resize; optimizer, schedule and validation), and for
# the ImageNet variants PRETRAIN (an array: pretraining's optimizer, schedule, batch and validation shot).
set -euo pipefail
USAGE="usage: [FRN_STAGES=\"stage ...\"] [FRN_DRY_RUN=1] bash $0 DATA [extra flags]"
if [ $# -lt 1 ]; then echo "error: no DATA folder given; $USAGE" >&2; exit 2; fi
DATA=$(realpath "$1"); shift   # absolute, because the next line changes folder
REPO=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/../.." && pwd)
cd "$REPO"
FOLDER=$(basename "$(dirname "$(realpath "$0")")")   # cub_cropped, mini_imagenet, ...
CKPT=${CKPT:-./checkpoints/official/$FOLDER}       # a recipe outside scripts/official/ sets its own
RESULTS=${RESULTS:-./results/official/$FOLDER}

# the official trainer's fixed settings (trainers/trainer.py): 15 training queries; validation and test 5-way with 16
# queries, 1,000 validation episodes, 10,000 test episodes; an epoch is one pass over the training images
COMMON=(--dataset "$DATASET" --data_path "$DATA" --model "$MODEL" --image_size 84 "${TRANSFORMS[@]}")
VAL=(--val_n_way 5 --val_n_query 16 --val_n_episode 1000 --checkpoint_dir "$CKPT")
TEST=(--test_n_way 5 --n_query 16 --test_task_nums 1 --test_n_episode 10000 --results_dir "$RESULTS")
PRE_RUN=$CKPT/$DATASET/${MODEL}_stl_frn_pretrain
META_RUN=$CKPT/$DATASET/${MODEL}_${METHOD}_${WAY}way_${SHOT}shot_metatrain

if [ -n "${PRETRAIN+set}" ]; then
  ALL=(pretrain pretrain_test metatrain test)
  FROM_PRETRAINED=(--pretrain_path "$PRE_RUN/best_model.pdparams")
else
  ALL=(metatrain test)
  FROM_PRETRAINED=()
fi
read -r -a ASKED <<< "${FRN_STAGES:-${ALL[*]}}"
for stage in "${ASKED[@]}"; do
  if [[ " ${ALL[*]} " != *" $stage "* ]]; then
    echo "error: FRN_STAGES names '$stage', but $0 has the stages: ${ALL[*]}" >&2
    exit 2
  fi
done

PROCS=${FRN_PROCS:-1}
if ! [[ "$PROCS" =~ ^[1-9][0-9]*$ ]]; then echo "error: FRN_PROCS is '$PROCS'; give a number of processes, 1 or more" >&2; exit 2; fi
train_with() {  # train_with RUN_FOLDER: the interpreter of a training stage, one process or FRN_PROCS sharing batches
  if [ "$PROCS" -gt 1 ]; then
    TRAIN=(python -m paddle.distributed.launch --nproc_per_node "$PROCS" --log_dir "$CKPT/launch_logs/$(basename "$1")")
    SHARE=(--share_batches --threads 1)
  else
    TRAIN=(python)
    SHARE=()
  fi
}

run() {  # print the command; run it unless FRN_DRY_RUN is set
  local line
  line=$(printf '%q ' "$@")
  echo "${line% }"
  if [ -z "${FRN_DRY_RUN:-}" ]; then "$@"; fi
}

test_model() {  # test_model METHOD RUN_FOLDER [extra flags]: the official final test, once per shot of TEST_SHOTS
  local method=$1 run_folder=$2 shot
  shift 2
  for shot in $TEST_SHOTS; do
    echo "# test: $RESULTS/5w${shot}s/${DATASET}_${MODEL}_${method}.json (and .log)"
    run python test.py "${COMMON[@]}" --method "$method" --model_path "$run_folder/best_model.pdparams" \
      --n_shot "$shot" "${TEST[@]}" "$@"
  done
}

echo "cd $(printf '%q' "$REPO")"
for stage in "${ALL[@]}"; do
  [[ " ${ASKED[*]} " == *" $stage "* ]] || continue
  case $stage in
    pretrain)
      echo "# pretrain: run folder $PRE_RUN"
      train_with "$PRE_RUN"
      run "${TRAIN[@]}" pretrain.py "${COMMON[@]}" --method stl_frn "${PRETRAIN[@]}" "${VAL[@]}" "${SHARE[@]}" "$@" ;;
    pretrain_test)
      test_model stl_frn "$PRE_RUN" "$@" ;;
    metatrain)
      echo "# metatrain: run folder $META_RUN"
      train_with "$META_RUN"
      run "${TRAIN[@]}" meta_train.py "${COMMON[@]}" --method "$METHOD" --episodes pass --train_n_way "$WAY" \
        --n_shot "$SHOT" --n_query 15 "${METATRAIN[@]}" "${VAL[@]}" "${FROM_PRETRAINED[@]}" "${SHARE[@]}" "$@" ;;
    test)
      test_model "$METHOD" "$META_RUN" "$@" ;;
  esac
done
