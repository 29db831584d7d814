"""Coinbase Advanced Trade market data against its stand-in: the L2 book from snapshot + updates in exact base
units, trades with the maker side turned into the aggressor, sequence gaps resynchronised from a new snapshot,
bad messages counted, reconnects with a gap event; the venue's product list sets the instrument spec."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from support.coinbase_server import CbPlan, CoinbaseStandIn, Level, Raw, Trade
from tradebot.core.config import CoinbaseSettings, Settings
from tradebot.core.contracts import spec_for
from tradebot.core.instruments import register_crypto
from tradebot.core.types import FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.coinbase_ws import CoinbaseLiveFeed, parse_time_ns
from tradebot.feeds.factory import resolve_live_symbols

BOOK = [Level("bid", "97000.00", "0.5"), Level("bid", "96999.99", "1.25"), Level("offer", "97000.01", "0.00012345"),
        Level("offer", "97000.50", "2")]
PX = 1_000_000_000


def settings(tmp: Path) -> Settings:
    cb = CoinbaseSettings(reconnect_initial_seconds=0.05, reconnect_max_seconds=0.2, book_depth=5)
    return Settings(_env_file=None, coinbase=cb, data_dir=tmp, feed="coinbase",  # type: ignore[call-arg]
                    trading_symbol="BTC-USD")


class Collector:
    def __init__(self, feed: CoinbaseLiveFeed) -> None:
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
            if cond():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out; stats {self.feed.stats}; events {self.events[-8:]}")

    async def stop(self) -> None:
        await self.feed.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


@pytest.fixture(autouse=True)
def _btc() -> None:
    register_crypto(["BTC-USD"])


def test_rfc3339_nanoseconds() -> None:
    assert parse_time_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert parse_time_ns("2023-02-09T20:32:50.714964855Z") == 1675974770714964855
    assert parse_time_ns("2019-08-14T20:42:27.265Z") == 1565815347265000000
    assert parse_time_ns("garbage") is None and parse_time_ns(None) is None
    assert parse_time_ns("2019-08-14T20:42:27.1234567890Z") is None


async def test_book_and_trades_in_exact_units_with_the_aggressor_from_the_maker_side(tmp_path: Path) -> None:
    steps: list[Any] = [[Level("bid", "97000.00", "0"), Level("bid", "96999.98", "0.3")],
                        Trade("97000.01", "0.00012345", "SELL", 101),   # maker sold: a buyer lifted the offer
                        [Trade("96999.99", "1.5", "BUY", 102)],          # maker bought: a seller hit the bid
                        Raw("{not json"), Raw('{"channel":"market_trades","sequence_num":"x","events":7}'),
                        Raw('{"type":"error","message":"Failed to subscribe"}'),
                        Trade("97000.01", "0.000000001", "SELL", 103)]   # finer than the base increment
    async with CoinbaseStandIn([CbPlan(steps=steps)], book=BOOK) as srv:
        feed = CoinbaseLiveFeed(settings(tmp_path), ["BTC-USD"], ws_url=srv.ws_url)
        c = Collector(feed)
        await c.until(lambda: feed.stats["bad_trade"] >= 1)
        await c.stop()
    chans = [r["channel"] for r in srv.connections[0].requests]
    assert chans == ["heartbeats", "level2", "market_trades"]
    assert all(r["product_ids"] == ["BTC-USD"] and r["type"] == "subscribe" for r in srv.connections[0].requests)
    books = c.of(RawBook)
    snap, upd = books[0], books[1]
    assert snap.bid_px_fp == (97_000 * PX, 96_999_990_000_000) and snap.bid_sz == (50_000_000, 125_000_000)
    assert snap.ask_px_fp == (97_000_010_000_000, 97_000_500_000_000) and snap.ask_sz == (12_345, 200_000_000)
    assert upd.bid_px_fp == (96_999_990_000_000, 96_999_980_000_000) and upd.bid_sz == (125_000_000, 30_000_000)
    trades = c.of(RawTrade)
    assert [(t.size, t.side, t.side_rule, t.sequence) for t in trades] == [
        (12_345, Side.BUY, SideRule.EXCHANGE, 101), (150_000_000, Side.SELL, SideRule.EXCHANGE, 102)]
    assert feed.stats["trade_snapshot_skipped"] == 1  # history sent on subscribing is not replayed as live
    assert feed.stats["bad_message"] == 2 and feed.stats["bad_trade"] == 1 and feed.stats["error_msg"] == 1


async def test_sequence_gap_emits_a_gap_and_resyncs_the_book_from_a_new_snapshot(tmp_path: Path) -> None:
    steps: list[Any] = [[Level("bid", "97000.00", "0.7")], "gap", [Level("offer", "97000.01", "0")],
                        [Level("offer", "97000.02", "0.1")]]
    async with CoinbaseStandIn([CbPlan(steps=steps, interval_s=0.1)], book=BOOK) as srv:
        feed = CoinbaseLiveFeed(settings(tmp_path), ["BTC-USD"], ws_url=srv.ws_url)
        c = Collector(feed)
        await c.until(lambda: srv.connections and srv.connections[0].snapshots_sent >= 2
                      and any(b.ask_px_fp[:1] == (97_000_020_000_000,) for b in c.of(RawBook)))
        await c.stop()
    gaps = c.of(GapEvent)
    assert len(gaps) == 1 and "sequence" in gaps[0].reason
    reqs = [(r["type"], r["channel"]) for r in srv.connections[0].requests]
    assert reqs[3:5] == [("unsubscribe", "level2"), ("subscribe", "level2")]
    assert feed.stats["resyncs"] == 1 and feed.stats["messages_missed"] == 1
    after = [b for b in c.of(RawBook) if c.events.index(b) > c.events.index(gaps[0])]
    # The rebuilt book is the server's current one: the removed 97000.01 offer is gone, nothing stale remains.
    assert after and after[0].ask_px_fp[0] == 97_000_500_000_000 and after[0].bid_sz[0] == 70_000_000
    assert len(srv.connections) == 1


async def test_disconnect_reconnects_with_a_gap_event_and_a_fresh_book(tmp_path: Path) -> None:
    plans = [CbPlan(steps=[Trade("97000.01", "0.1", "SELL", 5)], after="abort"),
             CbPlan(steps=[Trade("97000.00", "0.2", "BUY", 6)])]
    async with CoinbaseStandIn(plans, book=BOOK) as srv:
        feed = CoinbaseLiveFeed(settings(tmp_path), ["BTC-USD"], ws_url=srv.ws_url)
        c = Collector(feed)
        await c.until(lambda: len(c.of(RawTrade)) >= 2)
        await c.stop()
    assert [s.state for s in c.of(FeedStatus)].count(FeedState.RECONNECTING) == 1
    assert len(c.of(GapEvent)) == 1 and len(srv.connections) == 2
    assert sum(1 for b in c.of(RawBook) if b.bid_px_fp and b.bid_sz[0] == 50_000_000) >= 2  # a snapshot per connection


async def test_product_list_sets_the_spec_and_unknown_products_are_refused(tmp_path: Path) -> None:
    async with CoinbaseStandIn([CbPlan()]) as srv:
        s = settings(tmp_path).model_copy(update={"coinbase": CoinbaseSettings(rest_url=srv.rest_url)})
        def resolve(*syms: str) -> list[str]:
            return resolve_live_symbols("coinbase", list(syms), s)

        assert await asyncio.to_thread(resolve, "btc-usd") == ["BTC-USD"]
        with pytest.raises(ValueError, match="not products: ES"):
            await asyncio.to_thread(resolve, "ES")
        with pytest.raises(ValueError, match="does not list"):
            await asyncio.to_thread(resolve, "FOO-USD")
    spec = spec_for("BTC-USD")
    assert spec.kind == "crypto" and str(spec.tick_size) == "0.01" and str(spec.size_increment) == "1E-8"
    assert srv.rest_requests[0] == "/api/v3/brokerage/market/products/BTC-USD"


async def test_record_a_live_session_into_the_catalog_then_analyze_it(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json as _json

    from tradebot.feeds.record import record_command

    steps: list[Any] = [Trade("97000.01", "0.25", "SELL", 11), [Level("bid", "97000.00", "50")],  # 50 BTC > 2^32 units
                        Trade("97000.00", "0.5", "BUY", 12), "gap", Trade("97000.02", "0.1", "SELL", 13)]
    async with CoinbaseStandIn([CbPlan(steps=steps, interval_s=0.05)], book=BOOK) as srv:
        s = settings(tmp_path).model_copy(update={"coinbase": CoinbaseSettings(
            ws_url=srv.ws_url, rest_url=srv.rest_url, reconnect_initial_seconds=0.05)})
        args = argparse.Namespace(feed="coinbase", symbols="BTC-USD", duration=2.0, catalog=str(tmp_path / "cat"),
                                  force=False, json=True)
        code = await asyncio.to_thread(record_command, args, s)
        again = await asyncio.to_thread(record_command, args, s)  # the day is there now: refused without --force
    assert code == 0 and again == 2
    written = _json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("[")))
    assert written[0]["trades"] == 3 and written[0]["gaps"] == 1 and written[0]["size_clamped"] >= 1
    files = list((tmp_path / "cat" / "COINBASE" / "mbp-1" / "BTC-USD").glob("*.dbn.zst"))
    assert len(files) == 1
    from tradebot.cli import main

    assert await asyncio.to_thread(main, ["analyze", str(files[0]), "--json"]) == 0
    data = _json.loads(capsys.readouterr().out)
    assert data["validation"]["accepted"] >= 5 and data["side_rules"]["exchange"] == 3
    assert sum(b["volume"] for b in data["bars"]) == 85_000_000  # 0.85 BTC in exact base units
