"""Broker events on their way into the journal: validated, de-duplicated and translated to typed journal events.

A broker (paper or live) answers with :data:`~tradebot.execution.model.BrokerEvent` values; before the manager
journals one, :func:`event_problem` says whether it could corrupt the books (then it is dropped, counted and
alerted), :class:`FillDeduper` whether a fill was applied already, and :func:`journal_event` what to record. Pure
functions, so a live adapter's odd events are tested here without a manager.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from tradebot.core.contracts import TickValue, UnknownContractError, spec_for, tick_value_of
from tradebot.core.types import Side
from tradebot.execution.journal import (
    JournalEvent,
    OrderAcknowledged,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    StopModified,
)
from tradebot.execution.model import Ack, BrokerEvent, Cancelled, Fill, Modified, Reject, StatusReport


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


def tick_value_for(symbol: str) -> TickValue:
    """The contract's tick value, journaled with each fill (0 for a symbol this build does not know)."""
    try:
        return tick_value_of(spec_for(symbol))
    except UnknownContractError:
        return 0


def event_problem(ev: object) -> str:
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


def journal_event(ev: BrokerEvent, ts_ns: int, day_of: Callable[[int], str]) -> JournalEvent:
    """The journal record of a valid broker event at ``ts_ns``; ``day_of`` names the trading day of a time (asked
    only for the events that carry one: fills, cancels, status answers)."""
    if isinstance(ev, Fill):
        return OrderFilled(ev.fill_id, ev.client_order_id, ev.symbol, ev.side, ev.quantity, ev.price, ev.ts_ns,
                           ev.commission_cents, day_of(ts_ns), tick_value_for(ev.symbol))
    if isinstance(ev, Ack):
        return OrderAcknowledged(ev.client_order_id)
    if isinstance(ev, Reject):
        return OrderRejected(ev.client_order_id, ev.reason)
    if isinstance(ev, Cancelled):
        return OrderCancelled(ev.client_order_id, ev.reason, day_of(ts_ns))
    if isinstance(ev, Modified):
        return StopModified(ev.client_order_id, ev.stop_price)
    return OrderStatus(ev.client_order_id, ev.state, ev.filled_qty, day_of(ts_ns))
