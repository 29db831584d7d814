"""Reconciliation: the journal against the broker, at start (recovery) and every N seconds in live mode.

The journal is our record, the broker's is the truth about money: at start the ledger is rebuilt from the
journal, a journal-backed broker (paper) is restored from it, and then three things are compared with what the
broker reports: fills, working orders and net positions.

- **Fills the journal lacks** (the daemon was down, or the push stream dropped while a stop filled) are
  journaled from the broker's record (:meth:`LiveBroker.query_fills`), de-duplicated by the broker's fill id,
  before anything else is compared, so the bracket they belong to closes or shrinks exactly as if we had seen
  them live. Fills of orders that are not ours are not journaled (they have no bracket); the position they leave
  is what matters and is compared below.
- **Orders**: a leg we think is working that the broker shows cancelled/rejected is journaled so; a leg the
  broker does not show is asked about (``request_status``: never re-sent), except a stop or target of a bracket
  that is already flat, which the broker's one-cancels-other removed. A working order at the broker that the
  journal does not know is a mismatch.
- **Positions**: per symbol, the journal's net quantity must equal the broker's.

What cannot be explained halts new entries (HALTED, kind error: only the operator resumes) with a critical
alert; exits stay managed. A foreign position is never silently taken over: ``tradebot adopt`` does that, with
a protective stop (see :func:`adopt`). During the day a mismatch must be seen on two consecutive checks before
it halts: a fill can be in flight between the broker's view and its event for a moment, never for N seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tradebot.core.config import ExecutionSettings
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification
from tradebot.execution import notices
from tradebot.execution.broker import Broker, RestorableBroker
from tradebot.execution.intake import FillDeduper
from tradebot.execution.journal import (
    JournalEvent,
    OrderAcknowledged,
    OrderCancelled,
    OrderRejected,
    PositionAdopted,
    ReconcileChecked,
    RecoveryChecked,
    StateChange,
)
from tradebot.execution.journal import read as read_journal
from tradebot.execution.ledger import Bracket, Effect, Ledger
from tradebot.execution.model import (
    TERMINAL_LEG,
    BrokerEvent,
    Fill,
    HaltKind,
    LegRole,
    LegState,
    TradingState,
)
from tradebot.execution.protection import Protection
from tradebot.execution.risk import usd_to_cents
from tradebot.execution.session import SessionClock
from tradebot.state.store import StateStore

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    ok: bool
    journal_records: int
    open_brackets: list[str]
    mismatches: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


class ReconcileHost(Protocol):
    """What recovery and reconciliation need of the execution manager: its books, its broker and the steps of its
    start-up (the manager is one; this module never imports it)."""

    ex: ExecutionSettings
    store: StateStore
    broker: Broker
    ledger: Ledger
    clock: SessionClock
    stats: Counter[str]
    protection: Protection
    last_recovery: RecoveryReport | None
    _dedupe: FillDeduper
    _status_asked: dict[str, int]
    _recovered: bool

    def pump(self) -> int: ...

    def mark(self, symbol: str) -> int | None: ...

    def on_broker_event(self, ev: BrokerEvent) -> None: ...

    def _record(self, event: JournalEvent, ts_ns: int, notes: Sequence[Notification] = ()) -> list[Effect]: ...

    def _record_event(self, event: JournalEvent, ts_ns: int) -> None: ...

    def _day_of(self, ts_ns: int) -> str: ...

    def _require(self) -> None: ...

    def _ask_status(self, coid: str, now_ns: int) -> None: ...

    def _complete_flattens(self, ts_ns: int) -> None: ...

    def _complete_session(self, now_ns: int) -> None: ...

    def _enforce(self, b: Bracket, ts_ns: int) -> None: ...

    def _set_session_times(self, now_ns: int) -> None: ...


def _halt_state(reason: str) -> StateChange:
    return StateChange(TradingState.HALTED, HaltKind.ERROR, reason)


def recover(m: ReconcileHost, now_ns: int) -> RecoveryReport:
    """Rebuild from the journal, restore a journal-backed broker, reconcile, resume open brackets."""
    records = list(read_journal(m.store))
    m.ledger = Ledger(usd_to_cents(m.ex.starting_balance))
    m.ledger.replay(records)
    m.store.replace_projections(m.ledger.all_rows())
    for fid in list(m.ledger.fills)[-m._dedupe.capacity:]:
        m._dedupe.add(fid)
    m.clock.now = max(now_ns, records[-1].ts_ns if records else 0)
    if isinstance(m.broker, RestorableBroker):
        m.broker.restore(records)
    m._recovered = True
    actions = journal_missed_fills(m)
    mismatches, more = reconcile(m)
    actions += more
    open_ids = [b.signal_id for b in m.ledger.open_brackets()]
    if mismatches:
        m.stats["recovery_mismatch"] += 1
        m._record(RecoveryChecked(
            "mismatch", "; ".join(mismatches), _halt_state("recovery mismatch: " + "; ".join(mismatches[:5]))),
            m.clock.now, [notices.recovery_mismatch(mismatches, open_ids)])
    else:
        m._record(RecoveryChecked("ok", f"{len(open_ids)} open brackets"), m.clock.now)
    # Finish whatever a crash interrupted: session duties, decided flattens, bracket invariants.
    m._complete_session(m.clock.now)
    m._complete_flattens(m.clock.now)
    for b in list(m.ledger.open_brackets()):
        m._enforce(b, m.clock.now)
    m.pump()
    if m.ledger.trading.trading_day:
        m._set_session_times(m.clock.now)
    log.info("execution recovered", records=len(records), open=len(open_ids), mismatches=len(mismatches),
             state=m.ledger.trading.state.value)
    m.last_recovery = RecoveryReport(not mismatches, len(records), open_ids, mismatches, actions)
    return m.last_recovery


def journal_missed_fills(m: ReconcileHost) -> list[str]:
    """Journal the broker's fills of our orders that the journal lacks (oldest first); what was done, as text."""
    query = getattr(m.broker, "query_fills", None)
    if query is None:
        return []
    try:
        fills: list[Fill] = list(query())
    except Exception as exc:  # the view is local; a failure is an adapter bug: counted, reconciled next time
        m.stats["query_fills_error"] += 1
        log.error("broker fills could not be read", error=repr(exc))
        return []
    actions: list[str] = []
    foreign = 0
    for f in sorted(fills, key=lambda f: (f.ts_ns, f.fill_id)):
        if f.fill_id in m._dedupe or f.fill_id in m.ledger.fills or m.store.fill_seen(f.fill_id):
            continue
        if f.client_order_id not in m.ledger.legs:
            foreign += 1
            continue
        m.stats["fills_from_broker_record"] += 1
        m.on_broker_event(f)
        actions.append(f"fill {f.fill_id} of {f.client_order_id} journaled from the broker's record")
    if foreign:
        m.stats["foreign_fills"] += foreign
        actions.append(f"{foreign} fill(s) of orders that are not ours left out (positions are compared)")
    if actions:
        log.warning("fills journaled from the broker's record", actions=actions)
    return actions


