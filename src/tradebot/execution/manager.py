"""The execution manager: intents in, brackets out, every decision journaled before it is acted on.

Flow of every entry point: decide -> commit a journal record (with its projection rows and notifications,
one transaction) -> apply it to the ledger -> only then talk to the broker -> drain the broker's answers the
same way. A crash at any point therefore leaves a journal from which :meth:`ExecutionManager.recover`
rebuilds the exact state, reconciles it with the broker and carries on; what it cannot explain halts trading
(fail closed) with a critical notification.

Notifications are only *recorded* (outbox rows, plus an optional non-blocking callback); the ops notifier
delivers them. Nothing here waits on the network.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import TickValue, UnknownContractError, spec_for, tick_value_of
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification
from tradebot.core.orders import OrderIntent
from tradebot.core.types import MarketEvent, Side, Trade
from tradebot.core.values import CapitalTier, fmt_clock
from tradebot.execution import notices, reconcile
from tradebot.execution.broker import Broker
from tradebot.execution.gate import GateView, RiskGate
from tradebot.execution.journal import (
    AnomalyRecorded,
    AutoFlattenDecided,
    CancelRequested,
    DailyLimitHit,
    ExitSignalDecided,
    FlattenRequested,
    IntentVerdict,
    JournalEntry,
    JournalEvent,
    MarginChecked,
    MarginRow,
    ModifyRequested,
    OrderAcknowledged,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    SessionStarted,
    SignalDecided,
    StateChange,
    StatusRequested,
    StopModified,
    SubmitTimedOut,
    TierChanged,
    TradingStateChanged,
)
from tradebot.execution.journal import append as journal_append
from tradebot.execution.ledger import Bracket, Effect, Ledger
from tradebot.execution.model import (
    DAILY_KINDS,
    TERMINAL_BRACKET,
    TERMINAL_LEG,
    Ack,
    BracketRequest,
    BracketState,
    BrokerEvent,
    Cancelled,
    Fill,
    FlattenRequest,
    HaltKind,
    LegRole,
    Modified,
    OrderType,
    Reject,
    StatusReport,
    TradingState,
    Verdict,
    client_order_id,
)
from tradebot.execution.propfirm_guard import PropFirmGuard
from tradebot.execution.protection import Protection, StateEventGuard, WallTimers
from tradebot.execution.reconcile import RecoveryReport
from tradebot.execution.risk import (
    MICRO_OF,
    MarginProvider,
    MarginResult,
    choose_contract,
    family,
    fmt_cents,
    margin_for,
    same_family,
    tier_for_balance,
    usd_to_cents,
)
from tradebot.execution.session import SessionClock
from tradebot.state.store import StateStore

log = get_logger(__name__)

NotificationSink = Callable[[Notification], None]
_PENDING = BracketState.PENDING


class FillDeduper:
    """Fill ids already applied, bounded (audit H2): oldest ids are forgotten first, never all at once.

    The database's fills table (primary key ``fill_id``) is the backstop for ids that aged out, so a bounded
    memory never lets a duplicate through.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, fill_id: object) -> bool:
        return fill_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, fill_id: str) -> None:
        self._ids[fill_id] = None
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


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
        self.on_record: Callable[[JournalEntry], None] | None = None
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
        self._fill_lock = threading.RLock()  # re-entrant: a notification callback may call back in
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
        iso = day.isoformat()
        if iso != self.ledger.trading.trading_day:
            t = self.ledger.trading
            notes = []
            set_state = None
            if t.state != TradingState.ACTIVE and t.kind in DAILY_KINDS:
                set_state = StateChange(TradingState.ACTIVE, HaltKind.NONE, "new trading day")
                notes.append(notices.trading_state(TradingState.ACTIVE, HaltKind.NONE, "new trading day", now_ns))
            self._record(SessionStarted(iso, self.settings.trading_mode, tuple(self.symbols), set_state), now_ns,
                         notes)
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
        self._record(SignalDecided(
            intent.signal_id, intent.ts_ns, intent.symbol, intent.side, intent.quantity,
            OrderType(intent.entry_type.value), intent.entry_price, intent.stop_price, intent.target_price,
            float(intent.confidence), intent.pattern, intent.regime, tuple(intent.reasons),
            IntentVerdict.REJECTED if reason else IntentVerdict.TAKEN, reason, symbol, qty,
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
        problem = _event_problem(ev)
        if problem:
            self.stats["bad_broker_event"] += 1
            log.error("malformed broker event dropped", problem=problem, broker_event=repr(ev))
            self._record(AnomalyRecorded(problem, "dropped", repr(ev)[:500]), self.clock.now,
                         [notices.malformed_event(problem, ev, self.clock.now)])
            return
        stale = self._event_guard.stale(ev)
        if stale:
            self.stats[f"{stale}_broker_event"] += 1
            log.info("broker event dropped", why=stale, broker_event=repr(ev))
            return
        if isinstance(ev, Fill):
            with self._fill_lock:  # audit C1: the duplicate check and the record are one atomic step
                if ev.fill_id in self._dedupe or self.store.fill_seen(ev.fill_id):
                    self.stats["duplicate_fill"] += 1
                    log.info("duplicate fill dropped", fill_id=ev.fill_id)
                    return
                effects = self._record(OrderFilled(
                    ev.fill_id, ev.client_order_id, ev.symbol, ev.side, ev.quantity, ev.price, ev.ts_ns,
                    ev.commission_cents, self._day_of(ev.ts_ns), _tick_value(ev.symbol)), ev.ts_ns)
                self._dedupe.add(ev.fill_id)
            self.stats["fills"] += 1
            self._act(effects, ev.ts_ns)
            self._check_limits(ev.ts_ns, ev.symbol)
            return
        if isinstance(ev, Ack):
            self._record_event(OrderAcknowledged(ev.client_order_id), ev.ts_ns)
        elif isinstance(ev, Reject):
            self._record_event(OrderRejected(ev.client_order_id, ev.reason), ev.ts_ns)
        elif isinstance(ev, Cancelled):
            self._record_event(OrderCancelled(ev.client_order_id, ev.reason, self._day_of(ev.ts_ns)), ev.ts_ns)
        elif isinstance(ev, Modified):
            self._record_event(StopModified(ev.client_order_id, ev.stop_price), ev.ts_ns)
        elif isinstance(ev, StatusReport):
            self._status_asked.pop(ev.client_order_id, None)
            ts = ev.ts_ns or self.clock.now
            self._record_event(OrderStatus(ev.client_order_id, ev.state, ev.filled_qty, self._day_of(ts)), ts)

    def on_exit_signal(self, symbol: str, ts_ns: int, reason: str, threatens: str | None = None) -> str:
        """Order-flow exit signal: ``alert`` mode notifies (human in the loop), ``auto`` closes at market.

        ``threatens`` follows the position: large sellers threaten a ``"long"``, large buyers a ``"short"``; only
        brackets on that side are affected (``None``: both sides, for a signal that does not say)."""
        self._require()
        if not self._advance(ts_ns):
            ts_ns = self.clock.now
        want = Side.BUY if threatens == "long" else Side.SELL if threatens == "short" else None
        affected = [b for b in self.ledger.open_brackets() if same_family(b.symbol, symbol) and b.position > 0
                    and (want is None or b.side == want)]
        seen = self.ledger.decisions.get(f"exit_signal:{ts_ns}:{symbol}")
        if seen is not None:
            # The same signal again (delivered twice, or replayed after a crash): finish what it decided,
            # without a second record or notification.
            self.stats["duplicate_exit_signal"] += 1
            self._complete_flattens(ts_ns)
            return str(seen["decision"])
        if not affected:
            decision = "no_position"
        elif self.settings.order_flow_exit_mode == "auto":
            decision = "auto_exit"
        else:
            decision = "alert"
        notes = [notices.exit_signal(symbol, reason, decision, affected, ts_ns)] if affected else []
        ids = tuple(b.signal_id for b in affected)
        self._record(ExitSignalDecided(symbol, reason, decision, ids, ids if decision == "auto_exit" else (),
                                       "exit_signal", threatens or "any"), ts_ns, notes)
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
                effects = self._record(SubmitTimedOut(b.signal_id), now_ns)
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
        open_now = self.ledger.open_brackets()
        set_state = None
        if self.ledger.trading.state == TradingState.ACTIVE:
            set_state = StateChange(TradingState.REDUCING, HaltKind.EOD, "after auto-flatten: exits only")
        self._record(AutoFlattenDecided(
            day, "flatten", fmt_clock(self.ex.auto_flatten_time), ",".join(sorted({b.symbol for b in open_now})),
            tuple(b.signal_id for b in open_now), "auto_flatten", set_state), now_ns,
            [notices.auto_flatten(day, len(open_now), fmt_clock(self.ex.auto_flatten_time), now_ns)])
        self.clock.flattened(day)
        self._complete_flattens(now_ns)
        return True

    def check_margin(self, day: dt.date, symbols: Sequence[str] | None = None) -> list[MarginResult]:
        """Margin protection for a day: above the limit, that contract is not traded today (re-run next day)."""
        self._require()
        syms = list(symbols) if symbols else self._traded_symbols()
        results = [margin_for(self.settings, s, day, self.margin_provider) for s in syms]
        blocked = [r for r in results if not r.ok]
        notes = [notices.margin_high(day.isoformat(), blocked, self.clock.now)] if blocked else []
        rows = tuple(MarginRow(r.symbol, r.margin_cents, r.limit_cents, r.ok, r.source) for r in results)
        set_state = None
        if symbols is None:  # the session-wide check decides the session's state, in the same record
            t = self.ledger.trading
            all_blocked = bool(results) and len(blocked) == len(results)
            if all_blocked and t.state == TradingState.ACTIVE:
                why = ", ".join(f"{r.symbol} {fmt_cents(r.margin_cents)} > {fmt_cents(r.limit_cents or 0)}"
                                for r in blocked)
                set_state = StateChange(TradingState.HALTED, HaltKind.MARGIN, f"margin above limit: {why}")
            elif not all_blocked and t.state == TradingState.HALTED and t.kind == HaltKind.MARGIN:
                set_state = StateChange(TradingState.ACTIVE, HaltKind.NONE, "margin within limits")
                notes.append(notices.trading_state(TradingState.ACTIVE, HaltKind.NONE, "margin within limits",
                                                   self.clock.now))
        self._record(MarginChecked(day.isoformat(), rows, set_state), self.clock.now, notes)
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
        b = self.ledger.brackets.get(signal_id)
        leg = self.ledger.legs.get(client_order_id(signal_id, LegRole.STOP))
        if b is None or leg is None or leg.state in TERMINAL_LEG or b.state in TERMINAL_BRACKET:
            return False
        long = b.side == Side.BUY
        if (stop_price >= b.target_price) if long else (stop_price <= b.target_price):
            return False
        self._record(ModifyRequested(leg.client_order_id, stop_price), now_ns)
        self._send("modify_stop", leg.client_order_id, stop_price)
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
        tier = self._current_tier()
        out: list[str] = []
        for s in self.symbols:
            sym, _ = choose_contract(self.settings, tier, s, 1)
            if sym not in out:
                out.append(sym)
        return out

    def _current_tier(self) -> CapitalTier | None:
        n = self.ledger.trading.tier_number
        if not self.ex.tiers_enabled:
            return None
        if n is None:
            return tier_for_balance(self.tiers, self.ledger.balance_cents)
        for t in self.tiers:
            if t.number == n:
                return t
        return tier_for_balance(self.tiers, self.ledger.balance_cents)

    def _evaluate_tier(self, now_ns: int) -> None:
        if not self.ex.tiers_enabled:
            return
        t = tier_for_balance(self.tiers, self.ledger.balance_cents)
        cur = self.ledger.trading
        if cur.tier_number == t.number and cur.tier_name == t.name:
            return
        previous = cur.tier_name
        notes = [] if previous is None else [
            notices.tier_change(previous, cur.tier_number, t, self.ledger.balance_cents, now_ns)]
        self._record(TierChanged(t.number, t.name, t.root, t.max_contracts, self.ledger.balance_cents, previous),
                     now_ns, notes)

    def _set_state(self, state: TradingState, kind: HaltKind, reason: str, now_ns: int, *, notify: bool = True) -> None:
        t = self.ledger.trading
        if t.state == state and t.kind == kind and t.reason == reason:
            return
        notes = [notices.trading_state(state, kind, reason, now_ns)] if notify else []
        self._record(TradingStateChanged(state, kind, reason), now_ns, notes)

    def _check_limits(self, ts_ns: int, symbol: str) -> None:
        if self.propfirm is not None:
            self.propfirm.observe(ts_ns)
        t = self.ledger.trading
        day = t.trading_day
        if day is None or self._limit_day == day:
            return
        stats = self.ledger.daily.get(day)  # (ledger.day_stats without building an empty one)
        realized = stats.net_cents if stats is not None else self.ledger.day_stats(day).net_cents
        pnl = realized + (self.unrealized_cents() if self.ex.limits_include_unrealized else 0)
        if self.loss_limit_cents < pnl < self.profit_target_cents:
            return
        hit = "profit_target" if pnl >= self.profit_target_cents else "loss_limit"
        limit = self.profit_target_cents if hit == "profit_target" else self.loss_limit_cents
        set_state = None
        if t.state == TradingState.ACTIVE or t.kind in DAILY_KINDS:
            set_state = StateChange(TradingState.HALTED, HaltKind.LIMIT,
                                    f"daily {hit.replace('_', ' ')} reached ({fmt_cents(pnl)})")
        flatten = tuple(b.signal_id for b in self.ledger.open_brackets()) if self.ex.flatten_on_limit else ()
        self._record(DailyLimitHit(day, symbol, hit, "halt", pnl, flatten, hit, set_state), ts_ns,
                     [notices.daily_limit(hit, day, pnl, limit, self.ex.flatten_on_limit, ts_ns)])
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
        if b.state in TERMINAL_BRACKET:
            return 0
        legs = self.ledger.legs_of(b)
        if any(leg.role == LegRole.EXIT and leg.state not in TERMINAL_LEG for leg in legs):
            return 0  # already closing
        cancel_ids = tuple(leg.client_order_id for leg in legs
                           if leg.role != LegRole.EXIT and leg.state not in TERMINAL_LEG)
        qty = max(b.position, 0)
        if qty == 0 and not cancel_ids:
            return 0
        exit_id = client_order_id(b.signal_id, LegRole.EXIT, b.exits + 1)
        side = Side.SELL if b.side == Side.BUY else Side.BUY
        self._record(FlattenRequested(b.signal_id, b.symbol, exit_id, side, qty, cancel_ids, reason), ts_ns)
        self._send("flatten", FlattenRequest(b.signal_id, b.symbol, exit_id, side, qty, cancel_ids, reason, ts_ns))
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
        self._record(StatusRequested(coid), now_ns)
        self._send("request_status", coid)

    def _enforce(self, b: Bracket, ts_ns: int) -> None:
        """Invariants of an open bracket: a flat bracket has no working entry; an open one is protected."""
        if b.state in TERMINAL_BRACKET:
            return
        entry = self.ledger.legs.get(b.entry_id)
        if b.entry_filled > 0 and b.position == 0 and entry is not None and entry.state not in TERMINAL_LEG:
            self._record(CancelRequested(b.entry_id, "flat"), ts_ns)
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

    def _record_event(self, event: JournalEvent, ts_ns: int) -> None:
        effects = self._record(event, ts_ns)
        self._act(effects, ts_ns)

    def _record(self, event: JournalEvent, ts_ns: int, notes: Sequence[Notification] = ()) -> list[Effect]:
        """Commit one journal record with its projection rows and notifications, then apply nothing else."""
        with self.store.transaction() as tx:
            rec = journal_append(tx, ts_ns, event)
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


def _tick_value(symbol: str) -> TickValue:
    try:
        return tick_value_of(spec_for(symbol))
    except UnknownContractError:
        return 0


def _event_problem(ev: object) -> str:
    """Why a broker event cannot be applied (it would corrupt the books), or ``""``."""
    coid = getattr(ev, "client_order_id", None)
    if not isinstance(coid, str) or not coid:
        return "missing client order id"
    if not isinstance(getattr(ev, "ts_ns", None), int):
        return "timestamp is not an integer"
    if isinstance(ev, Fill):
        if not ev.fill_id or not isinstance(ev.fill_id, str):
            return "fill without a fill id"
        if not isinstance(ev.quantity, int) or ev.quantity <= 0:
            return f"fill quantity {ev.quantity!r}"
        if not isinstance(ev.price, int) or isinstance(ev.price, bool):
            return f"fill price {ev.price!r} is not integer ticks"
        if ev.side not in (Side.BUY, Side.SELL):
            return f"fill side {ev.side!r}"
        if not isinstance(ev.commission_cents, int) or ev.commission_cents < 0:
            return f"commission {ev.commission_cents!r}"
        try:
            spec_for(ev.symbol)
        except (UnknownContractError, AttributeError):
            return f"fill for unknown contract {ev.symbol!r}"
    if not isinstance(ev, Ack | Reject | Fill | Cancelled | Modified | StatusReport):
        return f"unknown event type {type(ev).__name__}"
    return ""
