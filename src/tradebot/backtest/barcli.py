"""``tradebot backtest --data DIR`` when DIR holds bar exports: all quarters, in parallel, walk-forward optional.

The bar files become one continuous front-contract series (:func:`tradebot.feeds.bars.load_series`), split
where the contracts hand over; each contract's stretch is one task on a local process pool (or a Dask cluster
with ``--scheduler``), a progress bar on stderr. Without ``--walk-forward`` every quarter runs the given
settings (or each ``--grid`` combination). With ``--walk-forward N`` every grid combination runs on every
quarter, windows of N training quarters choose the combination for the next quarter, and only those test
quarters make the headline; every trial is listed and the deflated Sharpe ratio discounts for them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tradebot.backtest.barsim import NOT_COMPUTABLE, SegmentResult, SegmentTask, apply_tiers, run_segment
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
from tradebot.backtest.walkforward import deflated_sharpe, moments, select, windows
from tradebot.core.calendar import calendar_for
from tradebot.core.config import ConfigError, Settings
from tradebot.execution.trades import TradeRecord, trade_hash
from tradebot.feeds.bars import BarColumns, BarFileError, bar_files, load_series

DEFAULT_WF_GRID = ("min_confidence=0.55,0.6,0.65", "patterns.flow_imbalance_ratio=0.3,0.45,0.6")
"""The walk-forward grid when none is given: the confluence threshold and seed 004's imbalance ratio."""


def has_bar_files(root: Path) -> bool:
    return bool(root.exists() and bar_files(root))


def _bar(done: int, total: int, t0: float, label: str) -> None:
    width = 30
    fill = width * done // max(total, 1)
    tty = sys.stderr.isatty()
    line = (f"[{'#' * fill}{'.' * (width - fill)}] {done:>3}/{total} {label:<8} "
            f"elapsed {time.monotonic() - t0:5.1f}s")
    print(("\r" + line) if tty else line, end="" if tty and done < total else "\n", file=sys.stderr, flush=True)


def split_segments(series: BarColumns) -> list[tuple[str, BarColumns]]:
    """The continuous series cut where the contract changes (one task per contract quarter)."""
    n = len(series)
    if not n:
        return []
    cuts = [0, *(np.flatnonzero(series.contract[1:] != series.contract[:-1]) + 1).tolist(), n]
    out = []
    for a, b in itertools.pairwise(cuts):
        seg = series.take(np.arange(a, b))
        seg.rejects, seg.notes, seg.examples, seg.rolls = Counter(), Counter(), {}, []
        out.append((str(series.contract[a]), seg))
    return out


def run_tasks(tasks: list[SegmentTask], workers: int = 0, scheduler: str | None = None) -> list[SegmentResult]:
    t0 = time.monotonic()
    results = map_tasks(run_segment, tasks, workers, scheduler,
                        lambda n, r: _bar(n, len(tasks), t0, r.name))
    order = {t.name: i for i, t in enumerate(tasks)}
    return sorted(results, key=lambda r: order[r.name])


def _trades(res: SegmentResult, i: int) -> list[TradeRecord]:
    return [TradeRecord.from_dict(t) for t in res.combos[i].trades]


def daily_pnl(trades: Sequence[TradeRecord], days: Sequence[dt.date]) -> list[float]:
    """Net P&L per session day (flat days 0), in dollars: the series the trial Sharpe ratios are computed on."""
    cal = calendar_for("equity")
    per: dict[dt.date, int] = {d: 0 for d in days}
    for t in trades:
        d = cal.trading_day(t.exit_ns)
        per[d] = per.get(d, 0) + t.net_pnl_cents
    return [per[d] / 100 for d in sorted(per)]


def _stats(trades: list[TradeRecord], settings: Settings, days: Sequence[dt.date]) -> BacktestStats:
    cents = int(settings.execution.starting_balance * 100)
    return compute_stats(trades, cents, session_days=tuple(days), tiers=settings.execution.tiers)


