"""Notification records and the outbox contract.

Anything that wants to tell the operator something builds a :class:`Notification` and hands it over without
waiting: the execution manager writes it to the SQLite outbox in the same transaction as its journal entry
(so critical alerts survive a crash), other components enqueue it in memory. A separate worker delivers.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol


class Severity(enum.StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    CRITICAL = "critical"


# Seed 002's table, plus the watchdog's and the order-flow exit signal.
EVENT_KINDS = (
    "system_reboot", "system_start", "system_stop", "high_margin_day", "trade_opened", "trade_closed",
    "tier_change", "connection_lost", "connection_restored", "loss_limit_hit", "profit_target_hit",
    "auto_flatten", "daily_digest", "watchdog", "exit_signal", "halted", "resumed", "component_error",
)

COLLAPSIBLE_KINDS = frozenset({"connection_lost", "connection_restored", "component_error", "watchdog",
                               "notifier", "disk_full"})
"""Conditions that can repeat many times a minute (a flapping feed, an exception on every tick, a check that
stays red). Only these collapse, and only with their own *subject* (the same feed, component, check); every
other kind (trades, limits, halts, tier changes, recovery, digests) is one message per event, in order."""

STATE_PAIRS = {"connection_lost": "connection", "connection_restored": "connection"}
"""Kinds that are two states of one thing: their collapse summaries go out together, the latest state last, so a
flapping feed's final message always tells the state it is in now."""


@dataclass(frozen=True)
class Notification:
    kind: str
    severity: Severity
    title: str
    ts_ns: int
    description: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    attachment: bytes | None = field(default=None, repr=False)
    attachment_name: str = "chart.png"
    subject: str = ""
    """What the condition is about (a feed, a component, a check): repeats collapse on ``kind`` + ``subject``."""
    repeats: int = 0
    """A collapse summary: how many occurrences of the condition this one message stands for (0 = one event)."""

    @property
    def collapsible(self) -> bool:
        return self.kind in COLLAPSIBLE_KINDS and not self.repeats

    @property
    def dedupe_key(self) -> str:
        return f"{self.kind}|{self.subject or self.title}"

    @property
    def state_group(self) -> str:
        """Windows with the same group close together (``STATE_PAIRS``); otherwise the key itself."""
        pair = STATE_PAIRS.get(self.kind)
        return f"{pair}|{self.subject or self.title}" if pair else self.dedupe_key

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "severity": str(self.severity), "title": self.title,
                           "ts_ns": self.ts_ns, "description": self.description,
                           "fields": [list(f) for f in self.fields],
                           "attachment_name": self.attachment_name if self.attachment else None,
                           "subject": self.subject, "repeats": self.repeats})

    @classmethod
    def from_json(cls, text: str, attachment: bytes | None = None) -> Notification:
        d: dict[str, Any] = json.loads(text)
        return cls(kind=str(d["kind"]), severity=Severity(d["severity"]), title=str(d["title"]),
                   ts_ns=int(d["ts_ns"]), description=str(d.get("description", "")),
                   fields=tuple((str(a), str(b)) for a, b in d.get("fields", [])), attachment=attachment,
                   attachment_name=str(d.get("attachment_name") or "chart.png"), subject=str(d.get("subject") or ""),
                   repeats=int(d.get("repeats") or 0))


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
