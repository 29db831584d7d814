"""Fast replay path throughput, memory and parity on a synthetic 750k-trade ES day (issue 8).

Full pipeline from a DBN file to the trade list on one core (the process is pinned to one CPU): chunked DBN
decoding and validation, footprint bars, all ten patterns, profile, microstructure context, regime, router,
and brackets with tick-level fills. Two shapes of the same session: TBBO (trades + L1) and MBP-10 (every book
update plus the trades). For comparison the event path (``load_events`` + ``run_events``, the daemon's own
trading core) on the same files, and whether both give the same trades (``trade_hash``).

Prints one JSON line per figure: the median of ``--runs`` runs with min and max. Peak RSS is measured in a
fresh child process per engine and schema (``VmHWM``, the peak resident set, which includes the interpreter and
the imports: the ``baseline`` line shows those alone). Numba's compiled code is loaded from its on-disk cache;
the first run of a cold cache compiles for a few seconds (``compile`` line, not part of the throughput).

    .venv/bin/python benchmarks/replay_fast.py [--trades 750000] [--runs 5] [--event-runs 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMAS = ("tbbo", "mbp-10")
DAY = dt.date(2025, 3, 11)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def day_files(data: Path, trades: int, seed: int) -> dict[str, Path]:
    from tradebot.feeds.synth import synthesize

    out = {}
    for schema in SCHEMAS:
        found = sorted((data / "SIM.GLBX" / schema / "ES").glob(f"{DAY.isoformat()}.dbn.zst"))
        if found:
            out[schema] = found[0]
            continue
        (d,) = synthesize(data, symbol="ES", days=1, start=DAY, trades_per_day=trades, seed=seed, schema=schema)
        out[schema] = d.path
    return out


def fast_once(path: Path) -> tuple[float, list[Any], dict[str, float]]:
    from tradebot.backtest.fast import FastDay
    from tradebot.core.config import load_settings

    s = load_settings()
    t0 = time.perf_counter()
    day = FastDay([path], "ES", s)
    t1 = time.perf_counter()
    day.analysis(s)
    t2 = time.perf_counter()
    trades = day.run(s).trades
    t3 = time.perf_counter()
    return t3 - t0, trades, {"load_validate": t1 - t0, "bars_patterns_regime_context": t2 - t1,
                             "router_brackets": t3 - t2}


def event_once(path: Path) -> tuple[float, list[Any]]:
    from tradebot.backtest.runner import load_events, run_events
    from tradebot.core.config import load_settings
    from tradebot.execution.trades import TradeRecord

    s = load_settings()
    t0 = time.perf_counter()
    events, _ = load_events([path], s, "ES")
    _, cr = run_events(events, s, "ES")
    return time.perf_counter() - t0, [TradeRecord.from_dict(t) for t in cr.trades]


def bracket_kernel(path: Path, calls: int, runs: int) -> dict[str, Any]:
    """The compiled bracket loop alone: ``calls`` brackets spread over the day whose stop and target are out of
    reach, so each scans every event from its start to the end of the data (the loop's worst case)."""
    import numpy as np

    from tradebot.backtest.fast import FastDay
    from tradebot.backtest.fast import kernels as kn
    from tradebot.core.config import load_settings

    s = load_settings()
    cols = FastDay([path], "ES", s).columns(s)
    market = kn.BracketMarket(cols.rts, cols.book_ok, cols.trade_ok, cols.tpx, cols.tside, cols.bid, cols.ask)
    n = int(cols.rts.size)
    mid = int(np.median(cols.tpx[cols.trade_ok]))
    starts = [int(x) for x in np.linspace(2, 2 * n - 2, calls)]
    far = 1 << 62
    params = [kn.BracketParams(
        start_pos=sp, resume_ns=0, armed_ns=int(cols.rts[sp // 2]), side=1 if i % 2 == 0 else -1, qty=1,
        stop=mid - 10**5 if i % 2 == 0 else mid + 10**5, target=mid + 10**5 if i % 2 == 0 else mid - 10**5,
        tick_value=125, fee=100, market_slip=0, stop_slip=1, day_net=0, had_fill=False, profit_cents=10**12,
        loss_cents=-10**12, include_unrealized=True, flatten_on_limit=True, limit_done=False, flatten_at=far,
        session_close=far) for i, sp in enumerate(starts)]
    events = sum(2 * n - sp for sp in starts)
    kn.run_bracket(market, params[0])  # compile or load from the cache
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        for prm in params:
            kn.run_bracket(market, prm)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # CPU time as well: on a shared machine the wall clock also counts the time other processes held the core.
    return {"calls": calls, "event_slots_scanned": events, "seconds": spread(times),
            "ns_per_event_slot": round(statistics.median(times) / events * 1e9, 2),
            "cpu_ns_per_event_slot": round(statistics.median(cpu) / events * 1e9, 2)}


def child_rss(engine: str, path: str) -> None:
    """Run one day in this fresh process and print its peak RSS in MB."""
    from tradebot.core.logging import configure_logging

    configure_logging("ERROR", "json")
    if engine == "fast":
        fast_once(Path(path))
    elif engine == "event":
        event_once(Path(path))
    else:
        import tradebot.backtest.fast
        import tradebot.backtest.runner  # noqa: F401  (the imports alone)
    print(peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``). Not ``ru_maxrss``: on Linux that survives ``execve``, so
    a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_of(engine: str, path: Path | None) -> float:
    cmd = [sys.executable, __file__, "--child-rss", engine, str(path or "")]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()
    return float(out[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trades", type=int, default=750_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--event-runs", type=int, default=5, help="event-path runs per schema (0 = skip it)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--data", type=Path, default=None, help="catalog to write the days into (kept); default a temp dir")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    p.add_argument("--child-rss", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_rss:
        if not args.no_pin and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        child_rss(*args.child_rss)
        return 0
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from tradebot.core.logging import configure_logging
    from tradebot.execution.trades import trade_hash

    configure_logging("ERROR", "json")
    with tempfile.TemporaryDirectory(prefix="replay-fast-") as tmp:
        data = args.data or Path(tmp)
        t0 = time.perf_counter()
        files = day_files(data, args.trades, args.seed)
        emit(figure="generate", seconds=round(time.perf_counter() - t0, 2), trades=args.trades,
             files={k: str(v) for k, v in files.items()})
        first, _, _ = fast_once(files["tbbo"])
        emit(figure="compile", note="first fast run in this process (numba: cache load or compile)",
             seconds=round(first, 3))
        emit(figure="baseline_rss", note="interpreter + imports only", peak_rss_mb=round(rss_of("none", None), 1))
        for schema in SCHEMAS:
            path = files[schema]
            times, stages = [], []
            trades: list[Any] = []
            for _ in range(args.runs):
                secs, trades, st = fast_once(path)
                times.append(secs)
                stages.append(st)
            tps = [args.trades / t for t in times]
            mid = stages[times.index(statistics.median(times))] if args.runs % 2 else stages[0]
            emit(figure="fast_full_pipeline", schema=schema, trades=args.trades, runs=args.runs,
                 seconds=spread(times), trades_per_s=spread(tps), goal_trades_per_s=5e6 if schema == "tbbo" else None,
                 stretch_trades_per_s=1e7 if schema == "tbbo" else None,
                 stages_seconds={k: round(v, 4) for k, v in mid.items()}, trades_made=len(trades))
            emit(figure="peak_rss", engine="fast", schema=schema, peak_rss_mb=round(rss_of("fast", path), 1),
                 goal_mb=400)
            emit(figure="bracket_kernel", schema=schema, **bracket_kernel(path, 100 if schema == "tbbo" else 40,
                                                                          args.runs))
            if args.event_runs > 0:
                ev_times = []
                ev_trades: list[Any] = []
                for _ in range(args.event_runs):
                    secs, ev_trades = event_once(path)
                    ev_times.append(secs)
                emit(figure="event_full_pipeline", schema=schema, trades=args.trades, runs=args.event_runs,
                     seconds=spread(ev_times), trades_per_s=spread([args.trades / t for t in ev_times]),
                     speedup_median=round(statistics.median(ev_times) / statistics.median(times), 1))
                emit(figure="peak_rss", engine="event", schema=schema, peak_rss_mb=round(rss_of("event", path), 1))
                emit(figure="parity", schema=schema, fast_hash=trade_hash(trades), event_hash=trade_hash(ev_trades),
                     identical_lists=trades == ev_trades, trades=len(trades),
                     verdict="identical" if trades == ev_trades and trade_hash(trades) == trade_hash(ev_trades)
                     else "DIFFERENT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
