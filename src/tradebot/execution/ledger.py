"""The ledger: execution state as a pure function of the journal.

``Ledger.apply(entry)`` (a typed :class:`~tradebot.execution.journal.JournalEntry`, dispatched on its event's
class) is the only way state changes, for the live path and for a replay alike, so "the current state is
derivable from the journal" holds by construction: recovery is ``replay(journal)`` and
:func:`rebuild_from_journal` rewrites the projection tables from it. The manager decides (policy, I/O); the
ledger only records what was decided or reported and enforces two state machines, the bracket's (:data:`ALLOWED`)
and the order's (:data:`~tradebot.execution.model.LEG_TRANSITIONS`), which reject illegal transitions loudly
(logged, counted, reported as an ``illegal`` effect) instead of corrupting state.

Size: one fold over the journal: a handler per event type, all updating the same ledger state and enforcing the same
bracket state machine; splitting the handlers by kind would export the state they share.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.contracts import TickValue, encode_tick_value
from tradebot.core.logging import get_logger
from tradebot.core.types import Side
from tradebot.execution.journal import (
    EVENT_TYPES,
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
    ModifyRequested,
    OrderAcknowledged,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    PositionAdopted,
    PropFirmUpdated,
    ProtectRequested,
    ReconcileChecked,
    RecoveryChecked,
    SessionStarted,
    SignalDecided,
    StateChange,
    StatusRequested,
    StopModified,
    SubmitTimedOut,
    TierChanged,
    TradingStateChanged,
    kind_of,
)
from tradebot.execution.journal import read as read_journal
from tradebot.execution.model import (
    OPEN_BRACKET,
    TERMINAL_LEG,
    BracketIds,
    BracketState,
    HaltKind,
    Leg,
    LegRole,
    LegState,
    OrderType,
    TradingState,
    client_order_id,
)
from tradebot.execution.positions import PositionBook
from tradebot.state.store import StateStore

log = get_logger(__name__)

B = BracketState
ALLOWED: dict[BracketState, frozenset[BracketState]] = {
    B.PENDING: frozenset({B.WORKING, B.PARTIALLY_FILLED, B.FILLED, B.CANCELLED, B.REJECTED, B.UNKNOWN}),
    B.UNKNOWN: frozenset({B.WORKING, B.PARTIALLY_FILLED, B.FILLED, B.CANCELLED, B.REJECTED}),
    B.WORKING: frozenset({B.PARTIALLY_FILLED, B.FILLED, B.CANCELLED, B.REJECTED}),
    B.PARTIALLY_FILLED: frozenset({B.FILLED, B.CLOSED}),
    B.FILLED: frozenset({B.CLOSED}),
    B.CANCELLED: frozenset({B.PARTIALLY_FILLED, B.FILLED}),  # a fill that raced our cancel is still a fill
    B.CLOSED: frozenset(),
    B.REJECTED: frozenset(),
}
"""Legal bracket transitions. Staying in the same state is a no-op, never a transition."""


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the manager may have to act on or notify about, produced while applying a record."""

    kind: str
    signal_id: str = ""
    detail: str = ""


@dataclass(slots=True)
class Bracket(BracketIds):
    signal_id: str
    symbol: str
    side: Side
    quantity: int
    entry_type: OrderType
    entry_price: int | None
    stop_price: int
    target_price: int
    tick_value_cents: TickValue
    """Captured at submission (audit C4): P&L of this bracket never uses a later tier's tick value."""
    pattern: str
    submitted_ns: int
    state: BracketState = BracketState.PENDING
    entry_filled: int = 0
    exit_filled: int = 0
    entry_value: int = 0
    exit_value: int = 0
    book: PositionBook = field(default_factory=PositionBook)
    exit_reason: str = ""
    pending_exit_reason: str = ""
    opened_ns: int | None = None
    closed_ns: int | None = None
    trading_day: str | None = None
    exits: int = 0
    stops: int = 0
    """Stops re-placed by the no-naked-position rule (legs ``-S2``, ``-S3``...; live only, not a table column)."""


    @property
    def position(self) -> int:
        """Open contracts, unsigned."""
        return self.entry_filled - self.exit_filled

    @property
    def net_cents(self) -> int:
        return self.book.realized_cents - self.book.commission_cents

    def row(self) -> dict[str, Any]:
        return {"signal_id": self.signal_id, "symbol": self.symbol, "side": int(self.side),
                "quantity": self.quantity, "entry_type": self.entry_type.value, "entry_price": self.entry_price,
                "stop_price": self.stop_price, "target_price": self.target_price,
                "tick_value_cents": encode_tick_value(self.tick_value_cents), "state": self.state.value,
                "entry_filled": self.entry_filled, "exit_filled": self.exit_filled,
                "entry_value": self.entry_value, "exit_value": self.exit_value,
                "realized_cents": self.book.realized_cents, "commission_cents": self.book.commission_cents,
                "exit_reason": self.exit_reason, "pattern": self.pattern, "submitted_ns": self.submitted_ns,
                "opened_ns": self.opened_ns, "closed_ns": self.closed_ns, "trading_day": self.trading_day,
                "exits": self.exits}


