"""Microstructure: ORDERFLOW.md's OFI and weighted-mid vectors, depth, impact, flow windows, degradation, real ES."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import databento as db
import pandas as pd
import pytest

from tradebot.core.calendar import CT, calendar_for, to_ns
from tradebot.core.clock import ManualClock
from tradebot.core.config import MicrostructureSettings
from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.feeds.dbn_convert import iter_store
from tradebot.feeds.validation import Validator
from tradebot.orderflow.microstructure import (
    MicrostructureTracker,
    depth,
    imbalance,
    ofi_at,
    ofi_levels,
    price_impact,
    spread_bps,
    spread_ticks,
    weighted_mid_ticks,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SIERRA_MBP10 = DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"
SIERRA_TXT = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"

ES = spec_for("ES")
T = ES.to_ticks
S = 1_000_000_000
T0 = to_ns(dt.datetime(2025, 3, 11, 9, 0, tzinfo=CT))


def book(bids: list[tuple[str, int]], asks: list[tuple[str, int]], ts: int = T0) -> BookUpdate:
    return BookUpdate("ES", ts, ts, tuple(T(p) for p, _ in bids), tuple(q for _, q in bids),
                      tuple(T(p) for p, _ in asks), tuple(q for _, q in asks))


def trade(price: str, size: int, side: Side, ts: int = T0) -> Trade:
    return Trade("ES", ts, ts, T(price), size, side, SideRule.EXCHANGE)


def tracker(**kw: Any) -> MicrostructureTracker:
    return MicrostructureTracker(ES, MicrostructureSettings(**kw), calendar_for("equity"))


# --- known answers ---------------------------------------------------------------------------------


def test_ofi_known_answers() -> None:
    # Bid 100.00x10 -> 100.25x5 while the ask at 100.50 goes 8 -> 3: +10.
    a0 = book([("100.00", 10)], [("100.50", 8)])
    a1 = book([("100.25", 5)], [("100.50", 3)])
    assert ofi_at(a0, a1) == 10
    # The ask is lifted 100.25x8 -> 100.50x20, bid unchanged: +8.
    b0 = book([("100.00", 10)], [("100.25", 8)])
    b1 = book([("100.00", 10)], [("100.50", 20)])
    assert ofi_at(b0, b1) == 8
    # The bid drops 100.00x10 -> 99.75x7: -10.
    c0 = book([("100.00", 10)], [("100.25", 8)])
    c1 = book([("99.75", 7)], [("100.25", 8)])
    assert ofi_at(c0, c1) == -10


def test_ofi_known_answers_through_the_tracker_and_summed_over_a_window() -> None:
    tr = tracker()
    seq = [book([("100.00", 10)], [("100.50", 8)], T0), book([("100.25", 5)], [("100.50", 3)], T0 + 1 * S),
           book([("100.25", 5)], [("100.50", 3)], T0 + 2 * S)]
    for b in seq:
        tr.on_book(b)
    snap = tr.snapshot(T0 + 2 * S)
    assert snap.last_ofi == 0  # unchanged book: no flow
    w = snap.ofi_for(10)
    assert w is not None and (w.ofi, w.updates) == (10, 2)


def test_weighted_mid_known_answer() -> None:
    b = book([("100.00", 10)], [("100.25", 30)])
    w = weighted_mid_ticks(b)
    assert w is not None and Decimal(str(w)) * ES.tick_size == Decimal("100.0625")
    tr = tracker()
    tr.on_book(b)
    snap = tr.snapshot()
    assert snap.weighted_mid == pytest.approx(100.0625, abs=1e-12)
    assert snap.mid == pytest.approx(100.125, abs=1e-12)


# --- book features ---------------------------------------------------------------------------------


def test_spread_in_ticks_and_bps() -> None:
    b = book([("100.00", 1)], [("100.50", 1)])
    assert spread_ticks(b) == 2
    expected = (Decimal("0.50") / Decimal("100.25") * 10_000)
    bps = spread_bps(b)
    assert bps is not None and abs(Decimal(str(bps)) - expected) < Decimal("1e-9")


def test_depth_on_top_n_levels_in_contracts_and_dollars() -> None:
    bids = [("100.00", 10), ("99.75", 20), ("99.50", 30), ("99.25", 40), ("99.00", 50), ("98.75", 60)]
    asks = [("100.25", 5), ("100.50", 5), ("100.75", 5)]
    b = book(bids, asks)
    d5 = depth(b, 5, ES)
    assert (d5.bid_levels, d5.ask_levels, d5.bid_size, d5.ask_size) == (5, 3, 150, 15)
    # Dollars = contracts x price x $50 (ES), summed exactly in cents.
    bid_usd = sum(Decimal(p) * q for p, q in bids[:5]) * 50
    ask_usd = sum(Decimal(p) * q for p, q in asks) * 50
    assert Decimal(d5.bid_notional_cents) / 100 == bid_usd
    assert Decimal(d5.ask_notional_cents) / 100 == ask_usd
    assert d5.imbalance == pytest.approx((150 - 15) / 165)
    d10 = depth(b, 10, ES)
    assert d10.bid_size == 210 and d10.bid_levels == 6
    assert imbalance(0, 0) is None and imbalance(5, 0) == 1.0 and imbalance(0, 5) == -1.0


def test_multi_level_ofi_applies_the_rule_at_each_level() -> None:
    p = book([("100.00", 10), ("99.75", 20)], [("100.25", 5), ("100.50", 7)])
    c = book([("100.00", 12), ("99.75", 15)], [("100.25", 5), ("100.50", 9)])
    assert ofi_levels(p, c, 2) == (2, -5 - 2)
    # A level missing on one side in either book contributes nothing on that side.
    thin = book([("100.00", 12)], [("100.25", 5), ("100.50", 9)])
    assert ofi_levels(p, thin, 2) == (2, -2)
    tr = tracker(ofi_levels=2)
    tr.on_book(p)
    tr.on_book(c)
    snap = tr.snapshot()
    assert (snap.last_ofi, snap.last_ofi_multi) == (2, -5)


def test_price_impact_walks_the_visible_book() -> None:
    b = book([("100.00", 3), ("99.75", 4)], [("100.25", 2), ("100.50", 3), ("101.00", 10)])
    buy = price_impact(b, 6, Side.BUY, ES)
    # 2 @ 100.25, 3 @ 100.50, 1 @ 101.00 -> slippage vs best 0 + 3*1 + 1*3 = 6 ticks over 6 contracts.
    assert buy.complete and buy.filled == 6 and buy.worst_price == T("101.00")
    assert buy.slippage_ticks == pytest.approx(1.0)
    assert buy.cost_cents == 6 * ES.tick_value_cents
    assert buy.avg_price_ticks == pytest.approx((2 * T("100.25") + 3 * T("100.50") + T("101.00")) / 6)
    assert buy.slippage_vs_mid_ticks == pytest.approx(buy.avg_price_ticks - (T("100.00") + T("100.25")) / 2)
    sell = price_impact(b, 10, Side.SELL, ES)
    assert not sell.complete and sell.filled == 7 and sell.worst_price == T("99.75")
    assert sell.slippage_ticks == pytest.approx(4 / 7) and sell.cost_cents == 4 * ES.tick_value_cents
    one = price_impact(b, 1, Side.BUY, ES)
    assert one.slippage_ticks == 0 and one.cost_cents == 0
    with pytest.raises(ValueError):
        price_impact(b, 1, Side.UNKNOWN, ES)


def test_empty_book_sides_degrade_without_crashing() -> None:
    no_bid = book([], [("100.25", 5), ("100.50", 5)])
    tr = tracker()
    tr.on_book(book([("100.00", 10)], [("100.25", 5)]))
    tr.on_book(no_bid)
    snap = tr.snapshot()
    assert snap.book_available and snap.best_bid is None and snap.best_ask == T("100.25")
    assert snap.spread_ticks is None and snap.spread_bps is None and snap.mid is None
    assert snap.weighted_mid is None
    assert snap.top_imbalance == -1.0
    assert snap.last_ofi == 5 - 5  # the bid side has no queue to compare; the ask side is unchanged
    assert snap.impact_sell is not None and snap.impact_sell.filled == 0 and snap.impact_sell.slippage_ticks is None
    assert snap.impact_buy is not None and snap.impact_buy.filled == 10
    tr.on_book(book([], []))
    empty = tr.snapshot()
    assert empty.top_imbalance is None and empty.last_ofi == 0
    d = empty.depth_for(1)
    assert d is None and empty.depth == ()  # never saw 5 levels: depth over 5/10 is unavailable


# --- degradation -----------------------------------------------------------------------------------


def test_trades_only_feed_flags_book_features_unavailable() -> None:
    tr = tracker()
    tr.on_trade(trade("100.00", 3, Side.BUY))
    snap = tr.snapshot()
    assert not snap.book_available and snap.book_depth == 0 and snap.book_ts_ns is None
    assert snap.spread_bps is None and snap.weighted_mid is None and snap.depth == ()
    assert snap.depth_imbalance is None and snap.last_ofi is None and snap.ofi == ()
    assert snap.impact_buy is None and tr.price_impact(1, Side.BUY) is None
    assert snap.trades == 1 and snap.buy_pressure == 1.0


def test_mbp1_feed_has_top_of_book_but_no_depth_5() -> None:
    tr = tracker()
    tr.on_book(book([("100.00", 10)], [("100.25", 30)]))
    snap = tr.snapshot()
    assert snap.book_depth == 1 and snap.depth == () and snap.depth_imbalance is None
    assert snap.top_imbalance == pytest.approx(-0.5)
    assert snap.spread_ticks == 1
    ten = [(f"{100 - i * 0.25:.2f}", 1) for i in range(10)]
    tr.on_book(book(ten, [(f"{100.25 + i * 0.25:.2f}", 3) for i in range(10)]))
    snap = tr.snapshot()
    assert [d.levels for d in snap.depth] == [5, 10]
    d5 = snap.depth_for(5)
    assert d5 is not None and snap.depth_imbalance == d5.imbalance == pytest.approx((5 - 15) / 20)


def test_reset_book_stops_ofi_spanning_a_gap() -> None:
    tr = tracker()
    tr.on_book(book([("100.00", 10)], [("100.25", 5)], T0))
    tr.reset_book()
    assert not tr.snapshot(T0).book_available
    tr.on_book(book([("101.00", 10)], [("101.25", 5)], T0 + S))
    snap = tr.snapshot(T0 + S)
    assert snap.last_ofi is None and snap.book_available
    assert tr.stats["book_reset"] == 1


# --- windows ---------------------------------------------------------------------------------------


def test_ofi_window_sums_drop_old_updates() -> None:
    tr = tracker(ofi_windows_seconds=(10, 60))
    base = book([("100.00", 10)], [("100.25", 5)], T0)
    tr.on_book(base)
    # +2 at t=1s, +3 at t=30s, +4 at t=55s (bid size grows each time).
    for t, q in ((1, 12), (30, 15), (55, 19)):
        tr.on_book(book([("100.00", q)], [("100.25", 5)], T0 + t * S))
    snap = tr.snapshot(T0 + 55 * S)
    w10, w60 = snap.ofi_for(10), snap.ofi_for(60)
    assert w10 is not None and w60 is not None
    assert (w10.ofi, w60.ofi) == (4, 9)
    later = tr.snapshot(T0 + 75 * S)  # 10 s window empty, 60 s window keeps t=30 and t=55
    w10, w60 = later.ofi_for(10), later.ofi_for(60)
    assert w10 is not None and w60 is not None and (w10.ofi, w60.ofi, w60.updates) == (0, 7, 2)


def test_trade_flow_window_buy_pressure_order_imbalance_and_intensity() -> None:
    tr = tracker(flow_window_seconds=60)
    tr.on_trade(trade("100.00", 30, Side.SELL, T0))  # leaves the window later
    tr.on_trade(trade("100.00", 6, Side.BUY, T0 + 30 * S))
    tr.on_trade(trade("100.25", 2, Side.SELL, T0 + 40 * S))
    tr.on_trade(trade("100.25", 5, Side.UNKNOWN, T0 + 50 * S))
    snap = tr.snapshot(T0 + 70 * S)
    assert (snap.trades, snap.volume, snap.buy_volume, snap.sell_volume) == (3, 13, 6, 2)
    assert snap.buy_pressure == pytest.approx(6 / 8)
    assert snap.order_imbalance == pytest.approx((6 - 2) / 8)
    assert snap.trade_intensity == pytest.approx(3.0)  # 3 trades in a 60 s window
    empty = tr.snapshot(T0 + 500 * S)
    assert empty.trades == 0 and empty.buy_pressure is None and empty.order_imbalance is None


def test_windows_are_bounded_in_memory() -> None:
    tr = tracker(ofi_windows_seconds=(10,), flow_window_seconds=10, bucket_ms=100)
    for i in range(20_000):  # one update and one trade every 50 ms for 1000 s
        ts = T0 + i * 50_000_000
        tr.on_book(book([("100.00", 10 + i % 3)], [("100.25", 5)], ts))
        tr.on_trade(trade("100.00", 1, Side.BUY, ts))
    assert len(tr._book_b.ring) <= 101 and len(tr._flow_b.ring) <= 101
    snap = tr.snapshot()
    assert snap.trades == 200  # 10 s at 20 trades per second


def test_vwap_and_its_deviation_reset_at_the_session_boundary() -> None:
    tr = tracker()
    tr.on_trade(trade("100.00", 1, Side.BUY, T0))
    tr.on_trade(trade("101.00", 3, Side.BUY, T0 + S))
    snap = tr.snapshot()
    assert snap.vwap == pytest.approx(100.75)
    assert snap.vwap_deviation_pct == pytest.approx((101.00 - 100.75) / 100.75 * 100)
    # 17:05 CT is the next trading day: VWAP starts over.
    tr.on_trade(trade("102.00", 2, Side.SELL, to_ns(dt.datetime(2025, 3, 11, 17, 5, tzinfo=CT))))
    assert tr.snapshot().vwap == pytest.approx(102.0) and tr.snapshot().vwap_deviation_pct == 0
    # A late print from the finished session is left out of VWAP and counted.
    tr.on_trade(trade("90.00", 50, Side.SELL, T0 + 2 * S))
    assert tr.snapshot().vwap == pytest.approx(102.0) and tr.stats["late_trade"] == 1
    never = tracker(vwap_reset="never")
    never.on_trade(trade("100.00", 1, Side.BUY, T0))
    never.on_trade(trade("102.00", 1, Side.BUY, to_ns(dt.datetime(2025, 3, 11, 17, 5, tzinfo=CT))))
    assert never.snapshot().vwap == pytest.approx(101.0)


def test_settings_reject_empty_or_non_positive_windows() -> None:
    with pytest.raises(ValueError):
        MicrostructureSettings(depth_levels=())
    with pytest.raises(ValueError):
        MicrostructureSettings(ofi_windows_seconds=(10, 0))
    assert MicrostructureSettings(depth_levels=(10, 5, 5)).depth_levels == (5, 10)


# --- real data -------------------------------------------------------------------------------------


def test_real_es_mbp10_minute_matches_the_sierra_export() -> None:
    """Converted Sierra MBP-10 through the real converter and validator, checked against the text export."""
    store = db.DBNStore.from_file(SIERRA_MBP10)
    v = Validator(symbols=["ES"], clock=ManualClock(0), wall_clock_future=False)  # recorded data
    tr = MicrostructureTracker(ES, MicrostructureSettings(flow_window_seconds=120, ofi_windows_seconds=(300,)),
                               calendar_for("equity"))
    books = trades = 0
    ofi_total = 0
    prev: BookUpdate | None = None
    for raw in iter_store(store):
        ev = v.validate(raw)
        if isinstance(ev, BookUpdate):
            tr.on_book(ev)
            if prev is not None:
                ofi_total += ofi_at(prev, ev)
            prev = ev
            books += 1
        elif isinstance(ev, Trade):
            tr.on_trade(ev)
            trades += 1
    snap = tr.snapshot()
    src = pd.read_csv(SIERRA_TXT, sep=";", dtype={"Price": str, "AskDOMPrice": str, "BidDOMPrice": str})
    last = src.iloc[-1]

    assert trades == books == len(src)
    assert snap.book_depth == 10
    # Book: the last record's 10 DOM levels a side.
    bid_sizes = [int(last[f"BidDOM_{i}"]) for i in range(10)]
    ask_sizes = [int(last[f"AskDOM_{i}"]) for i in range(10)]
    d10 = snap.depth_for(10)
    assert d10 is not None and (d10.bid_size, d10.ask_size) == (sum(bid_sizes), sum(ask_sizes))
    bid0, ask0 = T(last["BidDOMPrice"]), T(last["AskDOMPrice"])
    assert snap.best_bid == bid0 and snap.best_ask == ask0 and snap.spread_ticks == ask0 - bid0
    assert d10.bid_notional_cents == sum((bid0 - i) * q for i, q in enumerate(bid_sizes)) * ES.tick_value_cents
    # Trade flow over the whole minute.
    buys = int(src.loc[src.TradeType == 2, "Volume"].sum())
    sells = int(src.loc[src.TradeType == 1, "Volume"].sum())
    assert (snap.trades, snap.buy_volume, snap.sell_volume) == (len(src), buys, sells)
    assert snap.order_imbalance == pytest.approx((buys - sells) / (buys + sells))
    vwap = sum(Decimal(p) * q for p, q in zip(src["Price"], src["Volume"], strict=True)) / int(src["Volume"].sum())
    assert snap.vwap == pytest.approx(float(vwap), rel=1e-12)
    assert snap.last_price == T(src["Price"].iloc[-1])
    w = snap.ofi_for(300)
    assert w is not None and w.ofi == ofi_total and w.updates == books - 1
