"""Builds the feed a command asked for, so the CLI and the daemon choose sources one way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tradebot.core.config import Settings
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
    raise ValueError(f"unknown feed {kind!r}")
