"""The outbox contract (the notification type itself is :mod:`tradebot.core.notifications`).

Anything that wants to tell the operator something builds a :class:`Notification` and hands it over without
waiting: the execution manager writes it to the SQLite outbox in the same transaction as its journal entry
(so critical alerts survive a crash), other components enqueue it in memory. A separate worker delivers.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from tradebot.core.notifications import (
    COLLAPSIBLE_KINDS,
    STATE_PAIRS,
    Notification,
    NotificationKind,
    Severity,
)

__all__ = ["COLLAPSIBLE_KINDS", "STATE_PAIRS", "MemoryOutbox", "Notification", "NotificationKind", "Outbox",
           "Severity"]


class Outbox(Protocol):
    """Durable queue of notifications; the SQLite store implements it, tests use :class:`MemoryOutbox`."""

    def add(self, n: Notification) -> int: ...

    def pending(self, limit: int = 50) -> list[tuple[int, Notification]]: ...

    def mark_delivered(self, outbox_id: int, ts_ns: int) -> None: ...

    def mark_attempt(self, outbox_id: int, error: str) -> None: ...

    def mark_ambiguous(self, outbox_id: int) -> None:
        """An attempt whose outcome is unknown (sent, no answer): a later success may be a duplicate."""


class MemoryOutbox:
    def __init__(self) -> None:
        self._rows: dict[int, tuple[Notification, int | None, int, str]] = {}
        self._next = 1
        self.ambiguous: Counter[int] = Counter()

    def add(self, n: Notification) -> int:
        i = self._next
        self._next += 1
        self._rows[i] = (n, None, 0, "")
        return i

    def pending(self, limit: int = 50) -> list[tuple[int, Notification]]:
        return [(i, r[0]) for i, r in sorted(self._rows.items()) if r[1] is None][:limit]

    def mark_delivered(self, outbox_id: int, ts_ns: int) -> None:
        n, _, attempts, err = self._rows[outbox_id]
        self._rows[outbox_id] = (n, ts_ns, attempts + 1, err)

    def mark_attempt(self, outbox_id: int, error: str) -> None:
        n, d, attempts, _ = self._rows[outbox_id]
        self._rows[outbox_id] = (n, d, attempts + 1, error)

    def mark_ambiguous(self, outbox_id: int) -> None:
        self.ambiguous[outbox_id] += 1

    def attempts(self, outbox_id: int) -> int:
        return self._rows[outbox_id][2]
