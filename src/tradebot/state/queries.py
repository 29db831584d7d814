"""The named reads (and the few direct writes) of the state database that code outside ``state/`` needs.

The schema belongs to this package: a table or column renamed here is renamed for every reader at once, and
no module elsewhere holds SQL text (``tests/state/test_no_raw_sql.py`` checks that). Each function takes a
:class:`Reader` (a :class:`~tradebot.state.store.StateStore`, or the dashboard's per-request read-only
connection), returns plain rows (``dict`` per row, column names as keys) and keeps the exact predicate and order
its callers relied on; where two callers want different predicates (``state = 'closed'`` versus "has an entry
fill and a close") they are different functions, named for what they select.

Idempotency keys are real keys: a calendar job is done when ``job_runs`` has its row (or, for the auto-flatten,
when the journal has its event for that day), a digest when its outbox row carries the day as its subject; never
by matching display text such as a title.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from tradebot.state.store import StateStore

Row = dict[str, Any]


class Reader(Protocol):
    """Anything that runs a read and returns its rows as dicts (``StateStore.query``)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


def _one(rows: list[Row]) -> Row | None:
    return rows[0] if rows else None


# -- trading state, sessions, marks, positions ----------------------------------------------------------------


def trading_state(db: Reader) -> Row | None:
    """The one ``trading_state`` row (``None`` before the first session)."""
    return _one(db.query("SELECT * FROM trading_state WHERE id = 1"))


def latest_session(db: Reader) -> Row | None:
    return _one(db.query("SELECT * FROM sessions ORDER BY trading_day DESC LIMIT 1"))


def last_session_day(db: Reader) -> str | None:
    """The latest trading day this database traded on."""
    row = _one(db.query("SELECT MAX(trading_day) AS d FROM sessions"))
    return None if row is None or row["d"] is None else str(row["d"])


def first_session(db: Reader) -> tuple[str, int] | None:
    """``(first trading day, first start time)`` of this database's history, ``None`` if it never traded."""
    row = _one(db.query("SELECT MIN(trading_day) AS d, MIN(started_ns) AS t FROM sessions"))
    return None if row is None or row["d"] is None else (str(row["d"]), int(row["t"]))


def last_journal_ns(db: Reader) -> int:
    """Time of the latest journal record (0: empty journal)."""
    row = _one(db.query("SELECT MAX(ts_ns) AS ts FROM journal"))
    return int(row["ts"] or 0) if row else 0


def last_propfirm_state(db: Reader) -> dict[str, Any] | None:
    """The payload of the latest ``propfirm`` journal record (the prop-firm rules' state), ``None`` before any."""
    import json

    row = _one(db.query("SELECT payload FROM journal WHERE kind = 'propfirm' ORDER BY seq DESC LIMIT 1"))
    return None if row is None else dict(json.loads(row["payload"]))


def marks(db: Reader) -> dict[str, Row]:
    """The last price per symbol (``symbol``, ``price`` in ticks, ``ts_ns``)."""
    return {r["symbol"]: r for r in db.query("SELECT symbol, price, ts_ns FROM marks")}


def open_position_lots(db: Reader) -> list[Row]:
    """``symbol, lots`` of every non-flat position (lots as the ledger stored them, JSON)."""
    return db.query("SELECT symbol, lots FROM positions WHERE qty != 0")


def open_positions(db: Reader) -> list[Row]:
    return db.query("SELECT symbol, qty, realized_cents, commission_cents, updated_ns FROM positions "
                    "WHERE qty != 0 ORDER BY symbol")


# -- daily figures --------------------------------------------------------------------------------------------


def daily_stats(db: Reader, day: str) -> Row | None:
    return _one(db.query("SELECT * FROM daily_stats WHERE trading_day = ?", (day,)))


def all_daily_stats(db: Reader) -> list[Row]:
    """Every day's row, oldest first."""
    return db.query("SELECT * FROM daily_stats ORDER BY trading_day")


def recent_daily_stats(db: Reader, days: int) -> list[Row]:
    """The newest ``days`` rows, oldest first."""
    rows = db.query("SELECT * FROM daily_stats ORDER BY trading_day DESC LIMIT ?", (days,))
    rows.reverse()
    return rows


def recent_trading_days(db: Reader, days: int) -> list[str]:
    """The newest ``days`` trading days with figures, newest first."""
    rows = db.query("SELECT DISTINCT trading_day FROM daily_stats ORDER BY trading_day DESC LIMIT ?", (days,))
    return [str(r["trading_day"]) for r in rows]


