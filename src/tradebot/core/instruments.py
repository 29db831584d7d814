"""Stocks and crypto pairs as instrument specs the rest of the pipeline already understands.

The futures table (:mod:`tradebot.core.contracts`) stays the source for CME contracts. A stock (``AAPL``) or a
crypto product (``BTC-USD``) becomes a :class:`~tradebot.core.contracts.ContractSpec` registered by symbol, so
validation, footprints, profiles, microstructure, the router and paper execution keep speaking integer ticks
and integer sizes:

- **stock**: one size unit is one share; the tick is the Reg NMS quoting increment, $0.01 at or above $1 and
  $0.0001 below (chosen from a reference price when the symbol is registered, $0.01 without one); a $0.01
  tick of one share is exactly one cent. Session = the NYSE calendar (holidays, 13:00 early closes), regular
  hours or 04:00-20:00 ET with pre/post market as a setting. No margin tiers; seed 000's share thresholds
  (a large order is 10,000 shares) are the defaults.
- **crypto**: the tick is the product's ``quote_increment`` and one size unit its ``base_increment`` from the
  venue's product list, so ``0.00012345`` BTC is the integer 12345 and never a float. A tick of one unit is a
  fraction of a cent (``$0.01 x 1e-8``), kept exact in :attr:`ContractSpec.tick_value_exact`; money rounds to
  whole cents only when it is booked, against the trader. Session = 24/7 with a configurable UTC day boundary.

Symbols are registered explicitly (by the feed that was asked for them, or from a recorded file's metadata)
rather than recognised by their shape, so ``--symbols ES,BOGUS`` stays an error on the futures feeds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from tradebot.core.contracts import CONTRACTS, ContractSpec, register_instrument

STOCK_RE = re.compile(r"^[A-Z]{1,5}([.][A-Z])?$")
CRYPTO_RE = re.compile(r"^[A-Z0-9]{2,10}-[A-Z]{2,5}$")

STOCK_LARGE_ORDER = 10_000
"""Seed 000's ``ORDER_FLOW_LARGE_ORDER_SIZE`` (shares)."""
STOCK_DATASET = "XNAS.ITCH"
CRYPTO_DATASET = "COINBASE"


@dataclass(slots=True)
class InstrumentDefaults:
    """Session settings for stocks/crypto registered without explicit ones (a recorded file's symbols); the
    loaded :class:`~tradebot.core.config.Settings` set them (``TRADEBOT_STOCKS__EXTENDED_HOURS``,
    ``TRADEBOT_COINBASE__DAY_BOUNDARY``)."""

    extended_hours: bool = False
    day_boundary: dt.time = dt.time(0)


DEFAULTS = InstrumentDefaults()


@dataclass(frozen=True, slots=True)
class CryptoProduct:
    """The fields of a venue product we need (Coinbase ``GET /products/{id}``)."""

    product_id: str
    quote_increment: Decimal
    base_increment: Decimal
    base_min_size: Decimal = Decimal(0)
    status: str = "online"


