"""Diagonal bid/ask imbalances and stacks of them (reference/ORDERFLOW.md).

Buy imbalance at p: ``ask(p) > R * bid(p - 1 tick)`` and ``ask(p) >= min_volume``; sell imbalance at p:
``bid(p) > R * ask(p + 1 tick)`` and ``bid(p) >= min_volume``. The pairing is diagonal because a buyer lifting
the offer at p meets the market whose bid is one tick lower; comparing ask(p) with bid(p) (the wrong diagonal)
is a known bug class. Only pairs inside the bar are compared: the lowest ask has no bid below it inside the
bar, the highest bid no ask above it (the reference vector's 100.00 ask of 5 is not an imbalance). Inside the
bar a missing level is a zero, so a zero opposite side is an imbalance once the minimum is met.

One event per bar and side lists every imbalanced level; one stacked event per run of at least
``stacked_min_levels`` adjacent imbalanced ticks (a gap of one tick breaks the run).
Strength: ``1 - R * opposite / imbalanced`` (0 at the threshold, 1 against a zero); stacks: run length over
twice the minimum, capped at 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.detectors._common import event, exact, num
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar


def buy_imbalance_levels(bar: FootprintBar, ratio: float, min_volume: int) -> list[int]:
    """Prices (ascending) where ``ask(p) > ratio * bid(p - 1)`` and ``ask(p) >= min_volume``."""
    n, d = exact(ratio)
    lv = bar.levels
    return [lv[i].price for i in range(1, len(lv))
            if lv[i].ask >= min_volume and lv[i].ask * d > n * lv[i - 1].bid]


def sell_imbalance_levels(bar: FootprintBar, ratio: float, min_volume: int) -> list[int]:
    """Prices (ascending) where ``bid(p) > ratio * ask(p + 1)`` and ``bid(p) >= min_volume``."""
    n, d = exact(ratio)
    lv = bar.levels
    return [lv[i].price for i in range(len(lv) - 1)
            if lv[i].bid >= min_volume and lv[i].bid * d > n * lv[i + 1].ask]


def stacks(prices: Sequence[int], min_levels: int) -> list[tuple[int, ...]]:
    """Runs of consecutive ticks in ascending ``prices`` with at least ``min_levels`` members."""
    out: list[tuple[int, ...]] = []
    run: list[int] = []
    for p in prices:
        if run and p != run[-1] + 1:
            if len(run) >= min_levels:
                out.append(tuple(run))
            run = []
        run.append(p)
    if len(run) >= min_levels:
        out.append(tuple(run))
    return out


def _ratio_text(x: int, y: int) -> str:
    return "inf" if y == 0 else num(x / y)


def _strength(ratio: float, x: int, y: int) -> float:
    return 1.0 - ratio * y / x if x > 0 else 0.0


def _buy_reason(bar: FootprintBar, p: int, spec: ContractSpec) -> str:
    a, b = bar.ask(p), bar.bid(p - 1)
    return f"ask {a} at {spec.fmt(p)} vs bid {b} at {spec.fmt(p - 1)}, ratio {_ratio_text(a, b)}"


def _sell_reason(bar: FootprintBar, p: int, spec: ContractSpec) -> str:
    b, a = bar.bid(p), bar.ask(p + 1)
    return f"bid {b} at {spec.fmt(p)} vs ask {a} at {spec.fmt(p + 1)}, ratio {_ratio_text(b, a)}"


def detect_buy_imbalance(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                         spec: ContractSpec) -> list[PatternEvent]:
    r = settings.imbalance_ratio
    prices = buy_imbalance_levels(bar, r, settings.min_volume_for(bar.symbol))
    if not prices:
        return []
    strength = max(_strength(r, bar.ask(p), bar.bid(p - 1)) for p in prices)
    return [event(Pattern.BUY_IMBALANCE, Direction.LONG, bar, prices, strength,
                  [_buy_reason(bar, p, spec) for p in prices])]


def detect_sell_imbalance(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                          spec: ContractSpec) -> list[PatternEvent]:
    r = settings.imbalance_ratio
    prices = sell_imbalance_levels(bar, r, settings.min_volume_for(bar.symbol))
    if not prices:
        return []
    strength = max(_strength(r, bar.bid(p), bar.ask(p + 1)) for p in prices)
    return [event(Pattern.SELL_IMBALANCE, Direction.SHORT, bar, prices, strength,
                  [_sell_reason(bar, p, spec) for p in prices])]


def _stack_events(bar: FootprintBar, prices: list[int], settings: PatternSettings, spec: ContractSpec,
                  buy: bool) -> list[PatternEvent]:
    k = settings.stacked_min_levels
    out = []
    for run in stacks(prices, k):
        side = "buy" if buy else "sell"
        reasons = [f"{len(run)} stacked {side} imbalances {spec.fmt(run[0])}-{spec.fmt(run[-1])}"]
        reasons += [(_buy_reason if buy else _sell_reason)(bar, p, spec) for p in run]
        out.append(event(Pattern.STACKED_BUY_IMBALANCE if buy else Pattern.STACKED_SELL_IMBALANCE,
                         Direction.LONG if buy else Direction.SHORT, bar, run, len(run) / (2 * k), reasons))
    return out


def detect_stacked_buy_imbalance(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                                 spec: ContractSpec) -> list[PatternEvent]:
    prices = buy_imbalance_levels(bar, settings.imbalance_ratio, settings.min_volume_for(bar.symbol))
    return _stack_events(bar, prices, settings, spec, buy=True)


def detect_stacked_sell_imbalance(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                                  spec: ContractSpec) -> list[PatternEvent]:
    prices = sell_imbalance_levels(bar, settings.imbalance_ratio, settings.min_volume_for(bar.symbol))
    return _stack_events(bar, prices, settings, spec, buy=False)
