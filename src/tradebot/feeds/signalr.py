"""A small SignalR client (JSON hub protocol over a websocket), for ProjectX's user and market hubs.

Why our own: pysignalr needs ``websockets>=15`` while async-rithmic (the Rithmic adapter's client) pins
``websockets<15``, and signalrcore runs its own threads. The subset ProjectX uses is small and documented:

* **Connect without negotiation** (the clients' ``skipNegotiation``): a websocket straight to the hub URL
  (``https://`` dialled as ``wss://``) with the session token as the ``access_token`` query parameter.
* **Handshake**: ``{"protocol":"json","version":1}`` then the record separator 0x1E; the server answers ``{}``
  (or ``{"error": ...}``) followed by 0x1E.
* **Framing**: every message is one JSON object terminated by 0x1E; a frame may carry several.
* **Messages** by ``type``: 1 invocation (``target``, ``arguments``, ``invocationId`` when an answer is wanted),
  3 completion (``invocationId`` with ``result`` or ``error``), 6 ping (both ways: a silent hub is a dead hub),
  7 close (``error``, ``allowReconnect``). Streaming (2, 4, 5) is not used by ProjectX and is ignored (counted).
* **Reconnect**: a dropped socket, a close message or a silent server is retried with jittered exponential
  backoff, with a fresh token each time; after every (re)connect ``on_connected`` runs (the owner re-subscribes
  and resynchronises over REST what it may have missed while the socket was down).

The client never blocks the loop: events are handed to ``on_event`` synchronously from the reader task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from tradebot.core.logging import get_logger
from tradebot.feeds.base import jittered_backoff

log = get_logger("tradebot.feeds.signalr")

RS = "\x1e"
HANDSHAKE = json.dumps({"protocol": "json", "version": 1}) + RS
INVOCATION, STREAM_ITEM, COMPLETION, STREAM_INVOCATION, CANCEL_INVOCATION, PING, CLOSE = 1, 2, 3, 4, 5, 6, 7
PING_MESSAGE = json.dumps({"type": PING}) + RS
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class HubError(Exception):
    """The hub refused: a handshake error, a failed invocation, a close message."""


class HubUnauthorizedError(HubError):
    """HTTP 401/403 on the websocket upgrade: the token is stale or wrong (get a new one, then retry)."""


class HubDisconnectedError(HubError):
    """The connection went away while an invocation was waiting for its answer."""


def hub_ws_url(url: str, token: str) -> str:
    """The websocket URL of a hub: ``https``->``wss``, ``http``->``ws``, the token as ``access_token``."""
    parts = urlsplit(url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    query = parts.query + ("&" if parts.query else "") + urlencode({"access_token": token})
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":")) + RS


def split_records(buffer: str) -> tuple[list[str], str]:
    """Complete records of ``buffer`` and the incomplete tail (kept for the next frame)."""
    *records, tail = buffer.split(RS)
    return [r for r in records if r.strip()], tail


TokenProvider = Callable[[bool], Awaitable[str]]
"""``await provider(force)``: a valid session token; ``force`` after the hub refused the last one."""


class HubConnection:
    """One hub: connect, handshake, ping, invoke, dispatch events, reconnect (see the module docstring)."""

    def __init__(
        self,
        url: str,
        token: TokenProvider,
        on_event: Callable[[str, list[Any]], None],
        *,
        name: str = "hub",
        on_connected: Callable[[bool], Awaitable[None]] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        ping_seconds: float = 15.0,
        server_timeout_seconds: float = 60.0,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        open_timeout_seconds: float = 10.0,
        invoke_timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.name = name
        self._token = token
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self.ping_seconds = ping_seconds
        self.server_timeout_seconds = server_timeout_seconds
        self.backoff_initial = backoff_initial_seconds
        self.backoff_max = backoff_max_seconds
        self.open_timeout = open_timeout_seconds
        self.invoke_timeout = invoke_timeout_seconds
        self.stats: Counter[str] = Counter()
        self.connected = False
        self.connects = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_id = 0
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ready: asyncio.Future[None] | None = None
        self._last_rx = time.monotonic()
        self._buffer = ""
        self.last_error = ""

    # -- life cycle ---------------------------------------------------------------------------------

    async def start(self, wait_seconds: float | None = None) -> None:
        """Connect (and run ``on_connected``) once, then keep the connection up in the background.

        Raises what the first attempt raised (an auth error, an unreachable host) so the caller can tell a
        wrong key from an outage; later drops are retried quietly (``on_disconnected`` tells the owner).
        """
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"signalr-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), wait_seconds or self.open_timeout * 3)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._stopping = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        task = self._task
        self._task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_pending("stopped")
        self.connected = False

    async def drop(self) -> None:
        """Close the socket as if the network failed (tests; also the owner's "this hub looks stale")."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    # -- requests -----------------------------------------------------------------------------------

    async def invoke(self, target: str, *args: Any, wait_seconds: float | None = None) -> Any:
        """Call a hub method and wait for its completion; :class:`HubError` when the server says no."""
        ws = self._ws
        if ws is None or not self.connected:
            raise HubDisconnectedError(f"{self.name} hub not connected")
        self._next_id += 1
        inv_id = str(self._next_id)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[inv_id] = fut
        try:
            await ws.send(encode({"type": INVOCATION, "invocationId": inv_id, "target": target,
                                  "arguments": list(args)}))
            return await asyncio.wait_for(fut, wait_seconds or self.invoke_timeout)
        except ConnectionClosed as exc:
            raise HubDisconnectedError(f"{self.name} hub closed during {target}") from exc
        finally:
            self._pending.pop(inv_id, None)

    async def send(self, target: str, *args: Any) -> None:
        """Fire-and-forget invocation (no ``invocationId``: the server sends no completion)."""
        ws = self._ws
        if ws is None or not self.connected:
            raise HubDisconnectedError(f"{self.name} hub not connected")
        try:
            await ws.send(encode({"type": INVOCATION, "target": target, "arguments": list(args)}))
        except ConnectionClosed as exc:
            raise HubDisconnectedError(f"{self.name} hub closed during {target}") from exc

    # -- internals ----------------------------------------------------------------------------------

    async def _open(self, force_token: bool) -> ClientConnection:
        token = await self._token(force_token)
        try:
            ws = await connect(hub_ws_url(self.url, token), open_timeout=self.open_timeout, ping_interval=None,
                               max_size=MAX_MESSAGE_BYTES, close_timeout=2)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise HubUnauthorizedError(f"{self.name} hub refused the token (HTTP {status})") from None
            raise HubError(f"{self.name} hub upgrade refused (HTTP {status})") from None
        try:
            await ws.send(HANDSHAKE)
            raw = await asyncio.wait_for(ws.recv(), self.open_timeout)
            text = raw.decode() if isinstance(raw, bytes) else raw
            records, tail = split_records(text)
            if not records:
                raise HubError(f"{self.name} hub: no handshake answer")
            answer = json.loads(records[0])
            if not isinstance(answer, dict) or answer.get("error"):
                why = answer.get("error") if isinstance(answer, dict) else answer
                raise HubError(f"{self.name} hub handshake refused: {why}")
            # Messages that arrived in the handshake's frame are handled like any other.
            for rec in records[1:]:
                self._handle(rec)
            self._buffer = tail
        except BaseException:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
        return ws

    async def _run(self) -> None:
        attempt = 0
        force_token = False
        while not self._stopping:
            try:
                ws = await self._open(force_token)
                force_token = False
            except HubUnauthorizedError as exc:
                self.last_error = str(exc)
                self.stats["unauthorized"] += 1
                # Retry once with a freshly issued token; refused again (on the first start): cannot be fixed.
                if force_token and self._fail_first(exc):
                    return
                force_token = True
                await self._backoff(attempt)
                attempt += 1
                continue
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, HubError, ConnectionClosed,
                    ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.stats["connect_failed"] += 1
                if self._fail_first(exc):
                    return
                await self._backoff(attempt)
                attempt += 1
                continue
            except Exception as exc:  # the token provider failed (wrong key): fatal on the first start only
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.stats["connect_failed"] += 1
                if self._fail_first(exc):
                    return
                await self._backoff(attempt)
                attempt += 1
                continue
            attempt = 0
            self._ws = ws
            self.connected = True
            self.connects += 1
            self._last_rx = time.monotonic()
            reader = asyncio.create_task(self._reader(ws), name=f"signalr-{self.name}-reader")
            pinger = asyncio.create_task(self._pinger(ws), name=f"signalr-{self.name}-ping")
            reason = "closed"
            try:
                if self._on_connected is not None:
                    await self._on_connected(self.connects > 1)
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                reason = await reader
            except asyncio.CancelledError:
                raise
            except HubDisconnectedError as exc:  # dropped while subscribing: an ordinary reconnect
                reason = str(exc)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._fail_first(exc):
                    return
            finally:
                pinger.cancel()
                reader.cancel()
                for t in (pinger, reader):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                with contextlib.suppress(Exception):
                    await ws.close()
                self._ws = None
                self.connected = False
                self._fail_pending(reason)
                if not self._stopping:
                    self.stats["disconnects"] += 1
                    self.last_error = reason
                    log.warning("signalr_disconnected", hub=self.name, reason=reason)
                    if self._on_disconnected is not None:
                        self._on_disconnected(reason)
            if not self._stopping:
                await self._backoff(0)

    def _ready_done(self) -> bool:
        return self._ready is None or self._ready.done()

    def _fail_first(self, exc: BaseException) -> bool:
        """Before the first successful connect an error goes to :meth:`start`'s caller; ``True``: stop trying."""
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc)
            return True
        return False

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(jittered_backoff(attempt, self.backoff_initial, self.backoff_max))

    async def _reader(self, ws: ClientConnection) -> str:
        try:
            async for raw in ws:
                self._last_rx = time.monotonic()
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                records, self._buffer = split_records(self._buffer + text)
                if len(self._buffer) > MAX_MESSAGE_BYTES:
                    self.stats["oversized"] += 1
                    return "oversized message"
                for rec in records:
                    closed = self._handle(rec)
                    if closed is not None:
                        self._fail_pending(closed)  # an owner waiting on an invocation learns it now
                        return closed
        except ConnectionClosed as exc:
            reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            self._fail_pending(reason)
            return reason
        self._fail_pending("connection closed")
        return "connection closed"

    async def _pinger(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(min(self.ping_seconds, self.server_timeout_seconds / 2))
            if time.monotonic() - self._last_rx > self.server_timeout_seconds:
                self.stats["server_timeout"] += 1
                log.warning("signalr_server_timeout", hub=self.name, seconds=self.server_timeout_seconds)
                await ws.close()
                return
            with contextlib.suppress(ConnectionClosed):
                await ws.send(PING_MESSAGE)

    def _handle(self, record: str) -> str | None:
        """One message; returns a reason when it closes the connection."""
        try:
            msg = json.loads(record)
        except ValueError:
            self.stats["bad_message"] += 1
            return None
        if not isinstance(msg, dict):
            self.stats["bad_message"] += 1
            return None
        kind = msg.get("type")
        if kind == INVOCATION:
            target, args = msg.get("target"), msg.get("arguments", [])
            if not isinstance(target, str) or not isinstance(args, list):
                self.stats["bad_message"] += 1
                return None
            self.stats["events"] += 1
            try:
                self._on_event(target, args)
            except Exception:  # the owner's bug must not kill the connection; it is logged and counted
                self.stats["handler_error"] += 1
                log.exception("signalr_handler_error", hub=self.name, target=target)
        elif kind == COMPLETION:
            fut = self._pending.get(str(msg.get("invocationId")))
            if fut is not None and not fut.done():
                if msg.get("error"):
                    fut.set_exception(HubError(str(msg["error"])))
                else:
                    fut.set_result(msg.get("result"))
        elif kind == PING:
            self.stats["pings"] += 1
        elif kind == CLOSE:
            err = msg.get("error")
            return f"server closed: {err}" if err else "server closed"
        else:
            self.stats["ignored_message"] += 1
        return None

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(HubDisconnectedError(f"{self.name} hub: {reason}"))
        self._pending.clear()


__all__ = ["RS", "HubConnection", "HubDisconnectedError", "HubError", "HubUnauthorizedError", "hub_ws_url"]
