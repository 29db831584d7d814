"""No naked position (live): every open position's stop confirmed working at the broker, or flattened.

After an entry fill, a partial fill or a reconnect, the stop must show up *at the broker* (its synchronized view,
:meth:`Broker.query_orders`) as working for at least the open quantity within ``protect_seconds``. Our journal
saying the stop is working is not enough: the broker's answer is what protects the money. When it is not
confirmed in time the stop is re-placed (the old one cancelled, a new one with a new client order id); when the
re-placed stop is not confirmed within as long again, or is rejected, the position is flattened at market. A
bracket stop the broker rejects outright is re-placed at once (a reject is an answer, not a delay). Each step is
journaled and alerted.

Timers run on the wall clock the daemon passes in (monotonic), because broker confirmations happen in real
time, whatever the market data's clock says. Paper brokers are confirmed at once (their view is exact), so
this never acts in paper mode.

Also here: the order-state guard. Broker events can arrive twice, late or out of order; fills are de-duplicated
by fill id in the manager, and order-state events (ack, cancel, reject, modify) of one order are applied in the
broker's time order: an exact repeat, or one older than the last applied for that order, is dropped and counted.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification
from tradebot.core.types import Side
from tradebot.execution import notices
from tradebot.execution.broker import Broker
from tradebot.execution.journal import AnomalyRecorded, CancelRequested, JournalEvent, ProtectRequested
from tradebot.execution.ledger import Bracket, Effect, Ledger
from tradebot.execution.model import (
    TERMINAL_BRACKET,
    TERMINAL_LEG,
    Ack,
    BrokerEvent,
    Cancelled,
    LegRole,
    LegState,
    Modified,
    Reject,
    StopRequest,
    client_order_id,
)
from tradebot.execution.session import SessionClock

log = get_logger(__name__)

_WORKING = (LegState.WORKING, LegState.PARTIALLY_FILLED)


class ProtectionHost(Protocol):
    """What the rule needs of the execution manager (the manager is one; this module never imports it)."""

    clock: SessionClock
    ledger: Ledger
    stats: Counter[str]
    broker: Broker

    def pump(self) -> int: ...

    def _record(self, event: JournalEvent, ts_ns: int, notes: Sequence[Notification] = ()) -> list[Effect]: ...

    def _send(self, method: str, *args: Any) -> None: ...

    def _flatten_bracket(self, b: Bracket, reason: str, ts_ns: int) -> int: ...


class Protection:
    """The no-naked-position rule for one manager (active only with a live broker)."""

    def __init__(self, manager: ProtectionHost, protect_seconds: float, *, active: bool) -> None:
        self.m = manager
        self.active = active
        self.protect_ns = int(protect_seconds * 1e9)
        self.since: dict[str, int] = {}
        """Signal id -> wall time it was first seen unprotected at the broker."""
        self.replaced_at: dict[str, int] = {}
        """Signal id -> wall time its stop was re-placed."""
        self.flattened: set[str] = set()

    def confirmed(self, b: Bracket) -> bool:
        """The broker shows a stop of ours working for the open quantity, or a closing order is on its way."""
        orders = {o.client_order_id: o for o in self.m.broker.query_orders()}
        for leg in self.m.ledger.legs_of(b):
            if leg.state in TERMINAL_LEG:
                continue
            if leg.role == LegRole.EXIT:
                return True  # a flatten is in progress: the exit order's own timeout and reconciliation watch it
            if leg.role != LegRole.STOP:
                continue
            v = orders.get(leg.client_order_id)
            if v is not None and v.state in _WORKING and v.quantity - v.filled_qty >= b.position:
                return True
        return False

    def check(self, wall_ns: int) -> list[str]:
        """One pass over the open positions; returns what it did (re-placed / flattened signal ids)."""
        if not self.active:
            return []
        m = self.m
        did: list[str] = []
        open_ids = set()
        for b in list(m.ledger.open_brackets()):
            if b.position <= 0 or b.state in TERMINAL_BRACKET:
                continue
            open_ids.add(b.signal_id)
            if self.confirmed(b):
                if b.signal_id in self.since:
                    log.info("stop confirmed at the broker", signal_id=b.signal_id,
                             after_s=(wall_ns - self.since[b.signal_id]) / 1e9)
                self.since.pop(b.signal_id, None)
                self.replaced_at.pop(b.signal_id, None)
                continue
            t0 = self.since.setdefault(b.signal_id, wall_ns)
            replaced = self.replaced_at.get(b.signal_id)
            if replaced is None and wall_ns - t0 >= self.protect_ns:
                self.replace(b, f"stop not confirmed working at the broker within {self.protect_ns / 1e9:g} s")
                self.replaced_at[b.signal_id] = wall_ns
                did.append(f"re-placed {b.signal_id}")
            elif replaced is not None and wall_ns - replaced >= self.protect_ns and b.signal_id not in self.flattened:
                self.flatten(b, "re-placed stop not confirmed at the broker")
                did.append(f"flattened {b.signal_id}")
        for sid in list(self.since):
            if sid not in open_ids:
                self.since.pop(sid, None)
                self.replaced_at.pop(sid, None)
        if did:
            m.pump()
        return did

    def on_stop_rejected(self, b: Bracket, reason: str, ts_ns: int) -> bool:
        """A stop of an open position was rejected: re-place it once (True), else let the caller flatten."""
        if not self.active or b.position <= 0 or b.stops > 0:
            return False
        self.replace(b, f"stop rejected by the broker: {reason}")
        return True

    def replace(self, b: Bracket, why: str) -> None:
        """Cancel whatever stop is left, then a new stop for the open quantity at the bracket's stop price."""
        m = self.m
        old = [leg for leg in m.ledger.legs_of(b) if leg.role == LegRole.STOP and leg.state not in TERMINAL_LEG]
        ts = m.clock.now
        for leg in old:
            m._record(CancelRequested(leg.client_order_id, "re-placing the stop"), ts)
            m._send("cancel", leg.client_order_id)
        stop_id = client_order_id(b.signal_id, LegRole.STOP, b.stops + 2)
        side = Side.SELL if b.side == Side.BUY else Side.BUY
        m.stats["stop_replaced"] += 1
        m._record(ProtectRequested(b.signal_id, b.symbol, stop_id, side, b.position, b.stop_price, why,
                                   tuple(leg.client_order_id for leg in old)), ts,
                  [notices.stop_replaced(b, why, stop_id, ts)])
        m._send("place_stop", StopRequest(b.signal_id, b.symbol, stop_id, side, b.position, b.stop_price, ts))

    def flatten(self, b: Bracket, why: str) -> None:
        m = self.m
        self.flattened.add(b.signal_id)
        m.stats["unprotected_flatten"] += 1
        m._record(AnomalyRecorded(f"{b.signal_id}: {why}", "flatten", f"{b.symbol} {b.position} unprotected"),
                  m.clock.now, [notices.unprotected_position(b, why, m.clock.now)])
        m._flatten_bracket(b, "unprotected", m.clock.now)

    def on_closed(self, b: Bracket) -> None:
        """A bracket went flat: a re-placed stop or the target may still work at the broker (no native OCO between
        them): cancel what is left so nothing can open a new position."""
        if not self.active or b.stops == 0:
            return
        m = self.m
        for leg in m.ledger.legs_of(b):
            if leg.role in (LegRole.STOP, LegRole.TARGET) and leg.state not in TERMINAL_LEG \
                    and leg.state != LegState.HELD:
                m._record(CancelRequested(leg.client_order_id, "flat"), m.clock.now)
                m._send("cancel", leg.client_order_id)


