#!/bin/bash
# Prepare the data of a TIPC mode:  bash test_tipc/prepare.sh test_tipc/configs/FRN_Conv4/train_infer_python.txt lite_train_lite_infer
#   lite_train_lite_infer  a lite mini-ImageNet-format set of real Tiny-ImageNet-32 photos from
#                          ../shared/data/tinyimagenet32_miniformat.tar.gz (or $FRN_SHARED/data/...):
#                          6/5/5 train/val/test classes of 20/12/12 images, plus support/query folders for infer.py
#   whole_train_whole_infer  the real mini-ImageNet: point DATA at it (see docs/data.md); nothing is downloaded
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: prepare.sh CONFIG MODE}
mode=${2:-lite_train_lite_infer}
python=$(grep -m1 '^python:' "$config" | cut -d: -f2-)
if [ "$mode" = "lite_train_lite_infer" ]; then
    "${python:-python}" test_tipc/build_lite_data.py --dst test_tipc/data/lite
else
    echo "mode $mode: no data to prepare here; use the full mini-ImageNet (docs/data.md) and edit the config's --data_path" >&2
    exit 2
fi
