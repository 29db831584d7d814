"""The real daemon process trading live through the ProjectX stand-in, for the fault tests.

The stand-in runs in this (the test) process on its own event loop thread, so a test can script its faults and
its market directly; the daemon is ``python -m tradebot run --mode live --broker projectx`` as a subprocess with
the real adapter. The daemon decides on a replayed day (``--feed replay``, event time); the stand-in fills the
daemon's orders when the test serves it market data (:meth:`LiveRig.serve`): a quote at the middle of a bracket
fills a market entry at its ask and leaves the stop and target working, a print through a stop fills it.

``journal_equals_broker`` is the end state every fault test asserts: the journal's net position per contract, its
fills (count, signed quantity, price) and its working legs equal the stand-in's positions, trades and open orders.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from support.projectx_server import ProjectXStandIn
from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.feeds.projectx_rest import PxOrderStatus, PxSide, price_to_ticks

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "TRADING_BROKER", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY",
             "POLYGON_API_KEY", "PROJECTX_API_URL", "PROJECTX_USER_HUB_URL", "PROJECTX_MARKET_HUB_URL",
             "PROJECTX_USERNAME", "PROJECTX_API_KEY", "PROJECTX_ACCOUNT_ID")
MS = 1_000_000


def read_db(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """A running daemon's database, read-only; empty while it is not there yet or mid-creation."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


