"""``tradebot run --mode live --broker X``: the daemon process's live start (connect, preflight, refusals) and a
replayed day traded through a live broker's interface, with the scripted broker (tests/support/live_tradebot.py).

The same through the ProjectX and Rithmic stand-ins, with their real protocols, is in
tests/execution/brokers/test_live_daemon_standins.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "TRADING_BROKER", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY",
             "POLYGON_API_KEY")


def env_for(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_DATA_DIR": str(data), "TRADEBOT_LOG_LEVEL": "WARNING",
                "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.5"})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "3", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=env_for(out / "unused"))
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


def run_live(tmp: Path, day: Path, script: dict[str, object], *extra: str,
             mode: str = "live") -> subprocess.CompletedProcess[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "tests" / "support" / "live_tradebot.py"), "run", "--mode", mode,
           "--feed", "replay", "--input", str(day), "--symbol", "ES", "--speed", "0", "--timeframe", "60", *extra]
    if mode == "live":
        cmd += ["--broker", "projectx"]
    return subprocess.run(cmd, env=env_for(tmp / "data", TRADEBOT_TEST_BROKER=json.dumps(script),
                                           TRADEBOT_EXECUTION__CONNECT_BACKOFF_MAX_SECONDS="0.2"),
                          cwd=tmp, capture_output=True, text=True, timeout=300)


def test_refused_login_exits_2_with_one_line(tmp_path: Path, day_file: Path) -> None:
    r = run_live(tmp_path, day_file, {"connect_errors": ["auth"]})
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if "refusing to start" in ln]
    assert lines == ["refusing to start: projectx login refused: invalid API key"]
    assert "Traceback" not in r.stderr


def test_unavailable_is_retried_then_a_failed_preflight_names_every_failure(tmp_path: Path, day_file: Path) -> None:
    checks = [["login", True, "user demo"], ["account", False, "account 42 not found (have: 7, 9)"],
              ["contract", False, "no contract for ES"]]
    r = run_live(tmp_path, day_file, {"connect_errors": ["unavailable", "unavailable"], "checks": checks})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "preflight ok   login: user demo" in r.stderr
    assert "preflight FAIL account: account 42 not found (have: 7, 9)" in r.stderr
    assert ("refusing to start: live preflight failed (projectx): account: account 42 not found (have: 7, 9); "
            "contract: no contract for ES") in r.stderr
    con = sqlite3.connect(tmp_path / "data" / "tradebot-live.db")
    kinds = [k for (k,) in con.execute("SELECT kind FROM outbox ORDER BY id")]
    assert "broker_unavailable" in kinds and "broker_connected" in kinds  # alerted while retrying
    assert con.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0  # nothing traded


@pytest.mark.soak  # (the same through the real ProjectX adapter and stand-in is in the default suite)
def test_a_replayed_day_trades_live_as_on_paper(tmp_path: Path, day_file: Path) -> None:
    live = run_live(tmp_path / "live", day_file, {})
    assert live.returncode == 0, live.stderr[-3000:]
    paper = run_live(tmp_path / "paper", day_file, {}, mode="paper")
    assert paper.returncode == 0, paper.stderr[-3000:]
    q = ("SELECT f.signal_id, f.role, f.side, f.quantity, f.price, f.ts_ns FROM fills f ORDER BY f.ts_ns, f.fill_id")
    lf = sqlite3.connect(tmp_path / "live" / "data" / "tradebot-live.db").execute(q).fetchall()
    pf = sqlite3.connect(tmp_path / "paper" / "data" / "tradebot-paper.db").execute(q).fetchall()
    assert lf and lf == pf


def test_preflight_logs_in_to_the_broker_and_names_what_failed(tmp_path: Path) -> None:
    from support.live_harness import StandInThread

    px = StandInThread()
    try:
        env = env_for(tmp_path / "data", TRADING_MODE="live", TRADING_BROKER="projectx", PROJECTX_API_URL=px.url,
                      PROJECTX_USER_HUB_URL=px.server.user_hub_url, PROJECTX_USERNAME="trader",
                      PROJECTX_API_KEY="test-api-key-123456", PROJECTX_ACCOUNT_ID="465", TRADING_SYMBOL="ES")
        ok = subprocess.run([sys.executable, "-m", "tradebot", "preflight"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
        broker = [ln for ln in ok.stdout.splitlines() if ln.startswith("broker:")]
        assert len(broker) == 1 and broker[0].startswith("broker: OK projectx: "), ok.stdout + ok.stderr
        env["PROJECTX_ACCOUNT_ID"] = "999"
        bad = subprocess.run([sys.executable, "-m", "tradebot", "preflight"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1
        line = next(ln for ln in bad.stdout.splitlines() if ln.startswith("broker:"))
        assert line.startswith("broker: FAIL projectx: ") and "999" in line, bad.stdout
    finally:
        px.stop()
