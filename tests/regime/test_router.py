"""Router: the regime x pattern table, confluence (exact 0.6 boundary, missing features), cooldown, one position,
sizing, superseded signals, microstructure-risky rejections, brackets on the tick grid for every contract, table
overrides, the decision log, and the whole chain on the simulated market."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradebot.core.calendar import CT, NS, calendar_for, to_ns
from tradebot.core.config import ConfigError, RoutingTableError, Settings, load_settings, load_table_file
from tradebot.core.contracts import CONTRACTS, ContractSpec, spec_for
from tradebot.core.orders import EntryType, make_signal_id
from tradebot.core.types import BookUpdate, Side, SideRule, StatusEvent, Trade
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar, make_bar
from tradebot.orderflow.microstructure import MicrostructureSnapshot, MicrostructureTracker
from tradebot.orderflow.profile import ProfileSnapshot, ValueArea
from tradebot.regime.decisions import ConfirmationStatus, ReasonCode, Verdict, format_decision
from tradebot.regime.detector import Regime, RegimeState
from tradebot.regime.router import DEFAULT_TABLE, Router, RouterContext

ES = spec_for("ES")
CAL = calendar_for("equity")
T0 = to_ns(dt.datetime(2025, 3, 12, 10, 0, tzinfo=CT))  # inside RTH
STEP = 300 * NS
BASE = 20000  # 5000.00


def settings(**kw: Any) -> Settings:
    """Settings without the environment or a .env file; ``router__x=...`` style keys go to sub-models."""
    groups: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for k, v in kw.items():
        if "__" in k:
            g, name = k.split("__", 1)
            groups.setdefault(g, {})[name] = v
        else:
            top[k] = v
    return Settings(_env_file=None, **top, **groups)  # type: ignore[call-arg]


def sig_bar(end: int = T0, spec: ContractSpec = ES, base: int = BASE, trades_per_side: int = 1,
            ask: int = 60, bid: int = 40) -> FootprintBar:
    """A 9-tick bar [base-4, base+4] closing at ``base``; aggressor volumes set the bar's buy share."""
    levels = {base - 4: (bid, ask), base + 4: (bid, ask)}
    return make_bar(spec.root, levels, open=base, close=base, start_ns=end - STEP, end_ns=end,
                    trading_date=CAL.session_for(end - STEP).trading_date)


def event(pattern: Pattern, direction: Direction, bar: FootprintBar, strength: float = 0.9,
          price: int | None = None) -> PatternEvent:
    p = price if price is not None else (bar.low if direction is Direction.LONG else bar.high)
    return PatternEvent(pattern, direction, bar.symbol, bar.start_ns, bar.end_ns, (p,), strength, ("test",),
                        bar.trading_date)


def regime(r: Regime, end: int = T0, atr: float | None = 8.0, close: int = BASE) -> RegimeState:
    return RegimeState("ES", end, end - STEP, r, 0.8, (), (f"{r} for the test",), close, atr=atr)


def micro(direction: Direction | None, now: int = T0, spread: int = 1, lots: int = 50,
          spec: ContractSpec = ES, base: int = BASE) -> MicrostructureSnapshot:
    """A real tracker snapshot: deep book leaning ``direction`` and aggressive flow the same way."""
    tr = MicrostructureTracker(spec, calendar=CAL)
    lean = 0 if direction is None else direction.sign
    bids = (lots + 20 * lean,) * 10
    asks = (lots - 20 * lean,) * 10
    tr.on_book(BookUpdate(spec.root, now, now, tuple(range(base, base - 10, -1)), bids,
                          tuple(range(base + spread, base + spread + 10)), asks))
    if direction is not None:
        side = Side.BUY if direction is Direction.LONG else Side.SELL
        other = Side.SELL if side is Side.BUY else Side.BUY
        tr.on_trade(Trade(spec.root, now - NS, now - NS, base, 8, side, SideRule.EXCHANGE))
        tr.on_trade(Trade(spec.root, now - NS, now - NS, base, 2, other, SideRule.EXCHANGE))
    return tr.snapshot(now)


def profile(direction: Direction, bar: FootprintBar) -> ProfileSnapshot:
    """VAL at the bar's low and VAH at its high; POC below the close for LONG, above for SHORT."""
    poc = bar.low if direction is Direction.LONG else bar.high
    return ProfileSnapshot(1000, bar.low - 20, bar.high + 20, poc, ValueArea(bar.low, bar.high, poc, 700, 1000),
                           (), (), 500, 500)


