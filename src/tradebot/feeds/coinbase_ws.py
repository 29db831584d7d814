"""Coinbase Advanced Trade public market data (``wss://advanced-trade-ws.coinbase.com``) as a live :class:`Feed`.

No key is needed for market data. The protocol: the client sends ``{"type":"subscribe","channel":C,
"product_ids":[...]}`` per channel (``level2``, ``market_trades``, ``heartbeats``); every server message is
``{"channel":..., "timestamp":..., "sequence_num":N, "events":[...]}`` where ``sequence_num`` counts the
messages of the connection (all channels) one by one. ``l2_data`` events are a ``snapshot`` (the whole book)
then ``update`` s (``side`` ``bid``/``offer``, ``price_level``, ``new_quantity`` = the level's new size, ``0``
removes it); ``market_trades`` events carry trades with ``side`` = the *maker's* side, so the aggressor is the
opposite (a ``BUY`` maker was hit by a seller). Errors come as ``{"type":"error","message":...}``.

Why it looks the way it does:

* **Exact sizes.** Prices and sizes are decimal strings; prices go to fixed point, sizes to integer base
  units of the product (``0.00012345`` BTC = 12345 units, see :mod:`tradebot.core.instruments`); a size off
  the product's increment is counted and the level ignored, never rounded.
* **Sequence gaps.** A ``sequence_num`` that is not the previous + 1 means messages were lost: the feed
  emits a :class:`GapEvent`, stops passing on book states, and resubscribes ``level2`` so the server sends a
  new snapshot; the book is rebuilt from it (updates that arrive before it are counted and dropped). Lost
  trades cannot be recovered; the gap event says so downstream.
* **The book passed on** is the top ``book_depth`` levels per side after each message's updates, as a
  :class:`RawBook` (MBP-N style), so microstructure and filters work as for futures.
* **Trade snapshots** (the recent trades Coinbase sends on subscribing) are history the engine has not asked
  for; they are counted and skipped (their timestamps would be stale for a live validator anyway).
* **Reconnects** back off exponentially with jitter; each one clears the books and emits a gap event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.contracts import spec_for
from tradebot.core.instruments import size_units
from tradebot.core.logging import get_logger
from tradebot.core.prices import decimal_to_fp
from tradebot.core.types import (
    FeedEvent,
    FeedState,
    FeedStatus,
    GapEvent,
    RawBook,
    RawRecord,
    RawTrade,
    Side,
    SideRule,
)
from tradebot.feeds.base import GeneratorFeed, jittered_backoff

log = get_logger("tradebot.feeds.coinbase_ws")

SOURCE = "coinbase-ws"
_NS = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_time_ns(text: object) -> int | None:
    """RFC 3339 with up to nanoseconds (``2023-02-09T20:32:50.714964855Z``) to UTC ns; ``None`` if not one."""
    if not isinstance(text, str) or len(text) < 20:
        return None
    s = text.strip()
    frac_ns = 0
    try:
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        head, sep, rest = s.partition(".")
        if sep:
            digits = ""
            i = 0
            while i < len(rest) and rest[i].isdigit():
                digits += rest[i]
                i += 1
            tz = rest[i:]
            if not digits or len(digits) > 9:
                return None
            frac_ns = int(digits.ljust(9, "0"))
            s = head + tz
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS + frac_ns


class _Book:
    __slots__ = ("asks", "bids", "ready")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.ready = False


class CoinbaseParser:
    """Messages -> raw records with the L2 books and the sequence check (pure: testable without a socket)."""

    def __init__(self, products: Sequence[str], depth: int, stats: Counter[str]) -> None:
        self.products = [p.upper() for p in products]
        self.specs = {p: spec_for(p) for p in self.products}
        self.depth = depth
        self.stats = stats
        self.books = {p: _Book() for p in self.products}
        self.last_seq: int | None = None
        self.last_ts = 0
        self.gap: GapEvent | None = None
        """Set when the last message revealed a sequence gap (the caller resubscribes level2)."""

    def reset(self) -> None:
        self.books = {p: _Book() for p in self.products}
        self.last_seq = None

    def message(self, text: str | bytes, recv_ns: int) -> list[RawRecord]:
        self.gap = None
        try:
            msg = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            self.stats["bad_message"] += 1
            return []
        if not isinstance(msg, dict):
            self.stats["bad_message"] += 1
            return []
        if msg.get("type") == "error":
            self.stats["error_msg"] += 1
            log.warning("coinbase error message", message=str(msg.get("message", ""))[:200])
            return []
        seq = msg.get("sequence_num")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if self.last_seq is not None and seq != self.last_seq + 1:
                if seq <= self.last_seq:
                    self.stats["duplicate_sequence"] += 1
                    return []
                self.stats["sequence_gaps"] += 1
                self.stats["messages_missed"] += seq - self.last_seq - 1
                self.gap = GapEvent(self.last_ts or recv_ns, recv_ns, "coinbase",
                                    f"sequence {self.last_seq} -> {seq}")
                for b in self.books.values():
                    b.ready = False
                    b.bids.clear()
                    b.asks.clear()
            self.last_seq = seq
        ts = parse_time_ns(msg.get("timestamp")) or recv_ns
        self.last_ts = ts
        events = msg.get("events")
        channel = msg.get("channel")
        if not isinstance(events, list):
            self.stats["bad_message"] += 1
            return []
        out: list[RawRecord] = []
        if channel == "l2_data":
            for ev in events:
                rec = self._l2(ev, ts, recv_ns)
                if rec is not None:
                    out.append(rec)
        elif channel == "market_trades":
            for ev in events:
                self._trades(ev, recv_ns, out)
        elif channel in ("heartbeats", "subscriptions"):
            self.stats[channel] += 1
        else:
            self.stats["unknown_channel"] += 1
        return out

    def _l2(self, ev: Any, ts: int, recv: int) -> RawBook | None:
        if not isinstance(ev, dict) or not isinstance(ev.get("updates"), list):
            self.stats["bad_event"] += 1
            return None
        pid = str(ev.get("product_id", "")).upper()
        book = self.books.get(pid)
        if book is None:
            self.stats["unexpected_product"] += 1
            return None
        kind = ev.get("type")
        if kind == "snapshot":
            book.bids.clear()
            book.asks.clear()
            book.ready = True
            self.stats["snapshots"] += 1
        elif kind != "update":
            self.stats["bad_event"] += 1
            return None
        elif not book.ready:
            self.stats["updates_before_snapshot"] += 1
            return None
        spec = self.specs[pid]
        latest = 0
        for u in ev["updates"]:
            if not isinstance(u, dict):
                self.stats["bad_level"] += 1
                continue
            side = u.get("side")
            fp = decimal_to_fp(str(u.get("price_level", "")))
            units = size_units(spec, str(u.get("new_quantity", "")))
            if side not in ("bid", "offer") or fp is None or fp <= 0 or units is None or units < 0:
                self.stats["bad_level"] += 1
                continue
            levels = book.bids if side == "bid" else book.asks
            if units == 0:
                levels.pop(fp, None)
            else:
                levels[fp] = units
            t = parse_time_ns(u.get("event_time"))
            if t is not None and t > latest:
                latest = t
        bids = heapq.nlargest(self.depth, book.bids)
        asks = heapq.nsmallest(self.depth, book.asks)
        when = latest if latest > 0 else ts  # a snapshot's levels carry the epoch as their time
        return RawBook(pid, when, recv, tuple(bids), tuple(book.bids[p] for p in bids), tuple(asks),
                       tuple(book.asks[p] for p in asks), source=SOURCE)

    def _trades(self, ev: Any, recv: int, out: list[RawRecord]) -> None:
        if not isinstance(ev, dict) or not isinstance(ev.get("trades"), list):
            self.stats["bad_event"] += 1
            return
        if ev.get("type") == "snapshot":
            self.stats["trade_snapshot_skipped"] += len(ev["trades"])
            return
        for t in ev["trades"]:
            rec = self._trade(t, recv)
            if rec is not None:
                out.append(rec)

    def _trade(self, t: Any, recv: int) -> RawTrade | None:
        if not isinstance(t, dict):
            self.stats["bad_trade"] += 1
            return None
        pid = str(t.get("product_id", "")).upper()
        spec = self.specs.get(pid)
        if spec is None:
            self.stats["unexpected_product"] += 1
            return None
        ts = parse_time_ns(t.get("time"))
        fp = decimal_to_fp(str(t.get("price", "")))
        units = size_units(spec, str(t.get("size", "")))
        maker = str(t.get("side", "")).upper()
        if ts is None or fp is None or units is None or units <= 0 or maker not in ("BUY", "SELL"):
            self.stats["bad_trade"] += 1
            return None
        aggressor = Side.SELL if maker == "BUY" else Side.BUY  # the maker's side was hit by the other one
        try:
            seq = int(str(t.get("trade_id", "0")))
        except ValueError:
            seq = 0
        self.stats["trades"] += 1
        return RawTrade(pid, ts, recv, fp, units, aggressor, SideRule.EXCHANGE, seq, source=SOURCE)


class CoinbaseLiveFeed(GeneratorFeed):
    name = "coinbase"

    def __init__(self, settings: Settings, symbols: Sequence[str], *, ws_url: str | None = None) -> None:
        self.cfg = settings.coinbase
        self.ws_url = ws_url or self.cfg.ws_url
        self.products = [s.upper() for s in symbols]
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self.parser = CoinbaseParser(self.products, self.cfg.book_depth, self.stats)
        self._ws: Any = None

    def backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt, self.cfg.reconnect_initial_seconds, self.cfg.reconnect_max_seconds)

    def _status(self, state: FeedState, detail: str = "") -> FeedStatus:
        self.state = state
        return FeedStatus(time.time_ns(), state, self.name, detail)

    async def _events(self) -> AsyncIterator[FeedEvent]:
        attempt = 0
        lost_at: int | None = None
        yield self._status(FeedState.CONNECTING, f"connecting to {self.ws_url}")
        while not self._closed:
            try:
                async for ev in self._session(lost_at):
                    attempt = 0
                    lost_at = None
                    yield ev
                reason = "server closed the connection"
            except Exception as exc:  # OSError, timeouts, websockets' ConnectionClosed / InvalidStatus
                reason = f"{type(exc).__name__}: {exc}"[:200]
            if self._closed:
                return
            self.stats["disconnects"] += 1
            self.parser.reset()
            if lost_at is None:
                lost_at = time.time_ns()
            yield self._status(FeedState.RECONNECTING, reason)
            delay = self.backoff(attempt)
            attempt += 1
            log.warning("coinbase websocket lost, reconnecting", reason=reason, delay_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def _subscribe(self, ws: Any, channel: str, action: str = "subscribe") -> None:
        await ws.send(json.dumps({"type": action, "product_ids": self.products, "channel": channel}))
        self.stats[action] += 1

    async def _session(self, lost_at: int | None) -> AsyncIterator[FeedEvent]:
        import websockets

        ws = await asyncio.wait_for(websockets.connect(self.ws_url, max_size=2**26, ping_interval=20,
                                                       open_timeout=10), 15)
        self._ws = ws
        try:
            for channel in ("heartbeats", "level2", "market_trades"):
                await self._subscribe(ws, channel)
            self.stats["connections"] += 1
            yield self._status(FeedState.STREAMING, f"subscribed level2+market_trades {','.join(self.products)}")
            if lost_at is not None:
                self.stats["gaps"] += 1
                yield GapEvent(lost_at, time.time_ns(), self.name, "websocket reconnect")
            parser = self.parser
            while not self._closed:
                raw = await asyncio.wait_for(ws.recv(), 30)  # heartbeats come every second
                records = parser.message(raw, time.time_ns())
                if parser.gap is not None:
                    self.stats["gaps"] += 1
                    self.stats["resyncs"] += 1
                    log.warning("coinbase sequence gap, resynchronising the book", detail=parser.gap.reason)
                    yield parser.gap
                    await self._subscribe(ws, "level2", "unsubscribe")
                    await self._subscribe(ws, "level2")
                for rec in records:
                    yield rec
        finally:
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()

    async def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        await super().close()
