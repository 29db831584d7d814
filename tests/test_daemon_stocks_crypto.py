"""The daemon as a subprocess on the Coinbase and Polygon stand-ins: a paper session end to end on a crypto pair
and on a stock (order-flow alerts, a paper trade opened and closed, ``status``, ``trades``, the digest)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from support.coinbase_server import CbPlan, CoinbaseStandIn, Level, trending_market
from support.discord_server import DiscordStandIn
from support.polling import poll_until
from support.polygon_ws_server import PolygonStandIn, WsPlan, trending_stock
from tradebot.core.calendar import calendar_for

SHIFTED = str(Path(__file__).parent / "support" / "shifted_clock.py")
KEY = "pk_" + "e2e" * 10

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY",
             "ORDER_FLOW_MONITORING_MODE", "MIN_CONFIDENCE")
FAST_WARMUP = {  # indicators that warm up in a few 2-second bars instead of an hour of 5-minute bars
    "TRADEBOT_REGIME__ADX_PERIOD": "3", "TRADEBOT_REGIME__ATR_PERIOD": "3", "TRADEBOT_REGIME__EMA_FAST": "2",
    "TRADEBOT_REGIME__EMA_SLOW": "4", "TRADEBOT_REGIME__ATR_MIN_HISTORY": "3",
    "TRADEBOT_REGIME__VOLUME_MIN_HISTORY": "2", "TRADEBOT_REGIME__STRUCTURE_LOOKBACK": "2",
    "TRADEBOT_REGIME__OPEN_BUFFER_MINUTES": "0", "TRADEBOT_REGIME__CLOSE_BUFFER_MINUTES": "0",
    "MIN_CONFIDENCE": "0.3", "ORDER_FLOW_MONITORING_MODE": "all",
}


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_DATA_DIR": str(tmp / "data"), "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.3",
                "TRADEBOT_LOG_FORMAT": "json", **FAST_WARMUP, **extra})
    return env


async def cli(tmp: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    entry = [SHIFTED] if "TRADEBOT_TEST_CLOCK_OFFSET_NS" in env else ["-m", "tradebot"]
    p = await asyncio.create_subprocess_exec(sys.executable, *entry, *args, cwd=tmp, env=env,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode is not None
    return p.returncode, out.decode() + err.decode()[-1500:]


async def wait_for(cond: Any, within: float = 90.0) -> Any:  # a ceiling: a loaded CI machine starts slowly
    return await poll_until(cond, within)


def titles(discord: DiscordStandIn) -> list[str]:
    return [r.payload["embeds"][0]["title"] for r in discord.received]


@pytest.fixture
async def discord() -> AsyncIterator[DiscordStandIn]:
    s = DiscordStandIn()
    await s.start()
    yield s
    await s.stop()


async def test_paper_session_on_btc_usd_from_the_coinbase_stand_in(tmp_path: Path, discord: DiscordStandIn) -> None:
    book = [Level("bid", "96999.99", "5"), Level("bid", "96999.97", "5"), Level("offer", "97000.01", "5"),
            Level("offer", "97000.05", "5")]
    # The crypto day ends 70 s from now, so its digest (a minute before the boundary) goes out during the test.
    boundary = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=70)).strftime("%H:%M:%S")
    async with CoinbaseStandIn([CbPlan(steps=trending_market(4000), interval_s=0.01)], book=book) as srv:
        env = env_for(tmp_path, DISCORD_WEBHOOK_URL=discord.url, TRADEBOT_COINBASE__WS_URL=srv.ws_url,
                      TRADEBOT_COINBASE__REST_URL=srv.rest_url, TRADEBOT_COINBASE__DAY_BOUNDARY=boundary)
        log = (tmp_path / "daemon.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot", "run", "--feed", "coinbase", "--symbols", "BTC-USD", "--timeframe", "1",
            cwd=tmp_path, env=env, stdout=log, stderr=asyncio.subprocess.PIPE)
        try:
            await wait_for(lambda: any(t.startswith("Trade opened: BTC-USD long") for t in titles(discord)))
            opened = next(r for r in discord.received if r.payload["embeds"][0]["title"].startswith("Trade opened"))
            fields = {f["name"]: f["value"] for f in opened.payload["embeds"][0]["fields"]}
            assert fields["quantity"] == "0.001"  # TRADEBOT_COINBASE__LOT_SIZE, shown in coins, kept in base units

            code, out = await cli(tmp_path, env, "status", "--json")
            st = json.loads(out)
            assert code == 0 and st["healthy"] and st["heartbeat"]["feed_state"] == "streaming", out
            assert [p["symbol"] for p in st["positions"]] == ["BTC-USD"]
            assert st["positions"][0]["entry"].startswith("970")

            code, out = await cli(tmp_path, env, "flatten", "--reason", "e2e", "--json")
            assert code == 0, out
            await wait_for(lambda: any(t.startswith("Trade closed: BTC-USD") for t in titles(discord)))
            await wait_for(lambda: any(t.startswith("Daily digest") for t in titles(discord)), within=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    got = titles(discord)
    assert got[0] == "tradebot started" and got[-1] == "tradebot stopped"
    log.close()
    alerts = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()
              if '"kind": "large_seller"' in line]
    assert alerts and alerts[0]["symbol"] == "BTC-USD" and alerts[0]["threshold"] == 100_000_000  # 1 BTC (seed 000)
    assert any(t.startswith("Daily digest") for t in got)
    assert srv.rest_requests == ["/api/v3/brokerage/market/products/BTC-USD"]  # increments from the venue

    code, out = await cli(tmp_path, env, "trades", "--json")
    trades = json.loads(out)
    assert code == 0 and len(trades) == 1, out
    t = trades[0]
    assert t["symbol"] == "BTC-USD" and t["reason"] == "e2e" and t["quantity"] in (100_000, "0.001"), t
    # Exact money: gross = ticks x 100000 units x 1e-8 cent, floored; fee = 1.20% of each side's notional.
    entry, exit_ = Decimal(t["entry"]), Decimal(t["exit"])
    gross = (exit_ - entry) * Decimal("0.001") * 100
    assert t["gross_cents"] == int(gross.to_integral_value(rounding="ROUND_FLOOR"))
    fee = sum(int((px * Decimal("0.001") * 100 * Decimal("0.012")).to_integral_value(rounding="ROUND_CEILING"))
              for px in (entry, exit_))
    assert t["commission_cents"] == fee and t["net_cents"] == t["gross_cents"] - fee


def open_market_offset_ns() -> int:
    """Shift to an hour after the latest NYSE open, so the stock session is open whenever the suite runs."""
    now = time.time_ns()
    cal = calendar_for("nyse")
    last = [x for x in cal.sessions if x.rth_open_ns <= now][-1]
    return last.rth_open_ns + 3600 * 10**9 - now


async def test_paper_session_on_aapl_from_the_polygon_stand_in(tmp_path: Path, discord: DiscordStandIn) -> None:
    offset = open_market_offset_ns()
    plan = WsPlan(frames=trending_stock("AAPL", 4000), interval_s=0.01)
    async with PolygonStandIn(KEY, [plan], clock_offset_ns=offset) as srv:
        env = env_for(tmp_path, DISCORD_WEBHOOK_URL=discord.url, POLYGON_API_KEY=KEY,
                      TRADEBOT_POLYGON__WS_URL=srv.ws_url, TRADEBOT_POLYGON__REST_URL=srv.rest_url,
                      TRADEBOT_TEST_CLOCK_OFFSET_NS=str(offset), TRADEBOT_FEED="polygon", TRADING_SYMBOL="AAPL",
                      TRADEBOT_ROUTER__STOP_POINTS_BY_SYMBOL="AAPL:5.00")  # no stop/target inside the test
        log = (tmp_path / "daemon.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, SHIFTED, "run", "--feed", "polygon", "--symbols", "AAPL", "--timeframe", "1",
            cwd=tmp_path, env=env, stdout=log, stderr=asyncio.subprocess.PIPE)
        try:
            await wait_for(lambda: any(t.startswith("Trade opened: AAPL long") for t in titles(discord)))
            opened = next(r for r in discord.received if r.payload["embeds"][0]["title"].startswith("Trade opened"))
            fields = {f["name"]: f["value"] for f in opened.payload["embeds"][0]["fields"]}
            assert fields["quantity"] == "100"  # one lot of TRADEBOT_STOCKS__LOT_SHARES
            code, out = await cli(tmp_path, env, "status", "--json")
            st = json.loads(out)
            assert code == 0 and st["healthy"] and st["heartbeat"]["feed_state"] == "streaming", out
            assert [p["symbol"] for p in st["positions"]] == ["AAPL"]
            code, out = await cli(tmp_path, env, "flatten", "--reason", "e2e", "--json")
            assert code == 0, out
            await wait_for(lambda: any(t.startswith("Trade closed: AAPL") for t in titles(discord)))
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        log.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert srv.connections[0].actions[0] == {"action": "subscribe", "params": "T.AAPL,Q.AAPL"}
    got = titles(discord)
    assert got[0] == "tradebot started" and got[-1] == "tradebot stopped"
    alerts = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()
              if '"kind": "large_seller"' in line]
    assert alerts and alerts[0]["symbol"] == "AAPL" and alerts[0]["threshold"] == 10_000  # seed 000's shares
    code, out = await cli(tmp_path, env, "trades", "--json")
    trades = json.loads(out)
    assert code == 0 and len(trades) == 1, out
    t = trades[0]
    gross = (Decimal(t["exit"]) - Decimal(t["entry"])) * 100 * 100  # 100 shares, cents
    assert t["symbol"] == "AAPL" and t["gross_cents"] == int(gross) and t["commission_cents"] == 0
