"""Shared helpers of the detectors: exact threshold arithmetic and event construction.

Thresholds are configured as floats (environment friendly) but compared exactly: ``ask > R * bid`` is
evaluated as ``ask * den > num * bid`` with ``R = num / den`` taken from the float's shortest decimal form, so
"ratio exactly R does not trigger" holds for every R a human would type (2.5, 3, 1.1 ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from fractions import Fraction

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar

Detector = Callable[[FootprintBar, Sequence[FootprintBar], PatternSettings, ContractSpec], list[PatternEvent]]
"""``(bar, prior closed bars oldest first, settings, spec) -> events``: pure, no state."""


@functools.lru_cache(maxsize=64)
def exact(x: float) -> tuple[int, int]:
    """``(num, den)`` of a configured float via its decimal repr (3.0 -> (3, 1); 0.2 -> (1, 5))."""
    f = Fraction(repr(float(x)))
    return f.numerator, f.denominator


def event(pattern: Pattern, direction: Direction, bar: FootprintBar, prices: Sequence[int], strength: float,
          reasons: Sequence[str]) -> PatternEvent:
    return PatternEvent(pattern, direction, bar.symbol, bar.start_ns, bar.end_ns, tuple(sorted(prices)),
                        min(1.0, max(0.0, strength)), tuple(reasons), bar.trading_date)


def num(x: float) -> str:
    """Compact display of a ratio or mean (2 decimals, trailing zeros kept for alignment)."""
    return f"{x:.2f}"
