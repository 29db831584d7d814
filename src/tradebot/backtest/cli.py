"""``tradebot backtest``, ``tradebot backtest summary|stress`` (``tradebot replay`` is :mod:`tradebot.replay`).

Backtests run one task per trading day over local processes (default) or a Dask cluster (``--scheduler
tcp://HOST:PORT``); each task runs the daemon's own trading core. Results go to ``data/backtests.db`` and an
HTML report under ``data/reports/<run>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.backtest.db import BacktestDB, new_run_id
from tradebot.backtest.overrides import apply_overrides, grid_combinations, parse_pairs
from tradebot.backtest.parallel import map_tasks
from tradebot.backtest.stats import (
    BacktestStats,
    compute_stats,
    fmt_pct,
    fmt_ratio,
    fmt_usd,
    stats_summary,
)
from tradebot.core.config import ConfigError, Settings
from tradebot.core.contracts import spec_for
from tradebot.core.display import display_tz_name
from tradebot.execution.trades import TradeRecord, trade_hash
from tradebot.feeds.catalog import combined_fingerprint_of

if TYPE_CHECKING:  # the runner pulls in databento and pandas: only the commands that run days import it
    from tradebot.backtest.runner import ChainResult, ChainTask, DayResult, DayTask
    from tradebot.backtest.stress import StressReport

DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def add_backtest_commands(sub: Any) -> None:
    p = sub.add_parser("backtest", help="batch backtests, summaries and stress tests")
    p.add_argument("action", nargs="?", default="run", help="run (default) | summary | stress")
    p.add_argument("run_id", nargs="?", help="summary/stress: the run (default: the latest)")
    p.add_argument("--data", type=Path, help="catalog root or folder of DBN files (one per day), or a folder of bar "
                                             "exports (Sierra BarData: one file per contract quarter)")
    p.add_argument("--walk-forward", type=int, default=0, metavar="N",
                   help="bar data: train on N quarters, test the next, roll; only out-of-sample counts")
    p.add_argument("--back-adjust", action="store_true", help="bar data: difference-adjust prices at the rolls")
    p.add_argument("--start", help="first trading day YYYY-MM-DD (default: the first available)")
    p.add_argument("--end", help="last trading day (default: the last available)")
    p.add_argument("--symbol", help="contract root (default TRADING_SYMBOL)")
    p.add_argument("--schema", help="pick files of this schema when a day has several")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="settings override")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="parameter sweep axis")
    p.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT (default: local processes)")
    p.add_argument("--workers", type=int, default=0, help="local processes (default: CPU count)")
    p.add_argument("--engine", choices=("auto", "fast", "event"), default="auto",
                   help="auto/fast: the columnar fast path wherever it is exact, else the event path; event: only "
                        "the event path (the daemon's own loop)")
    p.add_argument("--mode", choices=("chained", "independent"), default="chained",
                   help="chained (default): the days in order through one continuously running trading core, as "
                        "the daemon trades them (balance, tier, strategy state and daily limits carry over); "
                        "independent: every day on its own from the starting balance, days in parallel")
    p.add_argument("--name", help="run name (default: symbol, dates and mode)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--footprints", type=int, default=3, help="sample trades to chart in the report")
    p.add_argument("--db", type=Path, help="results database (default TRADEBOT_DATA_DIR/backtests.db)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--slippage", action="store_true", help="stress: only the 1/2-tick slippage tests")
    p.add_argument("--time-of-day", action="store_true", help="stress: only the hour breakdown")
    p.add_argument("--day-of-week", action="store_true", help="stress: only the weekday breakdown")
    p.add_argument("--monte-carlo", type=int, default=0, metavar="N", help="stress: only Monte Carlo, N runs")
    p.set_defaults(handler=backtest_command)


# -- data discovery --------------------------------------------------------------------------------------


def find_days(root: Path, symbol: str, start: dt.date | None, end: dt.date | None,
              schema: str | None = None) -> dict[dt.date, Path]:
    """Day -> file under ``root``: the catalog layout (``.../<schema>/<ROOT>/<day>.dbn.zst``) or loose files
    named with their date. Several candidates for a day: the ``schema`` asked for, else the first in order."""
    out: dict[dt.date, Path] = {}
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*.dbn*") if p.is_file() and not p.name.endswith((".part", ".json")))
    for f in files:
        m = DATE.search(f.name)
        if not m:
            continue
        in_catalog = f.parent.name.upper() == symbol
        loose = symbol.lower() in f.name.lower() or f.parent == root
        if not (in_catalog or loose):
            continue
        if schema and f.parent.parent.name != schema and schema not in f.name:
            continue
        day = dt.date.fromisoformat(m.group(1))
        if (start and day < start) or (end and day > end):
            continue
        out.setdefault(day, f)
    return dict(sorted(out.items()))


# -- running ---------------------------------------------------------------------------------------------


def _progress(done: int, total: int, res: DayResult, t0: float) -> None:
    tty = sys.stderr.isatty()
    status = "ERROR" if res.error else f"{res.events} events {res.seconds:.1f}s"
    line = f"[{done:>3}/{total}] {done * 100 // total:>3}% {res.day} {status} elapsed {time.monotonic() - t0:.1f}s"
    print(("\r" + line.ljust(100)) if tty else line, end="" if tty and done < total else "\n", file=sys.stderr,
          flush=True)


def execute(tasks: list[DayTask], scheduler: str | None = None, workers: int = 0,
            progress: Callable[[int, int, DayResult, float], None] = _progress,
            engine: str = "event") -> list[DayResult]:
    from tradebot.backtest.fast import run_task

    fn = functools.partial(run_task, engine=engine)
    t0 = time.monotonic()
    results = map_tasks(fn, tasks, workers, scheduler, lambda n, r: progress(n, len(tasks), r, t0))
    return sorted(results, key=lambda r: r.day)


MODE_LABEL = {"chained": "chained days", "independent": "independent days"}


def execute_chains(tasks: list[ChainTask], scheduler: str | None = None, workers: int = 0) -> list[ChainResult]:
    """Chained days: one task per parameter combination (its days in order), combinations in parallel."""
    from tradebot.backtest.runner import run_chain

    if scheduler:
        from distributed import Client

        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            return list(client.gather(client.map(run_chain, tasks, pure=False)))
    if len(tasks) == 1 or workers == 1:
        return [run_chain(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=workers or min(len(tasks), os.cpu_count() or 1)) as pool:
        return list(pool.map(run_chain, tasks))


def _stats(trades: list[TradeRecord], settings: Settings, days: Iterable[dt.date],
           day_tiers: dict[str, int] | None = None) -> BacktestStats:
    """The run's statistics; tiers as the trades used them (``day_tiers`` from the run's journal), none when
    tiers are off."""
    cents = int(settings.execution.starting_balance * 100)
    tiers = settings.execution.tiers if settings.execution.tiers_enabled else ()
    used = None if day_tiers is None else {dt.date.fromisoformat(d): n for d, n in day_tiers.items()}
    return compute_stats(trades, cents, session_days=tuple(days), tiers=tiers, day_tiers=used)


def print_summary(name: str, s: BacktestStats, out: Any = None) -> None:
    out = out or sys.stdout
    rows = [
        ("run", name), ("days", f"{s.days} ({s.winning_days} winning, {fmt_pct(s.winning_day_rate)})"),
        ("trades", f"{s.trades} (win rate {fmt_pct(s.win_rate)})"), ("net P&L", fmt_usd(s.net_pnl_cents, signed=True)),
        ("profit factor", fmt_ratio(s.profit_factor)), ("avg daily P&L", fmt_usd(s.avg_daily_pnl_cents, signed=True)),
        ("max drawdown", fmt_usd(s.max_drawdown_cents)), ("max consecutive losses", str(s.max_consecutive_losses)),
        ("Sharpe / Sortino (daily)", f"{fmt_ratio(s.sharpe)} / {fmt_ratio(s.sortino)}"),
        ("expectancy / trade", fmt_usd(s.expectancy_cents, signed=True)),
        ("balance", f"{fmt_usd(s.starting_balance_cents)} -> {fmt_usd(s.final_balance_cents)}"),
    ]
    for k, v in rows:
        print(f"{k:>26}  {v}", file=out)
    if s.by_pattern:
        print(f"{'by pattern':>26}", file=out)
        for g in s.by_pattern:
            print(f"{g.key:>26}  {g.trades:>4} trades  win {fmt_pct(g.win_rate):>4}  net "
                  f"{fmt_usd(g.net_cents, signed=True):>12}  PF {fmt_ratio(g.profit_factor)}", file=out)


def _footprints(days: dict[dt.date, Path], trades: list[TradeRecord], settings: Settings, symbol: str,
                out_dir: Path, n: int) -> list[Path]:
    """Footprint charts of a few sample trades (best, worst, first) from the analyze engine."""
    if n <= 0 or not trades:
        return []
    from tradebot.analyze import run_file
    from tradebot.backtest.stats import trading_day_of
    from tradebot.orderflow.plot import plot_footprint

    picks: list[TradeRecord] = []
    for t in (max(trades, key=lambda t: t.net_pnl_cents), min(trades, key=lambda t: t.net_pnl_cents), trades[0]):
        if t not in picks:
            picks.append(t)
    pngs = []
    for t in picks[:n]:
        path = days.get(trading_day_of(t))
        if path is None:
            continue
        res = asyncio.run(run_file([path], settings, symbol))
        if res.chosen is None:
            continue
        bar_ns = settings.footprint.bar_seconds * 1_000_000_000
        bars = [bc for bc in res.chosen.bars if t.entry_ns - 6 * bar_ns <= bc.bar.end_ns
                and bc.bar.start_ns <= t.exit_ns]
        if not bars:
            continue
        side = "LONG" if t.side > 0 else "SHORT"
        png = out_dir / f"footprint-{t.trade_id[-12:]}.png"
        plot_footprint(res.chosen.engine, bars, png, max_bars=12, title=(
            f"{t.symbol} {side} {t.pattern}: entry {spec_for(t.symbol).fmt(t.entry_price)} exit "
            f"{spec_for(t.symbol).fmt(t.exit_price)} ({t.exit_reason}) net {fmt_usd(t.net_pnl_cents, signed=True)}"),
            marks=((t.entry_price, "entry", "#1f4e9c"),
                   (t.exit_price, f"exit ({t.exit_reason})", "#1b9e4b" if t.net_pnl_cents >= 0 else "#d62728")))
        pngs.append(png)
    return pngs


def backtest_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "summary":
        return summary_command(args, settings)
    if args.action == "stress":
        return stress_command(args, settings)
    if args.action != "run":
        print(f"backtest: unknown action {args.action!r} (run, summary, stress)", file=sys.stderr)
        return 2
    if args.data is None:
        print("backtest: --data DIR is required (a catalog root, e.g. from `tradebot data synth`)", file=sys.stderr)
        return 2
    from tradebot.backtest.barcli import bar_backtest, has_bar_files

    if has_bar_files(args.data):
        return bar_backtest(args, settings)
    from tradebot.core.contracts import UnknownContractError
    from tradebot.core.instruments import spec_or_register

    try:  # a stock or crypto pair recorded into the catalog (XNAS.ITCH/trades/NVDA/...) resolves by its symbol
        symbol = spec_or_register(args.symbol or settings.trading_symbol).root
    except UnknownContractError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    try:
        base = apply_overrides(settings, parse_pairs(args.set))
        combos = grid_combinations(args.grid)
        for c in combos:
            apply_overrides(base, c)  # fail before any work on a bad value
        start = dt.date.fromisoformat(args.start) if args.start else None
        end = dt.date.fromisoformat(args.end) if args.end else None
    except (ConfigError, ValueError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    days = find_days(args.data, symbol, start, end, args.schema)
    if not days:
        print(f"backtest: no {symbol} day files under {args.data} between {start or '...'} and {end or '...'}",
              file=sys.stderr)
        return 2
    from tradebot.backtest.runner import ChainTask, DayTask
    from tradebot.backtest.stats import trading_day_of
    from tradebot.backtest.stress import run_stress

    fingerprint = combined_fingerprint_of(days.values())
    mode = args.mode
    t0 = time.monotonic()
    # Per combination: (trades, trade -> day, day -> tier used), per run: errors, events per day.
    per_combo: list[tuple[list[TradeRecord], dict[str, str], dict[str, int]]] = []
    errors: dict[str, str] = {}
    daily_events: dict[str, int] = {}
    if mode == "chained":
        if args.engine == "fast":
            print("backtest: chained days run on the event path (the daemon's own loop); the fast path runs "
                  "--mode independent", file=sys.stderr)
        paths = tuple(str(p) for p in days.values())
        foreground = len(combos) == 1 and not args.scheduler
        chains = execute_chains([ChainTask(paths, symbol, base, c, progress=foreground) for c in combos],
                                args.scheduler, args.workers)
        for c, res in zip(combos, chains, strict=True):
            if res.error:
                errors[" ".join(f"{k}={v}" for k, v in c.items()) or "run"] = res.error
            recs = [TradeRecord.from_dict(t) for t in res.combo.trades]
            per_combo.append((recs, {t.trade_id: trading_day_of(t).isoformat() for t in recs}, res.combo.day_tiers))
        for res in chains[:1]:
            daily_events = {d: n for d, n in res.day_events.items() if d}
        events = sum(r.events for r in chains[:1])
    else:
        tasks = [DayTask(d.isoformat(), (str(p),), symbol, base, tuple(combos)) for d, p in days.items()]
        results = execute(tasks, args.scheduler, args.workers, engine=args.engine)
        errors = {r.day: r.error for r in results if r.error}
        for i in range(len(combos)):
            trades, trade_days, day_tiers = [], {}, {}
            for r in results:
                if r.error:
                    continue
                day_tiers.update(r.combos[i].day_tiers)
                for t in r.combos[i].trades:
                    rec = TradeRecord.from_dict(t)
                    trades.append(rec)
                    trade_days[rec.trade_id] = r.day
            per_combo.append((trades, trade_days, day_tiers))
        daily_events = {r.day: r.events for r in results}
        events = sum(r.events for r in results)
    seconds = time.monotonic() - t0
    for day, err in errors.items():
        print(f"backtest: {day} failed: {err.splitlines()[0]}", file=sys.stderr)
    db = BacktestDB(args.db or settings.data_dir / "backtests.db")
    name = args.name or f"{symbol} {min(days)}..{max(days)} ({MODE_LABEL[mode]})"
    table = []
    try:
        for combo, (trades, trade_days, day_tiers) in zip(combos, per_combo, strict=True):
            cfg = apply_overrides(base, combo)
            st = _stats(trades, cfg, days, day_tiers)
            run_name = name + (" " + " ".join(f"{k}={v}" for k, v in combo.items()) if combo else "")
            run_id = new_run_id(run_name, combo, fingerprint)
            db.save_run(run_id, name=run_name, symbol=symbol, start=min(days).isoformat(), end=max(days).isoformat(),
                        days=[d.isoformat() for d in days], params={**parse_pairs(args.set), **combo, "mode": mode},
                        config=json.loads(cfg.model_dump_json()), fingerprint=fingerprint,
                        trade_hash=trade_hash(trades), stats=st, summary={"mode": mode, **stats_summary(st)},
                        trades=trades, trade_days=trade_days, daily_events=daily_events, seconds=seconds,
                        errors=errors)
            table.append((run_id, combo, st))
    finally:
        db.close()
    print(f"backtest: {len(days)} days ({MODE_LABEL[mode]}), {len(combos)} parameter set(s), {events} events in "
          f"{seconds:.1f}s ({events / max(seconds, 1e-9):,.0f} events/s per run of the grid)", file=sys.stderr)
    if len(table) == 1:
        run_id, _, st = table[0]
        if args.json:
            print(json.dumps({"run_id": run_id, "mode": mode, **stats_summary(st)}))
        else:
            print_summary(f"{name} [{run_id}]", st)
        if not args.no_report:
            out_dir = settings.data_dir / "reports" / run_id
            trades = BacktestDB(args.db or settings.data_dir / "backtests.db").trades(run_id)
            stress = run_stress(trades, st.starting_balance_cents, base=st, session_days=tuple(days))
            pngs = _footprints(days, sorted(trades, key=lambda t: t.exit_ns), apply_overrides(base, {}), symbol,
                               out_dir, args.footprints)
            from tradebot.backtest.report import write_report

            html = write_report(name, trades, st, stress, out_dir, footprint_pngs=pngs)
            print(f"report: {html}", file=sys.stderr)
    else:
        print(f"{'run':<40} {'params':<40} {'trades':>6} {'net':>12} {'PF':>6} {'win':>5} {'maxDD':>10}")
        for run_id, combo, st in sorted(table, key=lambda x: -x[2].net_pnl_cents):
            print(f"{run_id:<40} {json.dumps(combo):<40} {st.trades:>6} {fmt_usd(st.net_pnl_cents, signed=True):>12} "
                  f"{fmt_ratio(st.profit_factor):>6} {fmt_pct(st.win_rate):>5} {fmt_usd(st.max_drawdown_cents):>10}")
    return 1 if errors else 0


def _load_run(args: argparse.Namespace, settings: Settings
              ) -> tuple[dict[str, Any], list[TradeRecord], list[dt.date]] | None:
    """The run asked for (default: the latest), its trades and its session days; ``None`` (said why) if absent."""
    path = args.db or settings.data_dir / "backtests.db"
    db = BacktestDB(path)
    try:
        run = db.run(args.run_id)
        if run is None:
            print(f"backtest: no run {args.run_id or ''} in {path}", file=sys.stderr)
            return None
        trades = db.trades(run["run_id"])
        days = db.days(run["run_id"])
    finally:
        db.close()
    return run, trades, days


def summary_command(args: argparse.Namespace, settings: Settings) -> int:
    loaded = _load_run(args, settings)
    if loaded is None:
        return 2
    run, trades, days = loaded
    st = _stats(trades, settings, days)
    if args.json:
        print(json.dumps({"run_id": run["run_id"], "name": run["name"], "trade_hash": run["trade_hash"],
                          **stats_summary(st)}))
    else:
        print_summary(f"{run['name']} [{run['run_id']}]", st)
        print(f"{'trade hash':>26}  {run['trade_hash'][:16]}")
    return 0


def stress_command(args: argparse.Namespace, settings: Settings) -> int:
    loaded = _load_run(args, settings)
    if loaded is None:
        return 2
    run, trades, days = loaded
    st = _stats(trades, settings, days)
    from tradebot.backtest.stress import run_stress

    runs = args.monte_carlo or 1000
    rep = run_stress(trades, st.starting_balance_cents, base=st, runs=runs, session_days=days)
    only = args.slippage or args.time_of_day or args.day_of_week or bool(args.monte_carlo)
    if args.json:
        print(json.dumps(stress_json(rep)))
        return 0 if rep.passed else 1
    print(f"stress tests for {run['name']} [{run['run_id']}]: {st.trades} trades")
    if args.slippage or not only:
        for sl in rep.slippage:
            print(f"  slippage {sl.ticks_per_side} tick(s)/side: net {fmt_usd(sl.stats.net_pnl_cents, signed=True)} "
                  f"({fmt_usd(sl.net_change_cents, signed=True)}), PF {fmt_ratio(sl.stats.profit_factor)}, "
                  f"win {fmt_pct(sl.stats.win_rate)}")
    if args.time_of_day or not only:
        print(f"  by hour ({display_tz_name()}): " + "; ".join(
            f"{g.key} {g.trades}t {fmt_usd(g.net_cents, signed=True)}" for g in rep.by_hour))
    if args.day_of_week or not only:
        print("  by weekday: " + "; ".join(f"{g.key} {g.trades}t {fmt_usd(g.net_cents, signed=True)}"
                                           for g in rep.by_weekday))
    if args.monte_carlo or not only:
        mc = rep.monte_carlo
        pct = ", ".join(f"p{int(k)} {fmt_usd(v)}" for k, v in mc.drawdown_percentiles.items())
        print(f"  Monte Carlo ({mc.runs} orderings): max drawdown {pct}; losing streak p95 "
              f"{mc.streak_percentiles.get(95.0)}")
    for v in rep.verdicts:
        print(f"  {'PASS' if v.passed else 'FAIL'} {v.test}: {v.value} (limit {v.limit}) {v.note}")
    return 0 if rep.passed else 1


def stress_json(rep: StressReport) -> dict[str, Any]:
    mc = rep.monte_carlo
    return {"passed": rep.passed,
            "slippage": [{"ticks": s.ticks_per_side, "net_cents": s.stats.net_pnl_cents} for s in rep.slippage],
            "monte_carlo": {"runs": mc.runs,
                            "drawdown_percentiles": {str(k): v for k, v in mc.drawdown_percentiles.items()},
                            "streak_percentiles": {str(k): v for k, v in mc.streak_percentiles.items()}},
            "verdicts": [{"test": v.test, "passed": v.passed, "value": str(v.value), "limit": str(v.limit)}
                         for v in rep.verdicts]}
