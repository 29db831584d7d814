"""Absorption at the bar's extremes: heavy aggression met passive liquidity that did not give way.

The project's rule (reference/ORDERFLOW.md): at or near the low (the low and the ``zone`` ticks above it),
the largest bid (sell-aggressor) volume at one level is ``>= m * mean level volume`` while the close stays at
least ``n`` ticks above the low: sellers hit hard and passive bids held -> BUYING_ABSORPTION, LONG. Mirrored
at the high with ask volume and a close at least ``n`` ticks below -> SELLING_ABSORPTION, SHORT. The test is
exact in integers (``v * levels >= m * volume``). Strength: ``0.5 + 0.5 * (ratio - m) / m`` capped at 1, where
``ratio = v / mean level volume``.

The reading chosen where ORDERFLOW.md's "aggressive volume at or near the extreme" is ambiguous: the
*aggressor-side* volume (bid at the low, ask at the high) of the *single largest* level within the zone,
never a level's total (bid + ask) volume, nor the zone's summed volume. Test vectors
(``tests/orderflow/test_patterns.py``; m = 2, zone 1 tick, close >= 2 ticks away; levels (bid, ask) from the low,
close at the top):
``(30,15) (30,5) (5,5) (5,5) (5,5)`` is *not* absorption (largest bid 30 < 2 x 22, although the zone's summed
bids 60 and the low's total 45 are above 44); ``(50,5) (5,5) (5,5) (5,5) (5,5)`` is (50 >= 2 x 19).
"""

from __future__ import annotations

from collections.abc import Sequence

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.detectors._common import event, exact, num
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar


def _detect(bar: FootprintBar, settings: PatternSettings, spec: ContractSpec, at_low: bool) -> list[PatternEvent]:
    n_ticks = settings.absorption_close_ticks
    if at_low:
        if bar.close - bar.low < n_ticks:
            return []
        zone = bar.levels[: settings.absorption_zone_ticks + 1]
        # the largest; tie -> nearest the extreme (the first in this order)
        best = max(zone, key=lambda x: (x.bid, -x.price))
        v = best.bid
    else:
        if bar.high - bar.close < n_ticks:
            return []
        zone = bar.levels[max(0, len(bar.levels) - settings.absorption_zone_ticks - 1):]
        best = max(zone, key=lambda x: (x.ask, x.price))
        v = best.ask
    m = settings.absorption_mean_multiple
    num_, den = exact(m)
    levels = len(bar.levels)
    if v == 0 or v * levels * den < num_ * bar.volume:
        return []
    mean = bar.volume / levels
    ratio = v / mean
    strength = 0.5 + 0.5 * (ratio - m) / m
    extreme = bar.low if at_low else bar.high
    dist = bar.close - bar.low if at_low else bar.high - bar.close
    side, who, where = ("bid", "sellers", "low") if at_low else ("ask", "buyers", "high")
    reasons = (
        f"{side} {v} at {spec.fmt(best.price)} near the {where} {spec.fmt(extreme)} = {num(ratio)} x mean level "
        f"volume {num(mean)} (>= {num(m)}): {who} absorbed",
        f"close {spec.fmt(bar.close)} is {dist} ticks from the {where} (>= {n_ticks})",
    )
    if at_low:
        return [event(Pattern.BUYING_ABSORPTION, Direction.LONG, bar, [best.price], strength, reasons)]
    return [event(Pattern.SELLING_ABSORPTION, Direction.SHORT, bar, [best.price], strength, reasons)]


def detect_buying_absorption(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                             spec: ContractSpec) -> list[PatternEvent]:
    return _detect(bar, settings, spec, at_low=True)


def detect_selling_absorption(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                              spec: ContractSpec) -> list[PatternEvent]:
    return _detect(bar, settings, spec, at_low=False)