# -- brackets -------------------------------------------------------------------------------------------------


def brackets_in_states(db: Reader, states: Sequence[str]) -> list[Row]:
    """Brackets whose ``state`` is one of ``states``, in submission order."""
    return db.query(f"SELECT * FROM brackets WHERE state IN ({','.join('?' for _ in states)}) "
                    "ORDER BY submitted_ns", tuple(states))


def unclosed_brackets(db: Reader) -> list[Row]:
    """Brackets without a close time (working or holding a position), in submission order."""
    return db.query("SELECT * FROM brackets WHERE closed_ns IS NULL ORDER BY submitted_ns")


def closed_brackets(db: Reader, *, days: Sequence[str] | None = None, limit: int = 500) -> list[Row]:
    """Brackets in state ``closed``, newest close first, optionally only of some trading days."""
    if days is None:
        return db.query("SELECT * FROM brackets WHERE state = 'closed' ORDER BY closed_ns DESC LIMIT ?", (limit,))
    return db.query(f"SELECT * FROM brackets WHERE state = 'closed' AND trading_day IN "
                    f"({','.join('?' for _ in days)}) ORDER BY closed_ns DESC LIMIT ?", (*days, limit))


def closed_trade_nets(db: Reader) -> list[Row]:
    """``trading_day, pattern, closed_ns, net`` (cents after commission) of the brackets in state ``closed``, in
    closing order: what the statistics count."""
    return db.query("SELECT trading_day, pattern, closed_ns, realized_cents - commission_cents AS net FROM brackets "
                    "WHERE state = 'closed' ORDER BY closed_ns, signal_id")


def filled_closed_brackets(db: Reader, *, day: str | None = None, newest_first: bool = False,
                           limit: int | None = None) -> list[Row]:
    """Brackets with an entry fill and a close time (trades), in closing order (or newest first)."""
    sql = "SELECT * FROM brackets WHERE closed_ns IS NOT NULL AND entry_filled > 0"
    params: tuple[Any, ...] = ()
    if day is not None:
        sql += " AND trading_day = ?"
        params = (day,)
    sql += " ORDER BY closed_ns DESC, signal_id" if newest_first else " ORDER BY closed_ns, signal_id"
    if limit is not None:
        sql += " LIMIT ?"
        params = (*params, limit)
    return db.query(sql, params)


def filled_closed_nets(db: Reader) -> list[Row]:
    """``closed_ns, net`` of the brackets :func:`filled_closed_brackets` selects, in closing order."""
    return db.query("SELECT closed_ns, realized_cents - commission_cents AS net FROM brackets "
                    "WHERE closed_ns IS NOT NULL AND entry_filled > 0 ORDER BY closed_ns, signal_id")


# -- signals --------------------------------------------------------------------------------------------------


def recent_signals(db: Reader, limit: int) -> list[Row]:
    """Signals sent to execution, newest first."""
    return db.query("SELECT * FROM signals ORDER BY ts_ns DESC, signal_id LIMIT ?", (limit,))


def recent_router_decisions(db: Reader, limit: int) -> list[Row]:
    """Signals the router turned down, newest first."""
    return db.query("SELECT * FROM router_decisions ORDER BY ts_ns DESC, signal_id LIMIT ?", (limit,))


# -- outbox ---------------------------------------------------------------------------------------------------


def alert_counts(db: Reader, start_ns: int, end_ns: int) -> Row:
    """Outbox rows created in ``[start, end)``: ``alerts``, ``sent``, possible ``duplicates`` (delivered after an
    unanswered attempt) and ``collapsed`` repeats."""
    rows = db.query(
        "SELECT COUNT(*) AS alerts, COALESCE(SUM(delivered_ns IS NOT NULL), 0) AS sent, "
        "COALESCE(SUM(delivered_ns IS NOT NULL AND ambiguous > 0), 0) AS duplicates, "
        "COALESCE(SUM(CASE WHEN json_extract(payload, '$.repeats') > 1 "
        "THEN json_extract(payload, '$.repeats') - 1 ELSE 0 END), 0) AS collapsed "
        "FROM outbox WHERE created_ns >= ? AND created_ns < ?", (start_ns, end_ns))
    return rows[0]