def good_context(direction: Direction, bar: FootprintBar, **kw: Any) -> RouterContext:
    base = {"cum_delta": 5000 * direction.sign, "micro": micro(direction, bar.end_ns),
            "profile": profile(direction, bar), "last_price": bar.close, "last_trade_ns": bar.end_ns - NS}
    base.update(kw)
    return RouterContext(**base)


def one(router: Router, ev: PatternEvent, r: Regime, bar: FootprintBar, ctx: RouterContext | None = None,
        **kw: Any) -> Any:
    out = router.on_bar(bar, [ev], regime(r, bar.end_ns), ctx or good_context(ev.direction, bar), **kw)
    assert len(out) == 1
    return out[0]


# ------------------------------------------------------------------------------------------ the table

L, S = Direction.LONG, Direction.SHORT
P = Pattern
NATURAL = [(P.BUY_IMBALANCE, L), (P.SELL_IMBALANCE, S), (P.STACKED_BUY_IMBALANCE, L),
           (P.STACKED_SELL_IMBALANCE, S), (P.BUYING_EXHAUSTION, S), (P.SELLING_EXHAUSTION, L),
           (P.BUYING_ABSORPTION, L), (P.SELLING_ABSORPTION, S), (P.DELTA_DIVERGENCE, L), (P.DELTA_DIVERGENCE, S),
           (P.UNFINISHED_BUSINESS, L), (P.UNFINISHED_BUSINESS, S)]

# The spec (seed 002), written out: which (pattern, direction) each regime takes with strong confluence.
TAKES = {
    Regime.TRENDING_UP: {(P.BUY_IMBALANCE, L), (P.STACKED_BUY_IMBALANCE, L), (P.BUYING_ABSORPTION, L),
                         (P.SELLING_EXHAUSTION, L)},
    Regime.TRENDING_DOWN: {(P.SELL_IMBALANCE, S), (P.STACKED_SELL_IMBALANCE, S), (P.SELLING_ABSORPTION, S),
                           (P.BUYING_EXHAUSTION, S)},
    Regime.RANGING: {(P.BUYING_EXHAUSTION, S), (P.SELLING_EXHAUSTION, L), (P.BUYING_ABSORPTION, L),
                     (P.SELLING_ABSORPTION, S), (P.DELTA_DIVERGENCE, L), (P.DELTA_DIVERGENCE, S)},
    Regime.VOLATILE: {(P.STACKED_BUY_IMBALANCE, L), (P.STACKED_SELL_IMBALANCE, S), (P.BUYING_ABSORPTION, L),
                      (P.SELLING_ABSORPTION, S), (P.BUYING_EXHAUSTION, S), (P.SELLING_EXHAUSTION, L)},
    Regime.NO_TRADE: set(),
}
COUNTER = {Regime.TRENDING_UP: S, Regime.TRENDING_DOWN: L}


@pytest.mark.parametrize("r", list(Regime))
@pytest.mark.parametrize(("pattern", "direction"), NATURAL, ids=[f"{p}-{d}" for p, d in NATURAL])
def test_regime_pattern_table(r: Regime, pattern: Pattern, direction: Direction) -> None:
    router = Router(ES, settings())
    bar = sig_bar()
    d = one(router, event(pattern, direction, bar), r, bar)
    if (pattern, direction) in TAKES[r]:
        assert d.verdict is Verdict.TAKEN and d.codes == () and d.intent is not None, d.reasons
        return
    assert d.verdict is Verdict.REJECTED and d.intent is None
    if r is Regime.NO_TRADE:
        assert d.codes == (ReasonCode.REGIME_NO_TRADE,)
        assert "NO_TRADE for the test" in d.reasons[0]
        return
    expected = set()
    if pattern not in {p for p, _ in TAKES[r]}:
        expected.add(ReasonCode.PATTERN_DISABLED)
    if COUNTER.get(r) is direction:
        expected.add(ReasonCode.DIRECTION_DISABLED)
    assert expected and set(d.codes) == expected


