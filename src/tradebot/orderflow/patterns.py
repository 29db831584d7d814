"""Runs the pattern detectors on each closed footprint bar and keeps the little state they need.

The detectors themselves are pure (:mod:`tradebot.orderflow.detectors`); the engine owns the history of prior
bars (delta divergence looks two bars back) and the unfinished-business tracker, and shields the loop from a
detector bug: an exception is counted and logged, the other detectors still run.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.core.logging import get_logger
from tradebot.orderflow.detectors import (
    Detector,
    OpenLevel,
    UnfinishedTracker,
    detect_buy_imbalance,
    detect_buying_absorption,
    detect_buying_exhaustion,
    detect_delta_divergence,
    detect_red_burst,
    detect_sell_imbalance,
    detect_selling_absorption,
    detect_selling_exhaustion,
    detect_stacked_buy_imbalance,
    detect_stacked_sell_imbalance,
    detect_unfinished_business,
    detect_volume_imbalance,
)
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar

DETECTORS: Mapping[Pattern, Detector] = {
    Pattern.BUY_IMBALANCE: detect_buy_imbalance,
    Pattern.SELL_IMBALANCE: detect_sell_imbalance,
    Pattern.STACKED_BUY_IMBALANCE: detect_stacked_buy_imbalance,
    Pattern.STACKED_SELL_IMBALANCE: detect_stacked_sell_imbalance,
    Pattern.BUYING_EXHAUSTION: detect_buying_exhaustion,
    Pattern.SELLING_EXHAUSTION: detect_selling_exhaustion,
    Pattern.BUYING_ABSORPTION: detect_buying_absorption,
    Pattern.SELLING_ABSORPTION: detect_selling_absorption,
    Pattern.DELTA_DIVERGENCE: detect_delta_divergence,
    Pattern.UNFINISHED_BUSINESS: detect_unfinished_business,
}
"""The footprint patterns' detectors, in the order events are reported (the engine's default set)."""

FLOW_DETECTORS: Mapping[Pattern, Detector] = {
    Pattern.VOLUME_IMBALANCE: detect_volume_imbalance,
    Pattern.RED_BURST: detect_red_burst,
}
"""Detectors on bar totals only (seed 004's imbalance ratio, seed 000's red burst): part of the default set while
``PatternSettings.flow_patterns`` is on (the default), on footprint bars from ticks and on bar data alike."""

ALL_DETECTORS: Mapping[Pattern, Detector] = {**DETECTORS, **FLOW_DETECTORS}

LEVEL_PATTERNS: frozenset[Pattern] = frozenset(DETECTORS) - {Pattern.DELTA_DIVERGENCE}
"""Patterns that read per-price levels: not computable from bar data (OHLC, volume, bid/ask volume)."""

BAR_PATTERNS: tuple[Pattern, ...] = (Pattern.DELTA_DIVERGENCE, Pattern.VOLUME_IMBALANCE, Pattern.RED_BURST)
"""Everything computable from bars that carry bid/ask volume but no levels."""

HISTORY_BARS = 8
"""Prior bars kept for detectors (divergence needs 2; a few more for context consumers)."""


def run_detectors(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                  spec: ContractSpec, detectors: Mapping[Pattern, Detector] = DETECTORS) -> list[PatternEvent]:
    """Stateless: every detector on one bar (exceptions propagate; the engine is the guarded path)."""
    out: list[PatternEvent] = []
    for detect in detectors.values():
        out.extend(detect(bar, history, settings, spec))
    return out


class PatternEngine:
    """Pattern detection for one contract root: ``on_bar(bar)`` for each closed bar, in order."""

    def __init__(self, spec: ContractSpec, settings: PatternSettings | None = None,
                 patterns: Sequence[Pattern] | None = None, logger: Any = None) -> None:
        self.spec = spec
        self.symbol = spec.root
        self.settings = settings or PatternSettings()
        default = ALL_DETECTORS if self.settings.flow_patterns else DETECTORS
        chosen = set(default) if patterns is None else set(patterns)
        self.detectors: dict[Pattern, Detector] = {p: d for p, d in ALL_DETECTORS.items() if p in chosen}
        self.unfinished = UnfinishedTracker(self.settings.unfinished_max_open)
        self.history: deque[FootprintBar] = deque(maxlen=HISTORY_BARS)
        self.stats: Counter[str] = Counter()
        self.last_revisited: list[OpenLevel] = []
        """Unfinished levels the last bar traded through (closed by it)."""
        self._log = logger if logger is not None else get_logger("tradebot.orderflow.patterns")

    def on_bar(self, bar: FootprintBar) -> list[PatternEvent]:
        """Events of this bar, in :data:`DETECTORS` order; updates history and the unfinished tracker."""
        if bar.symbol != self.symbol:
            self.stats["wrong_symbol"] += 1
            self._log.warning("pattern engine: bar of another symbol ignored", expected=self.symbol,
                              got=bar.symbol)
            return []
        prior = tuple(self.history)
        events: list[PatternEvent] = []
        for pattern, detect in self.detectors.items():
            try:
                found = detect(bar, prior, self.settings, self.spec)
            except Exception as exc:  # one broken detector must not stop the others or the loop
                self.stats[f"detector_error:{pattern}"] += 1
                self._log.error("pattern detector failed", pattern=str(pattern), error=repr(exc),
                                bar_start_ns=bar.start_ns)
                continue
            events.extend(found)
        self.stats["events"] += len(events)
        self.stats["bars"] += 1
        # unfinished business reads the extremes' levels; a level-less bar (bar data) leaves the tracker as is
        self.last_revisited = self.unfinished.update(bar) if bar.levels else []
        self.history.append(bar)
        return events

    def open_unfinished(self, direction: Direction | None = None) -> tuple[OpenLevel, ...]:
        """Open unfinished levels, oldest first; LONG = highs (targets above), SHORT = lows."""
        levels = self.unfinished.open_levels
        if direction is None:
            return levels
        want_high = direction is Direction.LONG
        return tuple(lv for lv in levels if lv.at_high == want_high)

    def reset(self) -> None:
        self.history.clear()
        self.unfinished.clear()
        self.last_revisited = []
