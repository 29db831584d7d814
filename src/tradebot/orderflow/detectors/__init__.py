"""The pattern detectors (ten footprint patterns, two on bar totals): small pure functions over closed bars."""

from tradebot.orderflow.detectors._common import Detector
from tradebot.orderflow.detectors.absorption import detect_buying_absorption, detect_selling_absorption
from tradebot.orderflow.detectors.divergence import detect_delta_divergence
from tradebot.orderflow.detectors.exhaustion import detect_buying_exhaustion, detect_selling_exhaustion
from tradebot.orderflow.detectors.flow import detect_red_burst, detect_volume_imbalance
from tradebot.orderflow.detectors.imbalance import (
    buy_imbalance_levels,
    detect_buy_imbalance,
    detect_sell_imbalance,
    detect_stacked_buy_imbalance,
    detect_stacked_sell_imbalance,
    sell_imbalance_levels,
    stacks,
)
from tradebot.orderflow.detectors.unfinished import (
    OpenLevel,
    UnfinishedTracker,
    detect_unfinished_business,
    unfinished_extremes,
)

__all__ = [
    "Detector",
    "OpenLevel",
    "UnfinishedTracker",
    "buy_imbalance_levels",
    "detect_buy_imbalance",
    "detect_buying_absorption",
    "detect_buying_exhaustion",
    "detect_delta_divergence",
    "detect_red_burst",
    "detect_sell_imbalance",
    "detect_selling_absorption",
    "detect_selling_exhaustion",
    "detect_stacked_buy_imbalance",
    "detect_stacked_sell_imbalance",
    "detect_unfinished_business",
    "detect_volume_imbalance",
    "sell_imbalance_levels",
    "stacks",
    "unfinished_extremes",
]
