#!/bin/bash
# Helpers for the TIPC scripts: read "key:value" lines of a train_infer_python.txt, pick a value by mode,
# and print the status line of a step.

# the key of a "key:value" line
func_parser_key() {
    echo "${1%%:*}"
}

# the value of a "key:value" line (everything after the first colon)
func_parser_value() {
    echo "${1#*:}"
}

# the value of the line whose key is $2 in the config file $1
func_config_value() {
    local line
    line=$(grep -m1 "^$2:" "$1") || { echo "null"; return; }
    func_parser_value "$line"
}

# a value written per mode, "lite_train_lite_infer=1|whole_train_whole_infer=150": the part for mode $2
# (a value without '=' is the same in every mode)
func_parser_mode_value() {
    local value=$1 mode=$2 part
    if [[ $value != *=* ]]; then
        echo "$value"
        return
    fi
    IFS='|' read -ra parts <<< "$value"
    for part in "${parts[@]}"; do
        if [[ ${part%%=*} == "$mode" ]]; then
            echo "${part#*=}"
            return
        fi
    done
    echo "null"
}

# status_check EXIT_CODE COMMAND STATUS_LOG MODEL_NAME STEP_LOG: one line per step, also appended to STATUS_LOG
status_check() {
    local code=$1 command=$2 status_log=$3 model_name=$4 step_log=$5
    if [ "$code" -eq 0 ]; then
        echo -e "\033[33m Run successfully with command - ${model_name} - ${command} - ${step_log} \033[0m" | tee -a "$status_log"
    else
        echo -e "\033[33m Run failed with command - ${model_name} - ${command} - ${step_log} \033[0m" | tee -a "$status_log"
    fi
}
