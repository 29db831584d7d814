"""The per-day backtest task on the fast path, a drop-in for :func:`tradebot.backtest.runner.run_day`.

Same input (:class:`~tradebot.backtest.runner.DayTask`), same output shape (a ``DayResult`` whose combos carry
the trades as dicts, the router's decision count and the intents taken), picklable for local processes and
Dask alike. The day is read once and its bars, patterns, regimes and contexts are shared by every combination
that does not change them. A day or a combination the fast path cannot reproduce runs on the event path, and
the result says so (``engine``, ``fallback``), so a sweep never mixes in an answer of a different model.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tradebot.backtest.fast.engine import FastDay, fast_supported
from tradebot.backtest.fast.load import UnsupportedError
from tradebot.backtest.overrides import apply_overrides
from tradebot.backtest.runner import ComboResult, DayResult, DayTask, load_events, run_day, run_events
from tradebot.core.types import MarketEvent

ENGINES = ("auto", "fast", "event")


@dataclass
class FastDayResult(DayResult):
    engine: str = "fast"
    """``fast``, ``event`` (the whole day fell back) or ``mixed`` (some combinations did)."""
    fallback: str | None = None
    """Why the event path ran, when it did."""


def _as_result(res: DayResult, engine: str, fallback: str | None) -> FastDayResult:
    return FastDayResult(res.day, res.events, res.rejects, res.combos, res.seconds, res.error, engine, fallback)


def run_task(task: DayTask, engine: str = "auto") -> DayResult:
    """One day, every combination: ``engine`` = ``event`` (the reference), ``fast`` or ``auto`` (the same: the
    fast path wherever it is exact, the event path elsewhere). Errors are returned, not raised."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
    if engine == "event":
        return _as_result(run_day(task), "event", None)
    t0 = time.perf_counter()
    whys = [fast_supported(apply_overrides(task.settings, c)) for c in task.combos]
    if all(whys):
        return _as_result(run_day(task), "event", whys[0])
    try:
        day = FastDay(task.paths, task.symbol, task.settings)
    except UnsupportedError as exc:
        return _as_result(run_day(task), "event", str(exc))
    res = FastDayResult(task.day)
    try:
        cols = day.columns(task.settings)
        res.events = cols.events
        res.rejects = dict(cols.rejects)
        events: list[MarketEvent] | None = None
        for combo in task.combos:
            settings = apply_overrides(task.settings, combo)
            why = fast_supported(settings)
            cr: ComboResult | None = None
            if why is None:
                try:
                    run = day.run(settings)
                    cr = ComboResult(combo, [t.to_dict() for t in run.trades], run.decisions, run.taken,
                                     run.day_tiers)
                except UnsupportedError as exc:
                    why = str(exc)
            if cr is None:
                if events is None:
                    events, _ = load_events([Path(p) for p in task.paths], task.settings, task.symbol)
                _, cr = run_events(events, settings, task.symbol)
                cr.combo = combo
                res.engine, res.fallback = "mixed", why
            res.combos.append(cr)
    except Exception as exc:  # one bad day must not sink a 100-day run: reported and counted
        res.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    res.seconds = time.perf_counter() - t0
    return res
