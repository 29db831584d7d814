"""Strategy router: pattern events + regime + context -> a Decision per event, an OrderIntent when taken.

**Routing table** (seed 002), one row per regime, defaults in :data:`DEFAULT_TABLE`, overridable per field
from a JSON file (``TRADEBOT_ROUTER__TABLE_FILE``) and then from ``TRADEBOT_ROUTER__TABLE`` (JSON):

=============  ===========================================================  =====  ==========================
regime         patterns (directions)                                        size   extra gates
=============  ===========================================================  =====  ==========================
TRENDING_UP    buy/stacked buy imbalance, buying absorption, selling         1.0    with-trend only (LONG)
               exhaustion (the pullback ended), volume imbalance
TRENDING_DOWN  the mirror image (SHORT), and the red burst                   1.0    with-trend only (SHORT)
RANGING        exhaustion, absorption, delta divergence (both)               1.0    at an extreme: the key level
                                                                                    within ``near`` of VAL/the
                                                                                    session low (LONG) or VAH/the
                                                                                    session high (SHORT)
VOLATILE       stacked imbalances, absorption, exhaustion (both)             0.5    strength >= 0.8, confidence
                                                                                    >= 0.7
NO_TRADE       nothing (cannot be overridden)                                0
=============  ===========================================================  =====  ==========================

``near`` = ``max(near_extreme_ticks, ceil(near_extreme_atr x ATR))``.

**Confluence** (seed 004): ``confidence = sum(w_i x s_i) / sum(w_i)`` over six terms, exact in fractions so
that a confidence of exactly ``MIN_CONFIDENCE`` (0.6) is taken:

=================  ======  ==================================================================================
term               weight  score
=================  ======  ==================================================================================
trigger            0.50    the pattern event's strength
cum_delta          0.15    1 when the session cumulative delta is at least the threshold (1000, per symbol
                           overridable) in the signal's direction, else 0
buy_pressure       0.10    1 when the aggressor share in the signal's direction (buy share for LONG, sell share
                           for SHORT) is >= 0.55; from the microstructure flow window, else from the bar
depth_imbalance    0.10    1 when the top-N book depth imbalance is >= 0.20 in the signal's direction
intensity          0.05    1 when the bar's trades per minute are >= 1.5 x the average of the previous bars
profile            0.10    trend rows: 1 when price is on the trend's side of the POC; reversion rows: 1 when the
                           key level is within ``near`` of VAL (LONG) / VAH (SHORT)
=================  ======  ==================================================================================

**Missing features** (no book, no profile, not enough history) score 0.5: neutral, they neither help nor
hurt, so a trades-only feed stays tradeable on the order-flow terms it has. Because neutral half credit could
still lift a strong trigger over the line when most terms are unknown (strength 1.0 with no book, no profile
and no intensity history, cum delta and pressure both against: 0.5 + 0.05 + 0.05 + 0.025 = 0.625), a signal
also needs at least ``min_confirmations`` (1) *confirmed* term: it never trades on the trigger alone
(seed 004: "only trades when multiple indicators align"). The decision lists every term with its status so
the operator sees what the confidence stood on.

**Per symbol**: one position at a time (the caller says whether one is open), a cooldown after each taken
signal (default 300 s of event time; a signal exactly ``cooldown`` after is allowed), at most one signal per
bar: when several qualify the highest confidence wins (then strength, then detector order) and the others are
recorded as SUPERSEDED. Quantity = ``floor(base_size x the regime's size multiplier)``, at least 1, at most
``TRADEBOT_EXECUTION__MAX_POSITION_SIZE`` (the execution stage may cap it further by capital tier).

**Stops and targets** are integer ticks: fixed = the contract's ``stop_points`` (or ``stop_points_by_symbol``)
rounded *up* to ticks; atr = ``ceil(k x ATR)`` ticks (ATR rounded to 1e-9 first so float noise cannot add a
tick); never below ``min_stop_ticks``. Target = ``ceil(stop x risk_reward)`` ticks, so the realised R:R is
never below the one asked. Both are measured from the entry reference: the last price (``context.last_price``,
else the bar's close); limit entries are placed at that price.

Size: the routing table, the confluence score and the stop/target rules are one decision over one context (and
this docstring specifies them for the operator); splitting the scoring from the router would export its drafts.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from tradebot.core.calendar import NS, ExchangeCalendar
from tradebot.core.config import RouteOverride, RouterSettings, Settings
from tradebot.core.contracts import ContractSpec
from tradebot.core.logging import get_logger
from tradebot.core.orders import EntryType, OrderIntent, make_signal_id
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar
from tradebot.orderflow.microstructure import MicrostructureSnapshot
from tradebot.orderflow.profile import ProfileSnapshot
from tradebot.regime.decisions import Confirmation, ConfirmationStatus, Decision, ReasonCode, Verdict
from tradebot.regime.detector import Regime, RegimeState
from tradebot.regime.filters import FilterResult, TradeabilityFilter, exact_fraction

Location = Literal["any", "extreme"]
Style = Literal["trend", "reversion"]

_LONG = frozenset({Direction.LONG})
_SHORT = frozenset({Direction.SHORT})
_BOTH = frozenset(Direction)


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One regime's row of the routing table."""

    patterns: frozenset[Pattern]
    directions: frozenset[Direction]
    size_multiplier: float
    min_strength: float = 0.0
    min_confidence: float | None = None
    """``None``: the global ``MIN_CONFIDENCE``."""
    location: Location = "any"
    style: Style = "trend"


