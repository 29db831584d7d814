"""``tradebot run`` end to end in a subprocess, on the simulated market (the embedded default)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SUMMARY = re.compile(r"events=(\d+) books=(\d+) rejects=(\d+)")
_SEED_VARS = {"TRADING_MODE", "TRADING_SYMBOL", "DATABENTO_API_KEY", "POLYGON_API_KEY", "DISCORD_WEBHOOK_URL"}


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI from an empty directory (no stray .env) with only the variables the test sets."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in _SEED_VARS}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "tradebot", *args], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=120, check=False)


def last_summary(stdout: str) -> tuple[str, int, int, int]:
    lines = [ln for ln in stdout.splitlines() if SUMMARY.search(ln)]
    assert lines, stdout
    m = SUMMARY.search(lines[-1])
    assert m is not None
    return lines[-1], int(m[1]), int(m[2]), int(m[3])


def test_run_streams_the_simulated_session_with_zero_rejects(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--duration", "5", TRADEBOT_SIM__TRADES_PER_SESSION="5000")
    assert proc.returncode == 0, proc.stderr
    line, events, books, rejects = last_summary(proc.stdout)
    assert rejects == 0
    assert books > 0 and events >= 5000 + books  # every trade and book update accepted
    assert re.search(r"MES last=\d+\.\d\d vol=\d+ delta=[+-]\d+", line), line


def test_run_several_symbols_and_sessions(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--symbols", "ES,GC", "--sessions", "2", "--duration", "30",
               TRADEBOT_SIM__TRADES_PER_SESSION="2000")
    assert proc.returncode == 0, proc.stderr
    line, events, books, rejects = last_summary(proc.stdout)
    assert rejects == 0 and events >= 2 * 2 * 2000 + books
    assert "ES last=" in line and "GC last=" in line


def test_run_live_mode_is_refused(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--mode", "live", "--duration", "5", TRADEBOT_SIM__TRADES_PER_SESSION="1000")
    assert proc.returncode != 0
    assert "refusing to start" in proc.stdout
    assert not SUMMARY.search(proc.stdout)  # nothing was streamed


def test_run_bad_simulation_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--duration", "5", TRADEBOT_SIM__START_DATE="next tuesday")
    assert proc.returncode == 2
    assert "TRADEBOT_SIM__START_DATE" in proc.stderr
    assert "Traceback" not in proc.stderr
