"""The closed-trade record the trading core reports and every backtest statistic, stress test and report is
computed from.

Money is integer cents and prices are integer ticks, so a P&L figure is exact and two runs that made the
same trades agree to the cent. The tick value is captured at entry (seed 002 audit C4): a tier change
mid-trade must never re-price a trade already open. A record whose P&L does not follow from its prices
is refused at construction, because every later number would silently inherit the inconsistency.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradebot.core.contracts import CONTRACTS, INSTRUMENTS, TickValue, decode_tick_value, encode_tick_value, money_cents
from tradebot.core.logging import get_logger

log = get_logger(__name__)

TRADE_HASH_VERSION = "tradebot-trades-v1"
"""Prefix of the canonical serialization; bump it if the hashed fields ever change."""


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One round trip: a quantity opened and closed at single prices (partial exits are separate records)."""

    trade_id: str
    symbol: str
    """Contract root (``ES``, ``MES``): P&L and calendar only depend on the root."""
    side: int
    """+1 long, -1 short."""
    quantity: int
    entry_ns: int
    exit_ns: int
    entry_price: int
    """Integer ticks."""
    exit_price: int
    tick_value_cents: TickValue
    """Value of one tick for one contract (one share, one crypto base unit: then an exact fraction of a cent),
    captured when the trade was opened."""
    gross_pnl_cents: int
    commission_cents: int
    """Round-trip commission and fees for the whole quantity."""
    net_pnl_cents: int
    pattern: str = ""
    regime: str = ""
    exit_reason: str = ""
    """``target``, ``stop``, ``flatten``, ``limit``, ... (free text from the execution layer)."""
    signal_id: str = ""
    confidence: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.side not in (1, -1):
            problems.append(f"side must be +1 or -1, got {self.side!r}")
        if self.symbol not in CONTRACTS and self.symbol not in INSTRUMENTS:
            problems.append(f"symbol must be a known contract root, got {self.symbol!r}")
        if self.quantity <= 0:
            problems.append(f"quantity must be positive, got {self.quantity}")
        if self.tick_value_cents <= 0:
            problems.append(f"tick value must be positive, got {self.tick_value_cents}")
        if self.exit_ns < self.entry_ns:
            problems.append("exit before entry")
        if self.commission_cents < 0:
            problems.append("negative commission")
        if not problems:
            expect = gross_cents(self.side, self.quantity, self.entry_price, self.exit_price, self.tick_value_cents)
            if self.gross_pnl_cents != expect:
                problems.append(f"gross P&L {self.gross_pnl_cents} != {expect} implied by the prices")
            if self.net_pnl_cents != self.gross_pnl_cents - self.commission_cents:
                problems.append("net P&L != gross - commission")
        if problems:
            raise ValueError(f"trade {self.trade_id!r}: " + "; ".join(problems))

    @classmethod
    def make(cls, *, trade_id: str, symbol: str, side: int, quantity: int, entry_ns: int, exit_ns: int,
             entry_price: int, exit_price: int, tick_value_cents: TickValue, commission_cents: int = 0,
             pattern: str = "", regime: str = "", exit_reason: str = "", signal_id: str = "",
             confidence: float = 0.0) -> TradeRecord:
        """Build a record with gross and net P&L derived from the prices (the usual way to make one)."""
        gross = gross_cents(side, quantity, entry_price, exit_price, tick_value_cents)
        return cls(trade_id, symbol, int(side), quantity, entry_ns, exit_ns, entry_price, exit_price,
                   tick_value_cents, gross, commission_cents, gross - commission_cents, pattern, regime,
                   exit_reason, signal_id, confidence)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tick_value_cents"] = encode_tick_value(self.tick_value_cents)
        return d

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> TradeRecord:
        """Parse a stored row (CSV strings or JSON values); raises ``ValueError`` on anything malformed."""
        try:
            values = (
                str(row["trade_id"]), str(row["symbol"]), int(row["side"]), int(row["quantity"]),
                int(row["entry_ns"]), int(row["exit_ns"]), int(row["entry_price"]), int(row["exit_price"]),
                decode_tick_value(row["tick_value_cents"]), int(row["gross_pnl_cents"]), int(row["commission_cents"]),
                int(row["net_pnl_cents"]), str(row.get("pattern") or ""), str(row.get("regime") or ""),
                str(row.get("exit_reason") or ""), str(row.get("signal_id") or ""),
                float(row.get("confidence") or 0.0))
        except KeyError as e:
            raise ValueError(f"missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad value: {e}") from None
        return cls(*values)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TradeRecord))