@dataclass(slots=True)
class DailyStats:
    trading_day: str
    realized_cents: int = 0
    commission_cents: int = 0
    trades: int = 0
    wins: int = 0
    losses: int = 0
    gross_profit_cents: int = 0
    gross_loss_cents: int = 0
    peak_net_cents: int = 0
    max_drawdown_cents: int = 0
    closed_net_cents: int = 0
    """The day's closed trades' net so far: the equity curve whose peak and drawdown are kept (core/stats.py's
    max drawdown, trade by trade; not fill by fill, where an entry's commission would read as a drawdown)."""

    @property
    def net_cents(self) -> int:
        return self.realized_cents - self.commission_cents

    def closed(self, net: int) -> None:
        """A trade closed with ``net`` cents: count it by core/stats.py's definitions (a scratch is neither)."""
        self.trades += 1
        if net > 0:
            self.wins += 1
            self.gross_profit_cents += net
        elif net < 0:
            self.losses += 1
            self.gross_loss_cents += -net
        self.closed_net_cents += net
        self.peak_net_cents = max(self.peak_net_cents, self.closed_net_cents)
        self.max_drawdown_cents = max(self.max_drawdown_cents, self.peak_net_cents - self.closed_net_cents)

    def row(self) -> dict[str, Any]:
        return {"trading_day": self.trading_day, "realized_cents": self.realized_cents,
                "commission_cents": self.commission_cents, "net_cents": self.net_cents, "trades": self.trades,
                "wins": self.wins, "losses": self.losses, "gross_profit_cents": self.gross_profit_cents,
                "gross_loss_cents": self.gross_loss_cents, "peak_net_cents": self.peak_net_cents,
                "max_drawdown_cents": self.max_drawdown_cents}


@dataclass(slots=True)
class TradingStatus:
    state: TradingState = TradingState.ACTIVE
    kind: HaltKind = HaltKind.NONE
    reason: str = ""
    since_ns: int = 0
    trading_day: str | None = None
    tier_number: int | None = None
    tier_name: str | None = None
    tier_symbol: str | None = None
    tier_max: int | None = None
    auto_flatten_day: str | None = None


