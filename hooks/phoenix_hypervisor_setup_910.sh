#!/usr/bin/env bash
# 910 Portainer: the Docker step started the Portainer server; wait until it answers.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
if ct curl -skf --retry 30 --retry-delay 2 --retry-all-errors -o /dev/null https://localhost:9443; then
    log "Portainer answers on https://localhost:9443"
else
    log "Portainer did not answer on https://localhost:9443 within 60 s"
    exit 1
fi