def test_ranging_takes_reversals_only_at_an_extreme() -> None:
    bar = sig_bar()
    mid = BASE  # 4 ticks from both VAL/VAH and the bar extremes; ATR 8 -> near = max(4, ceil(0.5 x 8)) = 4
    router = Router(ES, settings())
    assert router.near_ticks(8.0) == 4 and router.near_ticks(None) == 4 and router.near_ticks(13.0) == 7
    d = one(router, event(P.SELLING_EXHAUSTION, L, bar, price=mid), Regime.RANGING, bar)
    assert d.verdict is Verdict.TAKEN  # exactly 4 ticks above VAL/session low
    router = Router(ES, settings())
    d = one(router, event(P.SELLING_EXHAUSTION, L, bar, price=mid + 1), Regime.RANGING, bar)
    assert ReasonCode.NOT_AT_EXTREME in d.codes and "more than 4 ticks from VAL 4999.00" in d.reasons[0]
    # Without a profile the session extremes still count.
    router = Router(ES, settings())
    ctx = good_context(S, bar, profile=None)
    d = one(router, event(P.BUYING_EXHAUSTION, S, bar, price=bar.high), Regime.RANGING, bar, ctx)
    assert d.verdict is Verdict.TAKEN
    profile_term = next(c for c in d.confirmations if c.name == "profile")
    assert profile_term.status is ConfirmationStatus.UNAVAILABLE


def test_volatile_takes_only_the_strongest_and_reduces_size() -> None:
    bar = sig_bar()
    router = Router(ES, settings(router__base_size=4, execution__max_position_size=4))
    d = one(router, event(P.STACKED_BUY_IMBALANCE, L, bar, strength=0.79), Regime.VOLATILE, bar)
    assert d.codes == (ReasonCode.WEAK_TRIGGER,)
    d = one(router, event(P.STACKED_BUY_IMBALANCE, L, bar, strength=0.8), Regime.VOLATILE, bar)
    assert d.taken and d.intent.quantity == 2 and d.min_confidence == 0.7


# ------------------------------------------------------------------------------------------ confluence


def boundary_context(bar: FootprintBar) -> RouterContext:
    # cum delta confirms (0.15); bar buy share 0.5 < 0.55 (0); no book (0.05); no intensity history (0.025);
    # no profile (0.05): 0.5 x s + 0.275 = 0.6 <=> s = 0.65.
    return RouterContext(cum_delta=1000, micro=None, profile=None, last_trade_ns=bar.end_ns - NS)


def test_confidence_exactly_at_min_confidence_is_taken() -> None:
    bar = sig_bar(ask=50, bid=50)
    router = Router(ES, settings())
    d = one(router, event(P.BUY_IMBALANCE, L, bar, strength=0.65), Regime.TRENDING_UP, bar, boundary_context(bar))
    assert d.confidence == 0.6 and d.verdict is Verdict.TAKEN
    status = {c.name: c.status for c in d.confirmations}
    assert status == {"trigger": ConfirmationStatus.TRIGGER, "cum_delta": ConfirmationStatus.CONFIRMED,
                      "buy_pressure": ConfirmationStatus.NOT_CONFIRMED,
                      "depth_imbalance": ConfirmationStatus.UNAVAILABLE,
                      "intensity": ConfirmationStatus.UNAVAILABLE, "profile": ConfirmationStatus.UNAVAILABLE}
    router = Router(ES, settings())
    d = one(router, event(P.BUY_IMBALANCE, L, bar, strength=0.64), Regime.TRENDING_UP, bar, boundary_context(bar))
    assert d.confidence == pytest.approx(0.595) and d.codes == (ReasonCode.LOW_CONFIDENCE,)
    # MIN_CONFIDENCE (the seed's name) moves the line.
    router = Router(ES, settings(min_confidence=0.59))
    assert one(router, event(P.BUY_IMBALANCE, L, bar, strength=0.64), Regime.TRENDING_UP, bar,
               boundary_context(bar)).taken


def test_cum_delta_threshold_exactly_and_per_symbol() -> None:
    bar = sig_bar(ask=50, bid=50)
    ev = event(P.BUY_IMBALANCE, L, bar, strength=1.0)
    for cd, ok in ((999, False), (1000, True), (-5000, False)):
        router = Router(ES, settings())
        d = one(router, ev, Regime.TRENDING_UP, bar, replace(boundary_context(bar), cum_delta=cd))
        term = next(c for c in d.confirmations if c.name == "cum_delta")
        assert (term.status is ConfirmationStatus.CONFIRMED) is ok
    router = Router(ES, settings(router__cum_delta_threshold_by_symbol="ES:2000"))
    d = one(router, ev, Regime.TRENDING_UP, bar, replace(boundary_context(bar), cum_delta=1500))
    assert next(c for c in d.confirmations if c.name == "cum_delta").status is ConfirmationStatus.NOT_CONFIRMED
    # With no context value the bar's own session cumulative delta is used.
    cd_bar = replace(bar, cum_delta=-3000)
    d = one(Router(ES, settings()), event(P.SELL_IMBALANCE, S, cd_bar, 1.0), Regime.TRENDING_DOWN, cd_bar,
            RouterContext())
    assert next(c for c in d.confirmations if c.name == "cum_delta").status is ConfirmationStatus.CONFIRMED


