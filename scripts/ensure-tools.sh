#!/usr/bin/env bash
# Make sure `promtool` is on PATH: the observability tests check the scraped metrics and the alert rules with it.
# Missing promtool does not stop `make setup`; those checks then skip, saying why.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "promtool not found: installing Debian's prometheus package (for promtool only)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    # policy-rc.d 101 stops the package from starting a Prometheus server; only promtool is wanted.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null || true
    command -v promtool >/dev/null && exit 0
fi
cat >&2 <<'MSG'
promtool (Prometheus's checker) was not found; the tests that run `promtool check` will skip.
To run them, install it and run make again:
  Debian/Ubuntu:  sudo apt-get install prometheus
  macOS:          brew install prometheus
MSG
exit 0
