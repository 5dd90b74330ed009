#!/usr/bin/env bash
# Make sure a redis-server binary is on PATH: Payhook starts its own, on its own port.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not found: installing Debian's redis-server package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d 101 stops the package from starting a system Redis on 6379; Payhook runs its own.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    command -v redis-server >/dev/null && exit 0
fi
cat >&2 <<'MSG'
Payhook needs a redis-server binary (Redis 6.2 or newer) on PATH. Install it, then run make again:
  Debian/Ubuntu:  sudo apt-get install redis-server
  Fedora:         sudo dnf install redis
  macOS:          brew install redis
MSG
exit 1
