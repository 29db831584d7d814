"""One order-flow engine per contract: every feature of a moment from one object (seed 001's analyzer).

The same object serves live (event by event) and replay: feed it validated events with :meth:`on_event`; it
closes bars on event time (the first event at or after a bar's end, trade or book), runs the pattern detectors
on every closed bar, and keeps the profile, microstructure and alert state current. :meth:`analyze` returns
everything at once plus an aggregate order-flow signal and a short summary for humans. Per-event work is O(1);
snapshots (profile, microstructure) are taken per bar or on demand, never per trade.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import ContractSpec
from tradebot.core.types import BookUpdate, MarketEvent, StatusEvent, Trade
from tradebot.orderflow.alerts import Alert, AlertEngine, AlertSettings
from tradebot.orderflow.events import Direction, PatternEvent
from tradebot.orderflow.footprint import FootprintBar, FootprintBuilder
from tradebot.orderflow.microstructure import MicrostructureSnapshot, MicrostructureTracker
from tradebot.orderflow.patterns import PatternEngine
from tradebot.orderflow.profile import BiasReading, NakedPoc, ProfileSnapshot, SessionProfiles

SIGNAL_THRESHOLD = 0.3
"""|score| above which the aggregate signal leans LONG or SHORT (seed 001 used 0.3-0.4)."""


@dataclass(frozen=True)
class BarClose:
    """A bar that just closed and the patterns found in it."""

    bar: FootprintBar
    patterns: tuple[PatternEvent, ...]


@dataclass(frozen=True)
class EngineOutput:
    closed: BarClose | None = None
    alerts: tuple[Alert, ...] = ()


_QUIET = EngineOutput()
"""What nearly every event produces (nothing): one shared immutable instance instead of one per event."""


@dataclass(frozen=True)
class FlowSignal:
    direction: Direction | None
    """``None`` is neutral."""
    strength: float
    score: float
    """Signed score in [-1, 1] (positive = buying)."""
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Analysis:
    symbol: str
    ts_ns: int
    last_price: int | None
    open_bar: FootprintBar | None
    last_bar: BarClose | None
    cum_delta: int
    rth_cum_delta: int
    profile: ProfileSnapshot | None
    prior_profile: ProfileSnapshot | None
    naked_pocs: tuple[NakedPoc, ...]
    bias: BiasReading | None
    microstructure: MicrostructureSnapshot
    recent_alerts: tuple[Alert, ...]
    signal: FlowSignal
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class OrderFlowEngine:
    def __init__(self, spec: ContractSpec, settings: Settings, calendar: ExchangeCalendar | None = None,
                 logger: Any = None) -> None:
        self.spec = spec
        self.symbol = spec.root
        self.settings = settings
        cal = calendar or calendar_for(spec.session)
        self.footprint = FootprintBuilder(spec, settings.footprint, cal, logger)
        self.patterns = PatternEngine(spec, settings.patterns, logger=logger)
        self.profiles = SessionProfiles(spec, settings.profile, cal)
        self.micro = MicrostructureTracker(spec, settings.microstructure, cal, symbol=spec.root)
        self.alerts = AlertEngine(AlertSettings.from_settings(settings), logger=logger)
        self.last_price: int | None = None
        self.last_ts = 0
        self.last_close: BarClose | None = None
        self.recent_alerts: list[Alert] = []
        self.stats: Counter[str] = Counter()
        self.on_close: Callable[[BarClose], None] | None = None
        """Called when a bar closes, *before* the event that closed it touches profile or microstructure, so
        whatever runs on bar close sees exactly the state at the bar's end whichever event closed it."""

    # -- events ----------------------------------------------------------------------------------------

    def on_event(self, ev: MarketEvent) -> EngineOutput:
        if isinstance(ev, Trade):
            return self.on_trade(ev)
        if isinstance(ev, BookUpdate):
            return self.on_book(ev)
        if isinstance(ev, StatusEvent):
            self.stats["status"] += 1
        return EngineOutput()

    def on_trade(self, t: Trade) -> EngineOutput:
        self.last_ts = t.ts_event
        bar = self.footprint.on_trade(t)
        closed = self._closed(bar) if bar is not None else None
        self.last_price = t.price
        self.profiles.on_trade(t)
        self.micro.on_trade(t)
        alerts = self.alerts.on_trade(t)
        if alerts:
            self._keep(alerts)
        elif closed is None:
            return _QUIET
        return EngineOutput(closed, alerts)

    def on_book(self, b: BookUpdate) -> EngineOutput:
        self.last_ts = b.ts_event
        bar = self.footprint.close_until(b.ts_event)
        closed = self._closed(bar) if bar is not None else None
        self.micro.on_book(b)
        alerts = self.alerts.on_book(b)
        if alerts:
            self._keep(alerts)
        elif closed is None:
            return _QUIET
        return EngineOutput(closed, alerts)

    def on_time(self, now_ns: int) -> BarClose | None:
        """Close a due bar without waiting for an event (a quiet market); returns what closed."""
        bar = self.footprint.close_until(now_ns)
        return self._closed(bar) if bar is not None else None

    def on_gap(self) -> None:
        """After a feed gap the book is unknown until the next snapshot; order-flow state carries on."""
        self.micro.reset_book()

    def flush(self) -> BarClose | None:
        bar = self.footprint.flush()
        return self._closed(bar) if bar is not None else None

    def set_position(self, open_: bool, side: int = 0) -> None:
        """Alerts in ``positions_only`` mode watch only symbols with an open position, and the side that threatens
        it (``side`` +1 long: sellers, -1 short: buyers, 0 unknown: both)."""
        if open_:
            self.alerts.open_position(self.symbol, side)
        else:
            self.alerts.close_position(self.symbol)

    def _closed(self, bar: FootprintBar) -> BarClose:
        patterns = tuple(self.patterns.on_bar(bar))
        self.last_close = BarClose(bar, patterns)
        self.stats["bars"] += 1
        self.stats["patterns"] += len(patterns)
        if self.on_close is not None:
            self.on_close(self.last_close)
        return self.last_close

    def _keep(self, alerts: tuple[Alert, ...]) -> None:
        self.recent_alerts.extend(alerts)
        if len(self.recent_alerts) > 50:
            del self.recent_alerts[:-50]

    # -- analysis --------------------------------------------------------------------------------------

    def analyze(self, now_ns: int | None = None) -> Analysis:
        ts = now_ns if now_ns is not None else self.last_ts
        micro = self.micro.snapshot(ts)
        profile = self.profiles.snapshot()
        bias = self.profiles.bias(self.last_price) if self.last_price is not None else None
        signal = aggregate_signal(self.last_close, self.footprint.cum_delta, micro, bias, profile)
        a = Analysis(self.symbol, ts, self.last_price, self.footprint.snapshot(), self.last_close,
                     self.footprint.cum_delta, self.footprint.rth_cum_delta, profile, self.profiles.prior(),
                     self.profiles.naked_pocs(), bias, micro, tuple(self.recent_alerts[-10:]), signal)
        return Analysis(**{**a.__dict__, "summary": summarize(a, self.spec)})


