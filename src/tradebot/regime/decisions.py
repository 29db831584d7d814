"""The router's record of every pattern event: taken or rejected, and why.

Nothing the pattern engine reports is dropped silently: each event becomes one :class:`Decision`, with
machine-readable reason codes (for tests, statistics and alerts) next to the human sentences (for the log).
``format_decision`` renders the one-line log form, ``Decision.to_dict`` a JSON-able dict (ints, floats,
strings, lists; prices both in ticks and as decimal strings).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tradebot.core.calendar import from_ns
from tradebot.core.contracts import ContractSpec
from tradebot.core.display import fmt_ts
from tradebot.core.orders import EntryType, OrderIntent
from tradebot.orderflow.events import Direction, Pattern
from tradebot.regime.detector import Regime
from tradebot.regime.filters import FilterResult


class Verdict(enum.StrEnum):
    TAKEN = "TAKEN"
    REJECTED = "REJECTED"


class ReasonCode(enum.StrEnum):
    WRONG_SYMBOL = "WRONG_SYMBOL"
    REGIME_NO_TRADE = "REGIME_NO_TRADE"
    PATTERN_DISABLED = "PATTERN_DISABLED"
    """The pattern is not enabled in this regime's row of the routing table."""
    DIRECTION_DISABLED = "DIRECTION_DISABLED"
    """Counter-trend: the regime only trades the other direction."""
    NOT_AT_EXTREME = "NOT_AT_EXTREME"
    """Mean reversion away from the value-area edges and the session extremes."""
    WEAK_TRIGGER = "WEAK_TRIGGER"
    """Pattern strength below the regime's minimum (VOLATILE: only the strongest)."""
    MICROSTRUCTURE_RISKY = "MICROSTRUCTURE_RISKY"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    NO_CONFIRMATION = "NO_CONFIRMATION"
    """Fewer confirmed terms than ``min_confirmations``: the trigger alone never trades."""
    POSITION_OPEN = "POSITION_OPEN"
    COOLDOWN = "COOLDOWN"
    SUPERSEDED = "SUPERSEDED"
    """Would have been taken, but a better signal of the same bar was."""


class ConfirmationStatus(enum.StrEnum):
    TRIGGER = "trigger"
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """One term of the confluence score: ``weight x score`` over the sum of weights."""

    name: str
    status: ConfirmationStatus
    weight: float
    score: float
    """1 confirmed, 0 not, 0.5 unavailable (neutral), the pattern strength for the trigger."""
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    signal_id: str
    symbol: str
    ts_ns: int
    """Decision time (event time): the bar's close."""
    bar_start_ns: int
    bar_end_ns: int
    pattern: Pattern
    direction: Direction
    strength: float
    prices: tuple[int, ...]
    """The pattern's levels, ticks."""
    regime: Regime
    regime_confidence: float
    confidence: float
    """Confluence confidence in [0, 1]."""
    min_confidence: float
    verdict: Verdict
    codes: tuple[ReasonCode, ...]
    """Empty when taken."""
    reasons: tuple[str, ...]
    confirmations: tuple[Confirmation, ...]
    filters: FilterResult | None
    intent: OrderIntent | None
    pattern_reasons: tuple[str, ...] = ()
    entry_ref: int | None = None
    """Taken signals: the price (ticks) the stop and target were measured from (the last price; the limit price
    for limit entries). An executor filling a market order elsewhere can re-anchor the bracket by the same
    distances."""

    @property
    def taken(self) -> bool:
        return self.verdict is Verdict.TAKEN

    def to_dict(self, spec: ContractSpec | None = None) -> dict[str, Any]:
        """JSON-able form; with ``spec`` prices are also given as decimal strings."""
        def px(t: int | None) -> Any:
            if t is None:
                return None
            return {"ticks": t, "price": spec.fmt(t)} if spec is not None else t

        intent = None
        if self.intent is not None:
            i = self.intent
            intent = {
                "signal_id": i.signal_id, "symbol": i.symbol, "side": i.side.name, "quantity": i.quantity,
                "entry_type": str(i.entry_type), "entry_price": px(i.entry_price), "stop_price": px(i.stop_price),
                "target_price": px(i.target_price), "ts_ns": i.ts_ns, "confidence": round(i.confidence, 6),
                "pattern": i.pattern, "regime": i.regime, "reasons": list(i.reasons),
            }
        return {
            "signal_id": self.signal_id, "symbol": self.symbol, "ts_ns": self.ts_ns,
            "time": from_ns(self.ts_ns).isoformat(), "bar_start_ns": self.bar_start_ns,
            "bar_end_ns": self.bar_end_ns, "pattern": str(self.pattern), "direction": str(self.direction),
            "strength": round(self.strength, 6), "prices": [px(p) for p in self.prices],
            "regime": str(self.regime), "regime_confidence": round(self.regime_confidence, 6),
            "confidence": round(self.confidence, 6), "min_confidence": self.min_confidence,
            "verdict": str(self.verdict), "codes": [str(c) for c in self.codes], "reasons": list(self.reasons),
            "confirmations": [
                {"name": c.name, "status": str(c.status), "weight": c.weight, "score": round(c.score, 6),
                 "detail": c.detail} for c in self.confirmations
            ],
            "filters": None if self.filters is None else self.filters.to_dict(),
            "intent": intent, "pattern_reasons": list(self.pattern_reasons), "entry_ref": px(self.entry_ref),
        }


def decision_to_dict(d: Decision, spec: ContractSpec | None = None) -> dict[str, Any]:
    return d.to_dict(spec)


def format_intent(i: OrderIntent, spec: ContractSpec) -> str:
    entry = "MKT" if i.entry_type is EntryType.MARKET or i.entry_price is None else f"LMT {spec.fmt(i.entry_price)}"
    return f"{i.side.name} {i.quantity} {entry} stop {spec.fmt(i.stop_price)} target {spec.fmt(i.target_price)}"


def format_decision(d: Decision, spec: ContractSpec) -> str:
    """One line: time (display zone, labelled), symbol, pattern, direction, regime, confidence, filters, verdict,
    order or reasons."""
    filters = "-" if d.filters is None else d.filters.summary()
    head = (f"{fmt_ts(d.ts_ns)} {d.symbol:<4} {d.pattern:<22} {d.direction:<5} "
            f"@{spec.fmt(d.prices[0] if d.direction is Direction.LONG else d.prices[-1]) if d.prices else '-'} "
            f"str={d.strength:.2f} regime={d.regime}({d.regime_confidence:.2f}) "
            f"conf={d.confidence:.2f}/{d.min_confidence:.2f} filters={filters} {d.verdict}")
    if d.intent is not None:
        return f"{head} {format_intent(d.intent, spec)}"
    codes = ",".join(d.codes)
    return f"{head} [{codes}] " + "; ".join(d.reasons)