def test_a_trigger_alone_never_trades() -> None:
    # Strength 1.0, no book, no profile, no history, cum delta and aggressor share against: 0.625 >= 0.6 ...
    bar = sig_bar(ask=30, bid=70)
    ctx = RouterContext(cum_delta=-2000, last_trade_ns=bar.end_ns - NS)
    d = one(Router(ES, settings()), event(P.BUY_IMBALANCE, L, bar, strength=1.0), Regime.TRENDING_UP, bar, ctx)
    assert d.confidence == 0.625
    # ... but nothing confirmed it.
    assert d.codes == (ReasonCode.NO_CONFIRMATION,)
    d = one(Router(ES, settings(router__min_confirmations=0)), event(P.BUY_IMBALANCE, L, bar, strength=1.0),
            Regime.TRENDING_UP, bar, ctx)
    assert d.taken


def test_book_features_confirm_in_the_signal_direction() -> None:
    bar = sig_bar()
    d = one(Router(ES, settings()), event(P.SELL_IMBALANCE, S, bar), Regime.TRENDING_DOWN, bar)
    terms = {c.name: c for c in d.confirmations}
    assert terms["depth_imbalance"].status is ConfirmationStatus.CONFIRMED  # bids 30 vs asks 70: -0.40
    assert "-0.40" in terms["depth_imbalance"].detail
    assert terms["buy_pressure"].status is ConfirmationStatus.CONFIRMED and "(flow window)" in terms[
        "buy_pressure"].detail
    # A book leaning the other way does not confirm.
    d = one(Router(ES, settings()), event(P.SELL_IMBALANCE, S, bar), Regime.TRENDING_DOWN, bar,
            good_context(S, bar, micro=micro(L, bar.end_ns)))
    terms = {c.name: c for c in d.confirmations}
    assert terms["depth_imbalance"].status is ConfirmationStatus.NOT_CONFIRMED
    assert terms["buy_pressure"].status is ConfirmationStatus.NOT_CONFIRMED


def test_trade_intensity_against_its_average() -> None:
    router = Router(ES, settings())
    for i in range(5):
        b = sig_bar(end=T0 + i * STEP)
        assert router.on_bar(b, [], regime(Regime.TRENDING_UP, b.end_ns), RouterContext()) == []
    busy_levels = {BASE - 4: (40, 60), BASE - 2: (40, 60), BASE: (40, 60), BASE + 4: (40, 60)}
    end = T0 + 5 * STEP
    busy = make_bar("ES", busy_levels, open=BASE, close=BASE, start_ns=end - STEP, end_ns=end,
                    trading_date=CAL.session_for(end).trading_date)
    d = one(router, event(P.BUY_IMBALANCE, L, busy), Regime.TRENDING_UP, busy)
    term = next(c for c in d.confirmations if c.name == "intensity")
    assert term.status is ConfirmationStatus.CONFIRMED and "2.00x" in term.detail  # 8 trades vs 4 a bar


# ------------------------------------------------------------------------------------------ risk gates


def test_cooldown_inside_and_after() -> None:
    router = Router(ES, settings())
    b0 = sig_bar()
    assert one(router, event(P.BUY_IMBALANCE, L, b0), Regime.TRENDING_UP, b0).taken
    inside = sig_bar(end=T0 + STEP)
    d = one(router, event(P.BUY_IMBALANCE, L, inside), Regime.TRENDING_UP, inside, now_ns=T0 + 299 * NS)
    assert d.codes == (ReasonCode.COOLDOWN,) and "299s ago" in d.reasons[0]
    d = one(router, event(P.BUY_IMBALANCE, L, inside), Regime.TRENDING_UP, inside, now_ns=T0 + 300 * NS)
    assert d.taken
    # A rejected signal does not restart the clock.
    later = sig_bar(end=T0 + 2 * STEP)
    d = one(router, event(P.SELL_IMBALANCE, S, later), Regime.TRENDING_UP, later, now_ns=T0 + 600 * NS)
    assert not d.taken and router.last_taken_ns == T0 + 300 * NS


def test_one_position_per_symbol() -> None:
    bar = sig_bar()
    d = one(Router(ES, settings()), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar, has_position=True)
    assert d.codes == (ReasonCode.POSITION_OPEN,)
    asked: list[str] = []

    def has(sym: str) -> bool:
        asked.append(sym)
        return sym == "NQ"

    d = one(Router(ES, settings()), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar, has_position=has)
    assert d.taken and asked == ["ES"]


