"""108 synthetic ES days end to end on 2 processes, then a 100-combination sweep (issue 8).

The days are generated once into a catalog (``--data`` keeps it between runs; generation is not timed) with
``--trades-per-day`` trades each (default 200,000: ~21.6M trades, a busy quarter at a realistic ES pace).
Each figure is the wall time from creating the process pool to the last day's result, with
:func:`tradebot.backtest.fast.run_task` as the per-day task exactly as ``tradebot backtest`` would run it
(one task per day, every combination of the day inside it, so a day is decoded and analysed once).

Figures (one JSON line each; median, min and max over ``--runs``):

- ``one_set``: all days, the default settings;
- ``sweep``: all days (or ``--sweep-days``), 100 combinations: risk_reward (5) x MIN_CONFIDENCE (5) x ES stop
  distance (4);
- ``parity``: ``--verify`` random (day, combination) pairs re-run on the event path: identical trades or not;
- ``event_estimate``: the event path's time for the one-set run, extrapolated from ``--event-days`` days.

    .venv/bin/python benchmarks/days108.py [--days 108] [--trades-per-day 200000] [--workers 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

START = dt.date(2025, 1, 2)
GRID = ("router.risk_reward=1.5,2,2.5,3,4", "min_confidence=0.45,0.5,0.55,0.6,0.65",
        "router.stop_points_by_symbol=ES:3,ES:4,ES:5,ES:6")


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def catalog_days(data: Path, days: int, trades: int, seed: int, schema: str) -> list[tuple[dt.date, Path]]:
    from tradebot.feeds.synth import synthesize

    folder = data / "SIM.GLBX" / schema / "ES"
    found = sorted(folder.glob("*.dbn.zst")) if folder.is_dir() else []
    if len(found) < days:
        synthesize(data, symbol="ES", days=days, start=START, trades_per_day=trades, seed=seed, schema=schema)
        found = sorted(folder.glob("*.dbn.zst"))
    return [(dt.date.fromisoformat(p.name.split(".")[0]), p) for p in found[:days]]


def run_all(tasks: list[Any], workers: int) -> tuple[float, list[Any]]:
    from tradebot.backtest.fast import run_task

    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(functools.partial(run_task, engine="fast"), tasks))
    return time.perf_counter() - t0, results


def summarize(results: list[Any]) -> dict[str, Any]:
    errors = [r.day for r in results if r.error]
    fell_back = [r.day for r in results if getattr(r, "engine", "fast") != "fast"]
    trades = sum(len(c.trades) for r in results for c in r.combos)
    return {"days": len(results), "events": sum(r.events for r in results), "trades_made": trades,
            "errors": errors, "fell_back": fell_back}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=108)
    p.add_argument("--trades-per-day", type=int, default=200_000)
    p.add_argument("--schema", default="tbbo", choices=("tbbo", "mbp-10", "mbp-1", "trades"))
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=5, help="timed runs of the one-set figure")
    p.add_argument("--sweep-runs", type=int, default=1, help="timed runs of the sweep")
    p.add_argument("--sweep-days", type=int, default=0, help="days in the sweep (0 = all)")
    p.add_argument("--verify", type=int, default=3, help="(day, combination) pairs re-run on the event path")
    p.add_argument("--event-days", type=int, default=2, help="days timed on the event path for the estimate")
    p.add_argument("--data", type=Path, default=None, help="catalog to generate into and reuse (default: temp)")
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):  # two cores, whatever the machine has
        cpus = sorted(os.sched_getaffinity(0))[:args.workers]
        os.sched_setaffinity(0, set(cpus))
    from tradebot.backtest.overrides import apply_overrides, grid_combinations
    from tradebot.backtest.runner import DayTask, load_events, run_events
    from tradebot.core.config import load_settings
    from tradebot.core.logging import configure_logging
    from tradebot.execution.trades import TradeRecord

    configure_logging("ERROR", "json")
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="days108-") as tmp:
        data = args.data or Path(tmp)
        t0 = time.perf_counter()
        days = catalog_days(data, args.days, args.trades_per_day, args.seed, args.schema)
        emit(figure="generate", seconds=round(time.perf_counter() - t0, 1), days=len(days),
             trades_per_day=args.trades_per_day, schema=args.schema, catalog=str(data),
             first=days[0][0].isoformat(), last=days[-1][0].isoformat())
        one = [DayTask(d.isoformat(), (str(path),), "ES", settings, ({},)) for d, path in days]
        times, results = [], []
        for _ in range(args.runs):
            secs, results = run_all(one, args.workers)
            times.append(secs)
        n_trades = args.trades_per_day * len(days)
        emit(figure="one_set", workers=args.workers, runs=args.runs, seconds=spread(times), goal_seconds=15,
             market_trades=n_trades, market_trades_per_s=round(n_trades / statistics.median(times)),
             **summarize(results))
        combos = tuple(grid_combinations(list(GRID)))
        sweep_days = days[:args.sweep_days] if args.sweep_days else days
        sweep = [DayTask(d.isoformat(), (str(path),), "ES", settings, combos) for d, path in sweep_days]
        s_times, s_results = [], []
        for _ in range(args.sweep_runs):
            secs, s_results = run_all(sweep, args.workers)
            s_times.append(secs)
        emit(figure="sweep", workers=args.workers, runs=args.sweep_runs, combinations=len(combos),
             seconds=spread(s_times), goal_seconds=120,
             ms_per_day_combination=round(statistics.median(s_times) * args.workers * 1000 /
                                          (len(combos) * len(sweep_days)), 2), **summarize(s_results))
        rng = random.Random(args.seed)
        checked, same = [], 0
        for _ in range(args.verify):
            i, k = rng.randrange(len(s_results)), rng.randrange(len(combos))
            res = s_results[i]
            s = apply_overrides(settings, combos[k])
            events, _ = load_events([Path(sweep[i].paths[0])], s, "ES")
            _, cr = run_events(events, s, "ES")
            ok = [TradeRecord.from_dict(t) for t in cr.trades] == [TradeRecord.from_dict(t)
                                                                   for t in res.combos[k].trades]
            same += ok
            checked.append({"day": res.day, "combo": combos[k], "trades": len(cr.trades), "identical": ok})
        emit(figure="parity", checked=checked, verdict="identical" if same == len(checked) else "DIFFERENT")
        loads, runs = [], []
        for _, path in days[:args.event_days]:
            t0 = time.perf_counter()
            events, _ = load_events([path], settings, "ES")
            t1 = time.perf_counter()
            run_events(events, settings, "ES")
            loads.append(t1 - t0)
            runs.append(time.perf_counter() - t1)
            del events
        if loads:
            load_s, run_s = statistics.mean(loads), statistics.mean(runs)
            emit(figure="event_estimate", note="event path (run_day), extrapolated from the timed days",
                 days_timed=len(loads), load_seconds_per_day=round(load_s, 2), run_seconds_per_day=round(run_s, 2),
                 one_set_estimated_seconds=round((load_s + run_s) * len(days) / args.workers, 1),
                 sweep_estimated_seconds=round((load_s + len(combos) * run_s) * len(sweep_days) / args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
