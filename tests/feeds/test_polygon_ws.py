"""The Polygon/Massive stocks websocket against its stand-in: auth, subscriptions, the quote/tick rule, reconnects
with a gap event, fatal auth failures, bad frames, and the REST-polling fallback inside its request budget."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from support.polygon_ws_server import PolygonStandIn, WsPlan, quote, trade
from tradebot.core.config import PolygonLiveSettings, Settings, ValidationSettings
from tradebot.core.types import FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Side, SideRule, Trade
from tradebot.feeds.polygon_ws import PolygonLiveFeed, RateLimiter
from tradebot.feeds.validation import Validator

KEY = "pk_" + "x" * 29


def settings(tmp: Path, **poly: Any) -> Settings:
    cfg = PolygonLiveSettings(reconnect_initial_seconds=0.05, reconnect_max_seconds=0.2, **poly)
    return Settings(_env_file=None, polygon_api_key=SecretStr(KEY), polygon=cfg, data_dir=tmp,  # type: ignore[call-arg]
                    feed="polygon", trading_symbol="AAPL", order_flow_monitoring_mode="all")


class Collector:
    def __init__(self, feed: PolygonLiveFeed) -> None:
        self.feed = feed
        self.events: list[Any] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for ev in self.feed:
            self.events.append(ev)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, cond: Any, within: float = 10.0) -> None:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if cond() or self.task.done():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out; events: {self.events[-10:]}")

    async def stop(self) -> None:
        await self.feed.close()
        self.task.cancel()
        with contextlib_suppress():
            await self.task


def contextlib_suppress() -> Any:
    import contextlib

    return contextlib.suppress(asyncio.CancelledError, Exception)


def feed_for(tmp: Path, srv: PolygonStandIn, symbols: list[str], **poly: Any) -> PolygonLiveFeed:
    return PolygonLiveFeed(settings(tmp, **poly), symbols, ws_url=srv.ws_url, rest_url=srv.rest_url)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


async def test_auth_subscribe_and_sides_by_quote_then_tick_rule(tmp: Path) -> None:
    frames: list[Any] = [
        [trade("AAPL", 190.00, 100, 1)],                         # no quote yet, no previous trade: unknown
        [trade("AAPL", 190.01, 200, 2)],                         # uptick: tick rule BUY
        [quote("AAPL", 190.00, 3, 190.02, 5, 3)],
        [trade("AAPL", 190.02, 12_000, 4), trade("AAPL", 190.00, 300, 5)],  # at ask: BUY; at bid: SELL
        [trade("AAPL", 190.01, 50, 6)],                          # at the mid: tick rule (up from 190.00)
        "not json", [{"ev": "T", "sym": "AAPL", "p": "x", "s": 1, "t": None}], [{"ev": "Z", "sym": "AAPL"}],
        [trade("MSFT", 400.0, 1, 7)],
    ]
    async with PolygonStandIn(KEY, [WsPlan(frames=frames)]) as srv:
        feed = feed_for(tmp, srv, ["AAPL"])
        c = Collector(feed)
        await c.until(lambda: len(c.of(RawTrade)) >= 5 and feed.stats["unexpected_symbol"] >= 1)
        await c.stop()
    conn = srv.connections[0]
    assert conn.sent_auth == KEY
    assert conn.actions[0] == {"action": "subscribe", "params": "T.AAPL,Q.AAPL"}
    assert {(t.side, t.side_rule) for t in c.of(RawTrade)} == {(Side.UNKNOWN, SideRule.NONE)}  # as on the tape
    # Through the validation layer (the one place unsided prints get a side): quote rule vs the NBBO, else tick.
    v = Validator(ValidationSettings(), ["AAPL"])
    events = [v.validate(r) for r in c.events if isinstance(r, RawTrade | RawBook)]
    got = [(t.price, t.size, t.side, t.side_rule) for t in events if isinstance(t, Trade)]
    assert got == [(19000, 100, Side.UNKNOWN, SideRule.NONE), (19001, 200, Side.BUY, SideRule.TICK),
                   (19002, 12_000, Side.BUY, SideRule.QUOTE), (19000, 300, Side.SELL, SideRule.QUOTE),
                   (19001, 50, Side.BUY, SideRule.TICK)]
    book = c.of(RawBook)[0]
    assert (book.bid_px_fp, book.bid_sz, book.ask_px_fp, book.ask_sz) == (
        (190_000_000_000,), (3,), (190_020_000_000,), (5,))
    assert all(abs(t.ts_event - time.time_ns()) < 30 * 10**9 for t in c.of(RawTrade))
    assert feed.stats["bad_frame"] == 1 and feed.stats["bad_message"] == 1 and feed.stats["unknown_event"] == 1
    assert [s.state for s in c.of(FeedStatus)][:2] == [FeedState.CONNECTING, FeedState.STREAMING]


async def test_disconnect_reconnects_with_backoff_and_a_gap_event(tmp: Path) -> None:
    plans = [WsPlan(frames=[[quote("AAPL", 190.0, 1, 190.02, 1, 1)], [trade("AAPL", 190.02, 5, 2)]], after="abort"),
             WsPlan(frames=[[trade("AAPL", 190.0, 5, 3)]])]
    async with PolygonStandIn(KEY, plans) as srv:
        feed = feed_for(tmp, srv, ["AAPL"])
        c = Collector(feed)
        await c.until(lambda: len(c.of(RawTrade)) >= 2)
        await c.stop()
    states = [s.state for s in c.of(FeedStatus)]
    assert FeedState.RECONNECTING in states and states[-1] == FeedState.STREAMING
    gaps = c.of(GapEvent)
    assert len(gaps) == 1 and gaps[0].end_ns >= gaps[0].start_ns
    i_gap = c.events.index(gaps[0])
    assert c.events.index(c.of(RawTrade)[1]) > i_gap
    # The gap reaches the validator as in the daemon's loop: the NBBO and last price before it are forgotten,
    # so the first print after it is judged against nothing of the pre-gap state.
    v = Validator(ValidationSettings(), ["AAPL"])
    sides = []
    for ev in c.events:
        if isinstance(ev, GapEvent):
            v.on_gap()
        elif isinstance(ev, RawTrade | RawBook) and isinstance(got := v.validate(ev), Trade):
            sides.append(got.side)
    assert sides == [Side.BUY, Side.UNKNOWN]
    assert len(srv.connections) == 2 and feed.stats["disconnects"] == 1


@pytest.mark.parametrize("auth", ["fail", "max_connections"])
async def test_wrong_key_or_max_connections_is_fatal_without_retrying(tmp: Path, auth: Any) -> None:
    async with PolygonStandIn(KEY, [WsPlan(auth=auth)]) as srv:
        feed = feed_for(tmp, srv, ["AAPL"])
        events = [ev async for ev in feed]
    assert events[-1].state == FeedState.FAILED
    assert "will not retry" in events[-1].detail and KEY not in events[-1].detail
    assert len(srv.connections) == 1


async def test_positions_only_subscribes_open_positions_and_unsubscribes_closed(tmp: Path) -> None:
    async with PolygonStandIn(KEY, [WsPlan(frames=[])]) as srv:
        s = settings(tmp).model_copy(update={"order_flow_monitoring_mode": "positions_only"})
        feed = PolygonLiveFeed(s, ["AAPL"], ws_url=srv.ws_url, rest_url=srv.rest_url)
        c = Collector(feed)
        await c.until(lambda: bool(srv.connections) and len(srv.connections[0].actions) >= 1)
        feed.set_positions(["TSLA"])
        await c.until(lambda: len(srv.connections[0].actions) >= 2)
        feed.set_positions([])
        await c.until(lambda: len(srv.connections[0].actions) >= 3)
        await c.stop()
    assert srv.connections[0].actions == [
        {"action": "subscribe", "params": "T.AAPL,Q.AAPL"},
        {"action": "subscribe", "params": "T.TSLA,Q.TSLA"},
        {"action": "unsubscribe", "params": "T.TSLA,Q.TSLA"}]


@pytest.mark.parametrize("how", ["http", "plan"])
async def test_refused_socket_degrades_to_rest_polling_within_the_rate_limit(tmp: Path, how: str) -> None:
    plan = WsPlan(refuse_http=403) if how == "http" else WsPlan(auth="plan")
    now = time.time_ns()
    async with PolygonStandIn(KEY, [plan], rest_429_first=1) as srv:
        srv.rest_nbbo["AAPL"] = {"p": 155.65, "s": 1, "P": 155.66, "S": 14, "t": now, "q": 9, "T": "AAPL"}
        srv.rest_trades["AAPL"] = [
            {"sip_timestamp": now + 1, "price": 155.66, "size": 100, "sequence_number": 10, "conditions": []},
            {"sip_timestamp": now + 2, "price": 155.65, "size": 15_000, "sequence_number": 11}]
        feed = feed_for(tmp, srv, ["AAPL"], rest_requests_per_minute=600)
        c = Collector(feed)
        await c.until(lambda: len(c.of(RawTrade)) >= 2 and len(srv.rest_requests) >= 5)
        await c.stop()
    trades = c.of(RawTrade)
    assert [(t.size, t.source) for t in trades[:2]] == [(100, "polygon-poll"), (15_000, "polygon-poll")]
    assert [b.bid_px_fp for b in c.of(RawBook)][:1] == [(155_650_000_000,)]  # the NBBO, for the quote rule
    assert len(trades) == 2  # the next polls ask only for trades after the last one seen
    later = [r for r in srv.rest_requests if r[1] == "/v3/trades/AAPL"][-1]
    assert later[2]["timestamp.gt"] == str(now + 2)
    assert all(r[3] == f"Bearer {KEY}" for r in srv.rest_requests)  # the key never travels in the URL
    assert feed.stats["rest_http_429"] == 1
    assert any("degraded" in s.detail for s in c.of(FeedStatus))


async def test_rate_limiter_allows_n_per_sliding_minute() -> None:
    t = [0.0]
    lim = RateLimiter(5, clock=lambda: t[0])
    for _ in range(5):
        assert lim.delay() == 0
        lim.sent.append(t[0])
        t[0] += 1
    assert lim.delay() == pytest.approx(55.0)
    t[0] = 60.0
    assert lim.delay() == 0
