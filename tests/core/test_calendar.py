"""Exchange time from the calendar: both DST transitions, a holiday, an early close, the 17:00 CT boundary."""

from __future__ import annotations

import datetime as dt

from tradebot.core.calendar import CT, UTC, calendar_for, from_ns, to_ns


def utc(*a: int) -> int:
    return to_ns(dt.datetime(*a, tzinfo=UTC))


def test_session_open_moves_with_us_dst_in_march() -> None:
    cal = calendar_for("equity")
    before = cal.session_on(dt.date(2025, 3, 7))  # Friday, CST
    after = cal.session_on(dt.date(2025, 3, 10))  # Monday after the switch (Sunday 9 March), CDT
    assert before is not None and after is not None
    assert before.open_ns == utc(2025, 3, 6, 23)  # 17:00 CST
    assert before.close_ns == utc(2025, 3, 7, 22)  # 16:00 CST
    assert before.rth_open_ns == utc(2025, 3, 7, 14, 30)  # 08:30 CST
    assert after.open_ns == utc(2025, 3, 9, 22)  # 17:00 CDT on Sunday
    assert after.rth_open_ns == utc(2025, 3, 10, 13, 30)  # 08:30 CDT
    assert after.rth_close_ns == utc(2025, 3, 10, 20)  # 15:00 CDT


def test_session_open_moves_with_us_dst_in_november() -> None:
    cal = calendar_for("equity")
    before = cal.session_on(dt.date(2025, 10, 31))  # Friday, CDT
    after = cal.session_on(dt.date(2025, 11, 3))  # Monday after the switch back (Sunday 2 Nov), CST
    assert before is not None and after is not None
    assert before.close_ns == utc(2025, 10, 31, 21)
    assert after.open_ns == utc(2025, 11, 2, 23)
    assert from_ns(after.open_ns, CT).hour == 17 and from_ns(before.close_ns, CT).hour == 16


def test_trading_day_boundary_is_1700_central() -> None:
    cal = calendar_for("equity")
    # 16:59:59 CT Tuesday belongs to Tuesday; 17:00 CT Tuesday belongs to Wednesday.
    tue = dt.datetime(2025, 3, 11, 16, 59, 59, tzinfo=CT)
    assert cal.session_at(to_ns(tue)) is None  # daily maintenance break
    assert cal.trading_day(to_ns(tue)) == dt.date(2025, 3, 12)  # counts towards the session that opens next
    assert cal.trading_day(to_ns(dt.datetime(2025, 3, 11, 15, 59, tzinfo=CT))) == dt.date(2025, 3, 11)
    assert cal.trading_day(to_ns(dt.datetime(2025, 3, 11, 17, 0, tzinfo=CT))) == dt.date(2025, 3, 12)
    # Friday evening and the weekend belong to Monday.
    assert cal.trading_day(to_ns(dt.datetime(2025, 3, 8, 12, 0, tzinfo=CT))) == dt.date(2025, 3, 10)


def test_christmas_is_a_holiday_and_thanksgiving_friday_closes_early() -> None:
    cal = calendar_for("equity")
    assert not cal.is_trading_day(dt.date(2025, 12, 25))
    assert cal.session_on(dt.date(2025, 12, 25)) is None
    assert cal.session_at(to_ns(dt.datetime(2025, 12, 25, 10, 0, tzinfo=CT))) is None
    friday = cal.session_on(dt.date(2025, 11, 28))
    assert friday is not None and friday.early_close
    assert from_ns(friday.close_ns, CT).time() == dt.time(12, 15)
    assert friday.rth_close_ns == friday.close_ns  # RTH is cut by the early close
    normal = cal.session_on(dt.date(2025, 11, 25))
    assert normal is not None and not normal.early_close


def test_energy_and_metals_templates_have_their_own_rth() -> None:
    cl = calendar_for("energy").session_on(dt.date(2025, 3, 10))
    gc = calendar_for("metals").session_on(dt.date(2025, 3, 10))
    assert cl is not None and gc is not None
    assert from_ns(cl.rth_open_ns, CT).time() == dt.time(8, 0)
    assert from_ns(gc.rth_open_ns, CT).time() == dt.time(7, 20)


def test_ns_roundtrip() -> None:
    t = dt.datetime(2022, 1, 24, 19, 30, 0, 5000, tzinfo=UTC)
    assert from_ns(to_ns(t)) == t


def test_equity_early_close_is_1215_on_holiday_eves_and_1200_on_holidays() -> None:
    cal = calendar_for("equity")
    for day in (dt.date(2024, 7, 3), dt.date(2024, 11, 29), dt.date(2024, 12, 24), dt.date(2025, 11, 28)):
        s = cal.session_on(day)
        assert s is not None and s.early_close
        assert from_ns(s.close_ns, CT).time() == dt.time(12, 15), day
    thanksgiving = cal.session_on(dt.date(2025, 11, 27))
    assert thanksgiving is not None and from_ns(thanksgiving.close_ns, CT).time() == dt.time(12, 0)
    # A 12:10 CT print on Black Friday belongs to that session, not the next one.
    assert cal.trading_day(to_ns(dt.datetime(2024, 11, 29, 12, 10, tzinfo=CT))) == dt.date(2024, 11, 29)


def test_good_friday_trades_until_0815_ct_only_on_a_jobs_report_morning() -> None:
    """CME equity index futures on Good Friday: closed, except when the BLS jobs report comes out that morning
    (Good Friday on the first Friday of April), when Globex trades from Thursday 17:00 CT until 08:15 CT.
    Sources: the 2021-04-02 and 2023-04-07 sessions ("futures trading will close at 9:15 a.m. Eastern", MarketWatch
    market snapshots of those days), pandas_market_calendars PR #456 (merged 2026-04-04, regression test: the
    2026-04-03 session 18:00 ET Thursday to 09:15 ET Friday, the morning of the March 2026 jobs report), and the
    CME holiday calendar's full closures on the other Good Fridays (2024-03-29, 2025-04-18), which the library
    (5.5) wrongly gives an 08:15 CT session since that change."""
    cal = calendar_for("equity")
    for day in (dt.date(2021, 4, 2), dt.date(2023, 4, 7), dt.date(2026, 4, 3)):
        s = cal.session_on(day)
        assert s is not None and s.early_close, day
        assert from_ns(s.open_ns, CT) == dt.datetime.combine(day - dt.timedelta(days=1), dt.time(17), CT)
        assert from_ns(s.close_ns, CT) == dt.datetime.combine(day, dt.time(8, 15), CT)
    for day in (dt.date(2022, 4, 15), dt.date(2024, 3, 29), dt.date(2025, 4, 18), dt.date(2027, 3, 26)):
        assert cal.session_on(day) is None, day
    # Friday 12:00 UTC on a closed Good Friday belongs to the Monday session opening Sunday 17:00 CT.
    nxt = cal.session_for(utc(2025, 4, 18, 12))
    assert nxt.trading_date == dt.date(2025, 4, 21)
    assert from_ns(nxt.open_ns, CT) == dt.datetime(2025, 4, 20, 17, tzinfo=CT)
    thursday = cal.session_on(dt.date(2026, 4, 2))
    assert thursday is not None and from_ns(thursday.close_ns, CT).time() == dt.time(16)
