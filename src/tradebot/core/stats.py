"""The one definition of every trading statistic: ``tradebot stats``, the daily digest, ``status`` and backtests.

They used to be computed three ways (a day's drawdown from end-of-day balances only, so a single day with a
$47.23 fall read $0.00; a scratch counted as a loss in one place and not in another). Every caller now passes its
closed trades' net P&L (integer cents, after commission, in closed-trade order) to :func:`summarize` or the
primitives below. Definitions (the tests compute each by hand):

* **Win / loss / scratch.** Net P&L > 0 wins, < 0 loses, exactly 0 is a scratch (neither).
* **Gross profit / gross loss.** Sum of the winners' net P&L / sum of the losers' net P&L (<= 0).
* **Profit factor.** ``gross_profit / -gross_loss``; ``inf`` with a profit and no loss, ``None`` with neither
  ("undefined", not zero).
* **Win rate.** Winners / all trades (scratches count in the denominator); ``None`` without trades.
* **Expectancy.** Net P&L / trades; ``None`` without trades.
* **Max drawdown.** Largest peak-to-trough fall of the closed-trade equity curve: the starting value followed by
  the value after each trade. For one day that is the day's own intraday (closed-trade) drawdown from its open.
* **Daily drawdown.** The same on the end-of-day balances (starting value first).
* **Max consecutive losses / wins.** Longest run of losing (winning) trades; a scratch ends a run.
* **Sharpe / Sortino.** On daily returns, sqrt(252), risk-free 0 (see :func:`sharpe_ratio`, :func:`sortino_ratio`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

TRADING_DAYS_PER_YEAR = 252

Outcome = Literal["win", "loss", "scratch"]


def outcome(net_cents: int) -> Outcome:
    return "win" if net_cents > 0 else "loss" if net_cents < 0 else "scratch"


def profit_factor(gross_profit_cents: int, gross_loss_cents: int) -> float | None:
    """``gross_profit / -gross_loss``; ``inf`` with profit but no loss, ``None`` with neither."""
    if gross_loss_cents < 0:
        return gross_profit_cents / -gross_loss_cents
    return math.inf if gross_profit_cents > 0 else None


def max_drawdown(equity: Sequence[int]) -> int:
    """Largest peak-to-trough fall of an equity series (same units as the series, >= 0)."""
    peak = None
    worst = 0
    for v in equity:
        if peak is None or v > peak:
            peak = v
        elif peak - v > worst:
            worst = peak - v
    return worst


def drawdown_series(equity: Sequence[int]) -> list[int]:
    """Distance below the running peak at each point (<= 0), for the drawdown panel."""
    out: list[int] = []
    peak: int | None = None
    for v in equity:
        peak = v if peak is None or v > peak else peak
        out.append(v - peak)
    return out


def equity_curve(nets: Iterable[int], start_cents: int = 0) -> list[int]:
    """The starting value followed by the running total after each trade."""
    equity = [start_cents]
    for v in nets:
        equity.append(equity[-1] + v)
    return equity


def longest_run(flags: Iterable[bool]) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def sharpe_ratio(returns: Sequence[float]) -> float | None:
    """``mean / sample stdev * sqrt(252)``; ``None`` with fewer than 2 returns or no deviation."""
    n = len(returns)
    if n < 2:
        return None
    mean = math.fsum(returns) / n
    var = math.fsum((r - mean) ** 2 for r in returns) / (n - 1)
    if var <= 0.0:
        return None
    return mean / math.sqrt(var) * math.sqrt(TRADING_DAYS_PER_YEAR)


def sortino_ratio(returns: Sequence[float]) -> float | None:
    """``mean / DD * sqrt(252)``, ``DD = sqrt(sum(min(r, 0)^2) / n)`` over all n returns (target 0)."""
    n = len(returns)
    if n < 2:
        return None
    mean = math.fsum(returns) / n
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / n)
    if downside == 0.0:
        return math.inf if mean > 0 else None
    return mean / downside * math.sqrt(TRADING_DAYS_PER_YEAR)


def json_ratio(x: float | None, digits: int = 2) -> float | str | None:
    """A ratio for a JSON document: JSON has no infinity, so a profit factor with no losing trade is ``"inf"``."""
    if x is None:
        return None
    return "inf" if math.isinf(x) else round(x, digits)


@dataclass(frozen=True, slots=True)
class TradeSummary:
    trades: int
    wins: int
    losses: int
    scratches: int
    net_cents: int
    gross_profit_cents: int
    gross_loss_cents: int
    """<= 0."""
    profit_factor: float | None
    win_rate: float | None
    avg_win_cents: float | None
    avg_loss_cents: float | None
    expectancy_cents: float | None
    max_drawdown_cents: int
    max_consecutive_losses: int
    max_consecutive_wins: int


def summarize(nets: Sequence[int], start_cents: int = 0) -> TradeSummary:
    """Every trade-level figure of the module docstring for net P&Ls in closed-trade order."""
    wins = sum(1 for v in nets if v > 0)
    losses = sum(1 for v in nets if v < 0)
    gp = sum(v for v in nets if v > 0)
    gl = sum(v for v in nets if v < 0)
    n = len(nets)
    net = sum(nets)
    return TradeSummary(
        trades=n, wins=wins, losses=losses, scratches=n - wins - losses, net_cents=net, gross_profit_cents=gp,
        gross_loss_cents=gl, profit_factor=profit_factor(gp, gl), win_rate=wins / n if n else None,
        avg_win_cents=gp / wins if wins else None, avg_loss_cents=gl / losses if losses else None,
        expectancy_cents=net / n if n else None, max_drawdown_cents=max_drawdown(equity_curve(nets, start_cents)),
        max_consecutive_losses=longest_run(v < 0 for v in nets),
        max_consecutive_wins=longest_run(v > 0 for v in nets))
