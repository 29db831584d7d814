"""What the two live-equals-paper tests share: the synthetic day, the daemon process and the comparison.

The broker-specific part (its settings, its stand-in, how the stand-in is paced) stays in each test; see
tests/execution/brokers/test_live_vs_paper_projectx.py for how the pacing removes the race and what "same" means.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support.live_harness import ROOT, SEED_VARS, read_db
from support.projectx_server import load_events
from tradebot.core.calendar import to_ns
from tradebot.core.types import BookUpdate, Trade

DAY_START = to_ns(dt.datetime(2025, 3, 11, 13, 0, tzinfo=dt.UTC))

FILLS = ("SELECT signal_id, role, side, quantity, price, ts_ns FROM fills ORDER BY ts_ns, role, fill_id")
SIGNALS = ("SELECT signal_id, side, traded_qty, stop_price, target_price FROM signals WHERE verdict = 'taken' "
           "ORDER BY ts_ns")
CLOSED = ("SELECT signal_id, exit_reason, realized_cents FROM brackets WHERE state = 'closed' ORDER BY signal_id")


def synth_day(out: Path) -> Path:
    """One synthetic ES session (the kill -9 test's day: it trades)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADEBOT_DATA_DIR"] = str(out / "unused")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "3", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


def day_events(path: Path, precision_ns: int) -> list[BookUpdate | Trade]:
    """The day's events with every timestamp cut to the broker's precision (what its wire can carry)."""
    import asyncio

    events = asyncio.run(load_events(path, "ES"))
    cut = [dataclasses.replace(ev, ts_event=ev.ts_event // precision_ns * precision_ns,
                               ts_recv=ev.ts_recv // precision_ns * precision_ns) for ev in events]
    return [ev for ev in cut if isinstance(ev, BookUpdate | Trade)]


class DaemonRun:
    """``tradebot run`` on the broker's own feed, paper or live, its wall clock shifted to the recorded day."""

    def __init__(self, tmp: Path, mode: str, broker: str, broker_env: dict[str, str]) -> None:
        self.tmp, self.mode = tmp, mode
        self.data = tmp / "data"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
        env.update({
            "TRADEBOT_DATA_DIR": str(self.data), "TRADEBOT_LOG_LEVEL": "WARNING",
            "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.5", "TRADEBOT_EXECUTION__TIERS_ENABLED": "false",
            "TRADEBOT_TEST_CLOCK_OFFSET_NS": str(DAY_START - time.time_ns()),
            "TRADEBOT_VALIDATION__STALE_SECONDS": "86400", "TRADEBOT_VALIDATION__FUTURE_SECONDS": "86400",
            "TRADEBOT_DAEMON__STALE_FEED_SECONDS": "3600",
        })
        env.update(broker_env)
        cmd = [sys.executable, str(ROOT / "tests" / "support" / "shifted_clock.py"), "run", "--mode", mode,
               "--feed", broker, "--symbol", "ES", "--timeframe", "60"]
        if mode == "live":
            cmd += ["--broker", broker]
        self.proc = subprocess.Popen(cmd, env=env, cwd=tmp, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"{self.mode} daemon exited {self.proc.returncode}:\n{err[-3000:]}\n{out[-3000:]}")

    def query(self, sql: str) -> list[sqlite3.Row]:
        return read_db(self.data / f"tradebot-{self.mode}.db", sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.query(sql)]

    def last_event(self) -> int:
        try:
            hb = json.loads((self.data / "heartbeat.json").read_text())
        except (OSError, ValueError):
            return 0
        return int(((hb.get("market") or {}).get("ES") or {}).get("last_event_ns") or 0)

    def stop(self) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err[-3000:]
        return out, err


def decision_points(paper: DaemonRun) -> dict[int, list[str]]:
    """Where the paper run decided: event time -> the client order ids that decision must put at the broker."""
    waits: dict[int, list[str]] = {}
    for r in paper.query("SELECT kind, ts_ns, payload FROM journal WHERE kind IN ('signal', 'flatten_request')"):
        p = json.loads(r["payload"])
        if r["kind"] == "signal" and p["verdict"] == "taken":
            waits.setdefault(int(p["armed_ns"]), []).append(f"{p['signal_id']}-E")
        elif r["kind"] == "flatten_request" and int(p["quantity"]) > 0:
            waits.setdefault(int(r["ts_ns"]), []).append(str(p["exit_id"]))
    assert waits, "the paper run took no trade: the comparison would prove nothing"
    return waits


def assert_same_trades(live: DaemonRun, paper: DaemonRun, broker_fills: int) -> None:
    assert live.rows(SIGNALS) == paper.rows(SIGNALS)
    assert live.rows(FILLS) == paper.rows(FILLS)
    assert live.rows(CLOSED) == paper.rows(CLOSED)
    assert broker_fills == len(live.rows(FILLS)) > 0
