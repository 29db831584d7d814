"""The backtest results database (``backtests.db``): its schema and every statement on it.

Kept in ``state/`` with the other SQL (see :mod:`tradebot.state.queries`); it speaks plain values (strings,
integers, JSON text), so it needs nothing of the backtest stage, which converts its records and statistics
(:class:`tradebot.backtest.db.BacktestDB`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

RunRow = tuple[str, int, str, str, str, str, int, str, str, str, str, str, str, float, str]
"""``runs`` in column order: run_id, created_ns, name, symbol, start_day, end_day, days, params (JSON), config
(JSON), code_version, data_fingerprint, trade_hash, summary (JSON), seconds, errors (JSON)."""
TradeRow = tuple[str, str, str, str]
"""``trades``: run_id, trade_id, day, record (JSON)."""
DailyRow = tuple[str, str, int, int, int, int]
"""``daily``: run_id, day, net_cents, trades, wins, events."""
PatternRow = tuple[str, str, int, int, int, float | None]
"""``patterns``: run_id, pattern, trades, wins, net_cents, profit_factor (None: undefined or infinite)."""


class BacktestRuns:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path))
        for sql in SCHEMA:
            self.conn.execute(sql)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def save(self, run: RunRow, trades: Sequence[TradeRow], daily: Sequence[DailyRow],
             patterns: Sequence[PatternRow]) -> None:
        """One run and its rows, in one transaction (a run is there whole or not at all)."""
        c = self.conn
        with c:
            c.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run)
            c.executemany("INSERT OR REPLACE INTO trades VALUES (?,?,?,?)", trades)
            c.executemany("INSERT OR REPLACE INTO daily VALUES (?,?,?,?,?,?)", daily)
            c.executemany("INSERT OR REPLACE INTO patterns VALUES (?,?,?,?,?,?)", patterns)

    def runs(self) -> list[dict[str, Any]]:
        """Every run (without its configuration), oldest first."""
        cur = self.conn.execute("SELECT run_id, created_ns, name, symbol, start_day, end_day, days, params, "
                                "trade_hash, summary, seconds FROM runs ORDER BY created_ns")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def trade_records(self, run_id: str) -> list[str]:
        """The run's trade records as stored (JSON text)."""
        return [str(r[0]) for r in self.conn.execute("SELECT record FROM trades WHERE run_id = ?", (run_id,))]

    def days(self, run_id: str) -> list[str]:
        """The run's trading days (ISO), in order."""
        return [str(r[0]) for r in self.conn.execute("SELECT day FROM daily WHERE run_id = ? ORDER BY day",
                                                     (run_id,))]


__all__ = ["SCHEMA", "BacktestRuns", "DailyRow", "PatternRow", "RunRow", "TradeRow"]
