"""PolygonHistoryFeed through the real polygon client and urllib3 against a local stand-in serving real bodies.

Expectations are computed from the recorded JSON bodies (``/work/shared/data/polygon``), not typed in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from support.polygon_server import PolygonStandIn, load_body
from tradebot.core.config import ValidationSettings
from tradebot.core.prices import float_to_fp
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, RawBook, RawTrade, Side, SideRule, Trade
from tradebot.feeds.polygon_rest import (
    SOURCE_AGGS,
    SOURCE_QUOTES,
    SOURCE_TRADES,
    PolygonConfigError,
    PolygonHistoryFeed,
    parse_retry_after,
)
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "polygon"
TRADES = "v3_trades_AAPL_limit=2.json"
QUOTES1 = "v3_quotes_AAPL.json"
QUOTES2 = "v3_quotes_AAPL_page2.json"
AGGS = "v2_aggs_ticker_AAPL_range_1_day_2005-04-01_2005-04-04.json"
KEY = "test-key-abcdef"
DAY = dt.date(2022, 5, 10)


@pytest.fixture
def srv() -> Iterator[PolygonStandIn]:
    with PolygonStandIn(DATA) as s:
        yield s


def body(name: str) -> dict[str, Any]:
    return load_body(name, DATA)


def make_feed(srv: PolygonStandIn, **kw: Any) -> PolygonHistoryFeed:
    opts: dict[str, Any] = {"backoff_initial": 0.001, "backoff_max": 0.01, "read_timeout": 5.0}
    opts.update(kw)
    return PolygonHistoryFeed(KEY, "AAPL", DAY, base_url=srv.base_url, **opts)


async def collect(feed: PolygonHistoryFeed) -> list[FeedEvent]:
    return [ev async for ev in feed]


def trades_of(events: list[FeedEvent]) -> list[RawTrade]:
    return [e for e in events if isinstance(e, RawTrade)]


def books_of(events: list[FeedEvent]) -> list[RawBook]:
    return [e for e in events if isinstance(e, RawBook)]


def statuses(events: list[FeedEvent]) -> list[FeedStatus]:
    return [e for e in events if isinstance(e, FeedStatus)]


def all_quotes() -> list[dict[str, Any]]:
    return sorted(body(QUOTES1)["results"] + body(QUOTES2)["results"], key=lambda q: q["sip_timestamp"])


def dec(x: float) -> Decimal:
    return Decimal(repr(x))


def expected_sides(trades: list[dict[str, Any]], quotes: list[dict[str, Any]]) -> list[tuple[Side, SideRule]]:
    """The documented rules, in decimals: quote strictly before the trade, then tick rule, else unknown."""
    out: list[tuple[Side, SideRule]] = []
    last: Decimal | None = None
    tick = Side.UNKNOWN
    for t in sorted(trades, key=lambda r: r["sip_timestamp"]):
        px = dec(t["price"])
        if last is not None and px != last:
            tick = Side.BUY if px > last else Side.SELL
        last = px
        before = [q for q in quotes if q["sip_timestamp"] < t["sip_timestamp"]]
        if before:
            mid = (dec(before[-1]["bid_price"]) + dec(before[-1]["ask_price"])) / 2
            if px != mid:
                out.append((Side.BUY if px > mid else Side.SELL, SideRule.QUOTE))
                continue
        out.append((tick, SideRule.TICK) if tick is not Side.UNKNOWN else (Side.UNKNOWN, SideRule.NONE))
    return out


def inferred_sides(events: list[FeedEvent], scale: int = 1) -> list[tuple[Side, SideRule]]:
    """Sides as the engine sees them: the feed leaves equity prints unsided and the validation layer infers.

    The stream is re-labelled as a CL contract (a one-cent tick like the equity) so the validator accepts it,
    without sequence numbers (the test bodies reuse them across records) and with unit sizes (sides do not depend
    on them); ``scale`` multiplies trade prices (sub-cent split-adjusted bars), which the tick rule, comparing
    prices only with each other, cannot tell.
    """
    v = Validator(ValidationSettings(max_jump_ticks=10**6), symbols=["CL"])  # daily bars move far
    out: list[tuple[Side, SideRule]] = []
    for e in events:
        if isinstance(e, RawTrade):
            px = None if e.price_fp is None else e.price_fp * scale
            ev = v.validate(dataclasses.replace(e, symbol="CLM2", sequence=0, size=1, price_fp=px))
            assert isinstance(ev, Trade), v.rejects
            out.append((ev.side, ev.side_rule))
        elif isinstance(e, RawBook):
            assert v.validate(dataclasses.replace(e, symbol="CLM2", sequence=0)) is not None
    return out


# ---------------------------------------------------------------------------------------------------
# Pagination, merge, sides


async def test_quotes_paginate_to_page2_in_time_order(srv: PolygonStandIn) -> None:
    events = await collect(make_feed(srv))
    books = books_of(events)
    quotes = all_quotes()
    assert body(QUOTES1).get("next_url") and "next_url" not in body(QUOTES2)
    assert len(books) == len(body(QUOTES1)["results"]) + len(body(QUOTES2)["results"])
    assert [b.ts_event for b in books] == [q["sip_timestamp"] for q in quotes]
    assert [(b.bid_px_fp, b.ask_px_fp, b.bid_sz, b.ask_sz) for b in books] == [
        ((float_to_fp(q["bid_price"]),), (float_to_fp(q["ask_price"]),), (q["bid_size"],), (q["ask_size"],))
        for q in quotes]
    assert all(b.source == SOURCE_QUOTES and b.symbol == "AAPL" for b in books)
    # page 2 was reached through next_url's cursor, with the key sent as a bearer header every time
    quote_reqs = [r for r in srv.requests if r.path == "/v3/quotes/AAPL"]
    assert len(quote_reqs) == 2
    assert "cursor" not in quote_reqs[0].query and quote_reqs[0].query["timestamp"] == DAY.isoformat()
    assert quote_reqs[1].query == {"cursor": body(QUOTES1)["next_url"].split("cursor=", 1)[1]}
    assert all(r.authorization == f"Bearer {KEY}" for r in srv.requests)
    ts = [e.ts_event for e in events if isinstance(e, RawTrade | RawBook)]
    assert ts == sorted(ts)
    assert statuses(events)[-1].state is FeedState.STOPPED


async def test_real_trades_fall_to_tick_rule_without_a_prior_quote(srv: PolygonStandIn) -> None:
    raw = body(TRADES)["results"]
    quotes = all_quotes()
    assert max(t["sip_timestamp"] for t in raw) < quotes[0]["sip_timestamp"]  # no BBO before these trades
    events = await collect(make_feed(srv, symbol="ESM2"))
    trades = trades_of(events)
    assert [(t.ts_event, t.price_fp, t.size, t.sequence) for t in trades] == [
        (r["sip_timestamp"], float_to_fp(r["price"]), r["size"], r["sequence_number"]) for r in raw]
    assert {(t.side, t.side_rule) for t in trades} == {(Side.UNKNOWN, SideRule.NONE)}  # as the vendor said
    assert inferred_sides(events) == expected_sides(raw, quotes)
    assert {rule for _, rule in inferred_sides(events)} <= {SideRule.TICK, SideRule.NONE}
    assert all(t.symbol == "ESM2" and t.source == SOURCE_TRADES for t in trades)
    assert all(b.symbol == "ESM2" for b in books_of(events))


def _trades_around_quotes(quotes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trades in the real record shape, placed just after / exactly at real quotes, at their bid/ask/mid."""
    template = body(TRADES)["results"][0]
    mids = [(dec(q["bid_price"]) + dec(q["ask_price"])) / 2 for q in quotes]
    cent_mid = next(i for i, m in enumerate(mids) if m == m.quantize(Decimal("0.01")) and i > 3)
    bid_moves = next(i for i in range(1, len(quotes)) if quotes[i]["bid_price"] != quotes[i - 1]["bid_price"])
    plan = [  # (quote index, price, offset ns)
        (0, quotes[0]["ask_price"], 1),
        (3, quotes[3]["bid_price"], 1),
        (cent_mid, float(mids[cent_mid]), 1),
        (cent_mid, float(mids[cent_mid]), 2),
        (bid_moves, float(mids[bid_moves - 1]), 0),  # same ns as a quote: the trade sees the quote before it
    ]
    out = []
    for n, (i, px, off) in enumerate(plan):
        ts = quotes[i]["sip_timestamp"] + off
        assert i + 1 == len(quotes) or ts < quotes[i + 1]["sip_timestamp"]
        out.append({**template, "sip_timestamp": ts, "price": px, "sequence_number": template["sequence_number"] + n})
    return out


