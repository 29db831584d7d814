"""Risk decisions as pure functions: what the manager journals when a trading day starts, the tier changes, a daily
limit is reached, margins are checked, the auto-flatten time comes or an order-flow exit signal arrives.

Each function reads the ledger (never changes it) and returns a :class:`Decision`: the typed journal event and the
notifications that go with it, or ``None`` when there is nothing to record. The manager commits the decision in one
transaction and carries out what it ordered (flattens), so the rules are unit-tested on a bare :class:`Ledger`
without a store, a broker or a clock, like the pre-trade checks in :mod:`tradebot.execution.gate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tradebot.core.config import Settings
from tradebot.core.notifications import Notification
from tradebot.core.types import Side
from tradebot.core.values import CapitalTier
from tradebot.execution import notices
from tradebot.execution.journal import (
    AutoFlattenDecided,
    DailyLimitHit,
    ExitSignalDecided,
    FlattenRequested,
    JournalEvent,
    MarginChecked,
    MarginRow,
    ModifyRequested,
    SessionStarted,
    StateChange,
    TierChanged,
)
from tradebot.execution.ledger import Bracket, Ledger
from tradebot.execution.model import (
    DAILY_KINDS,
    TERMINAL_BRACKET,
    TERMINAL_LEG,
    HaltKind,
    LegRole,
    TradingState,
    client_order_id,
)
from tradebot.execution.risk import MarginResult, choose_contract, fmt_cents, same_family, tier_for_balance


@dataclass(frozen=True, slots=True)
class Decision:
    event: JournalEvent
    notes: tuple[Notification, ...] = ()


# ---------------------------------------------------------------------------------------------------
# The trading day and its tier


def session_start(ledger: Ledger, day: str, mode: str, symbols: Sequence[str], now_ns: int) -> Decision | None:
    """A new trading day clears the daily halts (limit, margin, end of day); ``None`` when it is already the day."""
    t = ledger.trading
    if day == t.trading_day:
        return None
    if t.state != TradingState.ACTIVE and t.kind in DAILY_KINDS:
        resume = StateChange(TradingState.ACTIVE, HaltKind.NONE, "new trading day")
        return Decision(SessionStarted(day, mode, tuple(symbols), resume),
                        (notices.trading_state(resume.state, resume.kind, resume.reason, now_ns),))
    return Decision(SessionStarted(day, mode, tuple(symbols)))


def current_tier(ledger: Ledger, tiers: Sequence[CapitalTier], enabled: bool) -> CapitalTier | None:
    """The tier the trading day started with (``None``: tiers off); before any, the balance's."""
    if not enabled:
        return None
    n = ledger.trading.tier_number
    for t in tiers:
        if n is not None and t.number == n:
            return t
    return tier_for_balance(tiers, ledger.balance_cents)


def tier_change(ledger: Ledger, tiers: Sequence[CapitalTier], enabled: bool, now_ns: int) -> Decision | None:
    """The balance's tier at a trading day's start, when it differs from the current one (never mid-day)."""
    if not enabled:
        return None
    t = tier_for_balance(tiers, ledger.balance_cents)
    cur = ledger.trading
    if cur.tier_number == t.number and cur.tier_name == t.name:
        return None
    previous = cur.tier_name
    notes = () if previous is None else (
        notices.tier_change(previous, cur.tier_number, t, ledger.balance_cents, now_ns),)
    return Decision(TierChanged(t.number, t.name, t.root, t.max_contracts, ledger.balance_cents, previous), notes)


def traded_symbols(settings: Settings, tier: CapitalTier | None, symbols: Sequence[str]) -> list[str]:
    """The contracts the day's signals trade (the tier maps ES signals to MES), each once."""
    out: list[str] = []
    for s in symbols:
        sym, _ = choose_contract(settings, tier, s, 1)
        if sym not in out:
            out.append(sym)
    return out


# ---------------------------------------------------------------------------------------------------
# Limits, margins, end of day, exit signals


def daily_limit(ledger: Ledger, symbol: str, pnl_cents: int, profit_target_cents: int, loss_limit_cents: int,
                flatten_on_limit: bool, ts_ns: int) -> Decision | None:
    """The day's P&L reached the profit target or the loss limit: halt (and flatten), once per trading day."""
    t = ledger.trading
    day = t.trading_day
    if day is None or ledger.limit_day == day or loss_limit_cents < pnl_cents < profit_target_cents:
        return None
    hit = "profit_target" if pnl_cents >= profit_target_cents else "loss_limit"
    limit = profit_target_cents if hit == "profit_target" else loss_limit_cents
    set_state = None
    if t.state == TradingState.ACTIVE or t.kind in DAILY_KINDS:
        set_state = StateChange(TradingState.HALTED, HaltKind.LIMIT,
                                f"daily {hit.replace('_', ' ')} reached ({fmt_cents(pnl_cents)})")
    flatten = tuple(b.signal_id for b in ledger.open_brackets()) if flatten_on_limit else ()
    return Decision(DailyLimitHit(day, symbol, hit, "halt", pnl_cents, flatten, hit, set_state),
                    (notices.daily_limit(hit, day, pnl_cents, limit, flatten_on_limit, ts_ns),))


