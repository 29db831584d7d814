#!/usr/bin/env bash
# Debian packages the test suite needs, installed only when missing (idempotent; `make test` calls this).
#   systemd-analyze          (systemd)         : the deploy tests verify and score the units
#   chromium, chromedriver   (chromium, chromium-driver): the dashboard's browser tests (Selenium, headless)
# Runs apt-get as root (directly, or through sudo when available); does nothing when everything is present.
set -euo pipefail
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages for the tests: ${missing[*]}" >&2
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "need root to install ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
