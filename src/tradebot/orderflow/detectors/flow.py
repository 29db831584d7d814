"""Detectors that need only a bar's totals (volume, bid/ask volume): they run the same on footprint bars built
from ticks and on bars from a bar export, which has no per-price levels.

* **VOLUME_IMBALANCE** (seed 004's imbalance ratio): ``r = (ask - bid) / volume`` of the bar. ``r >=
  flow_imbalance_ratio`` -> LONG (buyers lifted the offer), ``r <= -flow_imbalance_ratio`` -> SHORT; only
  bars with at least ``flow_min_volume`` contracts (a 3-lot overnight bar is all imbalance and says nothing).
  The seed's "60% imbalance" is the default. Its companion, the cumulative-delta confirmation, is the router's
  ``cum_delta`` confluence term. Strength ``0.5 + 0.5 * (|r| - R) / (1 - R)``.
* **RED_BURST** (seed 000's red burst as an entry): the bar's volume is more than ``burst_spike_ratio`` x the
  average volume of the previous ``burst_baseline_bars`` bars of the history (5 minutes before, on 5-minute
  bars: the seed's baseline) and sells are the majority (``2 * bid > volume``, strict, as the alert engine)
  -> SHORT. Strength ``0.5 + 0.5 * min(1, (ratio - S) / S)``.

Both compare exactly in integers against the configured float's decimal form, like every other detector.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradebot.core.config import PatternSettings
from tradebot.core.contracts import ContractSpec
from tradebot.orderflow.detectors._common import event, exact, num
from tradebot.orderflow.events import Direction, Pattern, PatternEvent
from tradebot.orderflow.footprint import FootprintBar


def detect_volume_imbalance(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                            spec: ContractSpec) -> list[PatternEvent]:
    v = bar.volume
    if v <= 0 or v < settings.flow_min_volume:
        return []
    d = bar.ask_volume - bar.bid_volume
    n, den = exact(settings.flow_imbalance_ratio)
    if abs(d) * den < n * v:
        return []
    r = d / v
    th = settings.flow_imbalance_ratio
    strength = 0.5 + 0.5 * (abs(r) - th) / (1.0 - th) if th < 1.0 else 1.0
    long = d > 0
    reasons = (f"imbalance (ask {bar.ask_volume} - bid {bar.bid_volume}) / volume {v} = {r:+.2f} "
               f"({'>=' if long else '<='} {'+' if long else '-'}{num(th)})",)
    price = bar.close
    return [event(Pattern.VOLUME_IMBALANCE, Direction.LONG if long else Direction.SHORT, bar, [price], strength,
                  reasons)]


def detect_red_burst(bar: FootprintBar, history: Sequence[FootprintBar], settings: PatternSettings,
                     spec: ContractSpec) -> list[PatternEvent]:
    k = settings.burst_baseline_bars
    if len(history) < k or 2 * bar.bid_volume <= bar.volume:
        return []
    base = sum(b.volume for b in history[-k:])
    if base <= 0:
        return []
    n, den = exact(settings.burst_spike_ratio)
    # volume / (base / k) > S  <=>  volume * k * den > S_num * base
    if bar.volume * k * den <= n * base:
        return []
    ratio = bar.volume * k / base
    s = settings.burst_spike_ratio
    strength = 0.5 + 0.5 * min(1.0, (ratio - s) / s)
    reasons = (f"volume {bar.volume} = {ratio:.2f} x the {k}-bar average {base / k:.0f} (> {num(s)})",
               f"sells {bar.bid_volume} of {bar.volume} (majority)")
    return [event(Pattern.RED_BURST, Direction.SHORT, bar, [bar.close], strength, reasons)]
