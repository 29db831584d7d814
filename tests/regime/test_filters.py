"""Tradeability filters: SAFE/AGGRESSIVE spread and dollar-depth boundaries, missing/stale/shallow books, the gap
rule (% and ticks), exchange halts and trade silence, and real ES books (MBP-10 and TBBO)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import databento as db
import pandas as pd
import pytest

from tradebot.core.calendar import CT, NS, calendar_for, to_ns
from tradebot.core.clock import ManualClock
from tradebot.core.config import FilterSettings, MicrostructureSettings
from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, Side, SideRule, StatusEvent, Trade
from tradebot.feeds.dbn_convert import iter_store
from tradebot.feeds.validation import Validator
from tradebot.orderflow.footprint import FootprintBar, make_bar
from tradebot.orderflow.microstructure import MicrostructureSnapshot, MicrostructureTracker
from tradebot.regime.filters import CheckStatus, FilterResult, TradeabilityFilter, book_checks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ES = spec_for("ES")
CAL = calendar_for("equity")
T0 = to_ns(dt.datetime(2025, 3, 12, 9, 0, tzinfo=CT))  # inside RTH
STEP = 300 * NS


def snap(bids: list[tuple[int, int]], asks: list[tuple[int, int]], ts: int = T0, now: int = T0,
         depth_levels: tuple[int, ...] = (5, 10)) -> MicrostructureSnapshot:
    """A snapshot from a book through the real tracker; prices in ticks."""
    tr = MicrostructureTracker(ES, MicrostructureSettings(depth_levels=depth_levels), CAL)
    tr.on_book(BookUpdate("ES", ts, ts, tuple(p for p, _ in bids), tuple(q for _, q in bids),
                          tuple(p for p, _ in asks), tuple(q for _, q in asks)))
    return tr.snapshot(now)


def ladder(best: int, step: int, sizes: list[int]) -> list[tuple[int, int]]:
    return [(best + step * i, q) for i, q in enumerate(sizes)]


def deep_book(spread: int = 1, bid_best: int = 20000) -> MicrostructureSnapshot:
    return snap(ladder(bid_best, -1, [50] * 10), ladder(bid_best + spread, 1, [50] * 10))


def checks(result: FilterResult) -> dict[str, Any]:
    return {c.name: c for c in result.checks}


def filt(**kw: Any) -> TradeabilityFilter:
    return TradeabilityFilter(ES, FilterSettings(**kw), CAL)


# ------------------------------------------------------------------------------------------ spread and depth


@pytest.mark.parametrize(("mode", "spread", "ok"), [
    ("safe", 1, True), ("safe", 2, False), ("aggressive", 2, True), ("aggressive", 3, False),
])
def test_spread_boundaries(mode: str, spread: int, ok: bool) -> None:
    spread_c, _ = book_checks(deep_book(spread), T0, FilterSettings(mode=mode), ES)  # type: ignore[arg-type]
    assert spread_c.passed is ok
    assert spread_c.status is (CheckStatus.PASS if ok else CheckStatus.FAIL)
    assert str(spread) in spread_c.detail


def notional_usd(levels: list[tuple[int, int]]) -> Decimal:
    """Independent: size x price x point value over the levels (prices in ticks)."""
    return sum((Decimal(p) * ES.tick_size * q * ES.point_value_cents / 100 for p, q in levels), Decimal(0))


@pytest.mark.parametrize("mode", ["safe", "aggressive"])
def test_depth_boundary_is_inclusive_on_the_thinner_side(mode: str) -> None:
    bids = ladder(20000, -1, [3, 1, 2, 1, 1, 99])  # 6th level is outside the top 5
    asks = ladder(20001, 1, [40, 40, 40, 40, 40])
    thin = notional_usd(bids[:5])
    assert thin < notional_usd(asks)
    key = f"{mode}_min_depth_usd"
    at = FilterSettings(mode=mode, **{key: thin})  # type: ignore[arg-type]
    above = FilterSettings(mode=mode, **{key: thin + Decimal("0.01")})  # type: ignore[arg-type]
    s = snap(bids, asks)
    _, d = book_checks(s, T0, at, ES)
    assert d.passed and d.status is CheckStatus.PASS and "thinner side of the top 5" in d.detail
    _, d = book_checks(s, T0, above, ES)
    assert not d.passed and d.status is CheckStatus.FAIL


@pytest.mark.parametrize(("root", "lots", "safe_ok", "aggr_ok"), [
    ("ES", 2, True, True),     # 10 lots near 5000.00 x $50 = ~$2.5M on each side
    ("ES", 1, False, True),    # ~$1.25M
    ("MES", 20, True, True),   # 100 micro lots x $25k = ~$2.5M
    ("MES", 5, False, True),   # ~$625k
    ("MES", 1, False, False),  # ~$125k: a one-lot-a-level micro book is too thin even for AGGRESSIVE
])
def test_default_thresholds_in_futures_terms(root: str, lots: int, safe_ok: bool, aggr_ok: bool) -> None:
    spec = spec_for(root)
    tr = MicrostructureTracker(spec, calendar=CAL)
    tr.on_book(BookUpdate(root, T0, T0, tuple(range(20000, 19995, -1)), (lots,) * 5,
                          tuple(range(20001, 20006)), (lots,) * 5))
    book = tr.snapshot(T0)
    assert book_checks(book, T0, FilterSettings(), spec)[1].passed is safe_ok
    assert book_checks(book, T0, FilterSettings(mode="aggressive"), spec)[1].passed is aggr_ok


@pytest.mark.parametrize("policy", ["pass", "fail"])
def test_no_book_reports_unavailable_and_follows_the_policy(policy: str) -> None:
    s = FilterSettings(missing_book=policy)  # type: ignore[arg-type]
    ok = policy == "pass"
    for micro in (None, MicrostructureTracker(ES, calendar=CAL).snapshot(T0)):
        sp, d = book_checks(micro, T0, s, ES)
        assert sp.status is d.status is CheckStatus.UNAVAILABLE
        assert sp.passed is ok and d.passed is ok
        assert f"missing_book {'passes' if ok else 'fails'}" in sp.detail
    r = TradeabilityFilter(ES, s, CAL).evaluate(T0, None, T0)
    assert r.passed is ok
    if ok:
        assert r.summary() == "ok (spread, depth, gap n/a)"  # no bar seen yet either
    else:
        assert r.summary().startswith("RISKY (spread: no microstructure snapshot")


def test_stale_book_is_unavailable() -> None:
    s = FilterSettings(missing_book="fail", book_stale_seconds=10)
    fresh = snap(ladder(20000, -1, [50] * 5), ladder(20001, 1, [50] * 5), ts=T0, now=T0 + 10 * NS)
    assert book_checks(fresh, T0 + 10 * NS, s, ES)[0].passed
    stale = book_checks(fresh, T0 + 11 * NS, s, ES)
    assert stale[0].status is CheckStatus.UNAVAILABLE and "stale" in stale[0].detail and not stale[0].passed


def test_top_of_book_feed_has_spread_but_no_top5_depth() -> None:
    one = snap([(20000, 30)], [(20001, 30)])
    sp, d = book_checks(one, T0, FilterSettings(missing_book="fail"), ES)
    assert sp.status is CheckStatus.PASS
    assert d.status is CheckStatus.UNAVAILABLE and "feed shows 1 level" in d.detail and not d.passed


def test_one_sided_book_spread_unavailable() -> None:
    s = snap([(20000, 30)], [], depth_levels=(1,))
    sp, _ = book_checks(s, T0, FilterSettings(), ES)
    assert sp.status is CheckStatus.UNAVAILABLE and sp.passed


# ------------------------------------------------------------------------------------------ gap


def bar(end_ns: int, o: int, h: int, low: int, c: int) -> FootprintBar:
    return make_bar("ES", {h: (1, 1), low: (1, 1)}, open=o, close=c, start_ns=end_ns - STEP, end_ns=end_ns,
                    trading_date=CAL.session_for(end_ns - STEP).trading_date)


def gap_of(bars: list[FootprintBar], **kw: Any) -> Any:
    f = filt(**kw)
    for b in bars:
        f.on_bar(b)
    return checks(f.evaluate(bars[-1].end_ns, deep_book(), bars[-1].end_ns))["gap"]


def test_gap_percent_boundary() -> None:
    # 5% of 5000.00 is 250 points = 1000 ticks: exactly 5% passes, one tick more fails.
    assert gap_of([bar(T0, 20000, 21000, 20000, 20900)]).passed
    g = gap_of([bar(T0, 20000, 21001, 20000, 20900)])
    assert not g.passed and g.status is CheckStatus.FAIL and "5.00%" in g.detail


def test_gap_counts_the_jump_from_the_previous_close_but_not_across_the_break() -> None:
    prev = bar(T0 - STEP, 20000, 20004, 19996, 20000)
    jump = bar(T0, 21100, 21104, 21098, 21100)  # opens 5.5% above the previous close
    assert not gap_of([prev, jump]).passed
    assert gap_of([jump]).passed  # alone, the bar's own range is tiny
    sess = CAL.session_on(dt.date(2025, 3, 12))
    assert sess is not None
    last_of_day = bar(sess.close_ns, 20000, 20004, 19996, 20000)
    first_next = bar(sess.close_ns + 3600 * NS + STEP, 21100, 21104, 21098, 21100)
    assert gap_of([last_of_day, first_next]).passed  # an hour apart: not "in the last 5 minutes"


def test_gap_tick_bound() -> None:
    assert gap_of([bar(T0, 20000, 20040, 20000, 20020)], gap_max_ticks=40).passed
    g = gap_of([bar(T0, 20000, 20041, 20000, 20020)], gap_max_ticks=40)
    assert not g.passed and "41 ticks" in g.detail
    assert gap_of([bar(T0, 20000, 20041, 20000, 20020)]).passed  # 0 = tick bound off


def test_gap_window_keeps_memory_bounded() -> None:
    f = filt()
    for i in range(1000):
        f.on_bar(bar(T0 + i * STEP, 20000, 20004, 19996, 20000))
    assert len(f._bars) <= 4


# ------------------------------------------------------------------------------------------ halts, silence


def test_exchange_halt_and_recent_halt() -> None:
    f = filt(halt_recent_seconds=300)
    f.on_status(StatusEvent("NQ", T0, True, "other"))
    assert f.ignored_status == 1 and checks(f.evaluate(T0, deep_book(), T0))["halt"].passed
    f.on_status(StatusEvent("ESH5", T0, True, "circuit breaker"))
    h = checks(f.evaluate(T0 + 60 * NS, deep_book(), T0 + 60 * NS))["halt"]
    assert not h.passed and "circuit breaker" in h.detail and "60s" in h.detail
    f.on_status(StatusEvent("ES", T0 + 120 * NS, False))
    now = T0 + 120 * NS + 299 * NS
    assert not checks(f.evaluate(now, deep_book(), now))["halt"].passed
    now += NS
    assert checks(f.evaluate(now, deep_book(), now))["halt"].passed


def test_no_trade_for_n_seconds_inside_the_session() -> None:
    f = filt(no_trade_seconds=120)
    now = T0
    assert checks(f.evaluate(now, deep_book(), now - 120 * NS))["activity"].passed
    a = checks(f.evaluate(now, deep_book(), now - 121 * NS))["activity"]
    assert not a.passed and "121s" in a.detail
    assert not checks(f.evaluate(now, deep_book(), None))["activity"].passed
    saturday = to_ns(dt.datetime(2025, 3, 15, 12, 0, tzinfo=CT))
    assert checks(f.evaluate(saturday, deep_book(), None))["activity"].passed
    assert checks(filt(no_trade_seconds=0).evaluate(now, deep_book(), None))["activity"].passed


def test_result_summary_and_dict() -> None:
    f = filt()
    r = f.evaluate(T0, deep_book(spread=3), T0)
    assert not r.passed and [c.name for c in r.failures] == ["spread"]
    assert r.summary() == "RISKY (spread: 3 ticks > 1)"
    d = r.to_dict()
    assert d["mode"] == "SAFE" and d["passed"] is False and len(d["checks"]) == 5


# ------------------------------------------------------------------------------------------ real ES books


def replay(path: Path) -> tuple[MicrostructureTracker, int]:
    store = db.DBNStore.from_file(path)
    v = Validator(symbols=["ES"], clock=ManualClock(0), wall_clock_future=False)  # recorded data
    tr = MicrostructureTracker(ES, MicrostructureSettings(), CAL)
    last_trade = 0
    for raw in iter_store(store):
        ev = v.validate(raw)
        if isinstance(ev, BookUpdate):
            tr.on_book(ev)
        elif isinstance(ev, Trade):
            tr.on_trade(ev)
            last_trade = ev.ts_event
    return tr, last_trade


def test_real_es_mbp10_book_is_safe_and_depth_matches_the_export() -> None:
    tr, last_trade = replay(DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst")
    micro = tr.snapshot()
    r = TradeabilityFilter(ES, FilterSettings(), CAL).evaluate(micro.ts_ns, micro, last_trade)
    assert r.passed, r.summary()
    src = pd.read_csv(DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt", sep=";",
                      dtype={"AskDOMPrice": str, "BidDOMPrice": str})
    last = src.iloc[-1]
    bid0, ask0 = ES.to_ticks(last["BidDOMPrice"]), ES.to_ticks(last["AskDOMPrice"])
    bids = [(bid0 - i, int(last[f"BidDOM_{i}"])) for i in range(5)]
    asks = [(ask0 + i, int(last[f"AskDOM_{i}"])) for i in range(5)]
    thinner = min(notional_usd(bids), notional_usd(asks))
    depth = checks(r)["depth"]
    assert f"${int(thinner):,} on the thinner side" in depth.detail
    # The same book fails a threshold one cent above its thinner side.
    strict = FilterSettings(safe_min_depth_usd=thinner + Decimal("0.01"))
    assert not TradeabilityFilter(ES, strict, CAL).evaluate(micro.ts_ns, micro, last_trade).passed


def test_real_es_tbbo_has_spread_only() -> None:
    tr, last_trade = replay(DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst")
    micro = tr.snapshot()
    assert micro.book_depth == 1
    ok = TradeabilityFilter(ES, FilterSettings(), CAL).evaluate(micro.ts_ns, micro, last_trade)
    assert ok.passed and checks(ok)["spread"].status is CheckStatus.PASS
    assert checks(ok)["depth"].status is CheckStatus.UNAVAILABLE
    strict = TradeabilityFilter(ES, FilterSettings(missing_book="fail"), CAL).evaluate(micro.ts_ns, micro, last_trade)
    assert not strict.passed and [c.name for c in strict.failures] == ["depth"]


def test_trades_are_not_needed_for_the_book_checks() -> None:
    # A trade-only tracker (no book ever) with a recent trade: only the book checks are unavailable.
    tr = MicrostructureTracker(ES, calendar=CAL)
    tr.on_trade(Trade("ES", T0, T0, 20000, 1, Side.BUY, SideRule.EXCHANGE))
    r = TradeabilityFilter(ES, FilterSettings(), CAL).evaluate(T0, tr.snapshot(T0), T0)
    c = checks(r)
    assert r.passed and c["spread"].status is CheckStatus.UNAVAILABLE and c["activity"].status is CheckStatus.PASS
