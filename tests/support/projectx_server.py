"""A faithful local ProjectX Gateway (TopstepX) for tests: REST + the SignalR user and market hubs.

It speaks the Gateway's documented shapes (see :mod:`tradebot.feeds.projectx_rest`): ``POST /api/...`` with JSON
bodies answered ``{..., success, errorCode, errorMessage}``, bearer tokens from ``/api/Auth/loginKey``, and two
SignalR hubs (``/hubs/user``, ``/hubs/market``) on the JSON protocol (handshake, 0x1E framing, invocations,
completions, pings, close) with the token in ``access_token``.

Orders fill from the market data it serves, by the **paper broker's rules** (it drives a
:class:`~tradebot.execution.paper.PaperBroker` with standalone orders: :meth:`PaperBroker.place_order`), so a
daemon trading against it makes the same trades as paper mode on the same data. State lives in the server, not
in connections: a fill can happen while no client is connected, and shows up in ``/api/Trade/search``.

Timestamps carry nine fractional digits where the Gateway sends seven (see :func:`format_ts`).

Market time: orders are armed, and every timestamp is stamped, at the time of the last market event served (the
wall clock before the first). The ``startTimestamp`` filters of ``/api/Order/search`` and ``/api/Trade/search``
apply to the wall time a record was created (as on the real server, whose clock is the wall clock), so a client
looking back 24 hours finds a replayed day's records.

Scripted faults (:class:`Faults`, settable in process or with ``POST /_standin/faults``): lost placement answers
(order accepted, connection dropped before the answer), duplicate and out-of-order user-hub events, a forced
disconnect of every hub socket, HTTP statuses queued per path (401 / 429 with Retry-After / 5xx), ``success:
false`` on the next call to a path, stops the broker rejects, expired tokens.

Run as a process: ``python -m support.projectx_server --port 0 --data FILE [--symbol ES] [--speed 1] [--live-clock]``
from ``tests/`` (``--live-clock`` moves the day to now, compressed by the speed, for a daemon that checks
freshness); it prints ``PROJECTX_URL=http://127.0.0.1:PORT`` on stdout once listening (hubs at ``/hubs/user`` and
``/hubs/market``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, MarketEvent, Side, Trade
from tradebot.execution.model import Fill, OrderType
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.feeds.projectx_rest import (
    PxDomType,
    PxOrderStatus,
    PxOrderType,
    PxPositionType,
    PxSide,
    parse_ts,
    price_to_ticks,
    px_code,
    ticks_to_price,
)
from tradebot.feeds.projectx_rest import format_ts as _format_ts

RS = "\x1e"
CONTRACT_MONTH = "Z26"


def format_ts(ns: int) -> str:
    """Nanosecond timestamps (the Gateway sends 100 ns): a replay through the stand-in keeps every record's exact
    time, so the paper broker's same-timestamp rules group events exactly as in paper mode."""
    return _format_ts(ns, 9)


@dataclass
class Faults:
    lose_place_answers: int = 0
    """The next N placements are executed, then the connection is dropped before the answer."""
    duplicate_events: bool = False
    """Every user-hub event is sent twice."""
    out_of_order: bool = False
    """A fill's trade event goes before its order update, followed by a stale copy of the previous order state."""
    reject_stops: int = 0
    """The next N stop orders are refused (``success: false``, errorCode 2)."""
    reject_next: dict[str, int] = field(default_factory=dict)
    """Path -> errorCode: the next call answers ``success: false`` with it."""
    http_status: dict[str, list[int]] = field(default_factory=dict)
    """Path -> statuses answered (one per request) before the path works again."""
    retry_after: float = 0.2
    disconnect_after_fills: int = 0
    """Drop every user-hub socket right after the N-th fill (``disconnect mid-bracket``), then again never."""
    refuse_hub: int = 0
    """The next N hub upgrades are refused with HTTP 401."""
    hold_user_events: bool = False
    """Do not deliver user-hub events (a connected but silent hub); REST still tells the truth."""


@dataclass
class _HubClient:
    ws: web.WebSocketResponse
    hub: str
    subs: set[tuple[str, Any]] = field(default_factory=set)