def bar_backtest(args: argparse.Namespace, settings: Settings) -> int:
    t_all = time.monotonic()
    files = bar_files(args.data)
    try:
        base = apply_overrides(settings, parse_pairs(args.set))
        grid = list(args.grid) or (list(DEFAULT_WF_GRID) if args.walk_forward else [])
        combos = grid_combinations(grid)
        for c in combos:
            apply_overrides(base, c)
        start = dt.date.fromisoformat(args.start) if args.start else None
        end = dt.date.fromisoformat(args.end) if args.end else None
        series = load_series(files, args.symbol, adjust="difference" if args.back_adjust else "none")
    except (ConfigError, ValueError, BarFileError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    if start or end:
        lo = (start or dt.date.min).toordinal()
        hi = (end or dt.date.max).toordinal()
        series = series.take((series.trading_date >= lo) & (series.trading_date <= hi))
    segments = split_segments(series)
    if not segments:
        print(f"backtest: no accepted bars in {args.data}", file=sys.stderr)
        return 2
    rejected = {k: v for k, v in sorted(series.rejects.items()) if v}
    print(f"backtest: {len(files)} bar files, {series.rows:,} rows, {len(series):,} bars accepted, rejected "
          f"{sum(rejected.values()):,} {rejected or ''}; {len(series.rolls)} rolls; {len(segments)} quarters x "
          f"{len(combos)} parameter set(s)", file=sys.stderr)
    tasks = [SegmentTask(name, seg, base, tuple(combos)) for name, seg in segments]
    tasks.sort(key=lambda t: -len(t.cols))
    t0 = time.monotonic()
    results = run_tasks(tasks, args.workers, args.scheduler)
    seconds = time.monotonic() - t0
    errors = {r.name: r.error for r in results if r.error}
    for name, err in errors.items():
        print(f"backtest: {name} failed: {err.splitlines()[0]}", file=sys.stderr)
    ok = [r for r in results if not r.error]
    ok.sort(key=lambda r: r.first_ns)
    doc: dict[str, Any] = {
        "data": str(args.data), "symbol": series.symbol, "files": len(files), "rows": series.rows, "bars": len(series),
        "rejects": rejected, "notes": {k: v for k, v in series.notes.items() if v},
        "rolls": [{"day": r.day.isoformat(), "old": r.old, "new": r.new, "gap_ticks": r.gap_ticks}
                  for r in series.rolls],
        "quarters": [r.name for r in ok], "combos": combos, "seconds_backtest": round(seconds, 2),
        "not_computable": NOT_COMPUTABLE, "errors": errors,
    }
    if args.walk_forward:
        head_trades, head_days, wf = _walk_forward(ok, combos, base, args.walk_forward)
        doc["walk_forward"] = wf
        label = f"walk-forward OOS ({len(wf['windows'])} quarters, train {args.walk_forward})"
    else:
        head_trades = [t for r in ok for t in _trades(r, 0)]
        head_days = [d for r in ok for d in r.days]
        label = "all quarters" + (f" {json.dumps(combos[0])}" if combos[0] else "")
        if len(combos) > 1:
            doc["grid"] = [_combo_row(c, [t for r in ok for t in _trades(r, i)], base, head_days)
                           for i, c in enumerate(combos)]
    tiered = apply_tiers(head_trades, apply_overrides(base, combos[0]) if not args.walk_forward else base)
    st = _stats(tiered.trades, base, head_days)
    unit = _stats(head_trades, base, head_days)
    doc.update({"headline": label, "trade_hash": trade_hash(tiered.trades), "tier_pass_dropped": dict(tiered.dropped),
                "unit": _brief(unit), "tiered": stats_summary(st) if args.json else _brief(st),
                "router": _sum_counts(ok, 0 if not args.walk_forward else None, "stats"),
                "patterns": _sum_counts(ok, 0 if not args.walk_forward else None, "patterns"),
                "regimes": dict(sum((r.regimes for r in ok), Counter()))})
    doc["run_id"] = _save(args, settings, doc, files, combos, base, tiered.trades, st, head_days, seconds, errors)
    doc["seconds_total"] = round(time.monotonic() - t_all, 2)
    if args.json:
        print(json.dumps(doc, default=str))
    else:
        _print(doc, unit, st)
    if not args.no_report:
        from tradebot.backtest.barreport import write_bar_report

        out_dir = settings.data_dir / "reports" / f"bars-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        html = write_bar_report(out_dir, doc, ok, combos, base, tiered.trades, head_trades, head_days, st, unit,
                                args.workers)
        print(f"report: {html}", file=sys.stderr)
    print(f"backtest: {len(ok)} quarters, {len(series):,} bars, {len(combos)} parameter set(s) in {seconds:.1f}s "
          f"(total {time.monotonic() - t_all:.1f}s)", file=sys.stderr)
    return 1 if errors else 0


