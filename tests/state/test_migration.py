"""An existing database from before the typed journal (schema 3, payloads built as dicts) is upgraded on open,
its journal read by the typed codec unchanged, and replayed to the state it had recorded."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.journal_session import DATA as TAPE
from support.journal_session import session_settings
from tradebot.execution import journal as jn
from tradebot.execution.ledger import rebuild_from_journal
from tradebot.execution.risk import usd_to_cents
from tradebot.state.store import PROJECTION_TABLES, SCHEMA_VERSION, StateStore
from tradebot.trading import TradingCore

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")
FIXTURE = Path(__file__).parent / "fixtures" / "v3_journal.sql"
"""Written by the code of commit 2cbc486 (see ``fixtures/make_v3_journal.py``)."""

REDEFINED = {("daily_stats", "peak_net_cents"), ("daily_stats", "max_drawdown_cents")}
"""Columns whose definition changed on purpose since (a day's drawdown trade by trade, as core/stats.py counts
it, not fill by fill): a replay recomputes them by the current definition."""


def v3_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(FIXTURE.read_text())
    finally:
        conn.close()
    return path


def table(conn: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    cur = conn.execute(f"SELECT * FROM {name}")
    cols = [d[0] for d in cur.description]
    return sorted((dict(zip(cols, row, strict=True)) for row in cur.fetchall()), key=repr)


def comparable(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in r.items() if (name, k) not in REDEFINED} for r in rows), key=repr)


def test_a_v3_database_is_upgraded_on_open_and_replays_to_the_state_it_recorded(tmp_path: Path) -> None:
    path = v3_database(tmp_path / "tradebot-paper.db")
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
    recorded = {t: table(raw, t) for t in PROJECTION_TABLES}  # the projections the old code wrote
    journal_before = raw.execute("SELECT seq, ts_ns, kind, payload FROM journal ORDER BY seq").fetchall()
    raw.close()
    assert recorded["brackets"] and recorded["fills"], "the fixture must hold real trades"

    store = StateStore.open(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION > 3
        assert store.query("SELECT name FROM sqlite_master WHERE name = 'shadow_legs'")  # the later tables exist
        assert store.conn.execute("SELECT seq, ts_ns, kind, payload FROM journal ORDER BY seq").fetchall() \
            == journal_before  # history is never rewritten: the old payloads are read as they are

        entries = list(jn.read(store))
        assert len(entries) == len(journal_before)
        by_kind = {e.kind for e in entries}
        assert {jn.JournalKind.SIGNAL, jn.JournalKind.BROKER_FILL, jn.JournalKind.AUTO_FLATTEN,
                jn.JournalKind.EXIT_SIGNAL, jn.JournalKind.FLATTEN_REQUEST, jn.JournalKind.RECOVERY} <= by_kind
        recovery = next(e.event for e in entries if isinstance(e.event, jn.RecoveryChecked))
        assert recovery.set_state is None  # written without the key: decoded with its default
        auto = next(e.event for e in entries if isinstance(e.event, jn.AutoFlattenDecided))
        assert auto.set_state is not None and auto.set_state.reason == "after auto-flatten: exits only"

        settings = session_settings()
        ledger = rebuild_from_journal(store, usd_to_cents(settings.execution.starting_balance))
        for t in PROJECTION_TABLES:
            assert comparable(t, table(store.conn, t)) == comparable(t, recorded[t]), t
        (day,) = ledger.daily.values()
        assert day.max_drawdown_cents >= 0 and day.peak_net_cents >= 0

        # The daemon starts on it with today's code: recovery replays it, the open bracket is still closing.
        core = TradingCore(settings, ["ES"], store, record_decisions=False)
        report = core.start(entries[-1].ts_ns + 1)
        assert report.ok, report.mismatches
        assert report.open_brackets == [b["signal_id"] for b in recorded["brackets"] if b["closed_ns"] is None]
        assert core.manager.ledger.trading.state.value == "reducing"
    finally:
        store.close()


def test_a_journal_with_a_kind_this_build_does_not_know_is_refused_at_start(tmp_path: Path) -> None:
    """A database written by a newer (or a diverged) tradebot: the daemon refuses to start, naming the kind, and
    leaves the file as it was; it never replays around a record it cannot read."""
    (tmp_path / "data").mkdir()
    path = v3_database(tmp_path / "data" / "tradebot-paper.db")
    store = StateStore.open(path)
    with store.transaction() as tx:
        tx.journal("broker_fill_while_away", 1_643_060_000_000_000_000, {"client_order_id": "x-E", "quantity": 1})
    count = store.journal_count()
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    proc = subprocess.run([sys.executable, "-m", "tradebot", "run", "--feed", "replay", "--input", str(TAPE),
                           "--symbol", "ES", "--speed", "0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refusing to start" in proc.stderr and "broker_fill_while_away" in proc.stderr
    again = StateStore.open(path, readonly=True)
    try:
        assert again.journal_count() == count
    finally:
        again.close()
