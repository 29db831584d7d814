"""The daemon on the Databento live feed (the project's gateway stand-in): connection lost/restored alerts,
and a wrong key stopping it with exit code 2 instead of a restart loop."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from pydantic import SecretStr

from support.dbn_gateway import ConnPlan, DbnGateway, mapping, trade
from support.discord_server import DiscordStandIn
from tradebot.core.config import DatabentoSettings, Settings
from tradebot.core.contracts import front_month
from tradebot.daemon import Daemon

KEY = "db-" + "k" * 27 + "live1"
FRONT = front_month("ES", dt.datetime.now(dt.UTC).date())
PX = 6_000_000_000_000
TICK = 250_000_000


def settings(tmp: Path, port: int, webhook: str, key: str = KEY) -> Settings:
    db = DatabentoSettings(gateway="127.0.0.1", port=port, reconnect_initial_seconds=0.05,
                           reconnect_max_seconds=0.2, heartbeat_interval_seconds=5, book_schema="none")
    return Settings(_env_file=None, databento_api_key=SecretStr(key), discord_webhook_url=SecretStr(webhook),  # type: ignore[call-arg]
                    databento=db, data_dir=tmp / "data", trading_symbol="ES", feed="databento")


async def wait_titles(discord: DiscordStandIn, *wanted: str, within: float = 30.0) -> list[str]:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        titles = [r.payload["embeds"][0]["title"] for r in discord.received]
        if all(any(t.startswith(w) for t in titles) for w in wanted):
            return titles
        await asyncio.sleep(0.1)
    raise AssertionError(f"missing {wanted}: got {[r.payload['embeds'][0]['title'] for r in discord.received]}")


async def test_disconnect_raises_connection_lost_then_restored(tmp_path: Path) -> None:
    first = ConnPlan(records=[mapping(1, FRONT), trade(1, PX, 1, "B", 1), trade(1, PX, 2, "A", 2)],
                     interval_s=0.05, after="abort")
    second = ConnPlan(records=[mapping(7, FRONT), trade(7, PX + TICK, 4, "B", 3), trade(7, PX, 5, "A", 4)],
                      heartbeat_s=0.2)
    discord = DiscordStandIn()
    await discord.start()
    try:
        async with DbnGateway(KEY, [first, second]) as gw:
            daemon = Daemon(settings(tmp_path, gw.port, discord.url), ["ES"], "databento")
            task = asyncio.create_task(daemon.run())
            titles = await wait_titles(discord, "tradebot started", "Connection lost", "Connection restored")
            assert titles.index("Connection lost") < next(i for i, t in enumerate(titles)
                                                         if t.startswith("Connection restored"))
            await asyncio.sleep(0.3)
            assert daemon.stats["events"] == 4 and daemon.stats["gaps"] == 1 and daemon.reconnects >= 1
            daemon.stop_event.set()
            assert await asyncio.wait_for(task, 30) == 0
    finally:
        await discord.stop()


async def test_wrong_key_stops_the_daemon_with_exit_2(tmp_path: Path) -> None:
    discord = DiscordStandIn()
    await discord.start()
    try:
        async with DbnGateway(KEY, [ConnPlan()]) as gw:
            daemon = Daemon(settings(tmp_path, gw.port, discord.url, key="db-" + "x" * 27 + "wrong"), ["ES"],
                            "databento")
            assert await asyncio.wait_for(daemon.run(), 60) == 2
            titles = [r.payload["embeds"][0]["title"] for r in discord.received]
            assert "Market data failed" in titles
            assert len(gw.connections) == 1  # no hammering with a bad key
    finally:
        await discord.stop()
