"""The session clock on the real exchange calendars: day rolls, early closes, DST, crypto's 24/7 day."""

from __future__ import annotations

import datetime as dt

from support.exec_helpers import settings
from tradebot.core.calendar import CT, ET, calendar_for, local_ns
from tradebot.execution.session import FAR, SessionClock

S = 1_000_000_000
MON = dt.date(2025, 3, 10)


def clock(**ex: object) -> SessionClock:
    return SessionClock(settings(**ex), calendar_for("equity"))


def test_first_event_starts_its_trading_day_and_later_ones_only_tick() -> None:
    c = clock()
    t = local_ns(MON, dt.time(10, 30), ET)
    step = c.advance(t, None, None)
    assert step.ok and step.new_day == MON
    c.set_times(MON.isoformat(), None, t)
    assert (c.day, c.now) == ("2025-03-10", t)
    assert c.open_ns == local_ns(dt.date(2025, 3, 9), dt.time(17, 0), CT)
    assert c.close_ns == local_ns(MON, dt.time(16, 0), CT)
    assert c.flatten_at_ns == local_ns(MON, dt.time(15, 55), ET)
    later = c.advance(t + 60 * S, "2025-03-10", None)
    assert later.ok and later.new_day is None and c.now == t + 60 * S


def test_the_evening_session_belongs_to_the_next_trading_day() -> None:
    c = clock()
    c.set_times("2025-03-10", None, local_ns(MON, dt.time(10, 0), ET))
    evening = local_ns(MON, dt.time(18, 30), ET)
    assert c.advance(evening, "2025-03-10", None).new_day == dt.date(2025, 3, 11)
    assert c.day_of(evening) == "2025-03-11"


def test_a_stale_time_never_takes_the_day_or_the_clock_back() -> None:
    c = clock()
    t = local_ns(MON, dt.time(10, 30), ET)
    c.set_times("2025-03-10", None, t)
    c.touch(t)
    step = c.advance(t - 3 * 86_400 * S, "2025-03-10", None)
    assert step.ok and step.new_day is None and c.now == t and c.day == "2025-03-10"


def test_a_time_outside_the_calendar_is_refused() -> None:
    c = clock()
    assert not c.advance(local_ns(dt.date(2040, 1, 3), dt.time(10), ET), None, None).ok


def test_flatten_comes_five_minutes_before_an_early_close() -> None:
    c = clock()
    day = dt.date(2025, 11, 28)  # the Friday after Thanksgiving: equity futures close 12:15 CT
    c.set_times(day.isoformat(), None, local_ns(day, dt.time(9), ET))
    assert c.close_ns == local_ns(day, dt.time(12, 15), CT)
    assert c.flatten_at_ns == c.close_ns - 300 * S
    assert c.flatten_due_on(c.flatten_at_ns - 1) is None
    assert c.flatten_due_on(c.flatten_at_ns) == day.isoformat()


def test_flatten_follows_new_york_time_across_dst() -> None:
    c = clock(auto_flatten_time="15:00")
    for day in (dt.date(2025, 3, 7), MON):  # the Friday before and the Monday after the March change
        c.set_times(day.isoformat(), None, local_ns(day, dt.time(9), ET))
        assert dt.datetime.fromtimestamp(c.flatten_at_ns / S, ET).time() == dt.time(15, 0)


def test_flatten_done_or_disabled_means_never_today() -> None:
    c = clock()
    c.set_times("2025-03-10", "2025-03-10", local_ns(MON, dt.time(9), ET))
    assert c.flatten_at_ns == FAR
    c.set_times("2025-03-10", None, local_ns(MON, dt.time(9), ET))
    assert c.flatten_at_ns < FAR
    c.flattened("2025-03-09")  # another day's flatten changes nothing
    assert c.flatten_at_ns < FAR
    c.flattened("2025-03-10")
    assert c.flatten_at_ns == FAR
    off = clock(auto_flatten=False)
    off.set_times("2025-03-10", None, local_ns(MON, dt.time(9), ET))
    assert off.flatten_at_ns == FAR


def test_crypto_flattens_before_the_utc_day_boundary_only_when_asked() -> None:
    cal = calendar_for("crypto")
    t = int(dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC).timestamp()) * S
    c = SessionClock(settings(), cal)
    c.set_times(None, None, t)
    assert c.flatten_at_ns == FAR  # default: crypto is never flattened
    base = settings()
    cfg = base.model_copy(update={"coinbase": base.coinbase.model_copy(update={"flatten_at_day_end": True})})
    c = SessionClock(cfg, cal)
    c.set_times(None, None, t)
    assert c.flatten_at_ns == c.close_ns - 300 * S
