"""Unfinished business (unfinished auction) at a bar's extremes, and the tracker of levels still open.

Rule (reference/ORDERFLOW.md): both ``bid > 0`` and ``ask > 0`` at the bar's high (or low): the auction traded
both ways at the extreme instead of ending on a lone aggressor, so the market tends to come back to it.
Direction (the project's choice, seed 002 says "varies"): an unfinished high is a magnet *above* the close ->
LONG; an unfinished low is one below -> SHORT. A one-tick bar (high == low) reports nothing: it has no auction
direction to finish. Strength: the thinner side at the extreme over the mean level volume, capped at 1.

The level stays open until price trades there again in a later bar; :class:`UnfinishedTracker` keeps those
open levels (bounded, oldest dropped first) for targets and context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.detectors._common import event, num
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar


def unfinished_extremes(bar: FootprintBar) -> tuple[bool, bool]:
    """``(at_high, at_low)``: whether each extreme traded on both sides."""
    if bar.high == bar.low:
        return False, False
    hi, lo = bar.levels[-1], bar.levels[0]
    return hi.bid > 0 and hi.ask > 0, lo.bid > 0 and lo.ask > 0


def detect_unfinished_business(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                               spec: ContractSpec) -> list[PatternEvent]:
    at_high, at_low = unfinished_extremes(bar)
    out = []
    mean = bar.volume / bar.n_levels
    for flag, lv, direction, where in ((at_high, bar.levels[-1], Direction.LONG, "high"),
                                       (at_low, bar.levels[0], Direction.SHORT, "low")):
        if not flag:
            continue
        strength = min(1.0, min(lv.bid, lv.ask) / mean) if mean > 0 else 0.0
        reasons = (
            f"unfinished auction at the {where} {spec.fmt(lv.price)}: bid {lv.bid} x ask {lv.ask} "
            f"(mean level volume {num(mean)})",
            f"open until price trades {spec.fmt(lv.price)} again",
        )
        out.append(event(Pattern.UNFINISHED_BUSINESS, direction, bar, [lv.price], strength, reasons))
    return out


@dataclass(frozen=True, slots=True)
class OpenLevel:
    price: int
    """Ticks."""
    at_high: bool
    """True for an unfinished high (price left below it), False for an unfinished low."""
    symbol: str
    bar_start_ns: int
    bar_end_ns: int
    trading_date: dt.date


class UnfinishedTracker:
    """Unfinished extremes not yet revisited. ``update`` once per closed bar, in order."""

    def __init__(self, max_open: int = 64) -> None:
        self.max_open = max_open
        self._open: dict[tuple[int, bool], OpenLevel] = {}  # insertion order = age

    @property
    def open_levels(self) -> tuple[OpenLevel, ...]:
        """Oldest first."""
        return tuple(self._open.values())

    def update(self, bar: FootprintBar) -> list[OpenLevel]:
        """Close every open level inside this bar's range (returned), then open this bar's own."""
        revisited = [lv for lv in self._open.values() if bar.low <= lv.price <= bar.high]
        for lv in revisited:
            del self._open[(lv.price, lv.at_high)]
        at_high, at_low = unfinished_extremes(bar)
        for flag, price, high in ((at_high, bar.high, True), (at_low, bar.low, False)):
            if flag:
                self._open[(price, high)] = OpenLevel(price, high, bar.symbol, bar.start_ns, bar.end_ns,
                                                      bar.trading_date)
        while len(self._open) > self.max_open:
            del self._open[next(iter(self._open))]
        return revisited

    def nearest_above(self, price: int) -> OpenLevel | None:
        above = [lv for lv in self._open.values() if lv.price > price]
        return min(above, key=lambda lv: lv.price) if above else None

    def nearest_below(self, price: int) -> OpenLevel | None:
        below = [lv for lv in self._open.values() if lv.price < price]
        return max(below, key=lambda lv: lv.price) if below else None

    def clear(self) -> None:
        self._open.clear()
