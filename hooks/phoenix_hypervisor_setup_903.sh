#!/usr/bin/env bash
# 903 BaseTemplateDockerGPU: containers in this CT reach the GPU through the NVIDIA runtime.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
ct nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ct docker run --rm --gpus all nvidia/cuda:12.8.0-base-ubuntu24.04 nvidia-smi -L