def last_outbox_id(db: Reader) -> int:
    row = _one(db.query("SELECT max(id) AS id FROM outbox"))
    return int(row["id"] or 0) if row else 0


# -- calendar jobs --------------------------------------------------------------------------------------------

DIGEST_KIND = "daily_digest"
"""The outbox kind of the daily digest; its ``subject`` is the trading day (ISO) it reports."""


def digest_subject(day: str) -> str:
    """The digest's key in the outbox (its notification ``subject``): the trading day, never its title."""
    return day


def digest_queued(db: Reader, day: str) -> bool:
    """A digest for ``day`` is in the outbox (queued or sent), found by kind and subject."""
    return bool(db.query("SELECT 1 FROM outbox WHERE kind = ? AND json_extract(payload, '$.subject') = ? LIMIT 1",
                         (DIGEST_KIND, digest_subject(day))))


def auto_flatten_journaled(db: Reader, day: str) -> bool:
    """The journal holds the auto-flatten of ``day`` (databases from before ``job_runs``)."""
    return bool(db.query("SELECT 1 FROM journal WHERE kind = 'auto_flatten' AND json_extract(payload, '$.day') = ? "
                         "LIMIT 1", (day,)))


def insert_job_run(store: StateStore, name: str, day: str, status: str, ts_ns: int, detail: str) -> bool:
    """Record a job's outcome for a day inside the caller's open transaction (so an alert about it is written in
    the same commit); False when the day already had one (never overwritten)."""
    cur = store.conn.execute("INSERT OR IGNORE INTO job_runs (name, trading_day, status, ts_ns, detail) "
                             "VALUES (?, ?, ?, ?, ?)", (name, day, status, ts_ns, detail))
    return cur.rowcount == 1


# -- durability -----------------------------------------------------------------------------------------------


def sync_mode(store: StateStore) -> tuple[int, bool]:
    """``(PRAGMA synchronous, WAL?)`` of the store's connection: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA."""
    conn = store.conn
    level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    wal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
    return level, wal


@contextlib.contextmanager
def unsynced_commits(store: StateStore, mode: tuple[int, bool]) -> Iterator[None]:
    """Commits inside without an fsync of their own (``synchronous=NORMAL``) when the store is a WAL database
    synced FULL or more (``mode`` from :func:`sync_mode`, read once by the caller): for diagnostics rows, whose
    commit still reaches the OS (a killed process loses nothing), so the bar-close path pays no fsync."""
    level, wal = mode
    relax = wal and level > 1
    conn = store.conn
    if relax:
        conn.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        if relax:
            with contextlib.suppress(sqlite3.Error):  # a simulated crash closes the connection
                conn.execute(f"PRAGMA synchronous={int(level)}")


# -- connections ----------------------------------------------------------------------------------------------


def readonly_connection(path: Path, timeout: float = 2.0) -> sqlite3.Connection:
    """A connection that cannot write (``mode=ro`` and ``query_only``) with rows as ``sqlite3.Row``: for a reader
    in another process (the dashboard), which must never hold a lock the daemon waits for."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only=1")
    except sqlite3.Error:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


# -- the filesystem -------------------------------------------------------------------------------------------


def probe_sqlite(directory: Path) -> None:
    """Create, switch to WAL and write a throwaway database in ``directory`` (removed again): what the daemon's
    state database will need. Raises ``OSError`` or ``sqlite3.Error`` when the directory cannot hold it."""
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".preflight.") as f:
        con = sqlite3.connect(f.name)
        try:
            con.execute("PRAGMA journal_mode=wal")
            con.execute("CREATE TABLE t (x)")
            con.commit()
        finally:
            con.close()
    for extra in directory.glob(".preflight.*"):
        extra.unlink(missing_ok=True)


__all__ = ["DIGEST_KIND", "Reader", "Row", "alert_counts", "all_daily_stats", "auto_flatten_journaled",
           "brackets_in_states", "closed_brackets", "closed_trade_nets", "daily_stats", "digest_queued",
           "digest_subject", "filled_closed_brackets", "filled_closed_nets", "first_session", "insert_job_run",
           "last_journal_ns", "last_outbox_id", "last_session_day", "latest_session", "marks", "open_position_lots",
           "open_positions", "probe_sqlite", "readonly_connection", "recent_daily_stats", "recent_router_decisions",
           "recent_signals", "recent_trading_days", "sync_mode", "trading_state", "unclosed_brackets",
           "unsynced_commits"]