@pytest.mark.parametrize(("base", "mult", "cap", "qty"), [
    (1, 1.0, 2, 1), (5, 1.0, 2, 2), (3, 0.5, 10, 1), (1, 0.5, 10, 1), (4, 0.5, 10, 2), (10, 0.25, 3, 2),
])
def test_quantity_is_base_times_multiplier_at_least_one_capped(base: int, mult: float, cap: int, qty: int) -> None:
    table = {"TRENDING_UP": {"size_multiplier": mult}}
    router = Router(ES, settings(router__base_size=base, router__table=table, execution__max_position_size=cap))
    bar = sig_bar()
    d = one(router, event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar)
    assert d.intent.quantity == qty == max(1, min(math.floor(base * mult), cap))


def test_several_events_in_one_bar_best_taken_others_superseded() -> None:
    bar = sig_bar()
    evs = [event(P.BUY_IMBALANCE, L, bar, 0.7), event(P.STACKED_BUY_IMBALANCE, L, bar, 0.95),
           event(P.SELL_IMBALANCE, S, bar, 1.0), event(P.BUYING_ABSORPTION, L, bar, 0.8)]
    out = Router(ES, settings()).on_bar(bar, evs, regime(Regime.TRENDING_UP), good_context(L, bar))
    assert [d.pattern for d in out] == [e.pattern for e in evs]  # every event recorded, in order
    assert [d.verdict for d in out] == [Verdict.REJECTED, Verdict.TAKEN, Verdict.REJECTED, Verdict.REJECTED]
    assert out[0].codes == (ReasonCode.SUPERSEDED,) and "superseded by STACKED_BUY_IMBALANCE" in out[0].reasons[0]
    assert out[3].codes == (ReasonCode.SUPERSEDED,)
    assert ReasonCode.SUPERSEDED not in out[2].codes  # rejected on its own account
    assert len({d.signal_id for d in out}) == 4


def test_ties_break_on_strength_then_detector_order() -> None:
    bar = sig_bar()
    # Equal strength and the same confirmations give equal confidence: the earlier detector's event wins.
    evs = [event(P.BUY_IMBALANCE, L, bar, 0.9), event(P.STACKED_BUY_IMBALANCE, L, bar, 0.9)]
    out = Router(ES, settings()).on_bar(bar, evs, regime(Regime.TRENDING_UP), good_context(L, bar))
    assert out[0].taken and out[1].codes == (ReasonCode.SUPERSEDED,)


def test_microstructure_risky_is_recorded_with_the_failing_checks() -> None:
    bar = sig_bar()
    ctx = good_context(L, bar, micro=micro(L, bar.end_ns, spread=3))
    d = one(Router(ES, settings()), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar, ctx)
    assert d.codes == (ReasonCode.MICROSTRUCTURE_RISKY,)
    assert d.reasons[0] == "microstructure risky: spread: 3 ticks > 1"
    assert d.filters is not None and not d.filters.passed and d.filters.mode == "SAFE"
    d = one(Router(ES, settings(filters__mode="aggressive")), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP,
            bar, good_context(L, bar, micro=micro(L, bar.end_ns, spread=2)))
    assert d.taken and d.filters is not None and d.filters.mode == "AGGRESSIVE"
    # A halt reaches the filter through the router.
    router = Router(ES, settings())
    router.on_status(StatusEvent("ES", bar.end_ns - 10 * NS, True, "halt"))
    d = one(router, event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar)
    assert d.codes == (ReasonCode.MICROSTRUCTURE_RISKY,) and "exchange halt (halt)" in d.reasons[0]


def test_wrong_symbol_event_is_recorded_not_dropped() -> None:
    bar = sig_bar()
    nq_ev = replace(event(P.BUY_IMBALANCE, L, bar), symbol="NQ")
    d = one(Router(ES, settings()), nq_ev, Regime.TRENDING_UP, bar)
    assert d.codes == (ReasonCode.WRONG_SYMBOL,) and not d.taken


# ------------------------------------------------------------------------------------------ brackets


def expected_ticks(points: Decimal, spec: ContractSpec) -> int:
    q = points / spec.tick_size
    return int(q) if q == int(q) else int(q) + 1


