"""Backtest trade records and statistics, on hand-built trade lists whose answers are worked out here."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import statistics
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.backtest.stats import (
    compute_stats,
    default_tiers,
    stats_summary,
    trading_day_of,
)
from tradebot.core.calendar import CT, ET, from_ns, local_ns
from tradebot.core.config import ExecutionSettings
from tradebot.core.contracts import spec_for
from tradebot.core.values import CapitalTier
from tradebot.execution.trades import (
    TradeRecord,
    read_trades_csv,
    trade_hash,
    with_slippage,
    write_trades_csv,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MON, TUE, WED = dt.date(2024, 6, 3), dt.date(2024, 6, 4), dt.date(2024, 6, 5)
START = 250_000


def at(day: dt.date, hhmm: str, tz: dt.tzinfo = ET) -> int:
    h, m = map(int, hhmm.split(":"))
    return local_ns(day, dt.time(h, m), tz)


def mk(tid: str, day: dt.date, t_in: str, t_out: str, side: int, qty: int, entry: int, exit_: int, *,
       symbol: str = "MES", commission: int = 100, pattern: str = "P", regime: str = "R",
       reason: str = "target") -> TradeRecord:
    return TradeRecord.make(trade_id=tid, symbol=symbol, side=side, quantity=qty, entry_ns=at(day, t_in),
                            exit_ns=at(day, t_out), entry_price=entry, exit_price=exit_, tick_value_cents=
                            spec_for(symbol).tick_value_cents, commission_cents=commission * qty, pattern=pattern,
                            regime=regime, exit_reason=reason)


def five_trades() -> list[TradeRecord]:
    """MES (tick $1.25), $1.00 round-trip commission per contract. Nets: +900, -1200, -600, -600, +2400."""
    return [
        mk("t1", MON, "09:35", "09:50", +1, 1, 21000, 21008, pattern="A"),             # +8 ticks: 1000 - 100
        mk("t2", MON, "10:05", "10:20", -1, 2, 21010, 21014, pattern="B", reason="stop"),  # -4x2: -1000 - 200
        mk("t3", TUE, "09:40", "09:55", +1, 1, 21020, 21016, pattern="A", reason="stop"),  # -500 - 100
        mk("t4", TUE, "11:00", "11:10", +1, 1, 21030, 21026, pattern="B", reason="stop"),  # -500 - 100
        mk("t5", WED, "14:00", "14:30", -1, 1, 21050, 21030, pattern="A"),             # +20 ticks: 2500 - 100
    ]


# ---------------------------------------------------------------------------------------------------
# Trade record
# ---------------------------------------------------------------------------------------------------

def test_make_derives_exact_pnl_and_refuses_inconsistent_records() -> None:
    t = five_trades()[1]
    assert (t.gross_pnl_cents, t.commission_cents, t.net_pnl_cents) == (-1000, 200, -1200)
    with pytest.raises(ValueError, match="gross P&L"):
        TradeRecord("x", "MES", 1, 1, 0, 1, 100, 104, 125, 499, 0, 499)
    with pytest.raises(ValueError, match="net P&L"):
        TradeRecord("x", "MES", 1, 1, 0, 1, 100, 104, 125, 500, 10, 500)
    for bad in ({"side": 0}, {"symbol": "ESZ4"}, {"quantity": 0}, {"exit_ns": -1}):
        kw = {"trade_id": "x", "symbol": "MES", "side": 1, "quantity": 1, "entry_ns": 0, "exit_ns": 1,
              "entry_price": 100, "exit_price": 101, "tick_value_cents": 125} | bad
        with pytest.raises(ValueError, match="trade 'x'"):
            TradeRecord.make(**kw)  # type: ignore[arg-type]


def test_slippage_reprices_exactly_per_side() -> None:
    long1, short2 = five_trades()[0], five_trades()[1]
    s = with_slippage(long1, 2)
    assert (s.entry_price, s.exit_price) == (21002, 21006)
    assert s.gross_pnl_cents == 4 * 125 and s.net_pnl_cents == 400
    assert s.net_pnl_cents - long1.net_pnl_cents == -2 * 2 * 1 * 125
    s = with_slippage(short2, 1)  # short sells 1 lower and buys back 1 higher
    assert (s.entry_price, s.exit_price) == (21009, 21015)
    assert s.gross_pnl_cents == -6 * 2 * 125
    assert s.net_pnl_cents - short2.net_pnl_cents == -2 * 1 * 2 * 125
    assert with_slippage(long1, 0) is long1
    es = TradeRecord.make(trade_id="e", symbol="ES", side=1, quantity=3, entry_ns=0, exit_ns=1, entry_price=100,
                          exit_price=100, tick_value_cents=1250, commission_cents=0)
    assert with_slippage(es, 1).net_pnl_cents == -2 * 3 * 1250


def test_trade_hash_is_canonical_and_independent() -> None:
    t = mk("t1", MON, "09:35", "09:50", +1, 1, 21000, 21008)
    line = f"MES|1|1|{t.entry_ns}|{t.exit_ns}|21000|21008\n"
    assert trade_hash([t]) == hashlib.sha256(("tradebot-trades-v1\n" + line).encode()).hexdigest()
    trades = five_trades()
    h = trade_hash(trades)
    assert trade_hash(reversed(trades)) == h  # list order does not matter
    relabelled = [TradeRecord.make(trade_id="other" + x.trade_id, symbol=x.symbol, side=x.side, quantity=x.quantity,
                                   entry_ns=x.entry_ns, exit_ns=x.exit_ns, entry_price=x.entry_price,
                                   exit_price=x.exit_price, tick_value_cents=x.tick_value_cents,
                                   commission_cents=0, pattern="Z") for x in trades]
    assert trade_hash(relabelled) == h  # ids, labels and fees are not what defines a trade
    assert trade_hash([*trades[:4], with_slippage(trades[4], 1)]) != h
    assert trade_hash(trades[:4]) != h
    assert trade_hash([]) != h


def test_csv_round_trip_counts_malformed_rows(tmp_path: Path) -> None:
    trades = five_trades()
    path = write_trades_csv(trades, tmp_path / "t.csv")
    text = path.read_text().splitlines()
    bad_gross = text[1].split(",")
    bad_gross[9] = "12345"  # gross_pnl_cents inconsistent with the prices
    text += [",".join(bad_gross), "x,MES,notanint", "y,ZZ,1,1,0,1,1,2,125,125,0,125,,,,,"]
    path.write_text("\n".join(text) + "\n")
    counts: Counter[str] = Counter()
    back = read_trades_csv(path, counts)
    assert back == trades
    assert counts == Counter({"trade_rows": 5, "trade_rows_rejected": 3})


# ---------------------------------------------------------------------------------------------------
# Statistics on the five hand-built trades
# ---------------------------------------------------------------------------------------------------

def test_five_trades_over_three_days() -> None:
    s = compute_stats(list(reversed(five_trades())), START)  # any input order
    assert s.net_pnl_cents == 900 - 1200 - 600 - 600 + 2400 == 900
    assert (s.gross_profit_cents, s.gross_loss_cents, s.commission_cents) == (3300, -2400, 600)
    assert s.profit_factor == pytest.approx(3300 / 2400)
    assert (s.trades, s.wins, s.losses, s.scratches) == (5, 2, 3, 0)
    assert s.win_rate == pytest.approx(0.4)
    assert s.expectancy_cents == pytest.approx(180.0)
    assert s.avg_win_cents == pytest.approx(1650.0) and s.avg_loss_cents == pytest.approx(-800.0)
    # Days: Mon -300, Tue -1200, Wed +2400.
    assert [(r.day, r.net_cents, r.trades) for r in s.daily] == [(MON, -300, 2), (TUE, -1200, 2), (WED, 2400, 1)]
    assert (s.days, s.winning_days, s.losing_days) == (3, 1, 2)
    assert s.winning_day_rate == pytest.approx(1 / 3)
    assert s.avg_daily_pnl_cents == pytest.approx(300.0)
    assert (s.best_day_cents, s.worst_day_cents) == (2400, -1200)
    # Equity 250000, 250900, 249700, 249100, 248500, 250900: peak 250900 -> trough 248500.
    assert s.equity_cents == (250_000, 250_900, 249_700, 249_100, 248_500, 250_900)
    assert s.max_drawdown_cents == 2400
    assert s.max_drawdown_pct == pytest.approx(2400 / 250_900)
    # Daily closes 250000, 249700, 248500, 250900.
    assert s.max_daily_drawdown_cents == 1500
    assert (s.max_consecutive_losses, s.max_consecutive_wins) == (3, 1)
    assert s.final_balance_cents == 250_900
    # Returns relative to the balance at the start of each day.
    r = [-300 / 250_000, -1200 / 249_700, 2400 / 248_500]
    assert [d.ret for d in s.daily] == pytest.approx(r)
    assert s.sharpe == pytest.approx(statistics.mean(r) / statistics.stdev(r) * math.sqrt(252))
    downside = math.sqrt((r[0] ** 2 + r[1] ** 2 + 0.0) / 3)
    assert s.sortino == pytest.approx(statistics.mean(r) / downside * math.sqrt(252))
    # Written out: mean 0.00121739, sample stdev 0.00752880, 0.161697 * sqrt(252) = 2.5669;
    # downside deviation sqrt((0.0012^2 + 0.00480577^2) / 3) = 0.00285983, 0.425688 * sqrt(252) = 6.7576.
    assert s.sharpe == pytest.approx(2.5669, abs=1e-4)
    assert s.sortino == pytest.approx(6.7576, abs=1e-4)


def test_breakdowns_by_month_pattern_hour_weekday() -> None:
    s = compute_stats(five_trades(), START)
    (june,) = s.monthly
    assert (june.key, june.trades, june.net_cents, june.days, june.winning_days) == ("2024-06", 5, 900, 3, 1)
    assert june.avg_per_day_cents == pytest.approx(300.0)
    a, b = s.by_pattern  # sorted by net, best first
    assert (a.key, a.trades, a.wins, a.net_cents, a.gross_loss_cents) == ("A", 3, 2, 2700, -600)
    assert a.profit_factor == pytest.approx(3300 / 600)
    assert (a.days, a.winning_days, a.avg_per_day_cents) == (3, 2, pytest.approx(900.0))
    assert (b.key, b.trades, b.wins, b.net_cents, b.profit_factor, b.win_rate) == ("B", 2, 0, -1800, 0.0, 0.0)
    assert b.days == 2
    assert [(g.key, g.trades, g.net_cents) for g in s.by_hour] == [
        ("09:00", 2, 300), ("10:00", 1, -1200), ("11:00", 1, -600), ("14:00", 1, 2400)]
    assert [(g.key, g.net_cents, g.days) for g in s.by_weekday] == [("Mon", -300, 1), ("Tue", -1200, 1),
                                                                    ("Wed", 2400, 1)]
    assert {g.key: g.trades for g in s.by_exit_reason} == {"stop": 3, "target": 2}
    assert [g.key for g in s.by_regime] == ["R"]


def test_trading_day_is_the_exchange_date_of_the_exit() -> None:
    # Sunday 18:30 ET is Monday's session; Thursday 17:30 CT (after the 16:00 CT close) is Friday's.
    sun = mk("s", dt.date(2024, 6, 2), "18:30", "19:00", 1, 1, 100, 104)
    thu = TradeRecord.make(trade_id="t", symbol="ES", side=-1, quantity=1, entry_ns=at(dt.date(2024, 6, 6), "15:50",
                           CT), exit_ns=at(dt.date(2024, 6, 6), "17:30", CT), entry_price=100, exit_price=99,
                           tick_value_cents=1250)
    s = compute_stats([sun, thu], START)
    assert [r.day for r in s.daily] == [MON, dt.date(2024, 6, 7)]
    assert [g.key for g in s.by_weekday] == ["Mon", "Fri"]
    assert [g.key for g in s.by_hour] == ["16:00", "18:00"]  # entry hours in ET: 15:50 CT is 16:50 ET


def test_session_days_add_flat_days() -> None:
    thu = dt.date(2024, 6, 6)
    s = compute_stats(five_trades(), START, session_days=[MON, TUE, WED, thu])
    assert s.days == 4 and s.daily[-1].net_cents == 0 and s.daily[-1].trades == 0
    assert s.avg_daily_pnl_cents == pytest.approx(225.0)
    assert s.winning_day_rate == pytest.approx(0.25)
    r = [-300 / 250_000, -1200 / 249_700, 2400 / 248_500, 0.0]
    assert s.sharpe == pytest.approx(statistics.mean(r) / statistics.stdev(r) * math.sqrt(252))
    assert [(g.key, g.days) for g in s.by_weekday] == [("Mon", 1), ("Tue", 1), ("Wed", 1), ("Thu", 1)]


# ---------------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------------

def test_no_trades() -> None:
    s = compute_stats([], START)
    assert (s.trades, s.net_pnl_cents, s.days, s.max_drawdown_cents, s.max_consecutive_losses) == (0, 0, 0, 0, 0)
    assert s.profit_factor is None and s.win_rate is None and s.expectancy_cents is None
    assert s.sharpe is None and s.sortino is None and s.avg_daily_pnl_cents is None
    assert s.equity_cents == (START,) and s.equity_ns == () and s.tier_changes == ()
    assert s.monthly == () and s.by_pattern == ()
    flat = compute_stats([], START, session_days=[MON, TUE])
    assert flat.days == 2 and flat.winning_days == 0 and flat.sharpe is None and flat.sortino is None
    assert stats_summary(s)["profit_factor"] is None


def test_all_winners() -> None:
    t = [mk("a", MON, "09:35", "09:40", 1, 1, 100, 104), mk("b", TUE, "09:35", "09:40", -1, 1, 100, 98)]
    s = compute_stats(t, START)
    assert s.profit_factor == math.inf and stats_summary(s)["profit_factor"] == "inf"
    text = json.dumps(stats_summary(s), allow_nan=False)  # strict JSON: no Infinity/NaN tokens
    assert json.loads(text)["by_pattern"][0]["profit_factor"] == "inf"
    assert s.win_rate == 1.0 and s.max_drawdown_cents == 0 and s.max_consecutive_losses == 0
    assert s.max_consecutive_wins == 2 and s.sortino == math.inf
    r = [400 / START, 150 / (START + 400)]
    assert s.sharpe == pytest.approx(statistics.mean(r) / statistics.stdev(r) * math.sqrt(252))


def test_all_losers() -> None:
    t = [mk(f"l{i}", d, "09:35", "09:40", 1, 1, 100, 98) for i, d in enumerate([MON, MON, TUE])]
    s = compute_stats(t, START)
    assert s.profit_factor == 0.0 and s.win_rate == 0.0 and s.winning_days == 0
    assert s.max_consecutive_losses == 3 and s.max_drawdown_cents == 3 * 350
    assert s.max_daily_drawdown_cents == 3 * 350
    r = [-700 / START, -350 / (START - 700)]
    assert s.sortino == pytest.approx(statistics.mean(r) / math.sqrt((r[0] ** 2 + r[1] ** 2) / 2) * math.sqrt(252))


def test_one_day_and_scratches() -> None:
    t = [mk("a", MON, "09:35", "09:40", 1, 1, 100, 98), mk("s", MON, "09:45", "09:50", 1, 1, 100, 100, commission=0),
         mk("b", MON, "10:35", "10:40", 1, 1, 100, 98)]
    s = compute_stats(t, START)
    assert s.days == 1 and s.sharpe is None and s.sortino is None
    assert (s.wins, s.losses, s.scratches) == (0, 2, 1)
    assert s.max_consecutive_losses == 1  # the scratch ends the run
    only_scratch = compute_stats([t[1]], START)
    assert only_scratch.profit_factor is None and only_scratch.win_rate == 0.0


def test_blown_account_has_no_ratios() -> None:
    t = [mk("a", MON, "09:35", "09:40", 1, 1, 100, 98), mk("b", TUE, "09:35", "09:40", 1, 1, 100, 104)]
    s = compute_stats(t, 300)  # $3 account, the first day takes it below zero
    assert s.daily[1].start_balance_cents < 0 and s.daily[1].ret is None
    assert s.sharpe is None and s.sortino is None


# ---------------------------------------------------------------------------------------------------
# Tiers
# ---------------------------------------------------------------------------------------------------

def es(tid: str, day: dt.date, ticks: int) -> TradeRecord:
    return TradeRecord.make(trade_id=tid, symbol="ES", side=1, quantity=1, entry_ns=at(day, "10:00"),
                            exit_ns=at(day, "10:30"), entry_price=20000, exit_price=20000 + ticks,
                            tick_value_cents=1250, commission_cents=0)


def test_default_tiers_are_the_execution_default() -> None:
    assert default_tiers() == ExecutionSettings().tiers
    assert [t.min_balance_cents for t in default_tiers()] == [0, 350_000, 500_000, 750_000, 1_000_000]
    assert [t.root for t in default_tiers()] == ["MES", "ES", "ES", "ES", "ES"]
    assert [t.number for t in default_tiers()] == [1, 2, 3, 4, 5]


def test_tier_progression_crosses_on_the_right_day() -> None:
    days = [dt.date(2024, 6, d) for d in (3, 4, 5, 6, 7, 10)]
    trades = [es("d1", days[0], 48), es("d2", days[1], 32),   # +60000, +40000 -> exactly 350000 at Tue's close
              es("d3", days[2], 120),                         # +150000 -> 500000 at Wed's close
              es("d4", days[3], -8),                          # -10000 -> 490000: demoted at Thu's close
              es("d5", days[4], 208)]                         # +260000 -> 750000 at the run's last trading close
    s = compute_stats(trades, START, session_days=days[:5])
    assert [r.tier for r in s.daily] == [1, 1, 2, 3, 2]
    got = [(c.tier, c.direction, c.day, c.day_number, c.crossed_on, c.balance_cents) for c in s.tier_changes]
    assert got == [
        (1, "start", days[0], 1, None, START),
        (2, "promoted", days[2], 3, days[1], 350_000),
        (3, "promoted", days[3], 4, days[2], 500_000),
        (2, "demoted", days[4], 5, days[3], 490_000),
        (4, "promoted", None, 6, days[4], 750_000),
    ]
    assert s.first_reached(2) == s.tier_changes[1] and s.first_reached(5) is None
    # One cent short of a threshold stays put.
    below = compute_stats([es("x", days[0], 79), TradeRecord.make(
        trade_id="y", symbol="MES", side=1, quantity=1, entry_ns=at(days[0], "11:00"), exit_ns=at(days[0], "11:01"),
        entry_price=0, exit_price=10, tick_value_cents=125, commission_cents=1)], START, session_days=days[:2])
    assert below.final_balance_cents == 349_999 and [r.tier for r in below.daily] == [1, 1]


def test_tiers_the_trades_used_and_tiers_off() -> None:
    """A backtest reports the tier each day traded in (from its journal), not one recomputed from a balance path
    the trades never had (independent days all trade the starting tier); tiers off: tier 0, no changes."""
    days = [dt.date(2024, 6, d) for d in (3, 4, 5, 6, 7)]
    trades = [es("d1", days[0], 48), es("d2", days[1], 32), es("d3", days[2], 120), es("d4", days[3], -8)]
    used = {days[0]: 1, days[1]: 1, days[2]: 1, days[3]: 1, days[4]: 1}  # every day from the starting balance
    s = compute_stats(trades, START, session_days=days, day_tiers=used)
    assert [r.tier for r in s.daily] == [1, 1, 1, 1, 1]
    assert [(c.tier, c.direction) for c in s.tier_changes] == [(1, "start")]
    chained = {days[0]: 1, days[1]: 1, days[2]: 2, days[4]: 3}  # day 4 missing: keeps the previous tier
    c = compute_stats(trades, START, session_days=days, day_tiers=chained)
    assert [r.tier for r in c.daily] == [1, 1, 2, 2, 3]
    assert [(x.tier, x.direction, x.day, x.day_number, x.crossed_on) for x in c.tier_changes] == [
        (1, "start", days[0], 1, None), (2, "promoted", days[2], 3, days[1]), (3, "promoted", days[4], 5, days[3])]
    off = compute_stats(trades, START, session_days=days, tiers=())
    assert [r.tier for r in off.daily] == [0] * 5 and off.tier_changes == () and off.tiers == ()
    assert off.net_pnl_cents == s.net_pnl_cents


def test_custom_tiers_and_bad_tiers() -> None:
    tiers = [CapitalTier(1, "small", 0, "MES", 1), CapitalTier(2, "big", 260_000, "ES", 1)]
    s = compute_stats([es("a", MON, 8)], START, session_days=[MON, TUE], tiers=tiers)
    assert [(c.name, c.day) for c in s.tier_changes] == [("small", MON), ("big", TUE)]
    with pytest.raises(ValueError, match="ascending"):
        compute_stats([], START, tiers=list(reversed(tiers)))
    with pytest.raises(ValueError, match="known root"):
        compute_stats([], START, tiers=[CapitalTier(1, "x", 0, "ZZ", 1)])


# ---------------------------------------------------------------------------------------------------
# Real shape: trades at real ES 5-minute bar prices over a contract quarter
# ---------------------------------------------------------------------------------------------------

def real_es_trades() -> list[TradeRecord]:
    """Each session: long or short (by the prior bar) at the 08:30 CT bar open, out at the 09:25 bar close,
    and the same from the 17:00 CT evening open to the 17:55 close (a trade on the next trading date)."""
    spec = spec_for("ES")
    bars: dict[tuple[dt.date, dt.time], tuple[int, int]] = {}
    prev_close: dict[tuple[dt.date, dt.time], int] = {}
    last = None
    for line in (DATA / "sierra" / "ESZ24_5m_bars.txt").read_text().splitlines()[1:]:
        f = [x.strip() for x in line.split(",")]
        d = dt.date(*map(int, f[0].split("/")))
        t = dt.time.fromisoformat(f[1])
        o, c = spec.to_ticks(Decimal(f[2])), spec.to_ticks(Decimal(f[5]))
        bars[(d, t)] = (o, c)
        if last is not None:
            prev_close[(d, t)] = last
        last = c
    out: list[TradeRecord] = []
    for (d, t), (o, _c) in sorted(bars.items()):
        if t not in (dt.time(8, 30), dt.time(17, 0)):
            continue
        end = (d, dt.time(9, 25) if t == dt.time(8, 30) else dt.time(17, 55))
        if end not in bars or (d, t) not in prev_close:
            continue
        side = 1 if o >= prev_close[(d, t)] else -1
        out.append(TradeRecord.make(
            trade_id=f"{d}-{t}", symbol="ES", side=side, quantity=1, entry_ns=local_ns(d, t, CT),
            exit_ns=local_ns(end[0], end[1], CT) + 300 * 10**9 - 1, entry_price=o, exit_price=bars[end][1],
            tick_value_cents=spec.tick_value_cents, commission_cents=450,
            pattern="RTH_OPEN" if t == dt.time(8, 30) else "EVENING", regime="REAL", exit_reason="time"))
    return out


def test_real_es_quarter_consistency() -> None:
    trades = real_es_trades()
    assert len(trades) > 100
    s = compute_stats(trades, 2_500_000)
    assert sum(t.net_pnl_cents for t in trades) == s.net_pnl_cents
    assert sum(r.net_cents for r in s.daily) == s.net_pnl_cents == sum(g.net_cents for g in s.monthly)
    assert sum(g.trades for g in s.by_pattern) == sum(g.trades for g in s.by_hour) == len(trades)
    assert s.gross_profit_cents + s.gross_loss_cents == s.net_pnl_cents
    assert [g.key for g in s.monthly] == ["2024-09", "2024-10", "2024-11", "2024-12"]
    assert {g.key for g in s.by_weekday} <= {"Mon", "Tue", "Wed", "Thu", "Fri"}
    # Every evening trade counts towards the next weekday's session, never its calendar date.
    evening = [t for t in trades if t.pattern == "EVENING"]
    assert len(evening) > 40
    for t in evening:
        local = from_ns(t.exit_ns, CT).date()
        nxt = local + dt.timedelta(days=3 if local.weekday() == 4 else 1)
        assert trading_day_of(t) == nxt and nxt.weekday() < 5
    sunday = [t for t in evening if from_ns(t.entry_ns, CT).weekday() == 6]
    assert sunday and all(trading_day_of(t).weekday() == 0 for t in sunday)
    assert s.max_drawdown_cents >= s.max_daily_drawdown_cents >= 0
    assert s.max_drawdown_cents == max(max(s.equity_cents[:i + 1]) - v for i, v in enumerate(s.equity_cents))
