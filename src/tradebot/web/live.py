"""The web process's side of the daemon's live stream: one subscription, a cached state, many browsers.

The web process holds one connection to ``data/stream.sock`` (reconnecting with backoff when the daemon
restarts) and keeps the latest full picture: the daemon's ``hello`` snapshot with every later message applied.
A browser that connects gets that picture at once, then every message as it arrives. Each browser has its own
bounded queue: a browser that cannot keep up loses messages (counted) and is resynchronised with a fresh
picture, so a slow phone never slows the others, and nothing here can ever slow the daemon (its hub already
drops for us if this process stalls).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tradebot.core.logging import get_logger
from tradebot.ops.stream import subscribe

LIST_CAPS = {"decisions": 100, "alerts": 100, "executions": 100}


class Client:
    __slots__ = ("dropped", "queue", "resync")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.resync = False


class LiveState:
    def __init__(self, socket_path: Path, *, bars: int = 60, client_queue: int = 2000) -> None:
        self.socket_path = socket_path
        self.bars = bars
        self.client_queue = client_queue
        self.state: dict[str, Any] = {}
        self.connected = False
        self.last_message_ns = 0
        self.link_error = ""
        self.stats: Counter[str] = Counter()
        self.clients: set[Client] = set()
        self.log = get_logger("tradebot.web.live")
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daemon-stream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        backoff = 0.25
        while True:
            try:
                async for msg in subscribe(self.socket_path):
                    if not self.connected:
                        self.connected = True
                        self.link_error = ""
                        self.stats["connects"] += 1
                        self.log.info("subscribed to the daemon's live stream", path=str(self.socket_path))
                        backoff = 0.25
                    self.apply(msg)
                self.link_error = "daemon closed the stream"
            except ConnectionError as exc:
                self.link_error = str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving the database views; retry the stream
                self.link_error = f"{type(exc).__name__}: {exc}"
                self.log.error("live stream reader failed", error=repr(exc))
            if self.connected:
                self.connected = False
                self.stats["disconnects"] += 1
                self.log.warning("daemon live stream lost; retrying", error=self.link_error)
                self._broadcast(self.link())
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    # -- state ---------------------------------------------------------------------------------------

    def link(self) -> dict[str, Any]:
        age = (time.time_ns() - self.last_message_ns) / 1e9 if self.last_message_ns else None
        return {"type": "link", "connected": self.connected, "error": self.link_error,
                "age_s": None if age is None else round(age, 3), "dropped_to_browsers": self.stats["dropped"]}

    def apply(self, msg: dict[str, Any]) -> None:
        """Fold one daemon message into the cached picture, then pass it on to every browser."""
        self.last_message_ns = time.time_ns()
        kind = msg.get("type")
        st = self.state
        self.stats["messages"] += 1
        if kind == "hello":
            self.state = {k: v for k, v in msg.items() if k not in ("type", "seq")}
            self._broadcast(self.hello())
            return
        if not st:
            return  # nothing to fold into before the first hello (it always comes first)
        if kind == "bar":
            sym = str(msg.get("symbol"))
            ring = st.setdefault("bars", {}).setdefault(sym, [])
            ring.append(msg)
            del ring[:-self.bars]
            dev = st.setdefault("developing", {}).get(sym)
            if dev is not None and dev.get("start_ns", 0) <= msg.get("start_ns", 0):
                st["developing"].pop(sym, None)
        elif kind == "developing":
            st.setdefault("developing", {})[str(msg.get("symbol"))] = msg
        elif kind == "book":
            st.setdefault("book", {})[str(msg.get("symbol"))] = msg
        elif kind == "regime":
            st.setdefault("regime", {})[str(msg.get("symbol"))] = msg
        elif kind in ("decision", "alert", "exec"):
            key = {"decision": "decisions", "alert": "alerts", "exec": "executions"}[kind]
            items = st.setdefault(key, [])
            items.append(msg)
            del items[:-LIST_CAPS[key]]
        elif kind == "position":
            st["position"] = msg
        elif kind == "health":
            st["health"] = msg
        elif kind == "dropped":
            self.stats["daemon_dropped"] = int(msg.get("count", 0))
        self._broadcast(msg)

    def hello(self) -> dict[str, Any]:
        return {"type": "hello", **copy.deepcopy(self.state), "link": self.link()}

    # -- browsers ------------------------------------------------------------------------------------

    def add_client(self) -> Client:
        c = Client(self.client_queue)
        self.clients.add(c)
        return c

    def remove_client(self, c: Client) -> None:
        self.clients.discard(c)

    def _broadcast(self, msg: dict[str, Any]) -> None:
        for c in self.clients:
            try:
                c.queue.put_nowait(msg)
            except asyncio.QueueFull:
                c.dropped += 1
                c.resync = True
                self.stats["dropped"] += 1

    async def next_for(self, c: Client) -> dict[str, Any]:
        """The next message for one browser; after an overflow, a fresh picture instead of the stale backlog."""
        msg = await c.queue.get()
        if c.resync:
            stale = 1
            while not c.queue.empty():
                c.queue.get_nowait()
                stale += 1
            c.dropped += stale
            self.stats["dropped"] += stale
            c.resync = False
            self.stats["resyncs"] += 1
            self.log.warning("browser too slow: messages dropped, sending a fresh picture", dropped=c.dropped,
                             total_dropped=self.stats["dropped"])
            return self.hello()
        return msg