async def test_quote_rule_against_the_bbo_just_before_each_trade(srv: PolygonStandIn) -> None:
    quotes = all_quotes()
    trade_records = _trades_around_quotes(quotes)
    srv.set_body("/v3/trades/AAPL", {**body(TRADES), "results": trade_records})
    events = await collect(make_feed(srv))
    trades = trades_of(events)
    expected = expected_sides(trade_records, quotes)
    assert {(Side.BUY, SideRule.QUOTE), (Side.SELL, SideRule.QUOTE), (Side.BUY, SideRule.TICK)} <= set(expected)
    assert inferred_sides(events) == expected
    assert [t.price_fp for t in trades] == [float_to_fp(r["price"]) for r in trade_records]
    # merged stream: time order, and on a tie the trade comes before the quote
    market = [e for e in events if isinstance(e, RawTrade | RawBook)]
    keys = [(e.ts_event, 0 if isinstance(e, RawTrade) else 1) for e in market]
    assert keys == sorted(keys)
    assert len(books_of(events)) == len(quotes)


# ---------------------------------------------------------------------------------------------------
# HTTP failures and the retry policy


async def test_429_honours_retry_after_then_succeeds(srv: PolygonStandIn) -> None:
    srv.fail(429, 1, path_prefix="/v3/trades", retry_after="1")
    feed = make_feed(srv, use_quotes=False)
    t0 = time.monotonic()
    events = await collect(feed)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.95  # Retry-After: 1, while our own backoff would have been 1 ms
    assert srv.count("/v3/trades") == 2
    assert feed.stats["http_429"] == 1 and feed.stats["retries"] == 1
    assert len(trades_of(events)) == len(body(TRADES)["results"])
    assert feed.state is FeedState.STOPPED


