"""A local stand-in for Coinbase Advanced Trade's public market-data websocket (and the public product endpoint),
for tests only.

It speaks the real protocol: per-channel ``subscribe``/``unsubscribe`` requests; a ``subscriptions`` message;
``l2_data`` with a ``snapshot`` of the book it keeps (``bid``/``offer`` levels as decimal strings) then
``update`` events; ``market_trades`` with a ``snapshot`` of recent trades then updates (``side`` = the maker's
side); ``heartbeats``; one ``sequence_num`` counter per connection across all channels. A :class:`CbPlan`
scripts each connection: steps to stream (book changes, trades, raw text), a skipped sequence number (a gap),
and ``hold``/``close``/``abort`` at the end. Resubscribing ``level2`` sends a fresh snapshot of the current book.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlparse

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

PRODUCTS = {"BTC-USD": {"product_id": "BTC-USD", "price": "97000.01", "quote_increment": "0.01",
                        "base_increment": "0.00000001", "base_min_size": "0.00000001", "status": "online",
                        "base_currency_id": "BTC", "quote_currency_id": "USD"}}


def iso(ns: int | None = None) -> str:
    now = dt.datetime.now(dt.UTC) if ns is None else dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanosecond precision, as Coinbase sends


@dataclass
class Level:
    side: Literal["bid", "offer"]
    price: str
    qty: str


@dataclass
class Trade:
    price: str
    size: str
    maker_side: Literal["BUY", "SELL"]
    trade_id: int


@dataclass
class Raw:
    text: str


Step = list[Level] | Trade | list[Trade] | Raw | Literal["gap"]


@dataclass
class CbPlan:
    steps: list[Step] = field(default_factory=list)
    interval_s: float = 0.02
    after: Literal["hold", "close", "abort"] = "hold"
    heartbeat_s: float = 0.5


@dataclass
class ConnLog:
    index: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    snapshots_sent: int = 0


class CoinbaseStandIn:
    def __init__(self, plans: list[CbPlan], product: str = "BTC-USD",
                 book: list[Level] | None = None) -> None:
        self.plans = plans
        self.product = product
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}
        for lv in book or []:
            self._apply(lv)
        self.connections: list[ConnLog] = []
        self.rest_requests: list[str] = []
        self._server: Server | None = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> CoinbaseStandIn:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._http, compression=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def _apply(self, lv: Level) -> None:
        side = self.bids if lv.side == "bid" else self.asks
        if Decimal(lv.qty) == 0:
            side.pop(Decimal(lv.price), None)
        else:
            side[Decimal(lv.price)] = lv.qty

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlparse(request.path).path
        if not path.startswith("/api/"):
            return None
        self.rest_requests.append(path)
        pid = path.rstrip("/").rsplit("/", 1)[-1]
        body = PRODUCTS.get(pid)
        data = json.dumps(body if body else {"error": "NOT_FOUND", "message": "product not found"}).encode()
        return Response(200 if body else 404, "OK" if body else "Not Found",
                        Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))]), data)

    async def _handler(self, ws: ServerConnection) -> None:
        log = ConnLog(len(self.connections))
        self.connections.append(log)
        plan = self.plans[min(log.index, len(self.plans) - 1)]
        seq = [0]
        lock = asyncio.Lock()

        async def send(channel: str, events: list[dict[str, Any]], skip: bool = False) -> None:
            async with lock:
                if skip:
                    seq[0] += 1
                await ws.send(json.dumps({"channel": channel, "client_id": "", "timestamp": iso(),
                                          "sequence_num": seq[0], "events": events}))
                seq[0] += 1

        async def snapshot() -> None:
            ups = [{"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": str(p), "new_quantity": q}
                   for p, q in sorted(self.bids.items(), reverse=True)]
            ups += [{"side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": str(p),
                     "new_quantity": q} for p, q in sorted(self.asks.items())]
            log.snapshots_sent += 1
            await send("l2_data", [{"type": "snapshot", "product_id": self.product, "updates": ups}])

        level2 = asyncio.Event()
        trades_on = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                log.requests.append(msg)
                ch, typ = msg.get("channel"), msg.get("type")
                if typ == "subscribe":
                    await send("subscriptions", [{"subscriptions": {ch: msg.get("product_ids", [])}}])
                    if ch == "level2":
                        await snapshot()
                        level2.set()
                    elif ch == "market_trades":
                        await send("market_trades", [{"type": "snapshot", "trades": [
                            {"trade_id": "1", "product_id": self.product, "price": "96990.00", "size": "0.1",
                             "side": "BUY", "time": iso()}]}])
                        trades_on.set()
                elif typ == "unsubscribe" and ch == "level2":
                    level2.clear()

        async def heartbeats() -> None:
            n = 0
            while True:
                await asyncio.sleep(plan.heartbeat_s)
                n += 1
                await send("heartbeats", [{"current_time": iso(), "heartbeat_counter": str(n)}])

        rd = asyncio.create_task(reader())
        hb = asyncio.create_task(heartbeats())
        try:
            await asyncio.wait_for(asyncio.gather(level2.wait(), trades_on.wait()), 10)
            skip_next = False
            for step in plan.steps:
                await asyncio.sleep(plan.interval_s)
                if step == "gap":
                    skip_next = True
                    continue
                if isinstance(step, Raw):
                    await ws.send(step.text)
                    continue
                if isinstance(step, Trade | list) and (isinstance(step, Trade) or
                                                       (step and isinstance(step[0], Trade))):
                    trades = [step] if isinstance(step, Trade) else step
                    await send("market_trades", [{"type": "update", "trades": [
                        {"trade_id": str(t.trade_id), "product_id": self.product, "price": t.price, "size": t.size,
                         "side": t.maker_side, "time": iso()} for t in trades]}], skip=skip_next)
                else:
                    levels = [lv for lv in step if isinstance(lv, Level)]  # type: ignore[union-attr]
                    for lv in levels:
                        self._apply(lv)
                    await send("l2_data", [{"type": "update", "product_id": self.product, "updates": [
                        {"side": lv.side, "event_time": iso(), "price_level": lv.price, "new_quantity": lv.qty}
                        for lv in levels]}], skip=skip_next)
                skip_next = False
            if plan.after == "close":
                await ws.close()
            elif plan.after == "abort":
                ws.transport.abort()
            else:
                await rd
        except Exception:
            pass
        finally:
            rd.cancel()
            hb.cancel()


def trending_market(n: int, start: Decimal = Decimal("97000.00"), seed: int = 1) -> list[Step]:
    """A rising BTC-USD market for daemon tests: buyers lift a thick offer level after level (stacked buy
    imbalances, positive delta), a few small sellers, a 1-BTC print hitting the bid now and then (large
    sellers for seed 000's alerts), the book following the price with 5 BTC a level."""
    import random

    rnd = random.Random(seed)
    steps: list[Step] = []
    px = start
    tick = Decimal("0.01")
    tid = 1000
    for i in range(n):
        tid += 1
        if i % 40 == 39:
            steps.append(Trade(str(px - tick), "1.00000000", "BUY", tid))  # a seller hits the bid with 1 BTC
            continue
        if i % 4 == 0:
            px += tick
            steps.append([Level("bid", str(px - tick * 2), "0"), Level("bid", str(px - tick), "5"),
                          Level("bid", str(px - tick * 3), "5"), Level("offer", str(px), "0"),
                          Level("offer", str(px + tick), "5"), Level("offer", str(px + tick * 5), "5")])
            continue
        if rnd.random() < 0.85:
            steps.append(Trade(str(px + tick), f"0.{rnd.randint(5, 60):02d}000000", "SELL", tid))  # buyer lifts
        else:
            steps.append(Trade(str(px - tick), f"0.0{rnd.randint(1, 9)}000000", "BUY", tid))  # small seller
    return steps