def _save(args: argparse.Namespace, settings: Settings, doc: dict[str, Any], files: Sequence[Path],
          combos: list[dict[str, str]], base: Settings, trades: list[TradeRecord], st: BacktestStats,
          days: list[dt.date], seconds: float, errors: Mapping[str, str | None]) -> str:
    """The headline (tiered) run into ``backtests.db``, so ``backtest summary`` and ``backtest stress`` read it."""
    from tradebot.backtest.db import BacktestDB, new_run_id
    from tradebot.backtest.stats import trading_day_of
    from tradebot.feeds.catalog import combined_fingerprint_of

    fingerprint = combined_fingerprint_of(files)
    name = f"{doc['bars']:,} bars of {len(doc['quarters'])} quarters: {doc['headline']}"
    params: dict[str, str] = {**parse_pairs(args.set)}
    if args.walk_forward:
        params["walk_forward"] = str(args.walk_forward)
        params["grid"] = json.dumps(combos)
    else:
        params.update(combos[0])
    run_id = new_run_id(name, params, fingerprint)
    db = BacktestDB(args.db or settings.data_dir / "backtests.db")
    try:
        db.save_run(run_id, name=name, symbol=doc["symbol"],
                    start=min(days).isoformat(), end=max(days).isoformat(), days=[d.isoformat() for d in days],
                    params=params, config=json.loads(base.model_dump_json()), fingerprint=fingerprint,
                    trade_hash=trade_hash(trades), stats=st, summary=stats_summary(st), trades=trades,
                    trade_days={t.trade_id: trading_day_of(t).isoformat() for t in trades}, daily_events={},
                    seconds=seconds, errors={k: v or "" for k, v in errors.items()})
    finally:
        db.close()
    return run_id


def _sum_counts(ok: Sequence[SegmentResult], i: int | None, what: str) -> dict[str, int]:
    c: Counter[str] = Counter()
    for r in ok:
        for k, combo in enumerate(r.combos):
            if i is None or k == i:
                c.update(getattr(combo, what))
    return dict(sorted(c.items()))


def _brief(s: BacktestStats) -> dict[str, Any]:
    return {"trades": s.trades, "win_rate": s.win_rate, "net_pnl_cents": s.net_pnl_cents,
            "profit_factor": s.profit_factor if s.profit_factor is None or math.isfinite(s.profit_factor) else "inf",
            "max_drawdown_cents": s.max_drawdown_cents, "sharpe": s.sharpe, "days": s.days,
            "expectancy_cents": s.expectancy_cents, "final_balance_cents": s.final_balance_cents}


def _combo_row(combo: dict[str, str], trades: list[TradeRecord], base: Settings, days: list[dt.date]
               ) -> dict[str, Any]:
    s = _stats(trades, base, days)
    sr, _, _ = moments(daily_pnl(trades, days))
    return {"params": combo, **_brief(s), "daily_sharpe": sr}


def _objective(trades: list[object]) -> float:
    return float(sum(t.net_pnl_cents for t in trades))  # type: ignore[attr-defined]


