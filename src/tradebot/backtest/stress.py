"""Stress tests over a backtest's trades (seed 002): slippage, time-of-day / weekday, Monte Carlo, verdicts.

* **Slippage.** Every trade re-priced ``N`` ticks worse per side (exact cents, see
  :func:`tradebot.execution.trades.with_slippage`) and all statistics recomputed: does the edge survive
  worse fills than the simulator assumed?
* **Monte Carlo.** The trades' net P&L in 1,000 random orders (a ``(runs, n)`` matrix of permutations from
  a seeded ``numpy`` Generator, cumulative sums, running maxima): how deep a drawdown and how long a
  losing streak the *same* trades could have produced in another order. The bootstrap variant draws
  ``n`` trades with replacement instead, so the final P&L varies too. Drawdown here is in cents of the
  closed-trade equity curve starting at 0 (the starting balance does not change a cents drawdown).
* **Verdicts.** Pass/fail against configurable limits, like seed 002's table; the limits are policy
  choices, not derived from the seed's unverified numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from tradebot.backtest.stats import (
    DEFAULT_STARTING_BALANCE_CENTS,
    BacktestStats,
    GroupStats,
    compute_stats,
    fmt_usd,
)
from tradebot.core.values import CapitalTier
from tradebot.execution.trades import TradeRecord, sort_trades, with_slippage

PERCENTILES: tuple[float, ...] = (5.0, 50.0, 95.0, 99.0)
_CHUNK_CELLS = 4_000_000
"""Matrix cells per vectorised block (~32 MB of int64), so 1,000 runs of a long backtest stay bounded."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class StressLimits:
    """Pass/fail limits. Defaults are policy choices for seed 002's $2,500 account, not seed figures."""

    max_drawdown_cents: int = 125_000
    """Half the $2,500 starting account."""
    max_losing_streak: int = 8
    mc_percentile: float = 95.0
    """The Monte Carlo drawdown and streak at this percentile must also be within the limits."""
    profitable_after_slippage_ticks: int = 1
    """Net P&L must stay > 0 with this much slippage per side (0 disables the check)."""
    max_tier_demotions: int | None = None
    """Tier demotions allowed (``None``: not checked)."""


@dataclass(frozen=True, slots=True)
class SlippageResult:
    ticks_per_side: int
    stats: BacktestStats
    net_change_cents: int
    """Net P&L with slippage minus the original (<= 0)."""


