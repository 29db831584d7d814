"""scripts/deploy_headless.sh end to end into a scratch root (DESTDIR): prerequisites, venv, .env, templated units.

The script runs for real (rsync, python -m venv, pip, install); one thing differs from a server to keep the test
quick: pip installs tradebot without its dependencies (PIP_NO_DEPS; the build backend still comes from pip's
configured index, as on a server) and the installed venv then sees this checkout's dependencies through a .pth file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "deploy_headless.sh"
BASH = shutil.which("bash") or "/bin/bash"
BASE_PYTHON = os.path.realpath(sys._base_executable)  # type: ignore[attr-defined]


def deploy(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def test_install_into_a_scratch_root_with_templated_units(tmp_path: Path) -> None:
    assert shutil.which("rsync") and shutil.which("systemd-analyze"), "make test installs rsync and systemd"
    dest = tmp_path / "root"
    env = base_env(DESTDIR=str(dest), PREFIX="/srv/tb", SERVICE_USER="tbsvc", PYTHON=BASE_PYTHON, NO_APT="1",
                   PIP_NO_DEPS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = deploy(env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "prerequisites ok" in r.stderr and "systemctl skipped" in r.stderr
    inst = dest / "srv" / "tb"
    assert (inst / ".venv" / "bin" / "tradebot").exists() and (inst / "src" / "tradebot" / "cli.py").exists()
    assert stat.S_IMODE((inst / ".env").stat().st_mode) == 0o600
    assert (inst / "data").is_dir() and not (inst / ".git").exists()
    units = dest / "etc" / "systemd" / "system"
    daemon = (units / "tradebot.service").read_text()
    watchdog = (units / "tradebot-watchdog.service").read_text()
    for text, cmd in ((daemon, "run"), (watchdog, "watchdog")):
        assert "/opt/tradebot" not in text
        assert "User=tbsvc\n" in text and "Group=tbsvc\n" in text
        assert f"ExecStart=/srv/tb/.venv/bin/tradebot {cmd}\n" in text
        assert "WorkingDirectory=/srv/tb\n" in text and "EnvironmentFile=-/srv/tb/.env\n" in text
        assert "TRADEBOT_HOME=/srv/tb" in text and "ReadWritePaths=/srv/tb/data" in text
    # The installed command, from the operator's home directory, finds this installation's .env and data.
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (inst / ".venv" / "lib" / ver / "site-packages" / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    home = tmp_path / "home"
    home.mkdir()
    st = subprocess.run([str(inst / ".venv" / "bin" / "tradebot"), "status"], cwd=home, env=base_env(),
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 2 and f"{inst}/data/tradebot-paper.db: no state database" in st.stdout, st.stdout
    # Idempotent: a second pass creates no venv, keeps the .env and rewrites no unit.
    again = deploy(env={**env, "DRY_RUN": "1"})
    assert again.returncode == 0 and "-m venv" not in again.stdout and ".env.example" not in again.stdout
    assert "written" not in again.stderr
    # The rendered units verify (ExecStart pointed at the staged binary: verify insists it exists).
    for name, text in (("tradebot.service", daemon), ("tradebot-watchdog.service", watchdog)):
        unit = tmp_path / name
        unit.write_text(text.replace("/srv/tb/.venv/bin/tradebot", str(inst / ".venv" / "bin" / "tradebot")))
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert v.returncode == 0 and str(unit) not in v.stdout + v.stderr, v.stdout + v.stderr


def fake_path(tmp: Path, python: str | None) -> str:
    """A PATH with the script's tools but no rsync, and a recording apt-get."""
    bindir = tmp / "bin"
    bindir.mkdir()
    for tool in ("dirname", "sed", "id", "cat", "mktemp", "cmp", "install", "mkdir", "rm", "env"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    (bindir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {tmp}/apt.log\n')
    (bindir / "apt-get").chmod(0o755)
    if python:
        (bindir / "python3").symlink_to(python)
    return str(bindir)


def test_missing_prerequisites_are_named_or_installed(tmp_path: Path) -> None:
    path = fake_path(tmp_path, BASE_PYTHON)
    r = deploy("--check", env=base_env(PATH=path, NO_APT="1"))
    assert r.returncode == 1 and "missing Debian packages: rsync (sudo apt-get install rsync)" in r.stderr
    plan = deploy(env=base_env(PATH=path, DRY_RUN="1", DESTDIR=str(tmp_path / "root")))
    assert "+ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync" in plan.stdout, plan.stdout + plan.stderr
    nopy = deploy("--check", env=base_env(PATH=path, NO_APT="1", PYTHON=str(tmp_path / "absent-python")))
    assert "python3 python3-venv" in nopy.stderr


def test_python_older_than_3_11_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\ncase "$2" in *ensurepip*) exit 0;; *platform*) echo 3.9.2;; *) exit 1;; esac\n')
    old.chmod(0o755)
    env = base_env(PYTHON=str(old), NO_APT="1")
    r = deploy("--check", env=env)
    assert r.returncode == 1 and "is 3.9.2;" in r.stderr and "needs Python >= 3.11" in r.stderr


def test_bad_prefix_or_user_is_refused() -> None:
    assert deploy("--check", env=base_env(PREFIX="relative/path")).returncode == 2
    assert deploy("--check", env=base_env(SERVICE_USER="root; rm -rf /")).returncode == 2
