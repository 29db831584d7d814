"""Execution vocabulary shared by the broker interface, the paper broker, the ledger and the manager.

Everything here is plain data with integer ticks, integer cents and UTC-ns times, so a record can go to the
journal as JSON and come back identical (the crash-recovery guarantee rests on that round trip).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tradebot.core.types import Side


class BracketState(enum.StrEnum):
    PENDING = "pending"
    """Sent (journaled), no broker answer yet."""
    WORKING = "working"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    """Entry complete; the position is open and protected by stop and target."""
    CLOSED = "closed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    """The broker did not answer in time: resolved by a status query, never by re-sending."""


TERMINAL_BRACKET = frozenset({BracketState.CLOSED, BracketState.CANCELLED, BracketState.REJECTED})
OPEN_BRACKET = frozenset({BracketState.PARTIALLY_FILLED, BracketState.FILLED})


class LegState(enum.StrEnum):
    HELD = "held"
    """A bracket child (stop/target) waiting for the entry to fill."""
    PENDING = "pending"
    WORKING = "working"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


TERMINAL_LEG = frozenset({LegState.FILLED, LegState.CANCELLED, LegState.REJECTED})

_L = LegState
LEG_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    _L.HELD: frozenset({_L.WORKING, _L.PARTIALLY_FILLED, _L.FILLED, _L.CANCELLED, _L.REJECTED}),
    _L.PENDING: frozenset({_L.WORKING, _L.PARTIALLY_FILLED, _L.FILLED, _L.CANCELLED, _L.REJECTED, _L.UNKNOWN}),
    _L.UNKNOWN: frozenset({_L.WORKING, _L.PARTIALLY_FILLED, _L.FILLED, _L.CANCELLED, _L.REJECTED}),
    _L.WORKING: frozenset({_L.PARTIALLY_FILLED, _L.FILLED, _L.CANCELLED, _L.REJECTED}),
    _L.PARTIALLY_FILLED: frozenset({_L.FILLED, _L.CANCELLED, _L.REJECTED}),
    _L.FILLED: frozenset(),
    # A fill is a fact whatever we believed: one that raced our cancel, or that a venue reports after its own
    # reject, is booked (and flagged as a late fill), so the order follows it.
    _L.CANCELLED: frozenset({_L.PARTIALLY_FILLED, _L.FILLED}),
    _L.REJECTED: frozenset({_L.PARTIALLY_FILLED, _L.FILLED}),
}
"""Legal order (leg) transitions, for the ledger and the paper broker alike. Staying in the same state is a
no-op, never a transition. A fill or an ack arrives before or after its order's other events in any order a
real broker produces; what the table refuses (a filled order cancelled, a cancelled one working again) is an
anomaly, counted and reported, never applied."""


def leg_transition_allowed(old: LegState, new: LegState) -> bool:
    return new == old or new in LEG_TRANSITIONS[old]


class LegRole(enum.StrEnum):
    ENTRY = "E"
    STOP = "S"
    TARGET = "T"
    EXIT = "X"
    """A market order closing the bracket (flatten, auto-flatten, exit signal, limit)."""


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TradingState(enum.StrEnum):
    ACTIVE = "active"
    HALTED = "halted"
    """No new entries; working brackets keep their stops and targets."""
    REDUCING = "reducing"
    """Only exits: after auto-flatten, or when the operator asks to wind down."""


class HaltKind(enum.StrEnum):
    NONE = ""
    OPERATOR = "operator"
    """Until the operator resumes."""
    LIMIT = "limit"
    """Daily profit target / loss limit: clears at the next trading day."""
    MARGIN = "margin"
    """Margin above the limit: re-checked (and cleared) on the next trading day."""
    EOD = "eod"
    """After the auto-flatten time: clears at the next trading day."""
    ERROR = "error"
    """Fail closed (unexplained broker mismatch, overfill, rejected exit): until the operator resumes."""


DAILY_KINDS = frozenset({HaltKind.LIMIT, HaltKind.MARGIN, HaltKind.EOD})


def client_order_id(signal_id: str, role: LegRole, n: int = 0) -> str:
    """Deterministic client order id: a restarted daemon derives the same ids, so nothing is sent twice."""
    return f"{signal_id}-{role.value}{n if n else ''}"


def split_client_order_id(coid: str) -> tuple[str, LegRole] | None:
    """``(signal_id, role)`` of one of our client order ids, ``None`` for a foreign id."""
    sid, sep, tail = coid.rpartition("-")
    if not sep or not sid or not tail:
        return None
    try:
        role = LegRole(tail[0])
    except ValueError:
        return None
    if tail[1:] and not tail[1:].isdigit():
        return None
    return sid, role


# ---------------------------------------------------------------------------------------------------
# Requests to the broker


class BracketIds:
    """The three legs' client order ids, derived from the signal id (never stored, so they cannot drift)."""

    __slots__ = ()
    signal_id: str

    @property
    def entry_id(self) -> str:
        return client_order_id(self.signal_id, LegRole.ENTRY)

    @property
    def stop_id(self) -> str:
        return client_order_id(self.signal_id, LegRole.STOP)

    @property
    def target_id(self) -> str:
        return client_order_id(self.signal_id, LegRole.TARGET)


