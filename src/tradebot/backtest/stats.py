"""Backtest statistics as pure functions of a list of closed trades and a starting balance.

Seed 002 reports the kinds of numbers computed here (profit factor, win rate, winning days, drawdown,
losing streaks, monthly / per-pattern tables, tier progression); its figures are unverified and never
targets. Money stays integer cents; only ratios and averages are floats.

Definitions (exact; the tests compute each one by hand):

* **Trade order.** Closed-trade order: by exit time, then entry time, then id.
The trade-level definitions live in :mod:`tradebot.core.stats` (shared with ``tradebot stats``, the digest and
``status``); they are restated here with the backtest-only ones.

* **Win / loss / scratch.** A trade wins when its *net* P&L (after commission) is > 0, loses when < 0, and
  is a scratch at exactly 0. Gross profit is the sum of winning trades' net P&L, gross loss the sum of
  losing trades' net P&L (a negative number or 0).
* **Profit factor.** ``gross_profit / -gross_loss``. With no losing trade it is ``math.inf`` when there is
  a gross profit and ``None`` when there is none (no trades, or only scratches): "undefined", not zero.
* **Win rate.** Winners / all trades (scratches count in the denominator); ``None`` without trades.
* **Expectancy.** Net P&L / trades, in cents (float); ``None`` without trades.
* **Trading day.** The exchange trading date of the trade's *exit*:
  ``calendar_for(spec.session).trading_day(exit_ns)`` (the Sunday-evening session counts as Monday).
* **Daily series.** One row per trading day: the days with a trade, plus every day given in
  ``session_days`` (days the backtest ran without trading count as flat days). A *winning day* has net
  > 0, a *losing day* < 0. Average daily P&L = net P&L / days in the series.
* **Max drawdown.** Largest peak-to-trough fall of the closed-trade equity curve (the starting balance
  followed by the balance after each trade), in cents; the percentage form divides by the peak. The
  *daily* drawdown is the same on the end-of-day balances (starting balance first).
* **Max consecutive losses / wins.** Longest run of losing (winning) trades in trade order; a scratch
  ends a run.
* **Daily return.** ``r_d = net_d / B_d`` where ``B_d`` is the account balance at the start of day ``d``
  (starting balance plus all earlier days' net P&L): returns relative to the running balance.
* **Sharpe.** ``mean(r) / stdev(r) * sqrt(252)``, risk-free rate 0, sample standard deviation (n - 1).
  ``None`` with fewer than 2 days, zero deviation, or a day starting at a balance <= 0.
* **Sortino.** ``mean(r) / DD * sqrt(252)`` with downside deviation ``DD = sqrt(sum(min(r_d, 0)^2) / n)``
  over *all* n days (target return 0, Sortino & Price). ``math.inf`` when no day lost and the mean is
  positive, ``None`` when no day lost otherwise, or with fewer than 2 days, or a balance <= 0.
* **Tiers.** A day's tier is the one the execution manager traded it in: chosen once, at the start of the
  trading day, from the balance then (the highest tier whose minimum the balance reaches, else the first tier);
  never changed in the middle of a day. A backtest passes the tiers its own journal recorded
  (``day_tiers``), so the report states the tier the trades actually used; without them the same rule is
  applied to the closed-trade balance at the start of each day. Tiers off: tier 0, no changes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tradebot.core.calendar import CT, calendar_for, from_ns
from tradebot.core.config import ExecutionSettings
from tradebot.core.contracts import CONTRACTS
from tradebot.core.display import local
from tradebot.core.logging import get_logger
from tradebot.core.stats import (  # the one definition of each statistic (also stats, the digest, status)
    TRADING_DAYS_PER_YEAR,
    drawdown_series,
    equity_curve,
    longest_run,
    max_drawdown,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    summarize,
)
from tradebot.core.values import CapitalTier
from tradebot.execution.trades import TradeRecord, sort_trades

log = get_logger(__name__)

__all__ = ["TRADING_DAYS_PER_YEAR", "drawdown_series", "longest_run", "max_drawdown", "profit_factor", "sharpe_ratio",
           "sortino_ratio"]
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ---------------------------------------------------------------------------------------------------
# Tiers
# ---------------------------------------------------------------------------------------------------

_DEFAULTS = ExecutionSettings()
DEFAULT_STARTING_BALANCE_CENTS = int(_DEFAULTS.starting_balance * 100)
"""The settings' default starting balance (``TRADEBOT_EXECUTION__STARTING_BALANCE``), in cents."""