KNOWN_PRODUCTS: dict[str, CryptoProduct] = {p.product_id: p for p in [
    # Coinbase Exchange product list (quote_increment, base_increment), for offline commands (analyze/replay of
    # a recorded file) when the venue is not asked; the live feed refreshes these from /products at start.
    CryptoProduct("BTC-USD", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.00001")),
    CryptoProduct("ETH-USD", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.0001")),
    CryptoProduct("SOL-USD", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.001")),
    CryptoProduct("BTC-USDT", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.00001")),
    CryptoProduct("ETH-BTC", Decimal("0.00001"), Decimal("0.00000001"), Decimal("0.001")),
]}


def is_stock_symbol(symbol: str) -> bool:
    s = symbol.strip().upper()
    return bool(STOCK_RE.match(s)) and s not in CONTRACTS


def is_crypto_symbol(symbol: str) -> bool:
    return bool(CRYPTO_RE.match(symbol.strip().upper()))


def stock_session(extended_hours: bool) -> str:
    return "nyse_ext" if extended_hours else "nyse"


def crypto_session(day_boundary: dt.time) -> str:
    """Calendar template of a 24/7 market whose trading day starts at ``HH:MM[:SS]`` UTC."""
    h, m, sec = day_boundary.hour, day_boundary.minute, day_boundary.second
    if (h, m, sec) == (0, 0, 0):
        return "crypto"
    return f"crypto@{h:02d}:{m:02d}" + (f":{sec:02d}" if sec else "")


def stock_spec(symbol: str, *, extended_hours: bool = False, ref_price: Decimal | None = None,
               large_order_size: int = STOCK_LARGE_ORDER, stop: Decimal = Decimal("0.10")) -> ContractSpec:
    s = symbol.strip().upper()
    if not is_stock_symbol(s):
        raise ValueError(f"{symbol!r} is not a stock ticker (1-5 letters, optional class suffix such as BRK.B)")
    sub_dollar = ref_price is not None and ref_price < 1
    tick = Decimal("0.0001") if sub_dollar else Decimal("0.01")
    # $0.0001 of one share is a hundredth of a cent: exact as a fraction, booked in whole cents.
    return ContractSpec(s, s, "NMS", tick, 0 if sub_dollar else 1, stock_session(extended_hours), 0, "", "none", 0,
                        large_order_size, stop, dataset=STOCK_DATASET, kind="stock",
                        tick_value_exact=Fraction(1, 100) if sub_dollar else None)


def crypto_spec(product: CryptoProduct, *, day_boundary: dt.time = dt.time(0), large_order_units: int | None = None,
                stop: Decimal | None = None) -> ContractSpec:
    pid = product.product_id.strip().upper()
    if not is_crypto_symbol(pid):
        raise ValueError(f"{product.product_id!r} is not a crypto product id (BASE-QUOTE such as BTC-USD)")
    q, b = product.quote_increment, product.base_increment
    if q <= 0 or b <= 0:
        raise ValueError(f"{pid}: increments must be positive (quote {q}, base {b})")
    tv = Fraction(q) * Fraction(b) * 100  # cents per quote increment per base increment
    units_per_coin = int(1 / b) if (1 / b) == (1 / b).to_integral_value() else 1
    large = large_order_units if large_order_units is not None else units_per_coin  # one whole coin
    return ContractSpec(pid, pid, "COINBASE", q, int(tv) if tv.denominator == 1 else 0, crypto_session(day_boundary),
                        0, "", "none", 0, large, stop if stop is not None else q * 5000, dataset=CRYPTO_DATASET,
                        kind="crypto", size_increment=b, tick_value_exact=None if tv.denominator == 1 else tv)


def size_units(spec: ContractSpec, size: Decimal | str) -> int | None:
    """Integer size units of a native decimal size (``'0.00012345'`` BTC -> 12345); ``None`` when off-grid."""
    try:
        d = Decimal(str(size).strip())
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    q = d / spec.size_increment
    if q != q.to_integral_value():
        return None
    return int(q)


def register_stocks(symbols: Iterable[str], *, extended_hours: bool | None = None,
                    ref_prices: Mapping[str, Decimal] | None = None,
                    large_order_size: int | None = None) -> list[str]:
    """Register stock specs (re-registering replaces, so a settings change takes effect); returns the roots."""
    out = []
    for sym in symbols:
        s = sym.strip().upper()
        if s in CONTRACTS:
            out.append(s)
            continue
        ext = DEFAULTS.extended_hours if extended_hours is None else extended_hours
        spec = stock_spec(s, extended_hours=ext, ref_price=(ref_prices or {}).get(s),
                          large_order_size=large_order_size or STOCK_LARGE_ORDER)
        register_instrument(spec)
        out.append(spec.root)
    return out


def register_crypto(symbols: Iterable[str], *, products: Mapping[str, CryptoProduct] | None = None,
                    day_boundary: dt.time | None = None, large_order_units: int | None = None) -> list[str]:
    """Register crypto specs from the venue's product list (``products``) or the built-in copy of it."""
    table = dict(KNOWN_PRODUCTS)
    table.update(products or {})
    out = []
    for sym in symbols:
        s = sym.strip().upper()
        product = table.get(s)
        if product is None:
            raise ValueError(f"unknown crypto product {sym!r}; known: {', '.join(sorted(table))}")
        boundary = DEFAULTS.day_boundary if day_boundary is None else day_boundary
        register_instrument(crypto_spec(product, day_boundary=boundary, large_order_units=large_order_units))
        out.append(s)
    return out


def register_for_feed(feed: str, symbols: Iterable[str], *, extended_hours: bool | None = None,
                      day_boundary: dt.time | None = None) -> list[str]:
    """The symbols a feed was asked for, registered as that feed's instrument kind.

    ``polygon`` takes stock tickers, ``coinbase`` crypto products; every other feed takes the futures table
    only (so those symbols are left for the caller's usual unknown-contract error).
    """
    syms = [s.strip().upper() for s in symbols if s.strip()]
    if feed == "polygon":
        bad = [s for s in syms if not is_stock_symbol(s)]
        if bad:
            raise ValueError(f"--feed polygon streams US stocks; not stock tickers: {', '.join(bad)}")
        return register_stocks(syms, extended_hours=extended_hours)
    if feed == "coinbase":
        bad = [s for s in syms if not is_crypto_symbol(s)]
        if bad:
            raise ValueError(f"--feed coinbase streams crypto products (BTC-USD); not products: {', '.join(bad)}")
        return register_crypto(syms, day_boundary=day_boundary)
    return syms


def fetch_coinbase_products(rest_url: str, product_ids: Iterable[str],
                            timeout: float = 10.0) -> dict[str, CryptoProduct]:
    """The venue's increments for each product (public ``GET /api/v3/brokerage/market/products/{id}``, no key).

    Raises ``ValueError`` for a product the venue does not list (404) and ``OSError`` when it cannot be asked.
    """
    import json
    import urllib.error
    import urllib.request

    out: dict[str, CryptoProduct] = {}
    for pid in product_ids:
        url = f"{rest_url.rstrip('/')}/api/v3/brokerage/market/products/{pid.upper()}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 404):
                raise ValueError(f"Coinbase does not list the product {pid!r} (HTTP {exc.code})") from None
            raise OSError(f"product list: HTTP {exc.code}") from None
        try:
            out[pid.upper()] = CryptoProduct(str(body["product_id"]), Decimal(str(body["quote_increment"])),
                                             Decimal(str(body["base_increment"])),
                                             Decimal(str(body.get("base_min_size") or 0)), str(body.get("status", "")))
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise OSError(f"product list: malformed answer for {pid}: {exc!r}") from None
    return out


def register_from_dataset(dataset: str, symbols: Iterable[str]) -> list[str]:
    """Register the stocks/crypto a recorded file names, by its dataset (``XNAS.ITCH``/``COINBASE``...)."""
    ds = (dataset or "").upper()
    syms = [s for s in symbols if s]
    if ds == CRYPTO_DATASET:
        return register_crypto([s for s in syms if is_crypto_symbol(s)])
    if ds and not ds.startswith(("GLBX", "IFEU", "NDEX")):  # an equity venue (XNAS.ITCH, XNYS.PILLAR, DBEQ...)
        return register_stocks([s for s in syms if is_stock_symbol(s)])
    return []


def spec_or_register(symbol: str) -> ContractSpec:
    """``spec_for`` for a process that did not start the feed (``tradebot status``/``trades`` reading a journal
    written by ``--feed polygon|coinbase``): a stored stock/crypto symbol is registered by its shape, crypto from
    the built-in product copy. Raises ``UnknownContractError`` for anything else."""
    from tradebot.core.contracts import UnknownContractError, root_of, spec_for

    if root_of(symbol) is None:
        s = symbol.strip().upper()
        if is_crypto_symbol(s) and s in KNOWN_PRODUCTS:
            register_crypto([s])
        elif is_stock_symbol(s):
            register_stocks([s])
        else:
            raise UnknownContractError(f"unknown contract {symbol!r}")
    return spec_for(symbol)
