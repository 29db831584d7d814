"""Prop-firm rules through the real manager, store and paper broker: the gate refuses what the account cannot
take, headroom alerts are journaled once (a restart neither re-sends them nor forgets the high-water mark), a
breach halts and flattens, the flat-by time flattens even with the auto-flatten off, and end-of-day trailing
moves the floor at the day boundary."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from support.exec_helpers import T0, S, System, book, intent, settings, trade
from tradebot.core.calendar import CT, to_ns
from tradebot.core.config import PropFirmSettings, Settings
from tradebot.core.types import Side
from tradebot.execution.model import HaltKind, TradingState
from tradebot.execution.propfirm_guard import describe
from tradebot.execution.status import collect_status
from tradebot.ops.digest import propfirm_fields

PROFILE = """
[test-50k]
firm = "Test"
account_size = 50000
max_loss = 2000
drawdown = "eod"
drawdown_lock = 0
daily_loss_limit = 500
max_contracts = 2
flat_by = "15:10"
"""


def cfg(tmp_path: Path, **propfirm: Any) -> Settings:
    f = tmp_path / "firms.toml"
    f.write_text(PROFILE)
    base = settings(auto_flatten=False, DAILY_LOSS_LIMIT=-5000)  # the daemon's own daily limit out of the way
    return base.model_copy(update={"propfirm": PropFirmSettings(profile="test-50k", profiles_file=f, **propfirm)})


def records(s: System, kind: str) -> list[dict[str, Any]]:
    return [r.payload for r in s.store.journal() if r.kind == kind]


def notes(s: System) -> list[str]:
    return [n.title for n in s.notes if n.kind == "propfirm"]


def test_alerts_once_restart_keeps_them_and_a_breach_halts_and_flattens(tmp_path: Path) -> None:
    s = System(tmp_path / "a.db", cfg(tmp_path, stop_within_headroom=False))
    m = s.manager
    assert m.propfirm is not None
    m.on_market_event(book(0, 20000, 20001))
    start = records(s, "propfirm")  # the first trading day journals the account's starting state
    assert [p["why"] for p in start] == ["start"] and start[0]["high_water_cents"] == 50_000_00
    assert m.on_intent(intent(1, Side.BUY, stop=19800, target=20100)).taken
    m.on_market_event(book(2, 20000, 20001))
    m.on_market_event(trade(3, 20001))  # long 1 ES @ 20001 ($12.50 a tick)
    m.on_market_event(trade(4, 19985))  # -16 ticks = -$200, fees $1.90: 298.10 of 500 left (59 %)
    assert notes(s) == []
    m.on_market_event(trade(5, 19982))  # -$237.50 - 1.90: 260.60 left (52 %)
    m.on_market_event(trade(6, 19981))  # -$250 - 1.90: 248.10 left (49 %): the 50 % step
    assert notes(s) == ["Daily loss limit: 49% headroom left ($248.10 of $500.00)"]
    m.on_market_event(trade(7, 19980))
    assert len(notes(s)) == 1  # same step: nothing new
    s.close()
    # A restart (kill -9 and start): the 50 % alert is journaled, so the same prices send nothing again.
    s = s.reopen(T0 + 8 * S)
    m = s.manager
    m.on_market_event(book(8, 19979, 19980))
    m.on_market_event(trade(8.5, 19980))
    assert notes(s) == []
    m.on_market_event(trade(9, 19962))  # -39 ticks = -$487.50 - 1.90: $10.60 left (2 %): one alert, the 10 % step
    assert notes(s) == ["Daily loss limit: 2% headroom left ($10.60 of $500.00)"]
    m.on_market_event(trade(10, 19961))  # -$500 - 1.90: breached
    assert notes(s)[-1] == "Daily loss limit reached: flattening, no more trading today"
    t = m.ledger.trading
    assert (t.state, t.kind) == (TradingState.HALTED, HaltKind.LIMIT) and "daily loss" in t.reason
    m.on_market_event(book(11, 19960, 19961))
    m.on_market_event(trade(12, 19960))
    assert m.ledger.positions.get("ES") is None or m.ledger.positions["ES"].qty == 0
    breach = records(s, "propfirm")[-1]
    assert breach["why"] == "breach" and breach["day_breached"] == "daily_loss"
    assert "daily_loss:breach" in breach["alerts"] and breach["flatten_reason"] == "propfirm_daily_loss"
    v = m.on_intent(intent(13, Side.BUY, stop=19900, target=20100))
    assert not v.taken and "trading halted" in v.reason
    snap = m.snapshot()["propfirm"]
    assert snap["profile"] == "test-50k" and snap["day_breached"] == "daily_loss"
    m.flush_marks()
    s.close()
    # `tradebot status` reads the same from the database alone (the daemon may be down).
    st = collect_status(s.cfg.model_copy(update={"data_dir": tmp_path,
                                                 "execution": s.cfg.execution.model_copy(update={"db_path": s.path})}))
    pf = st["propfirm"]
    assert pf["day_breached"] == "daily_loss" and pf["headroom"]["daily_loss"]["left_cents"] < 0
    assert pf["floor_cents"] == 48_000_00 and not st["healthy"]
    assert "prop-firm rule breached: daily_loss" in st["problems"]
    assert describe(pf)[0].startswith("prop-firm test-50k (Test; drawdown eod): floor $48,000.00")
    fields = dict(propfirm_fields([pf]))  # the daily digest's lines
    assert fields["Prop-firm test-50k"].startswith("floor $48,000.00")
    assert fields["Prop-firm alerts today"] == "daily_loss:10, daily_loss:25, daily_loss:50"
    assert fields["Prop-firm BREACH"] == "daily_loss"


def test_gate_refuses_contracts_stop_risk_and_entries_after_flat_by(tmp_path: Path) -> None:
    s = System(tmp_path / "b.db", cfg(tmp_path))
    m = s.manager
    m.on_market_event(book(0, 20000, 20001))
    m.on_market_event(trade(0.5, 20001))  # the last price prices a market entry's stop-out
    v = m.on_intent(intent(1, Side.BUY, stop=19990, target=20100, qty=3))
    # max_position_size 4 sizes it to 3; the account allows 2
    assert not v.taken and v.reason == "prop-firm test-50k: 3 contracts would exceed the maximum of 2"
    v = m.on_intent(intent(2, Side.BUY, stop=19950, target=20100, qty=2))  # 51 ticks x 2 = $1,275 + 4 x $1.90 > $500
    assert not v.taken and "a stop-out would lose $1,282.60" in v.reason
    assert m.on_intent(intent(3, Side.BUY, stop=19990, target=20100, qty=2)).taken
    # 15:10 CT: the position is flattened although the auto-flatten is off, and no entry is taken after it.
    flat_by = to_ns(dt.datetime(2025, 3, 10, 15, 10, tzinfo=CT))
    m.on_market_event(book(4, 20000, 20001))
    m.on_market_event(trade(5, 20001))
    assert m.ledger.position_qty("ES") == 2
    late = (flat_by - T0) / S
    m.on_market_event(book(late, 20005, 20006))
    m.on_market_event(trade(late + 1, 20005))
    assert m.ledger.position_qty("ES") == 0
    assert [r["flatten_reason"] for r in records(s, "auto_flatten")] == ["auto_flatten"]
    v = m.on_intent(intent(late + 2, Side.BUY, stop=19990, target=20100))
    assert not v.taken
    s.close()


def test_eod_trailing_moves_the_floor_at_the_day_boundary(tmp_path: Path) -> None:
    s = System(tmp_path / "c.db", cfg(tmp_path))
    m = s.manager
    m.on_market_event(book(0, 20000, 20001))
    assert m.on_intent(intent(1, Side.BUY, stop=19990, target=20041)).taken
    m.on_market_event(book(2, 20000, 20001))
    m.on_market_event(trade(3, 20001))
    m.on_market_event(trade(4, 20042))  # target 20041: +40 ticks = +$500 - $3.80 fees
    assert m.ledger.position_qty("ES") == 0
    summary = m.snapshot()["propfirm"]
    assert summary["high_water_cents"] == 50_000_00 and summary["floor_cents"] == 48_000_00  # not yet: EOD
    next_day = to_ns(dt.datetime(2025, 3, 11, 9, 0, tzinfo=CT))
    m.on_market_event(trade((next_day - T0) / S, 20040))
    s.close()
    s = s.reopen(next_day + S)
    summary = s.manager.snapshot()["propfirm"]
    assert summary["high_water_cents"] == 50_496_20 and summary["floor_cents"] == 48_496_20
    assert [p["why"] for p in records(s, "propfirm")] == ["start", "day"]
    s.close()
