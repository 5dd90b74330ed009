#!/usr/bin/env bash
# Make sure Debian's chromium is installed: the console's browser tests drive it through Playwright.
# Playwright's own browser download is never used (`playwright install` is not run).
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium not found: installing Debian's chromium package (for the console's browser tests)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null && command -v chromium >/dev/null && exit 0
fi
cat >&2 <<'MSG'
chromium not found, so the console's browser tests will be skipped. To run them, install it:
  Debian/Ubuntu:  sudo apt-get install chromium
MSG
exit 0
