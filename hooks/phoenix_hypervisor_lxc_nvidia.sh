#!/usr/bin/env bash
# phoenix built-in step: NVIDIA userspace driver inside a GPU container.
#
# Runs INSIDE the container (phoenix pushes it and runs it with `pct exec`). The host
# already has the kernel module; this installs only the matching userspace part, from the
# runfile, with --no-kernel-module. Idempotent: a container whose nvidia-smi already
# reports the wanted version is left alone.
#
# Environment (set by phoenix):
#   PHOENIX_NVIDIA_DRIVER_VERSION  e.g. 580.76.05 (equal to the host's kernel driver)
#   PHOENIX_NVIDIA_RUNFILE_URL     NVIDIA-Linux-x86_64-<version>.run
#   PHOENIX_NVIDIA_REPO_URL        CUDA apt repository (optional)
set -euo pipefail

version=${PHOENIX_NVIDIA_DRIVER_VERSION:?PHOENIX_NVIDIA_DRIVER_VERSION is not set}
runfile_url=${PHOENIX_NVIDIA_RUNFILE_URL:?PHOENIX_NVIDIA_RUNFILE_URL is not set}
repo_url=${PHOENIX_NVIDIA_REPO_URL:-}

installed_version() {
    command -v nvidia-smi >/dev/null 2>&1 || return 1
    nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1
}

if [ "$(installed_version || true)" = "$version" ]; then
    echo "nvidia: userspace driver $version already installed"
else
    echo "nvidia: installing userspace driver $version"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends ca-certificates curl kmod pkg-config libglvnd-dev
    runfile=/tmp/NVIDIA-Linux-$version.run
    curl -fsSL --retry 3 -o "$runfile" "$runfile_url"
    sh "$runfile" --silent --no-kernel-module --no-x-check --no-nouveau-check \
        --no-nvidia-modprobe --no-dkms --no-questions --ui=none
    rm -f "$runfile"
fi

if [ -n "$repo_url" ] && [ ! -f /etc/apt/sources.list.d/cuda-phoenix.list ]; then
    echo "nvidia: adding CUDA repository $repo_url"
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL "${repo_url%/}/3bf863cc.pub" | gpg --dearmor -o /etc/apt/keyrings/cuda-archive-keyring.gpg
    echo "deb [signed-by=/etc/apt/keyrings/cuda-archive-keyring.gpg] ${repo_url%/}/ /" \
        > /etc/apt/sources.list.d/cuda-phoenix.list
    apt-get update -q
fi

# The devices are bind-mounted by the host config; the driver must see them.
nvidia-smi
