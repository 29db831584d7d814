"""The daemon end to end: a subprocess on the simulated feed with the Discord stand-in.

Trades happen, the heartbeat advances, the operator channel answers, notifications arrive in order (the digest as
a PNG upload), SIGTERM shuts down cleanly, ``tradebot status`` then reports the persisted state, and the watchdog
alerts when the daemon is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.discord_server import DiscordStandIn
from support.polling import poll_until

# What Discord shows for each outbox row: a collapse summary carries "(xN)" after its title.
OUTBOX_TITLES = ("SELECT json_extract(payload, '$.title') || CASE WHEN json_extract(payload, '$.repeats') > 0 "
                 "THEN ' (x' || json_extract(payload, '$.repeats') || ')' ELSE '' END FROM outbox ORDER BY id")
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_DATA_DIR": str(tmp / "data"), "TRADEBOT_SIM__TRADES_PER_SESSION": "20000",
                "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.3", "TRADEBOT_LOG_FORMAT": "json", **extra})
    return env


async def cli(tmp: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "tradebot", *args, cwd=tmp, env=env,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(), 120)
    assert p.returncode is not None
    return p.returncode, out.decode()


def heartbeat(tmp: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((tmp / "data" / "heartbeat.json").read_text())
    except (OSError, ValueError):
        return None
    return data


async def wait_for(cond: Any, within: float = 120.0) -> Any:
    return await poll_until(cond, within)


@pytest.fixture
async def discord() -> AsyncIterator[DiscordStandIn]:
    s = DiscordStandIn()
    await s.start()
    yield s
    await s.stop()


async def test_daemon_lifecycle_with_discord(tmp_path: Path, discord: DiscordStandIn) -> None:
    env = env_for(tmp_path, DISCORD_WEBHOOK_URL=discord.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", "--speed", "0", "--timeframe", "60", "--stay", cwd=tmp_path,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        hb = await wait_for(lambda: (h := heartbeat(tmp_path)) and h["feed_state"] == "stopped" and h)
        assert hb["events"] > 20000 and hb["validation_rejects"] == 0 and hb["errors"] == 0
        first_ts = hb["ts_ns"]
        await wait_for(lambda: (h := heartbeat(tmp_path)) and h["ts_ns"] > first_ts)

        code, out = await cli(tmp_path, env, "halt", "--reason", "e2e test", "--json")
        assert code == 0 and json.loads(out.strip().splitlines()[-1])["state"] == "halted"
        code, out = await cli(tmp_path, env, "resume", "--json")
        assert code == 0 and json.loads(out.strip().splitlines()[-1])["state"] == "active"

        code, out = await cli(tmp_path, env, "status", "--json")
        assert code == 0, out
        st = json.loads(out)
        assert st["healthy"] and st["heartbeat"]["running"] is True and st["today"]["trades"] >= 1

        # Notifications: start first, then the day's trades, the 15:55 flatten, the digest with its chart.
        await wait_for(lambda: any(r.files for r in discord.received))
        titles = [r.payload["embeds"][0]["title"] for r in discord.received]
        assert titles[0] == "tradebot started"
        assert any(t.startswith("Trade opened") for t in titles) and any(t.startswith("Trade closed") for t in titles)
        assert titles.index(next(t for t in titles if t.startswith("Trade opened"))) < titles.index(
            next(t for t in titles if t.startswith("Trade closed")))
        digest = next(r for r in discord.received if r.files)
        assert digest.payload["embeds"][0]["title"].startswith("Daily digest")
        assert next(iter(digest.files.values()))[:8] == b"\x89PNG\r\n\x1a\n"
        assert any(t.startswith("Trading halted by the operator") for t in titles)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 60)
    assert rc == 0
    assert discord.received[-1].payload["embeds"][0]["title"] == "tradebot stopped"
    assert not (tmp_path / "data" / "control.sock").exists()
    # One event, one message: every alert the journal's outbox holds was posted once, in order; every trade.
    conn = sqlite3.connect(f"file:{tmp_path / 'data' / 'tradebot-paper.db'}?mode=ro", uri=True)
    outbox = [r[0] for r in conn.execute(OUTBOX_TITLES)]
    opened = conn.execute("SELECT COUNT(*) FROM brackets WHERE opened_ns IS NOT NULL").fetchone()[0]
    conn.close()
    sent = [r.payload["embeds"][0]["title"] for r in discord.received]
    assert sent == outbox, (len(sent), len(outbox))
    assert sum(t.startswith("Trade opened") for t in sent) == opened >= 2

    # Stopped: status still answers from the database, and says the daemon is not running.
    code, out = await cli(tmp_path, env, "status", "--json")
    st = json.loads(out)
    assert code == 1 and not st["healthy"] and "not running" in st["heartbeat"]["detail"]
    assert st["today"]["trades"] >= 1
    code, out = await cli(tmp_path, env, "trades", "--json")
    assert code == 0 and len(json.loads(out)) >= 1


async def test_watchdog_alerts_when_the_daemon_is_killed(tmp_path: Path, discord: DiscordStandIn) -> None:
    env = env_for(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", "--speed", "0", "--stay", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await wait_for(lambda: (h := heartbeat(tmp_path)) and h["feed_state"] == "stopped")
    code, _ = await cli(tmp_path, env, "watchdog", "--once")
    assert code == 0  # healthy while it runs
    proc.kill()
    await proc.wait()
    wd_env = {**env, "DISCORD_WEBHOOK_URL": discord.url}
    code, _ = await cli(tmp_path, wd_env, "watchdog", "--once")
    assert code == 1
    titles = [r.payload["embeds"][0]["title"] for r in discord.received]
    assert "Daemon process is not running" in titles
    # The killed daemon left its socket behind; a restart replaces it and recovers from the journal.
    restart = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", "--speed", "0", "--duration", "2", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out_b, err_b = await asyncio.wait_for(restart.communicate(), 120)
    assert restart.returncode == 0, err_b.decode()[-2000:]
    assert '"event": "execution recovered"' in out_b.decode()
