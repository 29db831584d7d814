"""The watchdog: a separate process that reads the heartbeat and tells the operator when things go wrong.

Its point is to work when the daemon is dead, so it shares nothing with it but the heartbeat file (and the
webhook). Checks are a pure function of (heartbeat, system readings, time) so they are tested without
processes; the loop around them only gathers readings and sends what the checks return. Each problem is an
*episode*: alerted when it starts, repeated every ``realert_seconds`` while it lasts, and closed with a
"recovered" message.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tradebot.core.calendar import ET, ExchangeCalendar, calendar_for, local_ns
from tradebot.core.config import Settings, WatchdogSettings
from tradebot.core.contracts import spec_for
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification, NotificationKind, Severity
from tradebot.ops import deadman
from tradebot.ops.heartbeat import HEARTBEAT_FILE, heartbeat_age_seconds, read_heartbeat
from tradebot.ops.notifications import MemoryOutbox
from tradebot.ops.notifier import Notifier

NS = 1_000_000_000


@dataclass(frozen=True)
class Readings:
    now_ns: int
    heartbeat: dict[str, Any] | None
    pid_alive: bool | None
    rss_mb: float | None
    memory_percent: float
    disk_free_mb: float


@dataclass
class WatchdogState:
    open_problems: dict[str, int] = field(default_factory=dict)  # key -> last alert ns
    reconnects: deque[tuple[int, int]] = field(default_factory=deque)  # (ns, count)
    started_ns: int = 0
    max_rss_mb: float = 0.0
    alerts_sent: int = 0
    last_report_date: dt.date | None = None
    max_reconnects: int = 0
    max_rejects: int = 0


def _problems(r: Readings, cfg: WatchdogSettings, cal: ExchangeCalendar,
              st: WatchdogState) -> dict[str, tuple[Severity, str, str]]:
    """Current problems: key -> (severity, title, detail)."""
    out: dict[str, tuple[Severity, str, str]] = {}
    hb = r.heartbeat
    age = heartbeat_age_seconds(hb, r.now_ns)
    if hb is None:
        out["heartbeat"] = (Severity.CRITICAL, "Daemon heartbeat missing", "no readable heartbeat file")
    elif age is not None and age > cfg.stale_heartbeat_seconds:
        out["heartbeat"] = (Severity.CRITICAL, "Daemon heartbeat stale", f"last heartbeat {age:.0f}s ago")
    if r.pid_alive is False:
        out["process"] = (Severity.CRITICAL, "Daemon process is not running",
                          f"pid {hb.get('pid') if hb else '?'} not alive")
    if hb is not None and cal.session_at(r.now_ns) is not None and age is not None \
            and age <= cfg.stale_heartbeat_seconds:
        data_age = hb.get("market_data_age_s")
        if isinstance(data_age, int | float) and data_age > cfg.stale_data_seconds:
            out["market_data"] = (Severity.WARNING, "Market data stale during the session",
                                  f"no market data for {data_age:.0f}s (feed {hb.get('feed_state', '?')})")
    if r.rss_mb is not None and r.rss_mb > cfg.max_rss_mb:
        out["rss"] = (Severity.WARNING, "Daemon memory high", f"RSS {r.rss_mb:.0f} MB > {cfg.max_rss_mb:.0f} MB")
    if r.memory_percent > cfg.max_memory_percent:
        out["memory"] = (Severity.WARNING, "Machine memory high", f"{r.memory_percent:.0f}% used")
    if r.disk_free_mb < cfg.min_disk_free_mb:
        out["disk"] = (Severity.CRITICAL, "Disk space low", f"{r.disk_free_mb:.0f} MB free under the data dir")
    if hb is not None and isinstance(hb.get("reconnects"), int):
        st.reconnects.append((r.now_ns, int(hb["reconnects"])))
        horizon = r.now_ns - int(cfg.reconnect_storm_seconds * NS)
        while st.reconnects and st.reconnects[0][0] < horizon:
            st.reconnects.popleft()
        burst = st.reconnects[-1][1] - st.reconnects[0][1]
        if burst >= cfg.reconnect_storm_count:
            out["reconnects"] = (Severity.WARNING, "Feed reconnect storm",
                                 f"{burst} reconnects in {cfg.reconnect_storm_seconds:.0f}s")
    return out


def evaluate(r: Readings, cfg: WatchdogSettings, cal: ExchangeCalendar, st: WatchdogState) -> list[Notification]:
    """Notifications to send for these readings, updating the episode state."""
    if not st.started_ns:
        st.started_ns = r.now_ns
    if r.rss_mb:
        st.max_rss_mb = max(st.max_rss_mb, r.rss_mb)
    if r.heartbeat:
        st.max_reconnects = max(st.max_reconnects, int(r.heartbeat.get("reconnects", 0) or 0))
        st.max_rejects = max(st.max_rejects, int(r.heartbeat.get("validation_rejects", 0) or 0))
    out: list[Notification] = []
    problems = _problems(r, cfg, cal, st)
    for key, (sev, title, detail) in problems.items():
        last = st.open_problems.get(key)
        if last is None or r.now_ns - last >= cfg.realert_seconds * NS:
            st.open_problems[key] = r.now_ns
            out.append(Notification(NotificationKind.WATCHDOG, sev, title, r.now_ns, detail, (("check", key),)))
    for key in [k for k in st.open_problems if k not in problems]:
        del st.open_problems[key]
        out.append(Notification(NotificationKind.WATCHDOG, Severity.SUCCESS, f"Recovered: {key.replace('_', ' ')}",
                                r.now_ns, "the condition cleared", (("check", key),)))
    out += _daily_report(r, cfg, cal, st)
    st.alerts_sent += len(out)
    return out


def _daily_report(r: Readings, cfg: WatchdogSettings, cal: ExchangeCalendar, st: WatchdogState) -> list[Notification]:
    today = dt.datetime.fromtimestamp(r.now_ns / NS, tz=ET).date()
    if st.last_report_date == today or not cal.is_trading_day(today):
        return []
    if r.now_ns < local_ns(today, cfg.report_at, ET):
        return []
    st.last_report_date = today
    hb = r.heartbeat or {}
    up = (r.now_ns - int(hb["started_ns"])) / NS if isinstance(hb.get("started_ns"), int) else None
    fields = (("Daemon uptime", f"{up / 3600:.1f} h" if up is not None else "unknown"),
              ("Max RSS", f"{st.max_rss_mb:.0f} MB"), ("Reconnects", str(st.max_reconnects)),
              ("Rejected records", str(st.max_rejects)), ("Alerts sent", str(st.alerts_sent)),
              ("Open problems", ", ".join(st.open_problems) or "none"))
    return [Notification(NotificationKind.WATCHDOG, Severity.INFO, f"Daily health report {today}", r.now_ns, "",
                         fields)]


def describe_checks(r: Readings, cfg: WatchdogSettings, cal: ExchangeCalendar,
                    problems: dict[str, tuple[Severity, str, str]]) -> list[dict[str, Any]]:
    """What each check looked at and what it found, for ``watchdog --once`` (an operator's "is all well?")."""
    hb = r.heartbeat
    age = heartbeat_age_seconds(hb, r.now_ns)
    pid = hb.get("pid") if hb else None
    in_session = cal.session_at(r.now_ns) is not None
    data_age = hb.get("market_data_age_s") if hb else None
    reconnects = hb.get("reconnects") if hb else None
    found = {
        "heartbeat": "no readable heartbeat file" if hb is None else
        f"written {age:.0f}s ago (limit {cfg.stale_heartbeat_seconds:.0f}s)" if age is not None else "no timestamp",
        "process": f"pid {pid} running" if r.pid_alive else f"pid {pid} not alive" if r.pid_alive is False
        else "no pid in the heartbeat",
        "market_data": (f"last record {data_age:.0f}s ago (limit {cfg.stale_data_seconds:.0f}s)"
                        if isinstance(data_age, int | float) else "no market data age in the heartbeat")
        + (", in session" if in_session else ", outside the session (not alerted)"),
        "rss": f"daemon RSS {r.rss_mb:.0f} MB (limit {cfg.max_rss_mb:.0f} MB)" if r.rss_mb is not None
        else "daemon RSS unknown",
        "memory": f"machine memory {r.memory_percent:.0f}% used (limit {cfg.max_memory_percent:.0f}%)",
        "disk": f"{r.disk_free_mb:,.0f} MB free under the data dir (limit {cfg.min_disk_free_mb:,.0f} MB)",
        "reconnects": (f"{reconnects} feed reconnects since start (storm: {cfg.reconnect_storm_count} within "
                       f"{cfg.reconnect_storm_seconds:.0f}s)") if isinstance(reconnects, int)
        else "no reconnect count in the heartbeat",
    }
    out = []
    for key, detail in found.items():
        problem = problems.get(key)
        out.append({"check": key.replace("_", " "), "ok": problem is None,
                    "detail": f"{problem[1]}: {problem[2]}" if problem else detail})
    return out


def gather(data_dir: Path) -> Readings:
    hb = read_heartbeat(data_dir / HEARTBEAT_FILE)
    pid = hb.get("pid") if hb else None
    alive: bool | None = None
    rss: float | None = None
    if isinstance(pid, int):
        alive = psutil.pid_exists(pid)
        if alive:
            try:
                rss = psutil.Process(pid).memory_info().rss / 2**20
            except (psutil.Error, OSError):
                rss = None
    if rss is None and hb and isinstance(hb.get("rss_mb"), int | float):
        rss = float(hb["rss_mb"])
    target = data_dir if data_dir.exists() else Path(".")
    return Readings(time.time_ns(), hb, alive, rss, psutil.virtual_memory().percent,
                    shutil.disk_usage(target).free / 2**20)


async def run_watchdog(settings: Settings, once: bool = False, as_json: bool = False,
                       broker: str | None = None) -> int:
    log = get_logger("tradebot.watchdog")
    cfg = settings.watchdog
    cal = calendar_for(spec_for(settings.symbol_list[0]).session)
    webhook = settings.discord_webhook_url.get_secret_value() if settings.discord_webhook_url else None
    notifier = Notifier(webhook, MemoryOutbox(), collapse_seconds=0)
    st = WatchdogState()
    dm = deadman.DeadmanState()
    log.info("watchdog started", data_dir=str(settings.data_dir), interval=cfg.interval_seconds,
             deadman=deadman.enabled(settings))
    while True:
        readings = await asyncio.to_thread(gather, settings.data_dir)
        # The dead-man's switch first: closing a dead daemon's position must not wait on a webhook.
        why = deadman.due(readings.heartbeat, readings.now_ns, settings, dm)
        if why is not None:
            for n in await deadman.fire(settings, why, readings.heartbeat, dm, readings.now_ns,
                                        broker_override=broker):
                notifier.notify(n)
        for n in evaluate(readings, cfg, cal, st):
            notifier.notify(n)
        await notifier.flush(30)
        if once:
            report = describe_checks(readings, cfg, cal, _problems(readings, cfg, cal, WatchdogState()))
            report.append({"check": "dead-man", "ok": not (why is not None and not dm.done),
                           "detail": ("off" if not deadman.enabled(settings) else
                                      f"fired ({why}): {dm.last_result}" if why is not None else
                                      f"armed (heartbeat older than {cfg.deadman_stale_seconds:.0f}s with a "
                                      "position open flattens at the broker)")})
            healthy = not st.open_problems and report[-1]["ok"]
            if as_json:
                print(json.dumps({"data_dir": str(settings.data_dir), "healthy": healthy, "checks": report}))
            else:
                print(f"watchdog: {len(report)} checks on {settings.data_dir}")
                for c in report:
                    print(f"  {'ok  ' if c['ok'] else 'FAIL'}  {c['check']:<12} {c['detail']}")
                print("healthy" if healthy else f"UNHEALTHY: {', '.join(sorted(st.open_problems))}")
            return 0 if healthy else 1
        await asyncio.sleep(cfg.interval_seconds)


def watchdog_command(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_watchdog(settings, once=bool(getattr(args, "once", False)),
                                    as_json=bool(getattr(args, "json", False)),
                                    broker=getattr(args, "broker", None)))
