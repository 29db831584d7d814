"""Done means, Rithmic: the daemon in live mode against the Rithmic stand-in makes the same trades as in paper
mode on the same replayed day (``--feed rithmic`` from the stand-in's ticker plant; timestamps cut to the
microseconds Rithmic carries). The pacing and what "same" means are those of test_live_vs_paper_projectx.py.
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

import pytest

from support.live_harness import ROOT, SEED_VARS, RithmicThread, StandInThread, wait_for
from support.projectx_server import load_events
from tradebot.core.calendar import to_ns
from tradebot.core.types import BookUpdate, Trade

DAY_START = to_ns(dt.datetime(2025, 3, 11, 13, 0, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADEBOT_DATA_DIR"] = str(out / "unused")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "3", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


@pytest.fixture(scope="module")
def day_events(day_file: Path) -> list[BookUpdate | Trade]:
    import asyncio

    events = asyncio.run(load_events(day_file, "ES"))
    cut = [dataclasses.replace(ev, ts_event=ev.ts_event // 1000 * 1000, ts_recv=ev.ts_recv // 1000 * 1000)
           for ev in events]
    return [ev for ev in cut if isinstance(ev, BookUpdate | Trade)]


class Run:
    def __init__(self, tmp: Path, mode: str, px: StandInThread) -> None:
        self.tmp, self.mode, self.px = tmp, mode, px
        self.data = tmp / "data"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
        env.update({
            "TRADEBOT_DATA_DIR": str(self.data), "TRADEBOT_LOG_LEVEL": "WARNING",
            "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.5", "TRADEBOT_EXECUTION__TIERS_ENABLED": "false",
            "TRADEBOT_TEST_CLOCK_OFFSET_NS": str(DAY_START - time.time_ns()),
            "TRADEBOT_VALIDATION__STALE_SECONDS": "86400", "TRADEBOT_VALIDATION__FUTURE_SECONDS": "86400",
            "TRADEBOT_DAEMON__STALE_FEED_SECONDS": "3600",
            "RITHMIC_USER": "trader", "RITHMIC_PASSWORD": "secret-pw", "RITHMIC_ACCOUNT_ID": "ACC-1",
            "RITHMIC_SYSTEM_NAME": "Rithmic Test", "RITHMIC_URL": px.url, "RITHMIC_CA_FILE": str(px.server.ca_file),
        })
        cmd = [sys.executable, str(ROOT / "tests" / "support" / "shifted_clock.py"), "run", "--mode", mode,
               "--feed", "rithmic", "--symbol", "ES", "--timeframe", "60"]
        if mode == "live":
            cmd += ["--broker", "rithmic"]
        self.proc = subprocess.Popen(cmd, env=env, cwd=tmp, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"{self.mode} daemon exited {self.proc.returncode}:\n{err[-3000:]}\n{out[-3000:]}")

    def query(self, sql: str) -> list[sqlite3.Row]:
        db = self.data / f"tradebot-{self.mode}.db"
        if not db.exists():
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

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


def serve_day(px: StandInThread, run: Run, events: list[BookUpdate | Trade],
              waits: dict[int, list[str]] | None = None) -> None:
    """Serve every event; with ``waits``, pause after an event until the orders it must produce have arrived."""
    server = px.server
    wait_for(lambda: server.subscribed.is_set() or run.alive(), timeout=60, what="the daemon subscribing")

    def ids() -> dict[str, str]:
        return {server.client_id(o): o.status for o in server.baskets.values()}

    def done(expected: str) -> bool:
        if expected.startswith("!"):
            return ids().get(expected[1:], "") != "open"
        return expected in ids()

    async def serve_all() -> None:
        import asyncio

        for ev in events:
            fills_before = len(server.fills)
            await server.serve(ev)
            expect = list((waits or {}).get(ev.ts_event, ()))
            if waits is not None:
                for f in server.fills[fills_before:]:
                    cid = server.client_id(server.baskets[f["basket_id"]])
                    sid, _, role = cid.rpartition("-")
                    if role == "E":
                        expect += [f"{sid}-S", f"{sid}-T"]
                    elif role in ("S", "T"):
                        expect.append(f"!{sid}-{'T' if role == 'S' else 'S'}")
            end = time.monotonic() + 30
            while expect:
                expect = [e for e in expect if not done(e)]
                if not expect:
                    break
                if time.monotonic() > end:
                    raise AssertionError(f"after the event at {ev.ts_event} the stand-in never got {expect}")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)

    px.call(serve_all(), timeout=600)
    last = events[-1].ts_event
    wait_for(lambda: run.last_event() >= last or run.alive(), timeout=120, what="the daemon reading the last event")


FILLS = ("SELECT signal_id, role, side, quantity, price, ts_ns FROM fills ORDER BY ts_ns, role, fill_id")
SIGNALS = ("SELECT signal_id, side, traded_qty, stop_price, target_price FROM signals WHERE verdict = 'taken' "
           "ORDER BY ts_ns")
CLOSED = ("SELECT signal_id, exit_reason, realized_cents FROM brackets WHERE state = 'closed' ORDER BY signal_id")


def rows(run: Run, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in run.query(sql)]


@pytest.mark.soak  # 80 s on a loaded 2-core machine; the ProjectX twin runs in the default suite
def test_live_against_the_rithmic_standin_makes_the_same_trades_as_paper(
        tmp_path: Path, day_events: list[BookUpdate | Trade], day_file: Path) -> None:
    px_paper = RithmicThread(tmp_path / "tls-paper", day_file, restamp=False)
    try:
        paper = Run(tmp_path / "paper", "paper", px_paper)
        serve_day(px_paper, paper, day_events)
        paper.stop()
    finally:
        px_paper.stop()
    waits: dict[int, list[str]] = {}
    for r in paper.query("SELECT kind, ts_ns, payload FROM journal WHERE kind IN ('signal', 'flatten_request')"):
        p = json.loads(r["payload"])
        if r["kind"] == "signal" and p["verdict"] == "taken":
            waits.setdefault(int(p["armed_ns"]), []).append(f"{p['signal_id']}-E")
        elif r["kind"] == "flatten_request" and int(p["quantity"]) > 0:
            waits.setdefault(int(r["ts_ns"]), []).append(str(p["exit_id"]))
    assert waits, "the paper run took no trade: the comparison would prove nothing"

    px_live = RithmicThread(tmp_path / "tls-live", day_file, restamp=False)
    try:
        live = Run(tmp_path / "live", "live", px_live)
        serve_day(px_live, live, day_events, waits)
        live.stop()
        broker_trades = px_live.do(lambda: len(px_live.server.fills))
    finally:
        px_live.stop()
    assert rows(live, SIGNALS) == rows(paper, SIGNALS)
    assert rows(live, FILLS) == rows(paper, FILLS)
    assert rows(live, CLOSED) == rows(paper, CLOSED)
    assert broker_trades == len(rows(live, FILLS)) > 0
