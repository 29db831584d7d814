"""Every notification execution sends, built in one place from what the ledger and the manager decided.

Two sources, both here: the ledger's *effects* of applying a record (a bracket opened or closed, an order
rejected, an execution anomaly; :func:`for_effects`), and the manager's *decisions* (trading state, tier, daily
limit, margin, exit signal, auto-flatten, recovery). The manager commits a notification in the same
transaction as the record that causes it, so titles, severities and fields are defined once, here, and an
operator's alert means the same thing whichever path raised it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tradebot.core.contracts import UnknownContractError, spec_for
from tradebot.core.notifications import Notification, NotificationKind, Severity, fields_of
from tradebot.core.types import Side
from tradebot.core.values import CapitalTier
from tradebot.execution.model import HaltKind, TradingState
from tradebot.execution.risk import MarginResult, fmt_cents

if TYPE_CHECKING:
    from tradebot.execution.ledger import Bracket, Effect, Ledger

K = NotificationKind

HALTING_EFFECTS = frozenset({"overfill", "orphan_fill", "mismatch", "exit_rejected"})
"""Effects that halt trading (fail closed): the books and the broker may disagree."""
CRITICAL_EFFECTS = HALTING_EFFECTS | {"protect_rejected", "unprotected", "exit_cancelled"}
"""Effects that put money at risk: a critical alert."""
ORDER_EFFECTS = frozenset({"illegal", "late_fill"})
"""A broker event out of order: worth a warning, nothing at risk."""


def _note(kind: NotificationKind, severity: Severity, title: str, fields: dict[str, Any],
          ts_ns: int = 0) -> Notification:
    return Notification(kind, severity, title, ts_ns, fields=fields_of(fields))


# ---------------------------------------------------------------------------------------------------
# From the ledger's effects


def for_effects(effects: Iterable[Effect], ledger: Ledger, ts_ns: int) -> list[Notification]:
    out: list[Notification] = []
    for e in effects:
        b = ledger.brackets.get(e.signal_id)
        if e.kind == "opened" and b is not None:
            out.append(trade_opened(b, ts_ns))
        elif e.kind == "closed" and b is not None:
            out.append(trade_closed(b, ts_ns))
        elif e.kind == "rejected":
            out.append(_note(K.ORDER_REJECTED, Severity.WARNING, "Order rejected",
                             {"signal_id": e.signal_id, "reason": e.detail}, ts_ns))
        elif e.kind in CRITICAL_EFFECTS:
            out.append(_note(K.EXECUTION_ANOMALY, Severity.CRITICAL, f"Execution problem: {e.kind}",
                             {"signal_id": e.signal_id, "detail": e.detail}, ts_ns))
        elif e.kind in ORDER_EFFECTS:
            out.append(_note(K.EXECUTION_ANOMALY, Severity.WARNING, f"Broker event out of order: {e.kind}",
                             {"signal_id": e.signal_id, "detail": e.detail}, ts_ns))
    return out


def trade_opened(b: Bracket, ts_ns: int) -> Notification:
    return _note(K.TRADE_OPENED, Severity.INFO, f"Trade opened: {b.symbol} {direction(b.side)}", {
        "symbol": b.symbol, "side": direction(b.side), "quantity": qty_text(b.symbol, b.entry_filled),
        "entry": price_text(b.symbol, b.entry_value, b.entry_filled), "stop": price_text(b.symbol, b.stop_price, 1),
        "target": price_text(b.symbol, b.target_price, 1), "signal_id": b.signal_id, "pattern": b.pattern}, ts_ns)


def trade_closed(b: Bracket, ts_ns: int) -> Notification:
    title = f"Trade closed: {b.symbol} {fmt_cents(b.net_cents)} ({b.exit_reason})"
    return _note(K.TRADE_CLOSED, Severity.INFO, title, {
        "symbol": b.symbol, "side": direction(b.side), "quantity": qty_text(b.symbol, b.entry_filled),
        "entry": price_text(b.symbol, b.entry_value, b.entry_filled),
        "exit": price_text(b.symbol, b.exit_value, b.exit_filled), "pnl": fmt_cents(b.net_cents),
        "commission": fmt_cents(b.book.commission_cents), "reason": b.exit_reason, "signal_id": b.signal_id}, ts_ns)


# ---------------------------------------------------------------------------------------------------
# From the manager's decisions


def trading_state(state: TradingState, kind: HaltKind, reason: str, ts_ns: int) -> Notification:
    """Halted, exits only, or resumed; an error halt (fail closed) is critical."""
    sev = Severity.CRITICAL if kind == HaltKind.ERROR else (
        Severity.WARNING if state != TradingState.ACTIVE else Severity.INFO)
    title = {TradingState.ACTIVE: "Trading resumed", TradingState.HALTED: "Trading halted",
             TradingState.REDUCING: "Exits only"}[state]
    return _note(K.TRADING_STATE, sev, title, {"state": state.value, "kind": kind.value, "reason": reason}, ts_ns)


def tier_change(previous: str, previous_number: int | None, t: CapitalTier, balance_cents: int,
                ts_ns: int) -> Notification:
    return _note(K.TIER_CHANGE, Severity.INFO, f"Tier change: {previous} -> {t.name}", {
        "from": previous, "to": t.name, "contract": t.root, "max_contracts": t.max_contracts,
        "balance": fmt_cents(balance_cents),
        "direction": "promoted" if (previous_number or 0) < t.number else "demoted"}, ts_ns)


def daily_limit(hit: str, day: str, pnl_cents: int, limit_cents: int, flatten: bool, ts_ns: int) -> Notification:
    """``hit``: ``profit_target`` or ``loss_limit``."""
    profit = hit == "profit_target"
    return _note(K.PROFIT_TARGET_HIT if profit else K.LOSS_LIMIT_HIT, Severity.INFO if profit else Severity.WARNING,
                 "Profit target hit" if profit else "Loss limit hit: session halted",
                 {"day": day, "pnl": fmt_cents(pnl_cents), "limit": fmt_cents(limit_cents), "flatten": flatten},
                 ts_ns)


def margin_high(day: str, blocked: Sequence[MarginResult], ts_ns: int) -> Notification:
    return _note(K.MARGIN_HIGH, Severity.WARNING, "Not trading: margin above the limit", {
        "day": day,
        "symbols": {r.symbol: f"{fmt_cents(r.margin_cents)} > {fmt_cents(r.limit_cents or 0)}" for r in blocked},
    }, ts_ns)


def exit_signal(symbol: str, reason: str, decision: str, affected: Sequence[Bracket], ts_ns: int) -> Notification:
    """``decision``: ``auto_exit`` (closing at market) or ``alert`` (a human decides)."""
    return _note(
        K.EXIT_SIGNAL, Severity.WARNING,
        f"Exit signal on {symbol}: {'closing at market' if decision == 'auto_exit' else 'review the position'}",
        {"symbol": symbol, "reason": reason, "decision": decision,
         "positions": [f"{b.symbol} {direction(b.side)} {b.position}" for b in affected]}, ts_ns)


def auto_flatten(day: str, open_brackets: int, time_et: str, ts_ns: int) -> Notification:
    return _note(K.AUTO_FLATTEN, Severity.INFO, "Auto-flatten: end of day",
                 {"day": day, "open_brackets": open_brackets, "time_et": time_et}, ts_ns)


def recovery_mismatch(mismatches: Sequence[str], open_ids: Sequence[str]) -> Notification:
    return _note(K.RECOVERY_MISMATCH, Severity.CRITICAL, "Trading halted: state does not match the broker",
                 {"mismatches": list(mismatches[:20]), "open_brackets": list(open_ids)})


def reconcile_mismatch(mismatches: Sequence[str], open_ids: Sequence[str], ts_ns: int) -> Notification:
    return _note(K.RECONCILE_MISMATCH, Severity.CRITICAL, "Trading halted: the broker does not match the journal",
                 {"mismatches": list(mismatches[:20]), "open_brackets": list(open_ids)}, ts_ns)


def stop_replaced(b: Bracket, why: str, stop_id: str, ts_ns: int) -> Notification:
    return _note(K.STOP_REPLACED, Severity.WARNING, f"Stop re-placed: {b.symbol}",
                 {"signal_id": b.signal_id, "reason": why, "stop_id": stop_id, "quantity": b.position}, ts_ns)


def unprotected_position(b: Bracket, why: str, ts_ns: int) -> Notification:
    return _note(K.UNPROTECTED_POSITION, Severity.CRITICAL, f"Position flattened: no stop at the broker ({b.symbol})",
                 {"signal_id": b.signal_id, "reason": why, "position": b.position}, ts_ns)


def position_adopted(signal_id: str, symbol: str, long: bool, quantity: int, price: int, stop_price: int,
                     reason: str, ts_ns: int) -> Notification:
    """The operator took a position the journal did not know under management (with a stop at the broker)."""
    spec = spec_for(symbol)
    return _note(K.POSITION_ADOPTED, Severity.WARNING,
                 f"Position adopted: {symbol} {'long' if long else 'short'} {quantity}",
                 {"signal_id": signal_id, "stop": spec.fmt(stop_price), "price": spec.fmt(price), "reason": reason},
                 ts_ns)


def propfirm_alert(profile: str, key: str, severity: Severity, title: str, fields: dict[str, Any],
                   ts_ns: int) -> Notification:
    """A prop-firm account rule's alert (headroom low, or a breach that halts and flattens)."""
    return _note(K.PROPFIRM, severity, title,
                 {"profile": profile, "key": key, **fields}, ts_ns)


