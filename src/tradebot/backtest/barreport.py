"""The bar backtest's HTML: an index page (walk-forward windows, in-sample vs out-of-sample, every trial, the
deflated Sharpe ratio, data rejects and rolls, what bars cannot compute) linking the project's standard report
(:func:`tradebot.backtest.report.write_report`: equity, drawdown, tiers from $2,500, regimes, patterns,
stress with 1-2 ticks of slippage and Monte Carlo) for the headline and for each quarter."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tradebot.backtest.barsim import SegmentResult, apply_tiers
from tradebot.backtest.report import write_report
from tradebot.backtest.stats import BacktestStats, compute_stats, fmt_pct, fmt_ratio, fmt_usd
from tradebot.backtest.stress import run_stress
from tradebot.core.config import Settings
from tradebot.execution.trades import TradeRecord


def _e(x: object) -> str:
    return html.escape(str(x))


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _b(d: dict[str, Any]) -> list[str]:
    pf = d["profit_factor"]
    return [str(d["trades"]), fmt_pct(d["win_rate"]), fmt_usd(d["net_pnl_cents"], signed=True),
            "inf" if pf == "inf" else fmt_ratio(pf), fmt_usd(d["max_drawdown_cents"]), fmt_ratio(d["sharpe"])]


def _quarter(job: tuple[str, list[dict[str, Any]], list[dt.date], Settings, Path]) -> tuple[Path, BacktestStats]:
    """One quarter's page (the standard report without the stress section), tiered from the starting balance."""
    name, rows, days, base, out = job
    cents = int(base.execution.starting_balance * 100)
    trades = apply_tiers([TradeRecord.from_dict(t) for t in rows], base).trades
    st = compute_stats(trades, cents, session_days=tuple(days), tiers=base.execution.tiers)
    return write_report(f"quarter {name}", trades, st, None, out), st


