"""The ten pattern detectors: the reference vector, and for each rule a bar that triggers it and near misses at
the boundary of every threshold. Sell-side rules are tested by mirroring the buy-side bars (prices flipped,
bid and ask swapped), which must turn each pattern into its twin; a property test checks that symmetry and
the exact imbalance arithmetic on random bars."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import spec_for
from tradebot.orderflow.detectors import (
    UnfinishedTracker,
    buy_imbalance_levels,
    detect_buy_imbalance,
    detect_buying_absorption,
    detect_buying_exhaustion,
    detect_delta_divergence,
    detect_sell_imbalance,
    detect_stacked_buy_imbalance,
    detect_unfinished_business,
    sell_imbalance_levels,
    stacks,
)
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar, make_bar
from tradebot.orderflow.patterns import DETECTORS, PatternEngine, run_detectors

ES = spec_for("ES")
T = ES.to_ticks
MIRROR = 800  # mirrored price = MIRROR - price
DEFAULT = PatternSettings(imbalance_min_volume=0)

TWIN = {
    Pattern.BUY_IMBALANCE: Pattern.SELL_IMBALANCE,
    Pattern.STACKED_BUY_IMBALANCE: Pattern.STACKED_SELL_IMBALANCE,
    Pattern.BUYING_EXHAUSTION: Pattern.SELLING_EXHAUSTION,
    Pattern.BUYING_ABSORPTION: Pattern.SELLING_ABSORPTION,
    Pattern.DELTA_DIVERGENCE: Pattern.DELTA_DIVERGENCE,
    Pattern.UNFINISHED_BUSINESS: Pattern.UNFINISHED_BUSINESS,
}
TWIN |= {v: k for k, v in TWIN.items()}
FLIP = {Direction.LONG: Direction.SHORT, Direction.SHORT: Direction.LONG}


def bar(levels: Sequence[tuple[int, int]], open_i: int = 0, close_i: int = -1, low: int = 400,
        start_ns: int = 0, **kw: Any) -> FootprintBar:
    """Levels (bid, ask) from ``low`` upward; open/close as indexes into them."""
    n = len(levels)
    return make_bar("ES", {low + i: lv for i, lv in enumerate(levels)}, open=low + open_i % n,
                    close=low + close_i % n, start_ns=start_ns, end_ns=start_ns + 300 * 10**9, **kw)


def mirror(b: FootprintBar) -> FootprintBar:
    return make_bar("ES", {MIRROR - lv.price: (lv.ask, lv.bid) for lv in b.levels}, open=MIRROR - b.open,
                    close=MIRROR - b.close, start_ns=b.start_ns, end_ns=b.end_ns, max_delta=-b.min_delta,
                    min_delta=-b.max_delta)


def sides(b: FootprintBar) -> list[tuple[FootprintBar, bool]]:
    """The bar and its mirror image, each with 'is the buy-side original'."""
    return [(b, True), (mirror(b), False)]


def found(b: FootprintBar, s: PatternSettings = DEFAULT, history: Sequence[FootprintBar] = ()) -> dict[
        Pattern, list[PatternEvent]]:
    out: dict[Pattern, list[PatternEvent]] = {}
    for ev in run_detectors(b, list(history), s, ES):
        out.setdefault(ev.pattern, []).append(ev)
    return out


# --- the reference vector ------------------------------------------------------------------------------

REFERENCE = {T("100.00"): (10, 5), T("100.25"): (12, 40), T("100.50"): (8, 45), T("100.75"): (5, 30),
             T("101.00"): (3, 2)}


def reference_bar() -> FootprintBar:
    return make_bar("ES", REFERENCE, open=T("100.00"), close=T("101.00"))


def test_reference_vector_min_volume_0() -> None:
    b = reference_bar()
    ev = found(b, PatternSettings(imbalance_ratio=3.0, imbalance_min_volume=0))
    assert [e.prices for e in ev[Pattern.BUY_IMBALANCE]] == [(T("100.25"), T("100.50"), T("100.75"))]
    assert [e.prices for e in ev[Pattern.STACKED_BUY_IMBALANCE]] == [(T("100.25"), T("100.50"), T("100.75"))]
    assert Pattern.SELL_IMBALANCE not in ev and Pattern.STACKED_SELL_IMBALANCE not in ev
    assert b.delta == 84 and ES.fmt(b.poc) == "100.50"
    ub = {(e.direction, e.prices) for e in ev[Pattern.UNFINISHED_BUSINESS]}
    assert ub == {(Direction.LONG, (T("101.00"),)), (Direction.SHORT, (T("100.00"),))}
    assert "ask 45 at 100.50 vs bid 12 at 100.25, ratio 3.75" in ev[Pattern.BUY_IMBALANCE][0].reasons
    assert all(e.direction is Direction.LONG for e in ev[Pattern.BUY_IMBALANCE] + ev[Pattern.STACKED_BUY_IMBALANCE])


@pytest.mark.parametrize("s", [
    PatternSettings(imbalance_min_volume=31),
    PatternSettings(imbalance_min_volume=5, imbalance_min_volume_by_symbol={"ES": 31}),
    PatternSettings(imbalance_min_volume=31, imbalance_min_volume_by_symbol={"NQ": 0}),
])
def test_reference_vector_min_volume_31(s: PatternSettings) -> None:
    ev = found(reference_bar(), s)
    assert [e.prices for e in ev[Pattern.BUY_IMBALANCE]] == [(T("100.25"), T("100.50"))]
    assert Pattern.STACKED_BUY_IMBALANCE not in ev and Pattern.SELL_IMBALANCE not in ev


def test_per_symbol_override_is_keyed_by_root() -> None:
    s = PatternSettings(imbalance_min_volume_by_symbol={"esz5": 31})
    assert s.min_volume_for("ES") == 31 and s.min_volume_for("ESH6") == 31 and s.min_volume_for("NQ") == 10


# --- imbalances -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ratio", "bid", "ask", "hit"), [
    (3.0, 12, 36, False),  # exactly R: strict '>'
    (3.0, 12, 37, True),
    (2.5, 10, 25, False),
    (2.5, 10, 26, True),
    (1.15, 20, 23, False),  # 1.15 * 20 is 22.999999999999996 in floats: exact arithmetic says equal
    (1.15, 20, 24, True),
    (3.0, 0, 1, True),  # a zero opposite side is an imbalance once the minimum is met
    (3.0, 0, 0, False),
])
def test_imbalance_ratio_boundary(ratio: float, bid: int, ask: int, hit: bool) -> None:
    s = PatternSettings(imbalance_ratio=ratio, imbalance_min_volume=0)
    for b, buy in sides(bar([(bid, 0), (0, ask)])):
        ev = found(b, s)
        key = Pattern.BUY_IMBALANCE if buy else Pattern.SELL_IMBALANCE
        assert (key in ev) is hit
        if hit:
            e = ev[key][0]
            assert e.direction is (Direction.LONG if buy else Direction.SHORT)
            assert e.prices == ((401,) if buy else (MIRROR - 401,))
            assert 0.0 <= e.strength <= 1.0


@pytest.mark.parametrize(("min_volume", "hit"), [(36, True), (37, True), (38, False)])
def test_imbalance_min_volume_is_inclusive(min_volume: int, hit: bool) -> None:
    s = PatternSettings(imbalance_min_volume=min_volume)
    for b, buy in sides(bar([(5, 0), (0, 37)])):
        assert ((Pattern.BUY_IMBALANCE if buy else Pattern.SELL_IMBALANCE) in found(b, s)) is hit


def test_wrong_diagonals_do_not_trigger() -> None:
    # ask(400)=30 dwarfs bid(400)=0 (same level) and bid(401)=1 (the diagonal above), but the true diagonal,
    # bid(399)=20, is not beaten: no buy imbalance anywhere. Mirrored: no sell imbalance.
    b = bar([(20, 0), (0, 30), (1, 0)], low=399)
    for x, buy in sides(b):
        ev = found(x, PatternSettings(imbalance_min_volume=0))
        assert Pattern.BUY_IMBALANCE not in ev and Pattern.SELL_IMBALANCE not in ev, buy
    assert buy_imbalance_levels(b, 3.0, 0) == []
    # the same volumes on the true diagonal do trigger
    hit = bar([(9, 0), (0, 30), (1, 0)], low=399)
    assert buy_imbalance_levels(hit, 3.0, 0) == [400]


def test_extreme_levels_have_no_diagonal_partner_inside_the_bar() -> None:
    b = bar([(0, 50), (0, 0), (50, 0)])  # ask at the low, bid at the high: nothing to compare against
    assert buy_imbalance_levels(b, 3.0, 0) == [] and sell_imbalance_levels(b, 3.0, 0) == []
    ev = found(b)
    assert Pattern.BUY_IMBALANCE not in ev and Pattern.SELL_IMBALANCE not in ev


# --- stacked imbalances ---------------------------------------------------------------------------------

def stack_bar(pattern: str) -> FootprintBar:
    """'x' = a buy-imbalanced level (ask 40 over a bid of at most 5 below), '.' = a level without trades."""
    levels = [(5, 0)]  # the low: gives the first level its diagonal
    levels += [(0, 40) if c == "x" else (0, 0) for c in pattern]
    return bar(levels)


@pytest.mark.parametrize(("pattern", "runs"), [
    ("xxx", [(401, 402, 403)]),
    ("xx", []),
    ("xx.x", []),  # a gap breaks the stack
    ("xx.xxx", [(404, 405, 406)]),
    ("xxx.xxxx", [(401, 402, 403), (405, 406, 407, 408)]),
    ("x.x.x", []),
])
def test_stacked_imbalances(pattern: str, runs: list[tuple[int, ...]]) -> None:
    for b, buy in sides(stack_bar(pattern)):
        ev = found(b).get(Pattern.STACKED_BUY_IMBALANCE if buy else Pattern.STACKED_SELL_IMBALANCE, [])
        want = runs if buy else sorted(tuple(sorted(MIRROR - p for p in r)) for r in runs)
        assert sorted(e.prices for e in ev) == want
        assert all(e.direction is (Direction.LONG if buy else Direction.SHORT) for e in ev)


def test_stack_minimum_is_configurable() -> None:
    b = stack_bar("xxx")
    assert Pattern.STACKED_BUY_IMBALANCE in found(b, PatternSettings(imbalance_min_volume=0, stacked_min_levels=3))
    assert Pattern.STACKED_BUY_IMBALANCE not in found(b, PatternSettings(imbalance_min_volume=0,
                                                                          stacked_min_levels=4))
    assert stacks([1, 2, 3, 5, 6], 2) == [(1, 2, 3), (5, 6)]


def test_a_level_failing_the_minimum_breaks_a_stack() -> None:
    b = bar([(5, 0), (0, 40), (0, 40), (0, 9), (0, 40)])
    assert buy_imbalance_levels(b, 3.0, 10) == [401, 402, 404]
    assert Pattern.STACKED_BUY_IMBALANCE not in found(b, PatternSettings(imbalance_min_volume=10))
    assert Pattern.STACKED_BUY_IMBALANCE in found(b, PatternSettings(imbalance_min_volume=9))


# --- exhaustion -------------------------------------------------------------------------------------------

def exhaustion_bar(top_ask: int, top_bid: int = 16, asks: tuple[int, int, int, int] = (10, 40, 30, 20)) -> (
        FootprintBar):
    """Five levels; ask falls 30 -> 20 -> top_ask toward the high. With top_bid 16 the rest holds 216, so
    ``v * 5 <= 0.2 * volume`` is ``25 v <= 216 + v``: v = 9 is exactly on the threshold."""
    bids = (40, 30, 20, 10)
    return bar([*zip(bids, asks, strict=True), (top_bid, top_ask)], open_i=0, close_i=2)


@pytest.mark.parametrize(("top_ask", "hit"), [(9, True), (10, False), (0, True)])
def test_exhaustion_mean_fraction_boundary(top_ask: int, hit: bool) -> None:
    s = PatternSettings(exhaustion_abs_volume=0, exhaustion_mean_fraction=0.2, exhaustion_levels=3)
    for b, buy in sides(exhaustion_bar(top_ask)):
        ev = found(b, s).get(Pattern.BUYING_EXHAUSTION if buy else Pattern.SELLING_EXHAUSTION, [])
        assert bool(ev) is hit
        if hit:
            assert ev[0].direction is (Direction.SHORT if buy else Direction.LONG)
            assert ev[0].prices == ((b.high,) if buy else (b.low,))


@pytest.mark.parametrize(("a", "top_ask", "hit"), [(12, 12, True), (12, 13, False), (5, 9, True)])
def test_exhaustion_absolute_floor(a: int, top_ask: int, hit: bool) -> None:
    # f = 0: only the absolute floor a counts (and a = 5 < 9 shows max(a, f*mean) uses the larger)
    f = 0.0 if a == 12 else 0.2
    s = PatternSettings(exhaustion_abs_volume=a, exhaustion_mean_fraction=f, exhaustion_levels=3)
    for b, buy in sides(exhaustion_bar(top_ask)):
        assert ((Pattern.BUYING_EXHAUSTION if buy else Pattern.SELLING_EXHAUSTION) in found(b, s)) is hit


@pytest.mark.parametrize(("asks", "k", "hit"), [
    ((10, 40, 30, 20), 3, True),
    ((10, 40, 20, 20), 3, False),  # flat is not falling
    ((10, 40, 30, 31), 3, False),
    ((10, 25, 30, 20), 3, True),  # only the last k levels matter...
    ((10, 25, 30, 20), 4, False),  # ...so a larger k sees the rise
    ((10, 40, 30, 20), 4, True),
    ((10, 40, 30, 20), 6, False),  # fewer levels than k
])
def test_exhaustion_needs_volume_falling_over_k_levels(asks: tuple[int, int, int, int], k: int, hit: bool) -> None:
    s = PatternSettings(exhaustion_abs_volume=0, exhaustion_mean_fraction=0.2, exhaustion_levels=k)
    for b, buy in sides(exhaustion_bar(2, asks=asks)):
        assert ((Pattern.BUYING_EXHAUSTION if buy else Pattern.SELLING_EXHAUSTION) in found(b, s)) is hit


def test_exhaustion_uses_the_aggressor_side() -> None:
    # falling *bid* volume toward the high is not buying exhaustion
    b = bar([(10, 40), (40, 30), (30, 30), (20, 30), (2, 30)])
    assert Pattern.BUYING_EXHAUSTION not in found(b)


# --- absorption -------------------------------------------------------------------------------------------

def absorption_bar(v: int, at: int = 0, close_i: int = 2) -> FootprintBar:
    """Five levels, bid v at index ``at`` (else 10). With at = 0 the rest holds 72: ``5 v >= 2 (v + 72)`` is
    ``v >= 48``."""
    levels = [(10, 10), (10, 10), (10, 10), (10, 10), (5, 5)]
    levels[at] = (v, 2)
    return bar(levels, open_i=3, close_i=close_i)


@pytest.mark.parametrize(("v", "hit"), [(48, True), (47, False), (200, True)])
def test_absorption_mean_multiple_boundary(v: int, hit: bool) -> None:
    s = PatternSettings(absorption_mean_multiple=2.0, absorption_close_ticks=2, absorption_zone_ticks=1)
    for b, buy in sides(absorption_bar(v)):
        ev = found(b, s).get(Pattern.BUYING_ABSORPTION if buy else Pattern.SELLING_ABSORPTION, [])
        assert bool(ev) is hit
        if hit:
            assert ev[0].direction is (Direction.LONG if buy else Direction.SHORT)
            assert ev[0].prices == ((400,) if buy else (MIRROR - 400,))
            assert 0.5 <= ev[0].strength <= 1.0


@pytest.mark.parametrize(("close_i", "n", "hit"), [(2, 2, True), (1, 2, False), (0, 1, False), (1, 1, True),
                                                   (4, 4, True), (4, 5, False)])
def test_absorption_close_must_stay_away_from_the_extreme(close_i: int, n: int, hit: bool) -> None:
    s = PatternSettings(absorption_close_ticks=n)
    for b, buy in sides(absorption_bar(60, close_i=close_i)):
        assert ((Pattern.BUYING_ABSORPTION if buy else Pattern.SELLING_ABSORPTION) in found(b, s)) is hit


@pytest.mark.parametrize(("at", "zone", "hit"), [(1, 1, True), (2, 1, False), (2, 2, True), (1, 0, False)])
def test_absorption_near_the_extreme(at: int, zone: int, hit: bool) -> None:
    s = PatternSettings(absorption_zone_ticks=zone, absorption_close_ticks=1)
    for b, buy in sides(absorption_bar(60, at=at, close_i=3)):
        ev = found(b, s).get(Pattern.BUYING_ABSORPTION if buy else Pattern.SELLING_ABSORPTION, [])
        assert bool(ev) is hit
        if hit:
            assert ev[0].prices == ((400 + at,) if buy else (MIRROR - 400 - at,))


def test_absorption_zone_wider_than_the_bar() -> None:
    # regression: a zone larger than the bar must cover the whole bar, not wrap around from the other end
    s = PatternSettings(absorption_zone_ticks=2, absorption_close_ticks=1, absorption_mean_multiple=1.0)
    b = bar([(5, 5), (60, 0)], open_i=0, close_i=1)  # two levels, both within 2 ticks of either extreme
    for x, buy in sides(mirror(b)):
        ev = found(x, s).get(Pattern.SELLING_ABSORPTION if buy else Pattern.BUYING_ABSORPTION, [])
        assert [e.prices for e in ev] == ([(MIRROR - 401,)] if buy else [(401,)])


def test_absorption_needs_the_aggressor_that_was_absorbed() -> None:
    # heavy *buying* at the low is not buying absorption (no sellers were absorbed there)
    b = bar([(2, 60), (10, 10), (10, 10), (10, 10), (5, 5)], open_i=3, close_i=2)
    assert Pattern.BUYING_ABSORPTION not in found(b)


# --- delta divergence -------------------------------------------------------------------------------------

def candle(o: int, c: int, lo: int, hi: int, delta: int, start: int) -> FootprintBar:
    """A bar with given OHLC and delta: the delta sits at the open level, 10 each side elsewhere."""
    levels = {p: (10, 10) for p in range(lo, hi + 1)}
    levels[o] = (10 + max(0, -delta), 10 + max(0, delta))
    return make_bar("ES", levels, open=o, close=c, start_ns=start * 300 * 10**9, end_ns=(start + 1) * 300 * 10**9)


def diverging(high: int = 406, delta: int = -5, c0: int = 402, c1: int = 404, close: int = 401) -> list[
        FootprintBar]:
    return [candle(400, c0, 399, 403, 3, 0), candle(402, c1, 401, 405, 3, 1), candle(404, close, 400, high, delta, 2)]


@pytest.mark.parametrize(("kw", "hit"), [
    ({}, True),
    ({"high": 405}, True),  # high equal to the previous high counts
    ({"high": 404}, False),  # below the previous high
    ({"delta": 0}, False),
    ({"delta": 7}, False),
    ({"close": 404}, False),  # flat bar: not a down close
    ({"c0": 400}, False),  # the bar two back closed flat
    ({"c1": 401}, False),  # the previous bar closed down
])
def test_delta_divergence(kw: dict[str, int], hit: bool) -> None:
    bars = diverging(**kw)
    for flip in (False, True):
        seq = [mirror(b) for b in bars] if flip else bars
        ev = found(seq[2], history=seq[:2]).get(Pattern.DELTA_DIVERGENCE, [])
        assert bool(ev) is hit
        if hit:
            assert ev[0].direction is (Direction.LONG if flip else Direction.SHORT)
            assert ev[0].prices == ((seq[2].low,) if flip else (seq[2].high,))


def test_delta_divergence_needs_two_prior_bars_and_the_engine_keeps_them() -> None:
    bars = diverging()
    assert detect_delta_divergence(bars[2], bars[1:2], DEFAULT, ES) == []
    engine = PatternEngine(ES, DEFAULT)
    assert all(e.pattern is not Pattern.DELTA_DIVERGENCE for e in engine.on_bar(bars[0]) + engine.on_bar(bars[1]))
    assert [e.direction for e in engine.on_bar(bars[2]) if e.pattern is Pattern.DELTA_DIVERGENCE] == [Direction.SHORT]


# --- unfinished business ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("top", "bottom", "want"), [
    ((1, 1), (1, 1), {(Direction.LONG, 402), (Direction.SHORT, 400)}),
    ((0, 5), (1, 1), {(Direction.SHORT, 400)}),  # a lone buyer at the high finished the auction
    ((5, 0), (0, 5), set()),
])
def test_unfinished_business(top: tuple[int, int], bottom: tuple[int, int], want: set[tuple[Direction, int]]) -> None:
    for b, buy in sides(bar([bottom, (10, 10), top])):
        got = {(e.direction, e.prices[0]) for e in detect_unfinished_business(b, (), DEFAULT, ES)}
        assert got == (want if buy else {(FLIP[d], MIRROR - p) for d, p in want})


def test_one_tick_bar_has_no_unfinished_business() -> None:
    assert detect_unfinished_business(bar([(5, 5)]), (), DEFAULT, ES) == []


def test_unfinished_levels_stay_open_until_traded_again() -> None:
    engine = PatternEngine(ES, DEFAULT)
    b1 = bar([(1, 1), (10, 10), (1, 1)], low=400, start_ns=0)  # open highs/lows at 402 and 400
    engine.on_bar(b1)
    assert [(lv.price, lv.at_high) for lv in engine.open_unfinished()] == [(402, True), (400, False)]
    b2 = bar([(0, 5), (5, 0)], low=398, start_ns=1)  # 398-399: touches neither
    engine.on_bar(b2)
    assert engine.last_revisited == [] and len(engine.open_unfinished()) == 2
    b3 = bar([(0, 5), (0, 5), (5, 0)], low=401, start_ns=2)  # trades 402 again
    engine.on_bar(b3)
    assert [lv.price for lv in engine.last_revisited] == [402]
    assert [(lv.price, lv.at_high) for lv in engine.open_unfinished()] == [(400, False)]
    assert [lv.price for lv in engine.open_unfinished(Direction.SHORT)] == [400]
    assert engine.open_unfinished(Direction.LONG) == ()
    tracker = engine.unfinished
    assert tracker.nearest_below(401) is not None and tracker.nearest_above(401) is None


def test_tracker_is_bounded_oldest_dropped_first() -> None:
    tr = UnfinishedTracker(max_open=2)
    for i in range(3):
        tr.update(bar([(1, 1), (1, 1)], low=400 + 10 * i, start_ns=i))
    assert [lv.price for lv in tr.open_levels] == [421, 420]  # one bar: high, then low


# --- engine -----------------------------------------------------------------------------------------------

def test_engine_reports_every_pattern_and_survives_a_broken_detector() -> None:
    assert set(DETECTORS) | {Pattern.VOLUME_IMBALANCE, Pattern.RED_BURST} == set(Pattern) and len(DETECTORS) == 10
    engine = PatternEngine(ES, DEFAULT)

    def broken(*_: Any) -> list[PatternEvent]:
        raise RuntimeError("bug")

    engine.detectors[Pattern.SELL_IMBALANCE] = broken
    events = engine.on_bar(reference_bar())
    assert engine.stats["detector_error:SELL_IMBALANCE"] == 1
    assert {e.pattern for e in events} >= {Pattern.BUY_IMBALANCE, Pattern.UNFINISHED_BUSINESS}
    nq = dataclasses.replace(reference_bar(), symbol="NQ")
    assert engine.on_bar(nq) == [] and engine.stats["wrong_symbol"] == 1


def test_engine_pattern_selection() -> None:
    engine = PatternEngine(ES, DEFAULT, patterns=[Pattern.UNFINISHED_BUSINESS])
    assert {e.pattern for e in engine.on_bar(reference_bar())} == {Pattern.UNFINISHED_BUSINESS}


def test_event_is_frozen_and_validated() -> None:
    ev = detect_buy_imbalance(reference_bar(), (), DEFAULT, ES)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.strength = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="outside"):
        dataclasses.replace(ev, strength=1.5)
    assert ev.price == T("100.25") and ev.direction.side.name == "BUY"
    assert ev.describe().startswith("BUY_IMBALANCE LONG ES: ask 40 at 100.25")
    assert (ev.bar_start_ns, ev.bar_end_ns, ev.trading_date) == (0, 300 * 10**9, reference_bar().trading_date)


def test_detectors_are_pure() -> None:
    b, s = reference_bar(), PatternSettings(imbalance_min_volume=0)
    for detect in (detect_buy_imbalance, detect_sell_imbalance, detect_stacked_buy_imbalance,
                   detect_buying_exhaustion, detect_buying_absorption, detect_unfinished_business):
        assert detect(b, (), s, ES) == detect(b, (), s, ES)


# --- properties -------------------------------------------------------------------------------------------

level_lists = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=9)


@st.composite
def random_bar(draw: st.DrawFn, start: int = 0) -> FootprintBar:
    levels = draw(level_lists)
    if all(b + a == 0 for b, a in levels):
        levels[0] = (1, 0)
    n = len(levels)
    return bar(levels, open_i=draw(st.integers(0, n - 1)), close_i=draw(st.integers(0, n - 1)),
               low=draw(st.integers(395, 405)), start_ns=start)


@settings(max_examples=300, deadline=None)
@given(b=random_bar(), ratio=st.sampled_from([1.0, 1.15, 1.5, 2.5, 3.0, 4.0]), min_volume=st.integers(0, 30))
def test_imbalances_match_the_definition_exactly(b: FootprintBar, ratio: float, min_volume: int) -> None:
    r = Fraction(str(ratio))
    assert buy_imbalance_levels(b, ratio, min_volume) == [
        p for p in range(b.low + 1, b.high + 1) if b.ask(p) >= min_volume and b.ask(p) > r * b.bid(p - 1)]
    assert sell_imbalance_levels(b, ratio, min_volume) == [
        p for p in range(b.low, b.high) if b.bid(p) >= min_volume and b.bid(p) > r * b.ask(p + 1)]


def _key(e: PatternEvent) -> tuple[Any, ...]:
    return (e.pattern, e.direction, e.prices, round(e.strength, 9))


def _mirrored_key(e: PatternEvent) -> tuple[Any, ...]:
    return (TWIN[e.pattern], FLIP[e.direction], tuple(sorted(MIRROR - p for p in e.prices)), round(e.strength, 9))


@settings(max_examples=300, deadline=None)
@given(b0=random_bar(0), b1=random_bar(1), b2=random_bar(2), k=st.integers(2, 4), zone=st.integers(0, 2))
def test_every_detector_is_mirror_symmetric(b0: FootprintBar, b1: FootprintBar, b2: FootprintBar, k: int,
                                            zone: int) -> None:
    s = PatternSettings(imbalance_min_volume=5, exhaustion_levels=k, absorption_zone_ticks=zone,
                        absorption_close_ticks=1)
    events = run_detectors(b2, [b0, b1], s, ES)
    flipped = run_detectors(mirror(b2), [mirror(b0), mirror(b1)], s, ES)
    assert sorted(map(_mirrored_key, events)) == sorted(map(_key, flipped))
    for e in events:
        assert 0.0 <= e.strength <= 1.0 and e.reasons and all(b2.low <= p <= b2.high for p in e.prices)
        assert e.prices == tuple(sorted(e.prices))


# --- the chosen reading of absorption and exhaustion (README "Order flow", the detectors' docstrings) ---------

READING = PatternSettings(imbalance_min_volume=0, absorption_mean_multiple=2.0, absorption_zone_ticks=1,
                          absorption_close_ticks=2, exhaustion_abs_volume=0, exhaustion_mean_fraction=0.2,
                          exhaustion_levels=3)


@pytest.mark.parametrize(("levels", "absorbed"), [
    # bid 30 at the low and 30 one tick above, ask 15 at the low: mean 22, threshold 44. The largest single
    # level's aggressor (bid) volume, 30, is below it: no absorption (the zone's summed bids, 60, and the low's
    # total volume, 45, would both pass; neither is the rule).
    ([(30, 15), (30, 5), (5, 5), (5, 5), (5, 5)], False),
    # bid 50 at the low alone: mean 19, threshold 38 -> absorption at the low.
    ([(50, 5), (5, 5), (5, 5), (5, 5), (5, 5)], True),
])
def test_absorption_is_aggressor_volume_at_the_single_largest_level(levels: list[tuple[int, int]],
                                                                     absorbed: bool) -> None:
    for b, buy in sides(bar(levels, open_i=2, close_i=4)):
        assert ((Pattern.BUYING_ABSORPTION if buy else Pattern.SELLING_ABSORPTION) in found(b, READING)) is absorbed


@pytest.mark.parametrize(("levels", "exhausted"), [
    # ask 30, 20, 3 toward the high (falling), mean 38.6, 0.2 x mean = 7.72: the high's ask volume 3 is below ->
    # buying exhaustion, although the high's total volume (43) is not.
    ([(20, 20), (20, 20), (10, 30), (10, 20), (40, 3)], True),
    # the same with ask 8 at the high: mean 39.6, 0.2 x mean = 7.92, and 8 is above it -> none.
    ([(20, 20), (20, 20), (10, 30), (10, 20), (40, 8)], False),
])
def test_exhaustion_is_aggressor_volume_at_the_extreme_level(levels: list[tuple[int, int]], exhausted: bool) -> None:
    for b, buy in sides(bar(levels, open_i=0, close_i=2)):
        assert ((Pattern.BUYING_EXHAUSTION if buy else Pattern.SELLING_EXHAUSTION) in found(b, READING)) is exhausted