class Ledger:
    """All execution state. Mutated only by :meth:`apply`."""

    def __init__(self, starting_balance_cents: int = 0) -> None:
        self.starting_balance_cents = starting_balance_cents
        self.brackets: dict[str, Bracket] = {}
        self.live: dict[str, Bracket] = {}
        """Non-terminal brackets, kept apart so per-tick checks never scan the whole history."""
        self.last_ended: dict[str, Bracket] = {}
        """Per traded symbol, the bracket that most recently became terminal: a decision as of a bar's end still
        sees a position that an event after that end closed (one position per family at a time)."""
        self.legs: dict[str, Leg] = {}
        self.positions: dict[str, PositionBook] = {}
        self.position_updated: dict[str, int] = {}
        self.daily: dict[str, DailyStats] = {}
        self.signals: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.fills: dict[str, dict[str, Any]] = {}
        self.margin: dict[tuple[str, str], dict[str, Any]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}
        self.trading = TradingStatus()
        self.total_net_cents = 0
        self.anomalies: Counter[str] = Counter()
        self.last_seq = 0
        self.to_flatten: dict[str, str] = {}
        """Brackets a journaled decision ordered closed (signal id -> reason), until their flatten is recorded."""
        self.limit_day: str | None = None
        """Trading day on which a daily profit target / loss limit was hit (checked once per day)."""
        self.propfirm: PropFirmUpdated | None = None
        """The last journaled prop-firm state (the latest ``propfirm`` record), ``None`` before any."""
        self._dirty: dict[str, set[Any]] = {}

    # -- derived ------------------------------------------------------------------------------------

    @property
    def balance_cents(self) -> int:
        return self.starting_balance_cents + self.total_net_cents

    def open_brackets(self) -> list[Bracket]:
        """Brackets that are not terminal (pending, working, partially filled, filled, unknown), oldest first."""
        return list(self.live.values())

    def position_qty(self, symbol: str) -> int:
        book = self.positions.get(symbol)
        return book.qty if book is not None else 0

    def day_stats(self, day: str) -> DailyStats:
        return self.daily.get(day) or DailyStats(day)

    # -- applying -----------------------------------------------------------------------------------

    def apply(self, entry: JournalEntry) -> list[Effect]:
        """Apply one journal entry, dispatched on its event's type (every event type has a handler: the
        journal codec refuses a kind this build does not know before it gets here)."""
        handler = _HANDLERS[type(entry.event)]
        self.last_seq = entry.seq
        effects: list[Effect] = []
        handler(self, entry.ts_ns, entry.event, effects)
        self._mark("trading_state", 1)
        return effects

    def replay(self, entries: Iterable[JournalEntry]) -> None:
        for entry in entries:
            self.apply(entry)

    # -- projections --------------------------------------------------------------------------------

    def take_dirty(self) -> dict[str, list[dict[str, Any]]]:
        dirty, self._dirty = self._dirty, {}
        return {table: [self._row(table, key) for key in sorted(keys, key=repr)] for table, keys in dirty.items()}

    def all_rows(self) -> dict[str, list[dict[str, Any]]]:
        self._dirty = {
            "sessions": set(self.sessions), "signals": set(self.signals), "brackets": set(self.brackets),
            "orders": set(self.legs), "fills": set(self.fills), "positions": set(self.positions),
            "daily_stats": set(self.daily), "trading_state": {1}, "margin_checks": set(self.margin),
            "decisions": set(self.decisions),
        }
        return self.take_dirty()

    def _row(self, table: str, key: Any) -> dict[str, Any]:
        if table == "brackets":
            return self.brackets[key].row()
        if table == "orders":
            return self.legs[key].row()
        if table == "positions":
            book = self.positions[key]
            return {"symbol": key, "qty": book.qty, "lots": _json_lots(book), "realized_cents": book.realized_cents,
                    "commission_cents": book.commission_cents, "updated_ns": self.position_updated.get(key, 0)}
        if table == "daily_stats":
            return self.daily[key].row()
        if table == "trading_state":
            t = self.trading
            return {"id": 1, "state": t.state.value, "halt_kind": t.kind.value, "reason": t.reason,
                    "since_ns": t.since_ns, "trading_day": t.trading_day, "tier_number": t.tier_number,
                    "tier_name": t.tier_name, "tier_symbol": t.tier_symbol, "tier_max": t.tier_max,
                    "balance_cents": self.balance_cents, "auto_flatten_day": t.auto_flatten_day,
                    "anomalies": sum(self.anomalies.values())}
        sources: dict[str, dict[Any, dict[str, Any]]] = {
            "sessions": self.sessions, "signals": self.signals, "fills": self.fills, "margin_checks": self.margin,
            "decisions": self.decisions}
        return sources[table][key]

    def _mark(self, table: str, key: Any) -> None:
        self._dirty.setdefault(table, set()).add(key)

    def _anomaly(self, kind: str, signal_id: str, detail: str) -> None:
        self.anomalies[kind] += 1
        log.warning("execution anomaly", kind=kind, signal_id=signal_id, detail=detail)

    def _transition(self, b: Bracket, new: BracketState, cause: str, effects: list[Effect]) -> bool:
        if new == b.state:
            return True
        if new not in ALLOWED[b.state]:
            self._anomaly("illegal_transition", b.signal_id, f"{b.state.value} -> {new.value} on {cause}")
            effects.append(Effect("illegal", b.signal_id, f"{b.state.value} -> {new.value} on {cause}"))
            return False
        b.state = new
        if new in (B.CLOSED, B.CANCELLED, B.REJECTED):
            self.live.pop(b.signal_id, None)
            self.last_ended[b.symbol] = b
        else:
            self.live[b.signal_id] = b
        self._mark("brackets", b.signal_id)
        return True

    def _set_leg(self, leg: Leg, state: LegState, ts_ns: int, effects: list[Effect], cause: str,
                 reason: str = "") -> bool:
        """Move a leg along the order transition table; an illegal move is refused, counted and reported."""
        if not leg.can_move(state):
            detail = f"{leg.client_order_id} {leg.state.value} -> {state.value} on {cause}"
            self._anomaly("illegal_leg_transition", leg.signal_id, detail)
            effects.append(Effect("illegal", leg.signal_id, detail))
            return False
        leg.state = state
        leg.updated_ns = max(leg.updated_ns, ts_ns)
        if reason:
            leg.reason = reason
        self._mark("orders", leg.client_order_id)
        return True

    def _children(self, b: Bracket) -> list[Leg]:
        return [leg for cid in (b.stop_id, b.target_id) if (leg := self.legs.get(cid)) is not None]

    def _resize_children(self, b: Bracket, ts_ns: int, effects: list[Effect]) -> None:
        """A working child covers exactly the open position (plus what it already filled)."""
        for leg in self._children(b):
            if leg.state in TERMINAL_LEG:
                continue
            want = leg.filled_qty + b.position
            if leg.quantity != want:
                leg.quantity = want
                self._mark("orders", leg.client_order_id)
            if leg.state == LegState.HELD and b.entry_filled > 0:
                self._set_leg(leg, LegState.WORKING, ts_ns, effects, "entry fill")

    def _entry_done(self, b: Bracket) -> bool:
        entry = self.legs.get(b.entry_id)
        return entry is None or entry.state in TERMINAL_LEG

    def _maybe_close(self, b: Bracket, ts_ns: int, day: str | None, reason: str, effects: list[Effect]) -> None:
        if b.state in (B.CLOSED, B.CANCELLED, B.REJECTED) or b.entry_filled == 0:
            return
        if b.position != 0 or not self._entry_done(b):
            return
        if not self._transition(b, B.CLOSED, "flat", effects):
            return
        b.closed_ns = ts_ns
        b.exit_reason = reason or b.pending_exit_reason or "closed"
        b.trading_day = day
        if day is not None:
            self.daily.setdefault(day, DailyStats(day)).closed(b.net_cents)
            self._mark("daily_stats", day)
        self._mark("brackets", b.signal_id)
        effects.append(Effect("closed", b.signal_id, b.exit_reason))

    # -- handlers -----------------------------------------------------------------------------------

    def _on_session(self, ts_ns: int, ev: SessionStarted, effects: list[Effect]) -> None:
        day = ev.day
        self.sessions[day] = {"trading_day": day, "started_ns": ts_ns, "mode": ev.mode,
                              "symbols": ",".join(ev.symbols), "balance_cents": self.balance_cents}
        self.trading.trading_day = day
        self._mark("sessions", day)
        self._apply_state(ts_ns, ev.set_state)

    def _on_signal(self, ts_ns: int, ev: SignalDecided, effects: list[Effect]) -> None:
        sid = ev.signal_id
        self.signals[sid] = {
            "signal_id": sid, "ts_ns": ev.ts_ns, "symbol": ev.symbol, "side": int(ev.side), "pattern": ev.pattern,
            "confidence": ev.confidence, "regime": ev.regime, "reasons": "\n".join(ev.reasons),
            "entry_type": ev.entry_type.value, "entry_price": ev.entry_price, "stop_price": ev.stop_price,
            "target_price": ev.target_price, "quantity": ev.quantity, "verdict": ev.verdict.value,
            "reason": ev.reason, "traded_symbol": ev.traded_symbol, "traded_qty": ev.traded_qty,
        }
        self._mark("signals", sid)
        if not ev.taken:
            return
        if sid in self.brackets:
            self._anomaly("duplicate_bracket", sid, "signal already has a bracket")
            return
        side = ev.side
        b = Bracket(sid, ev.traded_symbol, side, ev.traded_qty, ev.entry_type, ev.entry_price, ev.stop_price,
                    ev.target_price, ev.tick_value_cents, ev.pattern, ts_ns)
        self.brackets[sid] = b
        self.live[sid] = b
        exit_side = Side.SELL if side == Side.BUY else Side.BUY
        legs = [
            Leg(b.entry_id, sid, LegRole.ENTRY, b.symbol, side, b.entry_type, b.quantity, b.entry_price,
                LegState.PENDING, ts_ns, ts_ns),
            Leg(b.stop_id, sid, LegRole.STOP, b.symbol, exit_side, OrderType.STOP, 0, b.stop_price,
                LegState.HELD, ts_ns, ts_ns),
            Leg(b.target_id, sid, LegRole.TARGET, b.symbol, exit_side, OrderType.LIMIT, 0, b.target_price,
                LegState.HELD, ts_ns, ts_ns),
        ]
        for leg in legs:
            self.legs[leg.client_order_id] = leg
            self._mark("orders", leg.client_order_id)
        self._mark("brackets", sid)

    def _on_flatten_request(self, ts_ns: int, ev: FlattenRequested, effects: list[Effect]) -> None:
        b = self.brackets.get(ev.signal_id)
        if b is None:
            self._anomaly("unknown_bracket", ev.signal_id, "flatten request")
            return
        b.exits += 1
        b.pending_exit_reason = ev.reason
        self.to_flatten.pop(b.signal_id, None)
        self._mark("brackets", b.signal_id)
        if ev.quantity > 0:
            leg = Leg(ev.exit_id, b.signal_id, LegRole.EXIT, b.symbol, ev.side, OrderType.MARKET, ev.quantity, None,
                      LegState.PENDING, ts_ns, ts_ns, reason=b.pending_exit_reason)
            self.legs[leg.client_order_id] = leg
            self._mark("orders", leg.client_order_id)

    def _on_protect_request(self, ts_ns: int, ev: ProtectRequested, effects: list[Effect]) -> None:
        """A re-placed stop (live, no naked position): a new STOP leg covering the open position."""
        b = self.brackets.get(ev.signal_id)
        if b is None:
            self._anomaly("unknown_bracket", ev.signal_id, "protect request")
            return
        b.stops += 1
        self._mark("brackets", b.signal_id)
        leg = Leg(ev.stop_id, b.signal_id, LegRole.STOP, b.symbol, ev.side, OrderType.STOP, ev.quantity,
                  ev.stop_price, LegState.PENDING, ts_ns, ts_ns, reason=ev.reason)
        self.legs[leg.client_order_id] = leg
        self._mark("orders", leg.client_order_id)

    def _on_adopt(self, ts_ns: int, ev: PositionAdopted, effects: list[Effect]) -> None:
        """A foreign position taken over by the operator: a filled bracket (entry at the adoption price, no
        commission: the broker charged it when it was opened), its own stop and target legs unused."""
        sid, side, qty, price = ev.signal_id, ev.side, ev.quantity, ev.price
        self._on_signal(ts_ns, SignalDecided(
            sid, ts_ns, ev.symbol, side, qty, OrderType.MARKET, None, ev.stop_price,
            price + 10**6 if side == Side.BUY else price - 10**6,  # (its target is never placed)
            0.0, "ADOPTED", "", (), IntentVerdict.TAKEN, ev.reason, ev.symbol, qty, ev.tick_value_cents), effects)
        b = self.brackets[sid]
        entry = self.legs[b.entry_id]
        self._set_leg(entry, LegState.WORKING, ts_ns, effects, "adopt")
        self._on_fill(ts_ns, OrderFilled(f"adopt:{sid}", b.entry_id, ev.symbol, side, qty, price, ts_ns, 0, ev.day,
                                         ev.tick_value_cents), effects)
        for leg in self._children(b):
            self._set_leg(leg, LegState.CANCELLED, ts_ns, effects, "adopt", "adopted: protected by a re-placed stop")

    def _on_noop(self, ts_ns: int, ev: JournalEvent, effects: list[Effect]) -> None:
        """Requests whose outcome arrives as a broker event (cancel, modify): journaled for audit and replay."""

    def _on_ack(self, ts_ns: int, ev: OrderAcknowledged, effects: list[Effect]) -> None:
        coid = ev.client_order_id
        leg = self.legs.get(coid)
        if leg is None:
            self._anomaly("unknown_order", "", f"ack {coid}")
            effects.append(Effect("unknown_order", "", coid))
            return
        b = self.brackets[leg.signal_id]
        if leg.state in (LegState.PENDING, LegState.UNKNOWN):
            self._set_leg(leg, LegState.WORKING, ts_ns, effects, "ack")
            if leg.role == LegRole.ENTRY and b.state in (B.PENDING, B.UNKNOWN):
                self._transition(b, B.WORKING, "ack", effects)
        elif leg.state in (LegState.WORKING, LegState.HELD):
            self.anomalies["duplicate_ack"] += 1
        else:
            self.anomalies["stale_ack"] += 1  # the ack arrived after a fill or cancel: out of order, harmless

    def _on_reject(self, ts_ns: int, ev: OrderRejected, effects: list[Effect]) -> None:
        self._reject(ev.client_order_id, ev.reason, ts_ns, effects)

    def _reject(self, coid: str, reason: str, ts_ns: int, effects: list[Effect]) -> None:
        leg = self.legs.get(coid)
        if leg is None:
            self._anomaly("unknown_order", "", f"reject {coid}")
            return
        b = self.brackets[leg.signal_id]
        if leg.state in TERMINAL_LEG:
            self._anomaly("stale_reject", b.signal_id, f"{coid} already {leg.state.value}")
            return
        if leg.role == LegRole.ENTRY:
            if leg.filled_qty or not self._transition(b, B.REJECTED, "reject", effects):
                if leg.filled_qty:
                    self._anomaly("illegal_transition", b.signal_id, f"reject after fills on {coid}")
                    effects.append(Effect("illegal", b.signal_id, f"reject after fills on {coid}"))
                return
            self._set_leg(leg, LegState.REJECTED, ts_ns, effects, "reject", reason)
            for child in self._children(b):
                if child.state not in TERMINAL_LEG:
                    self._set_leg(child, LegState.CANCELLED, ts_ns, effects, "entry rejected", "entry rejected")
            b.exit_reason = f"rejected: {reason}"
            effects.append(Effect("rejected", b.signal_id, reason))
            return
        self._set_leg(leg, LegState.REJECTED, ts_ns, effects, "reject", reason)
        if leg.role == LegRole.EXIT:
            effects.append(Effect("exit_rejected", b.signal_id, reason))
        elif b.position > 0:
            effects.append(Effect("protect_rejected", b.signal_id, f"{leg.role.name.lower()}: {reason}"))

    def _on_fill(self, ts_ns: int, ev: OrderFilled, effects: list[Effect]) -> None:
        fid, coid = ev.fill_id, ev.client_order_id
        symbol, qty, price = ev.symbol, ev.quantity, ev.price
        side, ts, comm, day = ev.side, ev.ts_ns, ev.commission_cents, ev.day
        if fid in self.fills:
            self._anomaly("duplicate_fill", "", fid)  # the manager dedupes first; a replay must not double count
            return
        signed = qty if side == Side.BUY else -qty
        leg = self.legs.get(coid)
        b = self.brackets.get(leg.signal_id) if leg is not None else None
        tick_value = b.tick_value_cents if b is not None else ev.tick_value_cents
        book = self.positions.setdefault(symbol, PositionBook())
        realized = book.apply(signed, price, tick_value, comm)
        self.position_updated[symbol] = ts
        self._mark("positions", symbol)
        stats = self.daily.setdefault(day, DailyStats(day))
        stats.realized_cents += realized
        stats.commission_cents += comm
        self.total_net_cents += realized - comm
        self._mark("daily_stats", day)
        self.fills[fid] = {"fill_id": fid, "client_order_id": coid, "signal_id": leg.signal_id if leg else "",
                           "role": leg.role.value if leg else "", "symbol": symbol, "side": int(side),
                           "quantity": qty, "price": price, "ts_ns": ts, "commission_cents": comm,
                           "realized_cents": realized, "trading_day": day}
        self._mark("fills", fid)
        if leg is None or b is None:
            self._anomaly("orphan_fill", "", f"{fid} for unknown order {coid}")
            effects.append(Effect("orphan_fill", "", f"{fid} {coid} {symbol} {signed}@{price}"))
            return
        if side != leg.side:
            self._anomaly("fill_side_mismatch", b.signal_id, fid)
        late = leg.state in TERMINAL_LEG
        if late:
            self._anomaly("late_fill", b.signal_id, f"{fid} on {leg.state.value} {coid}")
            effects.append(Effect("late_fill", b.signal_id, f"{fid} on {leg.state.value} {coid}"))
        leg.filled_qty += qty
        leg.fill_value += qty * price
        leg.fills += 1
        self._set_leg(leg, LegState.FILLED if leg.filled_qty >= leg.quantity else LegState.PARTIALLY_FILLED, ts,
                      effects, "fill")
        b.book.apply(signed, price, tick_value, comm)
        self._mark("brackets", b.signal_id)
        if leg.role == LegRole.ENTRY:
            b.entry_filled += qty
            b.entry_value += qty * price
            if b.opened_ns is None:
                b.opened_ns = ts
                effects.append(Effect("opened", b.signal_id))
            if b.entry_filled > b.quantity:
                self._anomaly("overfill", b.signal_id, f"entry filled {b.entry_filled} of {b.quantity}")
                effects.append(Effect("overfill", b.signal_id, f"entry {b.entry_filled}/{b.quantity}"))
            if b.state in (B.CLOSED, B.REJECTED):
                self._anomaly("illegal_transition", b.signal_id, f"entry fill on {b.state.value}")
                effects.append(Effect("illegal", b.signal_id, f"entry fill on {b.state.value}"))
            else:
                full = b.entry_filled >= b.quantity
                self._transition(b, B.FILLED if full else B.PARTIALLY_FILLED, "entry fill", effects)
            self._resize_children(b, ts, effects)
            return
        b.exit_filled += qty
        b.exit_value += qty * price
        if b.exit_filled > b.entry_filled:
            self._anomaly("overfill", b.signal_id, f"exits {b.exit_filled} > entries {b.entry_filled}")
            effects.append(Effect("overfill", b.signal_id, f"exits {b.exit_filled} > entries {b.entry_filled}"))
        if b.state in (B.CLOSED, B.REJECTED, B.CANCELLED) and not late:
            self._anomaly("illegal_transition", b.signal_id, f"exit fill on {b.state.value}")
            effects.append(Effect("illegal", b.signal_id, f"exit fill on {b.state.value}"))
        self._resize_children(b, ts, effects)
        # The last exit fill names the close (a stop that fills after a flatten request closed it as a stop).
        b.pending_exit_reason = ({LegRole.STOP: "stop", LegRole.TARGET: "target"}.get(leg.role)
                                 or leg.reason or b.pending_exit_reason)
        self._maybe_close(b, ts, day, b.pending_exit_reason, effects)
        if b.position == 0 and not self._entry_done(b) and b.state in OPEN_BRACKET:
            effects.append(Effect("flat_entry_working", b.signal_id))

    def _on_cancelled(self, ts_ns: int, ev: OrderCancelled, effects: list[Effect]) -> None:
        self._cancel(ev.client_order_id, ts_ns, ev.reason, ev.day or None, effects)

    def _cancel(self, coid: str, ts_ns: int, reason: str, day: str | None, effects: list[Effect]) -> None:
        leg = self.legs.get(coid)
        if leg is None:
            self._anomaly("unknown_order", "", f"cancel {coid}")
            return
        b = self.brackets[leg.signal_id]
        if leg.state == LegState.CANCELLED:
            self.anomalies["duplicate_cancel"] += 1
            return
        if leg.state in TERMINAL_LEG:
            self.anomalies["stale_cancel"] += 1  # filled or rejected first: the cancel lost the race
            return
        self._set_leg(leg, LegState.CANCELLED, ts_ns, effects, "cancel", reason)
        if leg.role == LegRole.ENTRY:
            if b.entry_filled == 0:
                if self._transition(b, B.CANCELLED, "entry cancelled", effects):
                    for child in self._children(b):
                        if child.state not in TERMINAL_LEG:
                            self._set_leg(child, LegState.CANCELLED, ts_ns, effects, "entry cancelled",
                                          "entry cancelled")
                    b.exit_reason = reason or "cancelled"
                    self._mark("brackets", b.signal_id)
                    effects.append(Effect("cancelled", b.signal_id, reason))
            elif b.position == 0:
                self._maybe_close(b, ts_ns, day, "", effects)
            else:
                self._transition(b, B.FILLED, "entry remainder cancelled", effects)
            return
        if leg.role == LegRole.EXIT:
            if b.position > 0:
                effects.append(Effect("exit_cancelled", b.signal_id, reason))
            return
        if b.position > 0 and not self.protected(b):
            effects.append(Effect("unprotected", b.signal_id, f"{leg.role.name.lower()} cancelled"))

    def protected(self, b: Bracket) -> bool:
        """A working stop or closing order covers the open position."""
        for leg in self.legs_of(b):
            if leg.role in (LegRole.STOP, LegRole.EXIT) and leg.state not in TERMINAL_LEG:
                return True
        return False

    def legs_of(self, b: Bracket) -> list[Leg]:
        ids = [b.entry_id, b.stop_id, b.target_id] + [client_order_id(b.signal_id, LegRole.EXIT, n)
                                                       for n in range(1, b.exits + 1)]
        ids += [client_order_id(b.signal_id, LegRole.STOP, n) for n in range(2, b.stops + 2)]
        return [leg for cid in ids if (leg := self.legs.get(cid)) is not None]

    def _on_modified(self, ts_ns: int, ev: StopModified, effects: list[Effect]) -> None:
        leg = self.legs.get(ev.client_order_id)
        if leg is None or leg.role != LegRole.STOP or leg.state in TERMINAL_LEG:
            self.anomalies["stale_modify"] += 1
            return
        leg.price = ev.stop_price
        self._set_leg(leg, leg.state, ts_ns, effects, "modify")
        b = self.brackets[leg.signal_id]
        b.stop_price = leg.price
        self._mark("brackets", b.signal_id)

    def _on_status(self, ts_ns: int, ev: OrderStatus, effects: list[Effect]) -> None:
        coid = ev.client_order_id
        leg = self.legs.get(coid)
        if leg is None:
            self._anomaly("unknown_order", "", f"status {coid}")
            effects.append(Effect("mismatch", "", f"broker reports unknown order {coid}"))
            return
        state, filled = ev.state, ev.filled_qty
        b = self.brackets[leg.signal_id]
        if state is None:
            if leg.state in (LegState.PENDING, LegState.UNKNOWN):
                self._reject(coid, "not found at broker (never reached it)", ts_ns, effects)
            elif leg.state not in TERMINAL_LEG and leg.state != LegState.HELD:
                effects.append(Effect("mismatch", b.signal_id, f"broker lost working order {coid}"))
            return
        if filled > leg.filled_qty:
            effects.append(Effect("mismatch", b.signal_id,
                                  f"broker filled {filled} of {coid}, we know {leg.filled_qty}"))
            return
        if state == LegState.CANCELLED:
            self._cancel(coid, ts_ns, "reported cancelled", ev.day or None, effects)
        elif state == LegState.REJECTED:
            self._reject(coid, "reported rejected", ts_ns, effects)
        elif state in (LegState.WORKING, LegState.PARTIALLY_FILLED, LegState.FILLED):
            if leg.state in (LegState.PENDING, LegState.UNKNOWN):
                self._set_leg(leg, LegState.WORKING if leg.filled_qty == 0 else leg.state, ts_ns, effects, "status")
                if leg.role == LegRole.ENTRY and b.state in (B.PENDING, B.UNKNOWN):
                    self._transition(b, B.WORKING, "status", effects)
            effects.append(Effect("resolved", b.signal_id, f"{coid} {state.value}"))

    def _on_timeout(self, ts_ns: int, ev: SubmitTimedOut, effects: list[Effect]) -> None:
        sid = ev.signal_id
        b = self.brackets.get(sid)
        if b is None or b.state != B.PENDING:
            self.anomalies["stale_timeout"] += 1
            return
        self._transition(b, B.UNKNOWN, "submit timeout", effects)
        entry = self.legs[b.entry_id]
        if entry.state == LegState.PENDING:
            self._set_leg(entry, LegState.UNKNOWN, ts_ns, effects, "submit timeout", "submit timeout")
        effects.append(Effect("unknown", sid))

    def _apply_state(self, ts_ns: int, change: StateChange | None) -> None:
        """A decision record may carry the trading-state change it causes (applied atomically with it)."""
        if change is not None:
            t = self.trading
            t.state, t.kind, t.reason, t.since_ns = change.state, change.kind, change.reason, ts_ns

    def _note_flatten(self, signal_ids: tuple[str, ...], reason: str) -> None:
        for sid in signal_ids:
            b = self.brackets.get(sid)
            if b is not None and b.state not in (B.CLOSED, B.CANCELLED, B.REJECTED):
                self.to_flatten[b.signal_id] = reason

    def _on_trading_state(self, ts_ns: int, ev: TradingStateChanged, effects: list[Effect]) -> None:
        t = self.trading
        t.state, t.kind, t.reason, t.since_ns = ev.state, ev.kind, ev.reason, ts_ns

    def _on_tier(self, ts_ns: int, ev: TierChanged, effects: list[Effect]) -> None:
        t = self.trading
        t.tier_number, t.tier_name, t.tier_symbol, t.tier_max = ev.number, ev.name, ev.symbol, ev.max_contracts

    def _on_margin(self, ts_ns: int, ev: MarginChecked, effects: list[Effect]) -> None:
        day = ev.day
        for r in ev.results:
            key = (day, r.symbol)
            self.margin[key] = {"trading_day": day, "symbol": r.symbol, "margin_cents": r.margin_cents,
                                "limit_cents": r.limit_cents, "ok": int(r.ok), "source": r.source}
            self._mark("margin_checks", key)
        self._apply_state(ts_ns, ev.set_state)

    def _decision(self, ts_ns: int, ev: ExitSignalDecided | AutoFlattenDecided | AnomalyRecorded | DailyLimitHit,
                  symbol: str) -> None:
        # Keyed by what was decided, not by journal position: an input delivered again after a crash
        # re-decides the same thing and must not add a second row.
        kind = kind_of(ev).value
        key = f"{kind}:{ts_ns}:{symbol}"
        self.decisions[key] = {"id": key, "ts_ns": ts_ns, "kind": kind, "symbol": symbol, "reason": ev.reason,
                               "decision": ev.decision}
        self._mark("decisions", key)

    def _on_anomaly(self, ts_ns: int, ev: AnomalyRecorded, effects: list[Effect]) -> None:
        self._decision(ts_ns, ev, "")

    def _on_daily_limit(self, ts_ns: int, ev: DailyLimitHit, effects: list[Effect]) -> None:
        self.limit_day = ev.day
        self._decision(ts_ns, ev, ev.symbol)
        self._apply_state(ts_ns, ev.set_state)
        self._note_flatten(ev.flatten, ev.flatten_reason)

    def _on_auto_flatten(self, ts_ns: int, ev: AutoFlattenDecided, effects: list[Effect]) -> None:
        self.trading.auto_flatten_day = ev.day
        self._decision(ts_ns, ev, ev.symbol)
        self._apply_state(ts_ns, ev.set_state)
        self._note_flatten(ev.flatten, ev.flatten_reason)

    def _on_exit_signal(self, ts_ns: int, ev: ExitSignalDecided, effects: list[Effect]) -> None:
        self._decision(ts_ns, ev, ev.symbol)
        self._note_flatten(ev.flatten, ev.flatten_reason)

    def _on_recovery(self, ts_ns: int, ev: RecoveryChecked, effects: list[Effect]) -> None:
        self._apply_state(ts_ns, ev.set_state)

    def _on_reconcile(self, ts_ns: int, ev: ReconcileChecked, effects: list[Effect]) -> None:
        self._apply_state(ts_ns, ev.set_state)

    def _on_propfirm(self, ts_ns: int, ev: PropFirmUpdated, effects: list[Effect]) -> None:
        self.propfirm = ev
        self._apply_state(ts_ns, ev.set_state)
        self._note_flatten(ev.flatten, ev.flatten_reason)


