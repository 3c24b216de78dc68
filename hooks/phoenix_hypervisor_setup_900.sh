#!/usr/bin/env bash
# 900 BaseTemplate: the base OS every other node descends from.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
ct_apt_install curl wget vim htop jq git rsync gnupg locales ca-certificates
if ! ct locale -a 2>/dev/null | grep -qi '^en_US.utf8$'; then
    log "generating en_US.UTF-8"
    ct sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
    ct locale-gen
fi
ct update-locale LANG=en_US.UTF-8
