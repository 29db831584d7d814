"""Our SignalR JSON-protocol client against a scripted hub: handshake, framing, invocations, pings, close,
server silence, a refused token, reconnect with re-subscribe."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tradebot.feeds.signalr import (
    RS,
    HubConnection,
    HubError,
    HubUnauthorizedError,
    hub_ws_url,
    split_records,
)

Script = Callable[[ServerConnection, int], Awaitable[None]]


class Hub:
    """Accepts connections; the n-th runs ``scripts[n]`` (the last repeats) after a correct handshake."""

    def __init__(self, scripts: list[Script], refuse: list[int] | None = None) -> None:
        self.scripts = scripts
        self.refuse = refuse or []
        self.conns = 0
        self.tokens: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.server: Server | None = None
        self.url = ""

    def _process(self, conn: ServerConnection, request: Request) -> Response | None:
        self.tokens.append(request.path.split("access_token=")[-1])
        if self.refuse:
            status = self.refuse.pop(0)
            return Response(status, "refused", Headers(), b"")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        n = self.conns
        self.conns += 1
        raw = await ws.recv()
        assert isinstance(raw, str) and raw.endswith(RS)
        assert json.loads(raw[:-1]) == {"protocol": "json", "version": 1}
        script = self.scripts[min(n, len(self.scripts) - 1)]
        await script(ws, n)

    async def __aenter__(self) -> Hub:
        self.server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hubs/user"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def serve_invocations(self, ws: ServerConnection) -> None:
        """Answer every invocation (``Fail`` with an error), record what came."""
        async for raw in ws:
            assert isinstance(raw, str)
            for rec in raw.split(RS):
                if not rec:
                    continue
                m = json.loads(rec)
                self.received.append(m)
                if m.get("type") == 1 and "invocationId" in m:
                    answer: dict[str, Any] = {"type": 3, "invocationId": m["invocationId"]}
                    if m["target"] == "Fail":
                        answer["error"] = "no such method"
                    else:
                        answer["result"] = m["arguments"]
                    await ws.send(json.dumps(answer) + RS)


def msg(m: dict[str, Any]) -> str:
    return json.dumps(m) + RS


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any]]] = []
        self.connects: list[bool] = []
        self.drops: list[str] = []
        self.forced: list[bool] = []

    async def token(self, force: bool) -> str:
        self.forced.append(force)
        return f"tok{len(self.forced)}"

    def on_event(self, target: str, args: list[Any]) -> None:
        self.events.append((target, args))


def conn(hub: Hub, rec: Recorder, on_connected: Callable[[bool], Awaitable[None]] | None = None,
         **kw: Any) -> HubConnection:
    kw.setdefault("backoff_initial_seconds", 0.01)
    kw.setdefault("backoff_max_seconds", 0.05)
    return HubConnection(hub.url, rec.token, rec.on_event, name="t", on_connected=on_connected,
                         on_disconnected=rec.drops.append, **kw)


async def until(cond: Callable[[], Any], within: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + within
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_url_and_framing() -> None:
    assert hub_ws_url("https://rtc.topstepx.com/hubs/user", "a b") == "wss://rtc.topstepx.com/hubs/user?access_token=a+b"
    assert hub_ws_url("http://h:1/x?y=1", "t") == "ws://h:1/x?y=1&access_token=t"
    assert split_records('{"a":1}\x1e{"b":2}\x1e{"c"') == (['{"a":1}', '{"b":2}'], '{"c"')


async def test_handshake_events_framing_and_invocations() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        # The handshake answer and a first event in one frame, then an event split across two frames.
        await ws.send("{}" + RS + msg({"type": 1, "target": "GatewayUserOrder", "arguments": [{"id": 1}]}))
        await ws.send('{"type":1,"target":"GatewayUserTrade",')
        await ws.send('"arguments":[{"id":2}]}' + RS + msg({"type": 6}) + "not json" + RS + msg({"type": 2}))
        await hub.serve_invocations(ws)

    async with Hub([script]) as hub:
        rec = Recorder()
        c = conn(hub, rec)
        await c.start()
        assert await c.invoke("SubscribeOrders", 465) == [465]
        with pytest.raises(HubError, match="no such method"):
            await c.invoke("Fail")
        await c.send("SubscribeTrades", 465)
        await until(lambda: len(rec.events) == 2)
        assert rec.events == [("GatewayUserOrder", [{"id": 1}]), ("GatewayUserTrade", [{"id": 2}])]
        assert c.stats["pings"] == 1 and c.stats["bad_message"] == 1 and c.stats["ignored_message"] == 1
        assert hub.tokens == ["tok1"]
        await until(lambda: any(m.get("target") == "SubscribeTrades" for m in hub.received))
        fire_and_forget = next(m for m in hub.received if m.get("target") == "SubscribeTrades")
        assert "invocationId" not in fire_and_forget
        await c.stop()


async def test_handshake_error_fails_start() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(msg({"error": "Requested protocol 'json' is not available"}))

    async with Hub([script]) as hub:
        c = conn(hub, Recorder())
        with pytest.raises(HubError, match="handshake refused"):
            await c.start()


async def test_refused_token_is_renewed_then_fatal() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send("{}" + RS)
        await hub.serve_invocations(ws)

    async with Hub([script], refuse=[401]) as hub:
        rec = Recorder()
        c = conn(hub, rec)
        await c.start()  # the second attempt asks for a fresh token and gets in
        assert rec.forced == [False, True] and c.connected
        await c.stop()
    async with Hub([script], refuse=[401, 401, 401]) as hub:
        c = conn(hub, Recorder())
        with pytest.raises(HubUnauthorizedError):
            await c.start()


async def test_close_message_and_silence_reconnect_and_resubscribe() -> None:
    async def closes(ws: ServerConnection, n: int) -> None:
        await ws.send("{}" + RS)
        serving = asyncio.create_task(hub.serve_invocations(ws))
        await asyncio.sleep(0.2)
        await ws.send(msg({"type": 7, "error": "Server restarting", "allowReconnect": True}))
        await serving

    async def silent(ws: ServerConnection, n: int) -> None:
        await ws.send("{}" + RS)
        await hub.serve_invocations(ws)  # answers invocations but never pings: a silent hub

    async def healthy(ws: ServerConnection, n: int) -> None:
        await ws.send("{}" + RS)
        pinger = asyncio.create_task(_pings(ws))
        try:
            await hub.serve_invocations(ws)
        finally:
            pinger.cancel()

    async with Hub([closes, silent, healthy]) as hub:
        rec = Recorder()
        c: HubConnection

        async def subscribe(reconnect: bool) -> None:
            rec.connects.append(reconnect)
            await c.invoke("SubscribeOrders", 465)

        c = conn(hub, rec, subscribe, ping_seconds=0.05, server_timeout_seconds=0.4)
        await c.start()
        await until(lambda: len(rec.connects) == 3, within=10)
        assert rec.connects == [False, True, True]
        assert rec.drops[0] == "server closed: Server restarting"
        assert c.stats["server_timeout"] == 1
        subs = [m for m in hub.received if m.get("target") == "SubscribeOrders"]
        assert len(subs) == 3  # re-subscribed after every reconnect
        await asyncio.sleep(0.6)  # pinged, so the healthy hub stays up
        assert c.connected and c.connects == 3
        assert any(m.get("type") == 6 for m in hub.received)  # our keep-alive pings reach the server
        await c.stop()


async def _pings(ws: ServerConnection) -> None:
    while True:
        await asyncio.sleep(0.05)
        await ws.send(msg({"type": 6}))


@pytest.fixture
async def nothing() -> AsyncIterator[None]:
    yield None


async def test_unreachable_host_fails_start(nothing: None) -> None:
    rec = Recorder()
    c = HubConnection("http://127.0.0.1:9/hubs/user", rec.token, rec.on_event, open_timeout_seconds=1.0)
    with pytest.raises(OSError):
        await c.start()


async def test_drop_while_subscribing_is_an_ordinary_reconnect() -> None:
    async def drops(ws: ServerConnection, n: int) -> None:
        await ws.send("{}" + RS)
        await ws.recv()  # the subscription arrives, and the socket dies before its answer
        await ws.close()

    async def healthy(ws: ServerConnection, n: int) -> None:
        await ws.send("{}" + RS)
        await hub.serve_invocations(ws)

    async with Hub([drops, healthy]) as hub:
        rec = Recorder()
        c: HubConnection

        async def subscribe(reconnect: bool) -> None:
            rec.connects.append(reconnect)
            await c.invoke("SubscribeOrders", 465)

        c = conn(hub, rec, subscribe)
        await c.start()  # the first start survives the drop: it is not a refusal
        assert rec.connects == [False, True] and c.connected and hub.conns == 2
        await c.stop()
