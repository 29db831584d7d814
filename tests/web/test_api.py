"""The dashboard's REST API: every endpoint, with and without auth, with bad input, against the state database a
real daemon run left behind (simulated session) and a control-socket stand-in speaking the daemon's protocol."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient  # WebSocket tests in-process; the browser tests use a real server

from tradebot.core.config import Settings
from tradebot.ops.control import ControlServer
from tradebot.web.app import WebConfig, create_app
from tradebot.web.auth import COOKIE, Auth
from tradebot.web.server import is_loopback

TOKEN = "test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")
READS = ["/api/session/status", "/api/trades", "/api/positions", "/api/signals", "/api/statistics", "/api/settings"]
CONTROLS = ["/api/session/halt", "/api/session/resume", "/api/session/flatten"]


def clean_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_DATA_DIR": str(data), "TRADEBOT_LOG_FORMAT": "json", **extra})
    return env


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated session run by the real daemon: trades, refused and rejected signals in its database."""
    tmp = tmp_path_factory.mktemp("webapi")
    env = clean_env(tmp / "data", TRADEBOT_SIM__TRADES_PER_SESSION="20000")
    r = subprocess.run([sys.executable, "-m", "tradebot", "run", "--speed", "0", "--timeframe", "60"], cwd=tmp,
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "data"


def settings_for(data: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data, web={"token": TOKEN})  # type: ignore[call-arg]


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(WebConfig(settings_for(data_dir), data_dir, TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as c:
        yield c


async def login(c: httpx.AsyncClient) -> None:
    r = await c.post("/api/login", json={"token": TOKEN})
    assert r.status_code == 200 and COOKIE in r.cookies


def db_rows(data: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{data / 'tradebot-paper.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- health, page, OpenAPI --------------------------------------------------------------------------------------


async def test_health_page_assets_and_openapi(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    body = r.json()
    assert r.status_code == 200 and body["ok"] and body["database"] and body["daemon_stream"] is False
    r = await client.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 307 and r.headers["location"] == "/dashboard"
    page = await client.get("/dashboard")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    for asset in ("/static/app.js", "/static/app.css"):
        assert (await client.get(asset)).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    for path in ["/", "/api/session/status", *CONTROLS, *READS, "/api/login"]:
        assert path in spec["paths"], path
    assert "post" in spec["paths"]["/api/settings"]
    trade = spec["components"]["schemas"]["Trade"]["properties"]
    assert {"entry", "exit", "stop", "target", "pnl_cents", "closed_ns"} <= set(trade)  # shapes, not just "object"


# -- auth -----------------------------------------------------------------------------------------------------


async def test_reads_need_a_session_or_the_token(client: httpx.AsyncClient) -> None:
    for path in READS:
        r = await client.get(path)
        assert r.status_code == 401, path
        r = await client.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 401, path
        assert (await client.get(path, headers=BEARER)).status_code == 200, path
    assert (await client.post("/api/login", json={"token": "nope"})).status_code == 401
    assert (await client.post("/api/login", json={})).status_code == 422
    assert (await client.post("/api/login", content=b"not json",
                               headers={"Content-Type": "application/json"})).status_code == 422
    assert (await client.get("/api/session/me")).json()["authenticated"] is False
    await login(client)
    assert (await client.get("/api/session/me")).json()["authenticated"] is True
    for path in READS:
        assert (await client.get(path)).status_code == 200, path
    # a forged or altered cookie is refused
    cookie = client.cookies[COOKIE]
    expires, nonce, sig = cookie.split(".")
    client.cookies.set(COOKIE, f"{int(expires) + 10**6}.{nonce}.{sig}")
    assert (await client.get("/api/trades")).status_code == 401
    await client.post("/api/logout")


def test_sessions_expire_and_die_with_a_new_token() -> None:
    a = Auth(TOKEN, session_hours=1)
    s = a.new_session(now=1000.0)
    assert a.session_ok(s, now=1000.0 + 3599) and not a.session_ok(s, now=1000.0 + 3601)
    assert not Auth(TOKEN + "x", 1).session_ok(s, now=1001.0)
    assert a.session_ok(s, now=1001.0)  # survives a restart of the web process (same token, same key)
    for bad in ("", "a.b", "a.b.c", "1.2.3.4", s + "x"):
        assert not a.session_ok(bad, now=1001.0)
    assert a.bearer_ok(f"Bearer {TOKEN}") and a.bearer_ok(f"bearer {TOKEN}")
    assert not a.bearer_ok(TOKEN) and not a.bearer_ok(f"Basic {TOKEN}") and not a.bearer_ok(None)


async def test_control_needs_the_token_every_time_even_with_a_session(client: httpx.AsyncClient,
                                                                       data_dir: Path) -> None:
    await login(client)
    for path in CONTROLS:
        assert (await client.post(path)).status_code == 401, path  # a session is not enough
        r = await client.post(path, headers={"Authorization": "Bearer not-the-token-0123"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    # with the token but no daemon running: 503, nothing pretends to have worked
    r = await client.post("/api/session/halt", headers=BEARER)
    assert r.status_code == 503 and "no running daemon" in r.json()["detail"]


# -- control through the daemon's socket --------------------------------------------------------------------


async def test_control_goes_through_the_control_socket_with_a_journaled_reason(client: httpx.AsyncClient,
                                                                               data_dir: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def handler(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        seen.append((cmd, args))
        if cmd == "resume":
            return {"ok": False, "error": "daily loss limit reached"}
        return {"ok": True, "state": "halted" if cmd == "halt" else "active", "flattened": 0}

    server = ControlServer(data_dir / "control.sock", handler)
    await server.start()
    try:
        r = await client.post("/api/session/halt", headers=BEARER, json={"reason": "news at 10"})
        assert r.status_code == 200 and r.json()["state"] == "halted"
        r = await client.post("/api/session/flatten", headers=BEARER)
        assert r.status_code == 200 and r.json()["ok"]
        r = await client.post("/api/session/resume", headers=BEARER, json={"reason": "ok"})
        assert r.status_code == 409 and "daily loss limit" in r.json()["detail"]  # the daemon's refusal, shown
        # bad input never reaches the daemon
        for body in ({"reason": "x" * 201}, {"reason": 5}, {"reason": "a", "extra": 1}, [1, 2]):
            r = await client.post("/api/session/halt", headers=BEARER, json=body)
            assert r.status_code == 422, body
        r = await client.post("/api/session/halt", headers={**BEARER, "Content-Type": "application/json"},
                              content=b"{broken")
        assert r.status_code == 422
    finally:
        await server.stop()
    assert [c for c, _ in seen] == ["halt", "flatten", "resume"]
    assert seen[0][1] == {"reason": "web (127.0.0.1): news at 10"}
    assert seen[1][1] == {"reason": "web (127.0.0.1): flatten"}


# -- views against the database ------------------------------------------------------------------------------


async def test_trades_positions_and_statistics_match_the_database(client: httpx.AsyncClient, data_dir: Path) -> None:
    closed = db_rows(data_dir, "SELECT signal_id, realized_cents - commission_cents FROM brackets "
                               "WHERE closed_ns IS NOT NULL AND entry_filled > 0")
    assert closed, "the simulated session made no trade"
    trades = (await client.get("/api/trades", headers=BEARER)).json()["trades"]
    assert {t["signal_id"]: t["pnl_cents"] for t in trades} == dict(closed)
    assert all(t["closed_ns"] >= u["closed_ns"] for t, u in itertools.pairwise(trades))
    t0 = trades[0]
    assert t0["entry"].count(".") == 1 and t0["side"] in ("LONG", "SHORT")  # prices as exact decimal text
    one = (await client.get("/api/trades", params={"limit": 1}, headers=BEARER)).json()["trades"]
    assert one == trades[:1]
    day = t0["trading_day"]
    by_day = (await client.get("/api/trades", params={"day": day}, headers=BEARER)).json()["trades"]
    assert by_day and all(t["trading_day"] == day for t in by_day)
    none = (await client.get("/api/trades", params={"day": "2001-01-02"}, headers=BEARER)).json()["trades"]
    assert none == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"day": "2025-13-01"}, {"day": "yesterday"}):
        assert (await client.get("/api/trades", params=bad, headers=BEARER)).status_code == 422, bad

    stats = (await client.get("/api/statistics", headers=BEARER)).json()
    assert stats["trades"] == len(closed) and stats["net_cents"] == sum(n for _, n in closed)
    assert stats["wins"] + stats["losses"] + stats["scratches"] == stats["trades"]
    assert stats["equity"][-1][1] == stats["net_cents"] and len(stats["equity"]) == len(closed)
    assert stats["daily"] and stats["daily"][-1]["net_cents"] == sum(d["net_cents"] for d in stats["daily"][-1:])
    for bad in ({"days": 0}, {"days": -1}, {"days": "x"}):
        assert (await client.get("/api/statistics", params=bad, headers=BEARER)).status_code == 422

    pos = (await client.get("/api/positions", headers=BEARER)).json()
    assert pos["positions"] == [] and pos["open_brackets"] == []  # the session ended flat (auto-flatten)


async def test_signals_list_taken_refused_and_rejected_with_reasons(client: httpx.AsyncClient,
                                                                    data_dir: Path) -> None:
    sigs = (await client.get("/api/signals", params={"limit": 1000}, headers=BEARER)).json()["signals"]
    outcomes = {s["outcome"] for s in sigs}
    assert {"taken", "rejected"} <= outcomes
    rejected = [s for s in sigs if s["outcome"] == "rejected"]
    assert all(s["reasons"] and s["codes"] for s in rejected)
    n_router = db_rows(data_dir, "SELECT COUNT(*) FROM router_decisions")[0][0]
    n_signals = db_rows(data_dir, "SELECT COUNT(*) FROM signals")[0][0]
    assert len(sigs) == min(1000, n_router + n_signals)
    taken = (await client.get("/api/signals", params={"outcome": "taken"}, headers=BEARER)).json()["signals"]
    assert taken and all(s["outcome"] == "taken" and s["stop"] and s["target"] for s in taken)
    assert all(s["ts_ns"] >= u["ts_ns"] for s, u in itertools.pairwise(sigs))
    for bad in ({"outcome": "maybe"}, {"limit": 0}, {"limit": "all"}):
        assert (await client.get("/api/signals", params=bad, headers=BEARER)).status_code == 422, bad


async def test_settings_are_readable_without_secrets_and_not_changed_unsafely(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/settings", headers=BEARER)
    assert r.status_code == 200 and TOKEN not in r.text
    s = r.json()
    assert s["settings"]["web"]["token"] == "<set>" and s["time_zone"] == "America/New_York"
    assert s["settings"]["trading_mode"] == "paper"
    assert (await client.post("/api/settings", json={"daily_loss_limit": -200})).status_code == 401
    r = await client.post("/api/settings", headers=BEARER, json={"daily_loss_limit": -200})
    assert r.status_code == 409 and "restart" in r.json()["detail"]
    for bad in ({"daily_loss_limit": 200}, {"min_confidence": 2}, {"no_such_setting": 1}, {}):
        assert (await client.post("/api/settings", headers=BEARER, json=bad)).status_code == 422, bad


async def test_no_database_yet_is_a_clear_503(tmp_path: Path) -> None:
    app = create_app(WebConfig(settings_for(tmp_path), tmp_path, TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        r = await c.get("/api/trades", headers=BEARER)
        assert r.status_code == 503 and "no state database" in r.json()["detail"]
        assert (await c.get("/api/session/status", headers=BEARER)).status_code == 200
        assert (await c.get("/")).json()["database"] is False


# -- WebSocket --------------------------------------------------------------------------------------------------


def test_websocket_needs_a_session_and_refuses_other_origins(data_dir: Path) -> None:
    from starlette.websockets import WebSocketDisconnect

    app = create_app(WebConfig(settings_for(data_dir), data_dir, TOKEN))
    with TestClient(app) as tc:
        with tc.websocket_connect("/ws") as ws, pytest.raises(WebSocketDisconnect) as no_session:
            ws.receive_text()
        assert no_session.value.code == 4401
        assert tc.post("/api/login", json={"token": TOKEN}).status_code == 200
        with pytest.raises(WebSocketDisconnect) as other, \
                tc.websocket_connect("/ws", headers={"Origin": "http://evil.example"}):
            pass
        assert other.value.code == 4403
        with tc.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:  # its Host
            hello = json.loads(ws.receive_text())
            assert hello["type"] == "hello" and hello["link"]["connected"] is False  # no daemon: said so


# -- binding ------------------------------------------------------------------------------------------------


def test_loopback_only_unless_told_and_no_start_without_a_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.5.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    env = clean_env(tmp_path / "data", TRADEBOT_WEB__TOKEN=TOKEN)
    r = subprocess.run([sys.executable, "-m", "tradebot", "web", "--host", "0.0.0.0", "--port", "0"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a loopback address" in r.stderr and "ssh -L" in r.stderr
    env = clean_env(tmp_path / "data", TRADEBOT_WEB__TOKEN="short")
    r = subprocess.run([sys.executable, "-m", "tradebot", "web", "--port", "0"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "TRADEBOT_WEB__TOKEN" in r.stderr and "short" not in r.stderr


def test_serves_on_a_unix_socket_when_asked(tmp_path: Path) -> None:
    sock = tmp_path / "web.sock"
    env = clean_env(tmp_path / "data", TRADEBOT_WEB__TOKEN=TOKEN)
    proc = subprocess.Popen([sys.executable, "-m", "tradebot", "web", "--uds", str(sock)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "listening on" in line:
                break
        assert sock.exists()
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://dashboard") as c:
            assert c.get("/").json()["ok"] is True
            assert c.get("/api/trades").status_code == 401
    finally:
        proc.terminate()
        proc.wait(30)


async def test_the_page_is_told_the_operators_display_zone(data_dir: Path) -> None:
    """The page draws every time in TRADEBOT_DISPLAY_TZ (one zone everywhere, as `tradebot status`), told by the
    server before anything is drawn: the zone is a setting, not a constant of the page."""
    settings = Settings(_env_file=None, data_dir=data_dir, web={"token": TOKEN},  # type: ignore[call-arg]
                        display_tz="America/Chicago")
    app = create_app(WebConfig(settings, data_dir, TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as c:
        assert (await c.get("/api/session/me")).json()["time_zone"] == "America/Chicago"
        await login(c)
        assert (await c.get("/api/session/status")).json()["time_zone"] == "America/Chicago"
        assert (await c.get("/api/settings")).json()["time_zone"] == "America/Chicago"
        js = (await c.get("/static/app.js")).text
    assert "setZone(me.time_zone)" in js and "' ET'" not in js