def propfirm_cleared(profile: str, was: str, ts_ns: int) -> Notification:
    return _note(K.PROPFIRM, Severity.WARNING, "Prop-firm breach cleared by the operator",
                 {"profile": profile, "was": was}, ts_ns)


def malformed_event(problem: str, event: object, ts_ns: int) -> Notification:
    return _note(K.EXECUTION_ANOMALY, Severity.CRITICAL, "Malformed broker event dropped",
                 {"problem": problem, "event": repr(event)[:300]}, ts_ns)


# ---------------------------------------------------------------------------------------------------
# Display helpers (the trader's units)


def direction(side: Side) -> str:
    return "long" if side == Side.BUY else "short"


def price_text(symbol: str, value: int, qty: int) -> str:
    """A price for humans: the average ``value / qty`` ticks in the contract's decimals."""
    if qty <= 0:
        return ""
    spec = spec_for(symbol)
    if value % qty == 0:
        return spec.fmt(value // qty)
    return f"{(value * spec.tick_size / qty):.{len(str(spec.tick_size)) + 1}f}"


def qty_text(symbol: str, units: int) -> str:
    """Size as the trader reads it: contracts and shares as they are, crypto in coins (``0.001``)."""
    try:
        spec = spec_for(symbol)
    except UnknownContractError:
        return str(units)
    if spec.size_increment == 1:
        return str(units)
    return f"{(units * spec.size_increment).normalize():f}"