P = Pattern
DEFAULT_TABLE: Mapping[Regime, RouteRule] = {
    Regime.TRENDING_UP: RouteRule(
        frozenset({P.BUY_IMBALANCE, P.STACKED_BUY_IMBALANCE, P.BUYING_ABSORPTION, P.SELLING_EXHAUSTION,
                   P.VOLUME_IMBALANCE}),
        _LONG, 1.0),
    Regime.TRENDING_DOWN: RouteRule(
        frozenset({P.SELL_IMBALANCE, P.STACKED_SELL_IMBALANCE, P.SELLING_ABSORPTION, P.BUYING_EXHAUSTION,
                   P.VOLUME_IMBALANCE, P.RED_BURST}),
        _SHORT, 1.0),
    Regime.RANGING: RouteRule(
        frozenset({P.BUYING_EXHAUSTION, P.SELLING_EXHAUSTION, P.BUYING_ABSORPTION, P.SELLING_ABSORPTION,
                   P.DELTA_DIVERGENCE}),
        _BOTH, 1.0, location="extreme", style="reversion"),
    Regime.VOLATILE: RouteRule(
        frozenset({P.STACKED_BUY_IMBALANCE, P.STACKED_SELL_IMBALANCE, P.BUYING_ABSORPTION, P.SELLING_ABSORPTION,
                   P.BUYING_EXHAUSTION, P.SELLING_EXHAUSTION}),
        _BOTH, 0.5, min_strength=0.8, min_confidence=0.7, style="reversion"),
    Regime.NO_TRADE: RouteRule(frozenset(), frozenset(), 0.0),
}


def apply_overrides(table: Mapping[Regime, RouteRule],
                    overrides: Mapping[Regime, RouteOverride]) -> dict[Regime, RouteRule]:
    """``table`` with each override's set fields replacing the row's (the settings validated them at load)."""
    out = dict(table)
    for regime, ov in overrides.items():
        r = out[regime]
        out[regime] = RouteRule(
            patterns=r.patterns if ov.patterns is None else frozenset(ov.patterns),
            directions=r.directions if ov.directions is None else frozenset(ov.directions),
            size_multiplier=r.size_multiplier if ov.size_multiplier is None else ov.size_multiplier,
            min_strength=r.min_strength if ov.min_strength is None else ov.min_strength,
            min_confidence=r.min_confidence if ov.min_confidence is None else ov.min_confidence,
            location=r.location if ov.location is None else ov.location,
            style=r.style if ov.style is None else ov.style,
        )
    return out