class WallTimers:
    """Live: submit and status timeouts on the wall clock. The broker answers in real time, whatever the market
    data's clock does (a replayed day races ahead of it; a quiet live market stands still)."""

    def __init__(self, timeout_seconds: float, *, active: bool) -> None:
        self.active = active
        self.timeout_ns = int(timeout_seconds * 1e9)
        self.since: dict[str, int] = {}

    def start(self, key: str) -> None:
        if self.active:
            self.since[key] = time.monotonic_ns()

    def due(self, key: str, wall_ns: int) -> bool:
        """``key`` has waited the timeout (its clock starts at the first question when it was never started)."""
        return wall_ns - self.since.setdefault(key, wall_ns) >= self.timeout_ns


class StateEventGuard:
    """Order-state events applied in the broker's time order, each once (bounded memory, oldest forgotten)."""

    def __init__(self, capacity: int, *, active: bool) -> None:
        self.capacity = capacity
        self.active = active
        self._last: OrderedDict[str, tuple[int, BrokerEvent]] = OrderedDict()

    def stale(self, ev: BrokerEvent) -> str:
        """Why ``ev`` must not be applied (``"duplicate"``, ``"out_of_order"``) or ``""``."""
        if not self.active or not isinstance(ev, Ack | Cancelled | Reject | Modified):
            return ""
        seen = self._last.get(ev.client_order_id)
        if seen is not None:
            ts, last = seen
            if ev == last:
                return "duplicate"
            if ev.ts_ns < ts:
                return "out_of_order"
        self._last[ev.client_order_id] = (ev.ts_ns, ev)
        self._last.move_to_end(ev.client_order_id)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return ""
