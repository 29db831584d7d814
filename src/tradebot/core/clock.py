"""Clocks. Inside, time is UTC nanoseconds; the daemon runs on wall time, replay on event time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock tests and replays move by hand (e.g. to the last event's timestamp)."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def set(self, ts_ns: int) -> None:
        self._now = ts_ns

    def advance(self, ns: int) -> None:
        self._now += ns
