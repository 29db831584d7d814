#!/usr/bin/env bash
# Deploy tradebot as a headless systemd service. Idempotent: running it twice changes nothing the second time.
#
#   sudo scripts/deploy_headless.sh            install or refresh: prerequisites, user, /opt/tradebot, venv, units
#   sudo scripts/deploy_headless.sh --check    only check (and report) the prerequisites
#   sudo scripts/deploy_headless.sh --start    start daemon and watchdog
#   sudo scripts/deploy_headless.sh --stop     stop both
#   sudo scripts/deploy_headless.sh --restart  restart both
#   sudo scripts/deploy_headless.sh --logs     follow the daemon's journal
#   sudo scripts/deploy_headless.sh --update   git pull in the source tree, reinstall, restart
#
# Environment: PREFIX (default /opt/tradebot) and SERVICE_USER (default tradebot) are filled into the units;
# PYTHON (default python3, >= 3.11) builds the venv; DESTDIR=/some/root stages the whole install under that root
# (no user is created, nothing is chowned to a missing user, systemctl is not run; the tests use it);
# NO_SYSTEMCTL=1 skips systemctl; NO_APT=1 only reports missing Debian packages instead of installing them;
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail

PREFIX="${PREFIX:-/opt/tradebot}"
SERVICE_USER="${SERVICE_USER:-tradebot}"
PYTHON="${PYTHON:-python3}"
DESTDIR="${DESTDIR:-}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
UNITS=(tradebot.service tradebot-watchdog.service)
OPTIONAL_UNITS=(tradebot-web.service)  # installed, not enabled: the dashboard needs TRADEBOT_WEB__TOKEN first
MIN_PY="3.11"

if ! [[ "$PREFIX" =~ ^/[A-Za-z0-9._/-]+$ ]]; then
  echo "deploy_headless.sh: PREFIX must be an absolute path of letters, digits and ._/- (got '$PREFIX')" >&2; exit 2
fi
if ! [[ "$SERVICE_USER" =~ ^[a-z_][a-z0-9_-]*$ ]]; then
  echo "deploy_headless.sh: SERVICE_USER must be a plain user name (got '$SERVICE_USER')" >&2; exit 2
fi
ROOT_DIR="$DESTDIR$PREFIX"      # where files go (the staging root in front of the real prefix)
UNIT_DEST="$DESTDIR$UNIT_DIR"

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

say() { printf 'deploy: %s\n' "$*" >&2; }