class StandInThread:
    """A :class:`ProjectXStandIn` served from a background event loop."""

    def __init__(self, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="projectx-standin", daemon=True)
        self.thread.start()

        async def make() -> ProjectXStandIn:
            return ProjectXStandIn(**kw)

        self.server = self.call(make())
        self.url = self.call(self.server.start(0))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the stand-in's loop (its state is not thread-safe)."""

        async def run() -> T:
            return fn()

        return self.call(run())

    def credentials_env(self) -> dict[str, str]:
        """The settings a daemon needs to log in to this stand-in."""
        return {"PROJECTX_API_URL": self.url, "PROJECTX_USER_HUB_URL": self.server.user_hub_url,
                "PROJECTX_MARKET_HUB_URL": self.server.market_hub_url, "PROJECTX_USERNAME": "trader",
                "PROJECTX_API_KEY": "test-api-key-123456", "PROJECTX_ACCOUNT_ID": "465"}

    def stop(self) -> None:
        try:
            self.call(self.server.stop(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


class LiveRig:
    def __init__(self, tmp: Path, day: Path, standin: StandInThread, start_ns: int) -> None:
        self.tmp = tmp
        self.day = day
        self.px = standin
        self.data = tmp / "data"
        self.proc: subprocess.Popen[str] | None = None
        self.runs: list[tuple[int, str, str]] = []
        self.last_mid = 0
        self.set_clock(start_ns)

    def set_clock(self, start_ns: int) -> None:
        """The stand-in's exchange clock at the replayed day (orders are armed at it)."""
        self.px.do(lambda: setattr(self.px.server, "now_ns", start_ns))

    # -- the daemon ---------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
        env.update({
            "TRADEBOT_DATA_DIR": str(self.data), "TRADEBOT_LOG_LEVEL": "INFO",
            "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.5", "TRADEBOT_EXECUTION__TIERS_ENABLED": "false",
            "TRADEBOT_EXECUTION__AUTO_FLATTEN": "false", "DAILY_LOSS_LIMIT": "-1000000",
            "DAILY_PROFIT_TARGET": "1000000", "TRADEBOT_EXECUTION__RECONCILE_SECONDS": "1",
            "TRADEBOT_EXECUTION__PROTECT_SECONDS": "2", "TRADEBOT_EXECUTION__SUBMIT_TIMEOUT_SECONDS": "2",
        })
        env.update(self.broker_env())
        env.update(extra)
        return env

    def broker_env(self) -> dict[str, str]:
        return {**self.px.credentials_env(),
                "TRADEBOT_PROJECTX__BACKOFF_INITIAL_SECONDS": "0.1", "TRADEBOT_PROJECTX__BACKOFF_MAX_SECONDS": "0.5"}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tradebot", "run", "--mode", "live", "--broker", self.broker, "--feed", "replay",
                "--input", str(self.day), "--symbol", "ES", "--speed", "0", "--timeframe", "60", "--stay"]

    def start(self, **extra: str) -> subprocess.Popen[str]:
        assert self.proc is None
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), env=self.env(**extra), cwd=self.tmp, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return self.proc

    def run_once(self, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
        """A run that is expected to end by itself (a refused start)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        cmd = [c for c in self.command() if c != "--stay"]
        return subprocess.run(cmd, env=self.env(**extra), cwd=self.tmp, text=True, capture_output=True,
                              timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        code = self.proc.returncode
        self.runs.append((code, out, err))
        self.proc = None
        return code

    def dump(self) -> str:
        """The journal and the daemon's log so far (for a failing test's message)."""
        journal = "\n".join(f"{r['seq']} {r['kind']} {r['payload'][:300]}" for r in self.query(
            "SELECT seq, kind, payload FROM journal ORDER BY seq"))
        log = ""
        if self.proc is not None:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.runs.append((self.proc.returncode, out, err))
            self.proc = None
            log = "\n".join(ln for ln in (err + out).splitlines() if '"level": "info"' not in ln)[-6000:]
        return f"journal:\n{journal}\nlog:\n{log}"

    def alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{err[-4000:]}\n{out[-4000:]}")

    # -- the database -------------------------------------------------------------------------------
    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return read_db(self.data / "tradebot-live.db", sql, *args)

    def heartbeat_ok(self) -> bool:
        return (self.data / "heartbeat.json").exists()

    # -- the broker's side (ProjectX here; RithmicRig overrides) ---------------------------------------
    broker = "projectx"

    def now_ns(self) -> int:
        return self.px.do(lambda: self.px.server.now_ns)

    def serve(self, ev: BookUpdate | Trade) -> None:
        self.px.call(self.px.server.market(ev))

    def working(self) -> list[tuple[str, str, int]]:
        """The broker's working orders as (our client order id, market|limit|stop, size)."""
        kinds = {1: "limit", 2: "market", 4: "stop"}
        return [(str(o.get("customTag") or f"px:{o['id']}"), kinds.get(int(o["type"]), "?"), int(o["size"]))
                for o in self.open_orders()]

    def placed(self) -> list[str]:
        """Client order ids of every order the broker ever accepted."""
        return [str(o.get("customTag") or "") for o in self.orders()]

    def broker_trades(self) -> list[tuple[str, int, int]]:
        """(fill id, signed quantity, price in ticks) of every fill at the broker."""
        tick = spec_for("ES").tick_size
        return [(str(t["id"]), int(t["size"]) * (1 if t["side"] == PxSide.BID else -1),
                 price_to_ticks(t["price"], tick) or 0) for t in self.px.do(lambda: list(self.px.server.trades))]

    def set_faults(self, **kw: Any) -> None:
        self.px.do(lambda: [setattr(self.px.server.faults, k, v) for k, v in kw.items()])

    # -- the market ---------------------------------------------------------------------------------

    def quote(self, mid: int, ts_ns: int) -> None:
        self.last_mid = mid
        self.serve(BookUpdate("ES", ts_ns, ts_ns, (mid - 1,), (20,), (mid,), (20,)))

    def print_at(self, price: int, ts_ns: int, side: Side = Side.SELL) -> None:
        self.serve(Trade("ES", ts_ns, ts_ns, price, 5, side, SideRule.EXCHANGE))

    def orders(self) -> list[dict[str, Any]]:
        return self.px.do(lambda: [dict(o) for o in self.px.server.orders.values()])

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders() if o["status"] in (PxOrderStatus.OPEN, PxOrderStatus.PENDING)]

    def serve_then_faults(self, ev: BookUpdate | Trade, faults: dict[str, Any]) -> None:
        """Serve ``ev`` and set ``faults`` in the same step of the stand-in's loop (before any answer to it)."""
        async def step() -> None:
            await self._serve_coro(ev)
            for k, v in faults.items():
                setattr(self.px.server.faults, k, v)

        self.px.call(step())

    async def _serve_coro(self, ev: BookUpdate | Trade) -> None:
        await self.px.server.market(ev)

    def fill_entries(self, until: Callable[[], bool], timeout: float = 90,
                     then_faults: dict[str, Any] | None = None) -> None:
        """Serve a quote in the middle of each bracket whose entry is working at the stand-in (it fills at the
        ask, inside stop and target), until ``until()``."""
        end = time.monotonic() + timeout
        while not until():
            self.alive()
            if time.monotonic() > end:
                raise AssertionError(f"timed out; working at the broker: {self.working()}\n{self.dump()}")
            for tag, kind, _size in self.working():
                if kind == "market" and not tag.endswith("-E") and self.last_mid:  # a market exit: at the last quote
                    self.quote(self.last_mid, self.now_ns() + MS)
                    continue
                if not tag.endswith("-E"):
                    continue
                rows = self.query("SELECT stop_price, target_price, ts_ns AS armed_ns FROM signals "
                                  "WHERE signal_id = ?", tag[:-2])
                if not rows:
                    continue
                mid = (int(rows[0]["stop_price"]) + int(rows[0]["target_price"])) // 2
                ts = max(self.now_ns(), int(rows[0]["armed_ns"] or 0)) + MS
                if then_faults:
                    self.last_mid = mid
                    self.serve_then_faults(BookUpdate("ES", ts, ts, (mid - 1,), (20,), (mid,), (20,)), then_faults)
                    then_faults = None
                else:
                    self.quote(mid, ts)
            time.sleep(0.1)

    # -- the end state ------------------------------------------------------------------------------
    def broker_position(self) -> int:
        return self.px.do(lambda: self.px.server.net_position("ES"))

    def journal_equals_broker(self) -> None:
        trades = self.broker_trades()
        fills = self.query("SELECT fill_id, side, quantity, price FROM fills")
        ours = sorted((int(r["quantity"]) * (1 if int(r["side"]) == int(Side.BUY) else -1), int(r["price"]))
                      for r in fills)
        assert ours == sorted((q, p) for _, q, p in trades), (fills, trades)
        assert {str(r["fill_id"]) for r in fills} == {fid for fid, _, _ in trades}
        assert sum(q for q, _ in ours) == self.broker_position()
        pos = self.query("SELECT qty FROM positions WHERE symbol = 'ES'")
        assert (int(pos[0]["qty"]) if pos else 0) == self.broker_position()
        working = {str(r["client_order_id"]) for r in self.query(
            "SELECT client_order_id FROM orders WHERE state IN ('working', 'partially_filled', 'pending')")}
        assert working == {tag for tag, _, _ in self.working()}, (working, self.working())

    def protected_or_flat(self) -> None:
        """Flat at the broker, or a stop of ours working there for the whole position."""
        pos = self.broker_position()
        if pos == 0:
            return
        stops = [w for w in self.working() if w[1] == "stop" and w[2] >= abs(pos)
                 and w[0].rpartition("-")[2].startswith("S")]
        assert stops, f"position {pos} without a working stop: {self.working()}"


