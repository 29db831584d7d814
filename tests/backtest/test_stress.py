"""Stress tests: slippage re-pricing, Monte Carlo reorderings (vectorised == brute force), verdicts."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from tradebot.backtest.stats import compute_stats, longest_run, max_drawdown
from tradebot.backtest.stress import (
    StressLimits,
    monte_carlo,
    path_longest_losing_streaks,
    path_max_drawdowns,
    run_stress,
)
from tradebot.core.calendar import ET, local_ns
from tradebot.execution.trades import TradeRecord

START = 250_000
DAYS = [dt.date(2024, 6, d) for d in (3, 4, 5, 6, 7, 10, 11, 12)]


def trade(i: int, ticks: int, qty: int = 1, side: int = 1) -> TradeRecord:
    day = DAYS[i % len(DAYS)]
    en = local_ns(day, dt.time(9, 30), ET) + i * 60 * 10**9
    return TradeRecord.make(trade_id=f"t{i}", symbol="MES", side=side, quantity=qty, entry_ns=en,
                            exit_ns=en + 30 * 10**9, entry_price=20000, exit_price=20000 + side * ticks,
                            tick_value_cents=125, commission_cents=50 * qty, pattern="P" if i % 2 else "Q")


def mixed(n: int = 24) -> list[TradeRecord]:
    ticks = [8, -4, -4, 12, -4, 0, 6, -8, -4, -4, 16, 2]
    return [trade(i, ticks[i % len(ticks)], qty=1 + i % 3, side=1 if i % 4 else -1) for i in range(n)]


def test_vectorised_paths_match_brute_force() -> None:
    rng = np.random.default_rng(7)
    paths = rng.integers(-5, 6, size=(300, 17)).astype(np.int64)  # includes zeros (scratches)
    dd = path_max_drawdowns(paths)
    st = path_longest_losing_streaks(paths)
    for row, d, s in zip(paths, dd, st, strict=True):
        eq = [0, *np.cumsum(row).tolist()]
        assert d == max_drawdown(eq)
        assert s == longest_run(v < 0 for v in row.tolist())
    assert path_max_drawdowns(np.zeros((3, 0), dtype=np.int64)).tolist() == [0, 0, 0]
    # A first-trade loss is a drawdown from the start.
    assert path_max_drawdowns(np.array([[-5, 2, 1]], dtype=np.int64)).tolist() == [5]


def test_identity_order_reproduces_the_backtest() -> None:
    trades = mixed()
    s = compute_stats(trades, START)
    pnl = np.array([t.net_pnl_cents for t in sorted(trades, key=lambda t: t.exit_ns)], dtype=np.int64)
    identity = np.arange(pnl.size)[None, :]
    assert path_max_drawdowns(pnl[identity])[0] == s.max_drawdown_cents
    assert path_longest_losing_streaks(pnl[identity])[0] == s.max_consecutive_losses
    mc = monte_carlo(trades, runs=200, seed=3)
    assert mc.original_max_drawdown_cents == s.max_drawdown_cents
    assert mc.original_losing_streak == s.max_consecutive_losses


def test_monte_carlo_deterministic_ordered_and_contains_the_original() -> None:
    trades = mixed()
    a = monte_carlo(trades, runs=1000, seed=42)
    b = monte_carlo(list(reversed(trades)), runs=1000, seed=42)
    assert np.array_equal(a.max_drawdown_cents, b.max_drawdown_cents)
    assert np.array_equal(a.longest_losing_streak, b.longest_losing_streak)
    c = monte_carlo(trades, runs=1000, seed=43)
    assert not np.array_equal(a.max_drawdown_cents, c.max_drawdown_cents)
    assert a.max_drawdown_cents.shape == (1000,)
    p = [a.drawdown_percentiles[q] for q in (5.0, 50.0, 95.0, 99.0)]
    assert p == sorted(p)
    q = [a.streak_percentiles[x] for x in (5.0, 50.0, 95.0, 99.0)]
    assert q == sorted(q)
    assert a.max_drawdown_cents.min() <= a.original_max_drawdown_cents <= a.max_drawdown_cents.max()
    assert a.longest_losing_streak.min() <= a.original_losing_streak <= a.longest_losing_streak.max()
    assert 0.0 < a.original_drawdown_rank <= 1.0
    # A permutation never changes the total: every run ends at the same net P&L.
    total = sum(t.net_pnl_cents for t in trades)
    assert (a.final_net_cents == total).all()


def test_permutations_only_produce_reachable_orders() -> None:
    trades = [trade(0, 8), trade(1, -4), trade(2, -6), trade(3, 2)]
    pnl = [t.net_pnl_cents for t in trades]
    reachable_dd = {max_drawdown([0, *itertools.accumulate(p)]) for p in itertools.permutations(pnl)}
    reachable_st = {longest_run(v < 0 for v in p) for p in itertools.permutations(pnl)}
    mc = monte_carlo(trades, runs=500, seed=1)
    assert set(mc.max_drawdown_cents.tolist()) == reachable_dd  # 500 draws of 24 orders: all seen
    assert set(mc.longest_losing_streak.tolist()) == reachable_st


def test_bootstrap_draws_with_replacement() -> None:
    trades = mixed(12)
    nets = [t.net_pnl_cents for t in trades]
    bs = monte_carlo(trades, runs=400, seed=5, method="bootstrap")
    assert bs.method == "bootstrap"
    assert ((bs.final_net_cents >= 12 * min(nets)) & (bs.final_net_cents <= 12 * max(nets))).all()
    assert len(set(bs.final_net_cents.tolist())) > 10  # unlike a permutation, the total varies
    assert np.array_equal(bs.max_drawdown_cents, monte_carlo(trades, 400, 5, "bootstrap").max_drawdown_cents)


def test_monte_carlo_edge_cases() -> None:
    empty = monte_carlo([], runs=10, seed=0)
    assert empty.max_drawdown_cents.tolist() == [0] * 10 and empty.original_max_drawdown_cents == 0
    one = monte_carlo([trade(0, -4)], runs=5, seed=0)
    assert one.max_drawdown_cents.tolist() == [one.original_max_drawdown_cents] * 5
    assert one.longest_losing_streak.tolist() == [1] * 5
    with pytest.raises(ValueError):
        monte_carlo([trade(0, 1)], runs=0)


def test_monte_carlo_chunks_do_not_change_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    import tradebot.backtest.stress as stress

    trades = mixed(40)
    monkeypatch.setattr(stress, "_CHUNK_CELLS", 100)  # 2 runs per block
    mc = monte_carlo(trades, runs=37, seed=9)
    assert mc.max_drawdown_cents.shape == (37,) and (mc.final_net_cents == sum(t.net_pnl_cents for t in trades)).all()
    assert (mc.max_drawdown_cents > 0).all()


def test_slippage_stress_exact_and_verdicts() -> None:
    trades = mixed()
    base = compute_stats(trades, START)
    contracts = sum(t.quantity * t.tick_value_cents for t in trades)
    rep = run_stress(trades, START, base=base, runs=200, seed=1,
                     limits=StressLimits(max_drawdown_cents=base.max_drawdown_cents, max_losing_streak=1))
    one, two = rep.slippage
    assert (one.ticks_per_side, two.ticks_per_side) == (1, 2)
    assert one.net_change_cents == -2 * 1 * contracts
    assert two.net_change_cents == -2 * 2 * contracts
    assert two.stats.net_pnl_cents == base.net_pnl_cents - 4 * contracts
    assert two.stats.trades == base.trades and two.stats.wins <= one.stats.wins <= base.wins
    v = {x.test: x for x in rep.verdicts}
    assert v["Max Drawdown"].passed  # exactly at the limit
    assert not v["Losing Streak"].passed
    assert v["Slippage 1 tick/side"].passed == (one.stats.net_pnl_cents > 0)
    assert not rep.passed
    assert rep.by_hour == base.by_hour and rep.by_weekday == base.by_weekday
    strict = run_stress(trades, START, runs=200, seed=1,
                        limits=StressLimits(max_drawdown_cents=base.max_drawdown_cents - 1, max_losing_streak=99,
                                            profitable_after_slippage_ticks=3, max_tier_demotions=0))
    sv = {x.test: x for x in strict.verdicts}
    assert not sv["Max Drawdown"].passed and sv["Losing Streak"].passed
    assert [s.ticks_per_side for s in strict.slippage] == [1, 2, 3]
    assert sv["Slippage 3 ticks/side"].passed == (strict.slippage[2].stats.net_pnl_cents > 0)
    assert sv["Tier Transitions"].passed
    p95 = float(np.percentile(strict.monte_carlo.max_drawdown_cents, 95))
    assert sv["Monte Carlo Drawdown p95"].passed == (p95 <= base.max_drawdown_cents - 1)


def test_stress_on_no_trades() -> None:
    rep = run_stress([], START, runs=50)
    assert all(s.net_change_cents == 0 for s in rep.slippage)
    assert rep.monte_carlo.drawdown_percentiles == {5.0: 0.0, 50.0: 0.0, 95.0: 0.0, 99.0: 0.0}
    # Slippage-profit verdict fails honestly when nothing was earned.
    assert [v.test for v in rep.verdicts if not v.passed] == ["Slippage 1 tick/side"]
