"""Prop-firm account rules (Topstep and the like): the limits a funded or evaluation account dies by.

A prop firm closes the account for good when equity touches its *maximum loss limit* (a floor that trails
the balance high by a fixed amount), pauses it for the day at the *daily loss limit*, refuses more than its
*maximum contracts*, wants every position flat by a fixed time (Topstep: 15:10 CT) and may only pay out when
no single day made too large a share of the profit (the *consistency* rule). The daemon's own daily limits
know none of that, so an account can be lost while the bot thinks it is fine.

Everything here is pure: integer cents, UTC nanoseconds, no clock, no file, no journal. The caller (the risk
gate and the manager) hands in an :class:`AccountView`, keeps the :class:`PropFirmState` this module returns
(journaled, so a restart neither forgets the trailing high-water mark nor re-sends an alert) and acts on the
:class:`PropFirmAlert` list. The same functions therefore answer the gate, ``tradebot status`` and the digest.

How the floor trails, per profile (``drawdown``):

- ``eod``: the high-water mark is the highest *end-of-day* balance (realized, after commissions); intraday
  gains move it only once the day has closed. Topstep's Trading Combine and Express Funded accounts work
  this way (their "Maximum Loss Limit").
- ``intraday``: the high-water mark follows the equity peak *including open profit*, tick by tick.

Either way the floor is ``high_water - max_loss``, capped at ``account_size + lock`` when the profile locks
(Topstep: the floor stops trailing once it reaches the starting balance), and it is breached when *equity*
(balance plus open P&L at the last price) reaches it: firms monitor it in real time.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tradebot.core.calendar import from_ns, local_ns
from tradebot.core.notifications import Severity
from tradebot.core.propfirm_profile import Drawdown as Drawdown
from tradebot.core.propfirm_profile import PropFirmProfile as PropFirmProfile
from tradebot.core.propfirm_profile import parse_profile as parse_profile
from tradebot.core.propfirm_profile import parse_profiles as parse_profiles

NS = 1_000_000_000
FLAT_BY_LEAD_NS = 300 * NS
"""On an early close the flat-by time comes this long before the close (as the auto-flatten does)."""


class Rule(enum.StrEnum):
    MAX_LOSS = "max_loss"
    DAILY_LOSS = "daily_loss"
    CONSISTENCY = "consistency"


# ---------------------------------------------------------------------------------------------------
# State (journaled) and the account as the books see it now


@dataclass(frozen=True, slots=True)
class PropFirmState:
    """Everything the rules must remember across restarts; the manager journals it whenever it changes."""

    high_water_cents: int
    """The balance high the floor trails (end-of-day balances, or the intraday equity peak)."""
    day: str = ""
    """Trading day the daily fields belong to (ISO date)."""
    day_start_balance_cents: int = 0
    alerts: tuple[str, ...] = ()
    """Alert keys already sent today (``max_loss:25``): never sent twice, not even after a restart."""
    breached: str = ""
    """``max_loss`` once the floor was touched: the account is gone at the firm; only the operator clears it."""
    day_breached: str = ""
    """``daily_loss`` / ``consistency`` for today only."""
    best_day_cents: int = 0
    """Largest net profit of one completed trading day (the consistency rule's numerator)."""
    profit_before_today_cents: int = 0
    """Net profit of all completed days."""
    offset_cents: int = 0
    """The account's balance at the firm minus the journal's net P&L: balance = offset + net P&L."""

    def to_payload(self) -> dict[str, Any]:
        return {"high_water_cents": self.high_water_cents, "day": self.day,
                "day_start_balance_cents": self.day_start_balance_cents, "alerts": list(self.alerts),
                "breached": self.breached, "day_breached": self.day_breached, "best_day_cents": self.best_day_cents,
                "profit_before_today_cents": self.profit_before_today_cents, "offset_cents": self.offset_cents}

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> PropFirmState:
        return cls(int(p["high_water_cents"]), str(p.get("day", "")), int(p.get("day_start_balance_cents", 0)),
                   tuple(str(a) for a in p.get("alerts", ())), str(p.get("breached", "")),
                   str(p.get("day_breached", "")), int(p.get("best_day_cents", 0)),
                   int(p.get("profit_before_today_cents", 0)), int(p.get("offset_cents", 0)))


def initial_state(profile: PropFirmProfile, balance_cents: int | None = None,
                  high_water_cents: int | None = None) -> PropFirmState:
    """A fresh account (or one the operator seeds with the firm's current balance and high-water mark)."""
    bal = profile.account_size_cents if balance_cents is None else balance_cents
    hw = max(bal, profile.account_size_cents if high_water_cents is None else high_water_cents)
    return PropFirmState(hw, day_start_balance_cents=bal, profit_before_today_cents=bal - profile.account_size_cents)


@dataclass(frozen=True, slots=True)
class AccountView:
    """The account as the books see it at one moment (cents; equity at the last prices)."""

    balance_cents: int
    """Starting balance plus every closed trade's net P&L."""
    equity_cents: int
    """Balance plus open P&L at the last price."""
    day_pnl_cents: int
    """Today's net P&L, realized plus open."""
    open_units: int = 0
    """Open contracts in micro units (a full-size contract is ``micro_ratio`` units), working entries included."""


@dataclass(frozen=True, slots=True)
class Headroom:
    """How far the account is from one limit."""

    rule: Rule
    limit_cents: int
    left_cents: int

    @property
    def left_pct(self) -> int:
        """Percentage of the limit still left (floored: 24.9 % is 24)."""
        if self.limit_cents <= 0:
            return 0
        return max(0, self.left_cents) * 100 // self.limit_cents


def floor_cents(profile: PropFirmProfile, state: PropFirmState) -> int:
    """The maximum loss limit: equity at or below it loses the account."""
    floor = state.high_water_cents - profile.max_loss_cents
    if profile.lock_cents is not None:
        floor = min(floor, profile.account_size_cents + profile.lock_cents)
    return floor


def headrooms(profile: PropFirmProfile, state: PropFirmState, acct: AccountView) -> list[Headroom]:
    out = [Headroom(Rule.MAX_LOSS, profile.max_loss_cents, acct.equity_cents - floor_cents(profile, state))]
    if profile.daily_loss_cents is not None:
        out.append(Headroom(Rule.DAILY_LOSS, profile.daily_loss_cents, profile.daily_loss_cents + acct.day_pnl_cents))
    return out


def consistency_cap_cents(profile: PropFirmProfile, state: PropFirmState) -> int | None:
    """Today's net profit at which new entries stop so the consistency rule stays satisfiable.

    With a ``p`` percent rule, a day making ``T`` on top of ``P`` earlier profit keeps ``T / (P + T) <= p``
    while ``T <= P * p / (100 - p)``; and a day below ``p`` percent of the profit target can never spoil a
    pass. The cap is the larger of the two, so the rule never stops a first profitable day early.
    """
    p = profile.consistency_pct
    if p is None:
        return None
    by_history = max(0, state.profit_before_today_cents) * p // (100 - p)
    by_target = (profile.profit_target_cents or 0) * p // 100
    cap = max(by_history, by_target)
    return cap if cap > 0 else None


# ---------------------------------------------------------------------------------------------------
# Alerts


@dataclass(frozen=True, slots=True)
class PropFirmAlert:
    key: str
    """``max_loss:25``, ``daily_loss:breach``, ...: one per day per key."""
    rule: Rule
    level: Severity
    title: str
    fields: dict[str, Any] = field(default_factory=dict)
    halt: bool = False
    """The rule is breached: stop new entries and flatten (the manager journals the halt)."""


def _usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{frac:02d}"


# ---------------------------------------------------------------------------------------------------
# The rules over time


def start_day(profile: PropFirmProfile, state: PropFirmState, day: str, balance_cents: int) -> PropFirmState:
    """A new trading day begins with ``balance_cents`` (yesterday's end-of-day balance).

    End-of-day trailing folds that balance into the high-water mark now; yesterday's net result updates the
    consistency figures; today's alerts and daily breach are cleared. A repeated call for the same day changes
    nothing (a restart re-runs the session start).
    """
    if day == state.day:
        return state
    hw = state.high_water_cents
    if state.day:  # a day ended: account for it
        hw = max(hw, balance_cents)
        day_net = balance_cents - state.day_start_balance_cents
        best = max(state.best_day_cents, day_net)
        before = state.profit_before_today_cents + day_net
    else:
        best, before = state.best_day_cents, state.profit_before_today_cents
        hw = max(hw, balance_cents)
    return replace(state, high_water_cents=hw, day=day, day_start_balance_cents=balance_cents, alerts=(),
                   day_breached="", best_day_cents=best, profit_before_today_cents=before)


def observe(profile: PropFirmProfile, state: PropFirmState, acct: AccountView,
            steps: Sequence[int]) -> tuple[PropFirmState, list[PropFirmAlert]]:
    """The account moved (a fill, a new price): trail the intraday high-water mark, raise due alerts.

    Each alert goes out once per trading day per step (the keys are part of the journaled state). A breach
    alert carries ``halt``: the account must stop trading (and be flattened) now.
    """
    alerts: list[PropFirmAlert] = []
    if profile.drawdown == Drawdown.INTRADAY and acct.equity_cents > state.high_water_cents:
        state = replace(state, high_water_cents=acct.equity_cents)
    sent = set(state.alerts)
    breached, day_breached = state.breached, state.day_breached
    floor = floor_cents(profile, state)
    for h in headrooms(profile, state, acct):
        name = "Maximum loss limit" if h.rule == Rule.MAX_LOSS else "Daily loss limit"
        info = {"rule": h.rule.value, "limit": _usd(h.limit_cents), "left": _usd(max(0, h.left_cents)),
                "left_pct": h.left_pct, "equity": _usd(acct.equity_cents), "day_pnl": _usd(acct.day_pnl_cents)}
        if h.rule == Rule.MAX_LOSS:
            info["floor"] = _usd(floor)
            info["high_water"] = _usd(state.high_water_cents)
        if h.left_cents <= 0:
            key = f"{h.rule.value}:breach"
            if h.rule == Rule.MAX_LOSS:
                breached = Rule.MAX_LOSS.value
            elif not day_breached:
                day_breached = Rule.DAILY_LOSS.value
            if key not in sent:
                sent.add(key)
                what = ("the firm closes the account at this level" if h.rule == Rule.MAX_LOSS
                        else "no more trading today")
                alerts.append(PropFirmAlert(key, h.rule, Severity.CRITICAL,
                                            f"{name} reached: flattening, {what}", info, halt=True))
            continue
        due = [s for s in steps if h.left_cents * 100 <= s * h.limit_cents]
        if not due:
            continue
        step = min(due)
        key = f"{h.rule.value}:{step}"
        if key in sent:
            continue
        sent.update(f"{h.rule.value}:{s}" for s in due)  # a jump past several steps sends one alert
        level = Severity.CRITICAL if step == min(steps) else Severity.WARNING
        alerts.append(PropFirmAlert(key, h.rule, level, f"{name}: {h.left_pct}% headroom left "
                                    f"({_usd(max(0, h.left_cents))} of {_usd(h.limit_cents)})", info))
    cap = consistency_cap_cents(profile, state)
    if cap is not None and acct.day_pnl_cents >= cap and not day_breached:
        day_breached = Rule.CONSISTENCY.value
        key = "consistency:cap"
        if key not in sent:
            sent.add(key)
            alerts.append(PropFirmAlert(key, Rule.CONSISTENCY, Severity.WARNING,
                                        f"Consistency rule: today's profit reached {_usd(cap)}, no new entries today",
                                        {"rule": "consistency", "day_pnl": _usd(acct.day_pnl_cents), "cap": _usd(cap),
                                         "pct": profile.consistency_pct}, halt=False))
    new = replace(state, alerts=tuple(sorted(sent)), breached=breached, day_breached=day_breached)
    return new, alerts


def flat_by_ns(profile: PropFirmProfile, day: dt.date, close_ns: int, zone: dt.tzinfo) -> int | None:
    """When positions must be flat on ``day`` (exchange-local ``flat_by``, earlier on an early close)."""
    if profile.flat_by is None:
        return None
    return min(local_ns(day, profile.flat_by, zone), close_ns - FLAT_BY_LEAD_NS)


@dataclass(frozen=True, slots=True)
class EntryOrder:
    """The entry the gate is asked about, sized: ``units`` in micro units, the loss at its stop in cents."""

    symbol: str
    units: int
    stop_loss_cents: int | None
    """Loss if the stop fills (entry to stop, all contracts, plus commissions); ``None``: unknown."""
    ts_ns: int


def check_entry(profile: PropFirmProfile, state: PropFirmState, acct: AccountView, order: EntryOrder, *,
                flat_by_at_ns: int | None, zone: dt.tzinfo, stop_within_headroom: bool = True) -> str:
    """Why this entry breaks an account rule (``""``: it does not). Checked before every entry."""
    if state.breached:
        return (f"prop-firm {profile.name}: maximum loss limit reached (floor "
                f"{_usd(floor_cents(profile, state))}); the operator must resume")
    if state.day_breached == Rule.DAILY_LOSS.value:
        return f"prop-firm {profile.name}: daily loss limit {_usd(profile.daily_loss_cents or 0)} reached today"
    if state.day_breached == Rule.CONSISTENCY.value:
        return (f"prop-firm {profile.name}: today's profit reached the consistency cap "
                f"{_usd(consistency_cap_cents(profile, state) or 0)}")
    if flat_by_at_ns is not None and order.ts_ns >= flat_by_at_ns:
        local = from_ns(flat_by_at_ns, zone)
        return f"prop-firm {profile.name}: after the flat-by time {local:%H:%M} {local.tzname()}"
    if acct.open_units + order.units > profile.max_units:
        return (f"prop-firm {profile.name}: {_contracts(acct.open_units + order.units, profile)} contracts would "
                f"exceed the maximum of {profile.max_contracts}")
    rooms = headrooms(profile, state, acct)
    for h in rooms:
        if h.left_cents <= 0:
            return f"prop-firm {profile.name}: {h.rule.value.replace('_', ' ')} limit reached"
    if stop_within_headroom and order.stop_loss_cents is not None:
        for h in rooms:
            if order.stop_loss_cents >= h.left_cents:
                return (f"prop-firm {profile.name}: a stop-out would lose {_usd(order.stop_loss_cents)}, "
                        f"{h.rule.value.replace('_', ' ')} headroom is {_usd(h.left_cents)}")
    return ""


def _contracts(units: int, profile: PropFirmProfile) -> str:
    whole, rest = divmod(units, profile.micro_ratio)
    return str(whole) if not rest else f"{units / profile.micro_ratio:g}"


def units_of(symbol: str, qty: int, micro_ratio: int, micros: Mapping[str, str]) -> int:
    """Contracts as micro units: a micro (``MES``, a value of ``micros``) is 1, anything else ``micro_ratio``."""
    return abs(qty) * (1 if symbol in micros.values() else micro_ratio)


def summary(profile: PropFirmProfile, state: PropFirmState, acct: AccountView) -> dict[str, Any]:
    """For ``status`` and the digest: each limit, what is left of it, and the account's standing."""
    rooms = {h.rule.value: {"limit_cents": h.limit_cents, "left_cents": h.left_cents, "left_pct": h.left_pct}
             for h in headrooms(profile, state, acct)}
    return {"profile": profile.name, "firm": profile.firm, "program": profile.program,
            "drawdown": profile.drawdown.value, "floor_cents": floor_cents(profile, state),
            "high_water_cents": state.high_water_cents, "equity_cents": acct.equity_cents,
            "max_contracts": profile.max_contracts, "open_contracts": _contracts(acct.open_units, profile),
            "flat_by": profile.flat_by.strftime("%H:%M") if profile.flat_by else None,
            "consistency_pct": profile.consistency_pct, "consistency_cap_cents": consistency_cap_cents(profile, state),
            "headroom": rooms, "breached": state.breached, "day_breached": state.day_breached,
            "alerts_today": list(state.alerts)}
