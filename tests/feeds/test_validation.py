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


# -- one bad record costs one record (issue 11) ----------------------------------------------------------------

FAR_FUTURE = 3_786_912_000 * 10**9  # 2090


def test_a_record_from_the_future_is_rejected_even_in_replay_and_never_moves_the_clock() -> None:
    v = Validator(clock=ManualClock(T0 + 3600 * 10**9))
    assert v.validate(trade(ts=T0))
    assert v.validate(trade(ts=FAR_FUTURE)) is None
    for i in range(1, 50):  # the rest of the file: in order, kept
        assert v.validate(trade(ts=T0 + i)), i
    assert v.rejects == {"future": 1} and v.damaged == 1
    # A simulated market keeps its own clock.
    sim = Validator(clock=ManualClock(T0), wall_clock_future=False)
    assert sim.validate(trade(ts=T0 + 10**15))


def test_records_outside_the_files_declared_span_are_rejected() -> None:
    v = Validator(ValidationSettings(range_slack_seconds=60), clock=ManualClock(2 * T0))
    v.declare_span("dbn:day.dbn", T0, T0 + 3600 * 10**9)

    def rec(ts: int, source: str = "dbn:day.dbn") -> RawTrade:
        return RawTrade("ESH4", ts, ts, px(18000), 1, Side.BUY, SideRule.EXCHANGE, 0, 0, source)

    assert v.validate(rec(T0 - 30 * 10**9))  # within the slack
    assert v.validate(rec(T0 + 10))
    assert v.validate(rec(T0 + 400 * 86_400 * 10**9)) is None  # a year later: implausible
    assert v.validate(rec(T0 - 86_400 * 10**9)) is None
    assert v.validate(rec(T0 + 20))  # the stream's clock did not move
    assert v.validate(rec(T0 + 400 * 86_400 * 10**9, source="csv:other.txt")) is None  # no span: a time jump
    assert v.rejects == {"outside_file_range": 2, "time_jump": 1}


def test_a_time_jump_without_a_declared_span_is_believed_only_when_confirmed() -> None:
    v = Validator(ValidationSettings(max_time_gap_seconds=86_400, jump_confirm_prints=3),
                  clock=ManualClock(T0 + 10**16))
    assert v.validate(trade(ts=T0))
    assert v.validate(trade(ts=T0 + 5 * 86_400 * 10**9)) is None  # a lone stamp days ahead
    assert v.validate(trade(ts=T0 + 1))  # its neighbours say it was wrong
    later = T0 + 10 * 86_400 * 10**9  # a real gap (a file days later): the records agree, believed after 3
    assert [v.validate(trade(ts=later + i)) is not None for i in range(5)] == [False, False, False, True, True]
    assert v.rejects == {"time_jump": 4}


def test_trades_of_one_packet_are_kept_and_only_a_true_repeat_is_a_duplicate() -> None:
    v = Validator()
    sweep = [RawTrade("ESH4", T0, T0, px(18000 + k), 5 + k, Side.BUY, SideRule.EXCHANGE, 77) for k in range(4)]
    assert all(v.validate(t) for t in sweep)
    assert v.validate(sweep[2]) is None  # the same record again
    again = RawTrade("ESH4", T0, T0 + 999, px(18002), 7, Side.BUY, SideRule.EXCHANGE, 77)  # re-delivered later
    assert v.validate(again) is None
    assert v.rejects == {"duplicate_sequence": 2}
    b1 = RawBook("ESH4", T0, T0, (px(17999),), (5,), (px(18000),), (4,), 77)
    b2 = RawBook("ESH4", T0, T0, (px(17999),), (6,), (px(18000),), (4,), 77)
    assert v.validate(b1) and v.validate(b2) and v.validate(b1) is None


@pytest.mark.parametrize("rec", [
    trade(size=4_294_967_295),
    trade(size=2**31 - 1),
    RawBook("ESH4", T0, T0, (px(17999),), (4_294_967_295,), (px(18000),), (4,)),
    RawBook("ESH4", T0, T0, (px(17999), px(17998)), (3, 5), (px(18000), px(18001)), (4, 10**9)),
])
def test_implausible_sizes_are_rejected_with_their_reason(rec: Any) -> None:
    v = Validator()
    assert v.validate(rec) is None and v.rejects == {"implausible_size": 1}
    assert Validator(ValidationSettings(max_size=10**10)).validate(rec) is not None


def test_a_huge_number_never_reaches_a_log_line_unconverted() -> None:
    lines: list[dict[str, Any]] = []

    class Log:
        def warning(self, event: str, **kw: Any) -> None:
            lines.append({"event": event, **kw})

    v = Validator(logger=Log())
    for rec in (trade(size=10**5000), trade(price_fp=10**1_000_000), trade(ts=10**5000),
                RawBook("ESH4", T0, T0, (10**6000,), (1,), (), ())):
        assert v.validate(rec) is None
    assert len(lines) == 4 and all("-bit integer>" in line["record"] for line in lines)
    assert all(len(line["record"]) <= 300 for line in lines)