def _walk_forward(ok: list[SegmentResult], combos: list[dict[str, str]], base: Settings, train: int
                  ) -> tuple[list[TradeRecord], list[dt.date], dict[str, Any]]:
    by_name = {r.name: r for r in ok}
    names = [r.name for r in ok]
    trades = {r.name: [_trades(r, i) for i in range(len(combos))] for r in ok}
    wins = windows(names, train, {n: by_name[n].first_ns for n in names})
    oos_trades: list[TradeRecord] = []
    oos_days: list[dt.date] = []
    rows = []
    trials = []
    train_sharpes: list[float] = []
    is_trades_all: list[TradeRecord] = []
    is_days_all: list[dt.date] = []
    for w in wins:
        train_res = {q: trades[q] for q in w.train}
        best, scores = select(train_res, len(combos), _objective)
        tdays = [d for q in w.train for d in by_name[q].days]
        for i, sc in enumerate(scores):
            tr = [t for q in w.train for t in trades[q][i]]
            sr, _, _ = moments(daily_pnl(tr, tdays))
            if sr is not None:
                train_sharpes.append(sr)
            trials.append({"window": w.index, "test": w.test, "params": combos[i], "train_net_cents": int(sc),
                           "train_trades": len(tr), "train_daily_sharpe": sr, "chosen": i == best})
        chosen_is = [t for q in w.train for t in trades[q][best]]
        test = trades[w.test][best]
        oos_trades += test
        oos_days += by_name[w.test].days
        is_trades_all += chosen_is
        is_days_all += tdays
        rows.append({"window": w.index, "train": list(w.train), "test": w.test, "params": combos[best],
                     "is_trades": len(chosen_is), "is_net_cents": sum(t.net_pnl_cents for t in chosen_is),
                     "is_net_per_quarter_cents": sum(t.net_pnl_cents for t in chosen_is) / len(w.train),
                     "oos_trades": len(test), "oos_net_cents": sum(t.net_pnl_cents for t in test),
                     "oos_wins": sum(1 for t in test if t.net_pnl_cents > 0)})
    oos_daily = daily_pnl(oos_trades, oos_days)
    sr, skew, kurt = moments(oos_daily)
    n_trials = len(trials)
    var = float(np.var(train_sharpes, ddof=1)) if len(train_sharpes) > 1 else 0.0
    dsr = deflated_sharpe(sr, len(oos_daily), skew, kurt, n_trials, var) if sr is not None else None
    is_stats = _stats(is_trades_all, base, sorted(set(is_days_all)))
    oos_stats = _stats(oos_trades, base, oos_days)
    wf = {"train_quarters": train, "windows": rows, "trials": trials, "n_trials": n_trials,
          "grid_size": len(combos), "oos_daily_sharpe": sr,
          "oos_sharpe_annualised": sr * math.sqrt(252) if sr is not None else None, "oos_skew": skew,
          "oos_kurtosis": kurt, "oos_days": len(oos_daily), "trial_sharpe_variance": var, "deflated_sharpe": dsr,
          "in_sample_windows_pooled": _brief(is_stats), "out_of_sample": _brief(oos_stats)}
    return oos_trades, oos_days, wf


def _print(doc: dict[str, Any], unit: BacktestStats, st: BacktestStats) -> None:
    out = sys.stdout
    print(f"{'run':>26}  {doc['run_id']} (tradebot backtest summary|stress {doc['run_id']})", file=out)
    print(f"{'headline':>26}  {doc['headline']}", file=out)
    print(f"{'bars':>26}  {doc['bars']:,} of {doc['rows']:,} rows, {len(doc['rolls'])} rolls, "
          f"rejected {doc['rejects']}", file=out)
    for name, s in (("1 contract (unit)", unit), ("tiered from start", st)):
        print(f"{name:>26}  {s.trades} trades, win {fmt_pct(s.win_rate)}, net {fmt_usd(s.net_pnl_cents, signed=True)}, "
              f"PF {fmt_ratio(s.profit_factor)}, max DD {fmt_usd(s.max_drawdown_cents)}, Sharpe {fmt_ratio(s.sharpe)}, "
              f"balance {fmt_usd(s.starting_balance_cents)} -> {fmt_usd(s.final_balance_cents)}", file=out)
    wf = doc.get("walk_forward")
    if wf:
        print(f"{'walk-forward':>26}  {len(wf['windows'])} windows, {wf['n_trials']} trials "
              f"({wf['grid_size']} per window); OOS daily Sharpe {fmt_ratio(wf['oos_daily_sharpe'], 3)} "
              f"(annualised {fmt_ratio(wf['oos_sharpe_annualised'])}), deflated Sharpe "
              f"{fmt_ratio(wf['deflated_sharpe'], 3)}", file=out)
        for w in wf["windows"]:
            is_q = fmt_usd(w["is_net_per_quarter_cents"], signed=True)
            print(f"{w['test']:>26}  {json.dumps(w['params'])}: IS {is_q}"
                  f"/quarter, OOS {w['oos_trades']} trades {fmt_usd(w['oos_net_cents'], signed=True)}", file=out)
    for k, v in doc["not_computable"].items():
        print(f"{'not computable':>26}  {k}: {v}", file=out)


__all__ = ["DEFAULT_WF_GRID", "bar_backtest", "daily_pnl", "has_bar_files", "run_tasks", "split_segments"]
