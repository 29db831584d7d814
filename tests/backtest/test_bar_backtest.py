"""The strategy on bars: bars vs ticks on the same minute, the bars-only fill rules, walk-forward without leaks,
the deflated Sharpe ratio's known answer, and the command on a subset of the real quarters."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebot.analyze import run_file
from tradebot.backtest.barcli import _walk_forward
from tradebot.backtest.barsim import ComboResult, SegmentResult, _Sim, apply_tiers, footprint_bars
from tradebot.backtest.overrides import apply_overrides
from tradebot.backtest.walkforward import deflated_sharpe, expected_max_sharpe, moments, select, windows
from tradebot.core.calendar import CT, NS, calendar_for, local_ns
from tradebot.core.config import Settings
from tradebot.core.contracts import spec_for
from tradebot.core.orders import EntryType, OrderIntent
from tradebot.core.types import Side
from tradebot.execution.risk import fee_table
from tradebot.execution.trades import TradeRecord
from tradebot.feeds.bars import BarColumns, BarMapping, read_bars
from tradebot.orderflow.detectors.flow import detect_red_burst, detect_volume_imbalance
from tradebot.orderflow.footprint import make_bar

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sierra"
TICKS = DATA / "ES_2022-01-24_tick_dom40.txt"
FIVE = DATA / "5m"
ES = spec_for("ES")


@pytest.mark.skipif(not TICKS.exists(), reason="shared Sierra tick data absent")
def test_sierra_ticks_aggregated_to_bars_match_the_tick_engine(tmp_path):
    # the tick engine: validated ticks -> 1-minute footprint bars
    s = apply_overrides(Settings(), {"footprint.bar_seconds": "60"})
    res = asyncio.run(run_file([TICKS], s, "ES"))
    assert res.chosen is not None
    engine = [bc.bar for bc in res.chosen.bars]
    # an independent aggregation of the same ticks into a Sierra-style bar export, read by the bar feed
    d = pd.read_csv(TICKS, sep=";", usecols=["Date", "Time", "Price", "Volume", "TradeType"])
    d["minute"] = d["Time"].str[:5]
    rows = []
    for minute, g in d.groupby("minute", sort=True):
        rows.append(f"{g['Date'].iloc[0].replace('-', '/')}, {minute}:00, {g['Price'].iloc[0]:.2f}, "
                    f"{g['Price'].max():.2f}, {g['Price'].min():.2f}, {g['Price'].iloc[-1]:.2f}, {g['Volume'].sum()}, "
                    f"{len(g)}, {g.loc[g.TradeType == 1, 'Volume'].sum()}, {g.loc[g.TradeType == 2, 'Volume'].sum()}")
    f = tmp_path / "ESH22_1m_from_ticks.txt"
    f.write_text("Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume\n"
                 + "\n".join(rows) + "\n")
    cols = read_bars(f, mapping=dataclasses.replace(BarMapping(), bar_seconds=60))
    bars = footprint_bars(cols, calendar_for("equity"), 60)
    assert len(bars) == len(engine) == 2
    for a, b in zip(bars, engine, strict=True):
        assert (a.start_ns, a.end_ns) == (b.start_ns, b.end_ns)
        assert (a.open, a.high, a.low, a.close) == (b.open, b.high, b.low, b.close)
        assert (a.volume, a.ask_volume, a.bid_volume, a.delta, a.trades) == (
            b.volume, b.ask_volume, b.bid_volume, b.delta, b.trades)
        assert a.cum_delta == b.cum_delta  # session CVD from the first print of this file on both sides
    assert bars[0].volume == 2_819 and bars[0].delta == 7


def _series(rows: list[tuple[int, int, int, int]], day: dt.date = dt.date(2022, 3, 8),
            start: dt.time = dt.time(9, 0)) -> BarColumns:
    n = len(rows)
    t0 = local_ns(day, start, CT)
    st = np.array([t0 + i * 300 * NS for i in range(n)], np.int64)
    o, h, lo, c = (np.array([r[k] for r in rows], np.int64) for k in range(4))
    v = np.full(n, 1000, np.int64)
    return BarColumns("ES", np.full(n, "ESH22", dtype=object), st, st + 300 * NS,
                      np.full(n, day.toordinal(), np.int32), o, h, lo, c, v, np.full(n, 500, np.int64),
                      np.full(n, 400, np.int64), np.full(n, 500, np.int64), rows=n)


def _intent(side: Side, stop: int, target: int, ts: int) -> OrderIntent:
    return OrderIntent(signal_id=f"s{ts}", symbol="ES", side=side, quantity=1, entry_type=EntryType.MARKET,
                       entry_price=None, stop_price=stop, target_price=target, ts_ns=ts, confidence=0.7,
                       pattern="VOLUME_IMBALANCE", regime="TRENDING_UP", reasons=())


def _sim(rows: list[tuple[int, int, int, int]], **ex: str) -> tuple[_Sim, list]:
    s = apply_overrides(Settings(), {f"execution.{k}": v for k, v in ex.items()})
    cal = calendar_for("equity")
    bars = footprint_bars(_series(rows), cal)
    return _Sim(bars, ES, s, cal), bars


def test_bars_only_fills_next_open_stop_first_and_costs():
    # signal at bar 0's close; entry at bar 1's open (100); bar 2 touches both stop 96 and target 108 -> stop
    sim, bars = _sim([(100, 101, 99, 100), (100, 103, 99, 102), (102, 109, 95, 104), (104, 110, 103, 109)])
    sim.on_intent(_intent(Side.BUY, 96, 108, bars[0].end_ns), 0, "TRENDING_UP")
    (t,) = sim.trades
    assert (t.entry_price, t.exit_price, t.exit_reason) == (100, 96 - 1, "stop")  # 1 tick stop slippage
    assert t.entry_ns == bars[1].start_ns and t.exit_ns < bars[2].end_ns
    fee = 2 * fee_table(Settings())["ES"]  # commission + exchange and NFA fees, per side
    assert fee > 100
    assert t.commission_cents == fee and t.net_pnl_cents == -5 * 1250 - fee
    assert not sim.has_position(2) and sim.has_position(1)
    # a target needs the bar to trade through it
    sim, bars = _sim([(100, 101, 99, 100), (100, 108, 99, 107), (107, 109, 104, 108)])
    sim.on_intent(_intent(Side.BUY, 96, 108, bars[0].end_ns), 0, "TRENDING_UP")
    assert (sim.trades[0].exit_price, sim.trades[0].exit_reason, sim.trades[0].exit_ns) == (
        108, "target", bars[2].end_ns - 1)
    # a gap through the stop fills at the open, not at the stop (short here)
    sim, bars = _sim([(100, 101, 99, 100), (100, 101, 99, 100), (106, 107, 105, 106)], stop_slippage_ticks="0")
    sim.on_intent(_intent(Side.SELL, 104, 92, bars[0].end_ns), 0, "TRENDING_DOWN")
    assert (sim.trades[0].exit_price, sim.trades[0].exit_reason) == (106, "stop")
    # no next bar in the session: cancelled and counted
    sim, bars = _sim([(100, 101, 99, 100)])
    sim.on_intent(_intent(Side.BUY, 96, 108, bars[0].end_ns), 0, "TRENDING_UP")
    assert not sim.trades and sim.stats["cancelled:no_next_bar_in_session"] == 1


def test_auto_flatten_closes_at_the_last_bar_before_it():
    # 14:40 CT start: bars 14:40, 14:45, 14:50 (ends 14:55 = 15:55 ET), 14:55 (after the flatten time)
    rows = [(100, 101, 99, 100), (100, 102, 99, 101), (101, 103, 100, 102), (102, 104, 101, 103)]
    s = Settings()
    cal = calendar_for("equity")
    bars = footprint_bars(_series(rows, start=dt.time(14, 40)), cal)
    sim = _Sim(bars, ES, s, cal)
    sim.on_intent(_intent(Side.BUY, 90, 120, bars[0].end_ns), 0, "TRENDING_UP")
    (t,) = sim.trades
    assert (t.exit_reason, t.exit_price, t.exit_ns) == ("auto_flatten", 102, bars[2].end_ns - 1)


def test_tiers_walk_the_account_from_2500_and_daily_limits_stop_the_day():
    def tr(i: int, day: int, ticks: int) -> TradeRecord:
        t0 = local_ns(dt.date(2022, 3, day), dt.time(9, 0), CT) + i * 600 * NS
        return TradeRecord.make(trade_id=f"t{i}", symbol="ES", side=1, quantity=1, entry_ns=t0, exit_ns=t0 + NS,
                                entry_price=100, exit_price=100 + ticks, tick_value_cents=1250)
    # day 1 at $2,500: tier 1 trades MES (the signal's 1 contract, within the tier's 2), priced in MES ticks
    out = apply_tiers([tr(0, 8, 40), tr(1, 8, 40)], Settings())
    assert [(t.symbol, t.quantity, t.tick_value_cents) for t in out.trades] == [("MES", 1, 125)] * 2
    assert out.trades[0].gross_pnl_cents == 40 * 125
    # +$1,250 on day 1 crosses $3,500: day 2 trades ES; its first loss passes the -$300 limit, the rest is dropped
    many = [tr(0, 8, 1000), tr(1, 9, -30), tr(2, 9, -30), tr(3, 9, 40)]
    out = apply_tiers(many, Settings())
    assert [t.symbol for t in out.trades] == ["MES", "ES"]
    assert out.dropped["after_daily_limit"] == 2


def test_flow_detectors_on_bar_totals():
    s = Settings().patterns
    up = make_bar("ES", {100: (100, 700)}, open=100, close=100)  # ask 700 of 800: +0.75
    (ev,) = detect_volume_imbalance(up, [], s, ES)
    assert ev.direction.value == "LONG" and math.isclose(ev.strength, 0.5 + 0.5 * 0.15 / 0.4)
    thin = make_bar("ES", {100: (1, 9)}, open=100, close=100)  # imbalanced but under the volume floor
    assert detect_volume_imbalance(thin, [], s, ES) == []
    quiet = make_bar("ES", {100: (50, 50)}, open=100, close=100)
    burst = make_bar("ES", {100: (200, 100)}, open=100, close=100)  # 300 = 3.0 x 100: not above
    assert detect_red_burst(burst, [quiet], s, ES) == []
    burst = make_bar("ES", {100: (201, 100)}, open=100, close=100)
    (ev,) = detect_red_burst(burst, [quiet], s, ES)
    assert ev.direction.value == "SHORT"
    buyers = make_bar("ES", {100: (100, 201)}, open=100, close=100)
    assert detect_red_burst(buyers, [quiet], s, ES) == []  # no sell majority


def test_deflated_sharpe_known_answer():
    # Bailey & Lopez de Prado (2014), the paper's example: annual SR 2.5 over 5 years of daily returns (T=1250),
    # skew -3, kurtosis 10, N = 100 trials with annualised variance 0.5 -> SR0 ~ 1.79 annualised, DSR ~ 0.9004
    sr = 2.5 / math.sqrt(250)
    var = 0.5 / 250
    assert math.isclose(expected_max_sharpe(100, var) * math.sqrt(250), 1.7894, abs_tol=1e-4)
    assert math.isclose(deflated_sharpe(sr, 1250, -3.0, 10.0, 100, var), 0.9004, abs_tol=1e-4)
    # one trial: SR0 = 0 and the DSR is the probabilistic Sharpe ratio against zero (normal returns)
    z = sr * math.sqrt(1249) / math.sqrt(1 + 0.5 * sr * sr)
    assert math.isclose(deflated_sharpe(sr, 1250, 0.0, 3.0, 1, 0.0), 0.5 * (1 + math.erf(z / math.sqrt(2))))
    r = [0.01, -0.02, 0.03, 0.0, 0.01]
    srm, skew, kurt = moments(r)
    assert srm is not None and math.isclose(srm, 0.006 / float(np.std(r, ddof=1)))
    x = np.array(r) - 0.006
    assert math.isclose(skew, float(np.mean(x ** 3)) / float(np.var(r)) ** 1.5)
    assert math.isclose(kurt, float(np.mean(x ** 4)) / float(np.var(r)) ** 2)


def _trade(q: int, i: int, net_ticks: int) -> dict:
    t0 = local_ns(dt.date(2021, 1, 4) + dt.timedelta(days=91 * q + i), dt.time(9, 0), CT)
    return TradeRecord.make(trade_id=f"q{q}c{i}", symbol="ES", side=1, quantity=1, entry_ns=t0, exit_ns=t0 + NS,
                            entry_price=1000, exit_price=1000 + net_ticks, tick_value_cents=1250).to_dict()


def _segment(q: int, per_combo: list[int]) -> SegmentResult:
    first = local_ns(dt.date(2021, 1, 4) + dt.timedelta(days=91 * q), dt.time(9, 0), CT)
    days = [dt.date(2021, 1, 4) + dt.timedelta(days=91 * q + k) for k in range(5)]
    return SegmentResult(f"Q{q}", 100, days, first, first + 1, [ComboResult([_trade(q, i, v)]) for i, v in
                                                                  enumerate(per_combo)], Counter(), 0.0)


def test_walk_forward_never_uses_the_test_quarter_to_choose():
    combos = [{"k": "a"}, {"k": "b"}]
    # combo a wins every quarter by a little; in quarters 2 and 3 combo b would be hugely better
    segs = [_segment(0, [10, 0]), _segment(1, [10, 0]), _segment(2, [10, 10_000]), _segment(3, [10, -10_000])]
    _, _, wf = _walk_forward(segs, combos, Settings(), 2)
    chosen = [(w["test"], w["params"]["k"]) for w in wf["windows"]]
    # window 0 trains on Q0, Q1 (a) and tests Q2: a leak would pick b for its +10,000 ticks
    # window 1 trains on Q1, Q2 (b is better there) and tests Q3
    assert chosen == [("Q2", "a"), ("Q3", "b")]
    assert wf["n_trials"] == 4 and sum(t["chosen"] for t in wf["trials"]) == 2
    # every window's training quarters start before its test quarter
    for w in windows([s.name for s in segs], 2, {s.name: s.first_ns for s in segs}):
        assert w.test not in w.train
        assert max(segs[int(q[1])].first_ns for q in w.train) < segs[int(w.test[1])].first_ns
    # quarters handed over out of order are put in time order first: training always precedes testing
    ws = windows(["Q2", "Q0", "Q1"], 2, {"Q0": 0, "Q1": 1, "Q2": 2})
    assert [(w.train, w.test) for w in ws] == [(("Q0", "Q1"), "Q2")]
    # the selector only sees what it is handed
    best, scores = select({"Q0": [[1], [2]]}, 2, lambda ts: float(sum(ts)))  # type: ignore[arg-type, misc]
    assert best == 1 and scores == [1.0, 2.0]


def _run(args: list[str], out: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADEBOT_DATA_DIR": str(out)}
    return subprocess.run([sys.executable, "-m", "tradebot", "backtest", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.skipif(not (FIVE / "ESH15_5m_bars.txt").exists(), reason="shared Sierra bar data absent")
def test_backtest_command_walk_forward_on_real_quarters(tmp_path):
    # six weeks across the ESM15 -> ESU15 expiry: two quarters, one walk-forward window, the HTML report
    data = tmp_path / "bars"
    data.mkdir()
    for q in ("ESH15", "ESM15", "ESU15"):
        shutil.copy(FIVE / f"{q}_5m_bars.txt", data / f"{q}_5m_bars.txt")
    r = _run(["--data", str(data), "--start", "2015-05-26", "--end", "2015-07-03", "--walk-forward", "1",
              "--grid", "min_confidence=0.55,0.65", "--workers", "1", "--json"], tmp_path / "out")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["quarters"] == ["ESM15", "ESU15"]
    assert [(x["day"], x["old"], x["new"]) for x in doc["rolls"]] == [
        ("2015-03-23", "ESH15", "ESM15"), ("2015-06-22", "ESM15", "ESU15")]  # rolls of the whole series
    wf = doc["walk_forward"]
    assert [(w["train"], w["test"]) for w in wf["windows"]] == [(["ESM15"], "ESU15")] and wf["n_trials"] == 2
    assert wf["out_of_sample"]["trades"] == wf["windows"][0]["oos_trades"] == doc["unit"]["trades"]
    assert len([t for t in wf["trials"] if t["chosen"]]) == 1
    assert "BUY_IMBALANCE" in doc["not_computable"] and set(doc["patterns"]) <= {
        "DELTA_DIVERGENCE", "VOLUME_IMBALANCE", "RED_BURST"}
    assert "2/2" in r.stderr and "#" in r.stderr  # the progress bar
    html = next((tmp_path / "out" / "reports").glob("bars-*/index.html")).read_text()
    assert "deflated Sharpe ratio" in html and "quarters/quarter-ESU15.html" in html
    assert "Every trial" in html and "In-sample vs out-of-sample" in html
    assert "quarter-ESM15.html" not in html  # a training-only quarter has no out-of-sample page
    # the headline run is stored: summary and stress read it like any backtest
    r = _run(["summary", doc["run_id"], "--json"], tmp_path / "out")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["trades"] == doc["tiered"]["trades"]


@pytest.mark.bench
@pytest.mark.skipif(not (FIVE / "ESZ22_5m_bars.txt").exists(), reason="shared Sierra bar data absent")
def test_backtest_command_all_32_quarters(tmp_path):
    r = _run(["--data", str(FIVE), "--workers", "2", "--json", "--no-report"], tmp_path / "out", timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert len(doc["quarters"]) == 32 and len(doc["rolls"]) == 31 and doc["bars"] == 557_616
