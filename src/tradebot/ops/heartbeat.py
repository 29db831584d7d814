"""The heartbeat file: the daemon's pulse, read by the watchdog and ``tradebot status``.

Written atomically (a temp file in the same directory, fsync, then rename) so a reader never sees half a
file, even when the daemon is killed mid-write. The writer runs off the trading loop's hot path.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

HEARTBEAT_FILE = "heartbeat.json"


def write_heartbeat(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".heartbeat.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"), default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    """The last heartbeat, or ``None`` when missing or unreadable (the caller treats both as unhealthy)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def heartbeat_age_seconds(data: dict[str, Any] | None, now_ns: int) -> float | None:
    if not data or not isinstance(data.get("ts_ns"), int):
        return None
    return (now_ns - int(data["ts_ns"])) / 1e9
