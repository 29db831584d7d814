"""The one time zone the operator sees: ``TRADEBOT_DISPLAY_TZ`` (default America/New_York), always labelled.

Inside, time is UTC nanoseconds. Everything shown to a person (status, trades, signals, decisions, footprint tables
and charts, the digest, alerts, ``make run`` progress, backtest trade lists and hour tables) goes through
:func:`fmt_ts` / :func:`local`, so one setting changes them all and every time carries its zone's abbreviation
(EST/EDT, CST/CDT, ...). The CLI sets the zone from the settings at start-up (:func:`set_display_tz`); library code
that has no settings uses the process-wide value. Job times (15:55 auto-flatten, 16:00 digest) and the trading
window stay in their own configured zones: those are rules, not display.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_DISPLAY_TZ = "America/New_York"
_current = DEFAULT_DISPLAY_TZ


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def set_display_tz(name: str) -> None:
    global _current
    _zone(name)  # fail here, not at the first printed time
    _current = name


def display_tz() -> ZoneInfo:
    return _zone(_current)


def display_tz_name() -> str:
    return _current


def local(ts_ns: int) -> dt.datetime:
    """``ts_ns`` (UTC ns) as an aware datetime in the display zone."""
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=display_tz()).replace(
        microsecond=(ts_ns % 1_000_000_000) // 1000)


def fmt_ts(ts_ns: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``2025-03-11 10:42:05 EDT``: the time in the display zone with the zone's abbreviation."""
    t = local(ts_ns)
    return f"{t.strftime(fmt)} {t.tzname()}"


def zone_label(ts_ns: int | None = None) -> str:
    """The abbreviation in force at ``ts_ns`` (now when None), for column headers and axis labels."""
    t = local(ts_ns) if ts_ns is not None else dt.datetime.now(display_tz())
    return t.tzname() or _current
