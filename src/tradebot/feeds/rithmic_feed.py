"""Rithmic market data (``--feed rithmic``): trades with the exchange's aggressor side, best bid/offer, depth.

One ticker-plant login through :class:`~tradebot.feeds.rithmic_session.RithmicSession` (async-rithmic): the
front-month contract of each root is asked of Rithmic (``RequestFrontMonthContract``), then
``RequestMarketDataUpdate`` subscribes ``LAST_TRADE`` plus ``ORDER_BOOK`` (depth; its top is the best
bid/offer) or, with ``TRADEBOT_RITHMIC__DEPTH_LEVELS=1``, ``BBO``. Records leave as raw trades and books for
the same validation layer every feed goes through.

* **Aggressor.** ``LastTrade.aggressor`` (BUY/SELL) is the exchange's own flag: trades are sided with rule
  ``EXCHANGE``; a print without it leaves unsided for the validator's quote/tick rule.
* **Time.** The exchange's timestamp (``source_ssboe`` + ``source_nsecs``) when present, else Rithmic's
  (``ssboe`` + ``usecs``); the receive time is our clock.
* **Depth.** ``OrderBook`` messages carry changed levels (size 0 removes one); a ``SNAPSHOT_IMAGE`` or
  ``CLEAR_ORDER_BOOK`` starts the book over. The feed keeps the book per contract and passes on the best
  ``depth_levels`` per side.
* **Reconnects** are the library's (it logs in again and re-subscribes). While the plant is down the feed
  reports RECONNECTING; when it is back, a :class:`GapEvent` covers the outage (the validator forgets the
  quote). A refused login or an unknown system name is fatal (FAILED, once, loudly).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, spec_for
from tradebot.core.logging import get_logger
from tradebot.core.prices import float_to_fp
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.base import GeneratorFeed, jittered_backoff
from tradebot.feeds.rithmic_session import (
    Message,
    RithmicAuthError,
    RithmicDownError,
    RithmicSession,
    SessionConfig,
    ssboe_ns,
)

log = get_logger("tradebot.feeds.rithmic")

SOURCE = "rithmic"
LAST_TRADE, BBO, ORDER_BOOK = 1, 2, 4
_CLEAR, _NO_BOOK, _SNAPSHOT = 1, 2, 3


def _int(v: object) -> int:
    if isinstance(v, int):
        return int(v)
    try:
        return int(str(v))
    except (TypeError, ValueError):
        return 0


class RithmicParser:
    """Ticker-plant messages -> raw records, with the depth book per contract (pure, testable without a socket)."""

    def __init__(self, stats: Counter[str], depth: int = 10) -> None:
        self.stats = stats
        self.depth = depth
        self.books: dict[str, tuple[dict[float, int], dict[float, int]]] = {}

    def tick(self, d: dict[str, Any], recv_ns: int) -> RawTrade | RawBook | None:
        """``on_tick`` payload (the library's dict of a LastTrade or BestBidOffer)."""
        sym = d.get("symbol")
        if not isinstance(sym, str) or not sym:
            self.stats["bad_message"] += 1
            return None
        ts = self._ts(d)
        if _int(d.get("data_type")) == LAST_TRADE:
            price, size = d.get("trade_price"), d.get("trade_size")
            fp = float_to_fp(price) if isinstance(price, int | float) else None
            if fp is None or not isinstance(size, int) or size <= 0 or ts <= 0:
                self.stats["bad_trade"] += 1
                return None
            agg = _int(d.get("aggressor"))
            side = Side.BUY if agg == 1 else Side.SELL if agg == 2 else Side.UNKNOWN
            self.stats["trades"] += 1
            return RawTrade(sym, ts, recv_ns, fp, size, side, SideRule.EXCHANGE if side != Side.UNKNOWN
                            else SideRule.NONE, source=SOURCE)
        bp, ap = d.get("bid_price"), d.get("ask_price")
        if not isinstance(bp, int | float) or not isinstance(ap, int | float) or ts <= 0:
            self.stats["bad_quote"] += 1
            return None
        self.stats["quotes"] += 1
        return RawBook(sym, ts, recv_ns, (float_to_fp(bp),), (_int(d.get("bid_size")),), (float_to_fp(ap),),
                       (_int(d.get("ask_size")),), source=SOURCE)

    def _ts(self, d: dict[str, Any]) -> int:
        src = _int(d.get("source_ssboe"))
        if src:
            return src * 1_000_000_000 + _int(d.get("source_nsecs"))
        return ssboe_ns(d.get("ssboe"), d.get("usecs"))

    def order_book(self, m: Message, recv_ns: int) -> RawBook | None:
        sym = str(getattr(m, "symbol", "") or "")
        if not sym:
            self.stats["bad_message"] += 1
            return None
        kind = _int(getattr(m, "update_type", 0))
        bids, asks = self.books.setdefault(sym, ({}, {}))
        if kind in (_CLEAR, _NO_BOOK, _SNAPSHOT):
            bids.clear()
            asks.clear()
        for book, prices, sizes in ((bids, m.bid_price, m.bid_size), (asks, m.ask_price, m.ask_size)):
            if len(prices) != len(sizes):
                self.stats["bad_book"] += 1
                return None
            for p, s in zip(prices, sizes, strict=True):
                if s > 0:
                    book[float(p)] = int(s)
                else:
                    book.pop(float(p), None)
        ts = ssboe_ns(getattr(m, "ssboe", 0), getattr(m, "usecs", 0))
        if ts <= 0 or not (bids or asks):
            self.stats["empty_book"] += 1
            return None
        top_b = sorted(bids, reverse=True)[: self.depth]
        top_a = sorted(asks)[: self.depth]
        self.stats["books"] += 1
        return RawBook(sym, ts, recv_ns, tuple(float_to_fp(p) for p in top_b), tuple(bids[p] for p in top_b),
                       tuple(float_to_fp(p) for p in top_a), tuple(asks[p] for p in top_a), source=SOURCE)


class RithmicLiveFeed(GeneratorFeed):
    """The ticker plant as a :class:`~tradebot.feeds.base.Feed`."""

    name = "rithmic"

    def __init__(self, settings: Settings, symbols: Sequence[str], *, session: RithmicSession | None = None) -> None:
        if session is None:
            if not settings.rithmic_user or settings.rithmic_password is None:
                raise ValueError("--feed rithmic needs RITHMIC_USER and RITHMIC_PASSWORD")
            r = settings.rithmic
            session = RithmicSession(SessionConfig(
                user=settings.rithmic_user, password=settings.rithmic_password.get_secret_value(),
                system_name=settings.rithmic_system_name, url=settings.rithmic_url,
                app_name=settings.rithmic_app_name, app_version=r.app_version,
                ca_file=Path(settings.rithmic_ca_file) if settings.rithmic_ca_file else None,
                request_timeout_s=r.request_timeout_seconds, reconnect_interval_s=r.reconnect_interval_seconds,
                reconnect_max_delay_s=r.reconnect_max_seconds, max_reconnects=None))
        self.session = session
        self.roots = [s.upper() for s in symbols]
        self.depth = settings.rithmic.depth_levels
        self.bits = LAST_TRADE | (ORDER_BOOK if self.depth > 1 else BBO)
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self.parser = RithmicParser(self.stats, self.depth)
        self.contracts: dict[str, str] = {}
        self._queue: asyncio.Queue[RawTrade | RawBook] = asyncio.Queue(maxsize=100_000)
        self._listening = False
        self._streaming = False
        self._refused = ""
        self._closer: asyncio.Task[None] | None = None
        self.session.on_login_refused = self._login_refused

    def _login_refused(self, plant: str, text: str) -> None:
        if self._streaming and not self._refused:
            # after a reconnect: the library would log in again and again (a lockout risk); stop it now
            self._refused = f"{plant} plant login refused after reconnect (rp_code {text})"
            self._closer = asyncio.get_running_loop().create_task(self.session.close())

    def _status(self, state: FeedState, detail: str = "") -> FeedStatus:
        self.state = state
        return FeedStatus(time.time_ns(), state, self.name, detail)

    def _put(self, rec: RawTrade | RawBook | None) -> None:
        if rec is None:
            return
        try:
            self._queue.put_nowait(rec)
        except asyncio.QueueFull:
            self.stats["dropped_queue_full"] += 1

    async def _on_tick(self, d: Any) -> None:
        if isinstance(d, dict):
            self._put(self.parser.tick(d, time.time_ns()))

    async def _on_book(self, m: Message) -> None:
        self._put(self.parser.order_book(m, time.time_ns()))

    async def _start(self) -> None:
        await self.session.connect(["ticker"])
        if not self._listening:
            self.session.add_listener("on_tick", self._on_tick)
            self.session.add_listener("on_order_book", self._on_book)
            self._listening = True
        for root in self.roots:
            try:
                exch = spec_for(root).exchange
            except UnknownContractError:
                exch = "CME"
            contract = await self.session.front_month(root, exch)
            self.contracts[root] = contract
            await self.session.subscribe_market(contract, exch, self.bits)

    async def _events(self) -> AsyncIterator[FeedEvent]:
        attempt = 0
        yield self._status(FeedState.CONNECTING, f"connecting to {self.session.cfg.url}")
        while not self._closed:
            try:
                await self._start()
                break
            except RithmicAuthError as exc:
                self.stats["auth_failed"] += 1
                yield self._status(FeedState.FAILED, f"{exc}; the feed will not retry")
                return
            except RithmicDownError as exc:
                await self.session.close()
                delay = jittered_backoff(attempt, 1.0, 60.0)
                attempt += 1
                yield self._status(FeedState.RECONNECTING, str(exc)[:200])
                await asyncio.sleep(delay)
        yield self._status(FeedState.STREAMING, "subscribed " + ", ".join(
            f"{r}={c}" for r, c in self.contracts.items()))
        lost_at: int | None = None
        self._streaming = True
        while not self._closed:
            if self._refused:
                self.stats["auth_failed"] += 1
                if self._closer is not None:
                    await self._closer
                yield self._status(FeedState.FAILED, f"{self._refused}; the feed will not retry")
                return
            try:
                rec = await asyncio.wait_for(self._queue.get(), 0.25)
            except TimeoutError:
                rec = None
            up = self.session.plant_connected("ticker")
            if not up and lost_at is None:
                lost_at = time.time_ns()
                self.stats["disconnects"] += 1
                yield self._status(FeedState.RECONNECTING, "ticker plant disconnected; the library reconnects")
            elif up and lost_at is not None:
                self.stats["gaps"] += 1
                yield self._status(FeedState.STREAMING, "ticker plant reconnected, re-subscribed")
                yield GapEvent(lost_at, time.time_ns(), self.name, "rithmic reconnect")
                lost_at = None
                self.parser.books.clear()  # the library re-subscribes: a fresh snapshot image follows
            if rec is not None:
                yield rec

    async def close(self) -> None:
        await self.session.close()
        await super().close()