class RithmicThread(StandInThread):
    """A Rithmic R|Protocol stand-in (TLS websocket, the library's protobufs) on a background loop."""

    def __init__(self, directory: Path, data: Path, *, restamp: bool = True) -> None:  # (not StandInThread's)
        from support.rithmic_server import RithmicStandIn

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rithmic-standin", daemon=True)
        self.thread.start()

        async def make() -> Any:
            # Restamped to end now: the adapter looks fills up in the last day of wall time, as on Rithmic.
            srv = RithmicStandIn(directory, [data], heartbeat_interval=2, contracts={"ES": "ESH5", "MES": "MESH5"},
                                 restamp=restamp)
            return await srv.start()

        self.server = self.call(make(), timeout=120)
        self.url = self.server.url

    def credentials_env(self) -> dict[str, str]:
        return {"RITHMIC_USER": "trader", "RITHMIC_PASSWORD": "secret-pw", "RITHMIC_ACCOUNT_ID": "ACC-1",
                "RITHMIC_SYSTEM_NAME": "Rithmic Test", "RITHMIC_URL": self.url,
                "RITHMIC_CA_FILE": str(self.server.ca_file)}


class RithmicRig(LiveRig):
    broker = "rithmic"

    def set_clock(self, start_ns: int) -> None:
        """Kept at the stand-in's restamped day: its fills are stamped in wall time (the fill history's window)."""

    def broker_env(self) -> dict[str, str]:
        return {**self.px.credentials_env(),
                "TRADEBOT_RITHMIC__RECONNECT_INTERVAL_SECONDS": "0.2", "TRADEBOT_RITHMIC__RECONNECT_MAX_SECONDS": "0.5",
                "TRADEBOT_RITHMIC__REQUEST_TIMEOUT_SECONDS": "2"}

    def serve(self, ev: BookUpdate | Trade) -> None:
        self.px.call(self.px.server.serve(ev))

    async def _serve_coro(self, ev: BookUpdate | Trade) -> None:
        await self.px.server.serve(ev)

    def working(self) -> list[tuple[str, str, int]]:
        kinds = {1: "limit", 2: "market", 3: "stop", 4: "stop"}

        def view() -> list[tuple[str, str, int]]:
            srv = self.px.server
            return [(srv.client_id(o), kinds.get(o.price_type, "?"), o.quantity - o.filled) for o in srv.working()]

        return self.px.do(view)

    def placed(self) -> list[str]:
        return self.px.do(lambda: [self.px.server.client_id(o) for o in self.px.server.baskets.values()])

    def broker_trades(self) -> list[tuple[str, int, int]]:
        return [(fid, q if side == "BUY" else -q, px)
                for _cid, side, q, px, fid in self.px.do(lambda: self.px.server.trades())]

    def broker_position(self) -> int:
        return int(self.px.do(lambda: self.px.server.positions()).get("ES", 0))


def wait_for(cond: Callable[[], Any], timeout: float = 60, what: str = "", rig: LiveRig | None = None) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if rig is not None:
            rig.alive()
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or cond}" + (f"\n{rig.dump()}" if rig else ""))
        time.sleep(0.1)