def margin_check(ledger: Ledger, day: str, results: Sequence[MarginResult], session_wide: bool,
                 now_ns: int) -> Decision:
    """A contract above its margin limit is not traded today; when every contract is, the session halts (and a
    session-wide check within limits lifts a margin halt)."""
    blocked = [r for r in results if not r.ok]
    notes = [notices.margin_high(day, blocked, now_ns)] if blocked else []
    rows = tuple(MarginRow(r.symbol, r.margin_cents, r.limit_cents, r.ok, r.source) for r in results)
    set_state = None
    if session_wide:
        t = ledger.trading
        all_blocked = bool(results) and len(blocked) == len(results)
        if all_blocked and t.state == TradingState.ACTIVE:
            why = ", ".join(f"{r.symbol} {fmt_cents(r.margin_cents)} > {fmt_cents(r.limit_cents or 0)}"
                            for r in blocked)
            set_state = StateChange(TradingState.HALTED, HaltKind.MARGIN, f"margin above limit: {why}")
        elif not all_blocked and t.state == TradingState.HALTED and t.kind == HaltKind.MARGIN:
            set_state = StateChange(TradingState.ACTIVE, HaltKind.NONE, "margin within limits")
            notes.append(notices.trading_state(set_state.state, set_state.kind, set_state.reason, now_ns))
    return Decision(MarginChecked(day, rows, set_state), tuple(notes))


def auto_flatten(ledger: Ledger, day: str, time_text: str, now_ns: int) -> Decision:
    """End of day: close every open bracket, exits only until the next trading day."""
    open_now = ledger.open_brackets()
    set_state = None
    if ledger.trading.state == TradingState.ACTIVE:
        set_state = StateChange(TradingState.REDUCING, HaltKind.EOD, "after auto-flatten: exits only")
    return Decision(AutoFlattenDecided(day, "flatten", time_text, ",".join(sorted({b.symbol for b in open_now})),
                                       tuple(b.signal_id for b in open_now), "auto_flatten", set_state),
                    (notices.auto_flatten(day, len(open_now), time_text, now_ns),))


def exit_signal(ledger: Ledger, symbol: str, reason: str, threatens: str | None, auto: bool,
                ts_ns: int) -> tuple[str, Decision]:
    """An order-flow exit signal against the open positions it threatens (``long``, ``short`` or ``None`` for
    both): ``auto_exit`` closes them at market, ``alert`` leaves the call to the trader, ``no_position``."""
    want = Side.BUY if threatens == "long" else Side.SELL if threatens == "short" else None
    affected = [b for b in ledger.open_brackets() if same_family(b.symbol, symbol) and b.position > 0
                and (want is None or b.side == want)]
    decision = "no_position" if not affected else "auto_exit" if auto else "alert"
    ids = tuple(b.signal_id for b in affected)
    notes = (notices.exit_signal(symbol, reason, decision, affected, ts_ns),) if affected else ()
    return decision, Decision(ExitSignalDecided(symbol, reason, decision, ids, ids if decision == "auto_exit" else (),
                                                "exit_signal", threatens or "any"), notes)


# ---------------------------------------------------------------------------------------------------
# Orders the rules send


def flatten_request(ledger: Ledger, b: Bracket, reason: str) -> FlattenRequested | None:
    """Close a bracket: cancel its working legs, then a market exit for the open quantity; ``None`` when it is
    closed or already closing, or has nothing open and nothing working."""
    if b.state in TERMINAL_BRACKET:
        return None
    legs = ledger.legs_of(b)
    if any(leg.role == LegRole.EXIT and leg.state not in TERMINAL_LEG for leg in legs):
        return None
    cancel_ids = tuple(leg.client_order_id for leg in legs
                       if leg.role != LegRole.EXIT and leg.state not in TERMINAL_LEG)
    qty = max(b.position, 0)
    if qty == 0 and not cancel_ids:
        return None
    side = Side.SELL if b.side == Side.BUY else Side.BUY
    return FlattenRequested(b.signal_id, b.symbol, client_order_id(b.signal_id, LegRole.EXIT, b.exits + 1), side,
                            qty, cancel_ids, reason)


def stop_move(ledger: Ledger, signal_id: str, stop_price: int) -> ModifyRequested | None:
    """Move a working stop (breakeven, trailing); ``None`` when there is none or it would cross the target."""
    b = ledger.brackets.get(signal_id)
    leg = ledger.legs.get(client_order_id(signal_id, LegRole.STOP))
    if b is None or leg is None or leg.state in TERMINAL_LEG or b.state in TERMINAL_BRACKET:
        return None
    if (stop_price >= b.target_price) if b.side == Side.BUY else (stop_price <= b.target_price):
        return None
    return ModifyRequested(leg.client_order_id, stop_price)
