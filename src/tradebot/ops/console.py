"""``tradebot run --progress`` (what ``make run`` uses): a console a person can follow.

Up front it says what will happen and roughly how long; while running, one progress line (session, market time in
the display zone, trades, P&L, open position, state); at the end a summary table per session from the state
database. The daemon's log lines (alerts, order-flow events, lifecycle) go to ``data/run.log`` instead of the
console, so nothing scrolls the progress away; errors still show on the progress line as a count.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tradebot.core.calendar import Session
from tradebot.core.display import display_tz_name, fmt_ts
from tradebot.core.stats import summarize
from tradebot.execution.risk import fmt_cents
from tradebot.state import queries
from tradebot.state.store import StateError, StateStore

NS = 1_000_000_000


@dataclass(frozen=True)
class RunPlan:
    feed: str
    symbols: Sequence[str]
    speed: float
    sessions: Sequence[Session]
    """The simulated sessions (demo feed); empty for files and live feeds."""
    log_path: Path

    @property
    def market_seconds(self) -> float:
        return sum((s.close_ns - s.open_ns) / NS for s in self.sessions)

    @property
    def minutes(self) -> float | None:
        """Wall minutes the replay takes at this speed (None: as fast as possible, or not a simulation)."""
        if not self.sessions or self.speed <= 0:
            return None
        return self.market_seconds / self.speed / 60


def intro(plan: RunPlan, mode: str) -> str:
    syms = "/".join(plan.symbols)
    if plan.sessions:
        first, last = plan.sessions[0].trading_date, plan.sessions[-1].trading_date
        n = len(plan.sessions)
        what = (f"{n} simulated {syms} session{'s' if n > 1 else ''} ({first} to {last}, "
                f"{plan.market_seconds / 3600:.0f} h of market time)")
        mins = plan.minutes
        how_long = ("as fast as possible" if mins is None else f"at {plan.speed:g}x: under a minute" if mins < 1
                    else f"at {plan.speed:g}x: about {mins:.0f} minute{'s' if round(mins) != 1 else ''}")
    else:
        what, how_long = f"{syms} from the {plan.feed} feed", "until the feed ends (Ctrl-C stops)"
    return (f"tradebot run: {what} through the whole daemon (validation, order flow, regime, router, {mode} "
            f"execution, SQLite state), {how_long}.\n"
            f"Ctrl-C stops cleanly. Times are {display_tz_name()}; the full log is in {plan.log_path}.")


def session_of(sessions: Sequence[Session], ts_ns: int) -> tuple[int, Session] | None:
    for i, s in enumerate(sessions):
        if s.open_ns <= ts_ns < s.close_ns:
            return i, s
    return None


def progress_line(*, plan: RunPlan, market_ns: int, trades: int, day_pnl_cents: int, total_pnl_cents: int,
                  positions: dict[str, int], state: str, errors: int, day: str | None) -> str:
    where = session_of(plan.sessions, market_ns) if market_ns else None
    if where is not None:
        i, s = where
        sess = f"session {i + 1}/{len(plan.sessions)} {s.trading_date}"
    else:
        sess = f"day {day}" if day else "starting"
    at = fmt_ts(market_ns, "%a %H:%M") if market_ns else "-"
    pos = ", ".join(f"{k} {v:+d}" for k, v in positions.items()) or "flat"
    err = f" | errors {errors}" if errors else ""
    return (f"{sess} | market {at} | trades {trades} | day P&L {fmt_cents(day_pnl_cents)} | total "
            f"{fmt_cents(total_pnl_cents)} | {pos} | {state}{err}")


class Console:
    """One progress line, rewritten in place on a terminal, appended otherwise (a pipe or a CI log)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty()
        self._open = False

    def say(self, text: str) -> None:
        self.end_line()
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        if self.tty:
            print("\r" + text[:160].ljust(120), end="", file=self.out, flush=True)
            self._open = True
        else:
            print(text, file=self.out, flush=True)

    def end_line(self) -> None:
        if self._open:
            print(file=self.out, flush=True)
            self._open = False


def summary_table(db: Path, days: Sequence[dt.date] | None, mode: str) -> str:
    """Per-session figures from the state database (the same definitions as ``tradebot stats``)."""
    try:
        store = StateStore.open(db, mode=mode, readonly=True)
    except StateError as exc:
        return f"no summary: {exc}"
    try:
        rows = queries.closed_trade_nets(store)
        daily = {r["trading_day"]: r for r in queries.all_daily_stats(store)}
    finally:
        store.close()
    wanted = [d.isoformat() for d in days] if days else sorted(daily)
    header = f"{'session':<12} {'trades':>6} {'won':>4} {'lost':>4} {'scratch':>7} {'net P&L':>12} {'max drawdown':>13}"
    lines = [header, "-" * len(header)]
    all_nets: list[int] = []
    for day in wanted:
        nets = [int(r["net"]) for r in rows if r["trading_day"] == day]
        all_nets += nets
        s = summarize(nets)
        net = int(daily[day]["net_cents"]) if day in daily else s.net_cents
        lines.append(f"{day:<12} {s.trades:>6} {s.wins:>4} {s.losses:>4} {s.scratches:>7} {fmt_cents(net):>12} "
                     f"{fmt_cents(s.max_drawdown_cents):>13}")
    t = summarize(all_nets)
    total = sum(int(daily[d]["net_cents"]) for d in wanted if d in daily)
    lines.append("-" * len(header))
    lines.append(f"{'total':<12} {t.trades:>6} {t.wins:>4} {t.losses:>4} {t.scratches:>7} {fmt_cents(total):>12} "
                 f"{fmt_cents(t.max_drawdown_cents):>13}")
    return "\n".join(lines)
