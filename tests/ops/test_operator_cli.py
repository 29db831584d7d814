"""The operator's commands as real processes: found from any directory, and light enough to answer at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import tradebot
from tradebot.core.paths import install_root
from tradebot.state.store import StateStore, default_db_path

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")
HEAVY = {"pandas", "numpy", "databento", "databento_dbn", "matplotlib", "pyarrow", "aiohttp", "scipy", "zstandard"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update(extra)
    return env


def make_install(root: Path, mode: str = "paper") -> Path:
    """An installation as deploy_headless.sh leaves it: .env next to .venv, state database and heartbeat in data/."""
    data = root / "data"
    data.mkdir(parents=True)
    (root / ".env").write_text(f"TRADING_MODE={mode}\nTRADEBOT_LOG_FORMAT=console\n")
    StateStore.open(default_db_path(data, mode), mode=mode).close()
    (data / "heartbeat.json").write_text(json.dumps({"ts_ns": time.time_ns(), "pid": os.getpid(),
                                                     "feed_state": "live"}))
    return data


def make_venv(root: Path) -> Path:
    """A real virtual environment at root/.venv (pyvenv.cfg, bin/python, a console script) that sees this checkout's
    packages through a .pth file, so its interpreter's sys.prefix is the installation's, as on a server."""
    venv = root / ".venv"
    bindir = venv / "bin"
    bindir.mkdir(parents=True)
    base = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    (venv / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n"
                                     f"version = {sys.version.split()[0]}\n")
    (bindir / "python").symlink_to(base)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / ver / "site-packages"
    site.mkdir(parents=True)
    src = Path(tradebot.__file__).resolve().parent.parent
    (site / "checkout.pth").write_text(f"{src}\n{sysconfig.get_paths()['purelib']}\n")
    script = bindir / "tradebot"
    script.write_text(f"#!{bindir / 'python'}\nimport sys\nfrom tradebot.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return script


def test_status_over_ssh_finds_the_installation_from_any_directory(tmp_path: Path) -> None:
    """The README's one-liner: the venv's own tradebot, run from the operator's home, reads /opt/tradebot."""
    inst = tmp_path / "opt" / "tradebot"
    data = make_install(inst, mode="paper")
    exe = make_venv(inst)
    home = tmp_path / "home"
    home.mkdir()
    r = subprocess.run([str(exe), "status", "--json"], cwd=home, env=clean_env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads(r.stdout)
    assert Path(st["database"]) == default_db_path(data, "paper")
    assert st["heartbeat"]["healthy"] is True
    assert not (home / "data").exists()
    # The same executable from inside the installation agrees (the systemd WorkingDirectory).
    r2 = subprocess.run([str(exe), "status", "--json"], cwd=inst, env=clean_env(), capture_output=True, text=True,
                        timeout=60)
    assert json.loads(r2.stdout)["database"] == st["database"]


def test_tradebot_home_wins_and_mode_comes_from_that_installs_env(tmp_path: Path) -> None:
    inst = tmp_path / "srv"
    data = make_install(inst, mode="live")
    r = subprocess.run([sys.executable, "-m", "tradebot", "status", "--json"], cwd=tmp_path,
                       env=clean_env(TRADEBOT_HOME=str(inst)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads(r.stdout)
    assert st["mode"] == "live" and Path(st["database"]) == default_db_path(data, "live")


def test_without_an_installation_the_current_directory_is_the_root(tmp_path: Path) -> None:
    venv = tmp_path / "checkout"
    (venv).mkdir()
    got = install_root(environ={}, cwd=tmp_path, venv=venv)
    assert (got.path, got.source) == (tmp_path, "cwd")
    (venv / ".env").write_text("")
    assert install_root(environ={}, cwd=tmp_path, venv=venv).source == "venv"
    assert install_root(environ={"TRADEBOT_HOME": str(tmp_path)}, cwd=venv, venv=venv).path == tmp_path


IMPORT_PROBE = """
import json, sys
from tradebot.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


def test_operator_commands_do_not_import_the_heavy_stack(tmp_path: Path) -> None:
    """status/halt/resume/flatten/ping/--help/--version must answer in < 0.5 s (benchmarks/cli_latency.py): that
    holds only while they stay clear of pandas, numpy, databento and matplotlib, which cost seconds to import."""
    data = make_install(tmp_path / "inst")
    env = clean_env(TRADEBOT_HOME=str(tmp_path / "inst"))
    for args in (["status"], ["ping"], ["halt", "--reason", "x"], ["resume"], ["flatten"], ["--help"],
                 ["--version"]):
        r = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
        probe = json.loads(r.stderr.strip().splitlines()[-1])
        loaded = HEAVY & set(probe["modules"])
        assert not loaded, f"tradebot {' '.join(args)} imports {sorted(loaded)}"
        assert "tradebot" in probe["modules"]
        if args[0] in ("halt", "resume", "flatten", "ping"):
            assert probe["code"] == 3  # no daemon on the socket: a clear exit code, not a traceback
        elif args[0] == "status":
            assert probe["code"] == 0
    assert (data / "tradebot-paper.db").exists()


def test_watchdog_once_on_a_healthy_daemon_says_what_it_checked(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    data = make_install(inst)
    (data / "heartbeat.json").write_text(json.dumps({
        "ts_ns": time.time_ns(), "pid": os.getpid(), "feed_state": "streaming", "market_data_age_s": 0.4,
        "reconnects": 1}))
    env = clean_env(TRADEBOT_HOME=str(inst), TRADEBOT_WATCHDOG__MIN_DISK_FREE_MB="1",
                    TRADEBOT_WATCHDOG__MAX_MEMORY_PERCENT="100", TRADEBOT_WATCHDOG__MAX_RSS_MB="100000")
    r = subprocess.run([sys.executable, "-m", "tradebot", "watchdog", "--once"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"watchdog: 8 checks on {data}" and lines[-1] == "healthy"
    checks = {ln.split()[1]: ln for ln in lines[1:-1]}
    assert set(checks) == {"heartbeat", "process", "market", "rss", "memory", "disk", "reconnects", "dead-man"}
    assert checks["dead-man"].split(None, 2)[2] == "off"  # paper mode: the dead-man's switch is off
    assert all(ln.strip().startswith("ok") for ln in checks.values())
    assert f"pid {os.getpid()} running" in checks["process"] and "1 feed reconnects" in checks["reconnects"]
    assert "s ago (limit 45s)" in checks["heartbeat"]
    j = subprocess.run([sys.executable, "-m", "tradebot", "watchdog", "--once", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    doc = json.loads(j.stdout)  # stdout is the one document; the logs went to stderr
    assert doc["healthy"] is True and len(doc["checks"]) == 8 and all(c["ok"] for c in doc["checks"])
    (data / "heartbeat.json").unlink()
    bad = subprocess.run([sys.executable, "-m", "tradebot", "watchdog", "--once"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "FAIL  heartbeat    Daemon heartbeat missing" in bad.stdout
    assert bad.stdout.splitlines()[-1] == "UNHEALTHY: heartbeat"
