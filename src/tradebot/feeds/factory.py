"""Builds the feed a command asked for, and the symbols a live feed streams, so the CLI and the daemon choose
sources one way."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from tradebot.core.config import Settings
from tradebot.core.instruments import (
    KNOWN_PRODUCTS,
    fetch_coinbase_products,
    is_crypto_symbol,
    register_crypto,
    register_for_feed,
    register_stocks,
)
from tradebot.feeds.base import Feed


def make_feed(kind: str, settings: Settings, symbols: Sequence[str], inputs: Sequence[str] = (),
              speed: float | None = None) -> Feed:
    if kind == "demo":
        from tradebot.feeds.simulated import SimulatedMarket

        sim = settings.sim if speed is None else settings.sim.model_copy(update={"speed": speed})
        return SimulatedMarket(sim, list(symbols))
    if kind in ("replay", "dbn", "csv"):
        from tradebot.feeds.files import open_file_feed

        if not inputs:
            raise ValueError("--feed replay needs --input FILE [FILE ...]")
        return open_file_feed([Path(p) for p in inputs], speed=speed or 0.0, symbol=symbols[0])
    if kind == "databento":
        from tradebot.feeds.databento_live import DatabentoLiveFeed

        return DatabentoLiveFeed(settings, list(symbols))
    if kind == "polygon":
        from tradebot.feeds.polygon_ws import PolygonLiveFeed

        return PolygonLiveFeed(settings, list(symbols))
    if kind == "coinbase":
        from tradebot.feeds.coinbase_ws import CoinbaseLiveFeed

        return CoinbaseLiveFeed(settings, list(symbols))
    if kind == "projectx":
        from tradebot.feeds.projectx_market import ProjectXMarketFeed

        return ProjectXMarketFeed(settings, list(symbols))
    if kind == "rithmic":
        from tradebot.feeds.rithmic_feed import RithmicLiveFeed

        return RithmicLiveFeed(settings, list(symbols))
    raise ValueError(f"unknown feed {kind!r}")


def resolve_live_symbols(feed: str, symbols: Sequence[str], settings: Settings) -> list[str]:
    """Symbols for ``--feed polygon|coinbase``, registered with their venue's specs (``ValueError`` when wrong).

    Crypto increments come from the venue's product list; when it cannot be reached the built-in copy is used
    and that is logged (the feed re-checks nothing: increments of listed products change rarely).
    """
    if not symbols:
        raise ValueError(f"--feed {feed} needs --symbols (e.g. {'AAPL,TSLA' if feed == 'polygon' else 'BTC-USD'})")
    if feed == "polygon":
        syms = register_for_feed(feed, symbols, extended_hours=settings.stocks.extended_hours)
        sub = set(settings.stocks.sub_dollar)
        if sub & set(syms):  # Reg NMS: below $1 the quoting increment is $0.0001
            register_stocks([s for s in syms if s in sub], extended_hours=settings.stocks.extended_hours,
                            ref_prices={s: Decimal("0.5") for s in sub})
        return syms
    bad = [s for s in symbols if not is_crypto_symbol(s)]
    if bad:
        raise ValueError(f"--feed coinbase streams crypto products (BTC-USD); not products: {', '.join(bad)}")
    try:
        products = fetch_coinbase_products(settings.coinbase.rest_url, symbols)
    except OSError as exc:
        from tradebot.core.logging import get_logger

        unknown = [s for s in symbols if s.upper() not in KNOWN_PRODUCTS]
        if unknown:
            raise ValueError(f"cannot read Coinbase's product list ({exc}) and {', '.join(unknown)} is not in "
                             "the built-in copy") from None
        get_logger("tradebot.instruments").warning("Coinbase product list unavailable, using the built-in "
                                                   "increments", error=str(exc))
        products = {}
    return register_crypto(symbols, products=products, day_boundary=settings.coinbase.day_boundary)
