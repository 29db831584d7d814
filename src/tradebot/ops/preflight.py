"""``tradebot preflight``: the checks an operator runs before trusting the daemon with a session.

Each check prints one line (OK / WARN / FAIL) and the command exits non-zero naming the first failure, so it
can gate a deploy script. Nothing here changes state beyond a temporary probe file in the data directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tradebot import __version__
from tradebot.core.config import Settings
from tradebot.state.queries import probe_sqlite

Check = tuple[str, str, str]  # (name, OK|WARN|FAIL, detail)
BUILD_YEAR = 2025


def check_keys(s: Settings) -> Check:
    if s.feed == "databento" and s.databento_api_key is None:
        return ("keys", "FAIL", "TRADEBOT_FEED=databento needs DATABENTO_API_KEY")
    if s.feed == "polygon" and s.polygon_api_key is None:
        return ("keys", "FAIL", "TRADEBOT_FEED=polygon needs POLYGON_API_KEY")
    if s.feed == "projectx" and (s.projectx_api_key is None or not s.projectx_username):
        return ("keys", "FAIL", "TRADEBOT_FEED=projectx needs PROJECTX_USERNAME and PROJECTX_API_KEY")
    if s.trading_mode == "live" and s.trading_broker is None:
        return ("keys", "FAIL", "TRADING_MODE=live needs TRADING_BROKER=projectx|rithmic (and that broker's keys)")
    if s.trading_mode == "live" and s.trading_broker == "projectx" and (
            s.projectx_api_key is None or not s.projectx_username):
        return ("keys", "FAIL", "TRADING_BROKER=projectx needs PROJECTX_USERNAME and PROJECTX_API_KEY")
    have = [n for n, v in (("DATABENTO_API_KEY", s.databento_api_key), ("POLYGON_API_KEY", s.polygon_api_key),
                           ("DISCORD_WEBHOOK_URL", s.discord_webhook_url)) if v is not None]
    return ("keys", "OK", f"feed {s.feed}; configured: {', '.join(have) or 'none (alerts go to the log)'}")


def check_data_dir(s: Settings) -> Check:
    d = s.data_dir
    try:
        probe_sqlite(d)
    except (OSError, sqlite3.Error) as exc:
        return ("database", "FAIL", f"{d} is not writable for SQLite: {exc}")
    return ("database", "OK", f"{d.resolve()} writable (SQLite WAL works)")


def check_disk(s: Settings, min_free_mb: float = 1024) -> Check:
    target = s.data_dir if s.data_dir.exists() else Path(".")
    free = shutil.disk_usage(target).free / 2**20
    if free < min_free_mb:
        return ("disk", "FAIL", f"{free:.0f} MB free under {target} (< {min_free_mb:.0f} MB)")
    return ("disk", "OK", f"{free:.0f} MB free")


def check_clock(_: Settings) -> Check:
    now = dt.datetime.now(dt.UTC)
    if now.year < BUILD_YEAR:
        return ("clock", "FAIL", f"system clock says {now:%Y-%m-%d}: earlier than this build")
    synced = None
    if shutil.which("timedatectl"):
        try:
            r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                               text=True, timeout=5)
            synced = r.stdout.strip() == "yes" if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            synced = None
    drift = abs(time.time() - time.monotonic() - (time.time() - time.monotonic()))
    if synced is False:
        return ("clock", "WARN", "NTP not synchronized (timedatectl); timestamps drive staleness checks")
    return ("clock", "OK", f"{now:%Y-%m-%d %H:%M:%S} UTC" + (", NTP synchronized" if synced else "")
            + ("" if drift < 1 else f", drift {drift:.1f}s"))


def check_webhook(s: Settings, timeout: float = 10.0) -> Check:
    if s.discord_webhook_url is None:
        return ("webhook", "WARN", "DISCORD_WEBHOOK_URL not set: alerts go to the log only")
    url = s.discord_webhook_url.get_secret_value()
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return ("webhook", "FAIL", f"webhook unreachable: {type(exc).__name__}")
    if r.status_code == 200:
        return ("webhook", "OK", "webhook answers")
    return ("webhook", "FAIL", f"webhook answered HTTP {r.status_code}: check DISCORD_WEBHOOK_URL")


def check_broker(s: Settings) -> Check:
    """Live mode: log in once (no retries) and run the adapter's own checklist, then log out."""
    if s.trading_mode != "live":
        return ("broker", "OK", "paper mode: no broker")
    if s.trading_broker is None:
        return ("broker", "FAIL", "TRADING_BROKER is not set")
    import asyncio
    import contextlib

    from tradebot.execution.brokers import BrokerError, open_live_broker

    async def probe() -> Check:
        try:
            broker = open_live_broker(s, s.trading_broker or "")
        except Exception as exc:
            return ("broker", "FAIL", f"{s.trading_broker}: {exc}")
        try:
            await asyncio.wait_for(broker.connect(), timeout=30)
            checks = broker.preflight()
        except (BrokerError, TimeoutError, OSError) as exc:
            return ("broker", "FAIL", f"{s.trading_broker}: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):  # a failing logout must not hide the checks' result
                await asyncio.wait_for(broker.close(), timeout=5)
        bad = [c for c in checks if not c.ok]
        detail = "; ".join(f"{c.name}: {c.detail}" for c in (bad or checks))
        return ("broker", "FAIL" if bad or not checks else "OK", f"{s.trading_broker}: {detail or 'no checks'}")

    return asyncio.run(probe())


CHECKS: list[Callable[[Settings], Check]] = [check_keys, check_data_dir, check_disk, check_clock, check_webhook,
                                             check_broker]


def run_checks(s: Settings) -> list[Check]:
    return [c(s) for c in CHECKS]


def preflight_command(args: argparse.Namespace, settings: Settings) -> int:
    print(f"tradebot {__version__} preflight (mode {settings.trading_mode}, pid {os.getpid()})")
    print("config: OK (loaded and validated)")
    results = run_checks(settings)
    for name, status, detail in results:
        print(f"{name}: {status} {detail}")
    failed = [r for r in results if r[1] == "FAIL"]
    if failed:
        print(f"preflight FAILED: {', '.join(r[0] for r in failed)}")
        return 1
    print("preflight passed")
    return 0