def default_tiers() -> tuple[CapitalTier, ...]:
    """The settings' default tiers (``TRADEBOT_EXECUTION__TIERS``): the one tier definition, seed 002's five."""
    return _DEFAULTS.tiers


def _check_tiers(tiers: Sequence[CapitalTier]) -> None:
    """Tiers given in code rather than through the settings get the settings' checks."""
    if not tiers:
        raise ValueError("give at least one tier")
    mins = [t.min_balance_cents for t in tiers]
    if mins != sorted(mins) or len(set(mins)) != len(mins):
        raise ValueError("tiers must be in strictly ascending min balance order")
    for t in tiers:
        if t.root not in CONTRACTS or t.max_contracts < 1:
            raise ValueError(f"tier {t.name!r}: need a known root and max contracts >= 1")


def tier_index(balance_cents: int, tiers: Sequence[CapitalTier]) -> int:
    """0-based index of the highest tier whose minimum the balance reaches (0 when below all)."""
    chosen = 0
    for i, t in enumerate(tiers):
        if balance_cents >= t.min_balance_cents:
            chosen = i
    return chosen


# ---------------------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DayResult:
    day: dt.date
    trades: int
    wins: int
    losses: int
    net_cents: int
    start_balance_cents: int
    end_balance_cents: int
    ret: float | None
    """``net / start balance``; ``None`` when the day started at a balance <= 0."""
    tier: int
    """1-based number of the tier in effect that day (0: tiers off)."""


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One row of a breakdown table (month, pattern, hour, weekday, regime, exit reason)."""

    key: str
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    net_cents: int
    gross_profit_cents: int
    gross_loss_cents: int
    profit_factor: float | None
    days: int
    """Month / weekday: days of the daily series in the group (flat days included). Other groupings:
    distinct trading days on which the group traded."""
    winning_days: int
    """Days on which this group's net P&L was > 0."""
    avg_per_day_cents: float | None


@dataclass(frozen=True, slots=True)
class TierChange:
    tier: int
    """1-based tier number."""
    name: str
    root: str
    max_contracts: int
    direction: Literal["start", "promoted", "demoted"]
    day: dt.date | None
    """First trading day in the new tier; ``None`` when the last close of the run crossed the threshold."""
    day_number: int
    """1-based position of that day in the daily series (``len(daily) + 1`` past the end)."""
    crossed_on: dt.date | None
    """The close whose balance crossed the threshold (``None`` for the starting tier)."""
    balance_cents: int


@dataclass(frozen=True, slots=True)
class BacktestStats:
    starting_balance_cents: int
    final_balance_cents: int
    net_pnl_cents: int
    gross_profit_cents: int
    gross_loss_cents: int
    commission_cents: int
    profit_factor: float | None
    trades: int
    wins: int
    losses: int
    scratches: int
    win_rate: float | None
    avg_win_cents: float | None
    avg_loss_cents: float | None
    expectancy_cents: float | None
    days: int
    winning_days: int
    losing_days: int
    winning_day_rate: float | None
    avg_daily_pnl_cents: float | None
    best_day_cents: int | None
    worst_day_cents: int | None
    max_drawdown_cents: int
    max_drawdown_pct: float | None
    max_daily_drawdown_cents: int
    max_consecutive_losses: int
    max_consecutive_wins: int
    sharpe: float | None
    sortino: float | None
    equity_ns: tuple[int, ...]
    """Time of each equity point: the first trade's entry (starting balance), then each exit."""
    equity_cents: tuple[int, ...]
    daily: tuple[DayResult, ...]
    monthly: tuple[GroupStats, ...]
    by_pattern: tuple[GroupStats, ...]
    by_hour: tuple[GroupStats, ...]
    """Hour of the *entry* in the display zone (``TRADEBOT_DISPLAY_TZ``), keys ``"09:00"``."""
    by_weekday: tuple[GroupStats, ...]
    """Weekday of the trading day, keys ``"Mon"``..."""
    by_regime: tuple[GroupStats, ...]
    by_exit_reason: tuple[GroupStats, ...]
    tiers: tuple[CapitalTier, ...]
    tier_changes: tuple[TierChange, ...]

    def first_reached(self, tier: int) -> TierChange | None:
        """The first promotion into (or start in) a 1-based tier, ``None`` if never reached."""
        return next((c for c in self.tier_changes if c.tier == tier and c.direction != "demoted"), None)


# ---------------------------------------------------------------------------------------------------
# Primitives (also used by the stress tests)
# ---------------------------------------------------------------------------------------------------

