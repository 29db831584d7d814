"""A digest is sent once per trading day, found by its key (job_runs, the outbox row's subject), never its title."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from pathlib import Path

from tradebot.core.calendar import ET, to_ns
from tradebot.core.config import load_settings
from tradebot.core.types import Side, SideRule, Trade
from tradebot.ops import digest
from tradebot.ops.notifications import Notification, Severity
from tradebot.ops.store_outbox import StoreOutbox
from tradebot.state import queries
from tradebot.state.store import APP_ID, MIGRATIONS, StateStore
from tradebot.trading import TradingCore

DAY = dt.date(2025, 3, 11)


def _t(ts: int, px: int = 23000) -> Trade:
    return Trade("MES", ts, ts, px, 1, Side.BUY, SideRule.EXCHANGE, 0, "MESM5")


def _run_day(store: StateStore, start_et: dt.time, end_et: dt.time, title: str) -> list[dt.date]:
    """One daemon-like run over a quiet stretch of DAY: each digest the scheduler fires is built and queued in the
    outbox as the daemon does, with ``title`` as its display title."""
    settings = load_settings(_env_file=None).model_copy(update={"trading_symbol": "MES"})
    core = TradingCore(settings, ["MES"], store)
    outbox = StoreOutbox(store)
    sent: list[dt.date] = []

    def on_digest(day: dt.date, _at: int) -> None:
        note = digest.digest_notification(digest.digest_data(store, day), day, 0)
        outbox.add(dataclasses.replace(note, title=title.format(day=day.isoformat())))
        sent.append(day)

    core.on_digest = on_digest
    t0 = to_ns(dt.datetime.combine(DAY, start_et, tzinfo=ET))
    t1 = to_ns(dt.datetime.combine(DAY, end_et, tzinfo=ET))
    core.start(t0)
    for ts in range(t0, t1, 60 * 10**9):
        core.on_event(_t(ts))
    return sent


def test_a_new_digest_title_does_not_send_the_day_twice(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "t.db", synchronous="OFF")
    assert _run_day(store, dt.time(15, 30), dt.time(16, 10), "Daily digest {day}") == [DAY]
    # A later version titles it differently; the restart later that evening must not send it again, even if the
    # job_runs row were missing: the outbox row is found by kind and subject (the day).
    with store.transaction():
        store.conn.execute("DELETE FROM job_runs")
    assert _run_day(store, dt.time(16, 20), dt.time(16, 40), "Tagesbericht {day}") == []
    assert queries.digest_queued(store, DAY.isoformat())
    store.close()


def test_display_text_is_not_a_key(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "t.db", synchronous="OFF")
    out = StoreOutbox(store)
    iso = DAY.isoformat()
    out.add(Notification("daily_digest", Severity.INFO, f"Daily digest {iso}: +$0.00", 1))  # no key: not a digest
    out.add(Notification("job_missed", Severity.WARNING, f"Daily digest {iso}", 2, subject=iso))  # another kind
    assert not queries.digest_queued(store, iso)
    out.add(Notification("daily_digest", Severity.INFO, "anything at all", 3, subject=iso))
    assert queries.digest_queued(store, iso)
    assert not queries.digest_queued(store, "2025-03-12")
    store.close()


def _old_database(path: Path) -> None:
    """A database as the version before ``job_runs`` wrote it, with one digest queued for DAY."""
    before = next(i for i, steps in enumerate(MIGRATIONS) if any("CREATE TABLE job_runs" in s for s in steps))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for steps in MIGRATIONS[:before]:
        for sql in steps:
            conn.execute(sql)
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                     [("app", APP_ID), ("mode", "paper"), ("schema_version", str(before))])
    started = to_ns(dt.datetime(2025, 3, 11, 9, 0, tzinfo=ET))
    conn.execute("INSERT INTO sessions VALUES (?, ?, 'paper', 'MES', 250000)", (DAY.isoformat(), started))
    for title in (f"Daily digest {DAY.isoformat()}: +$0.00", "Daily digest: broken title", "Something else"):
        conn.execute("INSERT INTO outbox (created_ns, kind, severity, payload) VALUES (?, 'daily_digest', 'info', ?)",
                     (started, json.dumps({"title": title})))
    conn.close()


def test_an_old_databases_sent_digest_is_recorded_at_upgrade_and_not_sent_again(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    store = StateStore.open(path, synchronous="OFF")
    assert store.job_status("daily_digest", DAY.isoformat()) == "done"
    assert store.query("SELECT trading_day FROM job_runs") == [{"trading_day": DAY.isoformat()}]
    assert _run_day(store, dt.time(16, 20), dt.time(16, 40), "Daily digest {day}") == []
    store.close()


def test_the_digest_still_goes_out_once_on_a_fresh_database(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "t.db", synchronous="OFF")
    assert _run_day(store, dt.time(15, 0), dt.time(16, 10), "Daily digest {day}") == [DAY]
    (row,) = store.query("SELECT json_extract(payload, '$.subject') AS s FROM outbox WHERE kind = 'daily_digest'")
    assert row["s"] == DAY.isoformat()
    store.close()
