"""Contract specifications and front-month/roll logic for the CME futures we trade.

Tick values are integer cents so P&L stays exact. Margins are typical broker *intraday* margins used
only as defaults for the margin-protection check; the operator overrides them in configuration.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from tradebot.core.prices import format_ticks, tick_fp

MONTH_CODES = "FGHJKMNQUVXZ"
"""CME month codes, January..December."""


@dataclass(frozen=True, slots=True)
class ContractSpec:
    root: str
    name: str
    exchange: str
    tick_size: Decimal
    tick_value_cents: int
    session: str
    """Calendar template name (see :mod:`tradebot.core.calendar`)."""
    margin_cents: int
    months: str
    """Listed month codes traded as the front month (the liquid cycle)."""
    expiry_rule: str
    """``third_friday`` (equity index), ``cl`` (energy), ``metals`` (before first notice)."""
    roll_business_days: int
    """How many business days before the expiry-rule date the front month rolls to the next."""
    large_order_size: int
    """A sensible 'large print' default for this market (the seed's 10,000 is for shares)."""
    stop_points: Decimal
    """Default stop distance in points (seed 004's table where it has one)."""
    dataset: str = "GLBX.MDP3"
    kind: str = "future"
    """``future`` (the table below), ``stock`` or ``crypto`` (registered by :mod:`tradebot.core.instruments`)."""
    size_increment: Decimal = Decimal(1)
    """Native quantity of one integer size unit: 1 contract, 1 share, or a crypto product's base increment
    (``0.00000001`` BTC), so sizes stay exact integers everywhere."""
    tick_value_exact: Fraction | None = None
    """Cents per tick per size unit when that is not a whole number of cents (crypto: $0.01 x 1e-8 BTC);
    ``None`` means :attr:`tick_value_cents` is exact."""

    @property
    def tick_value(self) -> Fraction:
        """Exact cents per tick per size unit (money code rounds only when it books whole cents)."""
        return self.tick_value_exact if self.tick_value_exact is not None else Fraction(self.tick_value_cents)

    @property
    def tick_fp(self) -> int:
        return tick_fp(self.tick_size)

    @property
    def point_value_cents(self) -> int:
        return int(self.tick_value_cents / self.tick_size)

    def fmt(self, ticks: int) -> str:
        return format_ticks(ticks, self.tick_size)

    def to_ticks(self, price: Decimal | str) -> int:
        """Exact ticks for an on-grid decimal price; raises for off-grid prices (configuration only)."""
        d = Decimal(str(price))
        q = d / self.tick_size
        if q != q.to_integral_value():
            raise ValueError(f"{price} is not on the {self.root} tick grid ({self.tick_size})")
        return int(q)

    def points_to_ticks(self, points: Decimal | str) -> int:
        """Round a point distance *up* to whole ticks (a stop is never tighter than asked)."""
        q = Decimal(str(points)) / self.tick_size
        return int(q.to_integral_value(rounding="ROUND_CEILING"))


def _c(root: str, name: str, exchange: str, tick: str, tick_value_cents: int, session: str,
       margin_usd: int, months: str, expiry_rule: str, roll_days: int, large: int, stop: str) -> ContractSpec:
    return ContractSpec(root, name, exchange, Decimal(tick), tick_value_cents, session, margin_usd * 100,
                        months, expiry_rule, roll_days, large, Decimal(stop))


QUARTERLY = "HMUZ"
ALL_MONTHS = MONTH_CODES

CONTRACTS: dict[str, ContractSpec] = {c.root: c for c in [
    _c("ES", "E-mini S&P 500", "CME", "0.25", 1250, "equity", 300, QUARTERLY, "third_friday", 6, 100, "4.00"),
    _c("MES", "Micro E-mini S&P 500", "CME", "0.25", 125, "equity", 40, QUARTERLY, "third_friday", 6, 100, "4.00"),
    _c("NQ", "E-mini Nasdaq-100", "CME", "0.25", 500, "equity", 1000, QUARTERLY, "third_friday", 6, 50, "20.00"),
    _c("MNQ", "Micro E-mini Nasdaq-100", "CME", "0.25", 50, "equity", 100, QUARTERLY, "third_friday", 6, 50,
       "20.00"),
    _c("RTY", "E-mini Russell 2000", "CME", "0.10", 500, "equity", 500, QUARTERLY, "third_friday", 6, 50, "3.00"),
    _c("M2K", "Micro E-mini Russell 2000", "CME", "0.10", 50, "equity", 50, QUARTERLY, "third_friday", 6, 50,
       "3.00"),
    _c("YM", "E-mini Dow", "CBOT", "1", 500, "equity", 500, QUARTERLY, "third_friday", 6, 50, "30"),
    _c("MYM", "Micro E-mini Dow", "CBOT", "1", 50, "equity", 50, QUARTERLY, "third_friday", 6, 50, "30"),
    _c("CL", "Crude Oil", "NYMEX", "0.01", 1000, "energy", 1000, ALL_MONTHS, "cl", 2, 50, "0.20"),
    _c("MCL", "Micro Crude Oil", "NYMEX", "0.01", 100, "energy", 100, ALL_MONTHS, "cl", 2, 50, "0.20"),
    _c("GC", "Gold", "COMEX", "0.10", 1000, "metals", 1000, "GJMQVZ", "metals", 2, 30, "5.0"),
    _c("MGC", "Micro Gold", "COMEX", "0.10", 100, "metals", 100, "GJMQVZ", "metals", 2, 30, "5.0"),
    _c("SI", "Silver", "COMEX", "0.005", 2500, "metals", 2000, "HKNUZ", "metals", 2, 20, "0.10"),
    _c("PL", "Platinum", "NYMEX", "0.10", 500, "metals", 500, "FJNV", "metals", 2, 20, "10.0"),
    _c("HG", "Copper", "COMEX", "0.0005", 1250, "metals", 500, "HKNUZ", "metals", 2, 20, "0.02"),
]}


TickValue = int | Fraction
"""Cents per tick per size unit: an ``int`` for futures and stocks >= $1, an exact ``Fraction`` for crypto."""


def tick_value_of(spec: ContractSpec) -> TickValue:
    return spec.tick_value_exact if spec.tick_value_exact is not None else spec.tick_value_cents


def encode_tick_value(v: TickValue) -> int | str:
    """For JSON payloads and SQLite: an int stays an int, a fraction becomes ``"1/100000000"``."""
    if isinstance(v, Fraction):
        return v.numerator if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    return int(v)


def decode_tick_value(v: object) -> TickValue:
    """Inverse of :func:`encode_tick_value`; raises ``ValueError`` for anything else."""
    if isinstance(v, bool):
        raise ValueError(f"bad tick value {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, Fraction):
        return v.numerator if v.denominator == 1 else v
    if isinstance(v, str):
        f = Fraction(v)
        return f.numerator if f.denominator == 1 else f
    raise ValueError(f"bad tick value {v!r}")


def money_cents(value: int | Fraction) -> int:
    """Whole cents of an exact amount, rounded toward minus infinity: a fraction of a cent is never in the
    trader's favour (a gain loses it, a loss pays it)."""
    return value if isinstance(value, int) else math.floor(value)


INSTRUMENTS: dict[str, ContractSpec] = {}
"""Stocks and crypto pairs known to this process, by symbol (``AAPL``, ``BTC-USD``). They are registered
explicitly (a feed's symbol list, a DBN file's metadata, a recorded catalog) rather than recognised by shape,
so a typo such as ``BOGUS`` stays an unknown symbol for the futures feeds."""


def register_instrument(spec: ContractSpec) -> ContractSpec:
    """Make a stock/crypto spec resolvable by :func:`spec_for`; the futures table cannot be overridden."""
    if spec.root in CONTRACTS:
        raise ValueError(f"{spec.root} is a futures root")
    INSTRUMENTS[spec.root] = spec
    return spec


class UnknownContractError(KeyError):
    pass


def spec_for(symbol: str) -> ContractSpec:
    """Spec for a root (``ES``), a contract (``ESH2``/``ESH22``) or a continuous symbol (``ES.c.0``)."""
    root = root_of(symbol)
    if root is None:
        raise UnknownContractError(f"unknown contract {symbol!r}; known roots: {', '.join(sorted(CONTRACTS))}")
    return CONTRACTS.get(root) or INSTRUMENTS[root]


def root_of(symbol: str) -> str | None:
    """Root of a root, contract code, or Databento parent/continuous symbol; ``None`` if unknown."""
    s = symbol.strip().upper()
    if not s:
        return None
    if s in INSTRUMENTS:
        return s
    for sep in (".FUT", ".C.", ".N.", ".V."):
        if sep in s:
            s = s.split(".", 1)[0]
            break
    if s in CONTRACTS:
        return s
    # Contract code: ROOT + month code + 1 or 2 year digits (longest root first: MES before ES).
    for root in sorted(CONTRACTS, key=len, reverse=True):
        rest = s[len(root):]
        if (s.startswith(root) and 2 <= len(rest) <= 3 and rest[0] in MONTH_CODES
                and rest[1:].isdigit()):
            return root
    return None


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (4 - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


def _add_business_days(d: dt.date, n: int) -> dt.date:
    step = 1 if n >= 0 else -1
    left = abs(n)
    while left:
        d += dt.timedelta(days=step)
        if d.weekday() < 5:
            left -= 1
    return d


def expiry_reference(spec: ContractSpec, year: int, month: int) -> dt.date:
    """The date the front month stops being the one to trade (last trade or first notice)."""
    if spec.expiry_rule == "third_friday":
        return _third_friday(year, month)
    if spec.expiry_rule == "cl":
        # Trading ends 3 business days before the 25th of the month before delivery.
        py, pm = (year, month - 1) if month > 1 else (year - 1, 12)
        d25 = dt.date(py, pm, 25)
        if d25.weekday() >= 5:
            d25 = _add_business_days(d25, -1)
        return _add_business_days(d25, -3)
    if spec.expiry_rule == "metals":
        # First notice: the last business day of the month before the delivery month.
        first = dt.date(year, month, 1)
        return _add_business_days(first, -1)
    raise ValueError(f"unknown expiry rule {spec.expiry_rule!r}")


def contract_code(root: str, year: int, month: int, digits: int = 1) -> str:
    """Databento/CME raw symbol (``ESH6``; two year digits with ``digits=2``)."""
    y = year % (10 if digits == 1 else 100)
    return f"{root}{MONTH_CODES[month - 1]}{y:0{digits}d}"


def front_month(symbol: str, on: dt.date) -> str:
    """Front-month contract to trade on a date: the first listed month whose roll date is after it."""
    spec = spec_for(symbol)
    months = [MONTH_CODES.index(c) + 1 for c in spec.months]
    year = on.year
    for _ in range(3):
        for m in months:
            roll = _add_business_days(expiry_reference(spec, year, m), -spec.roll_business_days)
            if on < roll:
                return contract_code(spec.root, year, m)
        year += 1
    raise AssertionError("unreachable: a listed month always exists within three years")