def aggregate_signal(last: BarClose | None, cum_delta: int, micro: MicrostructureSnapshot,
                     bias: BiasReading | None, profile: ProfileSnapshot | None) -> FlowSignal:
    """Blend the evidence into one leaning: patterns of the last bar carry the most weight.

    Weights: patterns 0.40, order imbalance 0.20, depth imbalance 0.15, cumulative delta 0.15 (scaled by the
    session volume), value-area bias 0.10. Missing inputs contribute nothing; the score is the weighted sum of
    the available inputs, each in [-1, 1].
    """
    parts: list[tuple[float, float, str]] = []  # (weight, value, reason)
    if last is not None and last.patterns:
        net = sum(p.strength * (1 if p.direction == Direction.LONG else -1) for p in last.patterns)
        val = max(-1.0, min(1.0, net / max(1, len(last.patterns))))
        names = ", ".join(sorted({f"{p.pattern.value} {p.direction.value}" for p in last.patterns}))
        parts.append((0.40, val, f"patterns: {names}"))
    if micro.order_imbalance is not None:
        parts.append((0.20, micro.order_imbalance, f"order imbalance {micro.order_imbalance:+.2f}"))
    if micro.depth_imbalance is not None:
        parts.append((0.15, micro.depth_imbalance, f"depth imbalance {micro.depth_imbalance:+.2f}"))
    if profile is not None and profile.total > 0:
        parts.append((0.15, max(-1.0, min(1.0, 5 * cum_delta / profile.total)), f"cumulative delta {cum_delta:+d}"))
    if bias is not None:
        val = {"BULLISH": 1.0, "BEARISH": -1.0}.get(str(bias.bias), 0.0)
        parts.append((0.10, val, f"price vs value area: {bias.bias}"))
    score = sum(w * v for w, v, _ in parts)
    direction = Direction.LONG if score > SIGNAL_THRESHOLD else Direction.SHORT if score < -SIGNAL_THRESHOLD else None
    reasons = tuple(r for w, v, r in sorted(parts, key=lambda p: -abs(p[0] * p[1])) if v)
    return FlowSignal(direction, min(1.0, abs(score)), score, reasons)


def summarize(a: Analysis, spec: ContractSpec) -> str:
    fmt = spec.fmt
    lines = [f"{a.symbol} last {fmt(a.last_price) if a.last_price is not None else '-'}"
             f" | CVD {a.cum_delta:+d} (RTH {a.rth_cum_delta:+d})"]
    if a.profile is not None:
        lines.append(f"profile POC {fmt(a.profile.poc)} VA {fmt(a.profile.val)}-{fmt(a.profile.vah)}"
                     + (f" bias {a.bias.bias}" if a.bias else ""))
    m = a.microstructure
    if m.book_available and m.best_bid is not None and m.best_ask is not None:
        lines.append(f"book {fmt(m.best_bid)} x {fmt(m.best_ask)} spread {m.spread_ticks}t"
                     + (f" depth imb {m.depth_imbalance:+.2f}" if m.depth_imbalance is not None else ""))
    else:
        lines.append("book unavailable")
    lines.append(f"flow {m.trade_intensity:.0f} trades/min"
                 + (f" buy share {m.buy_pressure:.0%}" if m.buy_pressure is not None else ""))
    if a.last_bar is not None and a.last_bar.patterns:
        lines.append("last bar: " + "; ".join(p.describe() for p in a.last_bar.patterns[:5]))
    s = a.signal
    lines.append(f"signal {s.direction.value if s.direction else 'NEUTRAL'} strength {s.strength:.2f}")
    return "\n".join(lines)
