"""Exact price arithmetic.

Prices travel as Databento-style fixed-point integers (1 unit = 1e-9) from the adapters, and as integer
ticks inside the engine. Floats never become price keys: ``228.765 / 0.01`` in floats is
``22876.4999...`` and that bug class must not exist here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PRICE_SCALE = 1_000_000_000
"""Fixed-point units per 1.0 of price (Databento's convention)."""

UNDEF_PRICE = 9_223_372_036_854_775_807
"""Databento's sentinel for a missing price (INT64_MAX)."""


MAX_PRICE_TEXT = 64
"""Longest text read as a price: a real one is a dozen characters; a megabyte of digits is an attack."""
MAX_PRICE_EXPONENT = 15
"""Largest decimal exponent of a price (1e15): far past any market, far below what conversions choke on."""


def decimal_to_fp(value: Decimal | str | int) -> int | None:
    """Convert a decimal price to fixed point; ``None`` when not a finite number or not representable.

    Bounded before any arithmetic: ``1e999999999`` is a valid Decimal, and scaling it (or turning it into an
    int) would take minutes and gigabytes; its exponent says "not a price" in constant time.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(10**MAX_PRICE_EXPONENT) < value < 10**MAX_PRICE_EXPONENT:
            return None
        return value * PRICE_SCALE
    try:
        if isinstance(value, Decimal):
            d = value
        else:
            text = str(value).strip()
            if len(text) > MAX_PRICE_TEXT:
                return None
            d = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or d.adjusted() > MAX_PRICE_EXPONENT:
        return None
    if d and d.adjusted() < -30:
        return None  # not a price either, and scaling it is pointless
    scaled = d * PRICE_SCALE
    if scaled != scaled.to_integral_value():
        # Finer than 1e-9: cannot be a real exchange price; keep it off-grid by rounding away.
        return int(scaled.to_integral_value()) + (1 if scaled > 0 else -1)
    return int(scaled)


def float_to_fp(value: float) -> int | None:
    """Convert a vendor float (e.g. JSON) to fixed point via its shortest repr, never via binary maths."""
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return decimal_to_fp(Decimal(repr(float(value))))


def fp_to_decimal(fp: int) -> Decimal:
    return (Decimal(fp) / PRICE_SCALE).normalize()


def tick_fp(tick_size: Decimal) -> int:
    fp = decimal_to_fp(tick_size)
    if fp is None or fp <= 0:
        raise ValueError(f"tick size must be a positive decimal, got {tick_size!r}")
    return fp


def fp_to_ticks(fp: int, tick: int) -> int | None:
    """Integer ticks for an on-grid fixed-point price, ``None`` when off the grid."""
    q, r = divmod(fp, tick)
    return q if r == 0 else None


def format_ticks(ticks: int, tick_size: Decimal) -> str:
    """Human form with the tick size's number of decimals (``100.25``, ``2050.5`` -> ``2050.50``)."""
    exp = tick_size.as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return f"{ticks * tick_size:.{places}f}"
