"""``tradebot web``: serve the dashboard with uvicorn, on loopback unless explicitly told otherwise.

The intended way in is an SSH tunnel (``ssh -L 8000:127.0.0.1:8000 server``), so the server keeps no open
port. A non-loopback address is refused unless ``--allow-remote`` (or ``TRADEBOT_WEB__ALLOW_REMOTE=true``) is
given; ``--uds PATH`` serves on a Unix socket instead (for a reverse proxy on the same host).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.logging import get_logger, register_secret

MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def web_command(args: argparse.Namespace, settings: Settings) -> int:
    ws = settings.web
    host = args.host or ws.host
    port = ws.port if args.port is None else args.port
    allow_remote = bool(args.allow_remote or ws.allow_remote)
    token = ws.token.get_secret_value() if ws.token is not None else ""
    if len(token) < MIN_TOKEN:
        print(f"web: refusing to start: set TRADEBOT_WEB__TOKEN to a secret of at least {MIN_TOKEN} characters "
              "(e.g. `openssl rand -hex 24` in .env); it guards every login and control action", file=sys.stderr)
        return 2
    register_secret(token)
    if not args.uds and not is_loopback(host) and not allow_remote:
        print(f"web: refusing to bind {host}: not a loopback address. Reach the dashboard through an SSH tunnel "
              "(ssh -L 8000:127.0.0.1:8000 server), or pass --allow-remote if you really mean it", file=sys.stderr)
        return 2
    if not (0 <= port <= 65535):
        print(f"web: bad port {port}", file=sys.stderr)
        return 2
    from tradebot.web.app import WebConfig, create_app

    app = create_app(WebConfig(settings, settings.data_dir, token))
    return asyncio.run(_serve(app, host, port, args.uds))


async def _serve(app: Any, host: str, port: int, uds: str | None) -> int:
    import uvicorn

    log = get_logger("tradebot.web")
    up = asyncio.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            up.set()

        def install_signal_handlers(self) -> None:  # ours below: uvicorn's would replace them
            pass

    config = uvicorn.Config(app, host=host, port=port, uds=uds, log_config=None, access_log=False,
                            ws="websockets-sansio", lifespan="on", server_header=False, timeout_graceful_shutdown=3)
    server = Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(up.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if server.started:
        where = uds or ""
        for s in server.servers:
            for sock in s.sockets:
                addr = sock.getsockname()
                if isinstance(addr, tuple):
                    where = f"http://{addr[0]}:{addr[1]}" if ":" not in addr[0] else f"http://[{addr[0]}]:{addr[1]}"
        log.info("dashboard listening", url=where)
        print(f"web: listening on {where}", file=sys.stderr, flush=True)
    await task
    return 0 if server.started else 1
