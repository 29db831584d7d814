"""The validation layer: every rule rejects with a counted reason, nothing raises into the loop."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.clock import ManualClock
from tradebot.core.config import ValidationSettings
from tradebot.core.prices import PRICE_SCALE, UNDEF_PRICE
from tradebot.core.types import BookUpdate, RawBook, RawStatus, RawTrade, Side, SideRule, StatusEvent, Trade
from tradebot.feeds.validation import REASONS, Validator

T0 = 1_700_000_000 * 10**9
ES_TICK = PRICE_SCALE // 4


def px(ticks: int) -> int:
    return ticks * ES_TICK


def trade(ticks: int = 18000, size: int = 1, ts: int = T0, seq: int = 0, sym: str = "ESH4",
          price_fp: Any = "default") -> RawTrade:
    return RawTrade(sym, ts, ts, px(ticks) if price_fp == "default" else price_fp, size, Side.BUY,
                    SideRule.EXCHANGE, seq)


def book(bid: int = 17999, ask: int = 18000, ts: int = T0, sym: str = "ESH4") -> RawBook:
    return RawBook(sym, ts, ts, (px(bid), px(bid - 1)), (5, 7), (px(ask), px(ask + 1)), (4, 9))


def test_good_trade_becomes_ticks_with_root_symbol() -> None:
    v = Validator()
    out = v.validate(trade())
    assert isinstance(out, Trade)
    assert (out.symbol, out.raw_symbol, out.price, out.size, out.side) == ("ES", "ESH4", 18000, 1, Side.BUY)
    assert v.accepted == 1 and v.total_rejects == 0


def test_good_book_keeps_levels_and_drops_empty_ones() -> None:
    v = Validator()
    rec = RawBook("ESH4", T0, T0, (px(100), None, px(98)), (5, 0, 3), (px(101), UNDEF_PRICE), (4, 0))
    out = v.validate(rec)
    assert isinstance(out, BookUpdate)
    assert out.bid_px == (100, 98) and out.bid_sz == (5, 3) and out.ask_px == (101,) and out.depth == 2


@pytest.mark.parametrize(("rec", "reason"), [
    (trade(price_fp=None), "non_finite_price"),
    (trade(price_fp=UNDEF_PRICE), "non_finite_price"),
    (trade(price_fp=float("nan")), "non_finite_price"),
    (trade(price_fp=0), "non_positive_price"),
    (trade(price_fp=-px(4)), "non_positive_price"),
    (trade(price_fp=px(18000) + 100_000_000), "off_tick_grid"),  # 4500.10 on a 0.25 grid
    (trade(size=0), "non_positive_size"),
    (trade(size=-3), "non_positive_size"),
    (trade(sym="NVDA"), "unknown_instrument"),
    (trade(sym=""), "unknown_instrument"),
    (book(bid=18000, ask=18000), "crossed_book"),
    (book(bid=18001, ask=18000), "crossed_book"),
    (trade(ts=-5), "malformed"),
    (RawStatus("XXH4", T0, True), "unknown_instrument"),
])
def test_each_rule_rejects_with_its_reason(rec: Any, reason: str) -> None:
    v = Validator()
    assert v.validate(rec) is None
    assert v.rejects == {reason: 1}
    assert reason in REASONS


def test_out_of_order_beyond_tolerance_and_within() -> None:
    v = Validator(ValidationSettings(out_of_order_ms=5))
    assert v.validate(trade(ts=T0 + 10_000_000))
    assert v.validate(trade(ts=T0 + 6_000_000))  # 4 ms back: tolerated
    assert v.validate(trade(ts=T0)) is None  # 10 ms back
    assert v.rejects["out_of_order"] == 1
    # Streams are independent per contract: another contract's older record is fine.
    assert v.validate(trade(ts=T0, sym="ESM4"))


def test_duplicate_sequence_is_rejected_once_seen() -> None:
    v = Validator()
    assert v.validate(trade(seq=42))
    assert v.validate(trade(seq=42)) is None
    assert v.validate(trade(seq=43))
    assert v.rejects == {"duplicate_sequence": 1}


def test_stale_and_future_only_when_checking_live_time() -> None:
    clock = ManualClock(T0)
    live = Validator(ValidationSettings(check_staleness=True, stale_seconds=5, future_seconds=2), clock=clock)
    assert live.validate(trade(ts=T0 - 6 * 10**9)) is None
    assert live.validate(trade(ts=T0 + 3 * 10**9)) is None
    assert live.validate(trade(ts=T0 - 1 * 10**9))
    assert live.rejects == {"stale": 1, "future": 1}
    replay = Validator(clock=clock)
    assert replay.validate(trade(ts=T0 - 10**15))


def test_fat_finger_is_rejected_but_a_real_gap_is_believed_after_confirmation() -> None:
    v = Validator(ValidationSettings(max_jump_ticks=40, jump_confirm_prints=3))
    assert v.validate(trade(18000, ts=T0))
    assert v.validate(trade(18400, ts=T0 + 1)) is None  # fat finger
    assert v.validate(trade(18001, ts=T0 + 2))  # back to normal: the spike never counted
    for i in range(3):
        assert v.validate(trade(18100, ts=T0 + 10 + i)) is None
    assert v.validate(trade(18101, ts=T0 + 20))  # gap confirmed: re-anchored
    assert v.validate(trade(18102, ts=T0 + 21))
    assert v.rejects == {"price_jump": 4}


def test_status_passes_through_with_root() -> None:
    out = Validator().validate(RawStatus("ESH4", T0, True, "halt"))
    assert out == StatusEvent("ES", T0, True, "halt")


def test_allowed_symbols_restrict_instruments() -> None:
    v = Validator(symbols=["NQ"])
    assert v.validate(trade()) is None and v.rejects == {"unknown_instrument": 1}


def test_rejections_are_logged_but_rate_limited() -> None:
    lines: list[dict[str, Any]] = []

    class Log:
        def warning(self, event: str, **kw: Any) -> None:
            lines.append({"event": event, **kw})

    v = Validator(logger=Log())
    for _ in range(20):
        v.validate(trade(size=0))
    assert v.rejects["non_positive_size"] == 20
    assert 1 <= len(lines) <= 5 and lines[0]["reason"] == "non_positive_size"


weird = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
                  st.binary(max_size=3))
prices = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(),
                   st.just(UNDEF_PRICE), st.integers(min_value=1, max_value=40000).map(px))
symbols = st.one_of(st.sampled_from(["ESH4", "ES", "NQZ5", "CL", "NVDA", "", "ES.FUT"]), st.text(max_size=6),
                    st.integers())
raw_trades = st.builds(RawTrade, symbols, st.one_of(st.integers(min_value=-10, max_value=2**63), weird),
                       weird, prices, st.one_of(st.integers(min_value=-5, max_value=10**6), weird),
                       st.sampled_from(list(Side)), st.sampled_from(list(SideRule)),
                       st.one_of(st.integers(min_value=0, max_value=50), weird))
level_px = st.lists(prices, max_size=10).map(tuple)
level_sz = st.lists(st.one_of(st.integers(min_value=-5, max_value=10**6), weird), max_size=10).map(tuple)
raw_books = st.builds(RawBook, symbols, st.integers(min_value=-10, max_value=2**63), weird, level_px, level_sz,
                      level_px, level_sz)
anything = st.one_of(raw_trades, raw_books, st.builds(RawStatus, symbols, weird, weird), weird)


@settings(max_examples=400, deadline=None)
@given(st.lists(anything, max_size=40))
def test_arbitrary_records_never_crash_and_every_record_is_accounted(records: list[Any]) -> None:
    v = Validator()
    outcomes = [v.validate(r) for r in records]
    accepted = [o for o in outcomes if o is not None]
    status = [o for o in accepted if isinstance(o, StatusEvent)]
    assert v.accepted + len(status) + v.total_rejects == len(records)
    for o in accepted:
        if isinstance(o, Trade):
            assert isinstance(o.price, int) and o.price > 0 and o.size > 0
        if isinstance(o, BookUpdate) and o.bid_px and o.ask_px:
            assert o.bid_px[0] < o.ask_px[0]
    assert set(v.rejects) <= set(REASONS)