@pytest.mark.parametrize("root", sorted(CONTRACTS))
@pytest.mark.parametrize("direction", [L, S])
@pytest.mark.parametrize("mode", ["fixed", "atr"])
def test_stops_and_targets_on_the_tick_grid_for_every_contract(root: str, direction: Direction, mode: str) -> None:
    spec = CONTRACTS[root]
    entry = 40_000 + 7  # any on-grid price, in ticks
    atr = 13.37  # ticks
    router = Router(spec, settings(router__stop_mode=mode))
    bar = sig_bar(spec=spec, base=entry)
    pattern = P.BUY_IMBALANCE if direction is L else P.SELL_IMBALANCE
    r = Regime.TRENDING_UP if direction is L else Regime.TRENDING_DOWN
    ev = event(pattern, direction, bar)
    ctx = good_context(direction, bar, micro=micro(direction, bar.end_ns, spec=spec, base=entry))
    d = router.on_bar(bar, [ev], replace(regime(r, atr=atr), symbol=root), ctx)[0]
    assert d.taken, d.reasons
    i = d.intent
    assert all(isinstance(x, int) for x in (i.stop_price, i.target_price))
    if mode == "fixed":
        stop_n = expected_ticks(spec.stop_points, spec)
        # Never tighter than the contract's stop distance, and less than one tick wider.
        assert spec.stop_points <= stop_n * spec.tick_size < spec.stop_points + spec.tick_size
    else:
        stop_n = math.ceil(1.5 * atr)  # 20.055 -> 21
        assert stop_n == 21
    assert i.stop_price == entry - direction.sign * stop_n
    assert i.target_price == entry + direction.sign * 2 * stop_n
    assert (i.target_price - entry) * direction.sign == 2 * (entry - i.stop_price) * direction.sign
    assert i.side is (Side.BUY if direction is L else Side.SELL)
    assert i.entry_type is EntryType.MARKET and i.entry_price is None and i.symbol == root
    assert d.entry_ref == entry


def test_seed_stop_table_in_ticks() -> None:
    got = {r: Router(CONTRACTS[r], settings()).spec.points_to_ticks(CONTRACTS[r].stop_points)
           for r in ("GC", "SI", "PL", "HG", "NQ", "ES", "MES")}
    # GC 5.0/0.10, SI 0.10/0.005, PL 10.0/0.10, HG 0.02/0.0005, NQ 20/0.25, ES and MES 4/0.25.
    assert got == {"GC": 50, "SI": 20, "PL": 100, "HG": 40, "NQ": 80, "ES": 16, "MES": 16}


def test_risk_reward_rounds_the_target_up_and_overrides_apply() -> None:
    bar = sig_bar()
    s = settings(router__risk_reward=1.5, router__stop_points_by_symbol="ES:1.3")
    d = one(Router(ES, s), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar)
    # 1.3 points = 5.2 ticks -> 6 ticks; 1.5R of 6 ticks = 9 ticks.
    assert (BASE - d.intent.stop_price, d.intent.target_price - BASE) == (6, 9)
    s = settings(router__risk_reward=1.25, router__stop_points_by_symbol="ES:1.75")
    d = one(Router(ES, s), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar)
    assert (BASE - d.intent.stop_price, d.intent.target_price - BASE) == (7, 9)  # 8.75 -> 9: R:R >= 1.25
    s = settings(router__stop_mode="atr", router__min_stop_ticks=10)
    d = one(Router(ES, s), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar)
    assert BASE - d.intent.stop_price == 12  # ceil(1.5 x 8) = 12 >= 10
    s = settings(router__stop_mode="atr", router__atr_stop_multiple=0.5, router__min_stop_ticks=10)
    d = one(Router(ES, s), event(P.BUY_IMBALANCE, L, bar), Regime.TRENDING_UP, bar)
    assert BASE - d.intent.stop_price == 10  # 4 ticks asked, floor 10
    # ATR mode without an ATR falls back to the fixed stop, and says so.
    router = Router(ES, settings(router__stop_mode="atr"))
    d = router.on_bar(bar, [event(P.BUY_IMBALANCE, L, bar)], regime(Regime.TRENDING_UP, atr=None),
                      good_context(L, bar))[0]
    assert BASE - d.intent.stop_price == 16 and any("ATR not available" in r for r in d.reasons)


def test_atr_float_noise_does_not_add_a_tick() -> None:
    bar = sig_bar()
    noisy = 0.1 + 0.2  # 0.30000000000000004
    router = Router(ES, settings(router__stop_mode="atr", router__atr_stop_multiple=10.0))
    d = router.on_bar(bar, [event(P.BUY_IMBALANCE, L, bar)], regime(Regime.TRENDING_UP, atr=noisy),
                      good_context(L, bar))[0]
    assert BASE - d.intent.stop_price == 3


