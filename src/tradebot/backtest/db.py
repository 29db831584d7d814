"""The backtest results database (SQLite): runs, trades, daily stats, per-pattern stats.

A run records what produced it: the full configuration, the code version (package version and git commit when
available) and a fingerprint of the input files, so a number in a report can always be traced back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from tradebot import __version__
from tradebot.backtest.stats import BacktestStats
from tradebot.execution.trades import TradeRecord
from tradebot.state.backtests import BacktestRuns


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
    """Backtest runs in the results database, as the backtest stage's records (the SQL: ``state.backtests``)."""

    def __init__(self, path: Path) -> None:
        self._runs = BacktestRuns(path)
        self.conn = self._runs.conn

    def close(self) -> None:
        self._runs.close()

    def save_run(self, run_id: str, *, name: str, symbol: str, start: str, end: str, days: list[str],
                 params: dict[str, str], config: dict[str, Any], fingerprint: str, trade_hash: str,
                 stats: BacktestStats, summary: dict[str, Any], trades: list[TradeRecord], trade_days: dict[str, str],
                 daily_events: dict[str, int], seconds: float, errors: dict[str, str]) -> None:
        self._runs.save(
            (run_id, time.time_ns(), name, symbol, start, end, len(days), json.dumps(params),
             json.dumps(config, default=str), code_version(), fingerprint, trade_hash, json.dumps(summary), seconds,
             json.dumps(errors)),
            [(run_id, t.trade_id, trade_days.get(t.trade_id, ""), json.dumps(t.to_dict())) for t in trades],
            [(run_id, d.day.isoformat(), d.net_cents, d.trades, d.wins, daily_events.get(d.day.isoformat(), 0))
             for d in stats.daily],
            [(run_id, g.key, g.trades, g.wins, g.net_cents,
              None if g.profit_factor is None or g.profit_factor == float("inf") else g.profit_factor)
             for g in stats.by_pattern])

    def runs(self) -> list[dict[str, Any]]:
        return self._runs.runs()

    def trades(self, run_id: str) -> list[TradeRecord]:
        return [TradeRecord.from_dict(json.loads(r)) for r in self._runs.trade_records(run_id)]

    def days(self, run_id: str) -> list[dt.date]:
        """The run's trading days."""
        return [dt.date.fromisoformat(d) for d in self._runs.days(run_id)]

    def run(self, run_id: str | None) -> dict[str, Any] | None:
        runs = self.runs()
        if not runs:
            return None
        if run_id is None:
            return runs[-1]
        return next((r for r in runs if r["run_id"] == run_id or r["run_id"].startswith(run_id)), None)
