#!/usr/bin/env bash
# Make sure kubectl is on PATH: tests/deploy renders the kustomize overlays with `kubectl kustomize`.
set -euo pipefail
command -v kubectl >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "kubectl not found: installing Debian's kubectl package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends kubectl >/dev/null
    command -v kubectl >/dev/null && exit 0
fi
cat >&2 <<'MSG'
Payhook's deploy tests need kubectl (1.27 or newer, for `kubectl kustomize`) on PATH. Install it, then run make again:
  Debian/Ubuntu:  sudo apt-get install kubectl
  Fedora:         sudo dnf install kubectl
  macOS:          brew install kubectl
  elsewhere:      https://kubernetes.io/docs/tasks/tools/
MSG
exit 1
