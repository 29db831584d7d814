"""The dashboard's FastAPI application: the seed's API paths, the page, the WebSocket.

Reads come from the state database (read-only) and the daemon's live stream; control actions go through the
daemon's control socket exactly like ``tradebot halt``, so the daemon journals them the same way (the reason
says they came from the web). See :mod:`tradebot.web.auth` for sessions and the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from tradebot import __version__
from tradebot.core.config import Settings
from tradebot.core.logging import get_logger
from tradebot.ops.control import SOCKET_NAME, send_command
from tradebot.ops.heartbeat import HEARTBEAT_FILE, heartbeat_age_seconds, read_heartbeat
from tradebot.ops.stream import STREAM_SOCKET_NAME
from tradebot.state.store import default_db_path
from tradebot.web.auth import COOKIE, Auth
from tradebot.web.db import NoDatabaseError, ReadOnlyDB
from tradebot.web.live import LiveState
from tradebot.web.models import ControlAck, Health, Positions, Signals, Statistics, Status, Trades

STATIC = resources.files("tradebot.web") / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class WebConfig:
    settings: Settings
    data_dir: Path
    token: str

    @property
    def control_path(self) -> Path:
        return self.data_dir / SOCKET_NAME

    @property
    def stream_path(self) -> Path:
        return self.data_dir / STREAM_SOCKET_NAME

    @property
    def db_path(self) -> Path:
        s = self.settings
        return s.execution.db_path or default_db_path(self.data_dir, s.trading_mode)


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=200, description="recorded in the daemon's journal with the action")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=512)


class SettingsChange(BaseModel):
    """Settings a trader might want to change while the daemon runs. None is safe to change in place yet:
    risk limits, sizing and strategy parameters are read once at start, so changing them under a running
    session would make the journal disagree with what the daemon does. Run-time control is halt/resume/flatten."""

    model_config = ConfigDict(extra="forbid")
    daily_profit_target: float | None = Field(None, gt=0)
    daily_loss_limit: float | None = Field(None, lt=0)
    min_confidence: float | None = Field(None, ge=0, le=1)
    max_position_size: int | None = Field(None, ge=1, le=100)


def create_app(cfg: WebConfig) -> FastAPI:
    log = get_logger("tradebot.web")
    auth = Auth(cfg.token, cfg.settings.web.session_hours)
    live = LiveState(cfg.stream_path, bars=cfg.settings.web.bars, client_queue=cfg.settings.web.client_queue)
    db = ReadOnlyDB(cfg.db_path, cfg.settings.trading_mode)
    started = time.time_ns()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        live.start()
        yield
        await live.stop()

    app = FastAPI(title="tradebot dashboard", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json",
                  description="Read the daemon's state and act on it (halt, resume, flatten). Reads need a "
                              "session (POST /api/login) or the bearer token; control actions need "
                              "`Authorization: Bearer <TRADEBOT_WEB__TOKEN>`.")
    app.state.live = live
    app.state.auth = auth
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def reader(request: Request) -> None:
        if auth.session_ok(request.cookies.get(COOKIE)) or auth.bearer_ok(request.headers.get("authorization")):
            return
        raise HTTPException(401, "log in first (POST /api/login) or send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})

    def controller(request: Request) -> None:
        if auth.bearer_ok(request.headers.get("authorization")):
            return
        auth.failures += 1
        log.warning("control request without a valid token refused", path=request.url.path,
                    client=request.client.host if request.client else None)
        raise HTTPException(401, "control actions need Authorization: Bearer <TRADEBOT_WEB__TOKEN>",
                            headers={"WWW-Authenticate": "Bearer"})

    read_auth = [Depends(reader)]
    control_auth = [Depends(controller)]

    def _db_call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except NoDatabaseError as exc:
            raise HTTPException(503, f"no state database yet: {exc}") from None

    # -- page and health --------------------------------------------------------------------------------

    @app.get("/", summary="health (a browser is sent to /dashboard)", response_model=Health)
    async def health(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/dashboard", status_code=307)
        hb = read_heartbeat(cfg.data_dir / HEARTBEAT_FILE)
        return JSONResponse({
            "ok": True, "service": "tradebot-web", "version": __version__, "started_ns": started,
            "daemon_stream": live.connected, "database": cfg.db_path.exists(),
            "heartbeat_age_s": heartbeat_age_seconds(hb, time.time_ns()),
        })

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    # -- session ------------------------------------------------------------------------------------

    @app.post("/api/login", summary="exchange the token for a session cookie (reads)")
    async def login(body: LoginBody, request: Request) -> Response:
        if not auth.token_ok(body.token):
            auth.failures += 1
            log.warning("dashboard login failed", client=request.client.host if request.client else None,
                        failures=auth.failures)
            await asyncio.sleep(0.5)  # slows guessing; the token's length does the rest
            raise HTTPException(401, "wrong token")
        resp = JSONResponse({"ok": True, "expires_in_s": auth.session_seconds})
        resp.set_cookie(COOKIE, auth.new_session(), max_age=auth.session_seconds, httponly=True,
                        samesite="strict", path="/")
        log.info("dashboard login", client=request.client.host if request.client else None)
        return resp

    @app.get("/api/session/me", summary="is this browser logged in? (always 200, for the page)")
    async def me(request: Request) -> dict[str, Any]:
        return {"authenticated": auth.session_ok(request.cookies.get(COOKIE)), "time_zone": cfg.settings.display_tz}

    @app.post("/api/logout", summary="forget the session cookie")
    async def logout() -> Response:
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/api/session/status", summary="daemon, trading state, position and P&L", dependencies=read_auth,
             response_model=Status)
    def status() -> dict[str, Any]:
        hb = read_heartbeat(cfg.data_dir / HEARTBEAT_FILE)
        try:
            state = db.trading_state()
        except NoDatabaseError:
            state = None
        pos = live.state.get("position") if live.connected else None
        return {
            "time_zone": cfg.settings.display_tz, "mode": cfg.settings.trading_mode,
            "daemon": {"stream_connected": live.connected, "stream_error": live.link_error,
                       "heartbeat": hb, "heartbeat_age_s": heartbeat_age_seconds(hb, time.time_ns())},
            "trading_state": (pos or {}).get("trading_state") or (state or {}).get("state"),
            "halt_reason": (pos or {}).get("reason") if pos else (state or {}).get("reason"),
            "day_pnl_cents": (pos or {}).get("day_pnl_cents") if pos else (hb or {}).get("day_pnl_cents"),
            "positions": (pos or {}).get("positions") if pos else (hb or {}).get("positions"),
            "balance_cents": (state or {}).get("balance_cents"),
            "stream": {"dropped_to_browsers": live.stats["dropped"], "browsers": len(live.clients),
                       "daemon_dropped": live.stats["daemon_dropped"]},
        }

    async def _control(cmd: str, body: ControlBody | None, request: Request) -> dict[str, Any]:
        client = request.client.host if request.client else "?"
        reason = f"web ({client}): {body.reason}" if body is not None and body.reason else f"web ({client}): {cmd}"
        log.info("operator action from the dashboard", cmd=cmd, reason=reason)
        try:
            resp = await send_command(cfg.control_path, cmd, {"reason": reason})
        except ConnectionError as exc:
            raise HTTPException(503, str(exc)) from None
        except (OSError, ValueError) as exc:
            raise HTTPException(502, f"bad answer from the daemon: {exc}") from None
        if not resp.get("ok"):
            raise HTTPException(409, str(resp.get("error") or "the daemon refused"))
        return resp

    @app.post("/api/session/halt", summary="stop new entries (exits still managed); survives restarts",
            dependencies=control_auth,
              response_model=ControlAck)
    async def halt(request: Request, body: Annotated[ControlBody | None, Body()] = None
                   ) -> dict[str, Any]:
        return await _control("halt", body, request)

    @app.post("/api/session/resume", summary="allow new entries again", dependencies=control_auth,
              response_model=ControlAck)
    async def resume(request: Request, body: Annotated[ControlBody | None, Body()] = None
                     ) -> dict[str, Any]:
        return await _control("resume", body, request)

    @app.post("/api/session/flatten", summary="close every position at market", dependencies=control_auth,
              response_model=ControlAck)
    async def flatten(request: Request, body: Annotated[ControlBody | None, Body()] = None
                      ) -> dict[str, Any]:
        return await _control("flatten", body, request)

    # -- views ----------------------------------------------------------------------------------------

    @app.get("/api/trades", summary="closed trades, newest first", dependencies=read_auth, response_model=Trades)
    def trades(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               day: Annotated[dt.date | None, Query(description="trading day YYYY-MM-DD")] = None
               ) -> dict[str, Any]:
        return {"trades": _db_call(db.trades, limit, day)}

    @app.get("/api/positions", summary="open positions and brackets (entry, stop, target)", dependencies=read_auth,
             response_model=Positions)
    def positions() -> dict[str, Any]:
        out: dict[str, Any] = _db_call(db.positions)
        return out

    @app.get("/api/signals", summary="signals taken, refused (risk) and rejected (router), with reasons",
            dependencies=read_auth, response_model=Signals)
    def signals(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                outcome: Literal["taken", "refused", "rejected"] | None = None) -> dict[str, Any]:
        return {"signals": _db_call(db.signals, limit, outcome)}

    @app.get("/api/statistics", summary="performance: totals, per day, equity curve", dependencies=read_auth,
             response_model=Statistics)
    def statistics(days: Annotated[int, Query(ge=1, le=3650)] = 30) -> dict[str, Any]:
        out: dict[str, Any] = _db_call(db.statistics, days)
        return out

    @app.get("/api/settings", summary="the effective settings (secrets redacted)", dependencies=read_auth)
    def get_settings() -> dict[str, Any]:
        dump = json.loads(cfg.settings.model_dump_json())
        for key in ("databento_api_key", "polygon_api_key", "discord_webhook_url"):
            if dump.get(key):
                dump[key] = "<set>"
        dump["web"]["token"] = "<set>"
        return {"settings": dump, "time_zone": cfg.settings.display_tz,
                "daemon": (live.state.get("meta") if live.connected else None),
                "runtime_changeable": []}

    @app.post("/api/settings", summary="change settings at run time (validated; see the answer for what is safe)",
            dependencies=control_auth)
    async def post_settings(change: SettingsChange) -> dict[str, Any]:
        asked = change.model_dump(exclude_none=True)
        if not asked:
            raise HTTPException(422, "no setting given")
        log.warning("settings change refused: not safe at run time", fields=sorted(asked))
        raise HTTPException(409, f"not changeable while the daemon runs: {', '.join(sorted(asked))}; "
                                 "edit .env and restart the daemon (halt/resume/flatten are the run-time controls)")

    # -- live ---------------------------------------------------------------------------------------

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        host = websocket.headers.get("host", "")
        if origin is not None and urlsplit(origin).netloc != host:
            await websocket.close(code=4403)  # a page from another site: cross-site WebSocket hijacking
            return
        await websocket.accept()
        if not auth.session_ok(websocket.cookies.get(COOKIE)):
            await websocket.close(code=4401, reason="log in first")
            return
        client = live.add_client()
        sender = asyncio.create_task(_pump(websocket, client))
        try:
            while True:  # the page sends nothing that matters; reading notices the close
                await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            live.remove_client(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _pump(websocket: WebSocket, client: Any) -> None:
        await websocket.send_text(json.dumps(live.hello(), separators=(",", ":")))
        while True:
            msg = await live.next_for(client)
            await websocket.send_text(json.dumps(msg, separators=(",", ":"), default=str))

    return app
