"""Order intents: the router's output and the execution manager's input.

Defined in core because both stages speak it; prices are integer ticks so a stop or target can never be off
the grid, and the signal id is deterministic so a restarted daemon derives the same client order ids.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from tradebot.core.types import Side


class EntryType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    signal_id: str
    symbol: str
    """Contract root (``ES``)."""
    side: Side
    """BUY opens a long bracket, SELL a short one."""
    quantity: int
    entry_type: EntryType
    entry_price: int | None
    """Ticks; ``None`` for market entries."""
    stop_price: int
    target_price: int
    ts_ns: int
    """Decision time (event time, so replay and live agree)."""
    confidence: float
    pattern: str
    regime: str = ""
    reasons: tuple[str, ...] = ()


def make_signal_id(symbol: str, ts_ns: int, pattern: str, extra: str = "") -> str:
    """Stable id of a signal: same inputs, same id, across restarts and between replay and live."""
    digest = hashlib.sha256(f"{symbol}|{ts_ns}|{pattern}|{extra}".encode()).hexdigest()[:12]
    return f"{symbol}-{ts_ns}-{digest}"