async def test_retry_after_is_capped(srv: PolygonStandIn) -> None:
    srv.fail(429, 2, path_prefix="/v3/trades", retry_after="3600")
    feed = make_feed(srv, use_quotes=False, retry_after_max=0.02)
    t0 = time.monotonic()
    events = await collect(feed)
    assert time.monotonic() - t0 < 5
    assert feed.stats["http_429"] == 2 and srv.count("/v3/trades") == 3
    assert len(trades_of(events)) == len(body(TRADES)["results"])


async def test_5xx_then_success(srv: PolygonStandIn) -> None:
    srv.fail(500, 2, path_prefix="/v3/quotes")
    srv.fail(503, 1, path_prefix="/v3/quotes")
    srv.fail(502, 1, path_prefix="/v3/trades")
    feed = make_feed(srv)
    events = await collect(feed)
    assert (feed.stats["http_500"], feed.stats["http_503"], feed.stats["http_502"]) == (2, 1, 1)
    assert feed.stats["retries"] == 4
    assert srv.count("/v3/trades") == 2 and srv.count("/v3/quotes") == 3 + 2  # 3 failures, page 1, page 2
    assert len(books_of(events)) == len(all_quotes())
    assert statuses(events)[-1].state is FeedState.STOPPED


async def test_persistent_500_fails_clearly_with_bounded_requests(srv: PolygonStandIn) -> None:
    srv.fail(500, 1000, path_prefix="/v3/trades")
    feed = make_feed(srv, max_retries=3)
    with structlog.testing.capture_logs() as logs:
        events = await collect(feed)
    assert srv.count("/v3/trades") == 4
    last = events[-1]
    assert isinstance(last, FeedStatus) and last.state is FeedState.FAILED
    assert "gave up after 4 attempts" in last.detail and "http_500" in last.detail
    assert feed.state is FeedState.FAILED and feed.stats["failed"] == 1 and feed.stats["http_500"] == 4
    assert last.extra["http_500"] == 4
    assert any(e["log_level"] == "error" and e["event"] == "polygon history feed failed" for e in logs)
    assert not trades_of(events)


