"""The names every stage shares: order-flow patterns, trade directions and market regimes.

Defined in core because the settings name them (the routing table's rows are regimes, its cells patterns and
directions) and the order-flow, regime, execution and backtest stages all speak them; ``orderflow.events`` and
``regime.detector`` re-export them where they were first defined.
"""

from __future__ import annotations

import enum

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


class Regime(enum.StrEnum):
    TRENDING_UP = "TRENDING_UP"
    TRENDING_DOWN = "TRENDING_DOWN"
    RANGING = "RANGING"
    VOLATILE = "VOLATILE"
    NO_TRADE = "NO_TRADE"