class ProjectXStandIn:
    """The server's state and behaviour (see the module docstring); ``start()`` serves it on 127.0.0.1."""

    def __init__(self, *, username: str = "trader", api_key: str = "test-api-key-123456",
                 accounts: list[dict[str, Any]] | None = None, symbols: tuple[str, ...] = ("ES", "MES", "NQ", "MNQ"),
                 paper: PaperConfig | None = None, ping_seconds: float = 5.0,
                 data_symbols: set[str] | None = None) -> None:
        self.username = username
        self.api_key = api_key
        self.accounts = accounts if accounts is not None else [
            {"id": 465, "name": "50KTC-V2-465-1234", "balance": 50000.0, "canTrade": True, "isVisible": True,
             "simulated": True}]
        self.contracts: dict[str, dict[str, Any]] = {}
        for root in symbols:
            spec = spec_for(root)
            code = px_code(root)
            self.contracts[root] = {
                "id": f"CON.F.US.{code}.{CONTRACT_MONTH}", "name": f"{code}{CONTRACT_MONTH}",
                "description": f"{spec.name}: December 2026", "tickSize": float(spec.tick_size),
                "tickValue": float(spec.tick_value_cents) / 100, "activeContract": True, "symbolId": f"F.US.{code}"}
        self.by_contract = {c["id"]: root for root, c in self.contracts.items()}
        # data_symbols: the roots the served market data covers; an MES order fills from ES data (the paper
        # broker's own mini/micro rule), exactly as in a paper daemon on the same feed.
        self.paper = PaperBroker(paper or PaperConfig(), data_symbols=data_symbols)
        self.tokens: set[str] = set()
        self.orders: dict[int, dict[str, Any]] = {}
        self.order_wall: dict[int, int] = {}
        self.trades: list[dict[str, Any]] = []
        self.trade_wall: dict[int, int] = {}
        self.positions: dict[str, dict[str, Any]] = {}
        self.brackets: dict[int, dict[str, Any]] = {}
        """Entry order id -> its native stopLossBracket/takeProfitBracket (placed when it fills)."""
        self.oco: dict[int, int] = {}
        self._ids = itertools.count(9000)
        self._trade_ids = itertools.count(8000)
        self._pos_ids = itertools.count(700)
        self.faults = Faults()
        self.clients: list[_HubClient] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.now_ns = 0
        self.fills_seen = 0
        self.ping_seconds = ping_seconds
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.market_log: list[MarketEvent] = []
        self._replay: asyncio.Task[None] | None = None
        self._replay_go = asyncio.Event()

    # ==============================================================================================
    # Serving

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/api/{group}/{action}", self._rest)
        app.router.add_get("/hubs/{hub}", self._hub)
        app.router.add_post("/_standin/faults", self._set_faults)
        app.router.add_get("/_standin/state", self._state)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        sock = server.sockets[0]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._replay is not None:
            self._replay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._replay
        await self.disconnect_all()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def user_hub_url(self) -> str:
        return f"{self.url}/hubs/user"

    @property
    def market_hub_url(self) -> str:
        return f"{self.url}/hubs/market"

    def now(self) -> int:
        return self.now_ns or time.time_ns()

    # ==============================================================================================
    # Market data in, fills out

    async def market(self, ev: MarketEvent) -> None:
        """Serve one market event: publish it on the market hub, then let working orders fill on it."""
        self.now_ns = max(self.now_ns, ev.ts_event)
        self.market_log.append(ev)
        await self._publish_market(ev)
        self.paper.on_market_event(ev)
        await self._drain_paper()

    def replay(self, events: list[MarketEvent], speed: float, live_clock: bool = False) -> None:
        """Serve ``events`` in the background at ``speed`` x real time (0: as fast as the loop allows), starting
        when the first market-hub client has subscribed to a contract's quotes, trades and depth (so a daemon sees
        the day from its first record)."""

        async def run() -> None:
            await self._replay_go.wait()
            t0_ev, t0_wall = (events[0].ts_event if events else 0), time.monotonic()
            # live_clock: the day moved to now and compressed by the speed (order and same-time groups kept), for
            # a daemon whose validator checks freshness against the wall clock.
            base = time.time_ns()
            for ev in events:
                if speed > 0:
                    due = t0_wall + (ev.ts_event - t0_ev) / 1e9 / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)
                if live_clock:
                    ts = base + int((ev.ts_event - t0_ev) / (speed or 1.0))
                    ev = dataclasses.replace(ev, ts_event=ts, ts_recv=ts)
                await self.market(ev)

        self._replay = asyncio.create_task(run())

    async def _drain_paper(self) -> None:
        for pev in self.paper.poll_events():
            if isinstance(pev, Fill):
                await self._on_fill(pev)

    async def _on_fill(self, f: Fill) -> None:
        oid = int(f.client_order_id.removeprefix("px-"))
        o = self.orders[oid]
        contract = self.contracts[self.by_contract[o["contractId"]]]
        tick = Decimal(str(contract["tickSize"]))
        before = dict(o)
        ts = format_ts(f.ts_ns)
        prev_filled = o["fillVolume"]
        o["fillVolume"] = prev_filled + f.quantity
        px = ticks_to_price(f.price, tick)
        o["filledPrice"] = px if not prev_filled else float(
            (Decimal(str(o["filledPrice"])) * prev_filled + Decimal(str(px)) * f.quantity) / o["fillVolume"])
        o["updateTimestamp"] = ts
        if o["fillVolume"] >= o["size"]:
            o["status"] = int(PxOrderStatus.FILLED)
        tid = next(self._trade_ids)
        pnl = self._apply_position(o["contractId"], f, tick)
        fees = Decimal(self.paper.config.fee_for(self.by_contract[o["contractId"]], f.quantity, f.price)) / 100
        trade = {"id": tid, "accountId": o["accountId"], "contractId": o["contractId"], "creationTimestamp": ts,
                 "price": px, "profitAndLoss": pnl, "fees": float(fees), "side": o["side"], "size": f.quantity,
                 "voided": False, "orderId": oid}
        self.trades.append(trade)
        self.trade_wall[tid] = time.time_ns()
        order_ev = dict(o)
        if self.faults.out_of_order:
            await self._user("GatewayUserTrade", trade)
            await self._user("GatewayUserOrder", order_ev)
            await self._user("GatewayUserOrder", before)  # the stale state, late
        else:
            await self._user("GatewayUserOrder", order_ev)
            await self._user("GatewayUserTrade", trade)
        pos = self.positions.get(o["contractId"])
        await self._user("GatewayUserPosition", pos if pos is not None else {
            "id": 0, "accountId": o["accountId"], "contractId": o["contractId"], "creationTimestamp": ts,
            "type": int(PxPositionType.UNDEFINED), "size": 0, "averagePrice": 0.0})
        await self._after_fill(oid, o, f, tick)
        self.fills_seen += 1
        if self.faults.disconnect_after_fills and self.fills_seen >= self.faults.disconnect_after_fills:
            self.faults.disconnect_after_fills = 0
            await self.disconnect_all("user")

    def _apply_position(self, contract_id: str, f: Fill, tick: Decimal) -> float | None:
        """Net position bookkeeping; the realised P&L of a closing trade (``None`` for an opening half-turn)."""
        signed = f.quantity if f.side == Side.BUY else -f.quantity
        pos = self.positions.get(contract_id)
        old = 0 if pos is None else (pos["size"] if pos["type"] == PxPositionType.LONG else -pos["size"])
        new = old + signed
        pnl: float | None = None
        root = self.by_contract[contract_id]
        if old and (old > 0) != (signed > 0):
            closed = min(abs(signed), abs(old))
            avg = Decimal(str(pos["averagePrice"])) if pos else Decimal(0)
            px = Decimal(str(ticks_to_price(f.price, tick)))
            per_point = Decimal(spec_for(root).tick_value_cents) / 100 / tick
            pnl = float((px - avg) * closed * per_point * (1 if old > 0 else -1))
        if new == 0:
            self.positions.pop(contract_id, None)
            return pnl
        px_now = Decimal(str(ticks_to_price(f.price, tick)))
        if pos is None or (old > 0) != (new > 0) or old == 0:
            avg_new = px_now
            created = format_ts(f.ts_ns)
            pid = next(self._pos_ids)
        else:
            created, pid = pos["creationTimestamp"], pos["id"]
            if abs(new) > abs(old):
                avg_new = (Decimal(str(pos["averagePrice"])) * abs(old) + px_now * abs(signed)) / abs(new)
            else:
                avg_new = Decimal(str(pos["averagePrice"]))
        self.positions[contract_id] = {
            "id": pid, "accountId": self.accounts[0]["id"], "contractId": contract_id, "creationTimestamp": created,
            "type": int(PxPositionType.LONG if new > 0 else PxPositionType.SHORT), "size": abs(new),
            "averagePrice": float(avg_new)}
        return pnl

    async def _after_fill(self, oid: int, o: dict[str, Any], f: Fill, tick: Decimal) -> None:
        """Native brackets (placed at the entry's fill price +- ticks) and their server-side OCO."""
        other = self.oco.get(oid)
        if other is not None and o["status"] == PxOrderStatus.FILLED:
            self.oco.pop(oid, None)
            self.oco.pop(other, None)
            await self._cancel_order(other)
        br = self.brackets.get(oid)
        if br is None or o["status"] != PxOrderStatus.FILLED:
            return
        self.brackets.pop(oid)
        exit_side = 1 - o["side"]
        sign = 1 if o["side"] == PxSide.BID else -1
        ids = []
        for key, kind in (("stopLossBracket", -1), ("takeProfitBracket", 1)):
            spec = br.get(key)
            if not isinstance(spec, dict):
                continue
            ticks = int(spec.get("ticks") or 0)
            level = f.price + kind * sign * ticks
            otype = int(spec.get("type") or (PxOrderType.STOP if kind < 0 else PxOrderType.LIMIT))
            body = {"accountId": o["accountId"], "contractId": o["contractId"], "type": otype, "side": exit_side,
                    "size": o["size"], "customTag": None,
                    "stopPrice": ticks_to_price(level, tick) if otype == PxOrderType.STOP else None,
                    "limitPrice": ticks_to_price(level, tick) if otype == PxOrderType.LIMIT else None}
            res = await self._place(body, f.ts_ns)
            if res.get("success"):
                ids.append(int(res["orderId"]))
        if len(ids) == 2:
            self.oco[ids[0]], self.oco[ids[1]] = ids[1], ids[0]

    # ==============================================================================================
    # REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"success": False, "errorCode": 1, "errorMessage": "bad JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"success": False, "errorCode": 1, "errorMessage": "bad body"}, status=400)
        self.requests.append((path, body))
        queued = self.faults.http_status.get(path)
        if queued:
            status = queued.pop(0)
            headers = {"Retry-After": str(self.faults.retry_after)} if status == 429 else {}
            return web.Response(status=status, text="", headers=headers)
        if path == "/api/Auth/loginKey":
            return web.json_response(self._login(body))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return web.Response(status=401)
        code = self.faults.reject_next.pop(path, None)
        if code is not None:
            return web.json_response({"success": False, "errorCode": code, "errorMessage": "scripted refusal"})
        handler = self._routes().get(path)
        if handler is None:
            return web.Response(status=404)
        result = await handler(body)
        if path == "/api/Order/place" and self.faults.lose_place_answers > 0 and result.get("success"):
            self.faults.lose_place_answers -= 1
            # Accepted and working, but the answer never arrives: the client's connection drops.
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("answer lost (scripted)")
        return web.json_response(result)

    def _routes(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {
            "/api/Auth/validate": self._validate, "/api/Account/search": self._accounts,
            "/api/Contract/search": self._contract_search, "/api/Order/place": self._place_rest,
            "/api/Order/modify": self._modify, "/api/Order/cancel": self._cancel,
            "/api/Order/searchOpen": self._search_open, "/api/Order/search": self._search_orders,
            "/api/Position/searchOpen": self._positions, "/api/Position/closeContract": self._close_contract,
            "/api/Trade/search": self._trade_search,
        }

    def _login(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("userName") != self.username or body.get("apiKey") != self.api_key:
            return {"token": None, "success": False, "errorCode": 3, "errorMessage": None}
        token = "eyJ" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        return {"token": token, "success": True, "errorCode": 0, "errorMessage": None}

    def expire_tokens(self) -> None:
        self.tokens.clear()

    async def set_can_trade(self, can: bool, account_id: int | None = None) -> None:
        """The firm locks (or unlocks) the account: ``canTrade`` changes, pushed as ``GatewayUserAccount``."""
        acct = next(a for a in self.accounts if account_id is None or a["id"] == account_id)
        acct["canTrade"] = can
        await self._user("GatewayUserAccount", dict(acct))

    async def _validate(self, body: dict[str, Any]) -> dict[str, Any]:
        token = "eyJ" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        return {"success": True, "errorCode": 0, "errorMessage": None, "newToken": token}

    async def _accounts(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"accounts": self.accounts, "success": True, "errorCode": 0, "errorMessage": None}

    async def _contract_search(self, body: dict[str, Any]) -> dict[str, Any]:
        text = str(body.get("searchText") or "").upper()
        found = [c for c in self.contracts.values() if text and text in str(c["name"]).upper()]
        return {"contracts": found, "success": True, "errorCode": 0, "errorMessage": None}

    def _account_ok(self, body: dict[str, Any]) -> bool:
        return any(a["id"] == body.get("accountId") for a in self.accounts)

    async def _place_rest(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._place(body, None)

    async def _place(self, body: dict[str, Any], ts_ns: int | None) -> dict[str, Any]:
        def fail(code: int, msg: str) -> dict[str, Any]:
            return {"orderId": 0, "success": False, "errorCode": code, "errorMessage": msg}

        if not self._account_ok(body):
            return fail(1, "Account not found")
        acct = next(a for a in self.accounts if a["id"] == body["accountId"])
        if not acct.get("canTrade"):
            return fail(1, "Account cannot trade")
        root = self.by_contract.get(str(body.get("contractId")))
        if root is None:
            return fail(4, "Contract not found")
        tick = Decimal(str(self.contracts[root]["tickSize"]))
        otype, side, size = body.get("type"), body.get("side"), body.get("size")
        if otype not in (PxOrderType.MARKET, PxOrderType.LIMIT, PxOrderType.STOP):
            return fail(2, f"Unsupported order type {otype}")
        if side not in (PxSide.BID, PxSide.ASK) or not isinstance(size, int) or size <= 0:
            return fail(2, "Invalid side or size")
        tag = body.get("customTag")
        if tag is not None and any(o.get("customTag") == tag for o in self.orders.values()):
            return fail(2, "customTag must be unique across the account")
        if otype == PxOrderType.STOP and self.faults.reject_stops > 0:
            self.faults.reject_stops -= 1
            return fail(2, "Stop price is on the wrong side of the market (scripted)")
        price_key = {PxOrderType.LIMIT: "limitPrice", PxOrderType.STOP: "stopPrice"}.get(PxOrderType(otype))
        price: int | None = None
        if price_key is not None:
            price = price_to_ticks(body.get(price_key), tick)
            if price is None:
                return fail(2, f"{price_key} missing or off the tick grid")
        oid = next(self._ids)
        now = ts_ns if ts_ns is not None else self.now()
        ts = format_ts(now)
        o = {"id": oid, "accountId": body["accountId"], "contractId": body["contractId"],
             "symbolId": self.contracts[root]["symbolId"], "creationTimestamp": ts, "updateTimestamp": ts,
             "status": int(PxOrderStatus.OPEN), "type": int(otype), "side": int(side), "size": size,
             "limitPrice": body.get("limitPrice") if otype == PxOrderType.LIMIT else None,
             "stopPrice": body.get("stopPrice") if otype == PxOrderType.STOP else None,
             "fillVolume": 0, "filledPrice": None, "customTag": tag}
        self.orders[oid] = o
        self.order_wall[oid] = time.time_ns()
        if body.get("stopLossBracket") or body.get("takeProfitBracket"):
            self.brackets[oid] = {k: body.get(k) for k in ("stopLossBracket", "takeProfitBracket")}
        ours = Side.BUY if side == PxSide.BID else Side.SELL
        ot = {PxOrderType.MARKET: OrderType.MARKET, PxOrderType.LIMIT: OrderType.LIMIT,
              PxOrderType.STOP: OrderType.STOP}[PxOrderType(otype)]
        self.paper.place_order(f"px-{oid}", root, ours, ot, size, price, now)
        self.paper.poll_events()  # the paper Ack: this server answers itself
        await self._user("GatewayUserOrder", dict(o))
        return {"orderId": oid, "success": True, "errorCode": 0, "errorMessage": None}

    async def _modify(self, body: dict[str, Any]) -> dict[str, Any]:
        o = self.orders.get(body.get("orderId"))  # type: ignore[arg-type]
        if o is None or not self._account_ok(body):
            return {"success": False, "errorCode": 1, "errorMessage": "Order not found"}
        if o["status"] != PxOrderStatus.OPEN:
            return {"success": False, "errorCode": 2, "errorMessage": "Order is not open"}
        tick = Decimal(str(self.contracts[self.by_contract[o["contractId"]]]["tickSize"]))
        size = body.get("size")
        price_raw = body.get("stopPrice") if o["type"] == PxOrderType.STOP else body.get("limitPrice")
        price = price_to_ticks(price_raw, tick) if price_raw is not None else None
        if price_raw is not None and price is None:
            return {"success": False, "errorCode": 2, "errorMessage": "price off the tick grid"}
        if not self.paper.amend_order(f"px-{o['id']}", self.now(), size if isinstance(size, int) else None, price):
            return {"success": False, "errorCode": 2, "errorMessage": "Order cannot be modified"}
        if isinstance(size, int):
            o["size"] = size
        if price is not None:
            o["stopPrice" if o["type"] == PxOrderType.STOP else "limitPrice"] = price_raw
        o["updateTimestamp"] = format_ts(self.now())
        await self._user("GatewayUserOrder", dict(o))
        return {"success": True, "errorCode": 0, "errorMessage": None}

    async def _cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        o = self.orders.get(body.get("orderId"))  # type: ignore[arg-type]
        if o is None or not self._account_ok(body):
            return {"success": False, "errorCode": 1, "errorMessage": "Order not found"}
        if o["status"] not in (PxOrderStatus.OPEN, PxOrderStatus.PENDING):
            return {"success": False, "errorCode": 2, "errorMessage": "Order is not open"}
        await self._cancel_order(o["id"])
        return {"success": True, "errorCode": 0, "errorMessage": None}

    async def _cancel_order(self, oid: int) -> None:
        o = self.orders[oid]
        if o["status"] not in (PxOrderStatus.OPEN, PxOrderStatus.PENDING):
            return
        self.paper.cancel(f"px-{oid}", self.now())
        self.paper.poll_events()
        o["status"] = int(PxOrderStatus.CANCELLED)
        o["updateTimestamp"] = format_ts(self.now())
        other = self.oco.pop(oid, None)
        if other is not None:
            self.oco.pop(other, None)
        await self._user("GatewayUserOrder", dict(o))

    async def _search_open(self, body: dict[str, Any]) -> dict[str, Any]:
        found = [o for o in self.orders.values() if o["accountId"] == body.get("accountId")
                 and o["status"] in (PxOrderStatus.OPEN, PxOrderStatus.PENDING)]
        return {"orders": found, "success": True, "errorCode": 0, "errorMessage": None}

    def _window(self, body: dict[str, Any]) -> tuple[int, int] | None:
        start = parse_ts(body.get("startTimestamp"))
        if start is None:
            return None
        end = parse_ts(body.get("endTimestamp")) if body.get("endTimestamp") else None
        return start, end if end is not None else 2**63

    async def _search_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        win = self._window(body)
        if win is None:
            return {"orders": [], "success": False, "errorCode": 1, "errorMessage": "startTimestamp required"}
        found = [o for o in self.orders.values() if o["accountId"] == body.get("accountId")
                 and win[0] <= self.order_wall[o["id"]] < win[1]]
        return {"orders": found, "success": True, "errorCode": 0, "errorMessage": None}

    async def _positions(self, body: dict[str, Any]) -> dict[str, Any]:
        found = [p for p in self.positions.values() if p["accountId"] == body.get("accountId")]
        return {"positions": found, "success": True, "errorCode": 0, "errorMessage": None}

    async def _close_contract(self, body: dict[str, Any]) -> dict[str, Any]:
        pos = self.positions.get(str(body.get("contractId")))
        if pos is None or not self._account_ok(body):
            return {"success": False, "errorCode": 1, "errorMessage": "Position not found"}
        side = PxSide.ASK if pos["type"] == PxPositionType.LONG else PxSide.BID
        return await self._place({"accountId": pos["accountId"], "contractId": pos["contractId"],
                                  "type": int(PxOrderType.MARKET), "side": int(side), "size": pos["size"]}, None)

    async def _trade_search(self, body: dict[str, Any]) -> dict[str, Any]:
        win = self._window(body)
        if win is None:
            return {"trades": [], "success": False, "errorCode": 1, "errorMessage": "startTimestamp required"}
        found = [t for t in self.trades if t["accountId"] == body.get("accountId")
                 and win[0] <= self.trade_wall[t["id"]] < win[1]]
        return {"trades": found, "success": True, "errorCode": 0, "errorMessage": None}

    # -- control ------------------------------------------------------------------------------------

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        for k, v in body.items():
            if k == "disconnect":
                await self.disconnect_all(v or None)
            elif k == "expire_tokens":
                self.expire_tokens()
            elif k == "can_trade":
                await self.set_can_trade(bool(v))
            elif hasattr(self.faults, k):
                setattr(self.faults, k, v)
        return web.json_response({"ok": True})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        return {"orders": list(self.orders.values()), "trades": self.trades,
                "positions": list(self.positions.values()), "now_ns": self.now_ns}

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["status"] in (PxOrderStatus.OPEN, PxOrderStatus.PENDING)]

    def net_position(self, root: str) -> int:
        p = self.positions.get(self.contracts[root]["id"])
        if p is None:
            return 0
        return int(p["size"]) if p["type"] == PxPositionType.LONG else -int(p["size"])

    # ==============================================================================================
    # SignalR hubs

    async def _hub(self, request: web.Request) -> web.StreamResponse:
        hub = request.match_info["hub"]
        if hub not in ("user", "market"):
            return web.Response(status=404)
        if self.faults.refuse_hub > 0:
            self.faults.refuse_hub -= 1
            return web.Response(status=401)
        if request.query.get("access_token") not in self.tokens:
            return web.Response(status=401)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 22)
        await ws.prepare(request)
        client = _HubClient(ws, hub)
        buffer = ""
        handshaken = False
        pinger = asyncio.create_task(self._ping(ws))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                buffer += msg.data
                *records, buffer = buffer.split(RS)
                for rec in records:
                    if not handshaken:
                        hs = json.loads(rec)
                        if hs.get("protocol") != "json":
                            await ws.send_str(json.dumps({"error": "Requested protocol is not available"}) + RS)
                            await ws.close()
                            return ws
                        handshaken = True
                        await ws.send_str("{}" + RS)
                        self.clients.append(client)
                        continue
                    await self._hub_message(client, json.loads(rec))
        finally:
            pinger.cancel()
            if client in self.clients:
                self.clients.remove(client)
        return ws

    async def _ping(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.ping_seconds)
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps({"type": 6}) + RS)

    async def _hub_message(self, client: _HubClient, m: dict[str, Any]) -> None:
        if m.get("type") != 1:
            return
        target, args = m.get("target"), m.get("arguments") or []
        inv = m.get("invocationId")
        error = None
        if client.hub == "user" and target in ("SubscribeAccounts", "SubscribeOrders", "SubscribePositions",
                                               "SubscribeTrades"):
            client.subs.add((str(target), args[0] if args else None))
        elif client.hub == "market" and target in ("SubscribeContractQuotes", "SubscribeContractTrades",
                                                   "SubscribeContractMarketDepth"):
            if not args or args[0] not in self.by_contract:
                error = f"unknown contract {args[0] if args else None!r}"
            else:
                client.subs.add((str(target), args[0]))
                if sum(1 for sub in client.subs if sub[1] == args[0]) == 3:
                    self._replay_go.set()  # quotes, trades and depth of one contract: start the day
        elif target and str(target).startswith("Unsubscribe"):
            client.subs = {s for s in client.subs if s[1] != (args[0] if args else None)}
        else:
            error = f"Method does not exist: {target}"
        if inv is not None:
            answer: dict[str, Any] = {"type": 3, "invocationId": inv}
            if error:
                answer["error"] = error
            else:
                answer["result"] = None
            await self._send(client, answer)

    async def _send(self, client: _HubClient, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await client.ws.send_str(json.dumps(message) + RS)

    async def _user(self, target: str, data: dict[str, Any]) -> None:
        if self.faults.hold_user_events:
            return
        sub = {"GatewayUserOrder": "SubscribeOrders", "GatewayUserTrade": "SubscribeTrades",
               "GatewayUserPosition": "SubscribePositions", "GatewayUserAccount": "SubscribeAccounts"}[target]
        msg = {"type": 1, "target": target, "arguments": [data]}
        for c in list(self.clients):
            if c.hub == "user" and any(s[0] == sub for s in c.subs):
                await self._send(c, msg)
                if self.faults.duplicate_events:
                    await self._send(c, msg)

    async def disconnect_all(self, hub: str | None = None) -> None:
        """Close every hub socket (``hub``: only that hub's), as a network failure would."""
        for c in list(self.clients):
            if hub is None or c.hub == hub:
                with contextlib.suppress(Exception):
                    await c.ws.close()

    async def _publish_market(self, ev: MarketEvent) -> None:
        if not any(c.hub == "market" for c in self.clients):
            return
        root = ev.symbol
        contract = self.contracts.get(root)
        if contract is None:
            return
        cid = contract["id"]
        tick = Decimal(str(contract["tickSize"]))
        ts = format_ts(ev.ts_event)
        messages: list[tuple[str, dict[str, Any]]] = []
        if isinstance(ev, Trade):
            ttype = 0 if ev.side == Side.BUY else 1 if ev.side == Side.SELL else 0
            messages.append(("SubscribeContractTrades", {"type": 1, "target": "GatewayTrade", "arguments": [
                cid, [{"symbolId": contract["symbolId"], "price": ticks_to_price(ev.price, tick), "timestamp": ts,
                       "type": ttype, "volume": ev.size}]]}))
        elif isinstance(ev, BookUpdate):
            entries = [{"timestamp": ts, "type": int(PxDomType.RESET), "price": 0.0, "volume": 0,
                        "currentVolume": 0}]
            for px, sz in zip(ev.bid_px, ev.bid_sz, strict=False):
                entries.append({"timestamp": ts, "type": int(PxDomType.BID), "price": ticks_to_price(px, tick),
                                "volume": sz, "currentVolume": sz})
            for px, sz in zip(ev.ask_px, ev.ask_sz, strict=False):
                entries.append({"timestamp": ts, "type": int(PxDomType.ASK), "price": ticks_to_price(px, tick),
                                "volume": sz, "currentVolume": sz})
            messages.append(("SubscribeContractMarketDepth", {"type": 1, "target": "GatewayDepth",
                                                              "arguments": [cid, entries]}))
            quote = {"symbol": contract["symbolId"], "symbolName": contract["name"],
                     "bestBid": ticks_to_price(ev.bid_px[0], tick) if ev.bid_px else None,
                     "bestAsk": ticks_to_price(ev.ask_px[0], tick) if ev.ask_px else None,
                     "lastUpdated": ts, "timestamp": ts}
            messages.append(("SubscribeContractQuotes", {"type": 1, "target": "GatewayQuote",
                                                         "arguments": [cid, quote]}))
        for c in list(self.clients):
            if c.hub != "market":
                continue
            for sub, msg in messages:
                if (sub, cid) in c.subs:
                    await self._send(c, msg)


async def load_events(path: Path, symbol: str) -> list[MarketEvent]:
    """A data file's validated trades and book updates (the same layer the daemon uses)."""
    from tradebot.core.config import Settings
    from tradebot.core.types import RawBook, RawStatus, RawTrade
    from tradebot.feeds.files import open_file_feed
    from tradebot.feeds.validation import Validator

    settings = Settings()
    feed = open_file_feed([path], speed=0.0, symbol=symbol)
    validator = Validator(settings.validation, [symbol])
    validator.declare_spans_of(feed)
    out: list[MarketEvent] = []
    try:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook | RawStatus):
                v = validator.validate(ev)
                if isinstance(v, Trade | BookUpdate):
                    out.append(v)
    finally:
        await feed.close()
    return out


async def _main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description="ProjectX Gateway stand-in (tests)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--data", type=Path, help="market data file served on the market hub (DBN or tick CSV)")
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed (0: as fast as possible)")
    ap.add_argument("--live-clock", action="store_true", help="restamp the day from now on, compressed by --speed")
    ap.add_argument("--username", default="trader")
    ap.add_argument("--api-key", default="test-api-key-123456")
    args = ap.parse_args(argv)
    server = ProjectXStandIn(username=args.username, api_key=args.api_key,
                             data_symbols={args.symbol} if args.data is not None else None)
    if args.data is not None:
        events = await load_events(args.data, args.symbol)
        server.replay(events, args.speed, args.live_clock)
    url = await server.start(args.port)
    print(f"PROJECTX_URL={url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(sys.argv[1:]))
