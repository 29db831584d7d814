"""The 32 real ES quarters (ESH15..ESZ22, 5-minute bars) through the bar backtest on local processes (issue 16).

Figures (one JSON line each; median, min and max over ``--runs``):

- ``load``: read and validate every file, join them into the continuous series (one process);
- ``backtest``: the quarters on ``--workers`` processes, one parameter set (what ``tradebot backtest --data``
  times as its backtest phase): wall time, and the CPU seconds of the parent and the workers;
- ``grid``: the same with ``--grid-size`` combinations (the walk-forward grid), when ``--grid`` is given.

The machine's load average is printed with each figure: on a shared machine the wall time is the CPU time
divided by the cores *left over*, so compare CPU seconds across runs.

    .venv/bin/python benchmarks/bars32.py [--data ../shared/data/sierra/5m] [--workers 2] [--runs 3] [--grid]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                    / "sierra" / "5m")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--grid", action="store_true", help="also time the default walk-forward grid")
    a = ap.parse_args()

    from tradebot.backtest.barcli import DEFAULT_WF_GRID, run_tasks, split_segments
    from tradebot.backtest.barsim import SegmentTask
    from tradebot.backtest.overrides import grid_combinations
    from tradebot.core.calendar import calendar_for
    from tradebot.core.config import Settings
    from tradebot.feeds.bars import bar_files, load_series

    calendar_for("equity")
    settings = Settings()
    files = bar_files(a.data)
    figures: dict[str, list[tuple[float, float]]] = {"load": [], "backtest": []}
    combos_grid = grid_combinations(list(DEFAULT_WF_GRID))
    if a.grid:
        figures["grid"] = []
    bars = 0
    for _ in range(a.runs):
        c0, t0 = _cpu(), time.perf_counter()
        series = load_series(files)
        figures["load"].append((time.perf_counter() - t0, _cpu() - c0))
        bars = len(series)
        segs = split_segments(series)
        for name, combos in (("backtest", [{}]), ("grid", combos_grid)):
            if name not in figures:
                continue
            tasks = sorted((SegmentTask(n, s, settings, tuple(combos)) for n, s in segs), key=lambda t: -len(t.cols))
            c0, t0 = _cpu(), time.perf_counter()
            res = run_tasks(tasks, a.workers)
            figures[name].append((time.perf_counter() - t0, _cpu() - c0))
            assert not any(r.error for r in res), [r.error for r in res if r.error]
    for name, vals in figures.items():
        walls = [v[0] for v in vals]
        cpus = [v[1] for v in vals]
        print(json.dumps({"figure": name, "files": len(files), "bars": bars, "workers": a.workers,
                          "combos": len(combos_grid) if name == "grid" else 1,
                          "wall_s_median": round(statistics.median(walls), 2), "wall_s_min": round(min(walls), 2),
                          "wall_s_max": round(max(walls), 2), "cpu_s_median": round(statistics.median(cpus), 2),
                          "bars_per_s": round(bars / statistics.median(walls)),
                          "load_average": [round(x, 2) for x in os.getloadavg()], "runs": a.runs}), flush=True)


if __name__ == "__main__":
    main()
