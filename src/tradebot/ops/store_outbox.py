"""The SQLite outbox as the notifier's :class:`~tradebot.ops.notifications.Outbox`.

The execution manager writes outbox rows inside its journal transactions (so an alert about a fill exists
exactly when the fill does); the daemon's own alerts (start, reboot, connection lost) are added here. Either
way delivery state lives in the database, so undelivered critical alerts survive a restart.
"""

from __future__ import annotations

from pathlib import Path

from tradebot.core.notifications import Notification
from tradebot.state import queries
from tradebot.state.store import StateStore


class StoreOutbox:
    def __init__(self, store: StateStore, attachment_dir: Path | None = None, max_attempts: int = 1000) -> None:
        self.store = store
        self.attachment_dir = attachment_dir
        self.max_attempts = max_attempts

    def add(self, n: Notification) -> int:
        payload = n.to_outbox()
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
            attachment = None
            if p.get("attachment_path"):
                try:
                    attachment = Path(str(p["attachment_path"])).read_bytes()
                except OSError:
                    attachment = None  # the chart is gone; the text still goes out
            out.append((item.id, Notification.from_outbox(item.kind, item.severity, item.created_ns, p, attachment)))
        return out

    def mark_delivered(self, outbox_id: int, ts_ns: int) -> None:
        self.store.mark_delivered(outbox_id, ts_ns)

    def mark_attempt(self, outbox_id: int, error: str) -> None:
        self.store.mark_failed(outbox_id, error)

    def mark_ambiguous(self, outbox_id: int) -> None:
        self.store.mark_ambiguous(outbox_id)
