"""Operator control without a network port: a Unix socket in the data directory.

``tradebot halt|resume|flatten|ping`` connect to ``data/control.sock`` and exchange one JSON line each way;
the daemon acknowledges with its new state. The socket is created with mode 0600 inside a directory only the
service user can enter, so the file system is the access control (no token to leak). A stale socket file
from a killed daemon is replaced on start; a live one is never stolen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.logging import get_logger

SOCKET_NAME = "control.sock"
COMMANDS = ("halt", "resume", "flatten", "ping", "status")
MAX_LINE = 64 * 1024

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self.log = get_logger("tradebot.control")
        self.served = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await _alive(self.path):
                raise RuntimeError(f"another daemon is listening on {self.path}; refusing to start twice")
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        self.log.info("control socket ready", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None and hasattr(socket, "SO_PEERCRED"):
                import struct

                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _, uid, _ = struct.unpack("3i", creds)
                if uid not in (os.getuid(), 0):
                    await _reply(writer, {"ok": False, "error": "permission denied"})
                    return
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            try:
                req = json.loads(line)
                cmd = str(req["cmd"])
                args = req.get("args") or {}
                if cmd not in COMMANDS or not isinstance(args, dict):
                    raise ValueError(cmd)
            except (ValueError, KeyError, TypeError):
                known = ", ".join(COMMANDS)
                await _reply(writer, {"ok": False, "error": f"unknown or malformed command; known: {known}"})
                return
            self.log.info("operator command", cmd=cmd, args=args)
            try:
                resp = await self.handler(cmd, args)
            except Exception as exc:  # the daemon stays up; the operator sees the failure
                self.log.error("operator command failed", cmd=cmd, error=repr(exc))
                resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.served += 1
            await _reply(writer, resp)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _reply(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    writer.write((json.dumps(obj, default=str) + "\n").encode())
    await writer.drain()


async def _alive(path: Path) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout=1)
    except (OSError, TimeoutError):
        return False
    w.close()
    return True


async def send_command(path: Path, cmd: str, args: dict[str, Any] | None = None,
                       wait_seconds: float = 10.0) -> dict[str, Any]:
    """Send one command; raises ``ConnectionError`` with a clear message when no daemon answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=MAX_LINE), wait_seconds)
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as exc:
        raise ConnectionError(f"no running daemon answers on {path} ({type(exc).__name__})") from None
    except PermissionError:
        raise ConnectionError(f"permission denied on {path}: run as the service user (sudo -u tradebot ...)") from None
    try:
        writer.write((json.dumps({"cmd": cmd, "args": args or {}}) + "\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait_seconds)
    finally:
        writer.close()
    if not line:
        raise ConnectionError("the daemon closed the connection without answering")
    resp: dict[str, Any] = json.loads(line)
    return resp


def control_command(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.data_dir / SOCKET_NAME
    payload = {"reason": args.reason} if getattr(args, "reason", None) else {}
    try:
        resp = asyncio.run(send_command(path, args.command, payload))
    except ConnectionError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 3
    if getattr(args, "json", False):
        print(json.dumps(resp))
    else:
        print(f"{args.command}: {'acknowledged' if resp.get('ok') else 'FAILED'}"
              + "".join(f" {k}={v}" for k, v in resp.items() if k != "ok"))
    return 0 if resp.get("ok") else 1