def trading_day_of(trade: TradeRecord) -> dt.date:
    """Exchange trading date of the exit. Outside the calendar's span (2015-2032) the 17:00 CT rule is
    applied to the Chicago date instead of failing (logged)."""
    cal = calendar_for(CONTRACTS[trade.symbol].session)
    try:
        return cal.trading_day(trade.exit_ns)
    except ValueError:
        local = from_ns(trade.exit_ns, CT)
        log.warning("trade outside the exchange calendar span; 17:00 CT rule used", trade_id=trade.trade_id)
        return local.date() + dt.timedelta(days=1) if local.hour >= 17 else local.date()


# ---------------------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------------------

def _group(key: str, trades: Sequence[TradeRecord], days_of: Sequence[dt.date], day_nets: dict[dt.date, int] | None,
           ) -> GroupStats:
    """Stats for one group. ``day_nets`` given: the group owns those days (flat days included)."""
    wins = sum(1 for t in trades if t.net_pnl_cents > 0)
    losses = sum(1 for t in trades if t.net_pnl_cents < 0)
    gp = sum(t.net_pnl_cents for t in trades if t.net_pnl_cents > 0)
    gl = sum(t.net_pnl_cents for t in trades if t.net_pnl_cents < 0)
    net = gp + gl
    if day_nets is None:
        per_day: dict[dt.date, int] = defaultdict(int)
        for t, d in zip(trades, days_of, strict=True):
            per_day[d] += t.net_pnl_cents
        day_nets = per_day
    days = len(day_nets)
    return GroupStats(key, len(trades), wins, losses, wins / len(trades) if trades else None, net, gp, gl,
                      profit_factor(gp, gl), days, sum(1 for v in day_nets.values() if v > 0),
                      net / days if days else None)


def _breakdown(trades: Sequence[TradeRecord], days: Sequence[dt.date], key: Callable[[int], str],
               order: Callable[[GroupStats], Any], day_key: Callable[[dt.date], str] | None = None,
               daily: Sequence[DayResult] = ()) -> tuple[GroupStats, ...]:
    """Group trades by ``key(i)``; with ``day_key`` the groups partition the daily series instead."""
    idx: dict[str, list[int]] = defaultdict(list)
    for i in range(len(trades)):
        idx[key(i)].append(i)
    owned: dict[str, dict[dt.date, int]] = defaultdict(dict)
    if day_key is not None:
        for r in daily:
            owned[day_key(r.day)][r.day] = r.net_cents
    keys = set(idx) | set(owned)
    rows = [_group(k, [trades[i] for i in idx.get(k, [])], [days[i] for i in idx.get(k, [])],
                   owned[k] if day_key is not None else None) for k in keys]
    return tuple(sorted(rows, key=order))


