"""Discord webhook payloads within Discord's documented limits.

Limits (Discord API docs, "Embed Limits"): title 256, description 4096, 25 fields, field name 256, field value
1024, footer 2048, and 6000 characters over the whole embed. Anything longer is cut with an ellipsis rather than
rejected by Discord with a 400 that would lose the alert.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tradebot.core.notifications import Notification, Severity

COLOURS = {Severity.INFO: 0x3498DB, Severity.SUCCESS: 0x2ECC71, Severity.WARNING: 0xF39C12,
           Severity.CRITICAL: 0xE74C3C}
TITLE_MAX, DESC_MAX, FIELDS_MAX, NAME_MAX, VALUE_MAX, FOOTER_MAX, TOTAL_MAX = 256, 4096, 25, 256, 1024, 2048, 6000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_text(value: object) -> str:
    """A field's value as the operator reads it (structured values as Python shows them, as they always were)."""
    return value if isinstance(value, str) else str(value)


def build_embed(n: Notification, footer: str = "tradebot") -> dict[str, Any]:
    """``n.repeats`` (a collapse summary) shows as "(xN)" after the title."""
    title = _cut(n.title + (f" (x{n.repeats})" if n.repeats else ""), TITLE_MAX)
    desc = _cut(n.description, DESC_MAX)
    foot = _cut(footer, FOOTER_MAX)
    budget = TOTAL_MAX - len(title) - len(desc) - len(foot)
    fields = []
    for name, value in n.fields[:FIELDS_MAX]:
        name_c, value_c = _cut(name or "-", NAME_MAX), _cut(field_text(value) or "-", VALUE_MAX)
        if len(name_c) + len(value_c) > budget:
            break
        budget -= len(name_c) + len(value_c)
        fields.append({"name": name_c, "value": value_c, "inline": len(value_c) <= 40})
    ts = dt.datetime.fromtimestamp(n.ts_ns / 1e9, tz=dt.UTC).isoformat()
    embed: dict[str, Any] = {"title": title, "color": COLOURS[n.severity], "timestamp": ts, "footer": {"text": foot}}
    if desc:
        embed["description"] = desc
    if fields:
        embed["fields"] = fields
    if n.attachment:
        embed["image"] = {"url": f"attachment://{n.attachment_name}"}
    return embed


def build_payload(n: Notification, username: str = "tradebot") -> dict[str, Any]:
    return {"username": username, "embeds": [build_embed(n)], "allowed_mentions": {"parse": []}}