def _json_lots(book: PositionBook) -> str:
    import json

    return json.dumps(book.to_json(), separators=(",", ":"))


_Handler = Callable[[Ledger, int, Any, list[Effect]], None]
_HANDLERS: dict[type, _Handler] = {
    SessionStarted: Ledger._on_session,
    SignalDecided: Ledger._on_signal,
    FlattenRequested: Ledger._on_flatten_request,
    CancelRequested: Ledger._on_noop,
    ModifyRequested: Ledger._on_noop,
    StatusRequested: Ledger._on_noop,
    OrderAcknowledged: Ledger._on_ack,
    OrderRejected: Ledger._on_reject,
    OrderFilled: Ledger._on_fill,
    OrderCancelled: Ledger._on_cancelled,
    StopModified: Ledger._on_modified,
    OrderStatus: Ledger._on_status,
    SubmitTimedOut: Ledger._on_timeout,
    TradingStateChanged: Ledger._on_trading_state,
    TierChanged: Ledger._on_tier,
    MarginChecked: Ledger._on_margin,
    ExitSignalDecided: Ledger._on_exit_signal,
    AutoFlattenDecided: Ledger._on_auto_flatten,
    AnomalyRecorded: Ledger._on_anomaly,
    DailyLimitHit: Ledger._on_daily_limit,
    RecoveryChecked: Ledger._on_recovery,
    ReconcileChecked: Ledger._on_reconcile,
    ProtectRequested: Ledger._on_protect_request,
    PositionAdopted: Ledger._on_adopt,
    PropFirmUpdated: Ledger._on_propfirm,
}
"""How each event type changes the state: every journal event type has one (checked at import)."""

HANDLED_EVENTS = frozenset(_HANDLERS)
if frozenset(EVENT_TYPES.values()) != HANDLED_EVENTS:
    raise TypeError("ledger handlers and journal event types differ: "
                    f"{sorted(c.__name__ for c in HANDLED_EVENTS ^ frozenset(EVENT_TYPES.values()))}")


def rebuild_from_journal(store: StateStore, starting_balance_cents: int, *, write: bool = True) -> Ledger:
    """Replay the whole journal into a fresh ledger; with ``write`` rewrite the projection tables from it."""
    ledger = Ledger(starting_balance_cents)
    ledger.replay(read_journal(store))
    if write:
        store.replace_projections(ledger.all_rows())
    else:
        ledger.take_dirty()
    return ledger
