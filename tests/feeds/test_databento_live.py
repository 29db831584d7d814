"""DatabentoLiveFeed through the real ``databento.Live`` client against the local test gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Callable
from typing import Any

import databento_dbn as dbn
import pytest
from pydantic import SecretStr

from support.dbn_gateway import ConnPlan, DbnGateway, error, mapping, mbp1, system, trade
from tradebot.core.config import DatabentoSettings, Settings
from tradebot.core.contracts import front_month
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Side
from tradebot.feeds.base import Feed
from tradebot.feeds.databento_live import DatabentoConfigError, DatabentoLiveFeed

pytestmark = pytest.mark.timeout(20)

KEY = "db-" + "k" * 27 + "live1"
FRONT = front_month("ES", dt.datetime.now(dt.UTC).date())
BACK = "ESZ9" if FRONT != "ESZ9" else "ESH9"
PX = 6_000_000_000_000  # 6000.00
TICK = 250_000_000


def _settings(port: int, key: str | None = KEY, **db: Any) -> Settings:
    cfg = {"gateway": "127.0.0.1", "port": port, "reconnect_initial_seconds": 0.05,
           "reconnect_max_seconds": 0.2, "heartbeat_interval_seconds": 5, **db}
    return Settings(_env_file=None, databento_api_key=SecretStr(key) if key else None,  # type: ignore[call-arg]
                    databento=DatabentoSettings(**cfg))


class Collector:
    """Consumes a feed in a task so tests can watch events and counters that yield nothing (heartbeats)."""

    def __init__(self, feed: DatabentoLiveFeed) -> None:
        self.feed = feed
        self.events: list[FeedEvent] = []
        self.task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        async for ev in self.feed:
            self.events.append(ev)

    async def until(self, pred: Callable[[], bool], within_s: float = 8.0) -> None:
        deadline = time.monotonic() + within_s
        while not pred():
            if self.task.done():
                self.task.result()
                assert pred(), f"feed ended early: {self.statuses()}"
            assert time.monotonic() < deadline, f"timed out; events={self.events!r} stats={self.feed.stats}"
            await asyncio.sleep(0.02)

    async def close(self, within_s: float = 2.0) -> float:
        t0 = time.monotonic()
        await self.feed.close()
        await asyncio.wait_for(self.task, within_s)
        return time.monotonic() - t0

    def statuses(self) -> list[FeedStatus]:
        return [e for e in self.events if isinstance(e, FeedStatus)]

    def trades(self) -> list[RawTrade]:
        return [e for e in self.events if isinstance(e, RawTrade)]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def test_streams_mapped_front_month_records_in_order() -> None:
    plan = ConnPlan(records=[
        mapping(1, FRONT), mapping(2, BACK), mapping(3, f"{FRONT}-{BACK}"),
        trade(1, PX, 3, "B", sequence=1), mbp1(1, PX, PX + TICK, sequence=2),
        trade(2, PX + 40 * TICK, 1, "A", sequence=3),  # back month: filtered
        trade(3, 40 * TICK, 1, "B", sequence=4),  # calendar spread: filtered
        trade(1, PX, 2, "A", sequence=5), trade(99, PX, 1, "B", sequence=6),  # 99: never mapped
        system("slow reader", dbn.SystemCode.SLOW_READER_WARNING),
        error("symbol resolution failed for XYZ", dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED),
    ], heartbeat_s=0.1)
    async with DbnGateway(KEY, [plan]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"])
        assert isinstance(feed, Feed)
        c = Collector(feed)
        await c.until(lambda: len(c.trades()) >= 3 and feed.stats["heartbeat"] >= 2)
        trades, books = c.trades(), c.of(RawBook)
        assert [(t.sequence, t.symbol, t.side, t.size, t.price_fp) for t in trades] == [
            (1, FRONT, Side.BUY, 3, PX), (5, FRONT, Side.SELL, 2, PX), (6, "", Side.BUY, 1, PX)]
        assert [(b.sequence, b.bid_px_fp, b.ask_px_fp) for b in books] == [(2, (PX,), (PX + TICK,))]
        market = [e for e in c.events if isinstance(e, RawTrade | RawBook)]
        assert [e.sequence for e in market] == [1, 2, 5, 6]
        assert all(e.ts_recv > e.ts_event > 0 and e.source == "databento" for e in market)
        assert feed.stats["filtered_other_contract"] == 2
        assert feed.stats["slow_reader"] == 1 and feed.stats["error_msg"] == 1
        assert feed.stats["symbol_mapping"] == 3
        assert [s.state for s in c.statuses()] == [FeedState.CONNECTING, FeedState.STREAMING]
        assert feed.state is FeedState.STREAMING
        (conn,) = gw.connections
        assert conn.auth_ok and conn.started and conn.auth["heartbeat_interval_s"] == "5"
        assert conn.auth["dataset"] == "GLBX.MDP3"
        assert [(s["schema"], s["stype_in"], s["symbols"]) for s in conn.subscriptions] == [
            ("trades", "parent", "ES.FUT"), ("mbp-1", "parent", "ES.FUT")]
        assert await c.close() < 1.0
        assert feed.state is FeedState.STOPPED and c.statuses()[-1].state is FeedState.STOPPED


@pytest.mark.parametrize(("book", "stype", "want"), [
    ("tbbo", "continuous", [("tbbo", "ES.c.0,NQ.c.0")]),
    ("none", "parent", [("trades", "ES.FUT,NQ.FUT")]),
    ("mbp-10", "raw_symbol", [("trades", None), ("mbp-10", None)]),
])
async def test_subscriptions_follow_settings(book: str, stype: str, want: list[tuple[str, str | None]]) -> None:
    today = dt.datetime.now(dt.UTC).date()
    raw = f"{front_month('ES', today)},{front_month('NQ', today)}"
    async with DbnGateway(KEY, [ConnPlan()]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port, book_schema=book, stype_in=stype), ["ES", "NQ", "ES"])
        c = Collector(feed)
        await c.until(lambda: feed.state is FeedState.STREAMING)
        (conn,) = gw.connections
        assert [(s["schema"], s["symbols"]) for s in conn.subscriptions] == [(sc, sy or raw) for sc, sy in want]
        assert {s["stype_in"] for s in conn.subscriptions} == {stype}
        await c.close()


async def test_tbbo_yields_book_then_trade() -> None:
    def tbbo(now: int) -> Any:
        lv = dbn.BidAskPair(bid_px=PX, ask_px=PX + TICK, bid_sz=7, ask_sz=9, bid_ct=1, ask_ct=1)
        return dbn.MBP1Msg(publisher_id=1, instrument_id=1, ts_event=now, price=PX + TICK, size=2,
                           action=dbn.Action.TRADE, side=dbn.Side.BID, depth=0, ts_recv=now, sequence=11,
                           levels=lv)
    async with DbnGateway(KEY, [ConnPlan(records=[mapping(1, FRONT), tbbo])]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port, book_schema="tbbo"), ["ES"])
        c = Collector(feed)
        await c.until(lambda: len(c.trades()) == 1)
        market = [e for e in c.events if isinstance(e, RawTrade | RawBook)]
        assert [type(e) for e in market] == [RawBook, RawTrade]
        assert market[1].side is Side.BUY and market[1].price_fp == PX + TICK  # type: ignore[union-attr]
        await c.close()


async def test_wrong_key_fails_once_with_a_clear_message() -> None:
    async with DbnGateway(KEY, [ConnPlan()]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port, key="db-" + "w" * 27 + "wrong"), ["ES"])
        c = Collector(feed)
        await asyncio.wait_for(c.task, 8)  # the iterator ends by itself
        states = [s.state for s in c.statuses()]
        assert states == [FeedState.CONNECTING, FeedState.FAILED]
        detail = c.statuses()[-1].detail
        assert "Authentication failed" in detail and "DATABENTO_API_KEY" in detail and "not retry" in detail
        assert "w" * 20 not in detail
        assert feed.state is FeedState.FAILED and feed.stats["auth_failures"] == 1
        await asyncio.sleep(0.5)
        assert len(gw.connections) == 1 and gw.connections[0].auth_ok is False  # no hammering
        await feed.close()
        assert feed.state is FeedState.FAILED


def test_missing_key_is_a_clear_config_error() -> None:
    with pytest.raises(DatabentoConfigError, match="DATABENTO_API_KEY"):
        DatabentoLiveFeed(_settings(13000, key=None), ["ES"])
    with pytest.raises(DatabentoConfigError, match="unknown contract"):
        DatabentoLiveFeed(_settings(13000), ["ZZZ"])


@pytest.mark.parametrize("how", ["abort", "close", "error"])
async def test_disconnect_mid_stream_reconnects_with_a_gap(how: str) -> None:
    first = ConnPlan(records=[mapping(1, FRONT), trade(1, PX, 1, "B", 1), trade(1, PX, 2, "A", 2)],
                     interval_s=0.05, after=how)  # type: ignore[arg-type]
    second = ConnPlan(records=[mapping(7, FRONT), trade(7, PX + TICK, 4, "B", 3), trade(7, PX, 5, "A", 4)],
                      heartbeat_s=0.2)
    async with DbnGateway(KEY, [first, second]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"])
        c = Collector(feed)
        await c.until(lambda: len(c.trades()) >= 4)
        assert [t.sequence for t in c.trades()] == [1, 2, 3, 4]
        assert {t.symbol for t in c.trades()} == {FRONT}
        assert [s.state for s in c.statuses()] == [FeedState.CONNECTING, FeedState.STREAMING,
                                                   FeedState.RECONNECTING, FeedState.STREAMING]
        lost, restored = c.statuses()[2], c.statuses()[3]
        assert "connection lost" in lost.detail and lost.extra["attempt"] == 1
        if how == "error":
            assert "Internal error" in lost.detail
        assert "reconnected" in restored.detail
        (gap,) = c.of(GapEvent)
        idx = c.events.index(gap)
        before, after = c.trades()[1], c.trades()[2]
        assert c.events.index(before) < idx < c.events.index(after)
        assert before.ts_event <= gap.start_ns < gap.end_ns <= after.ts_recv
        assert gap.source == "databento" and gap.reason
        assert feed.stats["reconnects"] == 1 and feed.stats["gaps"] == 1 and feed.stats["disconnects"] == 1
        assert len(gw.connections) == 2 and all(cn.started for cn in gw.connections)
        assert gw.connections[1].subscriptions == gw.connections[0].subscriptions
        await c.close()


async def test_silent_gateway_after_start_is_detected_and_reconnected() -> None:
    async with DbnGateway(KEY, [ConnPlan(send_metadata=False), ConnPlan(records=[mapping(1, FRONT),
                                                                               trade(1, PX, 1, "B", 1)])]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"], silence_timeout_s=0.6)
        c = Collector(feed)
        t0 = time.monotonic()
        await c.until(lambda: len(c.trades()) == 1)
        assert time.monotonic() - t0 >= 0.6
        assert feed.stats["silent_timeouts"] == 1
        lost = [s for s in c.statuses() if s.state is FeedState.RECONNECTING]
        assert len(lost) == 1 and "no data or heartbeat" in lost[0].detail
        assert len(gw.connections) == 2 and gw.connections[0].started
        (gap,) = c.of(GapEvent)
        assert gap.start_ns < gap.end_ns
        await c.close()


async def test_heartbeats_keep_a_quiet_session_alive() -> None:
    async with DbnGateway(KEY, [ConnPlan(records=[mapping(1, FRONT)], heartbeat_s=0.15)]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"], silence_timeout_s=0.5)
        c = Collector(feed)
        await c.until(lambda: feed.stats["heartbeat"] >= 8)  # ~1.2 s, well past the silence timeout
        assert feed.stats["silent_timeouts"] == 0 and len(gw.connections) == 1
        await c.close()


async def test_gateway_that_never_greets_is_abandoned_and_retried() -> None:
    async with DbnGateway(KEY, [ConnPlan(greet=False), ConnPlan(records=[mapping(1, FRONT),
                                                                       trade(1, PX, 1, "B", 1)])]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"], connect_timeout_s=0.5)
        c = Collector(feed)
        await c.until(lambda: len(c.trades()) == 1)
        assert feed.stats["connect_failures"] == 1
        assert "no answer from the gateway" in c.statuses()[1].detail
        assert c.statuses()[1].state is FeedState.RECONNECTING
        await c.close()


@pytest.mark.parametrize("code", [dbn.ErrorCode.API_KEY_DEACTIVATED, dbn.ErrorCode.AUTH_FAILED])
async def test_gateway_key_error_mid_stream_is_fatal(code: Any) -> None:
    plan = ConnPlan(records=[mapping(1, FRONT), trade(1, PX, 1, "B", 1)], after="error",
                    error_text="API key deactivated", error_code=code)
    async with DbnGateway(KEY, [plan, ConnPlan()]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"])
        c = Collector(feed)
        await asyncio.wait_for(c.task, 8)
        assert c.statuses()[-1].state is FeedState.FAILED and "DATABENTO_API_KEY" in c.statuses()[-1].detail
        assert len(c.trades()) == 1 and feed.stats["error_msg"] == 1
        await asyncio.sleep(0.3)
        assert len(gw.connections) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_refused_connection_backs_off_capped_without_failing() -> None:
    feed = DatabentoLiveFeed(_settings(_closed_port()), ["ES"])
    c = Collector(feed)
    await c.until(lambda: feed.stats["connect_failures"] >= 5)
    retries = [s for s in c.statuses() if s.state is FeedState.RECONNECTING]
    assert [s.extra["attempt"] for s in retries[:5]] == [1, 2, 3, 4, 5]
    delays = [float(s.detail.rsplit("retry in ", 1)[1].rstrip("s")) for s in retries]
    assert all(0.025 <= d <= 0.2 for d in delays)
    assert FeedState.FAILED not in [s.state for s in c.statuses()]
    assert await c.close() < 1.0


def test_backoff_is_exponential_capped_and_jittered() -> None:
    feed = DatabentoLiveFeed(_settings(1, reconnect_initial_seconds=0.5, reconnect_max_seconds=30.0), ["ES"])
    for attempt in range(1, 12):
        cap = min(30.0, 0.5 * 2 ** (attempt - 1))
        samples = [feed._backoff(attempt) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in samples)
        assert len(set(samples)) > 1


async def test_close_during_backoff_is_prompt() -> None:
    feed = DatabentoLiveFeed(_settings(_closed_port(), reconnect_initial_seconds=10, reconnect_max_seconds=30),
                             ["ES"])
    c = Collector(feed)
    await c.until(lambda: feed.state is FeedState.RECONNECTING)
    assert await c.close() < 1.0
    assert feed.state is FeedState.STOPPED


async def test_close_during_a_hung_connect_is_prompt() -> None:
    async with DbnGateway(KEY, [ConnPlan(greet=False)]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"], connect_timeout_s=10)
        c = Collector(feed)
        await gw.wait_connections(1)
        assert await c.close() < 1.0
        assert feed.state is FeedState.STOPPED and feed.stats["connects"] == 0


async def test_records_skipped_for_a_slow_reader_become_a_gap() -> None:
    plan = ConnPlan(records=[mapping(1, FRONT), trade(1, PX, 1, "B", 1),
                             error("skipped records", dbn.ErrorCode.SKIPPED_RECORDS_AFTER_SLOW_READING),
                             trade(1, PX, 1, "A", 2)], interval_s=0.01)
    async with DbnGateway(KEY, [plan]) as gw:
        feed = DatabentoLiveFeed(_settings(gw.port), ["ES"])
        c = Collector(feed)
        await c.until(lambda: len(c.trades()) == 2)
        (gap,) = c.of(GapEvent)
        first, second = c.trades()
        assert c.events.index(first) < c.events.index(gap) < c.events.index(second)
        assert first.ts_event <= gap.start_ns < gap.end_ns < second.ts_recv and "skipped" in gap.reason
        assert feed.stats["slow_reader_skips"] == 1 and feed.state is FeedState.STREAMING
        await c.close()


def test_reconnect_backoff_is_capped_jittered_and_never_overflows() -> None:
    """One backoff for every live feed (Databento, Polygon, Coinbase): 0.5-1.0 x min(max, initial * 2^n)."""
    from tradebot.feeds.base import jittered_backoff

    for attempt, cap in ((0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (5000, 30.0)):
        for _ in range(20):
            assert cap * 0.5 <= jittered_backoff(attempt, 0.5, 30.0) <= cap
