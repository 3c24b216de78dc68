#!/usr/bin/env bash
# phoenix_hypervisor_lxc_nvidia.sh <CTID> <nvidia_driver_version> <nvidia_repo_url> <nvidia_runfile_url>
#
# phoenix's built-in NVIDIA step, under the original orchestrator's name and contract: it
# runs ON THE HOST, after the GPU container is ready, with `pct` on PATH. A script of this
# name in the hooks directory replaces it (and is hashed like it).
#
# It pushes its in-container part and runs it with `pct exec`: the host already has the
# kernel module; the container gets only the matching userspace driver, from the runfile,
# with --no-kernel-module. Idempotent: a container whose nvidia-smi already reports the
# wanted version is left alone.
set -euo pipefail

ctid=${1:?usage: $0 <CTID> <nvidia_driver_version> <nvidia_repo_url> <nvidia_runfile_url>}
version=${2:?the NVIDIA driver version is missing}
repo_url=${3:-}
runfile_url=${4:?the NVIDIA runfile URL is missing}

# Pushes a host file into the CT and proves it arrived: Proxmox's `pct push` reports a
# failed transfer on its output and still exits 0, and a clone may hold its parent's copy
# of the file at that very path. The file is pulled back and compared before it runs.
push_verified() {
    local src=$1 dest=$2 perms=$3 check
    check=$(mktemp -d /tmp/phoenix-push-check.XXXXXX)
    pct push "$ctid" "$src" "$dest" --perms "$perms"
    pct pull "$ctid" "$dest" "$check/pulled" >/dev/null 2>&1 || true
    if ! cmp -s "$src" "$check/pulled"; then
        rm -rf "$check"
        echo "the push to CT $ctid:$dest did not arrive intact (pct push reports some failures only in its output): not running it" >&2
        return 1
    fi
    rm -rf "$check"
}

inner=$(mktemp /tmp/phoenix-step-nvidia.XXXXXX)
trap 'rm -f "$inner"' EXIT
cat >"$inner" <<'IN_THE_CONTAINER'
#!/usr/bin/env bash
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
    curl -fsSL --retry 3 --connect-timeout 20 --max-time 1800 -o "$runfile" "$runfile_url" || {
        echo "nvidia: cannot download the driver runfile $runfile_url: the CT must reach it (nvidia_runfile_url)" >&2
        exit 1
    }
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
IN_THE_CONTAINER

push_verified "$inner" /tmp/phoenix-step-nvidia.sh 755
pct exec "$ctid" -- env \
    PHOENIX_NVIDIA_DRIVER_VERSION="$version" \
    PHOENIX_NVIDIA_RUNFILE_URL="$runfile_url" \
    PHOENIX_NVIDIA_REPO_URL="$repo_url" \
    bash /tmp/phoenix-step-nvidia.sh