def compute_stats(trades: Iterable[TradeRecord], starting_balance_cents: int = DEFAULT_STARTING_BALANCE_CENTS, *,
                  session_days: Iterable[dt.date] = (), tiers: Sequence[CapitalTier] | None = None,
                  day_tiers: Mapping[dt.date, int] | None = None) -> BacktestStats:
    """Every statistic of the module docstring for a list of closed trades (any order).

    ``tiers`` ``None``: the settings' default tiers; empty: tiers are off (every day's tier is 0, no tier
    changes). ``day_tiers``: the 1-based tier each day actually traded in, as the run's execution manager chose it
    (a backtest passes it from its journal, so the report states what the trades used); a day missing from it
    keeps the previous day's tier. Without it the tier is computed from the balance at the start of the day (the
    module docstring's rule).
    """
    tiers = default_tiers() if tiers is None else tuple(tiers)
    if tiers:
        _check_tiers(tiers)
    ordered = sort_trades(trades)
    tdays = [trading_day_of(t) for t in ordered]
    nets = [t.net_pnl_cents for t in ordered]

    # Trade-level figures.
    summary = summarize(nets, starting_balance_cents)
    wins, losses, gp, gl, net, n = (summary.wins, summary.losses, summary.gross_profit_cents,
                                    summary.gross_loss_cents, summary.net_cents, summary.trades)
    equity = equity_curve(nets, starting_balance_cents)
    equity_ns = ([ordered[0].entry_ns] if ordered else []) + [t.exit_ns for t in ordered]
    peak = starting_balance_cents
    dd_pct: float | None = None
    for v in equity:
        peak = max(peak, v)
        if peak > 0:
            dd_pct = max(dd_pct or 0.0, (peak - v) / peak)

    # Daily series and tiers.
    by_day: dict[dt.date, list[int]] = defaultdict(list)
    for v, d in zip(nets, tdays, strict=True):
        by_day[d].append(v)
    all_days = sorted(set(by_day) | set(session_days))
    daily: list[DayResult] = []
    changes: list[TierChange] = []
    balance = starting_balance_cents

    def used(d: dt.date, previous: int) -> int:
        """0-based tier of day ``d`` (-1: tiers off)."""
        if not tiers:
            return -1
        if day_tiers is not None:
            n = day_tiers.get(d)
            return previous if n is None else min(max(n, 1), len(tiers)) - 1
        return tier_index(balance, tiers)

    current = used(all_days[0], tier_index(balance, tiers) if tiers else -1) if all_days else -1
    if all_days and current >= 0:
        t0 = tiers[current]
        changes.append(TierChange(current + 1, t0.name, t0.root, t0.max_contracts, "start", all_days[0], 1, None,
                                  balance))
    for k, d in enumerate(all_days):
        if k > 0 and day_tiers is not None:
            nxt = used(d, current)
            if nxt != current:
                t = tiers[nxt]
                changes.append(TierChange(nxt + 1, t.name, t.root, t.max_contracts,
                                          "promoted" if nxt > current else "demoted", d, k + 1, all_days[k - 1],
                                          balance))
                current = nxt
        vals = by_day.get(d, [])
        day_net = sum(vals)
        ret = day_net / balance if balance > 0 else None
        daily.append(DayResult(d, len(vals), sum(1 for v in vals if v > 0), sum(1 for v in vals if v < 0),
                               day_net, balance, balance + day_net, ret, current + 1))
        balance += day_net
        if day_tiers is not None or not tiers:
            continue
        nxt = tier_index(balance, tiers)
        if nxt != current:
            t = tiers[nxt]
            eff = all_days[k + 1] if k + 1 < len(all_days) else None
            changes.append(TierChange(nxt + 1, t.name, t.root, t.max_contracts,
                                      "promoted" if nxt > current else "demoted", eff, k + 2, d, balance))
            current = nxt
    returns = [r.ret for r in daily]
    clean = [r for r in returns if r is not None]
    usable = len(clean) == len(returns)
    day_nets = [r.net_cents for r in daily]

    # Breakdowns.
    def month_key(d: dt.date) -> str:
        return f"{d.year:04d}-{d.month:02d}"

    def weekday_key(d: dt.date) -> str:
        return WEEKDAYS[d.weekday()]

    entry_hours = [local(t.entry_ns).hour for t in ordered]
    monthly = _breakdown(ordered, tdays, lambda i: month_key(tdays[i]), lambda g: g.key, month_key, daily)
    by_pattern = _breakdown(ordered, tdays, lambda i: ordered[i].pattern or "(none)", lambda g: (-g.net_cents, g.key))
    by_hour = _breakdown(ordered, tdays, lambda i: f"{entry_hours[i]:02d}:00", lambda g: g.key)
    by_weekday = _breakdown(ordered, tdays, lambda i: weekday_key(tdays[i]), lambda g: WEEKDAYS.index(g.key),
                            weekday_key, daily)
    by_regime = _breakdown(ordered, tdays, lambda i: ordered[i].regime or "(none)", lambda g: (-g.net_cents, g.key))
    by_exit = _breakdown(ordered, tdays, lambda i: ordered[i].exit_reason or "(none)",
                         lambda g: (-g.trades, g.key))

    n_days = len(daily)
    return BacktestStats(
        starting_balance_cents=starting_balance_cents,
        final_balance_cents=starting_balance_cents + net,
        net_pnl_cents=net,
        gross_profit_cents=gp,
        gross_loss_cents=gl,
        commission_cents=sum(t.commission_cents for t in ordered),
        profit_factor=summary.profit_factor,
        trades=n,
        wins=wins,
        losses=losses,
        scratches=summary.scratches,
        win_rate=summary.win_rate,
        avg_win_cents=summary.avg_win_cents,
        avg_loss_cents=summary.avg_loss_cents,
        expectancy_cents=summary.expectancy_cents,
        days=n_days,
        winning_days=sum(1 for v in day_nets if v > 0),
        losing_days=sum(1 for v in day_nets if v < 0),
        winning_day_rate=sum(1 for v in day_nets if v > 0) / n_days if n_days else None,
        avg_daily_pnl_cents=net / n_days if n_days else None,
        best_day_cents=max(day_nets) if day_nets else None,
        worst_day_cents=min(day_nets) if day_nets else None,
        max_drawdown_cents=summary.max_drawdown_cents,
        max_drawdown_pct=dd_pct,
        max_daily_drawdown_cents=max_drawdown([starting_balance_cents] + [r.end_balance_cents for r in daily]),
        max_consecutive_losses=summary.max_consecutive_losses,
        max_consecutive_wins=summary.max_consecutive_wins,
        sharpe=sharpe_ratio(clean) if usable else None,
        sortino=sortino_ratio(clean) if usable else None,
        equity_ns=tuple(equity_ns),
        equity_cents=tuple(equity),
        daily=tuple(daily),
        monthly=monthly,
        by_pattern=by_pattern,
        by_hour=by_hour,
        by_weekday=by_weekday,
        by_regime=by_regime,
        by_exit_reason=by_exit,
        tiers=tiers,
        tier_changes=tuple(changes),
    )


