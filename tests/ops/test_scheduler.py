"""Daily jobs at both DST transitions, on a holiday, on an early close, and after a restart."""

from __future__ import annotations

import datetime as dt

from tradebot.core.calendar import CT, ET, UTC, calendar_for, from_ns, to_ns
from tradebot.ops.scheduler import Scheduler, default_jobs

MIN = 60 * 10**9


def fired_between(start: dt.datetime, end: dt.datetime, step_min: int = 1,
                  sched: Scheduler | None = None) -> list[tuple[str, dt.date, dt.datetime]]:
    s = sched or Scheduler(calendar_for("equity"), default_jobs())
    out = []
    t, stop = to_ns(start), to_ns(end)
    while t <= stop:
        out += [(n, d, from_ns(at, ET)) for n, d, at in s.tick(t)]
        t += step_min * MIN
    return out


def times(events: list[tuple[str, dt.date, dt.datetime]], name: str) -> list[tuple[dt.date, str]]:
    return [(d, at.strftime("%H:%M %Z")) for n, d, at in events if n == name]


def test_flatten_and_digest_stay_at_new_york_time_across_march_dst() -> None:
    ev = fired_between(dt.datetime(2025, 3, 6, 23, tzinfo=ET), dt.datetime(2025, 3, 10, 17, tzinfo=ET))
    assert times(ev, "auto_flatten") == [(dt.date(2025, 3, 7), "15:55 EST"), (dt.date(2025, 3, 10), "15:55 EDT")]
    assert times(ev, "daily_digest") == [(dt.date(2025, 3, 7), "16:00 EST"), (dt.date(2025, 3, 10), "16:00 EDT")]
    flat = [at for n, _, at in ev if n == "auto_flatten"]
    assert [a.astimezone(UTC).hour for a in flat] == [20, 19]  # the UTC hour moves, the local time does not


def test_jobs_across_november_dst() -> None:
    ev = fired_between(dt.datetime(2025, 10, 31, 12, tzinfo=ET), dt.datetime(2025, 11, 3, 17, tzinfo=ET))
    assert times(ev, "auto_flatten") == [(dt.date(2025, 10, 31), "15:55 EDT"), (dt.date(2025, 11, 3), "15:55 EST")]
    margin = [at for n, d, at in ev if n == "margin_check" and d == dt.date(2025, 11, 3)]
    assert margin and margin[0].astimezone(CT).hour == 17  # at the Sunday 17:00 CT open


def test_holiday_has_no_jobs_and_early_close_moves_them() -> None:
    ev = fired_between(dt.datetime(2025, 12, 24, 8, tzinfo=ET), dt.datetime(2025, 12, 26, 17, tzinfo=ET))
    dates = {d for _, d, _ in ev}
    assert dt.date(2025, 12, 25) not in dates
    # Christmas Eve halts at 12:15 CT (13:15 ET): flatten 5 minutes before, digest at the close.
    assert times(ev, "auto_flatten") == [(dt.date(2025, 12, 24), "13:10 EST"), (dt.date(2025, 12, 26), "15:55 EST")]
    assert times(ev, "daily_digest")[0] == (dt.date(2025, 12, 24), "13:15 EST")


def test_each_job_fires_once_per_day_even_with_dense_ticks() -> None:
    ev = fired_between(dt.datetime(2025, 3, 11, 15, 50, tzinfo=ET), dt.datetime(2025, 3, 11, 16, 10, tzinfo=ET),
                       step_min=1)
    assert [n for n, _, _ in ev].count("auto_flatten") == 1


def test_restart_catches_up_a_recent_job_but_not_a_stale_one_nor_a_done_one() -> None:
    cal = calendar_for("equity")
    late = Scheduler(cal, default_jobs())
    names = [n for n, _, _ in late.tick(to_ns(dt.datetime(2025, 3, 11, 16, 30, tzinfo=ET)))]
    assert "auto_flatten" in names and "daily_digest" in names
    stale = Scheduler(cal, default_jobs())
    names = [n for n, _, _ in stale.tick(to_ns(dt.datetime(2025, 3, 11, 23, 30, tzinfo=ET)))]
    assert "auto_flatten" not in names  # 7.5 h late: the session is over, nothing to flatten
    done = Scheduler(cal, default_jobs(), already_fired=lambda job, day: job == "daily_digest")
    names = [n for n, _, _ in done.tick(to_ns(dt.datetime(2025, 3, 11, 16, 30, tzinfo=ET)))]
    assert "daily_digest" not in names and "auto_flatten" in names


def test_next_fire() -> None:
    s = Scheduler(calendar_for("equity"), default_jobs())
    now = to_ns(dt.datetime(2025, 3, 11, 12, 0, tzinfo=ET))
    s.tick(now)
    nxt = s.next_fire(now)
    assert nxt is not None and nxt[0] == "auto_flatten"
    assert from_ns(nxt[1], ET).time() == dt.time(15, 55)


def test_a_first_tick_exactly_at_the_open_owes_no_digest_for_the_previous_day() -> None:
    open_ = to_ns(dt.datetime(2025, 3, 11, 17, 0, tzinfo=CT))  # Tuesday's 17:00 CT open of the 03-12 session
    at_open = Scheduler(calendar_for("equity"), default_jobs()).tick(open_)
    assert [(n, d) for n, d, _ in at_open] == [("margin_check", dt.date(2025, 3, 12))]
    just_after = Scheduler(calendar_for("equity"), default_jobs()).tick(open_ + 1)
    assert [(n, d) for n, d, _ in just_after] == [(n, d) for n, d, _ in at_open]
    in_break = Scheduler(calendar_for("equity"), default_jobs()).tick(open_ - MIN)  # a restart at 16:59 CT
    assert ("daily_digest", dt.date(2025, 3, 11)) in [(n, d) for n, d, _ in in_break]  # the catch-up still runs
