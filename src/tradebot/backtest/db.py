"""The backtest results database (SQLite): runs, trades, daily stats, per-pattern stats.

A run records what produced it: the full configuration, the code version (package version and git commit when
available) and a fingerprint of the input files, so a number in a report can always be traced back.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from tradebot import __version__
from tradebot.backtest.stats import BacktestStats
from tradebot.execution.trades import TradeRecord

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, created_ns INTEGER NOT NULL, name TEXT NOT NULL,
        symbol TEXT NOT NULL, start_day TEXT NOT NULL, end_day TEXT NOT NULL, days INTEGER NOT NULL,
        params TEXT NOT NULL, config TEXT NOT NULL, code_version TEXT NOT NULL, data_fingerprint TEXT NOT NULL,
        trade_hash TEXT NOT NULL, summary TEXT NOT NULL, seconds REAL NOT NULL, errors TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS trades (run_id TEXT NOT NULL, trade_id TEXT NOT NULL, day TEXT NOT NULL,
        record TEXT NOT NULL, PRIMARY KEY (run_id, trade_id))""",
    """CREATE TABLE IF NOT EXISTS daily (run_id TEXT NOT NULL, day TEXT NOT NULL, net_cents INTEGER NOT NULL,
        trades INTEGER NOT NULL, wins INTEGER NOT NULL, events INTEGER NOT NULL, PRIMARY KEY (run_id, day))""",
    """CREATE TABLE IF NOT EXISTS patterns (run_id TEXT NOT NULL, pattern TEXT NOT NULL, trades INTEGER NOT NULL,
        wins INTEGER NOT NULL, net_cents INTEGER NOT NULL, profit_factor REAL, PRIMARY KEY (run_id, pattern))""",
]


def new_run_id(name: str, combo: dict[str, str], fingerprint: str) -> str:
    """A run's id: its name made safe, and a hash that makes two runs of the same name distinct."""
    h = hashlib.sha256(json.dumps([name, combo, fingerprint, time.time_ns()]).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}-{h}"


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


class BacktestDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path))
        for sql in SCHEMA:
            self.conn.execute(sql)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def save_run(self, run_id: str, *, name: str, symbol: str, start: str, end: str, days: list[str],
                 params: dict[str, str], config: dict[str, Any], fingerprint: str, trade_hash: str,
                 stats: BacktestStats, summary: dict[str, Any], trades: list[TradeRecord], trade_days: dict[str, str],
                 daily_events: dict[str, int], seconds: float, errors: dict[str, str]) -> None:
        c = self.conn
        with c:
            c.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (
                run_id, time.time_ns(), name, symbol, start, end, len(days), json.dumps(params),
                json.dumps(config, default=str), code_version(), fingerprint, trade_hash, json.dumps(summary),
                seconds, json.dumps(errors)))
            c.executemany("INSERT OR REPLACE INTO trades VALUES (?,?,?,?)", [
                (run_id, t.trade_id, trade_days.get(t.trade_id, ""), json.dumps(t.to_dict())) for t in trades])
            for d in stats.daily:
                c.execute("INSERT OR REPLACE INTO daily VALUES (?,?,?,?,?,?)", (
                    run_id, d.day.isoformat(), d.net_cents, d.trades, d.wins, daily_events.get(d.day.isoformat(), 0)))
            for g in stats.by_pattern:
                c.execute("INSERT OR REPLACE INTO patterns VALUES (?,?,?,?,?,?)", (
                    run_id, g.key, g.trades, g.wins, g.net_cents,
                    None if g.profit_factor is None or g.profit_factor == float("inf") else g.profit_factor))

    def runs(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT run_id, created_ns, name, symbol, start_day, end_day, days, params, "
                                "trade_hash, summary, seconds FROM runs ORDER BY created_ns")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def trades(self, run_id: str) -> list[TradeRecord]:
        rows = self.conn.execute("SELECT record FROM trades WHERE run_id = ?", (run_id,)).fetchall()
        return [TradeRecord.from_dict(json.loads(r[0])) for r in rows]

    def run(self, run_id: str | None) -> dict[str, Any] | None:
        runs = self.runs()
        if not runs:
            return None
        if run_id is None:
            return runs[-1]
        return next((r for r in runs if r["run_id"] == run_id or r["run_id"].startswith(run_id)), None)
