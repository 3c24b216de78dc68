#!/usr/bin/env bash
# phoenix_hypervisor_lxc_docker.sh <CTID> <portainer_role> <portainer_server_ip> <portainer_agent_port>
#
# phoenix's built-in Docker step, under the original orchestrator's name and contract: it
# runs ON THE HOST, after a container with `nesting=1` is ready, with `pct` on PATH. A
# script of this name in the hooks directory replaces it (and is hashed like it).
#
# It pushes its in-container part and runs it with `pct exec`: Docker (the
# distribution's docker.io, with the overlay2 storage driver), the NVIDIA
# container runtime (GPU nodes only) and the Portainer server or agent (per
# portainer_role). Idempotent: every part checks before it acts.
#
# Environment (set by phoenix, besides the hook contract's):
#   PHOENIX_GPU                                       1 when the node has GPUs, else 0
#   PHOENIX_PORTAINER_SERVER_IMAGE, PHOENIX_PORTAINER_AGENT_IMAGE
#   PHOENIX_NVIDIA_REPO_URL                           (GPU only)
set -euo pipefail

ctid=${1:?usage: $0 <CTID> <portainer_role> <portainer_server_ip> <portainer_agent_port>}
role=${2:-none}
server_ip=${3:-}
agent_port=${4:-9001}

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

inner=$(mktemp /tmp/phoenix-step-docker.XXXXXX)
trap 'rm -f "$inner"' EXIT
cat >"$inner" <<'IN_THE_CONTAINER'
#!/usr/bin/env bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

gpu=${PHOENIX_GPU:-0}
role=${PHOENIX_PORTAINER_ROLE:-none}

if ! command -v docker >/dev/null 2>&1; then
    echo "docker: installing Docker from the distribution's packages (docker.io)"
    # overlay2 keeps images inside the CT's root filesystem: on a btrfs store Docker would
    # otherwise make subvolumes of its own, which the CT's snapshots do not contain.
    install -d -m 0755 /etc/docker
    [ -e /etc/docker/daemon.json ] || echo '{ "storage-driver": "overlay2" }' > /etc/docker/daemon.json
    apt-get update -q
    apt-get install -y -q --no-install-recommends docker.io ca-certificates curl gnupg
else
    echo "docker: already installed ($(docker --version))"
fi
systemctl enable --now docker

if [ "$gpu" = 1 ]; then
    if ! command -v nvidia-ctk >/dev/null 2>&1; then
        echo "docker: installing the NVIDIA container toolkit"
        curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
            | gpg --dearmor -o /etc/apt/keyrings/nvidia-container-toolkit.gpg
        curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
            | sed 's#deb https://#deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.gpg] https://#' \
            > /etc/apt/sources.list.d/nvidia-container-toolkit.list
        apt-get update -q
        apt-get install -y -q nvidia-container-toolkit
    fi
    # Registers the runtime in /etc/docker/daemon.json (merging, not overwriting).
    # LXC has no cgroup device control for nested containers.
    nvidia-ctk runtime configure --runtime=docker
    nvidia-ctk config --set nvidia-container-cli.no-cgroups --in-place
    systemctl restart docker
fi

docker info >/dev/null

running() { [ -n "$(docker ps -q --filter "name=^$1\$")" ]; }

case "$role" in
server)
    image=${PHOENIX_PORTAINER_SERVER_IMAGE:?}
    if running portainer; then
        echo "portainer: server already running"
    else
        docker rm -f portainer >/dev/null 2>&1 || true
        docker volume create portainer_data >/dev/null
        docker pull "$image" || { echo "docker: cannot pull the Portainer server image $image (is the registry reachable from the CT?)" >&2; exit 1; }
        docker run -d --name portainer --restart=always \
            -p 9443:9443 -p 8000:8000 \
            -v /var/run/docker.sock:/var/run/docker.sock \
            -v portainer_data:/data "$image"
    fi
    ;;
agent)
    image=${PHOENIX_PORTAINER_AGENT_IMAGE:?}
    if running portainer_agent; then
        echo "portainer: agent already running"
    else
        docker rm -f portainer_agent >/dev/null 2>&1 || true
        docker pull "$image" || { echo "docker: cannot pull the Portainer agent image $image (is the registry reachable from the CT?)" >&2; exit 1; }
        docker run -d --name portainer_agent --restart=always \
            -p "${PHOENIX_PORTAINER_AGENT_PORT:-9001}:9001" \
            -v /var/run/docker.sock:/var/run/docker.sock \
            -v /var/lib/docker/volumes:/var/lib/docker/volumes "$image"
    fi
    ;;
none) ;;
*)
    echo "docker: unknown portainer role '$role'" >&2
    exit 2
    ;;
esac
IN_THE_CONTAINER

push_verified "$inner" /tmp/phoenix-step-docker.sh 755
pct exec "$ctid" -- env \
    PHOENIX_GPU="${PHOENIX_GPU:-0}" \
    PHOENIX_PORTAINER_ROLE="$role" \
    PHOENIX_PORTAINER_SERVER_IMAGE="${PHOENIX_PORTAINER_SERVER_IMAGE:-}" \
    PHOENIX_PORTAINER_AGENT_IMAGE="${PHOENIX_PORTAINER_AGENT_IMAGE:-}" \
    PHOENIX_PORTAINER_SERVER_IP="$server_ip" \
    PHOENIX_PORTAINER_AGENT_PORT="$agent_port" \
    PHOENIX_NVIDIA_REPO_URL="${PHOENIX_NVIDIA_REPO_URL:-}" \
    bash /tmp/phoenix-step-docker.sh
