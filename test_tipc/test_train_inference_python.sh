#!/bin/bash
# The TIPC train-to-inference chain of one config, on the CPU:
#   bash test_tipc/test_train_inference_python.sh test_tipc/configs/FRN_Conv4/train_infer_python.txt lite_train_lite_infer
# Steps: pretrain -> meta-train (from the pretrained weights) -> test -> export -> inference through
# paddle.inference and through the dygraph checkpoint. Each prints a "Run successfully" or "Run failed"
# line, also collected in test_tipc/output/<model>/<mode>/results_python.log beside each step's log.
# The exit code is the number of failed steps (0: all passed).
set -uo pipefail
cd "$(dirname "$0")/.."
source test_tipc/common_func.sh
config=${1:?usage: test_train_inference_python.sh CONFIG MODE}
mode=${2:-lite_train_lite_infer}

value() { func_parser_mode_value "$(func_config_value "$config" "$1")" "$mode"; }
model_name=$(value model_name)
python=$(value python)
model=$(value --model)
image_size=$(value --image_size)
data_path=$(value --data_path)
checkpoint_dir=$(value --checkpoint_dir)
threads=$(value --threads)
epoch=$(value --epoch)
model_file=$(value train_model_name)
save_dir=$(value --save_dir)

log_dir="./test_tipc/output/${model_name}/${mode}"
status_log="${log_dir}/results_python.log"
rm -rf "$log_dir" "$checkpoint_dir" "$save_dir"
mkdir -p "$log_dir"
if [ ! -f "${data_path}/test.csv" ]; then
    echo "no data in ${data_path}: run bash test_tipc/prepare.sh ${config} ${mode} first" | tee -a "$status_log"
    exit 1
fi
common="--model ${model} --image_size ${image_size} --data_path ${data_path} --threads ${threads}"
failed=0

# step NAME COMMAND: run it with its log in log_dir, then the status line
step() {
    local name=$1 command=$2 step_log="${log_dir}/$1.log"
    echo "+ ${command}" > "$step_log"
    eval "$command" >> "$step_log" 2>&1
    local code=$?
    status_check "$code" "$command" "$status_log" "$model_name" "$step_log"
    [ "$code" -eq 0 ] || failed=$((failed + 1))
}

pretrained="${checkpoint_dir}/$(value pretrain.run_dir)/${model_file}"
meta="${checkpoint_dir}/$(value meta_train.run_dir)/${model_file}"

step pretrain "${python} $(value pretrain) ${common} --epoch ${epoch} --batch_size $(value pretrain.--batch_size) --val_n_episode $(value pretrain.--val_n_episode) --checkpoint_dir ${checkpoint_dir}"
step meta_train "${python} $(value meta_train) ${common} --epoch ${epoch} --train_n_episode $(value meta_train.--train_n_episode) --val_n_episode $(value meta_train.--val_n_episode) --checkpoint_dir ${checkpoint_dir} --pretrain_path ${pretrained}"
step eval "${python} $(value eval) ${common} --model_path ${meta} --test_n_episode $(value eval.--test_n_episode) --results_dir $(value eval.--results_dir)"
step export "${python} $(value norm_export) --model_path ${meta} --save_dir ${save_dir} --threads ${threads}"
infer="${python} $(value inference) --support $(value --support) --query $(value --query) --threads ${threads}"
if [ "$(value --gpu)" = "True" ]; then infer="${infer} --gpu"; fi
step infer_inference "${infer} --inference_dir ${save_dir}"
step infer_dygraph "${infer} --model_path ${meta}"

echo "${model_name} ${mode}: $((6 - failed)) of 6 steps passed; status lines in ${status_log}"
exit "$failed"
