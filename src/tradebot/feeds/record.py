"""``tradebot data record``: a live stocks/crypto session into the catalog as DBN, for analyze/replay/backtest.

Polygon and Coinbase keep no tick history we can download for free (Coinbase none at all), so the way to get
sessions to study is to record them. Each symbol's trading day becomes ``<catalog>/<dataset>/mbp-1/<SYMBOL>/
<day>.dbn.zst`` (``POLYGON`` for stocks, ``COINBASE`` for crypto): MBP-1 records, a book update for every quote
or top-of-book change and a trade record carrying the quote in force, the same layout as ``tradebot data fetch
--source polygon``, so every reader already understands it. Sides are kept as the source gave them (Coinbase's
exchange side; Polygon prints stay unsided and are inferred on every read).

What cannot be represented is counted, never silently changed: DBN sizes are unsigned 32-bit, so a size above
4,294,967,295 units (42.9 BTC in satoshis) is stored clamped and counted as ``size_clamped`` in the file's catalog
entry and on stdout; gap events (reconnects, Coinbase sequence gaps) are counted as ``gaps`` (the file has holes).
A day already in the catalog is not overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.config import ConfigError, Settings

SIZE_MAX = 0xFFFF_FFFF
DATASETS = {"polygon": "POLYGON", "coinbase": "COINBASE"}


def add_record_command(dsub: Any, handler: Any) -> None:
    r = dsub.add_parser("record", help="record a live stocks/crypto session into the catalog as DBN")
    r.add_argument("--feed", choices=sorted(DATASETS), required=True)
    r.add_argument("--symbols", required=True, help="AAPL,TSLA (polygon) or BTC-USD (coinbase)")
    r.add_argument("--duration", type=float, default=0.0, help="stop after N seconds (0 = until Ctrl-C)")
    r.add_argument("--catalog", help="catalog root (default <data_dir>/catalog)")
    r.add_argument("--force", action="store_true", help="replace a day already in the catalog")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=handler)


@dataclass
class _Day:
    day: dt.date
    staged: Any
    ctx: Any
    writer: Any
    rows: list[tuple[int, ...]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


class Recorder:
    """Per symbol and trading day: buffered rows -> a staged catalog file, committed when the day or run ends."""

    def __init__(self, catalog: Any, dataset: str, force: bool) -> None:
        from tradebot.core.prices import UNDEF_PRICE

        self.catalog = catalog
        self.dataset = dataset
        self.force = force
        self.days: dict[str, _Day] = {}
        self.quotes: dict[str, tuple[int, int, int, int]] = {}
        self.written: list[dict[str, Any]] = []
        self.gaps = 0
        self._undef = UNDEF_PRICE

    def _open(self, symbol: str, day: dt.date) -> _Day:
        from tradebot.core.calendar import calendar_for
        from tradebot.core.contracts import spec_for
        from tradebot.feeds.dbn_write import DbnWriter, metadata_bytes
        from tradebot.feeds.fetch import polygon_instrument_id

        if self.catalog.find(self.dataset, "mbp-1", symbol, day) is not None and not self.force:
            raise ConfigError(f"{self.dataset}/mbp-1/{symbol}/{day} is already in the catalog (--force replaces it)")
        sess = calendar_for(spec_for(symbol).session).session_on(day)
        start, end = (sess.open_ns, sess.close_ns) if sess is not None else (0, 0)
        meta = metadata_bytes(dataset=self.dataset, schema="mbp-1", start_ns=start, end_ns=end, symbol=symbol,
                              instrument_id=polygon_instrument_id(symbol))
        ctx = self.catalog.stage(self.dataset, "mbp-1", symbol, day)
        staged = ctx.__enter__()
        writer = DbnWriter(staged.path, meta, compress=True)
        return _Day(day, staged, ctx, writer)

    def _day_for(self, symbol: str, ts_ns: int) -> _Day:
        from tradebot.core.calendar import calendar_for
        from tradebot.core.contracts import spec_for

        day = calendar_for(spec_for(symbol).session).trading_day(ts_ns)
        cur = self.days.get(symbol)
        if cur is not None and cur.day != day:
            self._close(symbol, commit=True)
            cur = None
        if cur is None:
            cur = self.days[symbol] = self._open(symbol, day)
        return cur

    def _size(self, d: _Day, size: int) -> int:
        if size > SIZE_MAX:
            d.counts["size_clamped"] += 1
            return SIZE_MAX
        return size

    def add(self, ev: Any) -> None:
        from tradebot.core.types import RawBook, RawTrade, Side

        undef = self._undef
        if type(ev) is RawTrade:
            d = self._day_for(ev.symbol, ev.ts_event)
            q = self.quotes.get(ev.symbol, (undef, undef, 0, 0))
            side = {Side.BUY: 1, Side.SELL: 2}.get(ev.side, 0)
            px = ev.price_fp if ev.price_fp is not None else undef
            d.rows.append((ev.ts_event, ev.sequence, 1, px, self._size(d, ev.size), side, *q))
            d.counts["trades"] += 1
        elif type(ev) is RawBook:
            d = self._day_for(ev.symbol, ev.ts_event)
            bpx = ev.bid_px_fp[0] if ev.bid_px_fp else None
            apx = ev.ask_px_fp[0] if ev.ask_px_fp else None
            q = (undef if bpx is None else bpx, undef if apx is None else apx,
                 self._size(d, ev.bid_sz[0]) if bpx is not None else 0,
                 self._size(d, ev.ask_sz[0]) if apx is not None else 0)
            if q == self.quotes.get(ev.symbol):
                return  # a deeper level changed: MBP-1 has nothing new to say
            self.quotes[ev.symbol] = q
            d.rows.append((ev.ts_event, ev.sequence, 0, undef, 0, 0, *q))
            d.counts["quotes"] += 1
        else:
            return
        if len(d.rows) >= 4096:
            self._flush(ev.symbol)

    def _flush(self, symbol: str, d: _Day | None = None) -> None:
        from tradebot.feeds.fetch import encode_polygon_rows, polygon_instrument_id

        d = d or self.days[symbol]
        if d.rows:
            d.writer.write(encode_polygon_rows(d.rows, polygon_instrument_id(symbol)))
            d.rows.clear()

    def _close(self, symbol: str, commit: bool) -> None:
        d = self.days.pop(symbol)
        try:
            self._flush(symbol, d)
            d.writer.close()
            if commit and d.counts["trades"] + d.counts["quotes"] > 0:
                info = {"source": f"record:{self.dataset.lower()}", "dataset": self.dataset, "schema": "mbp-1",
                        "symbol": symbol, "trading_date": d.day.isoformat(), **dict(d.counts), "gaps": self.gaps,
                        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
                path = d.staged.commit(info)
                self.written.append({**info, "path": str(path)})
        finally:
            d.ctx.__exit__(None, None, None)

    def close(self, commit: bool = True) -> None:
        for sym in list(self.days):
            self._close(sym, commit)


async def _record(feed: Any, rec: Recorder, duration: float) -> str | None:
    from tradebot.core.types import FeedState, FeedStatus, GapEvent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + duration if duration > 0 else None
    failed: str | None = None

    async def pump() -> None:
        nonlocal failed
        async for ev in feed:
            if isinstance(ev, FeedStatus) and ev.state is FeedState.FAILED:
                failed = ev.detail
                return
            if isinstance(ev, GapEvent):
                rec.gaps += 1
                continue
            rec.add(ev)

    task = asyncio.create_task(pump())
    waiter = asyncio.create_task(stop.wait())
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    await feed.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return failed


def record_command(args: argparse.Namespace, settings: Settings) -> int:
    from tradebot.feeds.catalog import Catalog, catalog_root
    from tradebot.feeds.factory import make_feed, resolve_live_symbols

    try:
        symbols = resolve_live_symbols(args.feed, [s for s in args.symbols.split(",") if s.strip()], settings)
        feed = make_feed(args.feed, settings, symbols)
    except (ValueError, ConfigError) as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 2
    catalog = Catalog(args.catalog if args.catalog else catalog_root(settings.data_dir))
    rec = Recorder(catalog, DATASETS[args.feed], args.force)
    failed: str | None = None
    try:
        failed = asyncio.run(_record(feed, rec, args.duration))
    except ConfigError as exc:
        rec.close(commit=False)
        print(f"record: {exc}", file=sys.stderr)
        return 2
    rec.close(commit=failed is None)
    if failed is not None:
        print(f"record: the feed failed: {failed}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rec.written))
    else:
        for w in rec.written:
            clamped = f", {w['size_clamped']} size(s) clamped" if w.get("size_clamped") else ""
            print(f"{w['path']}: {w.get('trades', 0)} trades, {w.get('quotes', 0)} quotes, {w['gaps']} gap(s)"
                  f"{clamped}")
    return 0 if rec.written else 1
