"""Exchange-calendar-aware daily jobs: pre-session margin check, auto-flatten, daily digest.

Times are wall-clock times in a named IANA zone (15:55 America/New_York), resolved per trading date so DST
never shifts them, and clamped to the session: on an early close (Thanksgiving Friday, Christmas Eve) the
flatten moves to ``close - lead`` and the digest to the close; on a holiday there is no session and no job.
The scheduler is driven by ``tick(now_ns)`` so the live daemon (wall time) and replay (event time) run it alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from tradebot.core.calendar import ExchangeCalendar, Session, local_ns

NS = 1_000_000_000


@dataclass(frozen=True)
class DailyJob:
    name: str
    at: dt.time | None
    """Local time of day in ``tz``; ``None`` means 'at session open' (plus ``offset_seconds``)."""
    tz: str = "America/New_York"
    offset_seconds: int = 0
    close_lead_seconds: int | None = None
    """When set, never later than ``close - lead`` (early closes)."""
    catch_up_seconds: int = 3600
    """A daemon (re)started after the time still runs the job if it is at most this late."""
    within_session: bool = False
    """Only meaningful while the session is open (a flatten after the close has nothing to act on)."""


def default_jobs(flatten_at: dt.time = dt.time(15, 55), digest_at: dt.time = dt.time(16, 0),
                 flatten_lead_seconds: int = 300) -> list[DailyJob]:
    return [
        DailyJob("margin_check", None, catch_up_seconds=24 * 3600),
        DailyJob("auto_flatten", flatten_at, close_lead_seconds=flatten_lead_seconds, catch_up_seconds=4 * 3600,
                 within_session=True),
        DailyJob("daily_digest", digest_at, close_lead_seconds=0, catch_up_seconds=6 * 3600),
    ]


class Scheduler:
    def __init__(self, calendar: ExchangeCalendar, jobs: list[DailyJob],
                 already_fired: Callable[[str, dt.date], bool] | None = None) -> None:
        self.calendar = calendar
        self.jobs = jobs
        self._fired: set[tuple[str, dt.date]] = set()
        self._already_fired = already_fired
        self.missed: list[tuple[str, dt.date, int]] = []
        """Jobs found too late to run (past their catch-up, or a session job after the close): the caller
        records each once (``tick`` never returns them as due)."""

    def fire_time(self, job: DailyJob, session: Session) -> int:
        if job.at is None:
            t = session.open_ns + job.offset_seconds * NS
        else:
            t = local_ns(session.trading_date, job.at, ZoneInfo(job.tz)) + job.offset_seconds * NS
        if job.close_lead_seconds is not None:
            t = min(t, session.close_ns - job.close_lead_seconds * NS)
        return t

    def tick(self, now_ns: int) -> list[tuple[str, dt.date, int]]:
        """Jobs due at ``now_ns`` that have not fired for their trading date: (name, date, scheduled ns)."""
        due: list[tuple[str, dt.date, int]] = []
        session = self.calendar.session_for(now_ns)
        candidates = [session]
        # In a break (before the next session's open): yesterday's session may still owe its digest. At the
        # open itself the new trading day has begun: a process whose first tick is exactly 17:00:00 CT (a replay
        # of one day file) owes nothing for a day it never saw, like one started a nanosecond later.
        if now_ns < session.open_ns:
            i = self.calendar.sessions.index(session)
            if i > 0:
                candidates.insert(0, self.calendar.sessions[i - 1])
        for s in candidates:
            for job in self.jobs:
                key = (job.name, s.trading_date)
                if key in self._fired:
                    continue
                at = self.fire_time(job, s)
                if at <= now_ns:
                    self._fired.add(key)
                    late = now_ns - at > job.catch_up_seconds * NS or (job.within_session and now_ns >= s.close_ns)
                    if self._already_fired is not None and self._already_fired(job.name, s.trading_date):
                        continue
                    if late:
                        self.missed.append((job.name, s.trading_date, at))
                        continue
                    due.append((job.name, s.trading_date, at))
        return due

    def missed_since(self, first_day: dt.date, now_ns: int) -> list[tuple[str, dt.date, int]]:
        """Jobs of sessions from ``first_day`` on that were due before ``now_ns`` and are now too late to run (a
        daemon that was down for them): (name, date, scheduled ns). Marked fired, so ``tick`` never runs them."""
        out: list[tuple[str, dt.date, int]] = []
        for s in self.calendar.sessions:
            if s.trading_date < first_day:
                continue
            if s.open_ns > now_ns:
                break
            for job in self.jobs:
                at = self.fire_time(job, s)
                late = now_ns - at > job.catch_up_seconds * NS or (job.within_session and now_ns >= s.close_ns)
                if at <= now_ns and late and (job.name, s.trading_date) not in self._fired:
                    self._fired.add((job.name, s.trading_date))
                    out.append((job.name, s.trading_date, at))
        return out

    def next_fire(self, now_ns: int) -> tuple[str, int] | None:
        """The next job and when, for the status line (``None`` beyond the calendar)."""
        best: tuple[str, int] | None = None
        session = self.calendar.session_for(now_ns)
        for s in (session, self.calendar.next_session(session.open_ns)):
            for job in self.jobs:
                if (job.name, s.trading_date) in self._fired:
                    continue
                at = self.fire_time(job, s)
                if at > now_ns and (best is None or at < best[1]):
                    best = (job.name, at)
        return best
