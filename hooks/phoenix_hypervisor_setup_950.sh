#!/usr/bin/env bash
# 950 vllmQwen3Coder: serve the configured model with vLLM's OpenAI-compatible server.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
model=$(block_field vllm_model)
tp=$(block_field vllm_tensor_parallel_size)
image=vllm/vllm-openai:v0.10.1
[ -n "$model" ] || { log "vllm_model is not set"; exit 2; }
if [ -n "$(ct docker ps -q --filter name=^vllm_server$)" ]; then
    log "vllm_server already running"
else
    ct docker rm -f vllm_server >/dev/null 2>&1 || true
    ct docker run -d --name vllm_server --restart=always --runtime nvidia --gpus all \
        --ipc=host -p 8000:8000 -v /root/.cache/huggingface:/root/.cache/huggingface \
        "$image" --model "$model" --tensor-parallel-size "${tp:-1}" --host 0.0.0.0
fi
for _ in $(seq 1 120); do
    if ct curl -sf http://localhost:8000/v1/models >/dev/null; then
        log "vLLM serves $model"
        exit 0
    fi
    sleep 5
done
log "vLLM did not answer on :8000 within 600 s"
exit 1
