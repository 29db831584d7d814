"""The execution session clock: which trading day an event belongs to, when the session ends, when to flatten.

Kept apart from the manager so the calendar arithmetic (early closes, DST, 24/7 crypto days) is tested on
its own and the manager only acts on what the clock says: "a new trading day started" (journal it, clear
daily halts, re-check tiers and margins) or "it is flatten time" (flatten). The clock never journals and
never talks to a broker; it only moves forward.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tradebot.core.calendar import ET, ExchangeCalendar, local_ns
from tradebot.core.config import Settings

FAR = 1 << 62
"""A time no event reaches ("never")."""
_FIVE_MIN_NS = 300 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class Step:
    """What an event time means for the session: ``ok`` False when it lies outside the exchange calendar."""

    ok: bool
    new_day: dt.date | None = None
    """A later trading day began: the manager starts it (journals it) before handling the event."""


class SessionClock:
    """Event time, the current session's bounds and today's flatten time; only ever rolls forward."""

    def __init__(self, settings: Settings, calendar: ExchangeCalendar) -> None:
        self.calendar = calendar
        self.auto_flatten = settings.execution.auto_flatten
        self.flatten_at = settings.execution.auto_flatten_time
        self.crypto_flatten_at_day_end = settings.coinbase.flatten_at_day_end
        self.now = 0
        """Latest event time seen (UTC ns): the time of decisions that have no event of their own."""
        self.open_ns = FAR
        self.close_ns = 0
        self.day = ""
        """The current session's trading day (ISO date)."""
        self.flatten_at_ns = FAR
        """When today's auto-flatten is due; ``FAR`` when disabled or already done today."""
        self.flat_by: tuple[dt.time, dt.tzinfo] | None = None
        """A prop-firm account's flat-by time (exchange-local): the flatten comes then at the latest, even with the
        auto-flatten off (set by :class:`~tradebot.execution.propfirm_guard.PropFirmGuard`)."""

    def touch(self, ts_ns: int) -> None:
        if ts_ns > self.now:
            self.now = ts_ns

    def set_times(self, trading_day: str | None, auto_flatten_day: str | None, now_ns: int) -> None:
        """Bounds of ``trading_day``'s session (or of the session containing ``now_ns`` when there is none)."""
        sess = self.calendar.session_on(dt.date.fromisoformat(trading_day)) if trading_day else None
        if sess is None:
            sess = self.calendar.session_for(now_ns)
        self.open_ns, self.close_ns = sess.open_ns, sess.close_ns
        self.day = sess.trading_date.isoformat()
        self.flatten_at_ns = self.flatten_time(sess.trading_date, sess.close_ns)
        if (not self.auto_flatten and self.flat_by is None) or auto_flatten_day == self.day:
            self.flatten_at_ns = FAR

    def flatten_time(self, day: dt.date, close_ns: int) -> int:
        """The configured ET time, or five minutes before an early close; 24/7 crypto: before the day boundary."""
        if getattr(self.calendar, "twenty_four_seven", False):
            return close_ns - _FIVE_MIN_NS if self.crypto_flatten_at_day_end else FAR
        at = local_ns(day, self.flatten_at, ET) if self.auto_flatten else FAR
        if self.flat_by is not None:  # a prop-firm account's flat-by time, in the exchange's zone
            at = min(at, local_ns(day, *self.flat_by))
        return min(at, close_ns - _FIVE_MIN_NS)

    def flatten_due_on(self, ts_ns: int) -> str | None:
        """The trading day whose flatten time ``ts_ns`` has reached (``None``: not yet, or outside the calendar)."""
        sess = self.calendar.session_for(ts_ns)
        if ts_ns < self.flatten_time(sess.trading_date, sess.close_ns):
            return None
        return sess.trading_date.isoformat()

    def flattened(self, day: str) -> None:
        """Today's auto-flatten is done: no second one this session."""
        if day == self.day:
            self.flatten_at_ns = FAR

    def advance(self, ts_ns: int, trading_day: str | None, auto_flatten_day: str | None) -> Step:
        """Event time moved: a later session rolls the day (the manager starts it), else the clock just ticks.

        A timestamp from before the current session (stale or garbage) never takes the trading day back.
        """
        if ts_ns >= self.close_ns:
            try:
                sess = self.calendar.session_for(ts_ns)
            except ValueError:
                return Step(False)
            self.touch(ts_ns)
            if sess.trading_date.isoformat() != trading_day:
                return Step(True, sess.trading_date)
            self.set_times(trading_day, auto_flatten_day, ts_ns)
        else:
            self.touch(ts_ns)
        return Step(True)

    def day_of(self, ts_ns: int) -> str:
        """Trading day of an event (fast inside the current session)."""
        if self.open_ns <= ts_ns < self.close_ns:
            return self.day
        return self.calendar.session_for(ts_ns).trading_date.isoformat()
