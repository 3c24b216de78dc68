#!/usr/bin/env bash
# 901 BaseTemplateGPU: phoenix's NVIDIA step installed the userspace driver; prove it.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
log "driver wanted: ${PHOENIX_NVIDIA_DRIVER_VERSION:-unset}"
ct nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ct_apt_install nvtop