async def test_urllib3_does_not_retry_behind_our_back(srv: PolygonStandIn) -> None:
    """With max_retries=0 exactly one request is made: the client's own Retry(3) is not in force."""
    srv.fail(503, 1, path_prefix="/v3/trades", retry_after="0")
    feed = make_feed(srv, max_retries=0)
    events = await collect(feed)
    assert srv.count("/v3/trades") == 1
    assert statuses(events)[-1].state is FeedState.FAILED


async def test_non_retryable_401_names_the_key(srv: PolygonStandIn) -> None:
    srv.fail(401, 5, path_prefix="/v3/trades")
    feed = make_feed(srv)
    events = await collect(feed)
    assert srv.count("/v3/trades") == 1
    assert statuses(events)[-1].state is FeedState.FAILED and "POLYGON_API_KEY" in statuses(events)[-1].detail


async def test_read_timeout_is_retried(srv: PolygonStandIn) -> None:
    srv.delay(1.0, 1, path_prefix="/v3/trades")
    feed = make_feed(srv, use_quotes=False, read_timeout=0.2)
    events = await collect(feed)
    assert feed.stats["http_timeout"] == 1 and srv.count("/v3/trades") == 2
    assert len(trades_of(events)) == len(body(TRADES)["results"])


async def test_connection_refused_is_bounded() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feed = PolygonHistoryFeed(KEY, "AAPL", DAY, base_url=f"http://127.0.0.1:{port}", max_retries=2,
                              backoff_initial=0.001, connect_timeout=1.0)
    events = await collect(feed)
    assert feed.stats["http_connection_error"] == 3 and feed.stats["requests"] == 3
    assert statuses(events)[-1].state is FeedState.FAILED


async def test_io_runs_off_the_event_loop(srv: PolygonStandIn) -> None:
    srv.delay(0.4, 1, path_prefix="/v3/trades")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        events = await collect(make_feed(srv))
    finally:
        task.cancel()
    assert trades_of(events)
    assert ticks >= 15  # ~40 possible while the server sat on the request


# ---------------------------------------------------------------------------------------------------
# Malformed input


async def test_malformed_records_are_counted_and_skipped(srv: PolygonStandIn) -> None:
    real = body(TRADES)["results"]
    good, other = real[0], real[1]
    missing_price = {k: v for k, v in other.items() if k != "price"}
    results = [good, missing_price, {**other, "price": "157.43"}, "not a record", {**other, "size": 0.5},
               {**other, "sip_timestamp": None}, {**other, "price": float("nan")}]
    srv.set_body("/v3/trades/AAPL", json.dumps({**body(TRADES), "results": results}).encode())
    feed = make_feed(srv, use_quotes=False)
    with structlog.testing.capture_logs() as logs:
        events = await collect(feed)
    assert feed.stats["malformed_record"] == 4 and feed.stats["fractional_size"] == 1
    trades = trades_of(events)
    assert [t.price_fp for t in trades] == [float_to_fp(good["price"]), None]  # NaN left to the validator
    assert any(e["event"] == "polygon records rejected" for e in logs)
    v = Validator()
    for t in trades:
        v.validate(t)
    assert v.total_rejects == 2  # AAPL is no futures contract: unknown_instrument comes first
    assert statuses(events)[-1].state is FeedState.STOPPED


