#!/usr/bin/env bash
# 920 BaseTemplateVLLM: pre-pull the vLLM image so every clone starts without a download.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
image=vllm/vllm-openai:v0.10.1
if ct docker image inspect "$image" >/dev/null 2>&1; then
    log "$image already present"
else
    ct docker pull "$image"
fi