# ---------------------------------------------------------------------------------------------------
# Presentation helpers (JSON output, tables)
# ---------------------------------------------------------------------------------------------------

def fmt_usd(cents: float | None, *, signed: bool = False) -> str:
    """``123456`` -> ``$1,234.56`` (``-$12.50``); float cents (averages) are rounded to the cent."""
    if cents is None:
        return "n/a"
    c = round(cents)
    sign = "-" if c < 0 else ("+" if signed and c > 0 else "")
    whole, frac = divmod(abs(c), 100)
    return f"{sign}${whole:,}.{frac:02d}"


def fmt_ratio(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def fmt_pct(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def json_number(x: float | None) -> float | str | None:
    """JSON has no infinity: ``inf`` becomes the string ``"inf"``."""
    if x is not None and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def group_dict(g: GroupStats) -> dict[str, Any]:
    return {"key": g.key, "trades": g.trades, "wins": g.wins, "losses": g.losses,
            "win_rate": g.win_rate, "net_cents": g.net_cents, "gross_profit_cents": g.gross_profit_cents,
            "gross_loss_cents": g.gross_loss_cents, "profit_factor": json_number(g.profit_factor),
            "days": g.days, "winning_days": g.winning_days, "avg_per_day_cents": g.avg_per_day_cents}


def stats_summary(s: BacktestStats) -> dict[str, Any]:
    """JSON-safe summary: the headline figures, breakdown tables and tier changes (no per-trade arrays)."""
    head: dict[str, Any] = {k: json_number(v) if isinstance(v, float) else v for k, v in (
        ("starting_balance_cents", s.starting_balance_cents), ("final_balance_cents", s.final_balance_cents),
        ("net_pnl_cents", s.net_pnl_cents), ("gross_profit_cents", s.gross_profit_cents),
        ("gross_loss_cents", s.gross_loss_cents), ("commission_cents", s.commission_cents),
        ("profit_factor", s.profit_factor), ("trades", s.trades), ("wins", s.wins), ("losses", s.losses),
        ("scratches", s.scratches), ("win_rate", s.win_rate), ("avg_win_cents", s.avg_win_cents),
        ("avg_loss_cents", s.avg_loss_cents), ("expectancy_cents", s.expectancy_cents), ("days", s.days),
        ("winning_days", s.winning_days), ("losing_days", s.losing_days),
        ("winning_day_rate", s.winning_day_rate), ("avg_daily_pnl_cents", s.avg_daily_pnl_cents),
        ("best_day_cents", s.best_day_cents), ("worst_day_cents", s.worst_day_cents),
        ("max_drawdown_cents", s.max_drawdown_cents), ("max_drawdown_pct", s.max_drawdown_pct),
        ("max_daily_drawdown_cents", s.max_daily_drawdown_cents),
        ("max_consecutive_losses", s.max_consecutive_losses), ("max_consecutive_wins", s.max_consecutive_wins),
        ("sharpe", s.sharpe), ("sortino", s.sortino))}
    head["monthly"] = [group_dict(g) for g in s.monthly]
    head["by_pattern"] = [group_dict(g) for g in s.by_pattern]
    head["by_hour"] = [group_dict(g) for g in s.by_hour]
    head["by_weekday"] = [group_dict(g) for g in s.by_weekday]
    head["by_regime"] = [group_dict(g) for g in s.by_regime]
    head["by_exit_reason"] = [group_dict(g) for g in s.by_exit_reason]
    head["daily"] = [{"day": r.day.isoformat(), "trades": r.trades, "net_cents": r.net_cents,
                      "end_balance_cents": r.end_balance_cents, "ret": r.ret, "tier": r.tier} for r in s.daily]
    head["tier_changes"] = [{"tier": c.tier, "name": c.name, "root": c.root, "max_contracts": c.max_contracts,
                             "direction": c.direction, "day": c.day.isoformat() if c.day else None,
                             "day_number": c.day_number,
                             "crossed_on": c.crossed_on.isoformat() if c.crossed_on else None,
                             "balance_cents": c.balance_cents} for c in s.tier_changes]
    return head
