"""``--feed projectx``: the market hub of the ProjectX stand-in, through the same validation layer as every feed."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.polling import poll_until
from support.projectx_server import ProjectXStandIn, load_events
from tradebot.core.config import Settings
from tradebot.core.types import BookUpdate, FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Side, SideRule, Trade
from tradebot.feeds.factory import make_feed
from tradebot.feeds.projectx_market import ProjectXMarketFeed, ProjectXMarketParser
from tradebot.feeds.validation import Validator

T0 = 1_764_772_200_000_000_000
CID = "CON.F.US.EP.Z26"
TESTS = Path(__file__).resolve().parents[1]
SHARED = TESTS.parent / ".." / "shared" / "data"


def settings_for(server: ProjectXStandIn, key: str | None = None) -> Settings:
    return Settings(_env_file=None, projectx_api_url=server.url, projectx_market_hub_url=server.market_hub_url,
                    projectx_username=server.username, projectx_api_key=key or server.api_key,
                    projectx={"backoff_initial_seconds": 0.02, "backoff_max_seconds": 0.2})


@pytest.fixture
async def server() -> AsyncIterator[ProjectXStandIn]:
    s = ProjectXStandIn(ping_seconds=0.5)
    await s.start()
    yield s
    await s.stop()


def test_parser_depth_trades_quotes_and_damage() -> None:
    stats: Counter[str] = Counter()
    p = ProjectXMarketParser({CID: "ES"}, stats, clock_ns=lambda: 7)
    ts = "2025-12-03T14:30:00.1234567+00:00"
    books = p.event("GatewayDepth", [CID, [
        {"timestamp": ts, "type": 6, "price": 0, "volume": 0, "currentVolume": 0},
        {"timestamp": ts, "type": 2, "price": 6750.25, "volume": 12, "currentVolume": 12},
        {"timestamp": ts, "type": 2, "price": 6750.0, "volume": 30, "currentVolume": 30},
        {"timestamp": ts, "type": 1, "price": 6750.5, "volume": 9, "currentVolume": 9},
        {"timestamp": ts, "type": 5, "price": 6750.5, "volume": 1, "currentVolume": 1}]])
    assert books == [RawBook("ES", 1764772200123456700, 7, (6_750_250_000_000, 6_750_000_000_000), (12, 30),
                             (6_750_500_000_000,), (9,), source="projectx")]
    # A level going to zero leaves the book; a new best bid replaces nothing else.
    (b2,) = p.event("GatewayDepth", [CID, [{"timestamp": ts, "type": 2, "price": 6750.25, "volume": 0}]])
    assert b2.bid_px_fp == (6_750_000_000_000,)
    trades = p.event("GatewayTrade", [CID, [{"symbolId": "F.US.EP", "price": 6750.5, "timestamp": ts, "type": 0,
                                             "volume": 3},
                                            {"symbolId": "F.US.EP", "price": 6750.25, "timestamp": ts, "type": 1,
                                             "volume": 2}]])
    assert [(t.side, t.size, t.side_rule) for t in trades] == [(Side.BUY, 3, SideRule.EXCHANGE),
                                                               (Side.SELL, 2, SideRule.EXCHANGE)]
    assert p.event("GatewayQuote", [CID, {"bestBid": 6750.0, "bestAsk": 6750.5}]) == []
    assert p.event("GatewayTrade", [CID, [{"price": "x", "timestamp": ts, "type": 0, "volume": 1}]]) == []
    assert p.event("GatewayTrade", ["CON.F.US.XX.Z26", []]) == []
    assert p.event("GatewayTrade", [CID]) == []
    assert stats["quotes"] == 1 and stats["bad_message"] == 2 and stats["unexpected_contract"] == 1


async def collect(feed: ProjectXMarketFeed, validator: Validator, want: int, out: list[Any],
                  within: float = 10.0) -> None:
    async def run() -> None:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook):
                v = validator.validate(ev)
                out.append(v if v is not None else ("rejected", ev))
            else:
                out.append(ev)
            if sum(isinstance(e, Trade | BookUpdate) for e in out) >= want:
                return

    await asyncio.wait_for(run(), within)


async def test_feed_delivers_what_the_stand_in_serves_and_survives_a_disconnect(server: ProjectXStandIn) -> None:
    feed = make_feed("projectx", settings_for(server), ["ES"])
    assert isinstance(feed, ProjectXMarketFeed)
    served: list[BookUpdate | Trade] = []
    for i in range(4):
        ts = T0 + i * 1_000_000
        served.append(BookUpdate("ES", ts, ts, (27_000 - i, 26_999 - i), (10 + i, 20), (27_001 - i,), (5,)))
        served.append(Trade("ES", ts + 1, ts + 1, 27_001 - i, 2, Side.BUY, SideRule.EXCHANGE))
    validator = Validator(Settings(_env_file=None).validation, ["ES"], wall_clock_future=False)
    got: list[Any] = []

    def subscribed() -> bool:
        return any(c.hub == "market" and len(c.subs) == 3 for c in server.clients)

    async def serve() -> None:
        await poll_until(subscribed, 10)
        for ev in served[:4]:
            await server.market(ev)
        await asyncio.sleep(0.2)
        await server.disconnect_all("market")
        await poll_until(lambda: feed.stats["connections"] >= 2 and subscribed(), 10)
        for ev in served[4:]:
            await server.market(ev)

    task = asyncio.create_task(serve())
    try:
        await collect(feed, validator, len(served), got)
    finally:
        await task
        await feed.close()
    market = [e for e in got if isinstance(e, Trade | BookUpdate)]
    assert [(type(e), e.ts_event) for e in market] == [(type(e), e.ts_event) for e in served]
    for mine, theirs in zip(market, served, strict=True):
        if isinstance(theirs, Trade):
            assert isinstance(mine, Trade)
            assert (mine.price, mine.size, mine.side) == (theirs.price, theirs.size, theirs.side)
        else:
            assert isinstance(mine, BookUpdate)
            assert (mine.bid_px, mine.bid_sz, mine.ask_px, mine.ask_sz) == (
                theirs.bid_px, theirs.bid_sz, theirs.ask_px, theirs.ask_sz)
    assert any(isinstance(e, GapEvent) for e in got)
    states = [e.state for e in got if isinstance(e, FeedStatus)]
    assert states[:2] == [FeedState.CONNECTING, FeedState.STREAMING]
    assert FeedState.RECONNECTING in states and states[-1] == FeedState.STREAMING


async def test_wrong_key_fails_the_feed_once(server: ProjectXStandIn) -> None:
    feed = ProjectXMarketFeed(settings_for(server, key="wrong-key-000000"), ["ES"])
    events = [ev async for ev in feed]
    await feed.close()
    assert isinstance(events[-1], FeedStatus) and events[-1].state == FeedState.FAILED
    assert "login refused" in events[-1].detail and feed.stats["auth_failed"] == 1


def test_feed_needs_credentials() -> None:
    with pytest.raises(ValueError, match="PROJECTX_API_KEY"):
        ProjectXMarketFeed(Settings(_env_file=None, projectx_username="", projectx_api_key=None), ["ES"])


async def test_real_day_replayed_through_the_hub_equals_the_file(server: ProjectXStandIn) -> None:
    events = (await load_events(SHARED / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst", "ES"))[:400]
    assert events, "the shared file yielded no events"
    feed = ProjectXMarketFeed(settings_for(server), ["ES"])
    validator = Validator(Settings(_env_file=None).validation, ["ES"], wall_clock_future=False)
    got: list[Any] = []
    server.replay(events, speed=0)
    await collect(feed, validator, len(events), got, within=30)
    await feed.close()
    market = [e for e in got if isinstance(e, Trade | BookUpdate)]
    assert len(market) == len(events)
    for mine, theirs in zip(market, events, strict=True):
        assert type(mine) is type(theirs) and mine.ts_event == theirs.ts_event
        if isinstance(theirs, Trade):
            assert isinstance(mine, Trade) and (mine.price, mine.size, mine.side) == (
                theirs.price, theirs.size, theirs.side)
        else:
            assert isinstance(mine, BookUpdate) and (mine.bid_px, mine.bid_sz, mine.ask_px, mine.ask_sz) == (
                theirs.bid_px, theirs.bid_sz, theirs.ask_px, theirs.ask_sz)


async def test_daemon_runs_on_the_projectx_feed_as_a_subprocess(tmp_path: Path) -> None:
    """``tradebot run --feed projectx`` (paper) against the stand-in running as its own process."""
    import os
    import sys

    tests_dir = TESTS
    data = SHARED / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
    srv = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "support.projectx_server", "--port", "0", "--data", str(data), "--speed", "20",
        "--live-clock", cwd=tests_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert srv.stdout is not None
        line = (await asyncio.wait_for(srv.stdout.readline(), 30)).decode().strip()
        assert line.startswith("PROJECTX_URL="), line
        url = line.split("=", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "PROJECTX_"))}
        env.update({"TRADEBOT_DATA_DIR": str(tmp_path / "data"), "TRADEBOT_LOG_FORMAT": "json",
                    "PROJECTX_API_URL": url, "PROJECTX_MARKET_HUB_URL": f"{url}/hubs/market",
                    "PROJECTX_USERNAME": "trader", "PROJECTX_API_KEY": "test-api-key-123456"})
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot", "run", "--feed", "projectx", "--symbol", "ES", "--duration", "8",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(daemon.communicate(), 90)
    finally:
        srv.terminate()
        await srv.wait()
    text = out.decode() + err.decode()
    assert daemon.returncode == 0, text[-3000:]
    assert "test-api-key-123456" not in text  # the key is never logged
    stopped = [json.loads(x) for x in text.splitlines() if '"daemon stopped"' in x]
    assert stopped and stopped[-1]["events"] > 100, text[-3000:]
