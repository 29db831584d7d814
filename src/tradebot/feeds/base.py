"""The feed contract shared by every adapter.

A feed is an async iterator of :data:`~tradebot.core.types.FeedEvent` (raw records, gap events, feed
status). Live and historical sources honour the same contract so the daemon and replay run one code
path. Historical sources pace themselves with :class:`Pacer` to keep relative timing at a speed factor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from tradebot.core.types import FeedEvent, FeedState


def jittered_backoff(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait before reconnect number ``attempt`` (0 = the first): exponential from ``initial``, capped
    at ``maximum``, times a random 0.5-1.0 so many daemons cut off by one venue outage do not reconnect in
    lockstep. The exponent is bounded, so a feed flapping for days never overflows a float."""
    cap = min(maximum, initial * 2.0 ** min(attempt, 64))
    return float(cap * random.uniform(0.5, 1.0))


@runtime_checkable
class Feed(Protocol):
    name: str
    state: FeedState
    stats: Counter[str]

    def __aiter__(self) -> AsyncIterator[FeedEvent]: ...

    async def close(self) -> None: ...


class GeneratorFeed:
    """Base for feeds whose records come from one async generator, :meth:`_events`.

    ``close()`` may be called from another task while the generator is suspended in the pacer's sleep; then
    ``aclose()`` refuses (the generator is running), so a flag the generator checks ends it instead.
    """

    state: FeedState
    _closed: bool = False
    _gen: AsyncIterator[FeedEvent] | None = None

    def _events(self) -> AsyncIterator[FeedEvent]:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        self._closed = False
        self._gen = self._events()
        return self._gen

    async def close(self) -> None:
        self._closed = True
        self.state = FeedState.STOPPED
        gen = self._gen
        self._gen = None
        aclose = getattr(gen, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()


class Pacer:
    """Sleeps so that event timestamps replay at ``speed`` x real time (0 = as fast as possible).

    Relative timing is kept from the first event; when the consumer falls behind the pacer does not try
    to catch up by bursting, it simply stops sleeping until it is on schedule again. Even at full speed
    it yields to the loop every ``yield_every`` events so timers and signals still run.
    """

    def __init__(self, speed: float, yield_every: int = 2048) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self._t0_event: int | None = None
        self._t0_wall = 0.0
        self._count = 0
        self._yield_every = yield_every

    async def wait(self, ts_event: int) -> None:
        self._count += 1
        if self.speed == 0:
            if self._count % self._yield_every == 0:
                await asyncio.sleep(0)
            return
        if self._t0_event is None:
            self._t0_event = ts_event
            self._t0_wall = time.monotonic()
            return
        due = self._t0_wall + (ts_event - self._t0_event) / 1e9 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif self._count % self._yield_every == 0:
            await asyncio.sleep(0)


def damage_of(feed: object) -> list[str]:
    """What a file feed lost to damaged input, one line per damaged stretch (empty: the input read clean).

    File feeds read past damage instead of failing (one bad record costs one record); this is how a command
    learns that it happened, to report it and exit non-zero.
    """
    report = getattr(feed, "damage_report", None)
    return list(report()) if callable(report) else []
