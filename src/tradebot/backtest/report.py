"""Backtest report: one self-contained HTML file plus the PNG charts beside it.

The HTML embeds every chart as a base64 data URI and carries its CSS inline, so the single file can be
mailed, attached to a Discord message or opened on a machine without the output directory. Charts use
matplotlib's Agg backend (servers have no display).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tradebot.backtest.stats import (
    BacktestStats,
    GroupStats,
    drawdown_series,
    fmt_pct,
    fmt_ratio,
    fmt_usd,
)
from tradebot.backtest.stress import MonteCarloResult, StressReport
from tradebot.core.contracts import CONTRACTS
from tradebot.core.display import display_tz_name, fmt_ts
from tradebot.core.logging import get_logger
from tradebot.execution.trades import TradeRecord, sort_trades

log = get_logger(__name__)

GREEN = "#1b9e4b"
RED = "#d62728"
BLUE = "#1f5fa8"
MAX_TRADE_ROWS = 1000
"""The trade list is capped so a long backtest still gives a report a browser opens instantly."""

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.pos{color:#1b7a3e} .neg{color:#c0392b} .pass{color:#1b7a3e;font-weight:bold} .fail{color:#c0392b;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
.note{color:#666;font-size:12px}
"""


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return s or "backtest"


def _dollars_axis(ax: Any, axis: str = "y") -> None:
    """Dollar tick labels; cents only when the axis spans less than $10 (so no ``$0, $0, $0`` axes)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    places = 2 if abs(hi - lo) < 10 else 0

    def fmt(v: float, _pos: object) -> str:
        v = round(v, places)
        return f"-${abs(v):,.{places}f}" if v < 0 else f"${abs(v):,.{places}f}"

    target = ax.yaxis if axis == "y" else ax.xaxis
    if places == 0:
        target.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))  # whole-dollar ticks: no 2.5 steps
    target.set_major_formatter(FuncFormatter(fmt))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------------

def plot_equity(stats: BacktestStats, out: Path, title: str = "") -> Path:
    """Closed-trade equity (top) and drawdown below the running peak (bottom), by trade number."""
    plt = _plt()
    eq = np.asarray(stats.equity_cents, dtype=np.float64) / 100.0
    dd = np.asarray(drawdown_series(stats.equity_cents), dtype=np.float64) / 100.0
    x = np.arange(len(eq))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), dpi=100, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1.3]})
    few = len(x) <= 60
    ax1.plot(x, eq, color=BLUE, linewidth=1.4, marker="o" if few else None, markersize=3)
    ax1.axhline(stats.starting_balance_cents / 100.0, color="#888", linewidth=0.8, linestyle="--",
                label=f"start {fmt_usd(stats.starting_balance_cents)}")
    if len(x) < 2:
        start = stats.starting_balance_cents / 100.0
        ax1.set_ylim(start - 100, start + 100)
        ax1.text(0.5, 0.65, "no trades", ha="center", va="center", transform=ax1.transAxes, color="#666")
    ax1.set_ylabel("Account balance")
    ax1.set_title(title or "Equity curve (closed trades)")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.grid(alpha=0.3)
    _dollars_axis(ax1)
    ax2.fill_between(x, dd, 0, color=RED, alpha=0.35, linewidth=0)
    ax2.plot(x, dd, color=RED, linewidth=0.9, marker="o" if few else None, markersize=2)
    ax2.set_ylabel("Drawdown")
    ax2.set_xlabel("Closed trade #")
    ax2.grid(alpha=0.3)
    if not dd.size or dd.min() == 0:
        ax2.set_ylim(-10, 1)
    _dollars_axis(ax2)
    ax2.set_xlim(-0.02 * max(1, len(x) - 1), max(1, len(x) - 1) * 1.02)
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_daily(stats: BacktestStats, out: Path, title: str = "") -> Path:
    """Daily net P&L bars, green for winning days and red for losing ones, one bar per trading day."""
    plt = _plt()
    days = [r.day for r in stats.daily]
    vals = np.asarray([r.net_cents for r in stats.daily], dtype=np.float64) / 100.0
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    x = np.arange(len(days))
    ax.bar(x, vals, color=[GREEN if v > 0 else RED for v in vals], width=0.8)
    ax.axhline(0, color="#444", linewidth=0.8)
    step = max(1, len(days) // 20)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([d.strftime("%Y-%m-%d") for d in days[::step]], rotation=45, ha="right", fontsize=8)
    if len(days) < 8:  # a handful of days: keep bars bar-shaped and centred
        pad = (8 - len(days)) / 2
        ax.set_xlim(-pad - 0.5, len(days) - 1 + pad + 0.5)
    if not days:
        ax.text(0.5, 0.65, "no trading days", ha="center", va="center", transform=ax.transAxes, color="#666")
    if not vals.size or not vals.any():
        ax.set_ylim(-100, 100)
    ax.set_ylabel("Net P&L per day")
    ax.set_title(title or "Daily P&L")
    ax.grid(axis="y", alpha=0.3)
    _dollars_axis(ax)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_monte_carlo(mc: MonteCarloResult, boot: MonteCarloResult | None, out: Path,
                     limit_cents: int | None = None) -> Path:
    """Histogram of max drawdown over the reorderings, with the actual order and limit marked."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100, gridspec_kw={"width_ratios": [2, 1]})
    dd = mc.max_drawdown_cents / 100.0
    bins = np.histogram_bin_edges(np.concatenate([dd, boot.max_drawdown_cents / 100.0]) if boot else dd,
                                  bins=40) if dd.size else 10
    ax1.hist(dd, bins=bins, color=BLUE, alpha=0.6, label=f"shuffled order ({mc.runs})")
    if boot is not None:
        ax1.hist(boot.max_drawdown_cents / 100.0, bins=bins, color="#ff7f0e", alpha=0.45,
                 label=f"bootstrap ({boot.runs})")
    ax1.axvline(mc.original_max_drawdown_cents / 100.0, color="black", linewidth=1.5,
                label=f"actual {fmt_usd(mc.original_max_drawdown_cents)}")
    p95 = mc.drawdown_percentiles.get(95.0)
    if p95 is not None:
        ax1.axvline(p95 / 100.0, color=BLUE, linestyle="--", linewidth=1.2, label=f"shuffled p95 {fmt_usd(p95)}")
    if limit_cents is not None:
        ax1.axvline(limit_cents / 100.0, color=RED, linestyle=":", linewidth=1.5, label=f"limit {fmt_usd(limit_cents)}")
    if not mc.max_drawdown_cents.any():
        ax1.text(0.5, 0.5, "no drawdown in any run", ha="center", va="center", transform=ax1.transAxes,
                 color="#666")
    ax1.set_xlabel("Max drawdown")
    ax1.set_ylabel("Runs")
    ax1.set_title("Monte Carlo: max drawdown")
    _dollars_axis(ax1, "x")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    streaks = mc.longest_losing_streak
    top = int(streaks.max()) if streaks.size else 0
    counts = np.bincount(streaks, minlength=top + 1) if streaks.size else np.zeros(1, dtype=np.int64)
    ax2.bar(np.arange(counts.size), counts, color=BLUE, alpha=0.7)
    ax2.axvline(mc.original_losing_streak, color="black", linewidth=1.5,
                label=f"actual {mc.original_losing_streak}")
    ax2.set_xlabel("Longest losing streak (trades)")
    ax2.set_ylabel("Runs")
    ax2.set_title("Monte Carlo: losing streak")
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlim(-0.6, max(top, 5) + 0.6)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------

