"""The per-order fill rules: one statement shared by the paper broker and the fast path's compiled bracket loop."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tradebot.backtest.fast import kernels as kn
from tradebot.execution import fills
from tradebot.execution.fills import NO_QUOTE

BUY, SELL = 1, -1


def test_market_orders_pay_the_prevailing_quote_else_the_print_or_a_tick_worse() -> None:
    assert fills.market_on_trade(BUY, 100, SELL, 99, 101) == 101  # a quote is known: its ask, never the print
    assert fills.market_on_trade(SELL, 100, BUY, 99, 101) == 99
    assert fills.market_on_trade(BUY, 100, BUY, NO_QUOTE, NO_QUOTE) == 100  # a buy print lifted the ask we pay
    assert fills.market_on_trade(BUY, 100, SELL, NO_QUOTE, NO_QUOTE) == 101  # it hit the bid: the ask is above
    assert fills.market_on_trade(BUY, 100, 0, NO_QUOTE, NO_QUOTE) == 101  # unknown aggressor: the worse case
    assert fills.market_on_trade(SELL, 100, 0, 99, NO_QUOTE) == 99
    assert fills.market_on_trade(SELL, 100, 0, NO_QUOTE, 101) == 99
    assert fills.market_on_book(BUY, 99, NO_QUOTE) == NO_QUOTE  # an empty ask: no fill on this book
    assert fills.slipped(BUY, 101, 2) == 103 and fills.slipped(SELL, 99, 2) == 97


def test_stops_fill_at_the_stop_or_the_worse_print_and_limits_only_through() -> None:
    assert fills.stop_elected(SELL, 95, 95) and not fills.stop_elected(SELL, 95, 96)
    assert fills.stop_fill(SELL, 95, 93, 1) == 92  # gapped through: the print, then slippage
    assert fills.stop_fill(BUY, 105, 105, 1) == 106
    assert not fills.limit_through(SELL, 110, 110) and fills.limit_through(SELL, 110, 111)
    assert fills.limit_through(BUY, 90, 89) and not fills.limit_through(BUY, 90, 90)


def test_the_compiled_bracket_loop_runs_these_very_functions() -> None:
    for name in ("slipped", "market_on_book", "market_on_trade", "stop_elected", "stop_fill", "limit_through"):
        assert getattr(kn, f"_{name}").py_func is getattr(fills, name)
    assert kn.NO_PX == fills.NO_QUOTE
    # numba keys the loop's disk cache by kernels.py alone: the rules' hash beside it drops a stale cache.
    marker = Path(kn.run_bracket._cache._cache_path) / "kernels.run_bracket.fills.sha256"
    assert marker.read_text() == hashlib.sha256(Path(fills.__file__).read_bytes()).hexdigest()
