#!/usr/bin/env bash
# Deploy tradebot as a headless systemd service. Idempotent: running it twice changes nothing the second time.
#
#   sudo scripts/deploy_headless.sh            install or refresh: user, /opt/tradebot, venv, units, enable
#   sudo scripts/deploy_headless.sh --start    start daemon and watchdog
#   sudo scripts/deploy_headless.sh --stop     stop both
#   sudo scripts/deploy_headless.sh --restart  restart both
#   sudo scripts/deploy_headless.sh --logs     follow the daemon's journal
#   sudo scripts/deploy_headless.sh --update   git pull in the source tree, reinstall, restart
#
# DRY_RUN=1 prints the commands instead of running them (the tests use it). PREFIX, SERVICE_USER override paths.
set -euo pipefail

PREFIX="${PREFIX:-/opt/tradebot}"
SERVICE_USER="${SERVICE_USER:-tradebot}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
UNITS=(tradebot.service tradebot-watchdog.service)

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

need_root() {
  if [ "${DRY_RUN:-0}" != 1 ] && [ "$(id -u)" != 0 ]; then
    echo "deploy_headless.sh: run as root (sudo)" >&2
    exit 1
  fi
}

install_all() {
  need_root
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    run useradd --system --home-dir "$PREFIX" --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
  run mkdir -p "$PREFIX" "$PREFIX/data" "$PREFIX/logs"
  if [ "$SRC" != "$PREFIX" ]; then
    run rsync -a --delete --exclude .venv --exclude data --exclude logs --exclude .env --exclude .git \
      "$SRC/" "$PREFIX/"
  fi
  if [ ! -x "$PREFIX/.venv/bin/python" ]; then
    run python3 -m venv "$PREFIX/.venv"
  fi
  run "$PREFIX/.venv/bin/pip" install -q --upgrade pip
  run "$PREFIX/.venv/bin/pip" install -q "$PREFIX"
  if [ ! -f "$PREFIX/.env" ]; then
    run install -m 0600 "$PREFIX/.env.example" "$PREFIX/.env"
  fi
  run chown -R "$SERVICE_USER:$SERVICE_USER" "$PREFIX/data" "$PREFIX/logs" "$PREFIX/.env"
  for u in "${UNITS[@]}"; do
    run install -m 0644 "$PREFIX/deploy/$u" "$UNIT_DIR/$u"
  done
  run systemctl daemon-reload
  run systemctl enable "${UNITS[@]}"
  echo "installed; edit $PREFIX/.env, run '$PREFIX/.venv/bin/tradebot preflight', then $0 --start"
}

case "${1:-}" in
  "") install_all ;;
  --start) need_root; run systemctl start "${UNITS[@]}" ;;
  --stop) need_root; run systemctl stop "${UNITS[@]}" ;;
  --restart) need_root; run systemctl restart "${UNITS[@]}" ;;
  --logs) run journalctl -u tradebot -u tradebot-watchdog -f ;;
  --update)
    need_root
    run git -C "$SRC" pull --ff-only
    install_all
    run systemctl restart "${UNITS[@]}"
    ;;
  -h|--help) sed -n '2,12p' "$0" ;;
  *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
esac
