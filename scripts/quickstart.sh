#!/usr/bin/env bash
# Quick start: FRN learning Omniglot on a CPU in about 6 minutes (6.1 measured on 2 cores).
#   pretrain (class matrices) -> meta-train (20-way 5-shot episodes) -> test 5-way 1-shot and 5-shot
#
# Usage: bash scripts/quickstart.sh [DATA_DIR]
#   DATA_DIR holds images_background.zip and images_evaluation.zip (or their extracted folders).
#   Default: the first of ./datasets/omniglot, $FRN_SHARED/data/omniglot and ../shared/data/omniglot
#   that has them. Outputs go to ./checkpoints/quickstart/ and ./results/quickstart/.
#
# Setting: Conv-4 at 42x42 px (a 2x2 feature map), Lake's background/evaluation alphabet split
# (792 training characters, tested on the 659 characters of the 20 evaluation alphabets), one
# short stage each. The full-budget Omniglot recipe is in docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

has_omniglot() { [ -e "$1/images_background.zip" ] || [ -d "$1/images_background" ]; }

if [ $# -ge 1 ]; then
  DATA=$1
else
  DATA=""
  for candidate in ./datasets/omniglot "${FRN_SHARED:-../shared}/data/omniglot" ../shared/data/omniglot; do
    if has_omniglot "$candidate"; then DATA=$candidate; break; fi
  done
fi
if [ -z "$DATA" ] || ! has_omniglot "$DATA"; then
  cat >&2 <<EOF
error: no Omniglot data found${DATA:+ in $DATA}.
  Get it with:   python tools/download_omniglot.py --dst datasets/omniglot
  or place images_background.zip and images_evaluation.zip (from github.com/brendenlake/omniglot,
  python/ folder) in datasets/omniglot/, or pass the folder that has them:
                 bash scripts/quickstart.sh /path/to/omniglot
EOF
  exit 2
fi
DATA=$(realpath "$DATA")
CKPT=./checkpoints/quickstart
RESULTS=./results/quickstart
COMMON=(--dataset omniglot --omniglot_split background --data_path "$DATA" --model Conv4 --image_size 42)
start=$(date +%s)

echo "== 1/3 pretraining: every training character has a class matrix (1 epoch)"
python pretrain.py "${COMMON[@]}" --batch_size 128 --lr 0.1 --epoch 1 --milestones 10 \
  --val_n_episode 300 --print_freq 40 --checkpoint_dir "$CKPT"
PRE=$CKPT/omniglot/Conv4_stl_frn_pretrain

echo "== 2/3 meta-training: 20-way 5-shot 15-query episodes, from the pretrained model"
python meta_train.py "${COMMON[@]}" --train_n_way 20 --n_shot 5 --n_query 15 --train_n_episode 100 --epoch 1 \
  --lr 0.1 --milestones 10 --val_n_episode 300 --print_freq 25 --checkpoint_dir "$CKPT" \
  --pretrain_path "$PRE/best_model.pdparams"
META=$CKPT/omniglot/Conv4_meta_frn_20way_5shot_metatrain

echo "== 3/3 testing on the evaluation alphabets: 5-way 1-shot and 5-shot, 1000 episodes each"
for SHOT in 1 5; do
  python test.py "${COMMON[@]}" --n_shot "$SHOT" --n_query 15 --test_task_nums 1 --test_n_episode 1000 \
    --model_path "$META/best_model.pdparams" --results_dir "$RESULTS"
done

python - "$RESULTS" "$PRE" "$META" "$start" <<'EOF'
import json, sys, time
results, pre, meta, start = sys.argv[1:5]
print('\n== quick start done in %.1f minutes' % ((time.time() - int(start)) / 60))
for shot in (1, 5):
    r = json.load(open(f'{results}/5w{shot}s/omniglot_Conv4_meta_frn.json'))
    print(f'5-way {shot}-shot: {r["acc"]:.2f}% +- {r["ci95"]:.2f}% ({r["test_n_episode"]} episodes)')
print(f'checkpoints and logs: {pre}/ and {meta}/ (output.log, best_model.pdparams)')
print(f'training curves:      {pre}/curves.png, {meta}/curves.png')
print(f'test results:         {results}/5w1s/, {results}/5w5s/ (JSON and log)')
EOF
