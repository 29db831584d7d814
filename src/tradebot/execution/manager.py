"""The execution manager: intents in, brackets out, every decision journaled before it is acted on.

Flow of every entry point: decide -> commit a journal record (with its projection rows and notifications,
one transaction) -> apply it to the ledger -> only then talk to the broker -> drain the broker's answers the
same way. A crash at any point therefore leaves a journal from which :meth:`ExecutionManager.recover`
rebuilds the exact state, reconciles it with the broker and carries on; what it cannot explain halts trading
(fail closed) with a critical notification.

Notifications are only *recorded* (outbox rows, plus an optional non-blocking callback); the ops notifier
delivers them. Nothing here waits on the network.

The manager orchestrates; the decisions live beside it as pure functions: the pre-trade checks in
:mod:`~tradebot.execution.gate`, the session clock in :mod:`~tradebot.execution.session`, the risk decisions
(day start, tier, daily limit, margin, auto-flatten, exit signal, flatten and stop requests) in
:mod:`~tradebot.execution.rules`, broker-event validation and translation in :mod:`~tradebot.execution.intake`,
every notification in :mod:`~tradebot.execution.notices`; recovery and reconciliation in
:mod:`~tradebot.execution.reconcile`. Why it is still over ~500 lines: what remains is the one place where the
entry points, the journal transaction, the ledger and the broker meet (each entry point's order of record, apply,
send and pump is the crash-safety argument above), plus the views the daemon reads; splitting that further would
spread one sequence over modules that all need the manager back.

Size: the orchestrator. The risk checks (gate.py), the risk decisions (rules.py), the session clock (session.py),
broker-event intake (intake.py), notifications (notices.py), reconciliation and protection already live apart; what
stays is the one sequence decide -> journal -> apply -> broker for every entry point, which is only auditable in one
place.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import spec_for, tick_value_of
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification
from tradebot.core.orders import OrderIntent
from tradebot.core.types import MarketEvent, Trade
from tradebot.core.values import CapitalTier, fmt_clock
from tradebot.execution import intake, journal, notices, reconcile, rules
from tradebot.execution.broker import Broker
from tradebot.execution.gate import GateView, RiskGate
from tradebot.execution.intake import FillDeduper, event_problem
from tradebot.execution.ledger import Bracket, Effect, Ledger
from tradebot.execution.model import (
    TERMINAL_BRACKET,
    TERMINAL_LEG,
    BracketRequest,
    BracketState,
    BrokerEvent,
    Fill,
    FlattenRequest,
    HaltKind,
    OrderType,
    StatusReport,
    TradingState,
    Verdict,
)
from tradebot.execution.propfirm_guard import PropFirmGuard
from tradebot.execution.protection import Protection, StateEventGuard, WallTimers
from tradebot.execution.reconcile import RecoveryReport
from tradebot.execution.risk import (
    MICRO_OF,
    MarginProvider,
    MarginResult,
    family,
    margin_for,
    same_family,
    usd_to_cents,
)
from tradebot.execution.session import SessionClock
from tradebot.state.store import StateStore

log = get_logger(__name__)

NotificationSink = Callable[[Notification], None]
_PENDING = BracketState.PENDING


class ExecutionManager:
    """Owns the ledger, the broker conversation and the risk rules. Call :meth:`recover` once before use."""

    def __init__(self, settings: Settings, store: StateStore, broker: Broker, *,
                 on_notification: NotificationSink | None = None, margin_provider: MarginProvider | None = None,
                 calendar: ExchangeCalendar | None = None, symbols: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.ex = settings.execution
        self.store = store
        self.broker = broker
        self.on_notification = on_notification
        self.on_record: Callable[[journal.JournalEntry], None] | None = None
        """Sees every committed journal record (the daemon's live stream); must not raise."""
        self.margin_provider = margin_provider
        self.symbols = list(symbols) if symbols else settings.symbol_list
        self.calendar = calendar or calendar_for(spec_for(self.symbols[0]).session)
        self.ledger = Ledger(usd_to_cents(self.ex.starting_balance))
        self.stats: Counter[str] = Counter()
        self.tiers = settings.execution.tiers
        self.profit_target_cents = usd_to_cents(settings.daily_profit_target)
        self.loss_limit_cents = usd_to_cents(settings.daily_loss_limit)
        self._timeout_ns = int(self.ex.submit_timeout_seconds * 1e9)
        self._dedupe = FillDeduper(self.ex.fill_dedupe_size)
        self._marks: dict[str, int] = {}
        self.clock = SessionClock(settings, self.calendar)
        self.gate = RiskGate()
        """The pre-trade checks; :meth:`RiskGate.add` appends a rule (account limits)."""
        self.propfirm = PropFirmGuard.attach(self)
        self._status_asked: dict[str, int] = {}
        self._recovered = False
        self._pumping = False
        self.last_recovery: RecoveryReport | None = None
        live = reconcile.live_broker(self)
        self.protection = Protection(self, self.ex.protect_seconds, active=live)
        self._event_guard = StateEventGuard(self.ex.fill_dedupe_size, active=live)
        self._timers = WallTimers(self.ex.submit_timeout_seconds, active=live)
        self.entry_block = ""
        """Why new entries are refused for now without a journaled halt (live: broker disconnected)."""

    # ==============================================================================================
    # Start-up

    def recover(self, now_ns: int) -> RecoveryReport:
        """Rebuild from the journal, restore a journal-backed broker, reconcile, resume open brackets."""
        return reconcile.recover(self, now_ns)

    def start_session(self, day: dt.date, now_ns: int) -> None:
        """A new trading day: record it, clear daily halts, re-evaluate the tier and check margins."""
        self._require()
        self.clock.touch(now_ns)
        d = rules.session_start(self.ledger, day.isoformat(), self.settings.trading_mode, self.symbols, now_ns)
        if d is not None:
            self._record(d.event, now_ns, d.notes)
        self._complete_session(now_ns)
        self._set_session_times(now_ns)

    def _complete_session(self, now_ns: int) -> None:
        """Session duties, idempotent (a crash may have interrupted them): tier, then today's margin check."""
        day = self.ledger.trading.trading_day
        if not day:
            return
        self._evaluate_tier(now_ns)
        if self.propfirm is not None:
            self.propfirm.start_day(day, now_ns)
        if any((day, s) not in self.ledger.margin for s in self._traded_symbols()):
            self.check_margin(dt.date.fromisoformat(day))

    def _set_session_times(self, now_ns: int) -> None:
        t = self.ledger.trading
        self.clock.set_times(t.trading_day, t.auto_flatten_day, now_ns)

    def _advance(self, ts_ns: int) -> bool:
        """Event time moved: start a new trading day when the clock rolls, auto-flatten when it is time.

        False when the time is outside the exchange calendar (counted, ignored).
        """
        t = self.ledger.trading
        step = self.clock.advance(ts_ns, t.trading_day, t.auto_flatten_day)
        if not step.ok:
            self.stats["bad_event_time"] += 1
            log.error("timestamp outside the exchange calendar", ts_ns=ts_ns)
            return False
        if step.new_day is not None:
            self.start_session(step.new_day, ts_ns)
        if ts_ns >= self.clock.flatten_at_ns:
            self.auto_flatten(ts_ns)
        return True

    # ==============================================================================================
    # Inputs

    def on_intent(self, intent: OrderIntent) -> Verdict:
        """Take (send a bracket) or reject an intent; the verdict and its reason are journaled either way."""
        self._require()
        if intent.signal_id in self.ledger.signals:
            self.stats["duplicate_intent"] += 1
            return Verdict(intent.signal_id, False, "duplicate signal id", duplicate=True)
        if not self._advance(intent.ts_ns):
            reason, symbol, qty = "timestamp outside the exchange calendar", "", 0
        elif intent.ts_ns < self.clock.open_ns:
            reason, symbol, qty = "intent from before the current session", "", 0
        elif self.entry_block:  # live: the broker connection is down (ops/broker_session.py)
            reason, symbol, qty = self.entry_block, "", 0
        else:
            reason, symbol, qty = self._gate(intent)
        armed_ns = max(intent.ts_ns, self.clock.now)
        self._record(journal.SignalDecided(
            intent.signal_id, intent.ts_ns, intent.symbol, intent.side, intent.quantity,
            OrderType(intent.entry_type.value), intent.entry_price, intent.stop_price, intent.target_price,
            float(intent.confidence), intent.pattern, intent.regime, tuple(intent.reasons),
            journal.IntentVerdict.REJECTED if reason else journal.IntentVerdict.TAKEN, reason, symbol, qty,
            tick_value_of(spec_for(symbol)) if symbol else 0, armed_ns), intent.ts_ns)
        if reason:
            self.stats["intent_rejected"] += 1
            return Verdict(intent.signal_id, False, reason, symbol, qty)
        self.stats["intent_taken"] += 1
        self._timers.start(intent.signal_id)
        self._send("submit_bracket", BracketRequest(
            intent.signal_id, symbol, intent.side, qty, OrderType(intent.entry_type.value), intent.entry_price,
            intent.stop_price, intent.target_price, intent.ts_ns, armed_ns))
        self.pump()
        return Verdict(intent.signal_id, True, "", symbol, qty)

    def _gate(self, intent: OrderIntent) -> tuple[str, str, int]:
        d = self.gate.evaluate(self._gate_view(), intent)
        if d.margin_needed is not None:  # journal today's margin figure for that contract, then decide
            self.check_margin(dt.date.fromisoformat(d.margin_needed.day), [d.margin_needed.symbol])
            d = self.gate.evaluate(self._gate_view(), intent)
        return d.reason, d.symbol, d.quantity

    def _gate_view(self) -> GateView:
        t = self.ledger.trading
        return GateView(self.settings, t.state, t.reason, self._current_tier(), t.trading_day or self.clock.day,
                        self.ledger.margin, [(b.signal_id, b.symbol) for b in self.ledger.open_brackets()],
                        self.ledger.balance_cents, self.day_pnl_cents())

    def on_market_event(self, ev: MarketEvent) -> None:
        """Per market event: cheap unless something is working or open on the symbol."""
        ts = ev.ts_event
        clock = self.clock
        if ts >= clock.close_ns or ts >= clock.flatten_at_ns:
            if not self._advance(ts):
                return
        elif ts > clock.now:
            clock.now = ts
        if isinstance(ev, Trade):
            self._marks[ev.symbol] = ev.price
        self.broker.on_market_event(ev)
        self.pump()
        ledger = self.ledger
        if ledger.positions:
            day = ledger.trading.trading_day
            if day is not None and ledger.limit_day != day:  # (_check_limits' own first test, done here)
                self._check_limits(ts, ev.symbol)
            elif self.propfirm is not None:
                self.propfirm.observe(ts)
        if self._status_asked:
            self.check_timeouts(ts)
        elif ledger.live:
            for b in ledger.live.values():
                if b.state == _PENDING:
                    self.check_timeouts(ts)
                    break

    def on_bar(self, symbol: str, ts_ns: int, open_: int, high: int, low: int, close: int) -> None:
        """Bars-only replay: the paper broker applies its pessimistic bar rules."""
        if not self._advance(ts_ns):
            return
        self._marks[symbol] = close
        on_bar = getattr(self.broker, "on_bar", None)
        if on_bar is not None:
            on_bar(symbol, ts_ns, open_, high, low, close)
        self.pump()
        self._check_limits(ts_ns, symbol)

    def pump(self) -> int:
        """Drain and apply the broker's events (journaled first, one transaction each).

        Not re-entrant on purpose: an action taken while applying an event (a flatten after a limit) queues
        more broker events, and the outer loop applies them after the ones already drained, in broker order.
        """
        if self._pumping:
            return 0
        self._pumping = True
        n = 0
        try:
            while True:
                events = self.broker.poll_events()
                if not events:
                    return n
                for ev in events:
                    self.on_broker_event(ev)
                    n += 1
        finally:
            self._pumping = False

    def on_broker_event(self, ev: BrokerEvent) -> None:
        problem = event_problem(ev)
        if problem:
            self.stats["bad_broker_event"] += 1
            log.error("malformed broker event dropped", problem=problem, broker_event=repr(ev))
            self._record(journal.AnomalyRecorded(problem, "dropped", repr(ev)[:500]), self.clock.now,
                         [notices.malformed_event(problem, ev, self.clock.now)])
            return
        stale = self._event_guard.stale(ev)
        if stale:
            self.stats[f"{stale}_broker_event"] += 1
            log.info("broker event dropped", why=stale, broker_event=repr(ev))
            return
        if isinstance(ev, Fill):
            # audit C1: the duplicate check and the record are one step. No lock: the manager runs on the daemon's
            # event-loop thread only (feeds, brokers and the control socket all reach it through the loop).
            if ev.fill_id in self._dedupe or self.store.fill_seen(ev.fill_id):
                self.stats["duplicate_fill"] += 1
                log.info("duplicate fill dropped", fill_id=ev.fill_id)
                return
            effects = self._record(intake.journal_event(ev, ev.ts_ns, self._day_of), ev.ts_ns)
            self._dedupe.add(ev.fill_id)
            self.stats["fills"] += 1
            self._act(effects, ev.ts_ns)
            self._check_limits(ev.ts_ns, ev.symbol)
            return
        ts = ev.ts_ns
        if isinstance(ev, StatusReport):
            self._status_asked.pop(ev.client_order_id, None)
            ts = ts or self.clock.now
        self._record_event(intake.journal_event(ev, ts, self._day_of), ts)

    def on_exit_signal(self, symbol: str, ts_ns: int, reason: str, threatens: str | None = None) -> str:
        """Order-flow exit signal: ``alert`` mode notifies (human in the loop), ``auto`` closes at market.

        ``threatens`` follows the position: large sellers threaten a ``"long"``, large buyers a ``"short"``; only
        brackets on that side are affected (``None``: both sides, for a signal that does not say)."""
        self._require()
        if not self._advance(ts_ns):
            ts_ns = self.clock.now
        seen = self.ledger.decisions.get(f"exit_signal:{ts_ns}:{symbol}")
        if seen is not None:
            # The same signal again (delivered twice, or replayed after a crash): finish what it decided,
            # without a second record or notification.
            self.stats["duplicate_exit_signal"] += 1
            self._complete_flattens(ts_ns)
            return str(seen["decision"])
        decision, d = rules.exit_signal(self.ledger, symbol, reason, threatens,
                                        self.settings.order_flow_exit_mode == "auto", ts_ns)
        self._record(d.event, ts_ns, d.notes)
        self._complete_flattens(ts_ns)
        return decision

    # ==============================================================================================
    # Scheduled / operator actions

    def check_timeouts(self, now_ns: int) -> None:
        """Brackets without a broker answer become UNKNOWN and are queried (never re-sent)."""
        wall = time.monotonic_ns() if self._timers.active else None  # live: the broker's real time
        for b in self._pending_brackets():
            if b.state == BracketState.PENDING and (now_ns - b.submitted_ns >= self._timeout_ns if wall is None
                                                    else self._timers.due(b.signal_id, wall)):
                effects = self._record(journal.SubmitTimedOut(b.signal_id), now_ns)
                self._act(effects, now_ns)
        for coid, asked in list(self._status_asked.items()):
            if now_ns - asked >= self._timeout_ns if wall is None else self._timers.due("?" + coid, wall):
                self._ask_status(coid, now_ns)  # still no answer: ask again (a query is safe to repeat)
        self.pump()

    def auto_flatten(self, now_ns: int) -> bool:
        """Flatten everything at the configured time; idempotent per trading day. True when it acted."""
        self._require()
        if not self.ex.auto_flatten and self.clock.flat_by is None:
            return False
        try:
            day = self.clock.flatten_due_on(now_ns)
        except ValueError:
            self.stats["bad_event_time"] += 1
            return False
        if day is None or self.ledger.trading.auto_flatten_day == day:
            return False
        d = rules.auto_flatten(self.ledger, day, fmt_clock(self.ex.auto_flatten_time), now_ns)
        self._record(d.event, now_ns, d.notes)
        self.clock.flattened(day)
        self._complete_flattens(now_ns)
        return True

    def check_margin(self, day: dt.date, symbols: Sequence[str] | None = None) -> list[MarginResult]:
        """Margin protection for a day: above the limit, that contract is not traded today (re-run next day)."""
        self._require()
        syms = list(symbols) if symbols else self._traded_symbols()
        results = [margin_for(self.settings, s, day, self.margin_provider) for s in syms]
        d = rules.margin_check(self.ledger, day.isoformat(), results, symbols is None, self.clock.now)
        self._record(d.event, self.clock.now, d.notes)
        return results

    def halt(self, reason: str, now_ns: int, kind: HaltKind = HaltKind.OPERATOR) -> None:
        """Stop new entries (working brackets keep their stops and targets)."""
        self._require()
        self._set_state(TradingState.HALTED, kind, reason, now_ns)

    def reduce(self, reason: str, now_ns: int) -> None:
        """Exits only, until resumed."""
        self._require()
        self._set_state(TradingState.REDUCING, HaltKind.OPERATOR, reason, now_ns)

    def resume(self, now_ns: int, reason: str = "operator resume") -> None:
        self._require()
        if self.propfirm is not None:
            self.propfirm.clear(now_ns)
        self._set_state(TradingState.ACTIVE, HaltKind.NONE, reason, now_ns)

    def flatten(self, reason: str, now_ns: int, symbol: str | None = None) -> int:
        """Close every open bracket (or those on ``symbol``'s family) at market; returns how many."""
        self._require()
        self.clock.touch(now_ns)
        n = 0
        for b in list(self.ledger.open_brackets()):
            if symbol is None or same_family(b.symbol, symbol):
                n += self._flatten_bracket(b, reason, now_ns)
        self.pump()
        return n

    def modify_stop(self, signal_id: str, stop_price: int, now_ns: int) -> bool:
        """Move a working stop (breakeven, trailing); refused when it would cross the target."""
        self._require()
        req = rules.stop_move(self.ledger, signal_id, stop_price)
        if req is None:
            return False
        self._record(req, now_ns)
        self._send("modify_stop", req.client_order_id, stop_price)
        self.pump()
        return True

    # ==============================================================================================
    # Views

    @property
    def trading_state(self) -> TradingState:
        return self.ledger.trading.state

    def mark(self, symbol: str) -> int | None:
        for s in (symbol, family(symbol), MICRO_OF.get(symbol)):
            if s is not None and s in self._marks:
                return self._marks[s]
        return None

    def unrealized_cents(self, symbol: str | None = None) -> int:
        total = 0
        for sym, book in self.ledger.positions.items():
            if book.lots and (symbol is None or same_family(sym, symbol)):
                total += book.unrealized_cents(self.mark(sym))
        return total

    def day_pnl_cents(self, include_unrealized: bool = True) -> int:
        day = self.ledger.trading.trading_day or ""
        pnl = self.ledger.day_stats(day).net_cents
        return pnl + (self.unrealized_cents() if include_unrealized else 0)

    def flush_marks(self) -> None:
        """Persist last prices for ``tradebot status`` (call from the heartbeat, not per tick)."""
        self.store.set_marks(self._marks, self.clock.now)

    def snapshot(self) -> dict[str, Any]:
        t = self.ledger.trading
        return {
            "trading_state": t.state.value, "halt_kind": t.kind.value, "reason": t.reason,
            "trading_day": t.trading_day, "tier": t.tier_name, "tier_symbol": t.tier_symbol,
            "balance_cents": self.ledger.balance_cents, "day_pnl_cents": self.day_pnl_cents(),
            "open_brackets": [b.signal_id for b in self.ledger.open_brackets()],
            "positions": {s: b.qty for s, b in self.ledger.positions.items() if b.qty},
            "anomalies": dict(self.ledger.anomalies), "stats": dict(self.stats),
            "propfirm": self.propfirm.summary() if self.propfirm is not None else None,
        }

    # ==============================================================================================
    # Internals

    def _require(self) -> None:
        if not self._recovered:
            raise RuntimeError("ExecutionManager.recover() must run before trading")

    def _pending_brackets(self) -> list[Bracket]:
        return [b for b in self.ledger.live.values() if b.state in (BracketState.PENDING, BracketState.UNKNOWN)]

    def _day_of(self, ts_ns: int) -> str:
        return self.clock.day_of(ts_ns)

    def _traded_symbols(self) -> list[str]:
        return rules.traded_symbols(self.settings, self._current_tier(), self.symbols)

    def _current_tier(self) -> CapitalTier | None:
        return rules.current_tier(self.ledger, self.tiers, self.ex.tiers_enabled)

    def _evaluate_tier(self, now_ns: int) -> None:
        d = rules.tier_change(self.ledger, self.tiers, self.ex.tiers_enabled, now_ns)
        if d is not None:
            self._record(d.event, now_ns, d.notes)

    def _set_state(self, state: TradingState, kind: HaltKind, reason: str, now_ns: int, *, notify: bool = True) -> None:
        t = self.ledger.trading
        if t.state == state and t.kind == kind and t.reason == reason:
            return
        notes = [notices.trading_state(state, kind, reason, now_ns)] if notify else []
        self._record(journal.TradingStateChanged(state, kind, reason), now_ns, notes)

    def _check_limits(self, ts_ns: int, symbol: str) -> None:
        if self.propfirm is not None:
            self.propfirm.observe(ts_ns)
        day = self.ledger.trading.trading_day
        if day is None or self.ledger.limit_day == day:
            return
        stats = self.ledger.daily.get(day)  # (ledger.day_stats without building an empty one)
        pnl = (stats.net_cents if stats is not None else 0) + (
            self.unrealized_cents() if self.ex.limits_include_unrealized else 0)
        d = rules.daily_limit(self.ledger, symbol, pnl, self.profit_target_cents, self.loss_limit_cents,
                              self.ex.flatten_on_limit, ts_ns)
        if d is not None:
            self._record(d.event, ts_ns, d.notes)
            self._complete_flattens(ts_ns)

    @property
    def _limit_day(self) -> str | None:
        return self.ledger.limit_day

    def _complete_flattens(self, ts_ns: int) -> None:
        """Carry out flattens a journaled decision ordered (limit, auto-flatten, exit signal), crash or not."""
        for sid, reason in list(self.ledger.to_flatten.items()):
            b = self.ledger.brackets.get(sid)
            if b is not None:
                self._flatten_bracket(b, reason, ts_ns)
        self.pump()

    def _flatten_bracket(self, b: Bracket, reason: str, ts_ns: int) -> int:
        req = rules.flatten_request(self.ledger, b, reason)
        if req is None:
            return 0
        self._record(req, ts_ns)
        self._send("flatten", FlattenRequest(b.signal_id, b.symbol, req.exit_id, req.side, req.quantity,
                                             req.cancel_ids, reason, ts_ns))
        return 1

    def _send(self, method: str, *args: Any) -> None:
        """A request to the broker, after its journal record. A failing call is logged and counted, never
        raised into the trading loop: the order stays PENDING, times out to UNKNOWN and is queried."""
        try:
            getattr(self.broker, method)(*args)
        except Exception as exc:
            self.stats["broker_error"] += 1
            log.error("broker request failed", method=method, error=repr(exc))

    def _ask_status(self, coid: str, now_ns: int) -> None:
        self._status_asked[coid] = now_ns
        self._timers.start("?" + coid)
        self._record(journal.StatusRequested(coid), now_ns)
        self._send("request_status", coid)

    def _enforce(self, b: Bracket, ts_ns: int) -> None:
        """Invariants of an open bracket: a flat bracket has no working entry; an open one is protected."""
        if b.state in TERMINAL_BRACKET:
            return
        entry = self.ledger.legs.get(b.entry_id)
        if b.entry_filled > 0 and b.position == 0 and entry is not None and entry.state not in TERMINAL_LEG:
            self._record(journal.CancelRequested(b.entry_id, "flat"), ts_ns)
            self._send("cancel", b.entry_id)
            return
        if b.position > 0 and not self.ledger.protected(b):
            self.stats["unprotected"] += 1
            self._flatten_bracket(b, "unprotected", ts_ns)

    def _act(self, effects: list[Effect], ts_ns: int) -> None:
        for e in effects:
            b = self.ledger.brackets.get(e.signal_id)
            if e.kind == "closed":
                if b is not None:  # (the tier follows the balance at the trading-day boundary only)
                    self.protection.on_closed(b)
            elif e.kind in notices.HALTING_EFFECTS:
                self.stats[e.kind] += 1
                self._set_state(TradingState.HALTED, HaltKind.ERROR, f"{e.kind}: {e.detail}", ts_ns)
                if b is not None:
                    self._enforce(b, ts_ns)
            elif e.kind in ("protect_rejected", "unprotected", "exit_cancelled", "late_fill", "flat_entry_working"):
                self.stats[e.kind] += 1
                if b is not None and not (e.kind == "protect_rejected" and e.detail.startswith("stop")
                                          and self.protection.on_stop_rejected(b, e.detail, ts_ns)):
                    self._enforce(b, ts_ns)
            elif e.kind == "unknown" and b is not None:
                self._ask_status(b.entry_id, ts_ns)
            elif e.kind == "illegal":
                self.stats["illegal_transition"] += 1

    def _record_event(self, event: journal.JournalEvent, ts_ns: int) -> None:
        effects = self._record(event, ts_ns)
        self._act(effects, ts_ns)

    def _record(self, event: journal.JournalEvent, ts_ns: int, notes: Sequence[Notification] = ()) -> list[Effect]:
        """Commit one journal record with its projection rows and notifications, then apply nothing else."""
        with self.store.transaction() as tx:
            rec = journal.append(tx, ts_ns, event)
            effects = self.ledger.apply(rec)
            tx.upsert(self.ledger.take_dirty())
            all_notes = list(notes) + notices.for_effects(effects, self.ledger, ts_ns)
            for n in all_notes:
                tx.outbox(n.ts_ns or ts_ns, n.kind, n.severity.value, n.to_outbox(), rec.seq)
        if self.on_record is not None:
            self.on_record(rec)
        if self.on_notification is not None:
            for n in all_notes:
                try:
                    self.on_notification(n)
                except Exception as exc:  # a notifier bug must never stop trading
                    log.error("notification callback failed", kind=n.kind, error=str(exc))
        return effects
