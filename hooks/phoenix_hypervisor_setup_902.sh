#!/usr/bin/env bash
# 902 BaseTemplateDocker: phoenix's Docker step installed Docker; prove it works.
. "$(dirname "$0")/lib/phoenix_hook_lib.sh"
ct docker info --format '{{.ServerVersion}}'
ct docker run --rm hello-world