def gross_cents(side: int, quantity: int, entry_price: int, exit_price: int, tick_value_cents: TickValue) -> int:
    return money_cents(side * (exit_price - entry_price) * quantity * tick_value_cents)


def with_slippage(trade: TradeRecord, ticks_per_side: int) -> TradeRecord:
    """The same trade filled ``ticks_per_side`` ticks worse on entry and on exit, priced exactly.

    A long pays up on entry and sells lower; a short sells lower on entry and buys back higher. Commission
    is unchanged, so net P&L falls by exactly ``2 * ticks * quantity * tick_value``.
    """
    if ticks_per_side == 0:
        return trade
    worse = ticks_per_side * trade.side
    return TradeRecord.make(
        trade_id=trade.trade_id, symbol=trade.symbol, side=trade.side, quantity=trade.quantity,
        entry_ns=trade.entry_ns, exit_ns=trade.exit_ns, entry_price=trade.entry_price + worse,
        exit_price=trade.exit_price - worse, tick_value_cents=trade.tick_value_cents,
        commission_cents=trade.commission_cents, pattern=trade.pattern, regime=trade.regime,
        exit_reason=trade.exit_reason, signal_id=trade.signal_id, confidence=trade.confidence)


def canonical_lines(trades: Iterable[TradeRecord]) -> list[str]:
    """The fields that define a trade, one line each, sorted so list order never changes the hash.

    Identifiers, labels, commission and confidence are left out on purpose: two engines that made the
    same trades must hash equal even if they name signals differently or use another fee table.
    """
    rows = sorted((t.entry_ns, t.exit_ns, t.symbol, t.side, t.quantity, t.entry_price, t.exit_price)
                  for t in trades)
    return [f"{s}|{side}|{q}|{en}|{ex}|{ep}|{xp}" for en, ex, s, side, q, ep, xp in rows]


def trade_hash(trades: Iterable[TradeRecord]) -> str:
    """sha256 (hex) of ``TRADE_HASH_VERSION`` and :func:`canonical_lines`, newline-terminated, UTF-8."""
    h = hashlib.sha256()
    h.update((TRADE_HASH_VERSION + "\n").encode())
    for line in canonical_lines(trades):
        h.update((line + "\n").encode())
    return h.hexdigest()


def sort_trades(trades: Iterable[TradeRecord]) -> list[TradeRecord]:
    """Closed-trade order: by exit time, then entry time and id (a total order for ties)."""
    return sorted(trades, key=lambda t: (t.exit_ns, t.entry_ns, t.trade_id))


def write_trades_csv(trades: Iterable[TradeRecord], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(FIELDS))
        w.writeheader()
        for t in trades:
            w.writerow(t.to_dict())
    return path


def read_trades_csv(path: Path, stats: Counter[str] | None = None) -> list[TradeRecord]:
    """Trades from a CSV written by :func:`write_trades_csv`; malformed rows are skipped, counted, logged."""
    counts = stats if stats is not None else Counter()
    out: list[TradeRecord] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            try:
                out.append(TradeRecord.from_dict(row))
            except ValueError as e:
                counts["trade_rows_rejected"] += 1
                log.warning("trade row rejected", path=str(path), line=lineno, error=str(e))
                continue
            counts["trade_rows"] += 1
    return out
