"""Prop-firm rules as pure functions: trailing floor (EOD and intraday), daily loss, contracts, flat-by,
consistency, headroom alerts once per step, and the profiles file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tradebot.core.calendar import CT, calendar_for, local_ns
from tradebot.core.config import ConfigError, Settings, load_settings
from tradebot.core.propfirm_profile import read_profiles
from tradebot.core.values import parse_steps
from tradebot.execution.propfirm import (
    AccountView,
    Drawdown,
    EntryOrder,
    PropFirmState,
    check_entry,
    consistency_cap_cents,
    flat_by_ns,
    floor_cents,
    initial_state,
    observe,
    parse_profile,
    start_day,
)

USD = 100
STEPS = (50, 25, 10)


def topstep50() -> object:
    return parse_profile("t50", {"account_size": 50000, "max_loss": 2000, "drawdown": "eod", "drawdown_lock": 0,
                                 "daily_loss_limit": 1000, "max_contracts": 5, "flat_by": "15:10",
                                 "consistency": 50, "profit_target": 3000})


def acct(balance: int, open_pnl: int = 0, day_pnl: int = 0, units: int = 0) -> AccountView:
    return AccountView(balance * USD, (balance + open_pnl) * USD, day_pnl * USD, units)


def test_builtin_profiles_have_topstep_sizes_with_eod_trailing_and_flat_by() -> None:
    profiles = read_profiles(None).profiles
    assert {"topstep-50k", "topstep-100k", "topstep-150k"} <= set(profiles)
    p = profiles["topstep-100k"]
    assert (p.account_size_cents, p.max_loss_cents, p.max_contracts) == (100_000 * USD, 3000 * USD, 10)
    assert p.drawdown == Drawdown.EOD and p.lock_cents == 0 and p.flat_by == dt.time(15, 10)
    assert "VERIFY" in p.source


def test_eod_floor_trails_end_of_day_balance_only_and_locks_at_start() -> None:
    p = topstep50()
    s = start_day(p, initial_state(p), "2025-03-10", 50_000 * USD)
    assert floor_cents(p, s) == 48_000 * USD
    # An intraday equity peak of 50,900 does not move an end-of-day floor.
    s, _ = observe(p, s, acct(50_000, open_pnl=900, day_pnl=900), STEPS)
    assert floor_cents(p, s) == 48_000 * USD
    # The day closes at 50,800: the next day's floor is 48,800.
    s = start_day(p, s, "2025-03-11", 50_800 * USD)
    assert s.high_water_cents == 50_800 * USD and floor_cents(p, s) == 48_800 * USD
    # A losing day never lowers it; a start of the same day again changes nothing (a restart).
    s = start_day(p, s, "2025-03-12", 50_100 * USD)
    assert start_day(p, s, "2025-03-12", 49_000 * USD) == s
    assert floor_cents(p, s) == 48_800 * USD
    # Far above the start it locks at the starting balance.
    s = start_day(p, s, "2025-03-13", 53_500 * USD)
    assert floor_cents(p, s) == 50_000 * USD


def test_intraday_floor_follows_open_profit() -> None:
    p = parse_profile("x", {"account_size": 50000, "max_loss": 2500, "drawdown": "intraday", "max_contracts": 5})
    s = start_day(p, initial_state(p), "2025-03-10", 50_000 * USD)
    s, _ = observe(p, s, acct(50_000, open_pnl=700, day_pnl=700), STEPS)
    assert floor_cents(p, s) == 48_200 * USD  # no lock: trails on
    s, alerts = observe(p, s, acct(50_000, open_pnl=-1_600, day_pnl=-1_600), STEPS)
    # 48,400 - 48,200 = 200 left of 2,500: below 10 %: one alert, the lowest step, critical
    assert [a.key for a in alerts] == ["max_loss:10"] and alerts[0].level == "critical"


def test_headroom_alerts_once_per_step_and_per_day_and_survive_a_restart() -> None:
    p = topstep50()
    s = start_day(p, initial_state(p), "2025-03-10", 50_000 * USD)
    s, a = observe(p, s, acct(50_000, day_pnl=-400), STEPS)  # 600 of 1,000 left (60 %)
    assert a == []
    s, a = observe(p, s, acct(49_500, day_pnl=-500), STEPS)  # exactly 50 % left
    assert [x.key for x in a] == ["daily_loss:50"] and a[0].level == "warning" and not a[0].halt
    s, a = observe(p, s, acct(49_450, day_pnl=-550), STEPS)
    assert a == []  # same step: no second alert
    restored = PropFirmState.from_payload(s.to_payload())  # journaled and read back after a restart
    assert restored == s
    s, a = observe(p, restored, acct(49_450, day_pnl=-550), STEPS)
    assert a == []
    s, a = observe(p, s, acct(49_050, day_pnl=-950), STEPS)  # 5 % left: 25 and 10 due, one alert (10)
    assert [x.key for x in a] == ["daily_loss:10"] and a[0].level == "critical"
    s, a = observe(p, s, acct(49_000, day_pnl=-1_000), STEPS)  # and 1,000 of 2,000 left above the floor
    assert [x.key for x in a] == ["max_loss:50", "daily_loss:breach"] and a[1].halt and not a[0].halt
    assert s.day_breached == "daily_loss"
    reason = check_entry(p, s, acct(49_000, day_pnl=-1_000), EntryOrder("MES", 1, 1000, 0), flat_by_at_ns=None,
                         zone=CT)
    assert "daily loss limit" in reason
    # The next day clears the daily breach and its alerts; the floor still trails from 50,000.
    s = start_day(p, s, "2025-03-11", 49_000 * USD)
    assert s.alerts == () and s.day_breached == "" and floor_cents(p, s) == 48_000 * USD
    assert check_entry(p, s, acct(49_000), EntryOrder("MES", 1, 1000, 0), flat_by_at_ns=None, zone=CT) == ""


def test_max_loss_breach_is_permanent_until_cleared() -> None:
    p = topstep50()
    s = start_day(p, initial_state(p), "2025-03-10", 50_000 * USD)
    s, a = observe(p, s, acct(48_500, open_pnl=-500, day_pnl=-999), STEPS)
    assert "max_loss:breach" in [x.key for x in a] and s.breached == "max_loss"
    s = start_day(p, s, "2025-03-11", 48_000 * USD)
    assert s.breached == "max_loss"
    assert "maximum loss limit" in check_entry(p, s, acct(48_000), EntryOrder("MES", 1, None, 0),
                                               flat_by_at_ns=None, zone=CT)


def test_entry_checks_contracts_stop_risk_and_flat_by() -> None:
    p = topstep50()
    s = start_day(p, initial_state(p), "2025-03-10", 50_000 * USD)
    ok = acct(50_000)
    # 5 minis = 50 micros; micros count a tenth
    assert check_entry(p, s, acct(50_000, units=40), EntryOrder("MES", 10, 100, 0), flat_by_at_ns=None, zone=CT) == ""
    r = check_entry(p, s, acct(50_000, units=40), EntryOrder("ES", 20, 100, 0), flat_by_at_ns=None, zone=CT)
    assert r == "prop-firm t50: 6 contracts would exceed the maximum of 5"
    r = check_entry(p, s, acct(50_000, units=45), EntryOrder("MES", 6, 100, 0), flat_by_at_ns=None, zone=CT)
    assert r == "prop-firm t50: 5.1 contracts would exceed the maximum of 5"
    # a stop-out that would eat the whole daily headroom is refused
    r = check_entry(p, s, ok, EntryOrder("ES", 10, 1000 * USD, 0), flat_by_at_ns=None, zone=CT)
    assert "stop-out would lose $1,000.00" in r and "daily loss headroom is $1,000.00" in r
    assert check_entry(p, s, ok, EntryOrder("ES", 10, 999 * USD, 0), flat_by_at_ns=None, zone=CT) == ""
    # flat-by 15:10 CT, from the exchange calendar's zone; on an early close, 5 minutes before the close
    cal = calendar_for("equity")
    day = dt.date(2025, 3, 10)
    sess = cal.session_on(day)
    assert sess is not None
    at = flat_by_ns(p, day, sess.close_ns, CT)
    assert at == local_ns(day, dt.time(15, 10), CT)
    r = check_entry(p, s, ok, EntryOrder("ES", 10, 100, at), flat_by_at_ns=at, zone=CT)
    assert "after the flat-by time 15:10 CDT" in r
    assert check_entry(p, s, ok, EntryOrder("ES", 10, 100, at - 1), flat_by_at_ns=at, zone=CT) == ""
    early = dt.date(2024, 11, 29)
    es = cal.session_on(early)
    assert es is not None and es.early_close
    assert flat_by_ns(p, early, es.close_ns, CT) == es.close_ns - 300 * 10**9


def test_consistency_cap_stops_entries_for_the_day() -> None:
    p = topstep50()
    s = start_day(p, initial_state(p), "2025-03-10", 50_000 * USD)
    assert consistency_cap_cents(p, s) == 1500 * USD  # 50 % of the $3,000 target
    s, a = observe(p, s, acct(51_500, day_pnl=1_500), STEPS)
    assert [x.key for x in a] == ["consistency:cap"] and not a[0].halt
    assert "consistency cap" in check_entry(p, s, acct(51_500, day_pnl=1_500), EntryOrder("MES", 1, 100, 0),
                                            flat_by_at_ns=None, zone=CT)
    # After $4,000 of earlier profit the cap is what keeps today within 50 %: $4,000.
    s = start_day(p, s, "2025-03-11", 51_500 * USD)
    s = start_day(p, s, "2025-03-12", 54_000 * USD)
    assert s.profit_before_today_cents == 4000 * USD and s.best_day_cents == 2500 * USD
    assert consistency_cap_cents(p, s) == 4000 * USD


@pytest.mark.parametrize(("raw", "needle"), [
    ({"max_loss": 1, "max_contracts": 1}, "account_size is required"),
    ({"account_size": 1, "max_loss": -5, "max_contracts": 1}, "max_loss must be positive"),
    ({"account_size": 1, "max_loss": "1.001", "max_contracts": 1}, "fractions of a cent"),
    ({"account_size": 1, "max_loss": 1, "max_contracts": 0}, "max_contracts must be a positive"),
    ({"account_size": 1, "max_loss": 1, "max_contracts": 1, "drawdown": "weekly"}, "drawdown must be"),
    ({"account_size": 1, "max_loss": 1, "max_contracts": 1, "flat_by": "3pm"}, "flat_by must be HH:MM"),
    ({"account_size": 1, "max_loss": 1, "max_contracts": 1, "consistency": 150}, "consistency must be"),
    ({"account_size": 1, "max_loss": 1, "max_contracts": 1, "maxloss": 1}, "unknown field(s) maxloss"),
])
def test_bad_profile_fields_are_named(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match="profile bad") as info:
        parse_profile("bad", raw)
    assert needle in str(info.value)


def test_steps_and_settings(tmp_path: Path) -> None:
    assert parse_steps("10, 50,25") == (50, 25, 10)
    with pytest.raises(ValueError):
        parse_steps("0")
    f = tmp_path / "firms.toml"
    f.write_text('[mine]\naccount_size = 25000\nmax_loss = 1500\nmax_contracts = 3\ndrawdown = "intraday"\n')
    s = Settings(_env_file=None, propfirm={"profile": "mine", "profiles_file": str(f)})  # type: ignore[call-arg]
    prof = s.propfirm.account
    assert prof is not None and prof.drawdown == Drawdown.INTRADAY and prof.lock_cents is None
    with pytest.raises(ValueError, match="unknown prop-firm profile 'topstep-75k'"):
        Settings(_env_file=None, propfirm={"profile": "topstep-75k"})  # type: ignore[call-arg]
    f.write_text('[mine]\naccount_size = 25000\nmax_loss = "lots"\nmax_contracts = 3\n')
    with pytest.raises(ConfigError, match=r"TRADEBOT_PROPFIRM__PROFILES_FILE.*max_loss"):  # refused at load
        load_settings(_env_file=None, propfirm={"profile": "mine", "profiles_file": str(f)})
    assert Settings(_env_file=None).propfirm.account is None  # type: ignore[call-arg]
