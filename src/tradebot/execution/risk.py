"""Risk rules as plain functions over settings: capital tiers, margin protection, fees, daily limits.

Kept free of state so the manager, the backtester and the status command all apply the same rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from tradebot.core.config import Settings
from tradebot.core.contracts import CONTRACTS, spec_for
from tradebot.core.values import CapitalTier

MICRO_OF: dict[str, str] = {"ES": "MES", "NQ": "MNQ", "RTY": "M2K", "YM": "MYM", "CL": "MCL", "GC": "MGC"}
MINI_OF: dict[str, str] = {v: k for k, v in MICRO_OF.items()}

FEES_CENTS: dict[str, int] = {
    "ES": 140, "MES": 37, "NQ": 140, "MNQ": 37, "RTY": 140, "M2K": 37, "YM": 140, "MYM": 37,
    "CL": 152, "MCL": 52, "GC": 152, "MGC": 52, "SI": 152, "PL": 152, "HG": 152,
}
"""Approximate CME non-member exchange fee + NFA fee per contract per side (cents, 2025); override with
``TRADEBOT_EXECUTION__FEES_CENTS``."""


def family(symbol: str) -> str:
    """The mini of a micro/mini pair (``MES`` -> ``ES``): signals on one may trade the other."""
    return MINI_OF.get(symbol, symbol)


def same_family(a: str, b: str) -> bool:
    return family(a) == family(b)


def usd_to_cents(usd: Decimal) -> int:
    cents = usd * 100
    return int(cents.to_integral_value())


def tier_for_balance(tiers: Sequence[CapitalTier], balance_cents: int) -> CapitalTier:
    """Highest tier whose minimum the balance reaches; the first tier below every minimum."""
    chosen = tiers[0]
    for t in tiers:
        if balance_cents >= t.min_balance_cents:
            chosen = t
    return chosen


def choose_contract(settings: Settings, tier: CapitalTier | None, signal_symbol: str,
                    requested: int) -> tuple[str, int]:
    """Contract and size for an intent: the tier's contract when it is in the signal's family and on the same
    tick grid (so the intent's tick prices mean the same), else the signal's own contract."""
    spec = spec_for(signal_symbol)
    if spec.kind != "future":  # no tiers for stocks/crypto: the router's contracts are lots of the instrument
        lot = lot_units(settings, signal_symbol)
        return signal_symbol, max(0, min(requested, settings.execution.max_position_size)) * lot
    if tier is not None and settings.execution.tiers_enabled and same_family(tier.root, signal_symbol):
        a, b = spec_for(tier.root), spec
        if a.tick_size == b.tick_size:
            return tier.root, max(0, min(requested, tier.max_contracts))
    return signal_symbol, max(0, min(requested, settings.execution.max_position_size))


def lot_units(settings: Settings, symbol: str) -> int:
    """Size units in one router 'contract' of a stock (shares) or crypto product (base units); 1 for futures."""
    spec = spec_for(symbol)
    if spec.kind == "stock":
        return settings.stocks.lot_shares
    if spec.kind == "crypto":
        units = settings.coinbase.lot_size / spec.size_increment
        return max(1, int(units))
    return 1


def fee_table(settings: Settings) -> dict[str, int]:
    """Commission + fees per contract per side, cents."""
    fees = dict(FEES_CENTS)
    fees.update({k: usd_cents_exact(v) for k, v in settings.execution.fees_cents.items()})
    base = settings.execution.commission_cents
    return {root: base + fees.get(root, 0) for root in CONTRACTS}


def usd_cents_exact(cents: Decimal) -> int:
    """A cents value given as text (``"37"``); fractions of a cent round half up."""
    return int(cents.quantize(Decimal(1), rounding="ROUND_HALF_UP"))


# ---------------------------------------------------------------------------------------------------
# Margin protection


MarginProvider = Callable[[str, dt.date], int | None]
"""Margin requirement per contract in cents for a symbol on a day (a live broker's figure), or ``None``."""


@dataclass(frozen=True, slots=True)
class MarginResult:
    symbol: str
    margin_cents: int
    limit_cents: int | None
    source: str

    @property
    def ok(self) -> bool:
        return self.limit_cents is None or self.margin_cents <= self.limit_cents


def margin_limit_cents(settings: Settings, symbol: str) -> int | None:
    limits = {k: usd_to_cents(v) for k, v in settings.execution.margin_limits.items()}
    if symbol == "MES":
        return limits.get("MES", usd_to_cents(settings.mes_margin_limit))
    if symbol == "ES":
        return limits.get("ES", usd_to_cents(settings.es_margin_limit))
    return limits.get(symbol)


def margin_for(settings: Settings, symbol: str, day: dt.date, provider: MarginProvider | None) -> MarginResult:
    """Requirement from the broker when it tells us, else the configured override, else the contract default."""
    limit = margin_limit_cents(settings, symbol)
    if provider is not None:
        m = provider(symbol, day)
        if m is not None:
            return MarginResult(symbol, int(m), limit, "broker")
    overrides = settings.execution.margin_overrides
    if symbol in overrides:
        return MarginResult(symbol, usd_to_cents(overrides[symbol]), limit, "override")
    return MarginResult(symbol, spec_for(symbol).margin_cents, limit, "default")


def fmt_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{frac:02d}"
