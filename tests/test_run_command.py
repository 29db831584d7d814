"""``tradebot run``: the daemon on the simulated feed, as a subprocess (the README's run command)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")


def run(tmp_path: Path, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "tradebot", *args], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=timeout)


def heartbeat(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / "data" / "heartbeat.json").read_text())
    return data


def test_run_streams_a_simulated_session_and_trades_on_paper(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--speed", "0", "--timeframe", "60", TRADEBOT_SIM__TRADES_PER_SESSION="20000")
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    hb = heartbeat(tmp_path)
    assert hb["feed_state"] == "stopped" and hb["validation_rejects"] == 0 and hb["errors"] == 0
    assert int(str(hb["events"])) > 20000
    con = sqlite3.connect(tmp_path / "data" / "tradebot-paper.db")
    closed = con.execute("SELECT count(*) FROM brackets WHERE closed_ns IS NOT NULL").fetchone()[0]
    decisions = con.execute("SELECT count(*) FROM router_decisions").fetchone()[0]
    assert closed >= 1 and decisions >= 1
    assert '"event": "daemon stopped"' in proc.stdout and '"exit_code": 0' in proc.stdout
    sig = run(tmp_path, "signals", "--json", "--limit", "5000")
    signals = json.loads(sig.stdout)
    verdicts = {s["verdict"] for s in signals}
    assert "taken" in verdicts and "rejected" in verdicts
    assert any(s["reason"].startswith("router: ") and s["reasons"] for s in signals)
    assert [s["ts_ns"] for s in signals] == sorted((s["ts_ns"] for s in signals), reverse=True)


def test_run_several_symbols_at_once(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--symbols", "ES,GC", "--speed", "0", TRADEBOT_SIM__TRADES_PER_SESSION="3000")
    assert proc.returncode == 0, proc.stderr
    hb = heartbeat(tmp_path)
    assert hb["symbols"] == ["ES", "GC"] and hb["validation_rejects"] == 0
    market = hb["market"]
    assert isinstance(market, dict) and all(market[s]["last_event_ns"] for s in ("ES", "GC"))


def test_run_live_mode_without_a_broker_is_refused(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", "--mode", "live")
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "never falls back to paper" in proc.stderr
    assert "--broker projectx|rithmic" in proc.stderr
    assert not (tmp_path / "data" / "tradebot-paper.db").exists()
    paper = run(tmp_path, "run", "--broker", "projectx")
    assert paper.returncode == 2 and "needs --mode live" in paper.stderr


def test_run_bad_simulation_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    proc = run(tmp_path, "run", TRADEBOT_SIM__START_DATE="next tuesday")
    assert proc.returncode == 2
    assert "TRADEBOT_SIM__START_DATE" in proc.stderr and "Traceback" not in proc.stderr


def test_run_headless_wrapper(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    clean["TRADEBOT_SIM__TRADES_PER_SESSION"] = "2000"
    proc = subprocess.run([sys.executable, str(root / "run_headless.py"), "--symbol", "NQ", "--speed", "0"],
                          cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert heartbeat(tmp_path)["symbols"] == ["NQ"]