def test_limit_entry_at_the_signal_price_and_deterministic_ids() -> None:
    bar = sig_bar()
    ev = event(P.BUY_IMBALANCE, L, bar)
    router = Router(ES, settings(router__entry_type="limit"))
    d = one(router, ev, Regime.TRENDING_UP, bar, good_context(L, bar, last_price=BASE + 1))
    i = d.intent
    assert i.entry_type is EntryType.LIMIT and i.entry_price == BASE + 1 and i.stop_price == BASE + 1 - 16
    assert d.signal_id == i.signal_id == make_signal_id("ES", bar.end_ns, "BUY_IMBALANCE", f"LONG:{bar.low}")
    again = one(Router(ES, settings(router__entry_type="limit")), ev, Regime.TRENDING_UP, bar,
                good_context(L, bar, last_price=BASE + 1))
    assert again.signal_id == d.signal_id and i.ts_ns == bar.end_ns and i.regime == "TRENDING_UP"
    assert i.confidence == d.confidence and i.pattern == "BUY_IMBALANCE" and "test" in i.reasons


# ------------------------------------------------------------------------------------------ table overrides


def test_table_overrides_from_env_json_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_ROUTER__TABLE", '{"ranging": {"location": "any", "patterns": ["buy_imbalance"]}}')
    monkeypatch.setenv("MIN_CONFIDENCE", "0.7")
    s = load_settings(_env_file=None)
    assert s.min_confidence == 0.7
    router = Router(ES, s)
    rng = router.table[Regime.RANGING]
    assert rng.patterns == frozenset({P.BUY_IMBALANCE}) and rng.location == "any"
    assert rng.directions == DEFAULT_TABLE[Regime.RANGING].directions  # untouched fields keep the default
    f = tmp_path / "table.json"
    f.write_text(json.dumps({"VOLATILE": {"size_multiplier": 0.25, "min_strength": 0.9}}))
    monkeypatch.setenv("TRADEBOT_ROUTER__TABLE_FILE", str(f))
    router = Router(ES, load_settings(_env_file=None))
    assert router.table[Regime.VOLATILE].size_multiplier == 0.25
    assert router.table[Regime.VOLATILE].min_strength == 0.9
    assert router.table[Regime.RANGING].patterns == frozenset({P.BUY_IMBALANCE})  # env applied after the file


def test_empty_file_settings_mean_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # .env.example writes "TRADEBOT_ROUTER__TABLE_FILE=": that must not become Path(".").
    monkeypatch.setenv("TRADEBOT_ROUTER__TABLE_FILE", "")
    monkeypatch.setenv("TRADEBOT_REGIME__BLACKOUT_FILE", "")
    monkeypatch.setenv("TRADEBOT_ROUTER__TABLE", "{}")
    s = load_settings(_env_file=None)
    assert s.router.table_file is None and s.regime.blackout_file is None and s.router.table == {}


@pytest.mark.parametrize(("value", "message"), [
    ('{"SIDEWAYS": {}}', "unknown regime"),
    ('{"RANGING": {"patterns": ["HAMMER"]}}', "unknown pattern"),
    ('{"NO_TRADE": {"size_multiplier": 1}}', "NO_TRADE never trades"),
    ('{"RANGING": {"size": 1}}', "Extra inputs"),
    ('{"RANGING": {"directions": ["UP"]}}', "LONG"),
])
def test_bad_table_fails_at_startup_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str,
                                                        message: str) -> None:
    monkeypatch.setenv("TRADEBOT_ROUTER__TABLE", value)
    with pytest.raises(ConfigError, match="TRADEBOT_ROUTER__TABLE") as e:
        load_settings(_env_file=None)
    assert message in str(e.value)