def build_table(settings: RouterSettings) -> dict[Regime, RouteRule]:
    """The defaults, then the table file, then the inline JSON table."""
    table = dict(DEFAULT_TABLE)
    if settings.table_file is not None:
        table = apply_overrides(table, settings.table_file.rows)
    return apply_overrides(table, settings.table)


def _describe(rule: RouteRule) -> str:
    pats = ",".join(sorted(rule.patterns)) or "none"
    dirs = ",".join(sorted(rule.directions)) or "none"
    return (f"patterns={pats} directions={dirs} size={rule.size_multiplier:g} min_strength={rule.min_strength:g} "
            f"min_confidence={rule.min_confidence} location={rule.location} style={rule.style}")


# ---------------------------------------------------------------------------------------------------
# Stops and targets


_exact = exact_fraction


def stop_distance_ticks(spec: ContractSpec, settings: RouterSettings, atr_ticks: float | None) -> tuple[int, str]:
    """Stop distance in whole ticks (rounded up) and how it was chosen."""
    floor = settings.min_stop_ticks
    if settings.stop_mode == "atr":
        if atr_ticks is not None and math.isfinite(atr_ticks) and atr_ticks > 0:
            raw = _exact(settings.atr_stop_multiple) * Fraction(repr(round(atr_ticks, 9)))
            n = max(math.ceil(raw), floor)
            return n, f"stop {settings.atr_stop_multiple:g} x ATR {atr_ticks:.2f} ticks -> {n} ticks"
        fixed, how = _fixed_stop(spec, settings)
        return fixed, f"ATR not available: {how}"
    return _fixed_stop(spec, settings)


def _fixed_stop(spec: ContractSpec, settings: RouterSettings) -> tuple[int, str]:
    points = settings.stop_points_by_symbol.get(spec.root, spec.stop_points)
    n = max(spec.points_to_ticks(points), settings.min_stop_ticks)
    return n, f"stop {points} points -> {n} ticks"


def target_distance_ticks(stop_ticks: int, risk_reward: float) -> int:
    return math.ceil(stop_ticks * _exact(risk_reward))


def bracket(direction: Direction, entry: int, stop_ticks: int, target_ticks: int) -> tuple[int, int]:
    """``(stop, target)`` prices in ticks around an entry."""
    return entry - direction.sign * stop_ticks, entry + direction.sign * target_ticks


def order_quantity(base: int, multiplier: float, max_size: int) -> int:
    """``floor(base x multiplier)``, at least 1, at most ``max_size``."""
    q = math.floor(base * _exact(multiplier))
    return max(1, min(q, max_size))


# ---------------------------------------------------------------------------------------------------
# Router


@dataclass(frozen=True, slots=True)
class RouterContext:
    """What the router needs besides the bar: ``None`` fields fall back to the bar or count as unavailable."""

    cum_delta: int | None = None
    """Session cumulative delta; ``None`` = the bar's ``cum_delta``."""
    micro: MicrostructureSnapshot | None = None
    profile: ProfileSnapshot | None = None
    """The developing session profile (VAH/VAL/POC)."""
    last_price: int | None = None
    """Ticks; ``None`` = the bar's close."""
    last_trade_ns: int | None = None
    """``None`` = the bar's last trade."""


HasPosition = bool | Callable[[str], bool]


