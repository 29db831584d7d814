"""Watchdog checks as a pure function of readings: episodes, recovery, thresholds, the daily report."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tradebot.cli import main
from tradebot.core.calendar import ET, calendar_for, to_ns
from tradebot.core.config import WatchdogSettings
from tradebot.ops.heartbeat import write_heartbeat
from tradebot.ops.notifications import Severity
from tradebot.ops.watchdog import Readings, WatchdogState, evaluate, gather

CAL = calendar_for("equity")
IN_SESSION = to_ns(dt.datetime(2025, 3, 11, 11, 0, tzinfo=ET))
NS = 10**9


def hb(now: int, age_s: float = 1.0, **kw: Any) -> dict[str, Any]:
    return {"ts_ns": now - int(age_s * NS), "pid": 1, "started_ns": now - 3600 * NS, "market_data_age_s": 0.5,
            "reconnects": 0, "validation_rejects": 0, **kw}


def rd(now: int, heartbeat: dict[str, Any] | None, **kw: Any) -> Readings:
    base: dict[str, Any] = {"pid_alive": True, "rss_mb": 200.0, "memory_percent": 40.0, "disk_free_mb": 50_000.0}
    base.update(kw)
    return Readings(now, heartbeat, **base)


def titles(ns: list[Any]) -> list[str]:
    return [n.title for n in ns]


def test_healthy_daemon_raises_nothing() -> None:
    assert evaluate(rd(IN_SESSION, hb(IN_SESSION)), WatchdogSettings(), CAL, WatchdogState()) == []


def test_stale_heartbeat_episode_alerts_once_realerts_and_recovers() -> None:
    cfg, st = WatchdogSettings(stale_heartbeat_seconds=30, realert_seconds=600), WatchdogState()
    first = evaluate(rd(IN_SESSION, hb(IN_SESSION, age_s=31)), cfg, CAL, st)
    assert titles(first) == ["Daemon heartbeat stale"] and first[0].severity == Severity.CRITICAL
    assert evaluate(rd(IN_SESSION + 60 * NS, hb(IN_SESSION, age_s=31)), cfg, CAL, st) == []
    again = evaluate(rd(IN_SESSION + 601 * NS, hb(IN_SESSION, age_s=31)), cfg, CAL, st)
    assert titles(again) == ["Daemon heartbeat stale"]
    back = evaluate(rd(IN_SESSION + 700 * NS, hb(IN_SESSION + 700 * NS)), cfg, CAL, st)
    assert titles(back) == ["Recovered: heartbeat"]


def test_exactly_at_the_threshold_is_not_stale() -> None:
    cfg = WatchdogSettings(stale_heartbeat_seconds=30)
    assert evaluate(rd(IN_SESSION, hb(IN_SESSION, age_s=30)), cfg, CAL, WatchdogState()) == []


def test_missing_heartbeat_and_dead_process() -> None:
    out = evaluate(rd(IN_SESSION, None, pid_alive=None), WatchdogSettings(), CAL, WatchdogState())
    assert titles(out) == ["Daemon heartbeat missing"]
    out = evaluate(rd(IN_SESSION, hb(IN_SESSION), pid_alive=False), WatchdogSettings(), CAL, WatchdogState())
    assert titles(out) == ["Daemon process is not running"]


def test_stale_market_data_only_counts_inside_the_session() -> None:
    cfg = WatchdogSettings(stale_data_seconds=120)
    out = evaluate(rd(IN_SESSION, hb(IN_SESSION, market_data_age_s=121)), cfg, CAL, WatchdogState())
    assert titles(out) == ["Market data stale during the session"]
    saturday = to_ns(dt.datetime(2025, 3, 8, 12, 0, tzinfo=ET))
    assert evaluate(rd(saturday, hb(saturday, market_data_age_s=10_000)), cfg, CAL, WatchdogState()) == []


def test_resource_thresholds() -> None:
    cfg = WatchdogSettings(max_rss_mb=500, max_memory_percent=90, min_disk_free_mb=1000)
    out = evaluate(rd(IN_SESSION, hb(IN_SESSION), rss_mb=501, memory_percent=95, disk_free_mb=999), cfg, CAL,
                   WatchdogState())
    assert sorted(titles(out)) == ["Daemon memory high", "Disk space low", "Machine memory high"]


def test_reconnect_storm() -> None:
    cfg, st = WatchdogSettings(reconnect_storm_count=5, reconnect_storm_seconds=600), WatchdogState()
    t = IN_SESSION
    assert evaluate(rd(t, hb(t, reconnects=2)), cfg, CAL, st) == []
    assert evaluate(rd(t + 60 * NS, hb(t + 60 * NS, reconnects=6)), cfg, CAL, st) == []
    out = evaluate(rd(t + 120 * NS, hb(t + 120 * NS, reconnects=7)), cfg, CAL, st)
    assert titles(out) == ["Feed reconnect storm"]
    # Slow, spread-out reconnects are not a storm.
    st2 = WatchdogState()
    for i in range(10):
        tt = t + i * 700 * NS
        assert evaluate(rd(tt, hb(tt, reconnects=i)), cfg, CAL, st2) == []


def test_daily_report_once_per_trading_day_not_on_holidays() -> None:
    cfg, st = WatchdogSettings(report_at="16:05"), WatchdogState()
    before = to_ns(dt.datetime(2025, 3, 11, 16, 4, tzinfo=ET))
    after = to_ns(dt.datetime(2025, 3, 11, 16, 6, tzinfo=ET))
    assert evaluate(rd(before, hb(before, reconnects=3, validation_rejects=12)), cfg, CAL, st) == []
    rep = evaluate(rd(after, hb(after, reconnects=3, validation_rejects=12), rss_mb=321), cfg, CAL, st)
    assert titles(rep) == ["Daily health report 2025-03-11"]
    fields = dict(rep[0].fields)
    assert fields["Reconnects"] == "3" and fields["Rejected records"] == "12" and fields["Max RSS"] == "321 MB"
    assert evaluate(rd(after + NS, hb(after + NS)), cfg, CAL, st) == []
    xmas = to_ns(dt.datetime(2025, 12, 25, 17, 0, tzinfo=ET))
    assert evaluate(rd(xmas, hb(xmas)), cfg, CAL, WatchdogState()) == []


def test_gather_reads_the_real_heartbeat_and_this_process(tmp_path: Path) -> None:
    write_heartbeat(tmp_path / "heartbeat.json", {"ts_ns": time.time_ns(), "pid": os.getpid()})
    r = gather(tmp_path)
    assert r.heartbeat is not None and r.pid_alive is True and r.rss_mb is not None and r.rss_mb > 1
    assert r.disk_free_mb > 0


def test_watchdog_once_exits_nonzero_when_the_daemon_is_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEBOT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DISCORD_WEBHOOK_URL", raising=False)
    assert main(["watchdog", "--once"]) == 1
    assert "Daemon heartbeat missing" in capsys.readouterr().out
