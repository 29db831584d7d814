"""Operator control without a network port: a Unix socket in the data directory.

``tradebot halt|resume|flatten|ping`` connect to ``data/control.sock`` and exchange one JSON line each way;
the daemon acknowledges with its new state. The socket is created with mode 0600 inside a directory only the
service user can enter, so the file system is the access control (no token to leak). A stale socket file
from a killed daemon is replaced on start; a live one is never stolen.

Every message is bounded and validated before it reaches the daemon: one line of at most 64 KiB, a JSON object
nested at most 4 deep, a known command, ``args`` an object (not a list) whose only key is a string ``reason``;
the reason is stripped of control characters (ANSI escapes, CR/LF) and cut to 200 characters before it is
journaled. A client that cannot connect, or gets no answer in time, exits 3 with one line. A data directory whose
path is longer than AF_UNIX allows (108 bytes) is reached through ``/proc/self/fd``, so any path works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from tradebot.core.config import ConfigError, Settings, check_number
from tradebot.core.logging import get_logger

SOCKET_NAME = "control.sock"
COMMANDS = ("halt", "resume", "flatten", "ping", "status", "adopt")
MAX_LINE = 64 * 1024
MAX_DEPTH = 4
MAX_REASON = 200
ARG_KEYS = frozenset({"reason", "symbol", "stop"})
MAX_ARG = 32
"""``symbol`` and ``stop`` (adopt) are short strings; the daemon parses them."""
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class BadRequestError(ValueError):
    pass


def sanitize_reason(text: str) -> str:
    """One printable line: ANSI sequences removed, other control characters (CR, LF, ...) become a space."""
    text = _ANSI.sub("", text)
    text = _CONTROL.sub(" ", text).strip()
    return text[:MAX_REASON - 1] + "…" if len(text) > MAX_REASON else text


def _depth_ok(line: str, limit: int = MAX_DEPTH) -> bool:
    """Nesting of ``[``/``{`` outside strings, checked before parsing (json.loads recurses)."""
    depth = 0
    in_str = esc = False
    for ch in line:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """The validated (command, args) of one request line; raises :class:`BadRequestError` with the reason."""
    if len(line) > MAX_LINE:
        raise BadRequestError(f"request longer than {MAX_LINE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("request is not UTF-8") from None
    if not _depth_ok(text):
        raise BadRequestError(f"request nested deeper than {MAX_DEPTH} levels")
    try:
        req = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequestError("request is not JSON") from None
    if not isinstance(req, dict):
        raise BadRequestError("request must be a JSON object")
    cmd = req.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise BadRequestError("unknown command")
    unknown = set(req) - {"cmd", "args"}
    if unknown:
        raise BadRequestError(f"unknown request keys: {', '.join(sorted(map(str, unknown)))[:100]}")
    args = req.get("args", {})
    if not isinstance(args, dict):
        raise BadRequestError("args must be a JSON object")
    bad = set(args) - ARG_KEYS
    if bad:
        raise BadRequestError(f"unknown args: {', '.join(sorted(map(str, bad)))[:100]}")
    out: dict[str, Any] = {}
    if "reason" in args:
        if not isinstance(args["reason"], str):
            raise BadRequestError("reason must be a string")
        out["reason"] = sanitize_reason(args["reason"])
    for key in ("symbol", "stop"):
        if key in args:
            v = args[key]
            if not isinstance(v, str) or not v or len(v) > MAX_ARG or not re.fullmatch(r"[A-Za-z0-9.\-]+", v):
                raise BadRequestError(f"{key} must be a short string of letters, digits, '.' or '-'")
            out[key] = v
    return cmd, out


@contextlib.contextmanager
def unix_path(path: Path) -> Iterator[str]:
    """A path the kernel accepts for ``path``: itself when short enough, else through an fd of its directory."""
    raw = os.fsencode(str(path))
    if len(raw) <= _UNIX_PATH_MAX:
        yield str(path)
        return
    try:
        fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConnectionError(f"cannot open the directory of {path}: {exc.strerror}") from None
    try:
        short = f"/proc/self/fd/{fd}/{path.name}"
        if not os.path.isdir(f"/proc/self/fd/{fd}") or len(short) > _UNIX_PATH_MAX:
            raise ConnectionError(f"{path}: path longer than AF_UNIX allows ({len(raw)} > {_UNIX_PATH_MAX} "
                                  "bytes) and /proc is not available; use a shorter TRADEBOT_DATA_DIR")
        yield short
    finally:
        os.close(fd)

async def start_private_unix_server(path: Path, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                                Awaitable[None]], limit: int) -> asyncio.AbstractServer:
    """A Unix-socket server only its owner can reach (0600 from the first instant, whatever the umask), on a path
    the kernel may find too long (bound through /proc/self/fd). Shared by the control socket and the live stream;
    raises ConnectionError when the path cannot be bound at all."""
    old = os.umask(0o177)
    try:
        with unix_path(path) as where:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(where)
            except OSError:
                sock.close()
                raise
        server = await asyncio.start_unix_server(serve, sock=sock, limit=limit)
    finally:
        os.umask(old)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return server


Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self.log = get_logger("tradebot.control")
        self.served = 0
        self.rejected = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await _alive(self.path):
                raise RuntimeError(f"another daemon is listening on {self.path}; refusing to start twice")
            self.path.unlink()
        try:
            self._server = await start_private_unix_server(self.path, self._serve, MAX_LINE + 1)
        except ConnectionError as exc:
            raise RuntimeError(str(exc)) from None
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
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=5)
            except (ValueError, asyncio.LimitOverrunError):  # longer than the stream's limit
                self.rejected += 1
                await _reply(writer, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                return
            try:
                cmd, args = parse_request(line.rstrip(b"\r\n"))
            except BadRequestError as exc:
                self.rejected += 1
                known = ", ".join(COMMANDS)
                self.log.warning("malformed operator request refused", error=str(exc))
                await _reply(writer, {"ok": False, "error": f"malformed request: {exc}; commands: {known}"})
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
        with unix_path(path) as where:
            _, w = await asyncio.wait_for(asyncio.open_unix_connection(where), timeout=1)
    except (OSError, TimeoutError):
        return False
    w.close()
    return True


async def send_command(path: Path, cmd: str, args: dict[str, Any] | None = None,
                       wait_seconds: float = 10.0) -> dict[str, Any]:
    """Send one command; raises ``ConnectionError`` with a clear message when no daemon answers."""
    try:
        with unix_path(path) as where:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(where, limit=MAX_LINE + 1),
                                                    wait_seconds)
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as exc:
        raise ConnectionError(f"no running daemon answers on {path} ({type(exc).__name__})") from None
    except PermissionError:
        raise ConnectionError(f"permission denied on {path}: run as the service user (sudo -u tradebot ...)") from None
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
        writer.write((json.dumps({"cmd": cmd, "args": args or {}}) + "\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait_seconds)
    except TimeoutError:
        raise ConnectionError(f"the daemon on {path} did not answer within {wait_seconds:g} s (stuck or "
                              "overloaded: check `tradebot status` and the service log)") from None
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        raise ConnectionError(f"the connection to the daemon failed: {type(exc).__name__}") from None
    finally:
        writer.close()
    if not line:
        raise ConnectionError("the daemon closed the connection without answering")
    try:
        resp = json.loads(line)
    except ValueError:
        raise ConnectionError("the daemon answered with something that is not JSON") from None
    if not isinstance(resp, dict):
        raise ConnectionError("the daemon answered with something that is not a JSON object")
    return resp


def control_command(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.data_dir / SOCKET_NAME
    payload = {"reason": args.reason} if getattr(args, "reason", None) else {}
    for key in ("symbol", "stop"):
        if getattr(args, key, None):
            payload[key] = str(getattr(args, key))
    wait = getattr(args, "timeout", None)
    wait = 10.0 if wait is None else wait
    check_number("--timeout", wait, minimum=0)
    if wait <= 0:
        raise ConfigError(f"config error: --timeout {wait}: Input should be greater than 0")
    try:
        resp = asyncio.run(send_command(path, args.command, payload, wait_seconds=float(wait)))
    except ConnectionError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # stdout still holds the one document a script parses
            print(json.dumps({"ok": False, "error": str(exc)}))
        return 3
    if getattr(args, "json", False):
        print(json.dumps(resp))
    else:
        print(f"{args.command}: {'acknowledged' if resp.get('ok') else 'FAILED'}"
              + "".join(f" {k}={v}" for k, v in resp.items() if k != "ok"))
    return 0 if resp.get("ok") else 1
