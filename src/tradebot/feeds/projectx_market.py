"""ProjectX market hub (``--feed projectx``): trades, depth and quotes from the firm's Gateway as a live :class:`Feed`.

A Topstep trader then needs no other data subscription. The hub (``PROJECTX_MARKET_HUB_URL``) speaks SignalR
(:mod:`tradebot.feeds.signalr`); per contract the feed invokes ``SubscribeContractQuotes``,
``SubscribeContractTrades`` and ``SubscribeContractMarketDepth`` and receives:

* ``GatewayTrade(contractId, [{symbolId, price, timestamp, type, volume}])``: ``type`` 0 is a buy aggressor, 1 a
  sell aggressor, so trades leave here with the exchange's side (:attr:`SideRule.EXCHANGE`).
* ``GatewayDepth(contractId, [{timestamp, type, price, volume, currentVolume}])``: DOM changes by price
  (``type`` 1 Ask, 2 Bid, 3/10 best ask, 4/9 best bid, 6 Reset; trade/fill/high/low entries are not book
  levels). The feed keeps each contract's book and emits the top levels after every message.
* ``GatewayQuote(contractId, {bestBid, bestAsk, lastPrice, ...})``: carries no sizes, so the book comes from
  depth; quotes are counted and otherwise ignored.

Every record goes through the same validation layer as the other feeds (prices exact: decimals to fixed point,
never binary floats). Reconnects are the hub client's (jittered backoff, fresh token, re-subscribe); after one
the books are cleared and a :class:`GapEvent` covers the time the socket was down. A refused key is fatal: the
feed fails once, loudly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.logging import get_logger
from tradebot.core.prices import decimal_to_fp
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.base import GeneratorFeed
from tradebot.feeds.projectx_rest import (
    ProjectXAuthError,
    ProjectXClient,
    ProjectXError,
    PxDomType,
    choose_contract,
    decimal_of,
    parse_ts,
    px_code,
)
from tradebot.feeds.signalr import HubConnection, HubError

log = get_logger("tradebot.feeds.projectx_market")

SOURCE = "projectx"
BOOK_LEVELS = 10
_BID_TYPES = frozenset({PxDomType.BID, PxDomType.BEST_BID, PxDomType.NEW_BEST_BID})
_ASK_TYPES = frozenset({PxDomType.ASK, PxDomType.BEST_ASK, PxDomType.NEW_BEST_ASK})


def _fp(value: object) -> int | None:
    d = decimal_of(value)
    return None if d is None else decimal_to_fp(d)


def _size(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


class ProjectXMarketParser:
    """Hub events -> raw records, with each contract's book (pure: testable without a socket)."""

    def __init__(self, roots: dict[str, str], stats: Counter[str], depth: int = BOOK_LEVELS,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.roots = roots
        """Contract id -> our root."""
        self.stats = stats
        self.depth = depth
        self.now = clock_ns
        self.bids: dict[str, dict[int, int]] = {}
        self.asks: dict[str, dict[int, int]] = {}

    def reset(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def event(self, target: str, args: list[Any]) -> list[RawTrade | RawBook]:
        if len(args) < 2 or not isinstance(args[0], str):
            self.stats["bad_message"] += 1
            return []
        cid, data = args[0], args[1]
        root = self.roots.get(cid)
        if root is None:
            self.stats["unexpected_contract"] += 1
            return []
        if target == "GatewayTrade":
            return list(self._trades(root, data))
        if target == "GatewayDepth":
            book = self._depth(cid, root, data)
            return [book] if book is not None else []
        if target == "GatewayQuote":
            self.stats["quotes"] += 1
            return []
        self.stats["unknown_event"] += 1
        return []

    def _trades(self, root: str, data: object) -> list[RawTrade]:
        items = data if isinstance(data, list) else [data]
        out: list[RawTrade] = []
        recv = self.now()
        for t in items:
            if not isinstance(t, dict):
                self.stats["bad_message"] += 1
                continue
            ts, size = parse_ts(t.get("timestamp")), _size(t.get("volume"))
            price = _fp(t.get("price"))
            if ts is None or size is None or size <= 0 or price is None:
                self.stats["bad_message"] += 1
                continue
            kind = t.get("type")
            side = Side.BUY if kind == 0 else Side.SELL if kind == 1 else Side.UNKNOWN
            rule = SideRule.EXCHANGE if side != Side.UNKNOWN else SideRule.NONE
            self.stats["trades"] += 1
            out.append(RawTrade(root, ts, recv, price, size, side, rule, source=SOURCE))
        return out

    def _depth(self, cid: str, root: str, data: object) -> RawBook | None:
        items = data if isinstance(data, list) else [data]
        bids = self.bids.setdefault(cid, {})
        asks = self.asks.setdefault(cid, {})
        ts_max: int | None = None
        changed = False
        for e in items:
            if not isinstance(e, dict):
                self.stats["bad_message"] += 1
                continue
            kind = e.get("type")
            ts = parse_ts(e.get("timestamp"))
            if kind == PxDomType.RESET:
                bids.clear()
                asks.clear()
                changed = True
            elif kind in _BID_TYPES or kind in _ASK_TYPES:
                price, size = _fp(e.get("price")), _size(e.get("volume"))
                if price is None or size is None:
                    self.stats["bad_message"] += 1
                    continue
                side = bids if kind in _BID_TYPES else asks
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
                changed = True
            else:
                continue  # trade / fill / high / low entries are not book levels
            if ts is not None:
                ts_max = ts if ts_max is None else max(ts_max, ts)
        if not changed or ts_max is None:
            return None
        b = sorted(bids.items(), reverse=True)[: self.depth]
        a = sorted(asks.items())[: self.depth]
        self.stats["books"] += 1
        return RawBook(root, ts_max, self.now(), tuple(p for p, _ in b), tuple(s for _, s in b),
                       tuple(p for p, _ in a), tuple(s for _, s in a), source=SOURCE)


class ProjectXMarketFeed(GeneratorFeed):
    """The market hub as a live feed (module docstring)."""

    name = "projectx"

    def __init__(self, settings: Settings, symbols: Sequence[str], *, api_url: str | None = None,
                 hub_url: str | None = None, client: ProjectXClient | None = None) -> None:
        key = settings.projectx_api_key.get_secret_value() if settings.projectx_api_key else ""
        if client is None and (not settings.projectx_username or not key):
            raise ValueError("--feed projectx needs PROJECTX_USERNAME and PROJECTX_API_KEY")
        px = settings.projectx
        self.cfg = px
        self.client = client or ProjectXClient(
            api_url or settings.projectx_api_url, settings.projectx_username, key,
            timeout_seconds=px.request_timeout_seconds, retries=px.retries,
            backoff_initial_seconds=px.backoff_initial_seconds, backoff_max_seconds=px.backoff_max_seconds,
            token_refresh_seconds=px.token_refresh_seconds)
        self.hub_url = hub_url or settings.projectx_market_hub_url
        self.symbols = [s.upper() for s in symbols]
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self.contracts: dict[str, str] = {}
        """Our root -> contract id."""
        self.parser = ProjectXMarketParser({}, self.stats)
        self.hub: HubConnection | None = None
        self._queue: asyncio.Queue[FeedEvent] = asyncio.Queue()
        self._lost_at: int | None = None

    def _status(self, state: FeedState, detail: str = "") -> FeedStatus:
        self.state = state
        return FeedStatus(time.time_ns(), state, self.name, detail)

    async def _resolve(self) -> list[str]:
        problems = []
        for root in self.symbols:
            found = choose_contract(await self.client.contracts(px_code(root)), root)
            if found is None:
                problems.append(f"{root}: no contract {px_code(root)!r}")
                continue
            self.contracts[root] = str(found["id"])
        self.parser.roots = {cid: root for root, cid in self.contracts.items()}
        return problems

    def _on_event(self, target: str, args: list[Any]) -> None:
        for rec in self.parser.event(target, args):
            self._queue.put_nowait(rec)

    async def _on_connected(self, reconnect: bool) -> None:
        assert self.hub is not None
        self.parser.reset()
        for cid in self.contracts.values():
            await self.hub.invoke("SubscribeContractQuotes", cid)
            await self.hub.invoke("SubscribeContractTrades", cid)
            await self.hub.invoke("SubscribeContractMarketDepth", cid)
        self.stats["connections"] += 1
        self._queue.put_nowait(self._status(FeedState.STREAMING, "subscribed " + ", ".join(self.contracts.values())))
        if reconnect and self._lost_at is not None:
            self.stats["gaps"] += 1
            self._queue.put_nowait(GapEvent(self._lost_at, time.time_ns(), self.name, "market hub reconnect"))
        self._lost_at = None

    def _on_disconnected(self, reason: str) -> None:
        self.stats["disconnects"] += 1
        if self._lost_at is None:
            self._lost_at = time.time_ns()
        self._queue.put_nowait(self._status(FeedState.RECONNECTING, reason[:200]))

    async def _events(self) -> AsyncIterator[FeedEvent]:
        yield self._status(FeedState.CONNECTING, f"connecting to {self.hub_url}")
        try:
            await self.client.token(force=True)
            problems = await self._resolve()
        except ProjectXAuthError as exc:
            self.stats["auth_failed"] += 1
            yield self._status(FeedState.FAILED, str(exc))
            return
        except ProjectXError as exc:
            yield self._status(FeedState.FAILED, f"ProjectX REST: {exc}")
            return
        if problems or not self.contracts:
            yield self._status(FeedState.FAILED, "; ".join(problems) or "no contracts")
            return
        self.hub = HubConnection(
            self.hub_url, self.client.token, self._on_event, name="market", on_connected=self._on_connected,
            on_disconnected=self._on_disconnected, ping_seconds=self.cfg.ping_seconds,
            server_timeout_seconds=self.cfg.server_timeout_seconds,
            backoff_initial_seconds=self.cfg.backoff_initial_seconds,
            backoff_max_seconds=self.cfg.backoff_max_seconds)
        try:
            await self.hub.start()
        except (HubError, OSError, TimeoutError, ProjectXError) as exc:
            yield self._status(FeedState.FAILED, f"market hub: {type(exc).__name__}: {exc}")
            await self.hub.stop()
            return
        try:
            while not self._closed:
                yield await self._queue.get()
        finally:
            await self.hub.stop()

    async def close(self) -> None:
        await super().close()
        if self.hub is not None:
            await self.hub.stop()
        await self.client.aclose()


__all__ = ["ProjectXMarketFeed", "ProjectXMarketParser"]
