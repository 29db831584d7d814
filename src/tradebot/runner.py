"""``tradebot run`` until the daemon lands: stream a feed through validation and print a live summary."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from tradebot.core.config import Settings
from tradebot.core.contracts import spec_for
from tradebot.core.logging import get_logger
from tradebot.core.types import BookUpdate, GapEvent, RawBook, RawStatus, RawTrade, Trade
from tradebot.feeds.factory import make_feed
from tradebot.feeds.validation import Validator


async def stream_summary(settings: Settings, feed_kind: str, symbols: list[str], inputs: list[str],
                         speed: float | None, duration: float) -> dict[str, object]:
    log = get_logger("tradebot.run")
    feed = make_feed(feed_kind, settings, symbols, inputs, speed)
    validator = Validator(settings.validation, symbols if feed_kind == "demo" else [], logger=log)
    volume: Counter[str] = Counter()
    delta: Counter[str] = Counter()
    last: dict[str, int] = {}
    books = gaps = 0
    started = time.monotonic()
    next_print = started + 1.0
    log.info("run started", feed=feed.name, symbols=symbols)
    try:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook | RawStatus):
                out = validator.validate(ev)
                if isinstance(out, Trade):
                    volume[out.symbol] += out.size
                    delta[out.symbol] += out.size * int(out.side)
                    last[out.symbol] = out.price
                elif isinstance(out, BookUpdate):
                    books += 1
            elif isinstance(ev, GapEvent):
                gaps += 1
            now = time.monotonic()
            if now >= next_print:
                next_print = now + 1.0
                _print_line(validator, volume, delta, last, books, now - started)
            if duration and now - started >= duration:
                break
    finally:
        await feed.close()
    _print_line(validator, volume, delta, last, books, time.monotonic() - started)
    summary = {"accepted": validator.accepted, "rejects": dict(validator.rejects), "books": books,
               "gaps": gaps, "volume": dict(volume), "delta": dict(delta)}
    log.info("run finished", **summary)
    return summary


def _print_line(v: Validator, volume: Counter[str], delta: Counter[str], last: dict[str, int], books: int,
                elapsed: float) -> None:
    parts = [f"{elapsed:6.1f}s events={v.accepted} books={books} rejects={v.total_rejects}"]
    for sym, px in sorted(last.items()):
        parts.append(f"{sym} last={spec_for(sym).fmt(px)} vol={volume[sym]} delta={delta[sym]:+d}")
    print(" | ".join(parts), flush=True)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.mode == "live" or (args.mode is None and settings.trading_mode == "live"):
        print("live mode needs a live broker adapter, which does not exist yet; refusing to start "
              "(use --mode paper)")
        return 2
    symbols = [s.strip() for s in args.symbols.split(",")] if args.symbols else (
        [args.symbol] if args.symbol else settings.symbol_list)
    symbols = [spec_for(s).root for s in symbols]
    if args.sessions:
        sim = settings.sim.model_copy(update={"sessions": args.sessions})
        settings = settings.model_copy(update={"sim": sim})
    feed = args.feed or ("demo" if settings.feed == "demo" else settings.feed)
    asyncio.run(stream_summary(settings, feed, symbols, args.input or [], args.speed, args.duration))
    return 0