async def test_malformed_body_is_counted_and_retried(srv: PolygonStandIn) -> None:
    srv.fail(200, 1, path_prefix="/v3/trades", body=b"<html>gateway hiccup</html>")
    feed = make_feed(srv, use_quotes=False)
    events = await collect(feed)
    assert feed.stats["malformed_page"] == 1 and srv.count("/v3/trades") == 2
    assert len(trades_of(events)) == len(body(TRADES)["results"])


async def test_persistently_malformed_body_fails_bounded(srv: PolygonStandIn) -> None:
    srv.set_body("/v3/trades/AAPL", b'{"results": {"not": "a list"}')
    feed = make_feed(srv, max_retries=2)
    events = await collect(feed)
    assert feed.stats["malformed_page"] == 3 and srv.count("/v3/trades") == 3
    last = statuses(events)[-1]
    assert last.state is FeedState.FAILED and "malformed_page" in last.detail


# ---------------------------------------------------------------------------------------------------
# Aggregates fallback


def _expected_prints(bars: list[dict[str, Any]]) -> list[tuple[int, int | None, int]]:
    out = []
    for b in bars:
        path = (b["o"], b["l"], b["h"], b["c"]) if dec(b["c"]) >= dec(b["o"]) else (b["o"], b["h"], b["l"], b["c"])
        vol = int(dec(b["v"]))
        sizes = [vol // 4] * 3 + [vol // 4 + vol % 4]
        start = b["t"] * 1_000_000
        quarter = 15_000_000_000
        out += [(start + i * quarter, float_to_fp(p), s) for i, (p, s) in enumerate(zip(path, sizes, strict=True))]
    return out


async def test_aggregates_fallback_is_labelled_approximate(srv: PolygonStandIn) -> None:
    feed = make_feed(srv, aggregates_fallback=True)
    with structlog.testing.capture_logs() as logs:
        events = await collect(feed)
    bars = body(AGGS)["results"]
    trades = trades_of(events)
    assert [(t.ts_event, t.price_fp, t.size) for t in trades] == _expected_prints(bars)
    assert all(t.source == SOURCE_AGGS for t in trades)
    assert sum(t.size for t in trades) == sum(int(dec(b["v"])) for b in bars)
    tick_expect = expected_sides([{"sip_timestamp": t.ts_event, "price": float(t.price_fp or 0) / 1e9}
                                  for t in trades], [])
    assert {(t.side, t.side_rule) for t in trades} == {(Side.UNKNOWN, SideRule.NONE)}
    assert inferred_sides(events, scale=100) == tick_expect
    assert feed.stats["approximate"] == 1 and feed.stats["bars"] == len(bars)
    assert srv.count("/v3/") == 0 and srv.count("/v2/aggs/ticker/AAPL/range/1/minute/") == 1
    assert any(e["log_level"] == "warning" and "APPROXIMATE" in e["event"] for e in logs)
    assert "approximate" in statuses(events)[0].detail


async def test_trades_not_in_plan_falls_back_to_aggregates(srv: PolygonStandIn) -> None:
    srv.fail(403, 1, path_prefix="/v3/trades")
    feed = make_feed(srv)
    events = await collect(feed)
    assert feed.stats["trades_unavailable"] == 1
    assert trades_of(events) and all(t.source == SOURCE_AGGS for t in trades_of(events))
    assert srv.count("/v3/quotes") == 0


async def test_quotes_not_in_plan_continue_with_trades(srv: PolygonStandIn) -> None:
    srv.fail(403, 1, path_prefix="/v3/quotes")
    feed = make_feed(srv)
    events = await collect(feed)
    assert feed.stats["quotes_unavailable"] == 1 and not books_of(events)
    assert len(trades_of(events)) == len(body(TRADES)["results"])
    assert statuses(events)[-1].state is FeedState.STOPPED


# ---------------------------------------------------------------------------------------------------
# Contract details


async def test_validator_counts_aapl_as_unknown_instrument(srv: PolygonStandIn) -> None:
    events = await collect(make_feed(srv))
    raw = [e for e in events if isinstance(e, RawTrade | RawBook)]
    v = Validator()
    assert all(v.validate(r) is None for r in raw)
    assert v.rejects["unknown_instrument"] == len(raw) == len(body(TRADES)["results"]) + len(all_quotes())
    assert v.accepted == 0


async def test_pacer_keeps_relative_timing(srv: PolygonStandIn) -> None:
    srv.set_body("/v3/trades/AAPL", {**body(TRADES), "results": []})
    quotes = all_quotes()
    span_s = (quotes[-1]["sip_timestamp"] - quotes[0]["sip_timestamp"]) / 1e9
    t0 = time.monotonic()
    events = await collect(make_feed(srv, speed=0.5))
    assert len(books_of(events)) == len(quotes)
    assert time.monotonic() - t0 >= 0.9 * span_s / 0.5


async def test_close_stops_the_replay(srv: PolygonStandIn) -> None:
    feed = make_feed(srv)
    seen: list[FeedEvent] = []
    async for ev in feed:
        seen.append(ev)
        if isinstance(ev, RawTrade | RawBook):
            await feed.close()
    assert len([e for e in seen if isinstance(e, RawTrade | RawBook)]) == 1
    assert isinstance(seen[-1], FeedStatus) and seen[-1].state is FeedState.STOPPED
    assert feed.state is FeedState.STOPPED


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_api_key_names_the_variable(key: str | None) -> None:
    with pytest.raises(PolygonConfigError, match="POLYGON_API_KEY"):
        PolygonHistoryFeed(key, "AAPL", DAY)


def test_retry_after_forms() -> None:
    now = dt.datetime(2015, 10, 21, 7, 27, 30, tzinfo=dt.UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 30.0
    assert parse_retry_after(" 2 ") == 2.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# ---------------------------------------------------------------------------------------------------
# Throughput (make bench)


def _big_page(name: str, n: int, step_ns: int) -> bytes:
    """``n`` copies of the real record shape at increasing timestamps (prices cycling over 7 cents)."""
    template = body(name)["results"][0]
    t0 = template["sip_timestamp"]
    priced = "price" in template
    results = [{**template, "sip_timestamp": t0 + i * step_ns, "sequence_number": i,
                **({"price": float(Decimal("150") + Decimal(i % 7) / 100)} if priced else {})} for i in range(n)]
    return json.dumps({"results": results, "status": "OK"}).encode()


@pytest.mark.bench
async def test_bench_replay_rate_and_loop_stall(srv: PolygonStandIn) -> None:
    n = 10_000
    srv.set_body("/v3/trades/AAPL", _big_page(TRADES, n, 1000))
    srv.set_body("/v3/quotes/AAPL", _big_page(QUOTES1, n, 999))
    stall = 0.0
    done = False

    async def probe() -> None:
        nonlocal stall
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall, last = max(stall, now - last - 0.001), now

    task = asyncio.create_task(probe())
    t0 = time.perf_counter()
    events = await collect(make_feed(srv))
    elapsed = time.perf_counter() - t0
    done = True
    await task
    assert len(trades_of(events)) == n and len(books_of(events)) == n
    print(f"polygon replay: {2 * n / elapsed:,.0f} events/s, max loop stall {stall * 1000:.1f} ms")
    assert 2 * n / elapsed > 20_000 and stall < 0.25
