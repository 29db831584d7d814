"""Exchange time: which trading session a UTC-nanosecond timestamp belongs to.

Sessions, holidays and early closes come from ``pandas_market_calendars`` (CME Globex calendars);
regular-trading-hours windows are local US Central times converted through IANA zones, so DST is never
a hard-coded offset. Lookups are a bisect over precomputed int64 arrays: cheap enough per bar.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import warnings
from dataclasses import dataclass
from zoneinfo import ZoneInfo

CT = ZoneInfo("America/Chicago")
ET = ZoneInfo("America/New_York")
UTC = dt.UTC
NS = 1_000_000_000

_CALENDAR_NAMES = {"equity": "CME_Equity", "energy": "CMEGlobex_Energy", "metals": "CMEGlobex_Metals"}
_RTH = {  # local Chicago time
    "equity": (dt.time(8, 30), dt.time(15, 0)),
    "energy": (dt.time(8, 0), dt.time(13, 30)),
    "metals": (dt.time(7, 20), dt.time(12, 30)),
}


@dataclass(frozen=True, slots=True)
class Session:
    trading_date: dt.date
    open_ns: int
    close_ns: int
    rth_open_ns: int
    rth_close_ns: int
    early_close: bool

    def contains(self, ts_ns: int) -> bool:
        return self.open_ns <= ts_ns < self.close_ns

    def in_rth(self, ts_ns: int) -> bool:
        return self.rth_open_ns <= ts_ns < self.rth_close_ns


def to_ns(when: dt.datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    delta = when.astimezone(UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def from_ns(ts_ns: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    sec, rem = divmod(ts_ns, NS)
    return (dt.datetime.fromtimestamp(sec, tz=UTC) + dt.timedelta(microseconds=rem // 1000)).astimezone(tz)


def local_ns(day: dt.date, at: dt.time, tz: dt.tzinfo = CT) -> int:
    return to_ns(dt.datetime.combine(day, at, tzinfo=tz))


class ExchangeCalendar:
    """Session lookups for one calendar template over a span of years.

    Templates: ``equity``/``energy``/``metals`` (CME Globex), ``nyse`` (US stocks, 09:30-16:00 ET) and
    ``nyse_ext`` (the same days with pre/post market, 04:00-20:00 ET; RTH stays 09:30-16:00), ``crypto`` and
    ``crypto@HH:MM`` (every day, the trading day running from HH:MM UTC to HH:MM UTC the next day).
    """

    def __init__(self, template: str, first_year: int = 2014, last_year: int = 2032) -> None:
        self.twenty_four_seven = template.startswith("crypto")
        if template in ("nyse", "nyse_ext"):
            self._init_nyse(template, first_year, last_year)
            return
        if self.twenty_four_seven:
            self._init_crypto(template, first_year, last_year)
            return
        if template not in _CALENDAR_NAMES:
            raise ValueError(f"unknown session template {template!r}; known: {', '.join(_CALENDAR_NAMES)}")
        import pandas_market_calendars as mcal

        self.template = template
        cal = mcal.get_calendar(_CALENDAR_NAMES[template])
        sched = cal.schedule(f"{first_year}-01-01", f"{last_year}-12-31")
        federal = _federal_holidays(first_year, last_year)
        rth_open_t, rth_close_t = _RTH[template]
        self.sessions: list[Session] = []
        regular_close = {}
        for day, row in sched.iterrows():
            d = day.date()
            if template == "equity" and d == _good_friday(d.year) and not _jobs_report_friday(d):
                continue  # CME equity index futures are closed on Good Friday unless it is a jobs-report day
            open_ns = to_ns(row["market_open"].to_pydatetime())
            close_ns = to_ns(row["market_close"].to_pydatetime())
            if template == "equity" and d not in federal and from_ns(close_ns, CT).time() == dt.time(12, 0):
                # CME equity index early closes on the eve/day after a holiday halt at 12:15 CT (the Sierra
                # ES bars trade at 12:10 CT on 2024-07-03 and 2024-11-29); the library says 12:00, which is
                # only right on the holidays themselves (Thanksgiving, MLK, ...).
                close_ns = local_ns(d, dt.time(12, 15))
            regular_close[d] = close_ns
            rth_open = local_ns(d, rth_open_t)
            rth_close = min(local_ns(d, rth_close_t), close_ns)
            early = from_ns(close_ns, CT).time() < dt.time(16, 0)
            self.sessions.append(Session(d, open_ns, close_ns, rth_open, rth_close, early))
        self._index()

    def _index(self) -> None:
        self._opens = [s.open_ns for s in self.sessions]
        self._closes = [s.close_ns for s in self.sessions]
        self._by_date = {s.trading_date: s for s in self.sessions}
        self.first_date = self.sessions[0].trading_date
        self.last_date = self.sessions[-1].trading_date

    def _init_nyse(self, template: str, first_year: int, last_year: int) -> None:
        import pandas_market_calendars as mcal

        self.template = template
        ext = template == "nyse_ext"
        with warnings.catch_warnings():  # the library's own pandas deprecation, not ours to act on
            warnings.simplefilter("ignore")
            sched = mcal.get_calendar("NYSE").schedule(f"{first_year}-01-01", f"{last_year}-12-31")
        opens = [int(t.value) for t in sched["market_open"]]  # Timestamp.value: UTC ns whatever the unit
        closes = [int(t.value) for t in sched["market_close"]]
        self.sessions = []
        for day, rth_open, rth_close in zip(sched.index, opens, closes, strict=True):
            d = day.date()
            early = from_ns(rth_close, ET).time() < dt.time(16, 0)
            # Extended hours: 04:00-20:00 ET; after a 13:00 early close the post-market ends at 17:00.
            open_ns = local_ns(d, dt.time(4), ET) if ext else rth_open
            close_ns = local_ns(d, dt.time(17 if early else 20), ET) if ext else rth_close
            self.sessions.append(Session(d, open_ns, close_ns, rth_open, rth_close, early))
        self._index()

    def _init_crypto(self, template: str, first_year: int, last_year: int) -> None:
        self.template = template
        h, m, sec = (0, 0, 0)
        if "@" in template:
            parts = [int(x) for x in template.split("@", 1)[1].split(":")]
            h, m, sec = [*parts, 0, 0, 0][:3]
        boundary = dt.time(h, m, sec)
        self.sessions = []
        d = dt.date(first_year, 1, 1)
        end = dt.date(last_year, 12, 31)
        while d <= end:
            # The trading day named d ends at the boundary on d (a 17:00 boundary: 17:00 the day before to 17:00).
            close_ns = local_ns(d, boundary, UTC)
            open_ns = close_ns - 86_400 * NS if (h, m, sec) != (0, 0, 0) else local_ns(d, boundary, UTC)
            if (h, m, sec) == (0, 0, 0):
                close_ns = open_ns + 86_400 * NS
            self.sessions.append(Session(d, open_ns, close_ns, open_ns, close_ns, False))
            d += dt.timedelta(days=1)
        self._index()

    def session_at(self, ts_ns: int) -> Session | None:
        """The session open at ``ts_ns``, or ``None`` (maintenance break, weekend, holiday)."""
        i = bisect.bisect_right(self._opens, ts_ns) - 1
        if i >= 0 and ts_ns < self._closes[i]:
            return self.sessions[i]
        return None

    def session_for(self, ts_ns: int) -> Session:
        """The session a timestamp counts towards: the open one, else the next to open.

        Used for trading-day boundaries (cumulative delta, daily P&L): a print in the daily break belongs
        to the session that opens next, exactly as the 17:00 CT boundary says.
        """
        i = bisect.bisect_right(self._opens, ts_ns) - 1
        if i >= 0 and ts_ns < self._closes[i]:
            return self.sessions[i]
        if i + 1 < len(self.sessions):
            return self.sessions[i + 1]
        raise ValueError(f"timestamp {from_ns(ts_ns).isoformat()} is beyond the calendar's span")

    def trading_day(self, ts_ns: int) -> dt.date:
        return self.session_for(ts_ns).trading_date

    def session_on(self, day: dt.date) -> Session | None:
        """The session whose trading date is ``day`` (``None`` on a holiday or weekend)."""
        return self._by_date.get(day)

    def is_trading_day(self, day: dt.date) -> bool:
        return day in self._by_date

    def next_session(self, ts_ns: int) -> Session:
        i = bisect.bisect_right(self._opens, ts_ns)
        if i >= len(self.sessions):
            raise ValueError("beyond the calendar's span")
        return self.sessions[i]

    def sessions_between(self, start: dt.date, end: dt.date) -> list[Session]:
        return [s for s in self.sessions if start <= s.trading_date <= end]


def _federal_holidays(first_year: int, last_year: int) -> set[dt.date]:
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = USFederalHolidayCalendar().holidays(f"{first_year}-01-01", f"{last_year}-12-31")
    return {d.date() for d in days}


@functools.lru_cache(maxsize=8)
def calendar_for(template: str) -> ExchangeCalendar:
    return ExchangeCalendar(template)


def _good_friday(year: int) -> dt.date:
    """Two days before Western Easter (the anonymous Gregorian computus)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * ell) // 433
    month = (h + ell - 7 * m + 90) // 25
    day = (h + ell - 7 * m + 33 * month + 19) % 32
    return dt.date(year, month, day) - dt.timedelta(days=2)


def _jobs_report_friday(day: dt.date) -> bool:
    """Good Friday on the first Friday of April: the BLS Employment Situation comes out that morning and CME keeps
    equity index futures open until 08:15 CT (2010, 2012, 2015, 2021, 2023, 2026). Every other Good Friday
    (2024-03-29, 2025-04-18, 2027-03-26, ...) is a full CME equity holiday, although ``pandas_market_calendars``
    (since its Good-Friday change for 2026) gives every Good Friday after 2022 an 08:15 CT session."""
    return day.month == 4 and day.day <= 7