@st.composite
def _good_and_bad(draw: st.DrawFn) -> tuple[list[Any], list[Any], list[bool]]:
    """A clean stream (trades in packets, books) and broken records interleaved at arbitrary places."""
    good: list[Any] = []
    ts, seq, price = T0, 100, 18000
    for _ in range(draw(st.integers(1, 40))):
        ts += draw(st.sampled_from([0, 1, 1000, 10**9]))
        seq += 1
        for k in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):  # a packet: one ts, one sequence
            price += draw(st.integers(-2, 2))
            if draw(st.booleans()):
                # Fills of one packet differ in price or size (two identical ones would be a repeat).
                good.append(RawTrade("ESH4", ts, ts, px(price), draw(st.integers(1, 50)) * 4 + k, Side.BUY,
                                     SideRule.EXCHANGE, seq, 0, "dbn:a"))
            else:
                good.append(RawBook("ESH4", ts, ts, (px(price - 1),), (len(good) + 1,), (px(price + 1),),
                                    (k + 1,), seq, 0, "dbn:a"))
    out: list[Any] = []
    is_good: list[bool] = []
    pending = list(good)
    while pending or draw(st.integers(0, 3)) == 3:
        if pending and draw(st.integers(0, 2)) < 2:
            out.append(pending.pop(0))
            is_good.append(True)
            continue
        base_ts = out[-1].ts_event if out and hasattr(out[-1], "ts_event") else T0
        kind = draw(st.sampled_from(["nan", "grid", "neg", "size0", "huge", "nq", "future", "zero_ts", "span",
                                     "crossed", "repeat", "junk", "bigint"]))
        emitted = [r for r, g in zip(out, is_good, strict=True) if g]
        if kind == "repeat" and not emitted:
            kind = "junk"
        bad = _bad(kind, base_ts, draw(st.sampled_from(emitted)) if kind == "repeat" else None,
                   draw(st.sampled_from([None, "junk", 3, RawStatus("ESH4", "x", True)])))  # type: ignore[arg-type]
        out.append(bad)
        is_good.append(False)
    return good, out, is_good


def _bad(kind: str, base_ts: int, repeat: Any, junk: Any) -> Any:
    """One broken record of ``kind``, stamped like its neighbour where a time matters."""
    if kind == "nan":
        return trade(price_fp=None, ts=base_ts)
    if kind == "grid":
        return trade(price_fp=px(18000) + 1, ts=base_ts)
    if kind == "neg":
        return trade(price_fp=-px(1), ts=base_ts)
    if kind == "size0":
        return trade(size=0, ts=base_ts)
    if kind == "huge":
        return trade(size=4_294_967_295, ts=base_ts)
    if kind == "nq":
        return trade(sym="NQH4", ts=base_ts)
    if kind == "future":
        return trade(ts=FAR_FUTURE)
    if kind == "zero_ts":
        return trade(ts=0)
    if kind == "span":  # a month after the span its file declares
        return RawTrade("ESH4", T0 + 86_400 * 10**9 * 30, T0, px(18000), 1, Side.SELL, SideRule.EXCHANGE, 5, 0,
                        "dbn:a")
    if kind == "crossed":
        return book(bid=18000, ask=17990, ts=base_ts)
    if kind == "repeat":
        return repeat
    if kind == "bigint":
        return trade(size=10**5000, ts=base_ts)
    return junk


@settings(max_examples=300, deadline=None)
@given(data=_good_and_bad(), fast=st.booleans())
def test_interleaved_bad_records_cost_exactly_themselves(data: tuple[list[Any], list[Any], list[bool]],
                                                         fast: bool) -> None:
    good, stream, _ = data
    v = Validator(ValidationSettings(max_jump_ticks=400), ["ES"], clock=ManualClock(T0 + 86_400 * 10**9))
    v.declare_span("dbn:a", T0, T0 + 3600 * 10**9)
    clean = Validator(ValidationSettings(max_jump_ticks=400), ["ES"], clock=ManualClock(T0 + 86_400 * 10**9))
    clean.declare_span("dbn:a", T0, T0 + 3600 * 10**9)
    check = v.validate if fast else v._validate_general
    accepted = [o for o in (check(r) for r in stream) if o is not None and not isinstance(o, StatusEvent)]
    expected = [o for o in (clean.validate(r) for r in good) if o is not None]
    assert len(expected) == len(good), f"the good stream is clean on its own: {clean.rejects}"
    assert accepted == expected
    assert v.accepted == len(good)
