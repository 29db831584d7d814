"""One definition of every statistic: ``tradebot stats`` (a real process), the daily digest and backtests agree.

The day below ends up $347.30 but falls $257.60 from its high on the way (a win, two losses, a win): the old
``stats`` measured drawdown on end-of-day balances only and showed $0.00 for such a day.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from support.exec_helpers import System, intent, settings, trade
from tradebot.backtest.stats import compute_stats as backtest_stats
from tradebot.core.contracts import spec_for
from tradebot.core.stats import json_ratio, outcome, profit_factor, summarize
from tradebot.core.types import Side
from tradebot.execution.ledger import DailyStats
from tradebot.execution.trades import TradeRecord
from tradebot.ops.digest import digest_data, digest_notification
from tradebot.state.store import StateStore, default_db_path
from tradebot.web.db import ReadOnlyDB

NETS = [10870, -10380, -15380, 49620]
"""Hand check: ES 1 lot, $12.50 a tick, $3.80 round-trip costs: +9 ticks, -8, -12, +40."""


def record_day(data: Path) -> Path:
    cfg = settings().model_copy(update={"data_dir": data})
    s = System(default_db_path(data, "paper"), cfg)
    m, t = s.manager, [0]

    def ev(px: int) -> None:
        t[0] += 1
        m.on_market_event(trade(t[0], px))

    def go(stop: int, target: int) -> None:
        t[0] += 1
        m.on_intent(intent(t[0], Side.BUY, stop=stop, target=target, tag=str(t[0])))

    ev(1000)
    go(990, 1010), ev(1001), ev(1011)  # filled 1001, target 1010
    go(995, 1030), ev(1001), ev(994)   # stop 995 with one tick of slippage
    go(985, 1020), ev(995), ev(984)
    go(980, 1030), ev(990), ev(1031)
    s.close()
    return default_db_path(data, "paper")


def test_stats_digest_and_backtest_agree_on_a_winning_day_with_a_drawdown(tmp_path: Path) -> None:
    db = record_day(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env.update({"TRADEBOT_HOME": str(tmp_path), "TRADING_MODE": "paper"})
    r = subprocess.run([sys.executable, "-m", "tradebot", "stats", "--json"], cwd=tmp_path.parent, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    peak, trough = NETS[0], NETS[0] + NETS[1] + NETS[2]
    assert (st["trades"], st["wins"], st["losses"], st["scratches"]) == (4, 2, 2, 0)
    assert st["net_cents"] == sum(NETS) == 34730 and st["winning_days"] == 1
    assert st["max_drawdown_cents"] == peak - trough == 25760  # was 0: one day, end-of-day balances only
    assert st["max_daily_drawdown_cents"] == 0
    assert st["profit_factor"] == round((10870 + 49620) / (10380 + 15380), 2) == 2.35
    text = subprocess.run([sys.executable, "-m", "tradebot", "stats"], cwd=tmp_path.parent, env=env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "max drawdown $257.60 (closed trades)" in text, text

    store = StateStore.open(db, readonly=True)
    try:
        rows = store.query("SELECT * FROM brackets WHERE state = 'closed' ORDER BY closed_ns")
        day = dt.date.fromisoformat(rows[0]["trading_day"])
        note = digest_notification(digest_data(store, day), day, 0)
    finally:
        store.close()
    fields = dict(note.fields)
    assert fields["Max drawdown"] == "-$257.60" and fields["Wins / losses / scratches"] == "2 / 2 / 0"
    assert fields["Profit factor"] == "2.35" and fields["Trades"] == "4"

    # The daily_stats projection and the dashboard's statistics count the same way (not fill by fill).
    (daily,) = store_rows(db, "SELECT * FROM daily_stats")
    assert (daily["wins"], daily["losses"], daily["net_cents"]) == (2, 2, sum(NETS))
    assert (daily["peak_net_cents"], daily["max_drawdown_cents"]) == (sum(NETS), 25760)
    web = ReadOnlyDB(db, "paper").statistics(30)
    assert (web["trades"], web["wins"], web["losses"], web["scratches"]) == (4, 2, 2, 0)
    assert (web["max_drawdown_cents"], web["gross_loss_cents"]) == (25760, -(10380 + 15380))
    assert round(float(web["profit_factor"]), 2) == st["profit_factor"]
    assert web["daily"][0]["max_drawdown_cents"] == 25760

    tick = spec_for("ES").tick_value_cents
    recs = [TradeRecord.make(trade_id=r["signal_id"], symbol="ES", side=1, quantity=1, entry_ns=r["opened_ns"],
                             exit_ns=r["closed_ns"], entry_price=0, exit_price=r["realized_cents"] // tick,
                             tick_value_cents=tick, commission_cents=r["commission_cents"]) for r in rows]
    bt = backtest_stats(recs)
    assert [t.net_pnl_cents for t in recs] == NETS
    assert (bt.wins, bt.losses, bt.scratches, bt.max_drawdown_cents) == (2, 2, 0, 25760)
    assert bt.profit_factor is not None and round(bt.profit_factor, 2) == st["profit_factor"]


def test_a_days_drawdown_is_trade_by_trade_not_fill_by_fill() -> None:
    """An entry's commission is paid at the fill, but the trade is one closed result: a day of one winning trade
    has no drawdown (the old fill-by-fill figure read the entry commission as one)."""
    day = DailyStats("2025-03-10")
    day.commission_cents += 190  # the entry fill
    day.realized_cents += 11250
    day.commission_cents += 190  # the exit fill
    day.closed(day.net_cents)
    assert (day.max_drawdown_cents, day.peak_net_cents, day.wins) == (0, 10870, 1)
    for net in (-10380, -15380, 49620):
        day.closed(net)
    assert day.max_drawdown_cents == summarize(NETS).max_drawdown_cents == 25760


def store_rows(db: Path, sql: str) -> list[dict[str, object]]:
    store = StateStore.open(db, readonly=True)
    try:
        return [dict(r) for r in store.query(sql)]
    finally:
        store.close()


def test_scratches_and_undefined_profit_factor() -> None:
    s = summarize([500, 0, -200, 0, 0, -100])
    assert (s.wins, s.losses, s.scratches) == (1, 2, 3)
    assert s.win_rate == 1 / 6 and s.profit_factor == 500 / 300
    assert s.max_consecutive_losses == 1  # a scratch ends a run
    assert s.max_drawdown_cents == 300
    assert [outcome(v) for v in (1, 0, -1)] == ["win", "scratch", "loss"]
    assert profit_factor(0, 0) is None and profit_factor(100, 0) == math.inf
    assert summarize([0, 0]).profit_factor is None and summarize([]).win_rate is None
    assert json_ratio(math.inf) == "inf" and json_ratio(None) is None and json_ratio(2.3456) == 2.35


def test_one_labelled_display_zone_for_every_command(tmp_path: Path) -> None:
    """TRADEBOT_DISPLAY_TZ moves every time the operator sees, with its label; default New York (EDT in March)."""
    record_day(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env.update({"TRADEBOT_HOME": str(tmp_path), "TRADING_MODE": "paper"})

    def trades(**extra: str) -> list[dict[str, str]]:
        r = subprocess.run([sys.executable, "-m", "tradebot", "trades", "--json"], cwd=tmp_path, env={**env, **extra},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        rows: list[dict[str, str]] = json.loads(r.stdout)
        return rows

    ny = trades()
    chicago = trades(TRADEBOT_DISPLAY_TZ="America/Chicago")
    assert ny[0]["closed"].endswith(" EDT") and chicago[0]["closed"].endswith(" CDT")
    h_ny, h_ct = (dt.datetime.strptime(r[0]["closed"][:19], "%Y-%m-%d %H:%M:%S") for r in (ny, chicago))
    assert h_ny - h_ct == dt.timedelta(hours=1)
    bad = subprocess.run([sys.executable, "-m", "tradebot", "status"], cwd=tmp_path,
                         env={**env, "TRADEBOT_DISPLAY_TZ": "Mars/Olympus"}, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "TRADEBOT_DISPLAY_TZ" in bad.stderr
