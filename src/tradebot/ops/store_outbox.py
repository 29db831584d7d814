"""The SQLite outbox as the notifier's :class:`~tradebot.ops.notifications.Outbox`.

The execution manager writes outbox rows inside its journal transactions (so an alert about a fill exists
exactly when the fill does); the daemon's own alerts (start, reboot, connection lost) are added here. Either
way delivery state lives in the database, so undelivered critical alerts survive a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradebot.ops.notifications import Notification, Severity
from tradebot.state import queries
from tradebot.state.store import StateStore

_SEVERITIES = {s.value for s in Severity}


def _fields(raw: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, dict):
        return tuple((str(k), str(v)) for k, v in raw.items())
    if isinstance(raw, list):
        return tuple((str(p[0]), str(p[1])) for p in raw if isinstance(p, list | tuple) and len(p) == 2)
    return ()


def _int(raw: Any) -> int:
    try:
        return max(0, int(raw or 0))
    except (TypeError, ValueError):
        return 0


class StoreOutbox:
    def __init__(self, store: StateStore, attachment_dir: Path | None = None, max_attempts: int = 1000) -> None:
        self.store = store
        self.attachment_dir = attachment_dir
        self.max_attempts = max_attempts

    def add(self, n: Notification) -> int:
        payload: dict[str, Any] = {"title": n.title, "description": n.description,
                                   "fields": [list(f) for f in n.fields]}
        if n.subject:
            payload["subject"] = n.subject
        if n.repeats:
            payload["repeats"] = n.repeats
        if n.attachment and self.attachment_dir is not None:
            # Attachments live beside the database (the outbox row names the file) so a digest chart survives
            # a restart with the row that needs it.
            self.attachment_dir.mkdir(parents=True, exist_ok=True)
            path = self.attachment_dir / f"{n.kind}-{n.ts_ns}-{n.attachment_name}"
            path.write_bytes(n.attachment)
            payload["attachment_path"] = str(path)
            payload["attachment_name"] = n.attachment_name
        with self.store.transaction() as tx:
            tx.outbox(n.ts_ns, n.kind, str(n.severity), payload)
        return queries.last_outbox_id(self.store)

    def pending(self, limit: int = 50) -> list[tuple[int, Notification]]:
        out = []
        for item in self.store.pending_notifications(limit, self.max_attempts):
            p = item.payload if isinstance(item.payload, dict) else {}
            sev = Severity(item.severity) if item.severity in _SEVERITIES else Severity.WARNING
            attachment = None
            if p.get("attachment_path"):
                try:
                    attachment = Path(str(p["attachment_path"])).read_bytes()
                except OSError:
                    attachment = None  # the chart is gone; the text still goes out
            out.append((item.id, Notification(item.kind, sev, str(p.get("title", item.kind)), item.created_ns,
                                              str(p.get("description", "")), _fields(p.get("fields")), attachment,
                                              str(p.get("attachment_name") or "chart.png"),
                                              str(p.get("subject") or ""), _int(p.get("repeats")))))
        return out

    def mark_delivered(self, outbox_id: int, ts_ns: int) -> None:
        self.store.mark_delivered(outbox_id, ts_ns)

    def mark_attempt(self, outbox_id: int, error: str) -> None:
        self.store.mark_failed(outbox_id, error)

    def mark_ambiguous(self, outbox_id: int) -> None:
        self.store.mark_ambiguous(outbox_id)