@dataclass(frozen=True)
class MonteCarloResult:
    method: Literal["permutation", "bootstrap"]
    runs: int
    seed: int
    max_drawdown_cents: IntArray
    """One value per run, cents."""
    longest_losing_streak: IntArray
    final_net_cents: IntArray
    original_max_drawdown_cents: int
    original_losing_streak: int
    drawdown_percentiles: dict[float, float]
    streak_percentiles: dict[float, float]
    original_drawdown_rank: float
    """Fraction of runs whose drawdown is <= the original's (how lucky the actual order was)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    test: str
    passed: bool
    value: str
    limit: str
    note: str = ""


@dataclass(frozen=True)
class StressReport:
    slippage: tuple[SlippageResult, ...]
    by_hour: tuple[GroupStats, ...]
    by_weekday: tuple[GroupStats, ...]
    monte_carlo: MonteCarloResult
    bootstrap: MonteCarloResult
    verdicts: tuple[Verdict, ...]
    limits: StressLimits = field(default_factory=StressLimits)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


# ---------------------------------------------------------------------------------------------------
# Vectorised path statistics
# ---------------------------------------------------------------------------------------------------

def path_max_drawdowns(pnl_paths: IntArray) -> IntArray:
    """Max drawdown of each row of a ``(runs, n)`` matrix of per-trade P&L (equity starts at 0)."""
    runs, n = pnl_paths.shape
    if n == 0:
        return np.zeros(runs, dtype=np.int64)
    equity = np.cumsum(pnl_paths, axis=1, dtype=np.int64)
    peak = np.maximum(np.maximum.accumulate(equity, axis=1), 0)  # the start (0) is the first peak
    return np.asarray((peak - equity).max(axis=1), dtype=np.int64)


def path_longest_losing_streaks(pnl_paths: IntArray) -> IntArray:
    """Longest run of losing trades (< 0) in each row; a scratch or win ends a run."""
    runs, n = pnl_paths.shape
    if n == 0:
        return np.zeros(runs, dtype=np.int64)
    loss = pnl_paths < 0
    count = np.cumsum(loss, axis=1, dtype=np.int64)
    # At a non-loss, remember the count so far; the run length is the count since the last reset.
    reset = np.maximum.accumulate(np.where(loss, 0, count), axis=1)
    return np.asarray((count - reset).max(axis=1), dtype=np.int64)


def _percentiles(values: IntArray) -> dict[float, float]:
    if values.size == 0:
        return {p: 0.0 for p in PERCENTILES}
    qs = np.percentile(values, PERCENTILES)
    return {p: float(q) for p, q in zip(PERCENTILES, qs, strict=True)}


def monte_carlo(trades: Sequence[TradeRecord], runs: int = 1000, seed: int = 0,
                method: Literal["permutation", "bootstrap"] = "permutation") -> MonteCarloResult:
    """Distributions of max drawdown and longest losing streak over ``runs`` reorderings of the trades.

    Deterministic for a given seed, trade list and ``runs``: the blocks are drawn from one Generator in
    order. ``permutation`` shuffles each row independently (``Generator.permuted``); ``bootstrap``
    samples ``n`` trade indices with replacement.
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    ordered = sort_trades(trades)
    pnl = np.fromiter((t.net_pnl_cents for t in ordered), dtype=np.int64, count=len(ordered))
    n = pnl.size
    rng = np.random.default_rng(seed)
    dds = np.zeros(runs, dtype=np.int64)
    streaks = np.zeros(runs, dtype=np.int64)
    finals = np.zeros(runs, dtype=np.int64)
    if n:
        block = max(1, _CHUNK_CELLS // n)
        base = np.arange(n, dtype=np.int64)
        for lo in range(0, runs, block):
            hi = min(runs, lo + block)
            if method == "permutation":
                idx = rng.permuted(np.broadcast_to(base, (hi - lo, n)), axis=1)
            else:
                idx = rng.integers(0, n, size=(hi - lo, n), dtype=np.int64)
            paths = pnl[idx]
            dds[lo:hi] = path_max_drawdowns(paths)
            streaks[lo:hi] = path_longest_losing_streaks(paths)
            finals[lo:hi] = paths.sum(axis=1)
    original = pnl.reshape(1, n)
    orig_dd = int(path_max_drawdowns(original)[0])
    orig_streak = int(path_longest_losing_streaks(original)[0])
    return MonteCarloResult(method, runs, seed, dds, streaks, finals, orig_dd, orig_streak, _percentiles(dds),
                            _percentiles(streaks), float(np.mean(dds <= orig_dd)))


# ---------------------------------------------------------------------------------------------------
# The whole stress suite
# ---------------------------------------------------------------------------------------------------

def slippage_test(trades: Sequence[TradeRecord], ticks_per_side: int, base: BacktestStats, *,
                  session_days: Iterable[dt.date] = (), tiers: Sequence[CapitalTier] | None = None) -> SlippageResult:
    worse = [with_slippage(t, ticks_per_side) for t in trades]
    s = compute_stats(worse, base.starting_balance_cents, session_days=session_days, tiers=tiers)
    return SlippageResult(ticks_per_side, s, s.net_pnl_cents - base.net_pnl_cents)


def verdicts(base: BacktestStats, slippage: Sequence[SlippageResult], mc: MonteCarloResult,
             limits: StressLimits) -> tuple[Verdict, ...]:
    p = limits.mc_percentile
    mc_dd = float(np.percentile(mc.max_drawdown_cents, p)) if mc.runs and mc.max_drawdown_cents.size else 0.0
    mc_st = float(np.percentile(mc.longest_losing_streak, p)) if mc.runs and mc.longest_losing_streak.size else 0.0
    out = [
        Verdict("Max Drawdown", base.max_drawdown_cents <= limits.max_drawdown_cents,
                fmt_usd(base.max_drawdown_cents), f"<= {fmt_usd(limits.max_drawdown_cents)}",
                "closed-trade equity, peak to trough"),
        Verdict("Losing Streak", base.max_consecutive_losses <= limits.max_losing_streak,
                str(base.max_consecutive_losses), f"<= {limits.max_losing_streak}", "consecutive losing trades"),
        Verdict(f"Monte Carlo Drawdown p{p:g}", mc_dd <= limits.max_drawdown_cents, fmt_usd(mc_dd),
                f"<= {fmt_usd(limits.max_drawdown_cents)}", f"{mc.runs} random trade orders"),
        Verdict(f"Monte Carlo Losing Streak p{p:g}", mc_st <= limits.max_losing_streak, f"{mc_st:g}",
                f"<= {limits.max_losing_streak}", f"{mc.runs} random trade orders"),
    ]
    k = limits.profitable_after_slippage_ticks
    if k > 0:
        match = next((s for s in slippage if s.ticks_per_side == k), None)
        if match is not None:
            out.append(Verdict(f"Slippage {k} tick{'s' if k > 1 else ''}/side", match.stats.net_pnl_cents > 0,
                               fmt_usd(match.stats.net_pnl_cents), "> $0.00", "net P&L with every fill worse"))
    if limits.max_tier_demotions is not None:
        demotions = sum(1 for c in base.tier_changes if c.direction == "demoted")
        reached = max((c.tier for c in base.tier_changes), default=0)
        out.append(Verdict("Tier Transitions", demotions <= limits.max_tier_demotions, f"{demotions} demotions",
                           f"<= {limits.max_tier_demotions}", f"highest tier reached: {reached}"))
    return tuple(out)


def run_stress(trades: Iterable[TradeRecord], starting_balance_cents: int = DEFAULT_STARTING_BALANCE_CENTS, *,
               base: BacktestStats | None = None, limits: StressLimits | None = None,
               slippage_ticks: Sequence[int] = (1, 2), runs: int = 1000, seed: int = 0,
               session_days: Iterable[dt.date] = (), tiers: Sequence[CapitalTier] | None = None) -> StressReport:
    """Every stress test of the module docstring. Pass ``base`` (from :func:`compute_stats` with the same
    arguments) to avoid computing the statistics twice."""
    ordered = sort_trades(trades)
    days = tuple(session_days)
    lim = limits or StressLimits()
    if base is None:
        base = compute_stats(ordered, starting_balance_cents, session_days=days, tiers=tiers)
    ticks = sorted(set(slippage_ticks) | ({lim.profitable_after_slippage_ticks} - {0}))
    slip = tuple(slippage_test(ordered, k, base, session_days=days, tiers=tiers) for k in ticks)
    mc = monte_carlo(ordered, runs, seed, "permutation")
    boot = monte_carlo(ordered, runs, seed + 1, "bootstrap")
    return StressReport(slip, base.by_hour, base.by_weekday, mc, boot, verdicts(base, slip, mc, lim), lim)
