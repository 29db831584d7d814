"""The per-symbol decision chain: order-flow engine -> regime detector -> router.

One class, used by ``tradebot analyze --decisions``, the daemon, replay and the event-driven backtest, so they
cannot drift apart. Decisions are made on bar close, from the state at the bar's end (see
:attr:`OrderFlowEngine.on_close`), at the bar's end time: the same bars give the same decisions whichever event
happened to close them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import ContractSpec
from tradebot.core.types import BookUpdate, MarketEvent, StatusEvent, Trade
from tradebot.orderflow.alerts import Alert
from tradebot.orderflow.engine import BarClose, OrderFlowEngine
from tradebot.regime.decisions import Decision
from tradebot.regime.detector import RegimeDetector, RegimeState
from tradebot.regime.router import Router, RouterContext

HasPosition = Callable[[str, int], bool]
"""``(symbol, decision_ns) -> open?``: asked as of the decision time so a replay after a restart sees the
positions the original run saw at that moment, not the ones open at the crash."""


@dataclass(frozen=True)
class StrategyStep:
    """What one event produced."""

    closed: BarClose | None
    regime: RegimeState | None
    decisions: tuple[Decision, ...]
    alerts: tuple[Alert, ...]


_QUIET = StrategyStep(None, None, (), ())
"""What nearly every event produces: one shared immutable instance instead of one per event."""


class SymbolStrategy:
    def __init__(self, spec: ContractSpec, settings: Settings, calendar: ExchangeCalendar | None = None,
                 has_position: HasPosition | None = None, logger: Any = None) -> None:
        cal = calendar or calendar_for(spec.session)
        self.spec = spec
        self.symbol = spec.root
        self.engine = OrderFlowEngine(spec, settings, cal, logger)
        self.detector = RegimeDetector(spec, settings, cal, logger=logger)
        self.router = Router(spec, settings, cal, logger=logger)
        self.has_position: HasPosition = has_position or (lambda _symbol, _ns: False)
        self.engine.on_close = self._on_close
        self._regime: RegimeState | None = None
        self._decisions: tuple[Decision, ...] = ()

    def on_event(self, ev: MarketEvent) -> StrategyStep:
        if type(ev) is Trade:  # the per-record path: straight to the engine's handler
            out = self.engine.on_trade(ev)
        elif type(ev) is BookUpdate:
            out = self.engine.on_book(ev)
        else:
            if isinstance(ev, StatusEvent):
                # A bar that ended before the status record is decided without it (state as of the bar's end):
                # close it first, then apply the halt or resumption.
                due = self.engine.on_time(ev.ts_event)
                self.router.on_status(ev)
                self.engine.on_event(ev)
                return self._step(due, ())
            out = self.engine.on_event(ev)
        closed = out.closed
        if closed is None:
            return _QUIET if not out.alerts else StrategyStep(None, None, (), out.alerts)
        return self._step(closed, out.alerts)

    def on_time(self, now_ns: int) -> StrategyStep:
        return self._step(self.engine.on_time(now_ns), ())

    def flush(self) -> StrategyStep:
        return self._step(self.engine.flush(), ())

    def _step(self, closed: BarClose | None, alerts: tuple[Alert, ...]) -> StrategyStep:
        if closed is None:
            return _QUIET if not alerts else StrategyStep(None, None, (), alerts)
        step = StrategyStep(closed, self._regime, self._decisions, alerts)
        self._regime, self._decisions = None, ()
        return step

    def _on_close(self, bc: BarClose) -> None:
        regime = self.detector.on_bar(bc.bar)
        ctx = None
        if bc.patterns:  # snapshots cost milliseconds: only when there is something to decide
            e = self.engine
            ctx = RouterContext(cum_delta=bc.bar.cum_delta, micro=e.micro.snapshot(bc.bar.end_ns),
                                profile=e.profiles.snapshot(), last_price=bc.bar.close, last_trade_ns=bc.bar.last_ts)
        self._regime = regime
        end = bc.bar.end_ns
        self._decisions = tuple(self.router.on_bar(bc.bar, bc.patterns, regime, ctx, end,
                                                   lambda sym: self.has_position(sym, end)))