def reconcile(m: ReconcileHost, *, periodic: bool = False) -> tuple[list[str], list[str]]:
    """Compare orders and positions with the broker; journal what the broker explains, return the rest."""
    mismatches: list[str] = []
    actions: list[str] = []
    ledger = m.ledger
    broker_orders = {o.client_order_id: o for o in m.broker.query_orders()}
    for leg in list(ledger.legs.values()):
        if leg.state in TERMINAL_LEG:
            continue
        bo = broker_orders.get(leg.client_order_id)
        if bo is None:
            b = ledger.brackets.get(leg.signal_id)
            if (leg.role in (LegRole.STOP, LegRole.TARGET) and b is not None and b.entry_filled > 0
                    and b.position == 0 and ledger._entry_done(b)):
                # The bracket is flat: the broker's one-cancels-other took this leg away.
                m._record_event(OrderCancelled(leg.client_order_id, "gone at the broker: bracket flat",
                                               m._day_of(m.clock.now), "reconcile"), m.clock.now)
                actions.append(f"{leg.client_order_id} gone at the broker after its bracket closed")
            elif leg.state == LegState.HELD:
                continue
            elif periodic and leg.state == LegState.PENDING:
                continue  # in flight: the submit timeout asks about it
            elif leg.state in (LegState.PENDING, LegState.UNKNOWN) or live_broker(m):
                if leg.client_order_id not in m._status_asked:
                    m._ask_status(leg.client_order_id, m.clock.now)
                    actions.append(f"status asked for {leg.client_order_id}")
            else:
                mismatches.append(f"{leg.client_order_id} is {leg.state.value} here but unknown to the broker")
            continue
        if bo.filled_qty != leg.filled_qty:
            mismatches.append(f"{leg.client_order_id}: broker filled {bo.filled_qty}, journal {leg.filled_qty}")
            continue
        if bo.state == leg.state:
            continue
        day = m._day_of(bo.updated_ns or m.clock.now)
        if bo.state == LegState.CANCELLED:
            m._record_event(OrderCancelled(bo.client_order_id, bo.reason or "reconciled", day, "reconcile"),
                            bo.updated_ns or m.clock.now)
            actions.append(f"{bo.client_order_id} cancelled at broker")
        elif bo.state == LegState.REJECTED:
            m._record_event(OrderRejected(bo.client_order_id, bo.reason or "reconciled", "reconcile"),
                            bo.updated_ns or m.clock.now)
            actions.append(f"{bo.client_order_id} rejected at broker")
        elif bo.state in (LegState.WORKING, LegState.PARTIALLY_FILLED) and leg.state in (
                LegState.PENDING, LegState.UNKNOWN, LegState.HELD):
            if leg.state != LegState.HELD:
                m._record_event(OrderAcknowledged(bo.client_order_id, "reconciled"), bo.updated_ns or m.clock.now)
                actions.append(f"{bo.client_order_id} working at broker")
        elif bo.state == LegState.HELD and leg.state == LegState.WORKING and leg.filled_qty == 0:
            continue
        elif bo.state == LegState.FILLED and leg.state in (LegState.WORKING, LegState.PARTIALLY_FILLED):
            continue  # quantities agree (checked above): the order's size shrank with the position (OCO)
        else:
            mismatches.append(f"{leg.client_order_id}: broker {bo.state.value}, journal {leg.state.value}")
    for coid, bo in broker_orders.items():
        if coid not in ledger.legs and bo.state not in TERMINAL_LEG:
            mismatches.append(f"broker has working order {coid} the journal does not know")
    ours = {s: q for s, book in ledger.positions.items() if (q := book.qty)}
    theirs = m.broker.query_positions()
    for sym in sorted(set(ours) | set(theirs)):
        if ours.get(sym, 0) != theirs.get(sym, 0):
            mismatches.append(f"position {sym}: journal {ours.get(sym, 0)}, broker {theirs.get(sym, 0)}")
    return mismatches, actions


