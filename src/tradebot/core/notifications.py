"""One notification type and one severity scale for every part of tradebot that tells the operator something.

The execution manager (trades, limits, halts), the daemon (start, stop, connection), the watchdog, the digest
and the order-flow alerts all speak this vocabulary, so every delivery path (the SQLite outbox, Discord, the
log, the dashboard) handles exactly one shape. It lives in ``core`` because the earliest stage that needs it
(order flow) may not import from execution or ops.

Every kind a component may send is a :class:`NotificationKind`: ``TRADEBOT_DAEMON__NOTIFY_DISABLED`` is checked
against that list, so a misspelt kind is a configuration error rather than an alert that keeps arriving.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    INFO = "info"
    SUCCESS = "success"
    """Good news (a profitable day, a recovered check): shown green, logged as info."""
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order of urgency (``INFO`` and ``SUCCESS`` rank equal): compare severities by this, never by text."""
        return _RANK[self]


_RANK = {Severity.INFO: 1, Severity.SUCCESS: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


class NotificationKind(enum.StrEnum):
    """Every kind of notification tradebot sends (the outbox's ``kind`` column, ``NOTIFY_DISABLED``'s words)."""

    # the daemon
    SYSTEM_REBOOT = "system_reboot"
    SYSTEM_START = "system_start"
    SYSTEM_STOP = "system_stop"
    CONNECTION_LOST = "connection_lost"
    CONNECTION_RESTORED = "connection_restored"
    COMPONENT_ERROR = "component_error"
    DISK_FULL = "disk_full"
    HALTED = "halted"
    """The operator (or a recovery mismatch at start-up) halted trading."""
    RESUMED = "resumed"
    JOB_MISSED = "job_missed"
    BROKER_UNAVAILABLE = "broker_unavailable"
    """Live mode: the broker cannot be reached at start (retried with backoff)."""
    BROKER_CONNECTED = "broker_connected"
    BROKER_DISCONNECTED = "broker_disconnected"
    """Live mode: the broker connection dropped; entries are blocked until it is back."""
    BROKER_ALERT = "broker_alert"
    """An adapter's own alert (Rithmic: forced logout, fail-closed halt, fills recovered after an outage)."""
    # execution
    TRADE_OPENED = "trade_opened"
    TRADE_CLOSED = "trade_closed"
    ORDER_REJECTED = "order_rejected"
    EXECUTION_ANOMALY = "execution_anomaly"
    TRADING_STATE = "trading_state"
    TIER_CHANGE = "tier_change"
    PROFIT_TARGET_HIT = "profit_target_hit"
    LOSS_LIMIT_HIT = "loss_limit_hit"
    AUTO_FLATTEN = "auto_flatten"
    MARGIN_HIGH = "margin_high"
    EXIT_SIGNAL = "exit_signal"
    RECOVERY_MISMATCH = "recovery_mismatch"
    """At start-up the journal and the broker disagree: halted (fail closed)."""
    RECONCILE_MISMATCH = "reconcile_mismatch"
    """The periodic reconciliation found a persistent difference: halted (fail closed)."""
    STOP_REPLACED = "stop_replaced"
    POSITION_ADOPTED = "position_adopted"
    """The operator adopted a position found at the broker (``tradebot adopt``): now managed, with a stop."""
    UNPROTECTED_POSITION = "unprotected_position"
    """A position had no stop at the broker and could not be protected: flattened."""
    PROPFIRM = "propfirm"
    """A prop-firm account rule: headroom running low, a breach (halted, flattened), a breach cleared."""
    # ops
    DAILY_DIGEST = "daily_digest"
    WATCHDOG = "watchdog"
    DEADMAN = "deadman"
    """The watchdog's dead-man's switch closed (or failed to close) a position of a stalled daemon."""


COLLAPSIBLE_KINDS = frozenset({NotificationKind.CONNECTION_LOST, NotificationKind.CONNECTION_RESTORED,
                               NotificationKind.COMPONENT_ERROR, NotificationKind.WATCHDOG,
                               NotificationKind.DISK_FULL})
"""Conditions that can repeat many times a minute (a flapping feed, an exception on every tick, a check that
stays red). Only these collapse, and only with their own *subject* (the same feed, component, check); every
other kind (trades, limits, halts, tier changes, recovery, digests) is one message per event, in order."""

STATE_PAIRS = {NotificationKind.CONNECTION_LOST: "connection", NotificationKind.CONNECTION_RESTORED: "connection"}
"""Kinds that are two states of one thing: their collapse summaries go out together, the latest state last, so a
flapping feed's final message always tells the state it is in now."""

Fields = tuple[tuple[str, Any], ...]
"""Named values in display order; a name may repeat (two trades in one minute in the digest). Values are JSON
data (text, numbers, booleans, lists, maps): the outbox keeps them as they are, Discord shows them as text."""


def fields_of(values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Fields:
    if isinstance(values, Mapping):
        return tuple(values.items())
    return tuple((str(k), v) for k, v in values)


@dataclass(frozen=True)
class Notification:
    kind: NotificationKind
    severity: Severity
    title: str
    ts_ns: int = 0
    """UTC ns of the event it is about; 0: the time of the journal record that carries it."""
    description: str = ""
    fields: Fields = ()
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

    def field(self, name: str, default: Any = None) -> Any:
        """The first value named ``name``."""
        for k, v in self.fields:
            if k == name:
                return v
        return default

    def to_outbox(self) -> dict[str, Any]:
        """The outbox row's payload (kind, severity and time are columns of their own)."""
        payload: dict[str, Any] = {"title": self.title, "fields": [[k, v] for k, v in self.fields]}
        if self.description:
            payload["description"] = self.description
        if self.subject:
            payload["subject"] = self.subject
        if self.repeats:
            payload["repeats"] = self.repeats
        return payload

    @classmethod
    def from_outbox(cls, kind: str, severity: str, created_ns: int, payload: Any,
                    attachment: bytes | None = None) -> Notification:
        """A row read back; never raises on a damaged payload (what can be read goes out, the rest defaults)."""
        p = payload if isinstance(payload, dict) else {}
        sev = Severity(severity) if severity in _SEVERITIES else Severity.WARNING
        k: Any = NotificationKind(kind) if kind in _KINDS else kind  # a newer build's kind still goes out
        return cls(k, sev, str(p.get("title", kind)), created_ns, str(p.get("description", "")),
                   _stored_fields(p.get("fields")), attachment, str(p.get("attachment_name") or "chart.png"),
                   str(p.get("subject") or ""), _int(p.get("repeats")))


_SEVERITIES = frozenset(s.value for s in Severity)
_KINDS = frozenset(k.value for k in NotificationKind)


def _stored_fields(raw: Any) -> Fields:
    if isinstance(raw, dict):  # rows written before the fields became ordered pairs
        return tuple((str(k), v) for k, v in raw.items())
    if isinstance(raw, list):
        return tuple((str(p[0]), p[1]) for p in raw if isinstance(p, list | tuple) and len(p) == 2)
    return ()


def _int(raw: Any) -> int:
    try:
        return max(0, int(raw or 0))
    except (TypeError, ValueError):
        return 0


def parse_kinds(text: str) -> frozenset[NotificationKind]:
    """``"trade_opened, watchdog"`` -> the kinds; an unknown word raises ``ValueError`` naming the valid kinds."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in words if w not in _KINDS]
    if bad:
        raise ValueError(f"unknown notification kind(s) {', '.join(map(repr, bad))}; valid kinds: "
                         f"{', '.join(k.value for k in NotificationKind)}")
    return frozenset(NotificationKind(w) for w in words)
