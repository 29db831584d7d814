"""Positions and P&L in exact integers.

A position is a FIFO list of lots, each carrying the tick value of its contract *at entry* (audit C4: a tier
change from MES to ES mid-trade must not re-price an open MES lot at ES's tick value). Realized P&L is
``(exit - entry) * qty * tick_value * direction`` per matched lot, so everything is integer ticks times
integer cents and never needs rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from tradebot.core.contracts import TickValue, decode_tick_value, encode_tick_value, money_cents


@dataclass(slots=True)
class Lot:
    qty: int
    """Signed: positive long, negative short."""
    price: int
    tick_value_cents: TickValue
    """Whole cents (futures, stocks) or an exact fraction of a cent (crypto base units)."""


@dataclass(slots=True)
class PositionBook:
    """One symbol's (or one bracket's) position, FIFO-matched."""

    lots: list[Lot] = field(default_factory=list)
    realized_cents: int = 0
    """Gross realized P&L (before commissions)."""
    commission_cents: int = 0

    @property
    def qty(self) -> int:
        return sum(lot.qty for lot in self.lots)

    @property
    def net_realized_cents(self) -> int:
        return self.realized_cents - self.commission_cents

    def apply(self, signed_qty: int, price: int, tick_value_cents: TickValue, commission_cents: int = 0) -> int:
        """Apply a fill (``signed_qty`` > 0 bought, < 0 sold); returns the gross P&L it realized.

        With a fractional tick value (crypto) the fill's P&L is exact and then booked in whole cents rounded
        toward minus infinity (:func:`~tradebot.core.contracts.money_cents`), once per fill as a venue does."""
        if signed_qty == 0:
            raise ValueError("fill quantity must not be zero")
        self.commission_cents += commission_cents
        realized: TickValue = 0
        remaining = signed_qty
        while remaining and self.lots and (self.lots[0].qty > 0) != (remaining > 0):
            lot = self.lots[0]
            matched = min(abs(remaining), abs(lot.qty))
            direction = 1 if lot.qty > 0 else -1
            realized += (price - lot.price) * matched * lot.tick_value_cents * direction
            lot.qty -= matched * direction
            remaining += matched * direction
            if lot.qty == 0:
                self.lots.pop(0)
        if remaining:
            self.lots.append(Lot(remaining, price, tick_value_cents))
        booked = money_cents(realized)
        self.realized_cents += booked
        return booked

    def unrealized_cents(self, mark: int | None) -> int:
        if mark is None:
            return 0
        return money_cents(sum(((mark - lot.price) * lot.qty * lot.tick_value_cents for lot in self.lots), 0))

    def avg_entry_ticks(self) -> Fraction | None:
        """Average entry of the open lots in ticks, exact (display only, never used for money)."""
        q = self.qty
        if q == 0:
            return None
        return Fraction(sum(lot.price * lot.qty for lot in self.lots), q)

    def to_json(self) -> list[list[int | str]]:
        return [[lot.qty, lot.price, encode_tick_value(lot.tick_value_cents)] for lot in self.lots]

    @classmethod
    def from_json(cls, lots: Any, realized_cents: int = 0, commission_cents: int = 0) -> PositionBook:
        return cls([Lot(int(q), int(p), decode_tick_value(tv)) for q, p, tv in lots], realized_cents,
                   commission_cents)
