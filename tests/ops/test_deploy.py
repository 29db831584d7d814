"""The systemd units verify cleanly and stay hardened; sd_notify and the heartbeat behave."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tradebot.ops.heartbeat import heartbeat_age_seconds, read_heartbeat, write_heartbeat
from tradebot.ops.systemd import SystemdNotifier

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["tradebot.service", "tradebot-watchdog.service", "tradebot-web.service"]
MAX_EXPOSURE = 2.5
MAX_EXPOSURE_BY_UNIT = {"tradebot-web.service": 2.0}
"""The dashboard faces a browser: its unit is held to a stricter score than the daemon's."""


def _localised_unit(name: str, tmp: Path) -> Path:
    """The unit with its ExecStart pointed at this checkout's venv (verify insists the binary exists)."""
    exe = Path(sys.executable).parent / "tradebot"
    text = (ROOT / "deploy" / name).read_text().replace("/opt/tradebot/.venv/bin/tradebot", str(exe))
    out = tmp / name
    out.write_text(text)
    return out


@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies_without_warnings(name: str, tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), ".ci/run installs Debian's systemd package"
    unit = _localised_unit(name, tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if str(unit) in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


@pytest.mark.parametrize("name", UNITS)
def test_unit_exposure_score_is_low(name: str, tmp_path: Path) -> None:
    unit = _localised_unit(name, tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE_BY_UNIT.get(name, MAX_EXPOSURE)


def test_web_unit_listens_on_loopback_only_and_cannot_write_code() -> None:
    text = (ROOT / "deploy" / "tradebot-web.service").read_text()
    for line in ("ExecStart=/opt/tradebot/.venv/bin/tradebot web\n", "IPAddressDeny=any", "IPAddressAllow=localhost",
                 "MemoryDenyWriteExecute=yes", "User=tradebot", "ProtectSystem=strict", "CapabilityBoundingSet=\n",
                 "NoNewPrivileges=yes", "EnvironmentFile=-/opt/tradebot/.env"):
        assert line in text, line
    assert "--allow-remote" not in text and "--host" not in text  # the default, 127.0.0.1:8000


def test_daemon_unit_is_notify_with_watchdog_and_restart() -> None:
    text = (ROOT / "deploy" / "tradebot.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/opt/tradebot/data", "CapabilityBoundingSet=\n",
                 "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "PrivateDevices=yes",
                 "ProtectHome=yes", "PrivateTmp=yes", "User=tradebot"):
        assert line in text, line


def test_sd_notify_sends_datagrams_and_is_a_noop_outside_systemd(tmp_path: Path) -> None:
    assert not SystemdNotifier(socket_path="").ready()
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.extend(srv.recv(4096) for _ in range(3)))
    t.start()
    n = SystemdNotifier(socket_path=path)
    assert n.ready("trading MES") and n.watchdog() and n.status("line one\nline two")
    t.join(5)
    srv.close()
    assert got == [b"READY=1\nSTATUS=trading MES", b"WATCHDOG=1", b"STATUS=line one line two"]


def test_sd_notify_abstract_socket() -> None:
    name = f"@tradebot-test-{os.getpid()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind("\0" + name[1:])
    srv.settimeout(5)
    assert SystemdNotifier(socket_path=name).watchdog()
    assert srv.recv(100) == b"WATCHDOG=1"
    srv.close()


def test_heartbeat_is_atomic_and_tolerant(tmp_path: Path) -> None:
    p = tmp_path / "data" / "heartbeat.json"
    assert read_heartbeat(p) is None
    write_heartbeat(p, {"ts_ns": 10**18, "pid": 1})
    assert read_heartbeat(p) == {"ts_ns": 10**18, "pid": 1}
    assert heartbeat_age_seconds(read_heartbeat(p), 10**18 + 3 * 10**9) == 3.0
    assert not [f for f in p.parent.iterdir() if f.name.startswith(".heartbeat")]  # no temp files left
    p.write_text("{trunc")
    assert read_heartbeat(p) is None and heartbeat_age_seconds(None, 0) is None
    p.write_text(json.dumps([1, 2]))
    assert read_heartbeat(p) is None
