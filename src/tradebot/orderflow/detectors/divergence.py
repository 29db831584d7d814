"""Delta divergence, the ATAS rule (reference/ORDERFLOW.md).

Bearish: the two prior bars closed up (close > open), this bar closes down (close < open), its high is at or
above the previous bar's high and its delta is negative -> SHORT at the high. Bullish mirrored: two down bars,
this bar closes up, its low at or below the previous low, delta positive -> LONG at the low. Flat bars
(close == open) are neither up nor down. The prior bars are the last two closed bars of the same contract,
whatever the session (the engine's history). Strength: ``0.5 + 0.5 * |delta| / volume``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.detectors._common import event
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar


def _up(b: FootprintBar) -> bool:
    return b.close > b.open


def _down(b: FootprintBar) -> bool:
    return b.close < b.open


def detect_delta_divergence(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                            spec: ContractSpec) -> list[PatternEvent]:
    if len(history) < 2:
        return []
    p2, p1 = history[-2], history[-1]
    strength = 0.5 + 0.5 * abs(bar.delta) / bar.volume if bar.volume else 0.5
    if _up(p2) and _up(p1) and _down(bar) and bar.high >= p1.high and bar.delta < 0:
        reasons = (
            "two prior bars closed up, this bar closed down "
            f"({spec.fmt(bar.open)} -> {spec.fmt(bar.close)})",
            f"high {spec.fmt(bar.high)} >= previous high {spec.fmt(p1.high)} with delta {bar.delta} < 0",
        )
        return [event(Pattern.DELTA_DIVERGENCE, Direction.SHORT, bar, [bar.high], strength, reasons)]
    if _down(p2) and _down(p1) and _up(bar) and bar.low <= p1.low and bar.delta > 0:
        reasons = (
            "two prior bars closed down, this bar closed up "
            f"({spec.fmt(bar.open)} -> {spec.fmt(bar.close)})",
            f"low {spec.fmt(bar.low)} <= previous low {spec.fmt(p1.low)} with delta +{bar.delta} > 0",
        )
        return [event(Pattern.DELTA_DIVERGENCE, Direction.LONG, bar, [bar.low], strength, reasons)]
    return []