@dataclass(frozen=True, slots=True)
class BracketRequest(BracketIds):
    signal_id: str
    symbol: str
    """The contract root actually traded (the tier may map an ES signal to MES)."""
    side: Side
    """Entry side: BUY opens a long, SELL a short."""
    quantity: int
    entry_type: OrderType
    entry_price: int | None
    stop_price: int
    target_price: int
    ts_ns: int
    armed_ns: int = 0
    """When the entry can first execute (the manager's clock when it sent the request: the event group that
    produced the decision); it is evaluated only on events strictly later. 0: ``ts_ns``."""



@dataclass(frozen=True, slots=True)
class FlattenRequest:
    """Close one bracket: cancel what is working, then a market order for the open quantity."""

    signal_id: str
    symbol: str
    exit_id: str
    side: Side
    """Side of the closing order (SELL closes a long)."""
    quantity: int
    """0: nothing open, only cancel."""
    cancel_ids: tuple[str, ...]
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class StopRequest:
    """A stand-alone protective stop for an open position (live: its bracket's stop was lost or rejected).

    ``stop_id`` is a new client order id (``<signal>-S2``, ``-S3``...): a broker never sees one id twice."""

    signal_id: str
    symbol: str
    stop_id: str
    side: Side
    """Side of the stop order (SELL protects a long)."""
    quantity: int
    stop_price: int
    """Integer ticks."""
    ts_ns: int


@dataclass(slots=True)
class Leg:
    """One order of a bracket (entry, stop, target) or a closing order: the one order representation, kept by
    the ledger (what the journal says) and by the paper broker (what the simulated venue holds). Its state only
    moves along :data:`LEG_TRANSITIONS` (:meth:`can_move`)."""

    client_order_id: str
    signal_id: str
    role: LegRole
    symbol: str
    side: Side
    order_type: OrderType
    quantity: int
    price: int | None
    state: LegState
    created_ns: int
    updated_ns: int
    filled_qty: int = 0
    fill_value: int = 0
    """Sum of quantity x price (ticks) over the fills: the average fill price without rounding."""
    fills: int = 0
    reason: str = ""

    def can_move(self, new: LegState) -> bool:
        return leg_transition_allowed(self.state, new)

    def view(self) -> OrderView:
        return OrderView(self.client_order_id, self.symbol, self.side, self.order_type, self.quantity,
                         self.filled_qty, self.price, self.state, self.updated_ns, self.reason)

    def row(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "signal_id": self.signal_id, "role": self.role.value,
                "symbol": self.symbol, "side": int(self.side), "order_type": self.order_type.value,
                "quantity": self.quantity, "price": self.price, "state": self.state.value,
                "filled_qty": self.filled_qty, "fill_value": self.fill_value, "created_ns": self.created_ns,
                "updated_ns": self.updated_ns, "reason": self.reason}


# ---------------------------------------------------------------------------------------------------
# Events from the broker


@dataclass(frozen=True, slots=True)
class Ack:
    client_order_id: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Reject:
    client_order_id: str
    ts_ns: int
    reason: str


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    price: int
    """Integer ticks."""
    ts_ns: int
    commission_cents: int
    """Commission plus fees for this fill (all contracts)."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    client_order_id: str
    ts_ns: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Modified:
    client_order_id: str
    ts_ns: int
    stop_price: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Answer to a status query; ``state`` is ``None`` when the broker does not know the order."""

    client_order_id: str
    ts_ns: int
    state: LegState | None
    filled_qty: int = 0


BrokerEvent = Ack | Reject | Fill | Cancelled | Modified | StatusReport


@dataclass(frozen=True, slots=True)
class OrderView:
    """The broker's view of one order (reconciliation input)."""

    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: int
    filled_qty: int
    price: int | None
    state: LegState
    updated_ns: int
    reason: str = ""
    """Why it is cancelled or rejected, when the broker says."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of an intent: taken (a bracket was sent) or rejected with the reason."""

    signal_id: str
    taken: bool
    reason: str = ""
    symbol: str = ""
    quantity: int = 0
    duplicate: bool = False
