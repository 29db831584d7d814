"""What the pattern detectors say: one immutable event per finding, with its reasons in plain words.

Events carry prices in ticks and the bar's window, never a decimal: the router and the notifier format them
through the contract spec. ``strength`` is a monotone score in [0, 1] for ranking findings of one pattern
against each other (how far past the threshold), not a probability of success.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from tradebot.core.types import Side


class Pattern(enum.StrEnum):
    BUY_IMBALANCE = "BUY_IMBALANCE"
    SELL_IMBALANCE = "SELL_IMBALANCE"
    STACKED_BUY_IMBALANCE = "STACKED_BUY_IMBALANCE"
    STACKED_SELL_IMBALANCE = "STACKED_SELL_IMBALANCE"
    BUYING_EXHAUSTION = "BUYING_EXHAUSTION"
    SELLING_EXHAUSTION = "SELLING_EXHAUSTION"
    BUYING_ABSORPTION = "BUYING_ABSORPTION"
    SELLING_ABSORPTION = "SELLING_ABSORPTION"
    DELTA_DIVERGENCE = "DELTA_DIVERGENCE"
    UNFINISHED_BUSINESS = "UNFINISHED_BUSINESS"
    VOLUME_IMBALANCE = "VOLUME_IMBALANCE"
    """Seed 004's bar imbalance ratio (bar totals only: also computable from bar data)."""
    RED_BURST = "RED_BURST"
    """Seed 000's volume spike with a sell majority, as a SHORT trigger (bar totals only)."""


class Direction(enum.StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def side(self) -> Side:
        """The order side that opens a position in this direction."""
        return Side.BUY if self is Direction.LONG else Side.SELL

    @property
    def sign(self) -> int:
        return 1 if self is Direction.LONG else -1


@dataclass(frozen=True, slots=True)
class PatternEvent:
    pattern: Pattern
    direction: Direction
    symbol: str
    """Contract root."""
    bar_start_ns: int
    bar_end_ns: int
    prices: tuple[int, ...]
    """Ticks, ascending: the level(s) the finding is about (imbalance levels, the extreme, ...)."""
    strength: float
    reasons: tuple[str, ...]
    trading_date: dt.date

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength {self.strength} outside [0, 1] ({self.pattern})")
        if not self.prices:
            raise ValueError(f"{self.pattern} event without a price")

    @property
    def price(self) -> int:
        """The key level: the lowest for LONG findings, the highest for SHORT ones (nearest the trade's risk)."""
        return self.prices[0] if self.direction is Direction.LONG else self.prices[-1]

    def describe(self) -> str:
        return f"{self.pattern} {self.direction} {self.symbol}: " + "; ".join(self.reasons)
