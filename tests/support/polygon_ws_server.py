"""A local stand-in for Polygon/Massive's stocks websocket cluster (and the two REST calls of the polling
fallback), for tests only.

It speaks the real protocol: a ``connected`` status on open, ``{"action":"auth"}`` answered with
``auth_success``/``auth_failed``, ``subscribe``/``unsubscribe`` answered with ``success`` statuses, then JSON
arrays of ``T`` / ``Q`` events in the recorded field layout (``sym``, ``p``, ``s``, ``t`` ms, ``q``, ``c``...).
Each websocket connection follows a :class:`WsPlan` (the n-th connection uses ``plans[n]``, the last repeats):
stream some frames, then hold, close, or abort; refuse the upgrade with an HTTP status; fail auth; or send
``max_connections``. Timestamps left as ``None`` are stamped with the send time, so a live validator sees
fresh data. REST (``/v2/last/nbbo/{T}``, ``/v3/trades/{T}``) is served on the same port, with every request
time recorded (rate-limit checks) and an optional leading 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlparse

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

Frame = list[dict[str, Any]] | str
"""A list of events (sent as one JSON array) or raw text (a malformed frame)."""


@dataclass
class WsPlan:
    frames: list[Frame | Callable[[], Frame]] = field(default_factory=list)
    interval_s: float = 0.02
    after: Literal["hold", "close", "abort"] = "hold"
    refuse_http: int | None = None
    auth: Literal["ok", "fail", "plan", "max_connections"] = "ok"
    wait_subscribe: bool = True
    """Stream only after the client subscribed (as the real server does)."""


@dataclass
class ConnLog:
    index: int
    sent_auth: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    frames_sent: int = 0


def trade(sym: str, price: float, size: int, seq: int, t_ms: int | None = None, **extra: Any) -> dict[str, Any]:
    conditions = [37] if size < 100 else []  # 37 = odd lot, as the recorded trades carry it
    return {"ev": "T", "sym": sym, "i": str(seq), "x": 4, "p": price, "s": size, "c": conditions,
            "t": t_ms, "q": seq, "z": 3, **extra}


def quote(sym: str, bp: float, bs: int, ap: float, as_: int, seq: int, t_ms: int | None = None) -> dict[str, Any]:
    return {"ev": "Q", "sym": sym, "bx": 19, "bp": bp, "bs": bs, "ax": 11, "ap": ap, "as": as_, "c": 0,
            "i": [], "t": t_ms, "q": seq, "z": 3}


class PolygonStandIn:
    def __init__(self, key: str, plans: list[WsPlan], *, rest_429_first: int = 0, clock_offset_ns: int = 0) -> None:
        self.key = key
        self.clock_offset_ns = clock_offset_ns
        """Added to the send time stamped into messages (a test running the daemon on a shifted clock)."""
        self.plans = plans
        self.connections: list[ConnLog] = []
        self.rest_requests: list[tuple[float, str, dict[str, str], str]] = []
        self.rest_trades: dict[str, list[dict[str, Any]]] = {}
        self.rest_nbbo: dict[str, dict[str, Any]] = {}
        self.rest_429_first = rest_429_first
        self._server: Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stocks"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> PolygonStandIn:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request,
                                   compression=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def _plan(self, index: int) -> WsPlan:
        return self.plans[min(index, len(self.plans) - 1)]

    # -- HTTP: REST and refusals ------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        if url.path.startswith(("/v2/", "/v3/")):
            params = dict(parse_qsl(url.query))
            self.rest_requests.append((time.monotonic(), url.path, params,
                                       request.headers.get("Authorization", "")))
            if request.headers.get("Authorization", "") != f"Bearer {self.key}":
                return _json(401, {"status": "ERROR", "error": "Unknown API Key"})
            if self.rest_429_first > 0:
                self.rest_429_first -= 1
                return _json(429, {"status": "ERROR", "error": "exceeded the maximum requests per minute"},
                             retry_after="1")
            sym = url.path.rstrip("/").rsplit("/", 1)[-1]
            if url.path.startswith("/v2/last/nbbo/"):
                res = self.rest_nbbo.get(sym)
                return _json(200 if res else 404, {"results": res, "status": "OK"} if res else {"status": "NOT_FOUND"})
            if url.path.startswith("/v3/trades/"):
                gt = int(params.get("timestamp.gt", params.get("timestamp.gte", "0")))
                rows = [r for r in self.rest_trades.get(sym, []) if r["sip_timestamp"] > gt]
                return _json(200, {"results": rows, "status": "OK", "request_id": "standin"})
            return _json(404, {"status": "NOT_FOUND"})
        index = len(self.connections)
        plan = self._plan(index)
        if plan.refuse_http is not None:
            self.connections.append(ConnLog(index))
            return _json(plan.refuse_http, {"status": "ERROR", "message": "websocket access not in your plan"})
        return None

    # -- websocket -------------------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        log = ConnLog(len(self.connections))
        self.connections.append(log)
        plan = self._plan(log.index)
        await ws.send(json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]))
        try:
            msg = json.loads(await ws.recv())
        except Exception:
            return
        log.sent_auth = msg.get("params") if isinstance(msg, dict) else None
        if plan.auth == "max_connections":
            await ws.send(json.dumps([{"ev": "status", "status": "max_connections",
                                       "message": "Maximum number of websocket connections exceeded."}]))
            await ws.close()
            return
        if plan.auth == "plan":
            await ws.send(json.dumps([{"ev": "status", "status": "auth_failed",
                                       "message": "Your plan doesn't include websocket access."}]))
            await ws.close()
            return
        if plan.auth == "fail" or log.sent_auth != self.key:
            await ws.send(json.dumps([{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]))
            await ws.close()
            return
        await ws.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
        subscribed = asyncio.Event()
        reader = asyncio.create_task(self._read(ws, log, subscribed))
        try:
            if plan.wait_subscribe:
                await asyncio.wait_for(subscribed.wait(), 10)
            for f in plan.frames:
                frame = f() if callable(f) else f
                if isinstance(frame, str):
                    await ws.send(frame)
                else:
                    now_ms = (time.time_ns() + self.clock_offset_ns) // 1_000_000
                    await ws.send(json.dumps([{**m, "t": now_ms} if m.get("t", 0) is None else m for m in frame]))
                log.frames_sent += 1
                await asyncio.sleep(plan.interval_s)
            if plan.after == "close":
                await ws.close()
            elif plan.after == "abort":
                ws.transport.abort()
            else:
                await reader
        except Exception:
            pass
        finally:
            reader.cancel()

    async def _read(self, ws: ServerConnection, log: ConnLog, subscribed: asyncio.Event) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            log.actions.append(msg)
            action, params = msg.get("action"), str(msg.get("params", ""))
            if action in ("subscribe", "unsubscribe"):
                verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
                await ws.send(json.dumps([{"ev": "status", "status": "success", "message": f"{verb}: {p}"}
                                          for p in params.split(",")]))
                subscribed.set()


def _json(status: int, body: Any, retry_after: str | None = None) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    reasons = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}
    return Response(status, reasons.get(status, "Error"), headers, data)


def trending_stock(sym: str, n: int, start: float = 190.00, seed: int = 1) -> list[Frame]:
    """A rising stock for daemon tests: NBBO quotes a cent wide with 1,000 shares a side following the price,
    buyers lifting the offer level after level, a few small sellers, a 12,000-share print at the bid now and then
    (seed 000's large sellers)."""
    import random

    rnd = random.Random(seed)
    frames: list[Frame] = []
    cents = round(start * 100)
    for i in range(n):
        seq = i + 1
        if i % 5 == 0:
            cents += 1
            frames.append([quote(sym, (cents - 1) / 100, 1000, cents / 100, 1000, seq)])
        elif i % 60 == 59:
            frames.append([trade(sym, (cents - 1) / 100, 12_000, seq)])
        elif rnd.random() < 0.85:
            frames.append([trade(sym, cents / 100, rnd.choice([100, 200, 300, 500]), seq)])
        else:
            frames.append([trade(sym, (cents - 1) / 100, rnd.choice([10, 50, 100]), seq)])
    return frames
