"""The pre-trade risk gate: given a read-only view of the books and an intent, take it or say why not.

Pure on purpose: no journal, no broker, no clock. The manager builds a :class:`GateView` from its ledger,
asks :meth:`RiskGate.evaluate`, and journals the answer; the same function can therefore be unit-tested with
a hand-built view, and rules added later (prop-firm account limits, for one) are one more :data:`Check` in
the list instead of another branch inside the manager.

Order matters and is the order the manager always applied: the trading state, the intent's own sanity, the
contract and size (tier), then each check over the sized candidate. The first failing rule is the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, spec_for
from tradebot.core.orders import EntryType, OrderIntent
from tradebot.core.types import Side
from tradebot.core.values import CapitalTier
from tradebot.execution.model import TradingState
from tradebot.execution.risk import choose_contract, family, fmt_cents, same_family


@dataclass(frozen=True, slots=True)
class GateView:
    """What the gate may look at: the ledger's state at the moment of the intent, as plain values."""

    settings: Settings
    state: TradingState = TradingState.ACTIVE
    state_reason: str = ""
    tier: CapitalTier | None = None
    """The current capital tier (``None``: tiers disabled)."""
    day: str = ""
    """The trading day the intent belongs to (ISO date); ``""`` before the first session."""
    margin: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """Margin checks already journaled, by ``(day, symbol)``: ``ok``, ``margin_cents``, ``limit_cents``."""
    open_brackets: Sequence[tuple[str, str]] = ()
    """``(signal_id, traded symbol)`` of every bracket that is not terminal, oldest first."""
    balance_cents: int = 0
    day_pnl_cents: int = 0
    """Today's net P&L (realized, plus unrealized at the last marks)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An intent after sizing: the contract actually traded and how many."""

    intent: OrderIntent
    symbol: str
    quantity: int


@dataclass(frozen=True, slots=True)
class MarginNeeded:
    """A check cannot decide without the margin figure for ``(day, symbol)``: fetch it, journal it, ask again."""

    day: str
    symbol: str


Check = Callable[[GateView, Candidate], "str | MarginNeeded"]
"""One rule over a sized candidate: ``""`` passes, any other text is the rejection reason."""


@dataclass(frozen=True, slots=True)
class GateDecision:
    reason: str
    """``""``: taken."""
    symbol: str = ""
    quantity: int = 0
    margin_needed: MarginNeeded | None = None

    @property
    def taken(self) -> bool:
        return not self.reason and self.margin_needed is None


# ---------------------------------------------------------------------------------------------------
# Checks over a sized candidate


def check_size(view: GateView, c: Candidate) -> str:
    return "size 0 after tier/size limits" if c.quantity <= 0 else ""


def check_margin(view: GateView, c: Candidate) -> str | MarginNeeded:
    """Margin protection: a contract whose margin is above its limit is not traded that day."""
    day = view.day
    if not day:
        return ""
    m = view.margin.get((day, c.symbol))
    if m is None:
        return MarginNeeded(day, c.symbol)
    if not m["ok"]:
        return (f"margin {fmt_cents(m['margin_cents'])} above limit {fmt_cents(m['limit_cents'])} "
                f"for {c.symbol} on {day}")
    return ""


def check_state(view: GateView, c: Candidate) -> str:
    """The trading state again: the margin check the manager ran for this intent may have halted trading."""
    if view.state != TradingState.ACTIVE:
        return f"trading {view.state.value}: {view.state_reason}"
    return ""


def check_one_per_family(view: GateView, c: Candidate) -> str:
    """One bracket per contract family at a time (ES and MES count as one)."""
    for sid, symbol in view.open_brackets:
        if same_family(symbol, c.symbol):
            return f"bracket {sid} still open on {family(c.symbol)}"
    return ""


DEFAULT_CHECKS: tuple[Check, ...] = (check_size, check_margin, check_state, check_one_per_family)


class RiskGate:
    """The checks every intent passes before a bracket is sent; :meth:`add` appends a rule (account limits)."""

    def __init__(self, checks: Sequence[Check] = DEFAULT_CHECKS) -> None:
        self.checks: list[Check] = list(checks)

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def evaluate(self, view: GateView, intent: OrderIntent) -> GateDecision:
        if view.state != TradingState.ACTIVE:
            return GateDecision(f"trading {view.state.value}: {view.state_reason}")
        problem = intent_problem(intent)
        if problem:
            return GateDecision(f"invalid intent: {problem}")
        symbol, qty = choose_contract(view.settings, view.tier, intent.symbol, intent.quantity)
        c = Candidate(intent, symbol, qty)
        for check in self.checks:
            out = check(view, c)
            if isinstance(out, MarginNeeded):
                return GateDecision("", symbol, qty, out)
            if out:
                return GateDecision(out, symbol, qty)
        return GateDecision("", symbol, qty)


def intent_problem(intent: OrderIntent) -> str:
    """Why an intent is malformed (it would send a bracket that cannot work), or ``""``.

    Shared with the compiled backtest path, which must refuse exactly what the manager refuses."""
    if intent.quantity <= 0:
        return "quantity must be positive"
    try:
        spec_for(intent.symbol)
    except UnknownContractError:
        return f"unknown contract {intent.symbol}"
    if intent.side not in (Side.BUY, Side.SELL):
        return "side must be BUY or SELL"
    long = intent.side == Side.BUY
    if (intent.stop_price >= intent.target_price) if long else (intent.stop_price <= intent.target_price):
        return "stop must be on the losing side of the target"
    if intent.entry_type != EntryType.MARKET:
        e = intent.entry_price
        if e is None:
            return f"{intent.entry_type.value} entry needs a price"
        lo, hi = (intent.stop_price, intent.target_price) if long else (intent.target_price, intent.stop_price)
        inside = lo < e < hi
        if not inside:
            return "entry must lie between stop and target"
    return ""
