"""What the daemon tells the live stream (:mod:`tradebot.ops.stream`): message types and their JSON.

Message types (each a JSON object with ``type`` and ``seq``; prices are decimal numbers in the contract's tick
grid, exactly as ``tradebot analyze --json`` prints them; times are UTC nanoseconds):

=============  ====================================================================================
``hello``      full snapshot on connect and after a resync: ``meta`` (symbols, tick sizes, bar seconds, mode),
               ``bars`` (last N closed footprint bars per symbol), ``developing``, ``book``, ``regime``,
               ``position``, ``decisions``, ``alerts``, ``executions``, ``health``
``bar``        a closed footprint bar (``analyze`` fields plus ``vah``/``val``/``buy_imbalances``/
               ``sell_imbalances``)
``developing`` the bar being built (same fields, ``developing: true``), at most every ``tick`` (250 ms)
``book``       top levels of the book per symbol, when it changed, at most every tick
``regime``     the regime reading of a closed bar
``decision``   one router decision: taken (with the risk manager's verdict) or rejected (codes, reasons)
``exec``       one execution journal record (signal, order acks, fills, state changes, limits) as journaled
``position``   position, open brackets (entry, stop, target), recent closed trades, day P&L, trading state;
               after every execution record
``alert``      an operator notification (the same ones Discord receives), and order-flow alerts
``health``     once a second: feed state, events, loop lag, rejects, errors, stream drops
=============  ====================================================================================

Everything here runs on the daemon's event loop but only on bar closes, decisions, journal records and the
250 ms tick, never per market event, and only builds a message when a reader is connected (the rings that make
up a snapshot are kept regardless, holding references, not JSON).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tradebot.core.contracts import ContractSpec, spec_for
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification
from tradebot.execution.journal import encode as encode_event
from tradebot.orderflow.detectors.imbalance import buy_imbalance_levels, sell_imbalance_levels
from tradebot.orderflow.engine import BarClose
from tradebot.orderflow.footprint import FootprintBar
from tradebot.orderflow.profile import value_area

if TYPE_CHECKING:
    from tradebot.execution.journal import JournalEntry
    from tradebot.execution.ledger import Bracket
    from tradebot.execution.model import Verdict
    from tradebot.ops.stream import StreamHub
    from tradebot.regime.decisions import Decision
    from tradebot.regime.detector import RegimeState
    from tradebot.regime.pipeline import StrategyStep
    from tradebot.trading import TradingCore

NS = 1_000_000_000
BOOK_LEVELS = 10


def num(text: str) -> float | int:
    """A decimal price as a JSON number (its shortest repr is the exact decimal text)."""
    return int(text) if "." not in text else float(text)


def bar_json(bc: BarClose | FootprintBar, spec: ContractSpec, *, ratio: float = 3.0, min_volume: int = 0,
             va_pct: float = 0.70) -> dict[str, Any]:
    """The ``analyze --json`` form of a bar plus what the chart marks (value area, diagonal imbalances)."""
    b = bc.bar if isinstance(bc, BarClose) else bc
    fmt = spec.fmt
    patterns = bc.patterns if isinstance(bc, BarClose) else ()
    va = value_area([lv.volume for lv in b.levels], b.low, b.poc, va_pct) if b.volume else None
    return {
        "symbol": b.symbol, "start_ns": b.start_ns, "end_ns": b.end_ns, "open": num(fmt(b.open)),
        "high": num(fmt(b.high)), "low": num(fmt(b.low)), "close": num(fmt(b.close)), "volume": b.volume,
        "delta": b.delta, "max_delta": b.max_delta, "min_delta": b.min_delta, "trades": b.trades,
        "cum_delta": b.cum_delta, "poc": num(fmt(b.poc)),
        "vah": num(fmt(va.vah)) if va else None, "val": num(fmt(va.val)) if va else None,
        "levels": [{"price": num(fmt(lv.price)), "bid": lv.bid, "ask": lv.ask} for lv in b.levels],
        "buy_imbalances": [num(fmt(p)) for p in buy_imbalance_levels(b, ratio, min_volume)],
        "sell_imbalances": [num(fmt(p)) for p in sell_imbalance_levels(b, ratio, min_volume)],
        "patterns": [{"pattern": str(p.pattern), "direction": str(p.direction),
                      "prices": [num(fmt(x)) for x in p.prices], "strength": round(p.strength, 4),
                      "reasons": list(p.reasons)} for p in patterns],
    }


def regime_json(r: RegimeState, spec: ContractSpec) -> dict[str, Any]:
    return {"symbol": r.symbol, "ts_ns": r.ts_ns, "bar_start_ns": r.bar_start_ns, "regime": str(r.regime),
            "confidence": round(r.confidence, 4), "codes": [str(c) for c in r.codes], "reasons": list(r.reasons),
            "close": num(spec.fmt(r.close)), "adx": _round(r.adx), "atr_ticks": _round(r.atr),
            "vwap": _round(r.vwap * float(spec.tick_size)) if r.vwap is not None else None}


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def decision_json(d: Decision, verdict: Verdict | None, spec: ContractSpec) -> dict[str, Any]:
    """A decision with its final outcome: ``taken``, ``refused`` (risk manager: reason) or ``rejected`` (router)."""
    price = d.prices[0] if d.prices else None
    if d.taken and d.intent is not None:
        outcome = "taken" if verdict is None or verdict.taken else "refused"
        why = [] if outcome == "taken" else [verdict.reason if verdict is not None else ""]
    else:
        outcome = "rejected"
        why = list(d.reasons)
    intent = d.intent
    return {
        "signal_id": d.signal_id, "symbol": d.symbol, "ts_ns": d.ts_ns, "pattern": str(d.pattern),
        "direction": str(d.direction), "price": num(spec.fmt(price)) if price is not None else None,
        "regime": str(d.regime), "confidence": round(d.confidence, 4), "min_confidence": d.min_confidence,
        "outcome": outcome, "verdict": str(d.verdict), "codes": [str(c) for c in d.codes], "reasons": why,
        "entry": num(spec.fmt(intent.entry_price)) if intent is not None and intent.entry_price is not None else None,
        "stop": num(spec.fmt(intent.stop_price)) if intent is not None else None,
        "target": num(spec.fmt(intent.target_price)) if intent is not None else None,
    }


def bracket_json(b: Bracket) -> dict[str, Any]:
    spec = spec_for(b.symbol)
    fmt = spec.fmt

    def avg(value: int, qty: int) -> float | int | None:
        if not qty:
            return None
        q, r = divmod(value, qty)
        return num(fmt(q)) if not r else round(value / qty * float(spec.tick_size), 6)

    return {"signal_id": b.signal_id, "symbol": b.symbol, "side": "LONG" if int(b.side) > 0 else "SHORT",
            "quantity": b.quantity, "state": str(b.state.value), "pattern": b.pattern,
            "entry_order": num(fmt(b.entry_price)) if b.entry_price is not None else None,
            "entry": avg(b.entry_value, b.entry_filled), "exit": avg(b.exit_value, b.exit_filled),
            "stop": num(fmt(b.stop_price)), "target": num(fmt(b.target_price)),
            "opened_ns": b.opened_ns, "closed_ns": b.closed_ns, "submitted_ns": b.submitted_ns,
            "net_cents": b.net_cents, "exit_reason": b.exit_reason, "open_qty": b.position}


def alert_json(n: Notification) -> dict[str, Any]:
    """A notification as the dashboard's alert item (one shape for the daemon's, execution's and ops' alerts)."""
    text = "; ".join(f"{k} {v}" for k, v in n.fields)
    desc = n.description
    return {"kind": str(n.kind), "severity": str(n.severity), "title": n.title,
            "ts_ns": n.ts_ns or time.time_ns(), "text": (desc + ("; " if desc and text else "") + text)[:500]}


class LivePublisher:
    """Keeps the recent state a new reader needs and turns core events into stream messages."""

    def __init__(self, hub: StreamHub, core: TradingCore, meta: dict[str, Any], health: Callable[[], dict[str, Any]],
                 bars_kept: int = 60) -> None:
        self.hub = hub
        self.core = core
        self.meta = meta
        self.health = health
        self.log = get_logger("tradebot.publish")
        self.bars: dict[str, deque[tuple[BarClose, str | None]]] = {s: deque(maxlen=bars_kept) for s in core.symbols}
        self.regimes: dict[str, RegimeState] = {}
        self.decisions: deque[dict[str, Any]] = deque(maxlen=100)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=100)
        self.executions: deque[dict[str, Any]] = deque(maxlen=100)
        self._dev_seen: dict[str, tuple[int, int]] = {}
        self._book_seen: dict[str, int] = {}
        self._last_health = 0.0
        self.errors = 0
        ps = core.settings.patterns
        self._ratio = ps.imbalance_ratio
        self._min_vol = {s: ps.min_volume_for(s) for s in core.symbols}
        self._va_pct = core.settings.profile.value_area_pct

    # -- hooks (called by the trading core; every one guarded: a display bug never touches trading) ---------

    def on_step(self, step: StrategyStep, verdicts: dict[str, Verdict]) -> None:
        try:
            self._on_step(step, verdicts)
        except Exception as exc:
            self._error("step", exc)

    def on_record(self, rec: JournalEntry) -> None:
        try:
            kind, payload = encode_event(rec.event)  # the journal's own JSON form of the record
            item = {"journal_seq": rec.seq, "ts_ns": rec.ts_ns, "wall_ns": time.time_ns(), "kind": kind.value,
                    "payload": payload}
            self.executions.append(item)
            if self.hub.active:
                self.hub.publish("exec", item)
                self.hub.publish("position", self.position())
        except Exception as exc:
            self._error("record", exc)

    def on_alert(self, n: Notification) -> None:
        try:
            item = alert_json(n)
            self.alerts.append(item)
            self.hub.publish("alert", item)
        except Exception as exc:
            self._error("alert", exc)

    def _on_step(self, step: StrategyStep, verdicts: dict[str, Verdict]) -> None:
        for a in step.alerts:
            item = {"kind": f"flow_{a.kind}".lower(), "severity": str(a.severity), "title": str(a.kind),
                    "ts_ns": a.ts_ns, "text": str(getattr(a, "reason", ""))[:500]}
            self.alerts.append(item)
            self.hub.publish("alert", item)
        if step.closed is None:
            return
        sym = step.closed.bar.symbol
        spec = spec_for(sym)
        ring = self.bars.get(sym)
        if ring is None:
            ring = self.bars[sym] = deque(maxlen=self.bars[self.core.symbols[0]].maxlen)
        regime = str(step.regime.regime) if step.regime is not None else None
        ring.append((step.closed, regime))
        if step.regime is not None:
            self.regimes[sym] = step.regime
        for d in step.decisions:
            self.decisions.append(decision_json(d, verdicts.get(d.signal_id), spec))
        if not self.hub.active:
            return
        self.hub.publish("bar", self._bar(step.closed, regime=regime))
        if step.regime is not None:
            self.hub.publish("regime", regime_json(step.regime, spec))
        for item in list(self.decisions)[len(self.decisions) - len(step.decisions):]:
            self.hub.publish("decision", item)

    # -- periodic -----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Every 250 ms from the daemon: developing bars and book tops that changed, health once a second."""
        if not self.hub.active:
            return
        try:
            for sym, strat in self.core.strategies.items():
                fp = strat.engine.footprint
                dev = fp.snapshot()
                if dev is not None:
                    key = (dev.start_ns, dev.trades)
                    if self._dev_seen.get(sym) != key:
                        self._dev_seen[sym] = key
                        self.hub.publish("developing", self._bar(dev, developing=True))
                book = strat.engine.micro.book
                if book is not None and self._book_seen.get(sym) != book.ts_event:
                    self._book_seen[sym] = book.ts_event
                    top = self._book(sym)
                    if top is not None:
                        self.hub.publish("book", top)
            now = time.monotonic()
            if now - self._last_health >= 1.0:
                self._last_health = now
                self.hub.publish("health", self.health())
        except Exception as exc:
            self._error("tick", exc)

    # -- snapshot -----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        core = self.core
        developing: dict[str, Any] = {}
        for sym, strat in core.strategies.items():
            dev = strat.engine.footprint.snapshot()
            if dev is not None:
                developing[sym] = self._bar(dev, developing=True)
        return {
            "meta": self.meta,
            "bars": {s: [self._bar(bc, regime=r) for bc, r in ring] for s, ring in self.bars.items()},
            "developing": developing,
            "book": {s: self._book(s) for s in core.strategies},
            "regime": {s: regime_json(r, spec_for(s)) for s, r in self.regimes.items()},
            "position": self.position(),
            "decisions": list(self.decisions),
            "alerts": list(self.alerts),
            "executions": list(self.executions),
            "health": self.health(),
        }

    def position(self) -> dict[str, Any]:
        m = self.core.manager
        snap = m.snapshot()
        closed = sorted((b for b in m.ledger.brackets.values() if b.closed_ns is not None and b.entry_filled),
                        key=lambda b: b.closed_ns or 0)[-50:]
        return {
            "trading_state": snap["trading_state"], "halt_kind": snap["halt_kind"], "reason": snap["reason"],
            "trading_day": snap["trading_day"], "tier": snap["tier"], "balance_cents": snap["balance_cents"],
            "day_pnl_cents": snap["day_pnl_cents"], "positions": snap["positions"],
            "open": [bracket_json(b) for b in m.ledger.open_brackets()],
            "trades": [bracket_json(b) for b in closed],
        }

    def _bar(self, bc: BarClose | FootprintBar, developing: bool = False, regime: str | None = None) -> dict[str, Any]:
        b = bc.bar if isinstance(bc, BarClose) else bc
        out = bar_json(bc, spec_for(b.symbol), ratio=self._ratio, min_volume=self._min_vol.get(b.symbol, 0),
                       va_pct=self._va_pct)
        if developing:
            out["developing"] = True
        else:
            out["regime"] = regime
        return out

    def _book(self, sym: str) -> dict[str, Any] | None:
        strat = self.core.strategies.get(sym)
        book = strat.engine.micro.book if strat is not None else None
        if book is None:
            return None
        fmt = spec_for(sym).fmt
        n = BOOK_LEVELS
        return {"symbol": sym, "ts_ns": book.ts_event,
                "bids": [[num(fmt(p)), s] for p, s in zip(book.bid_px[:n], book.bid_sz[:n], strict=False)],
                "asks": [[num(fmt(p)), s] for p, s in zip(book.ask_px[:n], book.ask_sz[:n], strict=False)]}

    def _error(self, where: str, exc: Exception) -> None:
        self.errors += 1
        if self.errors <= 5 or self.errors % 1000 == 0:
            self.log.error("live stream publisher error (trading unaffected)", where=where, error=repr(exc),
                           count=self.errors, exc_info=self.errors <= 5)
