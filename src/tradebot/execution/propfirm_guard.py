"""The prop-firm rules wired into the execution manager: a gate check, observation of the account, journaling.

:mod:`tradebot.execution.propfirm` decides; this module feeds it the account as the manager's books see it and
journals every state change as one ``propfirm`` record (:class:`~tradebot.execution.journal.PropFirmUpdated`),
with its notifications and, on a breach, the halt and the brackets to close in the same record. The state is
read back from the ledger (the last journaled record), so a restart resumes exactly where the journal left it.
The manager calls it with one line at each point: construction (:meth:`PropFirmGuard.attach`), the start of a
trading day, a fill or a new price with a position open, and the operator's resume.

The balance the rules see is the firm's: ``offset + the journal's net P&L``, where ``offset`` is fixed when the
rules first run on a database (``TRADEBOT_PROPFIRM__BALANCE``, default the profile's account size).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from tradebot.core.calendar import CT, ET, UTC, ExchangeCalendar
from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, spec_for, tick_value_of
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification
from tradebot.execution import notices
from tradebot.execution.gate import Candidate, GateView, RiskGate
from tradebot.execution.journal import JournalEvent, PropFirmUpdated, StateChange
from tradebot.execution.ledger import Effect, Ledger
from tradebot.execution.model import HaltKind, TradingState
from tradebot.execution.propfirm import (
    AccountView,
    EntryOrder,
    PropFirmAlert,
    PropFirmProfile,
    PropFirmState,
    check_entry,
    flat_by_ns,
    initial_state,
    observe,
    start_day,
    summary,
    units_of,
)
from tradebot.execution.risk import MICRO_OF, fee_table, fmt_cents, usd_to_cents
from tradebot.execution.session import SessionClock

log = get_logger(__name__)


class PropFirmHost(Protocol):
    """What the guard needs of the execution manager (the manager is one; the guard never imports it)."""

    settings: Settings
    calendar: ExchangeCalendar
    gate: RiskGate
    clock: SessionClock
    ledger: Ledger

    def unrealized_cents(self, symbol: str | None = None) -> int: ...

    def day_pnl_cents(self, include_unrealized: bool = True) -> int: ...

    def mark(self, symbol: str) -> int | None: ...

    def _record(self, event: JournalEvent, ts_ns: int, notes: Sequence[Notification] = ()) -> list[Effect]: ...

    def _complete_flattens(self, ts_ns: int) -> None: ...


def exchange_zone(calendar: ExchangeCalendar) -> dt.tzinfo:
    """The zone the exchange keeps time in: US Central for CME, New York for stocks, UTC for 24/7 crypto."""
    if calendar.twenty_four_seven:
        return UTC
    return CT if getattr(calendar, "template", "") in ("equity", "energy", "metals") else ET


class PropFirmGuard:
    """One account profile's rules over one manager's books."""

    def __init__(self, m: PropFirmHost, profile: PropFirmProfile, steps: tuple[int, ...]) -> None:
        self.m = m
        self.profile = profile
        self.steps = steps
        self.zone = exchange_zone(m.calendar)
        self.stats: Counter[str] = Counter()
        self._fees = fee_table(m.settings)
        self._peak_step = usd_to_cents(m.settings.propfirm.intraday_journal_step)
        self._peak = 0
        """Intraday trailing: the equity peak not yet journaled (journaled once it rises ``_peak_step``)."""

    @classmethod
    def attach(cls, m: PropFirmHost) -> PropFirmGuard | None:
        """The guard for the configured profile, its entry check added to the manager's risk gate and its
        flat-by time to the session clock; ``None`` when no profile is configured."""
        profile = m.settings.propfirm.account
        if profile is None:
            return None
        guard = cls(m, profile, m.settings.propfirm.alert_steps)
        m.gate.add(guard.check)
        if profile.flat_by is not None:
            m.clock.flat_by = (profile.flat_by, guard.zone)
        return guard

    # -- state --------------------------------------------------------------------------------------

    @property
    def state(self) -> PropFirmState:
        """The journaled state (a fresh account's when this database never ran these rules for this profile)."""
        p = self.m.ledger.propfirm
        if p is not None and p.profile == self.profile.name:
            return PropFirmState(p.high_water_cents, p.day, p.day_start_balance_cents, p.alerts, p.breached,
                                 p.day_breached, p.best_day_cents, p.profit_before_today_cents, p.offset_cents)
        cfg = self.m.settings.propfirm
        bal = usd_to_cents(cfg.balance) if cfg.balance is not None else None
        hw = usd_to_cents(cfg.high_water) if cfg.high_water is not None else None
        st = initial_state(self.profile, bal, hw)
        return dataclasses.replace(st, offset_cents=st.day_start_balance_cents - self.m.ledger.total_net_cents)

    def balance(self, st: PropFirmState) -> int:
        return st.offset_cents + self.m.ledger.total_net_cents

    def account(self, st: PropFirmState) -> AccountView:
        m = self.m
        bal = self.balance(st)
        units = sum(units_of(b.symbol, max(0, b.quantity - b.exit_filled), self.profile.micro_ratio, MICRO_OF)
                    for b in m.ledger.open_brackets())
        return AccountView(bal, bal + m.unrealized_cents(), m.day_pnl_cents(), units)

    def _journal(self, st: PropFirmState, why: str, ts_ns: int, notes: list[Notification],
                 flatten: list[str] | None = None, flatten_reason: str = "",
                 set_state: StateChange | None = None) -> None:
        event = PropFirmUpdated(self.profile.name, why, st.high_water_cents, st.offset_cents, st.day,
                                st.day_start_balance_cents, st.alerts, st.breached, st.day_breached,
                                st.best_day_cents, st.profit_before_today_cents, tuple(flatten or ()),
                                flatten_reason if flatten else "", set_state)
        self.stats[f"journaled_{why}"] += 1
        self.m._record(event, ts_ns, notes)

    # -- the manager's hooks ------------------------------------------------------------------------

    def start_day(self, day: str, ts_ns: int) -> None:
        """A trading day began (idempotent): fold yesterday's end-of-day balance into the trailing floor."""
        st = self.state
        fresh = self.m.ledger.propfirm is None or self.m.ledger.propfirm.profile != self.profile.name
        new = start_day(self.profile, st, day, self.balance(st))
        if new != st or fresh:
            self._journal(new, "start" if fresh else "day", ts_ns, [])

    def observe(self, ts_ns: int) -> None:
        """The account moved (a fill, a price with a position open): alerts, breaches, the intraday peak."""
        journaled = self.state
        st = journaled
        if self._peak > st.high_water_cents:  # an intraday peak not journaled yet still tightens the floor
            st = dataclasses.replace(st, high_water_cents=self._peak)
        new, alerts = observe(self.profile, st, self.account(st), self.steps)
        self._peak = max(self._peak, new.high_water_cents)
        peak = new.high_water_cents - journaled.high_water_cents >= self._peak_step
        if not (alerts or peak or new.breached != st.breached or new.day_breached != st.day_breached):
            return
        why = ("breach" if any(a.halt for a in alerts) else "peak" if peak and not alerts
               and new.day_breached == st.day_breached else "alert")
        notes = [self._note(a, ts_ns) for a in alerts]
        halt = next((a for a in alerts if a.halt), None)
        if halt is None:
            self._journal(new, why, ts_ns, notes)
            return
        t = self.m.ledger.trading
        kind = HaltKind.OPERATOR if halt.rule.value == "max_loss" else HaltKind.LIMIT
        set_state = None
        if t.state == TradingState.ACTIVE or t.kind in (HaltKind.LIMIT, HaltKind.EOD, HaltKind.MARGIN):
            set_state = StateChange(TradingState.HALTED, kind,
                                    f"prop-firm {self.profile.name}: {halt.rule.value.replace('_', ' ')} limit reached")
        self.stats[f"breach_{halt.rule.value}"] += 1
        log.warning("prop-firm limit reached", profile=self.profile.name, rule=halt.rule.value)
        self._journal(new, why, ts_ns, notes, [b.signal_id for b in self.m.ledger.open_brackets()],
                      f"propfirm_{halt.rule.value}", set_state)
        self.m._complete_flattens(ts_ns)

    def clear(self, ts_ns: int) -> None:
        """The operator resumed trading: a recorded breach no longer blocks entries (their call, journaled)."""
        st = self.state
        if st.breached or st.day_breached:
            note = notices.propfirm_cleared(self.profile.name, st.breached or st.day_breached, ts_ns)
            self._journal(dataclasses.replace(st, breached="", day_breached=""), "cleared", ts_ns, [note])

    def check(self, view: GateView, c: Candidate) -> str:
        """The risk gate's rule: the account's limits, contracts, flat-by time and the stop-out's cost."""
        st = self.state
        units = units_of(c.symbol, c.quantity, self.profile.micro_ratio, MICRO_OF)
        order = EntryOrder(c.symbol, units, self._stop_loss(c), c.intent.ts_ns)
        at = flat_by_ns(self.profile, dt.date.fromisoformat(self.m.clock.day), self.m.clock.close_ns, self.zone) \
            if self.m.clock.day else None
        reason = check_entry(self.profile, st, self.account(st), order, flat_by_at_ns=at, zone=self.zone,
                             stop_within_headroom=self.m.settings.propfirm.stop_within_headroom)
        if reason:
            self.stats["entries_refused"] += 1
        return reason

    def _stop_loss(self, c: Candidate) -> int | None:
        """Cents lost if the stop fills: entry (limit price, else the last price) to stop, plus round-trip fees."""
        entry = c.intent.entry_price if c.intent.entry_price is not None else self.m.mark(c.symbol)
        if entry is None or c.quantity <= 0:
            return None
        try:
            tick = tick_value_of(spec_for(c.symbol))
        except UnknownContractError:
            return None
        ticks = abs(entry - c.intent.stop_price)
        return math.ceil(ticks * tick * c.quantity) + 2 * self._fees.get(c.symbol, 0) * c.quantity

    def summary(self) -> dict[str, Any]:
        st = self.state
        out = summary(self.profile, st, self.account(st))
        out["stats"] = dict(self.stats)
        return out

    def _note(self, a: PropFirmAlert, ts_ns: int) -> Notification:
        return notices.propfirm_alert(self.profile.name, a.key, a.level, a.title, a.fields, ts_ns)


def describe(summary_: dict[str, Any]) -> list[str]:
    """Lines for ``tradebot status`` and the digest."""
    h = summary_.get("headroom", {})
    lines = [f"prop-firm {summary_['profile']} ({summary_.get('firm', '')}; drawdown {summary_['drawdown']}): "
             f"floor {fmt_cents(summary_['floor_cents'])}, equity {fmt_cents(summary_['equity_cents'])}"]
    for rule, v in h.items():
        lines.append(f"  {rule.replace('_', ' ')}: {fmt_cents(v['left_cents'])} of {fmt_cents(v['limit_cents'])} "
                     f"left ({v['left_pct']}%)")
    lines.append(f"  contracts {summary_['open_contracts']} of {summary_['max_contracts']}"
                 + (f", flat by {summary_['flat_by']} exchange time" if summary_.get("flat_by") else ""))
    if summary_.get("breached") or summary_.get("day_breached"):
        lines.append(f"  BREACHED: {summary_.get('breached') or summary_.get('day_breached')}")
    return lines