def live_broker(m: ReconcileHost) -> bool:
    """A broker reached over the network (its state lives at the broker, not in our journal)."""
    from tradebot.execution.brokers import LiveBroker

    return isinstance(m.broker, LiveBroker)


class Reconciler:
    """The periodic check (live): drain events, journal missed fills, compare; halt on a persistent mismatch."""

    def __init__(self, manager: ReconcileHost) -> None:
        self.m = manager
        self.previous: set[str] = set()
        self.checks = 0
        self.halts = 0
        self.last: list[str] = []

    def check(self, now_ns: int) -> list[str]:
        """One pass; returns the mismatches that halted trading (empty when all is explained)."""
        m = self.m
        m._require()
        m.clock.touch(now_ns)
        self.checks += 1
        m.pump()
        actions = journal_missed_fills(m)
        mismatches, more = reconcile(m, periodic=True)
        actions += more
        m.pump()
        self.last = mismatches
        persistent = [x for x in mismatches if x in self.previous]
        self.previous = set(mismatches)
        if actions:
            m.stats["reconcile_actions"] += len(actions)
        if not persistent:
            return []
        t = m.ledger.trading
        if t.state == TradingState.HALTED and t.kind == HaltKind.ERROR and t.reason.startswith("reconcile:"):
            return persistent  # already halted for this; no second alert every N seconds
        self.halts += 1
        m.stats["reconcile_mismatch"] += 1
        event = ReconcileChecked("mismatch", "; ".join(persistent),
                                 _halt_state("reconcile: " + "; ".join(persistent[:5])))
        m._record(event, m.clock.now, [notices.reconcile_mismatch(
            persistent, [b.signal_id for b in m.ledger.open_brackets()], m.clock.now)])
        return persistent