need_root() {
  if [ "${DRY_RUN:-0}" != 1 ] && [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "deploy_headless.sh: run as root (sudo)" >&2
    exit 1
  fi
}

use_systemctl() {
  [ -z "$DESTDIR" ] && [ "${NO_SYSTEMCTL:-0}" != 1 ] && { [ "${DRY_RUN:-0}" = 1 ] || command -v systemctl >/dev/null 2>&1; }
}

# -- prerequisites (a fresh Debian 12 has python3 3.11 but neither rsync nor python3-venv) ------------------
missing_packages() {
  local pkgs=()
  command -v rsync >/dev/null 2>&1 || pkgs+=(rsync)
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    pkgs+=(python3 python3-venv)
  elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pkgs+=(python3-venv)           # Debian splits ensurepip out of python3: `python3 -m venv` fails without it
  fi
  printf '%s\n' "${pkgs[@]}"
}

python_ok() {
  "$PYTHON" -c "import sys; sys.exit(0 if sys.version_info >= tuple(map(int, '$MIN_PY'.split('.'))) else 1)" \
    >/dev/null 2>&1
}

check_prereqs() {
  local install="${1:-yes}"
  mapfile -t pkgs < <(missing_packages | sed '/^$/d')
  if [ "${#pkgs[@]}" -gt 0 ]; then
    if [ "$install" = yes ] && [ "${NO_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${pkgs[*]} (apt-get)"
      run apt-get update -qq
      run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
    else
      say "missing Debian packages: ${pkgs[*]} (sudo apt-get install ${pkgs[*]})"
      return 1
    fi
  fi
  if [ "${DRY_RUN:-0}" != 1 ] || command -v "$PYTHON" >/dev/null 2>&1; then
    if ! python_ok; then
      say "$PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo absent);" \
          "tradebot needs Python >= $MIN_PY (Debian 12 ships 3.11; set PYTHON=python3.11 if several are installed)"
      return 1
    fi
  fi
  say "prerequisites ok: rsync, $PYTHON $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null)" \
      "with venv"
}

# -- the units, filled in for this PREFIX and SERVICE_USER -------------------------------------------------
render_unit() {
  # The repository's units are written for /opt/tradebot and the user tradebot; substitute both exactly.
  sed -e "s#/opt/tradebot#${PREFIX}#g" \
      -e "s#^User=tradebot\$#User=${SERVICE_USER}#" \
      -e "s#^Group=tradebot\$#Group=${SERVICE_USER}#" \
      "$1"
}

install_units() {
  run mkdir -p "$UNIT_DEST"
  for u in "${UNITS[@]}" "${OPTIONAL_UNITS[@]}"; do
    if [ "${DRY_RUN:-0}" = 1 ]; then
      printf '+ render %s -> %s (PREFIX=%s, SERVICE_USER=%s)\n' "$ROOT_DIR/deploy/$u" "$UNIT_DEST/$u" "$PREFIX" \
        "$SERVICE_USER"
      continue
    fi
    local tmp
    tmp="$(mktemp)"
    render_unit "$ROOT_DIR/deploy/$u" > "$tmp"
    if [ -f "$UNIT_DEST/$u" ] && cmp -s "$tmp" "$UNIT_DEST/$u"; then
      rm -f "$tmp"
    else
      install -m 0644 "$tmp" "$UNIT_DEST/$u"
      rm -f "$tmp"
      say "unit $UNIT_DEST/$u written"
    fi
  done
}

install_all() {
  need_root
  check_prereqs yes
  if [ -z "$DESTDIR" ]; then
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
      run useradd --system --home-dir "$PREFIX" --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
  else
    say "DESTDIR=$DESTDIR: staging under it; user $SERVICE_USER not created, systemctl not run"
  fi
  run mkdir -p "$ROOT_DIR" "$ROOT_DIR/data" "$ROOT_DIR/logs"
  if [ "$SRC" != "$ROOT_DIR" ]; then
    run rsync -a --delete --exclude /.venv --exclude /data --exclude /logs --exclude /.env --exclude .git \
      --exclude .mypy_cache --exclude .ruff_cache --exclude .pytest_cache --exclude .hypothesis \
      --exclude __pycache__ --exclude '*.egg-info' --exclude /build "$SRC/" "$ROOT_DIR/"
  fi
  if [ ! -x "$ROOT_DIR/.venv/bin/python" ]; then
    run "$PYTHON" -m venv "$ROOT_DIR/.venv"
  fi
  run "$ROOT_DIR/.venv/bin/pip" install -q --upgrade pip
  run "$ROOT_DIR/.venv/bin/pip" install -q "$ROOT_DIR"
  if [ ! -f "$ROOT_DIR/.env" ]; then
    run install -m 0600 "$ROOT_DIR/.env.example" "$ROOT_DIR/.env"
  fi
  if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    run chown -R "$SERVICE_USER:$SERVICE_USER" "$ROOT_DIR/data" "$ROOT_DIR/logs" "$ROOT_DIR/.env"
  elif [ -z "$DESTDIR" ] && [ "${DRY_RUN:-0}" != 1 ]; then
    say "user $SERVICE_USER does not exist"; exit 1
  fi
  install_units
  if use_systemctl; then
    run systemctl daemon-reload
    run systemctl enable "${UNITS[@]}"
  else
    say "systemctl skipped; later: systemctl daemon-reload && systemctl enable ${UNITS[*]}"
  fi
  echo "installed in $ROOT_DIR; edit $PREFIX/.env, run '$PREFIX/.venv/bin/tradebot preflight', then $0 --start"
  echo "dashboard (optional): set TRADEBOT_WEB__TOKEN in $PREFIX/.env, then systemctl enable --now tradebot-web"
}

case "${1:-}" in
  "") install_all ;;
  --check) check_prereqs no ;;
  --start) need_root; run systemctl start "${UNITS[@]}" ;;
  --stop) need_root; run systemctl stop "${UNITS[@]}" ;;
  --restart) need_root; run systemctl restart "${UNITS[@]}" ;;
  --logs) run journalctl -u tradebot -u tradebot-watchdog -f ;;
  --update)
    need_root
    run git -C "$SRC" pull --ff-only
    install_all
    if use_systemctl; then run systemctl restart "${UNITS[@]}"; fi
    ;;
  -h|--help) sed -n '2,17p' "$0" ;;
  *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
esac
