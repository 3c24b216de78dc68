#!/usr/bin/env bash
# 910 Portainer: the Docker step started the Portainer server; wait until it answers.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
for _ in $(seq 1 30); do
    code=$(ct curl -sk -o /dev/null -w '%{http_code}' https://localhost:9443 || true)
    case "$code" in
    200 | 302 | 401 | 403) log "Portainer answers on 9443 (HTTP $code)"; exit 0 ;;
    esac
    sleep 2
done
log "Portainer did not answer on https://localhost:9443"
exit 1
