"""``make run``'s console (``tradebot run --progress``) as a real process: what it does and how long up front,
progress lines, a summary table that agrees with ``tradebot stats``, and no log noise on the console."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tradebot.core.contracts import spec_for
from tradebot.feeds.simulated import trading_sessions
from tradebot.ops.console import RunPlan, intro

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")


def test_make_run_says_three_sessions_about_fourteen_minutes() -> None:
    spec = spec_for("MES")
    sessions = trading_sessions(spec.session, dt.date(2025, 3, 10), 3)
    text = intro(RunPlan("demo", ["MES"], 300.0, sessions, Path("data/run.log")), "paper")
    assert "3 simulated MES sessions (2025-03-10 to 2025-03-12, 69 h of market time)" in text
    assert "at 300x: about 14 minutes" in text and "data/run.log" in text


def test_run_progress_console_through_the_real_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_SIM__TRADES_PER_SESSION": "30000"})
    r = subprocess.run([sys.executable, "-m", "tradebot", "run", "--speed", "0", "--sessions", "2", "--progress"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith("tradebot run: 2 simulated MES sessions (2025-03-10 to 2025-03-11") \
        and "as fast as possible" in lines[0]
    assert "Times are America/New_York" in lines[1]
    progress = [ln for ln in lines if ln.startswith("session ") and " | " in ln]
    assert progress and re.match(r"session 2/2 2025-03-11 \| market \w{3} \d\d:\d\d E[DS]T \| trades \d+ \| day P&L ",
                                 progress[-1]), progress[-1]
    # No log lines on the console: they are all in data/run.log.
    assert not [ln for ln in lines if ln.startswith("{") or "[info" in ln or "[warning" in ln]
    log = (tmp_path / "data" / "run.log").read_text().splitlines()
    assert log and all(json.loads(ln)["event"] for ln in log)
    assert (tmp_path / "data" / "run.log").stat().st_mode & 0o077 == 0
    # The summary table: one row per session and a total that agrees with `tradebot stats`.
    start = lines.index("session      trades  won lost scratch      net P&L  max drawdown")
    rows = [ln.split() for ln in lines[start + 2:start + 6] if ln and not ln.startswith("-")]
    assert [row[0] for row in rows] == ["2025-03-10", "2025-03-11", "total"]
    st = json.loads(subprocess.run([sys.executable, "-m", "tradebot", "stats", "--json"], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=60).stdout)
    total = rows[-1]
    assert int(total[1]) == st["trades"] and int(total[2]) == st["wins"] and int(total[3]) == st["losses"]
    assert total[5] == f"{'-' if st['net_cents'] < 0 else ''}${abs(st['net_cents']) / 100:,.2f}"
    assert total[6] == f"${st['max_drawdown_cents'] / 100:,.2f}"
