"""The strategy on bar data: the engine's own pattern, regime and router code per bar, fills by the bars-only rules.

Bars with bid/ask volume but no per-price levels become :class:`~tradebot.orderflow.footprint.FootprintBar`
objects with no levels: delta, session cumulative delta (reset at the trading-day boundary, like the footprint
builder), RTH cumulative delta, trades and volume are exact; intrabar delta extremes are unknown (the bar's
delta, as ``make_bar`` does) and the VWAP uses the typical price. Then, unchanged:

* patterns: :data:`~tradebot.orderflow.patterns.BAR_PATTERNS` (delta divergence, seed 004's imbalance ratio,
  seed 000's red burst). The others read per-price levels and are reported "not computable from bars"
  (:data:`NOT_COMPUTABLE`);
* the regime detector (ADX/ATR/EMA/VWAP/structure, sessions, buffers, blackouts);
* the router with its confluence: cumulative delta, buy pressure (from the bar), intensity (trades per minute)
  are computed; book depth and the volume profile are unavailable and score neutral, as on a trades-only feed.

**Fills (bars only, as the README documents them).** A signal at a bar's close enters at the *next* bar's open
(plus ``market_slippage_ticks`` against), in the same session and before the auto-flatten time, else it is
cancelled and counted. The bracket's stop and target are the router's prices. From the entry bar on, a stop
triggers when the range reaches it and fills at the stop, or at the bar's open if the market opened past it,
plus ``stop_slippage_ticks`` against; a target fills at its price only when the bar trades *through* it; **a bar
that touches both counts as the stop**. A position still open at the auto-flatten time (15:55 ET, or 5 minutes
before an early close) is closed at the close of the last bar before it; one still open at the end of a
contract's data (its expiry) at that bar's close. Costs: commission plus exchange and NFA fees per contract
per side (:func:`tradebot.execution.risk.fee_table`).

**Sizes and tiers.** The simulation trades the router's quantity of the data's contract. :func:`apply_tiers`
then walks the trades in time order from the starting balance, as the execution manager would: the tier in
force at each trading day's start picks the contract (MES or ES) and the size (``choose_contract``), the
daily profit target and loss limit stop the day's later trades (counted). That a dropped trade could have
freed the position for a later signal is not modelled (stated in the report).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradebot.backtest.overrides import apply_overrides
from tradebot.core.calendar import ET, NS, ExchangeCalendar, calendar_for, local_ns
from tradebot.core.config import Settings
from tradebot.core.contracts import ContractSpec, spec_for
from tradebot.core.orders import OrderIntent
from tradebot.execution.risk import choose_contract, fee_table, tier_for_balance, usd_to_cents
from tradebot.execution.trades import TradeRecord
from tradebot.feeds.bars import BarColumns
from tradebot.orderflow.footprint import FootprintBar
from tradebot.orderflow.patterns import BAR_PATTERNS, FLOW_DETECTORS, LEVEL_PATTERNS, PatternEngine
from tradebot.regime.detector import RegimeDetector, RegimeState
from tradebot.regime.router import Router, RouterContext

FLOW_PATTERNS = frozenset(FLOW_DETECTORS)

NOT_COMPUTABLE: dict[str, str] = {
    **{str(p): "not computable from bars (needs per-price bid/ask levels)" for p in sorted(LEVEL_PATTERNS)},
    "router.depth_imbalance": "not computable from bars (needs the order book): scored neutral",
    "router.profile": "not computable from bars (needs volume at each price): scored neutral",
    "microstructure filters (spread, depth)": "not computable from bars (no book): not applied",
}
"""What the bar strategy switches off, and why (printed in the report)."""


# ---------------------------------------------------------------------------------------------------
# Bars -> footprint bars without levels


def footprint_bars(cols: BarColumns, calendar: ExchangeCalendar, bar_seconds: int = 300) -> list[FootprintBar]:
    """The bar series as level-less footprint bars with session and RTH cumulative delta."""
    n = len(cols)
    if n == 0:
        return []
    delta = cols.delta
    td = cols.trading_date
    new_day = np.ones(n, bool)
    new_day[1:] = td[1:] != td[:-1]
    day_id = np.cumsum(new_day) - 1
    csum = np.cumsum(delta)
    day_start = np.flatnonzero(new_day)
    before = np.concatenate(([0], csum))[day_start][day_id]
    cum = csum - before
    rth = np.zeros(n, np.int64)
    index = np.zeros(n, np.int64)
    for k, s0 in enumerate(day_start):
        e0 = day_start[k + 1] if k + 1 < len(day_start) else n
        sess = calendar.session_on(dt.date.fromordinal(int(td[s0])))
        if sess is None:
            continue
        st = cols.start_ns[s0:e0]
        in_rth = (st >= sess.rth_open_ns) & (st < sess.rth_close_ns)
        rth[s0:e0] = np.cumsum(np.where(in_rth, delta[s0:e0], 0))
        index[s0:e0] = (st - sess.open_ns) // (bar_seconds * NS)
    unknown = cols.volume - cols.bid_volume - cols.ask_volume
    sym = cols.symbol
    out = []
    cols_l = (cols.start_ns.tolist(), cols.end_ns.tolist(), cols.open.tolist(), cols.high.tolist(), cols.low.tolist(),
         cols.close.tolist(), cols.volume.tolist(), cols.ask_volume.tolist(), cols.bid_volume.tolist(),
         unknown.tolist(), delta.tolist(), cols.trades.tolist(), cum.tolist(), rth.tolist(), index.tolist(),
         td.tolist())
    dates: dict[int, dt.date] = {}
    for s, e, o, h, lo, c, v, a, b, u, d, tr, cd, rcd, ix, t in zip(*cols_l, strict=True):
        day = dates.get(t)
        if day is None:
            day = dates[t] = dt.date.fromordinal(t)
        out.append(FootprintBar(sym, day, s, e, o, h, lo, c, v, a, b, u, d, d, d, tr, c, (), s, e - 1, cd, rcd, ix))
    return out


# ---------------------------------------------------------------------------------------------------
# One segment (a contract's stretch of the continuous series) under several parameter sets


@dataclass
class ComboResult:
    trades: list[dict[str, Any]]
    """Unit-size trades (``TradeRecord.to_dict``), before tiers."""
    stats: Counter[str] = field(default_factory=Counter)
    """Router and execution counts: decisions, taken, rejected:<code>, cancelled:<why>, exits:<reason>."""
    patterns: Counter[str] = field(default_factory=Counter)


@dataclass
class SegmentTask:
    name: str
    """The contract (``ESH15``)."""
    cols: BarColumns
    settings: Settings
    combos: tuple[dict[str, str], ...] = ({},)
    bar_seconds: int = 300


@dataclass
class SegmentResult:
    name: str
    bars: int
    days: list[dt.date]
    first_ns: int
    last_ns: int
    combos: list[ComboResult]
    regimes: Counter[str]
    seconds: float
    error: str | None = None


class _Sim:
    """The bars-only fill rules for one segment: one position at a time, unit size."""

    def __init__(self, bars: Sequence[FootprintBar], spec: ContractSpec, settings: Settings,
                 calendar: ExchangeCalendar) -> None:
        self.bars = bars
        self.spec = spec
        self.ex = settings.execution
        self.fee = fee_table(settings).get(spec.root, 0)
        self.busy_until = -1
        """Index of the bar at whose close the open position is gone (has_position is true before it)."""
        self._flatten: dict[dt.date, int] = {}
        self._cal = calendar
        self.trades: list[TradeRecord] = []
        self.stats: Counter[str] = Counter()

    def flatten_at(self, day: dt.date) -> int:
        f = self._flatten.get(day)
        if f is None:
            sess = self._cal.session_on(day)
            close = sess.close_ns if sess is not None else 1 << 62
            f = min(local_ns(day, self.ex.auto_flatten_time, ET), close - 300 * NS) if self.ex.auto_flatten else close
            self._flatten[day] = f
        return f

    def has_position(self, i: int) -> bool:
        return i < self.busy_until

    def on_intent(self, intent: OrderIntent, i: int, regime: str) -> None:
        bars = self.bars
        j = i + 1
        if j >= len(bars) or bars[j].trading_date != bars[i].trading_date:
            self.stats["cancelled:no_next_bar_in_session"] += 1
            return
        day = bars[j].trading_date
        flat = self.flatten_at(day)
        if bars[j].start_ns >= flat:
            self.stats["cancelled:after_auto_flatten"] += 1
            return
        side = 1 if int(intent.side) > 0 else -1
        slip_m, slip_s = self.ex.market_slippage_ticks, self.ex.stop_slippage_ticks
        entry = bars[j].open + side * slip_m
        stop, target = intent.stop_price, intent.target_price
        exit_px = exit_ns = None
        reason = ""
        n = len(bars)
        k = j
        while k < n and bars[k].trading_date == day and bars[k].end_ns <= flat:
            b = bars[k]
            hit_stop = b.low <= stop if side > 0 else b.high >= stop
            hit_target = b.high > target if side > 0 else b.low < target
            if hit_stop:  # also when both are touched: the worse outcome
                base = min(stop, b.open) if side > 0 else max(stop, b.open)
                exit_px, exit_ns, reason = base - side * slip_s, b.end_ns - 1, "stop"
                break
            if hit_target:
                exit_px, exit_ns, reason = target, b.end_ns - 1, "target"
                break
            k += 1
        if exit_px is None:
            last = max(k - 1, j)
            reason = "end_of_data" if k >= n else "auto_flatten" if self.ex.auto_flatten else "session_end"
            exit_px, exit_ns, k = bars[last].close, bars[last].end_ns - 1, last
        assert exit_ns is not None
        qty = intent.quantity
        rec = TradeRecord.make(
            trade_id=intent.signal_id, symbol=self.spec.root, side=side, quantity=qty, entry_ns=bars[j].start_ns,
            exit_ns=exit_ns, entry_price=entry, exit_price=exit_px, tick_value_cents=self.spec.tick_value_cents,
            commission_cents=2 * self.fee * qty, pattern=intent.pattern, regime=regime, exit_reason=reason,
            signal_id=intent.signal_id, confidence=intent.confidence)
        self.trades.append(rec)
        self.stats[f"exits:{reason}"] += 1
        self.busy_until = k


def run_segment(task: SegmentTask) -> SegmentResult:
    """Every parameter set of the task over one segment; bars and regimes computed once per regime setting."""
    t0 = time.monotonic()
    cols = task.cols
    try:
        spec = spec_for(cols.symbol)
        cal = calendar_for(spec.session)
        bars = footprint_bars(cols, cal, task.bar_seconds)
        regimes_by: dict[str, list[RegimeState]] = {}
        out: list[ComboResult] = []
        regime_counts: Counter[str] = Counter()
        for combo in task.combos:
            s = apply_overrides(task.settings, combo)
            rkey = s.regime.model_dump_json()
            regimes = regimes_by.get(rkey)
            if regimes is None:
                rd = RegimeDetector(spec, s, cal)
                regimes = regimes_by[rkey] = [rd.on_bar(b) for b in bars]
                if not regime_counts:
                    regime_counts.update(str(r.regime) for r in regimes)
            out.append(_run_combo(bars, regimes, spec, s, cal))
        return SegmentResult(task.name, len(bars), cols.days(), int(cols.start_ns[0]) if len(cols) else 0,
                             int(cols.end_ns[-1]) if len(cols) else 0, out, regime_counts, time.monotonic() - t0)
    except Exception as exc:  # a worker reports, the parent counts and exits non-zero
        import traceback

        return SegmentResult(task.name, 0, [], 0, 0, [], Counter(), time.monotonic() - t0,
                             f"{exc!r}\n{traceback.format_exc()}")


def _run_combo(bars: Sequence[FootprintBar], regimes: Sequence[RegimeState], spec: ContractSpec, s: Settings,
               cal: ExchangeCalendar) -> ComboResult:
    pe = PatternEngine(spec, s.patterns, patterns=[p for p in BAR_PATTERNS if s.patterns.flow_patterns
                                                   or p not in FLOW_PATTERNS])
    router = Router(spec, s, cal)
    sim = _Sim(bars, spec, s, cal)
    pats: Counter[str] = Counter()
    ctx = RouterContext()
    for i, bar in enumerate(bars):
        events = pe.on_bar(bar)
        for ev in events:
            pats[str(ev.pattern)] += 1
        reg = regimes[i]
        decisions = router.on_bar(bar, events, reg, ctx if events else None, bar.end_ns,
                                  lambda _sym, _i=i: sim.has_position(_i))  # type: ignore[misc]
        for d in decisions:
            if d.taken and d.intent is not None:
                sim.on_intent(d.intent, i, str(reg.regime))
    st: Counter[str] = Counter(router.stats)
    st.update(sim.stats)
    return ComboResult([t.to_dict() for t in sim.trades], st, pats)


# ---------------------------------------------------------------------------------------------------
# Tiers and daily limits over the whole account path


@dataclass
class TierPass:
    trades: list[TradeRecord]
    dropped: Counter[str]


def apply_tiers(trades: Sequence[TradeRecord], settings: Settings, calendar: ExchangeCalendar | None = None
                ) -> TierPass:
    """Re-size unit trades along the account's path from the starting balance (see the module docstring)."""
    from tradebot.execution.trades import sort_trades

    ordered = sort_trades(trades)
    ex = settings.execution
    tiers = settings.execution.tiers
    fees = fee_table(settings)
    balance = usd_to_cents(ex.starting_balance)
    profit = usd_to_cents(settings.daily_profit_target)
    loss = usd_to_cents(settings.daily_loss_limit)
    cal = calendar or calendar_for("equity")
    out: list[TradeRecord] = []
    dropped: Counter[str] = Counter()
    day: dt.date | None = None
    day_net = 0
    stopped = False
    tier = tier_for_balance(tiers, balance) if ex.tiers_enabled else None
    for t in ordered:
        d = cal.trading_day(t.entry_ns)
        if d != day:
            day, day_net, stopped = d, 0, False
            tier = tier_for_balance(tiers, balance) if ex.tiers_enabled else None
        if stopped:
            dropped["after_daily_limit"] += 1
            continue
        root, qty = choose_contract(settings, tier, t.symbol, t.quantity)
        if qty <= 0:
            dropped["no_size"] += 1
            continue
        tv = spec_for(root).tick_value_cents
        rec = TradeRecord.make(
            trade_id=t.trade_id, symbol=root, side=t.side, quantity=qty, entry_ns=t.entry_ns, exit_ns=t.exit_ns,
            entry_price=t.entry_price, exit_price=t.exit_price, tick_value_cents=tv,
            commission_cents=2 * fees.get(root, 0) * qty, pattern=t.pattern, regime=t.regime,
            exit_reason=t.exit_reason, signal_id=t.signal_id, confidence=t.confidence)
        out.append(rec)
        balance += rec.net_pnl_cents
        day_net += rec.net_pnl_cents
        if day_net >= profit or day_net <= loss:
            stopped = True
    return TierPass(out, dropped)


def combo_key(combo: dict[str, str]) -> str:
    return json.dumps(combo, sort_keys=True)


__all__ = ["NOT_COMPUTABLE", "ComboResult", "SegmentResult", "SegmentTask", "TierPass", "apply_tiers",
           "combo_key", "footprint_bars", "run_segment"]