class Router:
    """Routing, confluence, risk gates and brackets for one contract root.

    Call ``on_bar`` for **every** closed bar, even without events (the cooldown clock, the intensity average,
    the session extremes and the gap filter follow the bars), and ``on_status`` with the symbol's status events.
    """

    def __init__(self, spec: ContractSpec, settings: Settings | None = None,
                 calendar: ExchangeCalendar | None = None, logger: Any = None) -> None:
        self.spec = spec
        self.symbol = spec.root
        self.settings = settings or Settings()
        self.rs = self.settings.router
        self.table = build_table(self.rs)
        self.filters = TradeabilityFilter(spec, self.settings.filters, calendar)
        self.max_size = self.settings.execution.max_position_size
        self.cum_delta_threshold = int(self.rs.cum_delta_threshold_by_symbol.get(spec.root,
                                                                                 self.rs.cum_delta_threshold))
        self._log = logger if logger is not None else get_logger("tradebot.regime.router")
        changed = {str(r): _describe(rule) for r, rule in self.table.items() if rule != DEFAULT_TABLE[r]}
        if changed:
            self._log.info("routing table overrides in force", symbol=self.symbol, rows=changed)
        self._rates: deque[float] = deque(maxlen=self.rs.intensity_bars)
        self._session_date: Any = None
        self.session_high: int | None = None
        self.session_low: int | None = None
        self.last_taken_ns: int | None = None
        self.stats: Counter[str] = Counter()

    # -- public ------------------------------------------------------------------------------------

    def on_status(self, ev: Any) -> None:
        self.filters.on_status(ev)

    def on_bar(self, bar: FootprintBar, patterns: Sequence[PatternEvent], regime: RegimeState,
               context: RouterContext | None = None, now_ns: int | None = None,
               has_position: HasPosition = False) -> list[Decision]:
        ctx = context or RouterContext()
        now = bar.end_ns if now_ns is None else now_ns
        own_bar = bar.symbol == self.symbol
        rate = baseline = None
        if own_bar:
            self.filters.on_bar(bar)
            if bar.trading_date != self._session_date:
                self._session_date, self.session_high, self.session_low = bar.trading_date, bar.high, bar.low
            else:
                self.session_high = max(bar.high, self.session_high or bar.high)
                self.session_low = min(bar.low, bar.low if self.session_low is None else self.session_low)
            rate, baseline = self._intensity(bar)
        else:
            self.stats["wrong_symbol_bar"] += 1
        if not patterns:
            return []
        filt = self.filters.evaluate(now, ctx.micro, ctx.last_trade_ns if ctx.last_trade_ns is not None
                                     else bar.last_ts) if own_bar else None
        position = has_position(self.symbol) if callable(has_position) else bool(has_position)
        drafts = [self._evaluate(ev, i, bar, regime, ctx, now, filt, position, rate, baseline, own_bar)
                  for i, ev in enumerate(patterns)]
        ok = [d for d in drafts if not d.codes]
        best = max(ok, key=lambda d: (d.conf, d.event.strength, -d.index)) if ok else None
        out = []
        for d in drafts:
            if best is not None and d is not best and not d.codes:
                d.codes.append(ReasonCode.SUPERSEDED)
                d.reasons.append(f"superseded by {best.event.pattern} {best.event.direction} "
                                 f"(confidence {float(best.conf):.3f} vs {float(d.conf):.3f})")
            out.append(self._finish(d, bar, regime, ctx, now, d is best))
        if best is not None:
            self.last_taken_ns = now
        # Decisions are returned, not logged here: the caller owns the decision log (format_decision), so a
        # replay of a busy day does not write one log line per rejected event twice.
        for dec in out:
            self.stats["decisions"] += 1
            if dec.taken:
                self.stats["taken"] += 1
            for c in dec.codes:
                self.stats[f"rejected:{c}"] += 1
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _intensity(self, bar: FootprintBar) -> tuple[float | None, float | None]:
        dur = bar.end_ns - bar.start_ns
        if dur <= 0:
            return None, None
        rate = bar.trades * 60 * NS / dur
        baseline = None
        if len(self._rates) >= self.rs.intensity_min_history:
            baseline = sum(self._rates) / len(self._rates)
        self._rates.append(rate)
        return rate, baseline

    def near_ticks(self, atr_ticks: float | None) -> int:
        n = self.rs.near_extreme_ticks
        if atr_ticks is not None and math.isfinite(atr_ticks) and atr_ticks > 0:
            n = max(n, math.ceil(_exact(self.rs.near_extreme_atr) * Fraction(repr(round(atr_ticks, 9)))))
        return n

    def _evaluate(self, ev: PatternEvent, index: int, bar: FootprintBar, regime: RegimeState, ctx: RouterContext,
                  now: int, filt: FilterResult | None, position: bool, rate: float | None,
                  baseline: float | None, own_bar: bool) -> _Draft:
        rule = self.table[regime.regime]
        near = self.near_ticks(regime.atr)
        conf, confirmations = self._confluence(ev, rule, bar, ctx, near, rate, baseline)
        min_conf = rule.min_confidence if rule.min_confidence is not None else self.settings.min_confidence
        d = _Draft(ev, index, conf, confirmations, min_conf, rule)
        d.filters = filt
        codes, reasons = d.codes, d.reasons
        if ev.symbol != self.symbol or not own_bar:
            codes.append(ReasonCode.WRONG_SYMBOL)
            reasons.append(f"event/bar of {ev.symbol}/{bar.symbol}, router is for {self.symbol}")
            return d
        if regime.regime is Regime.NO_TRADE:
            codes.append(ReasonCode.REGIME_NO_TRADE)
            reasons.append("regime NO_TRADE: " + ("; ".join(regime.reasons) or "no reason given"))
        else:
            if ev.pattern not in rule.patterns:
                codes.append(ReasonCode.PATTERN_DISABLED)
                reasons.append(f"{ev.pattern} is not enabled in {regime.regime}")
            if ev.direction not in rule.directions:
                codes.append(ReasonCode.DIRECTION_DISABLED)
                reasons.append(f"{ev.direction} is counter to {regime.regime} "
                               f"(allowed: {', '.join(sorted(rule.directions)) or 'none'})")
            if ev.strength < rule.min_strength:
                codes.append(ReasonCode.WEAK_TRIGGER)
                reasons.append(f"strength {ev.strength:.2f} < {rule.min_strength:g} required in {regime.regime}")
            if rule.location == "extreme":
                at, why = self._at_extreme(ev, ctx.profile, near)
                if not at:
                    codes.append(ReasonCode.NOT_AT_EXTREME)
                    reasons.append(why)
        if filt is not None and not filt.passed:
            codes.append(ReasonCode.MICROSTRUCTURE_RISKY)
            reasons.append("microstructure risky: " + "; ".join(f"{c.name}: {c.detail}" for c in filt.failures))
        if conf < _exact(min_conf):
            codes.append(ReasonCode.LOW_CONFIDENCE)
            reasons.append(f"confidence {float(conf):.3f} < {min_conf:g}")
        n_ok = sum(1 for c in confirmations if c.status is ConfirmationStatus.CONFIRMED)
        if n_ok < self.rs.min_confirmations:
            codes.append(ReasonCode.NO_CONFIRMATION)
            reasons.append(f"{n_ok} confirmation(s) < {self.rs.min_confirmations} required: "
                           "a trigger alone does not trade")
        if position:
            codes.append(ReasonCode.POSITION_OPEN)
            reasons.append(f"a {self.symbol} position is already open (one per symbol)")
        cd = self.rs.cooldown_seconds * NS
        if self.last_taken_ns is not None and now - self.last_taken_ns < cd:
            codes.append(ReasonCode.COOLDOWN)
            reasons.append(f"cooldown: last signal {(now - self.last_taken_ns) / NS:.0f}s ago "
                           f"(< {self.rs.cooldown_seconds}s)")
        return d

    def _at_extreme(self, ev: PatternEvent, profile: ProfileSnapshot | None, near: int) -> tuple[bool, str]:
        p = ev.price
        fmt = self.spec.fmt
        if ev.direction is Direction.LONG:
            refs = [("VAL", profile.val)] if profile is not None else []
            if self.session_low is not None:
                refs.append(("session low", self.session_low))
            for name, ref in refs:
                if p <= ref + near:
                    return True, f"{fmt(p)} within {near} ticks of {name} {fmt(ref)}"
        else:
            refs = [("VAH", profile.vah)] if profile is not None else []
            if self.session_high is not None:
                refs.append(("session high", self.session_high))
            for name, ref in refs:
                if p >= ref - near:
                    return True, f"{fmt(p)} within {near} ticks of {name} {fmt(ref)}"
        shown = ", ".join(f"{n} {fmt(r)}" for n, r in refs) or "no reference"
        return False, f"not at an extreme: {fmt(p)} is more than {near} ticks from {shown}"

    def _confluence(self, ev: PatternEvent, rule: RouteRule, bar: FootprintBar, ctx: RouterContext, near: int,
                    rate: float | None, baseline: float | None) -> tuple[Fraction, tuple[Confirmation, ...]]:
        rs = self.rs
        sign = ev.direction.sign
        micro = ctx.micro
        terms: list[Confirmation] = [
            Confirmation("trigger", ConfirmationStatus.TRIGGER, rs.weight_trigger, ev.strength,
                         f"{ev.pattern} strength {ev.strength:.2f}"),
        ]

        def add(name: str, weight: float, ok: bool | None, detail: str) -> None:
            if ok is None:
                terms.append(Confirmation(name, ConfirmationStatus.UNAVAILABLE, weight, 0.5, detail))
            else:
                status = ConfirmationStatus.CONFIRMED if ok else ConfirmationStatus.NOT_CONFIRMED
                terms.append(Confirmation(name, status, weight, 1.0 if ok else 0.0, detail))

        # cumulative delta in the signal's direction
        cd = ctx.cum_delta if ctx.cum_delta is not None else bar.cum_delta
        th = self.cum_delta_threshold
        ok = cd * sign >= th and cd * sign > 0
        add("cum_delta", rs.weight_cum_delta, ok, f"cum delta {cd:+,} {'>=' if ok else 'short of'} "
            f"{'+' if sign > 0 else '-'}{th:,}")
        # aggressor share
        bp: float | None = micro.buy_pressure if micro is not None else None
        src = "flow window"
        if bp is None:
            sided = bar.ask_volume + bar.bid_volume
            bp = bar.ask_volume / sided if sided > 0 else None
            src = "bar"
        if bp is None:
            add("buy_pressure", rs.weight_buy_pressure, None, "no side-classified volume")
        else:
            share = bp if sign > 0 else 1.0 - bp
            side = "buy" if sign > 0 else "sell"
            ok = share >= rs.buy_pressure_threshold
            add("buy_pressure", rs.weight_buy_pressure, ok,
                f"aggressive {side} share {share:.2f} ({src}) {'>=' if ok else '<'} {rs.buy_pressure_threshold:g}")
        # book depth imbalance
        di = None
        why = "no book"
        if micro is not None and micro.book_available:
            stale = (micro.book_ts_ns is not None
                     and bar.end_ns - micro.book_ts_ns > self.settings.filters.book_stale_seconds * NS)
            di = None if stale else micro.depth_imbalance
            why = "book stale" if stale else "depth imbalance not available"
        if di is None:
            add("depth_imbalance", rs.weight_depth_imbalance, None, why)
        else:
            ok = di * sign >= rs.depth_imbalance_threshold
            add("depth_imbalance", rs.weight_depth_imbalance, ok,
                f"depth imbalance {di:+.2f} {'confirms' if ok else 'does not confirm'} "
                f"(need {'+' if sign > 0 else '-'}{rs.depth_imbalance_threshold:g})")
        # trade intensity
        if rate is None or baseline is None or baseline <= 0:
            add("intensity", rs.weight_intensity, None, "not enough bars for an intensity average")
        else:
            ok = rate >= rs.intensity_ratio * baseline
            add("intensity", rs.weight_intensity, ok,
                f"{rate:.0f} trades/min vs average {baseline:.0f} "
                f"({rate / baseline:.2f}x, need {rs.intensity_ratio:g}x)")
        # volume-profile location
        prof = ctx.profile
        if prof is None:
            add("profile", rs.weight_profile, None, "no volume profile")
        else:
            fmt = self.spec.fmt
            if rule.style == "reversion":
                if sign > 0:
                    ok = ev.price <= prof.val + near
                    txt = f"{fmt(ev.price)} {'within' if ok else 'beyond'} {near} ticks of VAL {fmt(prof.val)}"
                else:
                    ok = ev.price >= prof.vah - near
                    txt = f"{fmt(ev.price)} {'within' if ok else 'beyond'} {near} ticks of VAH {fmt(prof.vah)}"
            else:
                last = ctx.last_price if ctx.last_price is not None else bar.close
                ok = (last - prof.poc) * sign >= 0
                txt = f"last {fmt(last)} {'above' if last >= prof.poc else 'below'} POC {fmt(prof.poc)}"
            add("profile", rs.weight_profile, ok, txt)
        num = sum((_exact(t.weight) * _exact(t.score) for t in terms), Fraction(0))
        den = sum((_exact(t.weight) for t in terms), Fraction(0))
        return (num / den if den else Fraction(0)), tuple(terms)

    def _finish(self, d: _Draft, bar: FootprintBar, regime: RegimeState, ctx: RouterContext, now: int,
                taken: bool) -> Decision:
        ev = d.event
        extra = f"{ev.direction}:{','.join(map(str, ev.prices))}"
        signal_id = make_signal_id(self.symbol, now, str(ev.pattern), extra)
        intent = None
        entry: int | None = None
        reasons = list(d.reasons)
        if taken:
            entry = ctx.last_price if ctx.last_price is not None else bar.close
            stop_n, stop_how = stop_distance_ticks(self.spec, self.rs, regime.atr)
            target_n = target_distance_ticks(stop_n, self.rs.risk_reward)
            stop, target = bracket(ev.direction, entry, stop_n, target_n)
            qty = order_quantity(self.rs.base_size, d.rule.size_multiplier, self.max_size)
            confirmed = [c.detail for c in d.confirmations if c.status is ConfirmationStatus.CONFIRMED]
            reasons = [f"{regime.regime} ({regime.confidence:.2f}); confidence {float(d.conf):.3f} >= "
                       f"{d.min_conf:g}", *confirmed,
                       f"{stop_how}; target {self.rs.risk_reward:g}R -> {target_n} ticks; size {self.rs.base_size}"
                       f" x {d.rule.size_multiplier:g} -> {qty} (max {self.max_size})"]
            limit = self.rs.entry_type == "limit"
            intent = OrderIntent(
                signal_id=signal_id, symbol=self.symbol, side=ev.direction.side, quantity=qty,
                entry_type=EntryType.LIMIT if limit else EntryType.MARKET, entry_price=entry if limit else None,
                stop_price=stop, target_price=target, ts_ns=now, confidence=float(d.conf), pattern=str(ev.pattern),
                regime=str(regime.regime), reasons=(*ev.reasons, *reasons),
            )
        return Decision(
            signal_id=signal_id, symbol=self.symbol, ts_ns=now, bar_start_ns=ev.bar_start_ns,
            bar_end_ns=ev.bar_end_ns, pattern=ev.pattern, direction=ev.direction, strength=ev.strength,
            prices=ev.prices, regime=regime.regime, regime_confidence=regime.confidence, confidence=float(d.conf),
            min_confidence=d.min_conf, verdict=Verdict.TAKEN if taken else Verdict.REJECTED,
            codes=tuple(d.codes), reasons=tuple(reasons), confirmations=d.confirmations, filters=d.filters,
            intent=intent, pattern_reasons=ev.reasons, entry_ref=entry,
        )


class _Draft:
    """A decision being assembled (mutable; the frozen Decision is built once the bar's winner is known)."""

    __slots__ = ("codes", "conf", "confirmations", "event", "filters", "index", "min_conf", "reasons", "rule")

    def __init__(self, event: PatternEvent, index: int, conf: Fraction, confirmations: tuple[Confirmation, ...],
                 min_conf: float, rule: RouteRule) -> None:
        self.event = event
        self.index = index
        self.conf = conf
        self.confirmations = confirmations
        self.min_conf = min_conf
        self.rule = rule
        self.codes: list[ReasonCode] = []
        self.reasons: list[str] = []
        self.filters: FilterResult | None = None
