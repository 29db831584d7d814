"""What the pattern detectors say: one immutable event per finding, with its reasons in plain words.

Events carry prices in ticks and the bar's window, never a decimal: the router and the notifier format them
through the contract spec. ``strength`` is a monotone score in [0, 1] for ranking findings of one pattern
against each other (how far past the threshold), not a probability of success.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tradebot.core.signals import Direction as Direction
from tradebot.core.signals import Pattern as Pattern


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
