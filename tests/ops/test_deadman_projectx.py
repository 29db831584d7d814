"""The dead-man's switch through the real ``tradebot watchdog`` command against the ProjectX stand-in.

A live manager opens a position at the stand-in through the real adapter and "dies" (its database and broker
session closed, no flatten, its last heartbeat left behind). ``tradebot watchdog --once`` must log in with its own
session, cancel the working stop and target, close the position with the bracket's own exit id, and report it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

from support.exec_helpers import intent, settings
from support.projectx_server import ProjectXStandIn
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.execution.brokers.projectx import ProjectXBroker
from tradebot.execution.manager import ExecutionManager
from tradebot.feeds.projectx_rest import ProjectXClient
from tradebot.ops.heartbeat import HEARTBEAT_FILE, write_heartbeat
from tradebot.state.store import StateStore

T0 = 1_764_772_200_000_000_000  # 2025-12-03 14:30 UTC, a Wednesday session
S = 1_000_000_000
PX = 27_000


def book(ts: int) -> BookUpdate:
    return BookUpdate("ES", ts, ts, (PX, PX - 1), (20, 30), (PX + 1, PX + 2), (25, 35))


def trade(ts: int, px: int = PX + 1) -> Trade:
    return Trade("ES", ts, ts, px, 1, Side.BUY, SideRule.EXCHANGE)


async def settle(broker: ProjectXBroker, m: ExecutionManager) -> None:
    for _ in range(4):
        await asyncio.sleep(0.05)
        await broker.drain()
    m.pump()


async def test_watchdog_flattens_a_dead_daemons_position_at_projectx(tmp_path: Path) -> None:
    server = ProjectXStandIn(ping_seconds=0.5)
    await server.start()
    data = tmp_path / "data"
    data.mkdir()
    try:
        # -- the daemon: opens a long at the stand-in, then dies ------------------------------------------
        client = ProjectXClient(server.url, server.username, server.api_key, timeout_seconds=2.0, retries=3,
                                backoff_initial_seconds=0.02, backoff_max_seconds=0.2)
        broker = ProjectXBroker(client, user_hub_url=server.user_hub_url, symbols=["ES"],
                                backoff_initial_seconds=0.02, backoff_max_seconds=0.2)
        await broker.connect()
        cfg = settings().model_copy(update={"trading_mode": "live"})
        store = StateStore.open(data / "tradebot-live.db", mode="live")
        m = ExecutionManager(cfg, store, broker, symbols=["ES"])
        m.recover(T0)
        await server.market(book(T0))
        m.on_market_event(book(T0))
        it = intent(0, Side.BUY, stop=PX - 40, target=PX + 40)
        it = type(it)(it.signal_id, "ES", Side.BUY, 1, it.entry_type, None, PX - 40, PX + 40, T0 + 1, 0.8,
                      it.pattern, it.regime, it.reasons)
        assert m.on_intent(it).taken
        await settle(broker, m)
        await server.market(book(T0 + S))
        m.on_market_event(book(T0 + S))
        await settle(broker, m)
        assert server.net_position("ES") == 1
        assert {o["customTag"] for o in server.open_orders()} == {f"{it.signal_id}-S", f"{it.signal_id}-T"}
        store.close()
        await broker.close()
        write_heartbeat(data / HEARTBEAT_FILE, {
            "ts_ns": time.time_ns() - 300 * S, "mode": "live", "broker": "projectx", "positions": {"ES": 1},
            "open_brackets": 1, "feed_state": "streaming"})

        # -- the watchdog: its own session; the market keeps trading meanwhile -------------------------------
        async def market() -> None:
            ts = T0 + 2 * S
            while True:
                ts += S // 10
                await server.market(book(ts))
                await server.market(trade(ts + 1))
                await asyncio.sleep(0.05)

        feeder = asyncio.create_task(market())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "PROJECTX_", "TRADING_"))}
        env.update({"TRADEBOT_DATA_DIR": str(data), "TRADING_MODE": "live", "TRADING_SYMBOL": "ES",
                    "PROJECTX_API_URL": server.url, "PROJECTX_USER_HUB_URL": server.user_hub_url,
                    "PROJECTX_MARKET_HUB_URL": server.market_hub_url, "PROJECTX_USERNAME": server.username,
                    "PROJECTX_API_KEY": server.api_key, "TRADEBOT_WATCHDOG__DEADMAN_FLAT_SECONDS": "20",
                    "TRADEBOT_EXECUTION__TIERS_ENABLED": "false", "TRADEBOT_LOG_LEVEL": "WARNING"})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot", "watchdog", "--once", "--json", "--broker", "projectx",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        feeder.cancel()
        report = json.loads(out.decode())
        dead = next(c for c in report["checks"] if c["check"] == "dead-man")
        assert dead["ok"], (dead, err.decode()[-2000:])
        assert re.fullmatch(r"fired \(heartbeat 3\d\ds old with ES \+1 open\): flat", dead["detail"]), dead
        assert proc.returncode == 1  # the stale heartbeat itself stays a problem until the daemon is back
        assert server.net_position("ES") == 0 and not server.open_orders()
        # The close carried the bracket's own exit id, read from the daemon's database.
        closes = [body for path, body in server.requests if path.endswith("Order/place")
                  and body.get("customTag", "").endswith("-X1")]
        assert [c["customTag"] for c in closes] == [f"{it.signal_id}-X1"]
    finally:
        await server.stop()
