# Shared helpers for phoenix hooks. Sourced, not executed. Its content is part of every
# node's hash, like the hooks themselves.
#
# Hooks run on the host with the hook contract of phoenix (see README): $1 is the CTID,
# PHOENIX_* variables describe the node, and `pct` on PATH acts on the node's host.

set -euo pipefail

ctid=${1:?usage: $0 <CTID>}
[ "$ctid" = "${PHOENIX_CTID:-$ctid}" ] || { echo "CTID argument $ctid differs from PHOENIX_CTID=$PHOENIX_CTID" >&2; exit 2; }

log() { printf '[%s %s] %s\n' "$ctid" "${PHOENIX_NAME:-?}" "$*"; }

# Runs a command inside the container, argument by argument (no shell string).
ct() { pct exec "$ctid" -- "$@"; }

# Copies a host file into the container and proves it arrived before anything runs it:
# Proxmox's `pct push` reports a failed transfer only on its output and exits 0, and a
# clone may hold its parent's copy of the file at that path. Usage:
#   ct_push <host file> <path in the CT> [mode, default 0644]
ct_push() {
    local src=$1 dest=$2 perms=${3:-0644} check
    check=$(mktemp -d /tmp/phoenix-push-check.XXXXXX)
    pct push "$ctid" "$src" "$dest" --perms "$perms"
    pct pull "$ctid" "$dest" "$check/pulled" >/dev/null 2>&1 || true
    if ! cmp -s "$src" "$check/pulled"; then
        rm -rf "$check"
        log "the push of $src to $dest did not arrive intact (pct push reports some failures only in its output)" >&2
        return 1
    fi
    rm -rf "$check"
}

# True when a Debian package is installed inside the container.
ct_has_pkg() { ct dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Installs Debian packages inside the container, skipping those already there.
ct_apt_install() {
    local missing=()
    for p in "$@"; do
        ct_has_pkg "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages already installed: $*"
        return 0
    fi
    log "installing: ${missing[*]}"
    ct env DEBIAN_FRONTEND=noninteractive apt-get update -q
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# Reads a string field of this node's config block (PHOENIX_CONFIG_BLOCK, JSON).
block_field() {
    python3 -c 'import json,os,sys; v=json.loads(os.environ["PHOENIX_CONFIG_BLOCK"]).get(sys.argv[1]); print("" if v is None else v)' "$1"
}
