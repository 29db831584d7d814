"""The fast replay/backtest path: the event path's trades from columnar arrays and compiled loops.

``run_day_fast(paths, settings, symbol)`` has the contract of the event path (``load_events`` + ``run_events``)
and gives the identical trade list; settings or data it cannot reproduce exactly (:func:`fast_supported`, and
:class:`~tradebot.backtest.fast.load.UnsupportedError` per day) run the event path instead, never a different answer.
``run_task`` is the picklable per-day task for :mod:`tradebot.backtest.runner`'s executors.
"""

from tradebot.backtest.fast.engine import FastDay, FastRun, event_trades, fast_supported, run_day_fast
from tradebot.backtest.fast.load import UnsupportedError
from tradebot.backtest.fast.task import FastDayResult, run_task

__all__ = ["FastDay", "FastDayResult", "FastRun", "UnsupportedError", "event_trades", "fast_supported",
           "run_day_fast", "run_task"]