def _e(x: object) -> str:
    return html.escape(str(x))


def _money_cell(cents: float | None) -> str:
    cls = "" if cents is None or cents == 0 else (' class="pos"' if cents > 0 else ' class="neg"')
    return f"<td{cls}>{_e(fmt_usd(cents))}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], table_id: str = "") -> str:
    """Rows are pre-rendered ``<td>`` cells (so cells can carry classes); headers are escaped here."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(x: object) -> str:
    return f"<td>{_e(x)}</td>"


def _group_table(groups: Sequence[GroupStats], first: str, table_id: str) -> str:
    rows = [[_td(g.key), _td(g.trades), _td(fmt_pct(g.win_rate)), _money_cell(g.net_cents),
             _td(fmt_ratio(g.profit_factor)), _td(g.days), _td(f"{g.winning_days}/{g.days}"),
             _money_cell(g.avg_per_day_cents)] for g in groups]
    return _table([first, "Trades", "Win%", "Net P&L", "Profit Factor", "Days", "Win Days", "Avg/Day"], rows,
                  table_id)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _overall(s: BacktestStats) -> str:
    rows = [
        ("Starting Balance", fmt_usd(s.starting_balance_cents)), ("Final Balance", fmt_usd(s.final_balance_cents)),
        ("Net P&L", fmt_usd(s.net_pnl_cents)), ("Gross Profit", fmt_usd(s.gross_profit_cents)),
        ("Gross Loss", fmt_usd(s.gross_loss_cents)), ("Commissions", fmt_usd(s.commission_cents)),
        ("Profit Factor", fmt_ratio(s.profit_factor)), ("Total Trades", str(s.trades)),
        ("Win Rate", fmt_pct(s.win_rate)), ("Avg Win", fmt_usd(s.avg_win_cents)),
        ("Avg Loss", fmt_usd(s.avg_loss_cents)), ("Expectancy / Trade", fmt_usd(s.expectancy_cents)),
        ("Winning Days", f"{fmt_pct(s.winning_day_rate)} ({s.winning_days}/{s.days})"),
        ("Avg Daily P&L", fmt_usd(s.avg_daily_pnl_cents)), ("Best Day", fmt_usd(s.best_day_cents)),
        ("Worst Day", fmt_usd(s.worst_day_cents)),
        ("Max Drawdown (closed trades)", f"{fmt_usd(s.max_drawdown_cents)} ({fmt_pct(s.max_drawdown_pct, 1)})"),
        ("Max Drawdown (daily close)", fmt_usd(s.max_daily_drawdown_cents)),
        ("Max Consecutive Losses", str(s.max_consecutive_losses)),
        ("Max Consecutive Wins", str(s.max_consecutive_wins)),
        ("Sharpe (daily, annualized)", fmt_ratio(s.sharpe)), ("Sortino (daily, annualized)", fmt_ratio(s.sortino)),
    ]
    return _table(["Metric", "Value"], ([_td(k), _td(v)] for k, v in rows), "overall")


def _tiers(s: BacktestStats) -> str:
    rows = [[_td(f"Tier {c.tier}"), _td(c.name), _td(f"{c.root} x{c.max_contracts}"), _td(c.direction),
             _td(c.day.isoformat() if c.day else "after the run"), _td(c.day_number),
             _td(c.crossed_on.isoformat() if c.crossed_on else "start"), _td(fmt_usd(c.balance_cents))]
            for c in s.tier_changes]
    if not s.tiers:
        return '<p class="note">Tiers off: every trade used the configured contract and size.</p>'
    spec = ", ".join(f"{t.name} from {fmt_usd(t.min_balance_cents)} ({t.root} x{t.max_contracts})" for t in s.tiers)
    return (_table(["Tier", "Name", "Contract", "Change", "First Day", "Day #", "Crossed At Close Of", "Balance"],
                   rows, "tiers") + f'<p class="note">Tiers: {_e(spec)}. The tiers the trades used, as the run '
            "chose them at each trading day's start from the balance then (a tier applies from the day after the "
            "close that crossed its threshold).</p>")


def _stress_html(st: StressReport, s: BacktestStats) -> str:
    parts = ["<h2>Stress tests</h2>"]
    rows = [[_td(f"{r.ticks_per_side} tick{'s' if r.ticks_per_side != 1 else ''}/side"), _td(r.stats.trades),
             _td(fmt_pct(r.stats.win_rate)), _money_cell(r.stats.net_pnl_cents), _money_cell(r.net_change_cents),
             _td(fmt_ratio(r.stats.profit_factor)), _td(fmt_usd(r.stats.max_drawdown_cents)),
             _td(r.stats.max_consecutive_losses)] for r in st.slippage]
    base = [_td("none"), _td(s.trades), _td(fmt_pct(s.win_rate)), _money_cell(s.net_pnl_cents), _money_cell(0),
            _td(fmt_ratio(s.profit_factor)), _td(fmt_usd(s.max_drawdown_cents)), _td(s.max_consecutive_losses)]
    parts.append("<h3>Slippage</h3>" + _table(
        ["Slippage", "Trades", "Win%", "Net P&L", "Change", "Profit Factor", "Max DD", "Max Losses"],
        [base, *rows], "slippage"))
    mc_rows = []
    for mc in (st.monte_carlo, st.bootstrap):
        mc_rows.append([_td(f"{mc.method} drawdown"), _td(fmt_usd(mc.original_max_drawdown_cents))]
                       + [_td(fmt_usd(v)) for v in mc.drawdown_percentiles.values()]
                       + [_td(fmt_usd(int(mc.max_drawdown_cents.max()) if mc.runs else 0))])
        mc_rows.append([_td(f"{mc.method} losing streak"), _td(mc.original_losing_streak)]
                       + [_td(f"{v:g}") for v in mc.streak_percentiles.values()]
                       + [_td(int(mc.longest_losing_streak.max()) if mc.runs else 0)])
    pct_heads = [f"p{p:g}" for p in st.monte_carlo.drawdown_percentiles]
    parts.append(f"<h3>Monte Carlo ({st.monte_carlo.runs} runs, seed {st.monte_carlo.seed})</h3>"
                 + _table(["Distribution", "Actual", *pct_heads, "Max"], mc_rows, "montecarlo")
                 + f'<p class="note">The actual order\'s drawdown is at or above '
                 f"{fmt_pct(st.monte_carlo.original_drawdown_rank)} of shuffled orders.</p>")
    v_rows = [[_td(v.test), f'<td class="{"pass" if v.passed else "fail"}">{"PASSED" if v.passed else "FAILED"}</td>',
               _td(v.value), _td(v.limit), _td(v.note)] for v in st.verdicts]
    parts.append("<h3>Verdicts</h3>" + _table(["Test", "Result", "Value", "Limit", "Notes"], v_rows, "verdicts"))
    return "".join(parts)


def _trades_table(trades: Sequence[TradeRecord]) -> str:
    rows = []
    for t in trades[:MAX_TRADE_ROWS]:
        spec = CONTRACTS[t.symbol]
        rows.append([_td(t.trade_id), _td(t.symbol), _td("long" if t.side > 0 else "short"), _td(t.quantity),
                     _td(fmt_ts(t.entry_ns)), _td(spec.fmt(t.entry_price)),
                     _td(fmt_ts(t.exit_ns, "%H:%M:%S")), _td(spec.fmt(t.exit_price)),
                     _td(t.exit_reason), _td(t.pattern), _td(t.regime), _money_cell(t.net_pnl_cents)])
    note = (f'<p class="note">First {MAX_TRADE_ROWS} of {len(trades)} trades.</p>'
            if len(trades) > MAX_TRADE_ROWS else "")
    return _table(["Id", "Symbol", "Side", "Qty", "Entry time", "Entry", "Exit time", "Exit", "Exit Reason",
                   "Pattern", "Regime", "Net"], rows, "trades") + note


def write_report(run_name: str, trades: Iterable[TradeRecord], stats: BacktestStats, stress: StressReport | None,
                 out_dir: Path, footprint_pngs: Sequence[Path] = ()) -> Path:
    """Write ``<run>.html`` and ``<run>_{equity,daily,montecarlo}.png`` into ``out_dir``; return the HTML path.

    A footprint PNG that cannot be read is noted in the report and logged, never fatal.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = _slug(run_name)
    ordered = sort_trades(trades)
    equity_png = plot_equity(stats, out_dir / f"{slug}_equity.png", f"{run_name}: equity (closed trades)")
    daily_png = plot_daily(stats, out_dir / f"{slug}_daily.png", f"{run_name}: daily net P&L")
    mc_png = None
    if stress is not None:
        mc_png = plot_monte_carlo(stress.monte_carlo, stress.bootstrap, out_dir / f"{slug}_montecarlo.png",
                                  stress.limits.max_drawdown_cents)

    first = stats.daily[0].day.isoformat() if stats.daily else "-"
    last = stats.daily[-1].day.isoformat() if stats.daily else "-"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(run_name)} backtest</title><style>{_CSS}</style></head><body>",
        f"<h1>Backtest: {_e(run_name)}</h1>",
        f'<p class="meta">{stats.days} trading days, {_e(first)} to {_e(last)}; {stats.trades} trades; '
        f"generated {_e(generated)}</p>",
        "<h2>Overall performance</h2>", _overall(stats),
        "<h2>Equity and drawdown</h2>", _img(equity_png, "equity curve and drawdown"),
        "<h2>Daily P&amp;L</h2>", _img(daily_png, "daily P&L"),
        "<h2>Tier progression</h2>", _tiers(stats),
        "<h2>Monthly breakdown</h2>", _group_table(stats.monthly, "Month", "monthly"),
        "<h2>Performance by pattern</h2>", _group_table(stats.by_pattern, "Pattern", "patterns"),
        f"<h2>Time of day (entry hour, {display_tz_name()})</h2>", _group_table(stats.by_hour, "Hour", "hours"),
        "<h2>Day of week</h2>", _group_table(stats.by_weekday, "Day", "weekdays"),
        "<h2>By regime</h2>", _group_table(stats.by_regime, "Regime", "regimes"),
        "<h2>By exit reason</h2>", _group_table(stats.by_exit_reason, "Exit Reason", "exits"),
    ]
    if stress is not None and mc_png is not None:
        parts += [_stress_html(stress, stats), _img(mc_png, "Monte Carlo distributions")]
    if footprint_pngs:
        parts.append("<h2>Sample trades: footprint charts</h2>")
        for p in footprint_pngs:
            try:
                parts.append(f"<figure>{_img(Path(p), Path(p).name)}<figcaption class=\"note\">"
                             f"{_e(Path(p).name)}</figcaption></figure>")
            except OSError as e:
                log.warning("footprint chart unreadable", path=str(p), error=str(e))
                parts.append(f'<p class="note">Footprint chart {_e(Path(p).name)} could not be read.</p>')
    parts += ["<h2>Trades</h2>", _trades_table(ordered), "</body></html>"]
    out = out_dir / f"{slug}.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    log.info("backtest report written", path=str(out), trades=stats.trades)
    return out
