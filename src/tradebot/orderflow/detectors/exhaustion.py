"""Exhaustion at the bar's extremes: the aggressors ran out of steam where the bar turned.

No vendor publishes a formula, so the project's (reference/ORDERFLOW.md) is: at the high, the ask
(buy-aggressor) volume at the extreme is ``<= max(a, f * mean level volume)`` and the ask volume falls
strictly over the last ``k`` levels toward the high (``ask(high-k+1) > ... > ask(high)``): buyers thinned out
as price rose, so the high is likely to hold -> BUYING_EXHAUSTION, SHORT. Selling exhaustion mirrors it with
bid volume toward the low -> LONG. "Mean level volume" is the bar's total volume over every tick of its range
(zero levels included); the test is exact in integers (``v * levels <= f * volume``). A bar needs at least
``k`` levels. Strength: ``1 - v / (2 * threshold)`` (0.5 at the threshold, 1 for an empty extreme).

The reading chosen where ORDERFLOW.md's "volume at the extreme" is ambiguous: the *aggressor-side* volume (ask
at the high, bid at the low) of the *single* extreme level, never that level's total (bid + ask) volume, nor a
sum over several levels. Test vectors (``tests/orderflow/test_patterns.py``; a = 0, f = 0.2, k = 3; levels (bid, ask)
from the low): ``(20,20) (20,20) (10,30) (10,20) (40,3)`` is buying exhaustion (ask 30 > 20 > 3, and 3 <=
0.2 x 38.6) although the high's total volume 43 is not; with ask 8 at the high it is not (8 > 0.2 x 39.6).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.detectors._common import event, exact, num
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar


def exhausted(vols_toward_extreme: Sequence[int], volume: int, n_levels: int, a: int, f: float) -> bool:
    """The rule on the aggressor volumes of the last k levels (ordered toward the extreme)."""
    if any(x <= y for x, y in itertools.pairwise(vols_toward_extreme)):
        return False
    v = vols_toward_extreme[-1]
    n, d = exact(f)
    return v <= a or v * n_levels * d <= n * volume


def _detect(bar: FootprintBar, settings: PatternSettings, spec: ContractSpec, at_high: bool) -> list[PatternEvent]:
    k = settings.exhaustion_levels
    lv = bar.levels
    if len(lv) < k:
        return []
    if at_high:
        vols = [x.ask for x in lv[len(lv) - k:]]
        extreme = bar.high
    else:
        vols = [x.bid for x in reversed(lv[:k])]
        extreme = bar.low
    a, f = settings.exhaustion_abs_volume, settings.exhaustion_mean_fraction
    if not exhausted(vols, bar.volume, len(lv), a, f):
        return []
    mean = bar.volume / len(lv)
    threshold = max(float(a), f * mean)
    v = vols[-1]
    strength = 1.0 - 0.5 * v / threshold if threshold > 0 else 1.0
    side = "ask" if at_high else "bid"
    where = "high" if at_high else "low"
    reasons = (
        f"{side} {v} at the {where} {spec.fmt(extreme)} <= max({a}, {num(f)} x mean level volume {num(mean)})",
        f"{side} volume falling over the last {k} levels toward the {where}: {', '.join(map(str, vols))}",
    )
    if at_high:
        return [event(Pattern.BUYING_EXHAUSTION, Direction.SHORT, bar, [extreme], strength, reasons)]
    return [event(Pattern.SELLING_EXHAUSTION, Direction.LONG, bar, [extreme], strength, reasons)]


def detect_buying_exhaustion(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                             spec: ContractSpec) -> list[PatternEvent]:
    return _detect(bar, settings, spec, at_high=True)


def detect_selling_exhaustion(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                              spec: ContractSpec) -> list[PatternEvent]:
    return _detect(bar, settings, spec, at_high=False)