def test_bad_table_file(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text("[1]")
    with pytest.raises(RoutingTableError, match="expected a JSON object"):
        load_table_file(f)
    f.write_text('{"RANGING": {"min_strength": 2}}')
    with pytest.raises(RoutingTableError, match="RANGING: min_strength"):
        load_table_file(f)
    with pytest.raises(RoutingTableError, match="cannot read"):
        load_table_file(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="TRADEBOT_ROUTER__TABLE_FILE"):
        load_settings(_env_file=None, router={"table_file": str(tmp_path / "nope.json")})


# ------------------------------------------------------------------------------------------ decision log


def test_format_decision_and_json_form() -> None:
    bar = sig_bar()
    router = Router(ES, settings())
    out = router.on_bar(bar, [event(P.BUY_IMBALANCE, L, bar), event(P.SELL_IMBALANCE, S, bar)],
                        regime(Regime.TRENDING_UP), good_context(L, bar))
    taken, rejected = out
    line = format_decision(taken, ES)
    # 0.5 x 0.9 + 0.15 + 0.10 + 0.10 + 0.10 (all confirmed) + 0.05 x 0.5 (no intensity history yet) = 0.925
    assert taken.confidence == 0.925
    assert line.startswith("2025-03-12 11:00:00 EDT ES")  # 10:00 CT = 11:00 EDT (TRADEBOT_DISPLAY_TZ default)
    for part in ("BUY_IMBALANCE", "LONG", "@4999.00", "regime=TRENDING_UP(0.80)", "conf=0.93/0.60", "filters=ok",
                 "TAKEN", "BUY 1 MKT stop 4996.00 target 5008.00"):
        assert part in line, (part, line)
    line = format_decision(rejected, ES)
    assert "REJECTED [PATTERN_DISABLED,DIRECTION_DISABLED,LOW_CONFIDENCE,NO_CONFIRMATION]" in line
    assert "SHORT is counter to TRENDING_UP" in line and "confidence 0.475 < 0.6" in line
    d = json.loads(json.dumps(taken.to_dict(ES)))
    assert d["verdict"] == "TAKEN" and d["intent"]["stop_price"] == {"ticks": BASE - 16, "price": "4996.00"}
    assert d["filters"]["passed"] is True and {c["name"] for c in d["confirmations"]} >= {"trigger", "profile"}
    assert d["time"] == "2025-03-12T15:00:00+00:00"
    r = json.loads(json.dumps(rejected.to_dict()))
    assert r["intent"] is None and r["prices"] == [bar.high]
    assert r["codes"] == ["PATTERN_DISABLED", "DIRECTION_DISABLED", "LOW_CONFIDENCE", "NO_CONFIRMATION"]
    assert router.stats["decisions"] == 2 and router.stats["taken"] == 1


# ------------------------------------------------------------------------------------------ the whole chain


def test_simulated_session_end_to_end() -> None:
    """Footprint -> patterns -> regime -> router on the built-in simulated market (real code path throughout)."""
    from tradebot.core.config import SimSettings
    from tradebot.feeds.simulated import iter_sessions, raw_records
    from tradebot.feeds.validation import Validator
    from tradebot.orderflow.footprint import FootprintBuilder
    from tradebot.orderflow.patterns import PatternEngine
    from tradebot.orderflow.profile import SessionProfiles
    from tradebot.regime.detector import RegimeDetector

    s = settings()
    val = Validator(s.validation, ["ES"])
    fb, pe = FootprintBuilder(ES, s.footprint), PatternEngine(ES, s.patterns)
    mt, sp = MicrostructureTracker(ES, s.microstructure), SessionProfiles(ES, s.profile)
    rd, rt = RegimeDetector(ES, s), Router(ES, s)
    decisions = []
    open_until = 0
    events = 0
    for data in iter_sessions(SimSettings(sessions=2, trades_per_session=30_000), ES):
        for rec in raw_records(data):
            ev = val.validate(rec)
            if isinstance(ev, Trade):
                bar = fb.on_trade(ev)
                if bar is not None:
                    found = pe.on_bar(bar)
                    events += len(found)
                    st = rd.on_bar(bar)
                    ctx = RouterContext(micro=mt.snapshot(bar.end_ns), profile=sp.snapshot(), last_price=bar.close)
                    out = rt.on_bar(bar, found, st, ctx, has_position=bar.end_ns < open_until)
                    for d in out:
                        if d.taken:
                            open_until = bar.end_ns + 30 * 60 * NS  # pretend each trade lasts 30 minutes
                    decisions.extend(out)
                mt.on_trade(ev)
                sp.on_trade(ev)
            elif isinstance(ev, BookUpdate):
                mt.on_book(ev)
    assert len(decisions) == events > 0  # nothing dropped
    taken = [d for d in decisions if d.taken]
    assert taken, "a simulated day with trends and episodes should produce a signal"
    for d in taken:
        i = d.intent
        assert d.regime not in (Regime.NO_TRADE,) and d.confidence >= 0.6
        assert (d.pattern, d.direction) in TAKES[d.regime]
        sign = d.direction.sign
        assert i.quantity == 1 and d.entry_ref is not None
        assert (i.stop_price, i.target_price) == (d.entry_ref - sign * 16, d.entry_ref + sign * 32)
    # One position at a time: no two taken signals closer than the pretend holding time.
    times = [d.ts_ns for d in taken]
    assert all(b - a >= 30 * 60 * NS for a, b in itertools.pairwise(times))
    assert any(ReasonCode.POSITION_OPEN in d.codes for d in decisions)
    assert any(ReasonCode.REGIME_NO_TRADE in d.codes for d in decisions)
