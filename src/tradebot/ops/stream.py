"""The daemon's live stream: newline-delimited JSON over a Unix socket (``data/stream.sock``), one way.

Who reads it: ``tradebot web`` (and anything else the service user runs, e.g. ``socat - UNIX:data/stream.sock``).
The socket is mode 0600 in the data directory, like the control socket, so the file system is the access
control; peers of another uid are refused.

Protocol: on connect the daemon sends one ``hello`` message holding a full snapshot (recent closed bars, the
developing bars, book, regime, position, P&L, recent decisions and alerts), then incremental messages as they
happen. Every message is one JSON object on one line with ``type`` and ``seq`` (per-connection order is the
hub's publish order; ``seq`` increases by one per published message, so a gap shows a drop).

Never blocking the trading loop: :meth:`StreamHub.publish` is synchronous and encodes the message once. For a
reader that keeps up it hands the line straight to the socket's transport (a non-blocking write: to the kernel
at once, so a fill reaches the dashboard even while the loop is busy replaying a burst of events); once that
reader's unsent bytes pass ``max_buffer`` the line goes to its bounded queue instead, drained by the reader's
own task. A reader whose queue is full loses the message; the drop is counted (per reader and in total) and the
reader is *resynchronised*: its task discards what is still queued (counted as dropped too), sends a
``dropped`` notice and a fresh ``hello`` snapshot, so a slow reader sees a jump, never a silently inconsistent
state. A reader that stops reading for ``write_timeout`` seconds is disconnected (counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tradebot.core.logging import get_logger
from tradebot.ops.control import start_private_unix_server, unix_path

STREAM_SOCKET_NAME = "stream.sock"
MAX_LINE = 32 * 1024 * 1024
"""A ``hello`` snapshot with many bars of many levels can be large; a reader must accept lines this long."""

Snapshot = Callable[[], dict[str, Any]]


def _dumps(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()


class _Subscriber:
    __slots__ = ("direct", "dropped", "queue", "resync", "writer")

    def __init__(self, size: int, writer: asyncio.StreamWriter) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self.writer = writer
        self.dropped = 0
        self.resync = False
        self.direct = False
        """Its hello went out and nothing is queued or being resynchronised: lines may go straight out."""


class StreamHub:
    def __init__(self, path: Path, snapshot: Snapshot, *, queue_size: int = 1000, max_subscribers: int = 8,
                 write_timeout: float = 10.0, max_buffer: int = 1 << 20) -> None:
        self.path = path
        self.snapshot = snapshot
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.write_timeout = write_timeout
        self.max_buffer = max_buffer
        self.seq = 0
        self.stats: Counter[str] = Counter()
        self._subs: set[_Subscriber] = set()
        self._server: asyncio.AbstractServer | None = None
        self.log = get_logger("tradebot.stream")

    @property
    def active(self) -> bool:
        """Anyone listening? Publishers skip building messages nobody would receive."""
        return bool(self._subs)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # the control socket already proved no other daemon runs in this data directory
        try:  # a data dir longer than AF_UNIX allows binds via /proc/self/fd
            self._server = await start_private_unix_server(self.path, self._serve, 64 * 1024)
        except ConnectionError as exc:
            raise OSError(str(exc)) from None
        self.log.info("live stream socket ready", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for sub in list(self._subs):
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(b"")  # wakes the writer, which ends the connection
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Queue one message for every subscriber; never waits. Full queue: drop, count, resync that reader."""
        if not self._subs:
            return
        self.seq += 1
        line = _dumps({"type": kind, "seq": self.seq, **data})
        self.stats["published"] += 1
        for sub in self._subs:
            if sub.direct and not sub.resync and sub.queue.empty():
                transport = sub.writer.transport
                if not transport.is_closing() and transport.get_write_buffer_size() < self.max_buffer:
                    sub.writer.write(line)
                    continue
            try:
                sub.queue.put_nowait(line)
            except asyncio.QueueFull:
                sub.dropped += 1
                sub.resync = True
                self.stats["dropped"] += 1

    def snapshot_stats(self) -> dict[str, int]:
        return {"subscribers": len(self._subs), **self.stats}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sub: _Subscriber | None = None
        try:
            if not _peer_allowed(writer):
                writer.write(_dumps({"type": "error", "error": "permission denied"}))
                return
            if len(self._subs) >= self.max_subscribers:
                self.stats["refused_full"] += 1
                writer.write(_dumps({"type": "error", "error": f"too many subscribers ({self.max_subscribers})"}))
                return
            sub = _Subscriber(self.queue_size, writer)
            self._subs.add(sub)  # with the snapshot in the same step: nothing published after it is missed
            self.stats["connections"] += 1
            writer.write(self._hello())
            sub.direct = True
            await asyncio.wait_for(writer.drain(), self.write_timeout)
            while True:
                line = await sub.queue.get()
                if not line:
                    return
                if sub.resync:
                    await self._resync(sub, writer)
                    continue
                await self._send(writer, line)
        except TimeoutError:
            self.stats["disconnected_slow"] += 1
            self.log.warning("stream reader too slow, disconnected")
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # a snapshot bug must not take the daemon down; the reader reconnects
            self.stats["errors"] += 1
            self.log.error("stream connection failed", error=repr(exc))
        finally:
            if sub is not None:
                self._subs.discard(sub)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _hello(self) -> bytes:
        self.seq += 1
        return _dumps({"type": "hello", "seq": self.seq, **self.snapshot()})

    async def _resync(self, sub: _Subscriber, writer: asyncio.StreamWriter) -> None:
        sub.direct = False
        self._discard(sub, 1)  # 1: the message just taken off the queue
        self.stats["resyncs"] += 1
        self.log.warning("live stream reader too slow: messages dropped, sending a fresh snapshot",
                         dropped=sub.dropped, total_dropped=self.stats["dropped"])
        await self._send(writer, _dumps({"type": "dropped", "seq": self.seq, "count": sub.dropped}))
        # What was queued meanwhile is already in the snapshot: discarded in the same step the snapshot is taken.
        self._discard(sub, 0)
        sub.resync = False
        writer.write(self._hello())
        sub.direct = True
        await asyncio.wait_for(writer.drain(), self.write_timeout)

    def _discard(self, sub: _Subscriber, stale: int) -> None:
        while not sub.queue.empty():
            sub.queue.get_nowait()
            stale += 1
        sub.dropped += stale
        self.stats["dropped"] += stale

    async def _send(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        writer.write(line)
        await asyncio.wait_for(writer.drain(), self.write_timeout)


def _peer_allowed(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


async def subscribe(path: Path, connect_timeout: float = 5.0) -> AsyncIterator[dict[str, Any]]:
    """Messages from a daemon's stream until it closes; raises ``ConnectionError`` when none answers."""
    try:
        with unix_path(path) as where:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(where, limit=MAX_LINE),
                                                    connect_timeout)
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as exc:
        raise ConnectionError(f"no daemon stream on {path} ({type(exc).__name__})") from None
    except PermissionError:
        raise ConnectionError(f"permission denied on {path}: run as the service user") from None
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # never produced by the hub; a damaged line is skipped, the next hello repairs state
            if isinstance(msg, dict):
                yield msg
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