def write_bar_report(out_dir: Path, doc: dict[str, Any], ok: Sequence[SegmentResult], combos: list[dict[str, str]],
                     base: Settings, tiered: list[TradeRecord], unit: list[TradeRecord], days: list[dt.date],
                     st: BacktestStats, unit_st: BacktestStats, workers: int = 0) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    cents = int(base.execution.starting_balance * 100)
    tiers = base.execution.tiers
    stress = run_stress(tiered, cents, base=st, session_days=days, tiers=tiers)
    main = write_report("headline (tiered from the starting balance)", tiered, st, stress, out_dir)
    unit_stress = run_stress(unit, cents, base=unit_st, session_days=days, tiers=tiers)
    unit_html = write_report("headline (1 contract per signal)", unit, unit_st, unit_stress, out_dir)
    chosen = {w["test"]: combos.index(w["params"]) for w in doc.get("walk_forward", {}).get("windows", [])}
    jobs = []
    for r in ok:
        if doc.get("walk_forward") and r.name not in chosen:
            continue  # a training-only quarter: no out-of-sample result to show
        jobs.append((r.name, r.combos[chosen.get(r.name, 0)].trades, r.days, base, out_dir / "quarters"))
    quarter_links = []
    if workers == 1 or len(jobs) <= 1:
        done = [_quarter(j) for j in jobs]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers or None) as pool:
            done = list(pool.map(_quarter, jobs))
    for (name, _, _, _, _), (path, q_st) in zip(jobs, done, strict=True):
        quarter_links.append((name, path, q_st))
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bar backtest</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 6px}"
             "table{border-collapse:collapse;margin:1em 0}</style></head><body>",
             f"<h1>Bar backtest: {_e(doc['headline'])}</h1>",
             f"<p>{_e(doc['data'])}: {doc['files']} files, {doc['rows']:,} rows, {doc['bars']:,} bars accepted; "
             f"rejected {_e(doc['rejects'])}; notes {_e(doc['notes'])}; generated "
             f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p>",
             f"<p><a href=\"{_e(main.name)}\">Headline report (tiered from "
             f"{fmt_usd(cents)}: equity, drawdown, tier progression, regimes, patterns, stress)</a> &middot; "
             f"<a href=\"{_e(unit_html.name)}\">same trades at 1 contract</a></p>",
             "<h2>Headline</h2>", _table(["account", "trades", "win", "net", "PF", "max DD", "Sharpe"],
                                         [["tiered", *_b(doc["tiered"])],
                                          ["1 contract", *_b(doc["unit"])]]),
             f"<p>Trades dropped by the tier pass: {_e(doc['tier_pass_dropped'] or 'none')} (daily limits stop a "
             "day's later trades; a freed position is not re-simulated).</p>"]
    wf = doc.get("walk_forward")
    if wf:
        parts += ["<h2>Walk-forward</h2>",
                  f"<p>Train {wf['train_quarters']} quarters, test the next, roll by one. {wf['n_trials']} trials "
                  f"({wf['grid_size']} parameter sets x {len(wf['windows'])} windows). Out-of-sample daily Sharpe "
                  f"{fmt_ratio(wf['oos_daily_sharpe'], 3)} (annualised {fmt_ratio(wf['oos_sharpe_annualised'])}), "
                  f"skew {wf['oos_skew']:.2f}, kurtosis {wf['oos_kurtosis']:.2f} over {wf['oos_days']} days; "
                  f"variance of the trials' daily Sharpe {wf['trial_sharpe_variance']:.5f}; <b>deflated Sharpe ratio "
                  f"{fmt_ratio(wf['deflated_sharpe'], 3)}</b> (Bailey and Lopez de Prado 2014).</p>",
                  "<h3>In-sample vs out-of-sample (1 contract)</h3>",
                  _table(["", "trades", "win", "net", "PF", "max DD", "Sharpe"],
                         [["in-sample (chosen set, training windows pooled)", *_b(wf["in_sample_windows_pooled"])],
                          ["out-of-sample (test quarters)", *_b(wf["out_of_sample"])]]),
                  "<h3>Windows</h3>",
                  _table(["test", "train", "chosen", "IS net/quarter", "OOS trades", "OOS net"],
                         [[w["test"], f"{w['train'][0]}..{w['train'][-1]}", json.dumps(w["params"]),
                           fmt_usd(w["is_net_per_quarter_cents"], signed=True), w["oos_trades"],
                           fmt_usd(w["oos_net_cents"], signed=True)] for w in wf["windows"]]),
                  "<h3>Every trial</h3>",
                  _table(["window", "test", "params", "train trades", "train net", "train daily Sharpe", "chosen"],
                         [[t["window"], t["test"], json.dumps(t["params"]), t["train_trades"],
                           fmt_usd(t["train_net_cents"], signed=True), fmt_ratio(t["train_daily_sharpe"], 3),
                           "yes" if t["chosen"] else ""] for t in wf["trials"]])]
    if doc.get("grid"):
        parts += ["<h2>Grid (all quarters, in-sample only)</h2>",
                  _table(["params", "trades", "win", "net", "PF", "max DD", "Sharpe"],
                         [[json.dumps(g["params"]), *_b(g)] for g in doc["grid"]])]
    parts += ["<h2>Quarters</h2>",
              _table(["quarter", "trades", "win", "net (tiered within the quarter)", "report"],
                     [[n, s.trades, fmt_pct(s.win_rate), fmt_usd(s.net_pnl_cents, signed=True), ""]
                      for n, _, s in quarter_links]).replace("<td></td></tr>", "</tr>"),
              "<ul>" + "".join(f"<li><a href=\"quarters/{_e(p.name)}\">{_e(n)}</a></li>" for n, p, _ in quarter_links)
              + "</ul>",
              "<h2>Signals and decisions" + (" (every trial of every quarter)" if wf else "") + "</h2>",
              _table(["pattern", "events"], list(doc["patterns"].items())),
              _table(["router / execution", "count"], list(doc["router"].items())),
              _table(["regime (bars)", "count"], list(doc["regimes"].items())),
              "<h2>Not computable from bars</h2>", _table(["what", "why"], list(doc["not_computable"].items())),
              "<h2>Rolls</h2>", _table(["first day", "from", "to", "gap (ticks)"],
                                       [[r["day"], r["old"], r["new"], r["gap_ticks"]] for r in doc["rolls"]]),
              "</body></html>"]
    out = out_dir / "index.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