class AdoptError(ValueError):
    """The operator's adoption was refused; the message says why (nothing was journaled or sent)."""


def adopt(m: ReconcileHost, symbol: str, stop_price: int, now_ns: int, reason: str = "") -> str:
    """Take over the position the broker holds beyond the journal's on ``symbol``, protected by ``stop_price``.

    What adoption requires (and refuses without): the broker holds more (or less) of ``symbol`` than the journal
    explains and no bracket of ours is open on that contract family; a market price has been seen (the adopted
    entry is booked at it, so the day's P&L counts from the adoption, not from the unknown original fill); and a
    stop on the losing side of that price. The position becomes a bracket (``ADOPT-<root>-<ns>``) whose stop is
    placed at once as a stand-alone order and watched by the no-naked-position rule (not confirmed in time:
    flattened). Trading stays halted: the operator resumes once satisfied.
    """
    from tradebot.core.contracts import UnknownContractError, spec_for, tick_value_of
    from tradebot.core.types import Side
    from tradebot.execution.risk import family, same_family

    m._require()
    try:
        root = spec_for(symbol).root
    except UnknownContractError:
        raise AdoptError(f"unknown contract {symbol!r}") from None
    theirs = m.broker.query_positions().get(root, 0)
    ours = m.ledger.position_qty(root)
    diff = theirs - ours
    if diff == 0:
        raise AdoptError(f"nothing to adopt: the journal and the broker both hold {ours} {root}")
    mine = [b.signal_id for b in m.ledger.open_brackets() if same_family(b.symbol, root)]
    if mine:
        raise AdoptError(f"bracket {mine[0]} is open on {family(root)}: flatten it first (one position per family)")
    mark = m.mark(root)
    if mark is None:
        raise AdoptError(f"no market price for {root} yet: wait for market data, then adopt")
    long = diff > 0
    if (stop_price >= mark) if long else (stop_price <= mark):
        raise AdoptError(f"the stop must be {'below' if long else 'above'} the market ({spec_for(root).fmt(mark)}) "
                         f"for a {'long' if long else 'short'} position")
    m.clock.touch(now_ns)
    ts = m.clock.now
    sid = f"ADOPT-{root}-{ts}"
    m.stats["adopted"] += 1
    m._record(PositionAdopted(sid, root, Side.BUY if long else Side.SELL, abs(diff), mark, stop_price,
                              tick_value_of(spec_for(root)), m._day_of(ts), reason or "operator adopt"), ts,
              [notices.position_adopted(sid, root, long, abs(diff), mark, stop_price, reason or "operator adopt", ts)])
    b = m.ledger.brackets[sid]
    m.protection.replace(b, "adopted by the operator")
    m.pump()
    return sid
