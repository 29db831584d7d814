"""The state database: one SQLite file per trading mode (``tradebot-paper.db`` / ``tradebot-live.db``).

Design, because this file holds the money:

- An append-only **journal** is the source of truth. Every execution event is committed to it (WAL,
  ``synchronous=FULL``) before anything acts on it; triggers refuse UPDATE and DELETE on it.
- The other tables are **projections** of the journal (signals, brackets, orders, fills, positions, daily
  stats, trading state) written in the same transaction as the journal record they derive from, so they are
  never ahead of or behind it; :meth:`StateStore.replace_projections` rewrites them from a replay.
- The **outbox** holds notifications for the ops notifier, committed with the event that caused them.
- A file that is not ours, truncated, corrupt, or written by a newer schema raises :class:`StateError` and is
  never touched: it is validated through a read-only connection before any write, and a new database is
  built under a temporary name and renamed into place, so an existing path is never recreated.
- Creation is atomic: the temporary database is written with a rollback journal (so its content is in the
  file itself, never in a WAL beside it), synced and validated, and only then linked in. A full disk leaves
  the path absent, never a malformed file that refuses every later start.
- One writer per database: a writable open takes an exclusive ``flock`` on the database file itself (whatever
  data directory the daemon was started with); a second writer is refused with :class:`StateLockedError`.
- Files are 0600 whatever the umask (the journal holds the account's history).

Size: the database's one owner: schema and migrations, the lock, validation before any write, and the journal append
with its projections and outbox in one transaction; named read queries are already apart (state/queries.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP_ID = "tradebot-state"
SQLITE_HEADER = b"SQLite format 3\x00"

MIGRATIONS: list[list[str]] = [
    [  # 1: initial schema
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL,
            kind TEXT NOT NULL, payload TEXT NOT NULL)""",
        """CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
            BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END""",
        """CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
            BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END""",
        """CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
            kind TEXT NOT NULL, severity TEXT NOT NULL, payload TEXT NOT NULL, delivered_ns INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, journal_seq INTEGER)""",
        "CREATE INDEX outbox_pending ON outbox (delivered_ns, id)",
        "CREATE TABLE marks (symbol TEXT PRIMARY KEY, price INTEGER NOT NULL, ts_ns INTEGER NOT NULL)",
        # projections
        """CREATE TABLE sessions (trading_day TEXT PRIMARY KEY, started_ns INTEGER NOT NULL, mode TEXT NOT NULL,
            symbols TEXT NOT NULL, balance_cents INTEGER NOT NULL)""",
        """CREATE TABLE signals (signal_id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
            side INTEGER NOT NULL, pattern TEXT NOT NULL, confidence REAL NOT NULL, regime TEXT NOT NULL,
            reasons TEXT NOT NULL, entry_type TEXT NOT NULL, entry_price INTEGER, stop_price INTEGER NOT NULL,
            target_price INTEGER NOT NULL, quantity INTEGER NOT NULL, verdict TEXT NOT NULL, reason TEXT NOT NULL,
            traded_symbol TEXT NOT NULL, traded_qty INTEGER NOT NULL)""",
        "CREATE INDEX signals_ts ON signals (ts_ns)",
        """CREATE TABLE brackets (signal_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, side INTEGER NOT NULL,
            quantity INTEGER NOT NULL, entry_type TEXT NOT NULL, entry_price INTEGER, stop_price INTEGER NOT NULL,
            target_price INTEGER NOT NULL, tick_value_cents INTEGER NOT NULL, state TEXT NOT NULL,
            entry_filled INTEGER NOT NULL, exit_filled INTEGER NOT NULL, entry_value INTEGER NOT NULL,
            exit_value INTEGER NOT NULL, realized_cents INTEGER NOT NULL, commission_cents INTEGER NOT NULL,
            exit_reason TEXT NOT NULL, pattern TEXT NOT NULL, submitted_ns INTEGER NOT NULL, opened_ns INTEGER,
            closed_ns INTEGER, trading_day TEXT, exits INTEGER NOT NULL)""",
        "CREATE INDEX brackets_closed ON brackets (closed_ns)",
        """CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, signal_id TEXT NOT NULL, role TEXT NOT NULL,
            symbol TEXT NOT NULL, side INTEGER NOT NULL, order_type TEXT NOT NULL, quantity INTEGER NOT NULL,
            price INTEGER, state TEXT NOT NULL, filled_qty INTEGER NOT NULL, fill_value INTEGER NOT NULL,
            created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL, reason TEXT NOT NULL)""",
        """CREATE TABLE fills (fill_id TEXT PRIMARY KEY, client_order_id TEXT NOT NULL, signal_id TEXT NOT NULL,
            role TEXT NOT NULL, symbol TEXT NOT NULL, side INTEGER NOT NULL, quantity INTEGER NOT NULL,
            price INTEGER NOT NULL, ts_ns INTEGER NOT NULL, commission_cents INTEGER NOT NULL,
            realized_cents INTEGER NOT NULL, trading_day TEXT NOT NULL)""",
        """CREATE TABLE positions (symbol TEXT PRIMARY KEY, qty INTEGER NOT NULL, lots TEXT NOT NULL,
            realized_cents INTEGER NOT NULL, commission_cents INTEGER NOT NULL, updated_ns INTEGER NOT NULL)""",
        """CREATE TABLE daily_stats (trading_day TEXT PRIMARY KEY, realized_cents INTEGER NOT NULL,
            commission_cents INTEGER NOT NULL, net_cents INTEGER NOT NULL, trades INTEGER NOT NULL,
            wins INTEGER NOT NULL, losses INTEGER NOT NULL, gross_profit_cents INTEGER NOT NULL,
            gross_loss_cents INTEGER NOT NULL, peak_net_cents INTEGER NOT NULL,
            max_drawdown_cents INTEGER NOT NULL)""",
        """CREATE TABLE trading_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL,
            halt_kind TEXT NOT NULL, reason TEXT NOT NULL, since_ns INTEGER NOT NULL, trading_day TEXT,
            tier_number INTEGER, tier_name TEXT, tier_symbol TEXT, tier_max INTEGER,
            balance_cents INTEGER NOT NULL, auto_flatten_day TEXT, anomalies INTEGER NOT NULL)""",
        """CREATE TABLE margin_checks (trading_day TEXT NOT NULL, symbol TEXT NOT NULL,
            margin_cents INTEGER NOT NULL, limit_cents INTEGER, ok INTEGER NOT NULL, source TEXT NOT NULL,
            PRIMARY KEY (trading_day, symbol))""",
        """CREATE TABLE decisions (id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL,
            symbol TEXT NOT NULL, reason TEXT NOT NULL, decision TEXT NOT NULL)""",
        "CREATE INDEX decisions_ts ON decisions (ts_ns)",
    ],
    [
        # Router decisions that did not trade: why the bot did *not* act. Not derived from the journal (they
        # change no execution state), so they are kept across journal rebuilds.
        """CREATE TABLE router_decisions (signal_id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
            pattern TEXT NOT NULL, direction TEXT NOT NULL, regime TEXT NOT NULL, confidence REAL NOT NULL,
            verdict TEXT NOT NULL, codes TEXT NOT NULL, reasons TEXT NOT NULL)""",
        "CREATE INDEX router_decisions_ts ON router_decisions (ts_ns)",
    ],
    [
        # Delivery attempts whose outcome is unknown (sent, no answer): a later success may be a duplicate.
        "ALTER TABLE outbox ADD COLUMN ambiguous INTEGER NOT NULL DEFAULT 0",
        # Calendar jobs per trading day: 'done' or 'missed' (a day that was over when the daemon got to it).
        # One row per job and day, so a restart never re-runs a past day's job nor reports it missed twice.
        """CREATE TABLE job_runs (name TEXT NOT NULL, trading_day TEXT NOT NULL, status TEXT NOT NULL,
            ts_ns INTEGER NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (name, trading_day))""",
        # Digests queued before this table existed: their day is known only from the title they were written
        # with (a frozen record, read once here), so a restart never sends them again. Later digests are keys.
        """INSERT OR IGNORE INTO job_runs (name, trading_day, status, ts_ns, detail)
            SELECT 'daily_digest', substr(json_extract(payload, '$.title'), 14, 10), 'done', MIN(created_ns),
                   'queued before job_runs existed' FROM outbox
            WHERE kind = 'daily_digest' AND json_extract(payload, '$.title') GLOB
                  'Daily digest [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
            GROUP BY substr(json_extract(payload, '$.title'), 14, 10)""",
    ],
    [
        # 4: the shadow model (live mode): per order leg, the live broker's timings and fills beside the paper
        # model's fill of the same order on the same market data. A measurement, not execution state.
        """CREATE TABLE shadow_legs (client_order_id TEXT PRIMARY KEY, signal_id TEXT NOT NULL, role TEXT NOT NULL,
            symbol TEXT NOT NULL, side INTEGER NOT NULL, trading_day TEXT NOT NULL, signal_ns INTEGER NOT NULL,
            submit_ns INTEGER NOT NULL, ack_ns INTEGER, fill_ns INTEGER, live_qty INTEGER NOT NULL,
            live_value INTEGER NOT NULL, live_commission_cents INTEGER NOT NULL, model_qty INTEGER NOT NULL,
            model_value INTEGER NOT NULL, model_commission_cents INTEGER NOT NULL, model_fill_ns INTEGER,
            tick_value_cents INTEGER NOT NULL)""",
        "CREATE INDEX shadow_legs_day ON shadow_legs (trading_day)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
RECORD_TABLES = ("router_decisions", "job_runs", "shadow_legs")
"""Written directly (not projections of the journal) and therefore never wiped by a rebuild."""
PROJECTION_TABLES = ("sessions", "signals", "brackets", "orders", "fills", "positions", "daily_stats",
                     "trading_state", "margin_checks", "decisions")


class StateError(Exception):
    """The state database cannot be used as it is; the file was left untouched."""


class StateCorruptError(StateError):
    pass


class StateVersionError(StateError):
    pass


class StateLockedError(StateError):
    """Another process already writes this database."""


class DiskFullError(StateError):
    """The file system holding the database is full: nothing was written."""


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL or an OS ENOSPC/EDQUOT, however it surfaced."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)
    return False


def private_file(path: Path) -> None:
    """0600 whatever the umask (SQLite creates -wal/-shm with the main file's mode)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) != 0o600:
            path.chmod(0o600)


def private_dir(path: Path, tighten_existing: bool = True) -> None:
    """Create ``path`` (and missing parents) 0700 whatever the umask.

    An existing folder is tightened to 0700 only when ``tighten_existing``, this user owns it and it is not a
    shared sticky folder (``/tmp``): the data directory is the service's own, a database path's parent may not be.
    """
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for made in missing:
        made.chmod(0o700)
    if missing or not tighten_existing:
        return
    st = path.stat()
    if st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX and stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)


class CrashPoint(Exception):  # noqa: N818 - it is a simulated event, not an error condition
    """Raised by a test fault hook to simulate the process dying before a commit."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int
    ts_ns: int
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    created_ns: int
    kind: str
    severity: str
    payload: dict[str, Any]
    attempts: int
    last_error: str | None


Rows = Mapping[str, Sequence[Mapping[str, Any]]]


def default_db_path(data_dir: Path, mode: str) -> Path:
    return data_dir / f"tradebot-{mode}.db"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class Transaction:
    """One atomic unit: a journal record, the projection rows it changes, and its notifications."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._conn = store.conn

    def journal(self, kind: str, ts_ns: int, payload: Mapping[str, Any]) -> JournalRecord:
        text = _dumps(payload)
        cur = self._conn.execute("INSERT INTO journal (ts_ns, kind, payload) VALUES (?, ?, ?)", (ts_ns, kind, text))
        seq = cur.lastrowid
        assert seq is not None
        return JournalRecord(seq, ts_ns, kind, json.loads(text))

    def upsert(self, rows: Rows) -> None:
        for table, items in rows.items():
            for row in items:
                self._conn.execute(self._store.upsert_sql(table, tuple(row)), tuple(row.values()))

    def outbox(self, created_ns: int, kind: str, severity: str, payload: Mapping[str, Any],
               journal_seq: int | None = None) -> None:
        self._conn.execute(
            "INSERT INTO outbox (created_ns, kind, severity, payload, journal_seq) VALUES (?, ?, ?, ?, ?)",
            (created_ns, kind, severity, _dumps(payload), journal_seq))


class StateStore:
    """Open with :meth:`open`; all writes go through :meth:`transaction`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool, mode: str,
                 lock_fd: int | None = None) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self.mode = mode
        self._lock_fd = lock_fd
        self.fault_hook: Callable[[], None] | None = None
        """Tests only: called just before every COMMIT (raise :class:`CrashPoint` to simulate a crash)."""
        self._upsert_sql: dict[tuple[str, tuple[str, ...]], str] = {}

    # -- opening ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, mode: str = "paper", readonly: bool = False, create: bool = True,
             synchronous: str = "FULL") -> StateStore:
        """Open (validating first) or create the database. Raises :class:`StateError` and leaves a bad file as is."""
        p = Path(path)
        if not p.exists():
            if readonly or not create:
                raise StateError(f"{p}: no state database (has the daemon ever run in {mode} mode?)")
            try:
                _create(p, mode)
            except FileExistsError:
                raise  # something appeared at the path meanwhile: it is not ours to judge or replace
            except (sqlite3.Error, OSError) as exc:
                if is_disk_full(exc):
                    raise DiskFullError(f"{p}: disk full while creating the state database; nothing was "
                                        "created (free space and start again)") from None
                raise StateError(f"{p}: cannot create the state database: {exc}") from None
        version = _validate(p, mode)
        if readonly:
            conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA query_only=1")
            return cls(conn, p, True, mode)
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        lock_fd = _lock(p)  # before any writable connection: closing it later never drops SQLite's locks
        try:
            conn = sqlite3.connect(str(p), timeout=10.0, isolation_level=None)
        except sqlite3.Error as exc:
            _unlock(p, lock_fd)
            raise StateError(f"{p}: cannot open: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            if version < SCHEMA_VERSION:
                _migrate(conn, version)
        except BaseException as exc:
            conn.close()
            _unlock(p, lock_fd)
            if isinstance(exc, sqlite3.Error | OSError) and is_disk_full(exc):
                raise DiskFullError(f"{p}: disk full; the database was not changed (free space and start "
                                    "again)") from None
            if isinstance(exc, sqlite3.Error):
                raise StateError(f"{p}: cannot open for writing: {exc}") from None
            raise
        for side in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")):
            private_file(side)
        return cls(conn, p, False, mode, lock_fd)

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            _unlock(self.path, self._lock_fd)
            self._lock_fd = None

    # -- writing ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        if self.readonly:
            raise StateError(f"{self.path}: opened read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield Transaction(self)
            if self.fault_hook is not None:
                self.fault_hook()
        except CrashPoint:
            # A simulated crash: no COMMIT. Closing is what the OS does to a dead process's file locks; the
            # uncommitted work is discarded exactly as after a kill -9.
            self.conn.close()
            if self._lock_fd is not None:
                _unlock(self.path, self._lock_fd)
                self._lock_fd = None
            raise
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def upsert_sql(self, table: str, cols: tuple[str, ...]) -> str:
        key = (table, cols)
        sql = self._upsert_sql.get(key)
        if sql is None:
            if table not in PROJECTION_TABLES and table not in RECORD_TABLES:
                raise ValueError(f"not a projection or record table: {table}")
            sql = (f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) "
                   f"VALUES ({', '.join('?' for _ in cols)})")
            self._upsert_sql[key] = sql
        return sql

    def replace_projections(self, rows: Rows) -> None:
        """Rewrite every projection table from ``rows`` (a journal replay) in one transaction."""
        with self.transaction() as tx:
            for table in PROJECTION_TABLES:
                self.conn.execute(f"DELETE FROM {table}")
            tx.upsert(rows)

    def set_marks(self, marks: Mapping[str, int], ts_ns: int) -> None:
        """Last prices for ``tradebot status`` (not journaled: market data, not an execution event)."""
        if self.readonly or not marks:
            return
        with self.transaction():
            self.conn.executemany("INSERT OR REPLACE INTO marks (symbol, price, ts_ns) VALUES (?, ?, ?)",
                                  [(sym, px, ts_ns) for sym, px in marks.items()])

    def upsert_shadow_leg(self, row: Mapping[str, Any]) -> None:
        """One shadow-model leg (live timings and fills beside the model's), replacing the previous version."""
        if self.readonly:
            return
        with self.transaction():
            self.conn.execute(self.upsert_sql("shadow_legs", tuple(row)), tuple(row.values()))

    def shadow_legs(self, trading_day: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM shadow_legs WHERE trading_day = ? ORDER BY signal_ns, client_order_id",
                          (trading_day,))

    # -- reading ------------------------------------------------------------------------------------

    def journal(self, after_seq: int = 0) -> Iterator[JournalRecord]:
        cur = self.conn.execute("SELECT seq, ts_ns, kind, payload FROM journal WHERE seq > ? ORDER BY seq",
                                (after_seq,))
        for seq, ts, kind, payload in cur:
            yield JournalRecord(seq, ts, kind, json.loads(payload))

    def journal_kinds(self) -> set[str]:
        """Every kind the journal holds (a start checks them before replaying anything)."""
        return {str(k) for (k,) in self.conn.execute("SELECT DISTINCT kind FROM journal")}

    def journal_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    def fill_seen(self, fill_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM fills WHERE fill_id = ?", (fill_id,)).fetchone() is not None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def dump_projections(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every projection table, rows sorted: what a rebuild from the journal must reproduce."""
        return {t: sorted(self.conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in PROJECTION_TABLES}

    def schema_version(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    # -- outbox -------------------------------------------------------------------------------------

    def pending_notifications(self, limit: int = 100, max_attempts: int = 20) -> list[OutboxItem]:
        cur = self.conn.execute(
            "SELECT id, created_ns, kind, severity, payload, attempts, last_error FROM outbox "
            "WHERE delivered_ns IS NULL AND attempts < ? ORDER BY id LIMIT ?", (max_attempts, limit))
        return [OutboxItem(i, c, k, s, json.loads(p), a, e) for i, c, k, s, p, a, e in cur.fetchall()]

    def mark_delivered(self, item_id: int, ts_ns: int) -> None:
        self.conn.execute("UPDATE outbox SET delivered_ns = ?, attempts = attempts + 1 WHERE id = ?", (ts_ns, item_id))

    def mark_failed(self, item_id: int, error: str) -> None:
        self.conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                          (error[:500], item_id))

    def mark_ambiguous(self, item_id: int) -> None:
        self.conn.execute("UPDATE outbox SET ambiguous = ambiguous + 1 WHERE id = ?", (item_id,))

    # -- calendar jobs ------------------------------------------------------------------------------

    def job_status(self, name: str, trading_day: str) -> str | None:
        row = self.conn.execute("SELECT status FROM job_runs WHERE name = ? AND trading_day = ?",
                                (name, trading_day)).fetchone()
        return str(row[0]) if row else None

    def record_job(self, name: str, trading_day: str, status: str, ts_ns: int, detail: str = "") -> bool:
        """Record a job's outcome for a day once; False when that day already has one (never overwritten)."""
        if self.readonly:
            return False
        with self.transaction():
            cur = self.conn.execute("INSERT OR IGNORE INTO job_runs (name, trading_day, status, ts_ns, detail) "
                                    "VALUES (?, ?, ?, ?, ?)", (name, trading_day, status, ts_ns, detail))
        return cur.rowcount == 1


# Open lock descriptors per database file in this process: (device, inode) -> (fd, users). A second writable
# StateStore in the *same* process (tests reopening after a simulated crash) shares the lock; another process
# is refused. The descriptor is closed only when the last user closes, after its SQLite connection.
_LOCKS: dict[tuple[int, int], tuple[int, int]] = {}


def _lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise StateError(f"{path}: cannot open for writing: {exc.strerror}") from None
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    held = _LOCKS.get(key)
    if held is not None:
        # Never close a second descriptor of a file SQLite has open here: that would drop SQLite's POSIX
        # locks. Keep it with the shared entry and close it with the last user.
        _LOCKS[key] = (held[0], held[1] + 1)
        _EXTRA_FDS.setdefault(key, []).append(fd)
        return held[0]
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StateLockedError(f"{path}: another tradebot process is writing this database (one writer per "
                                   "database: stop the other daemon, or give this one its own DB_PATH)") from None
        raise StateError(f"{path}: cannot lock: {exc.strerror}") from None
    _LOCKS[key] = (fd, 1)
    return fd


_EXTRA_FDS: dict[tuple[int, int], list[int]] = {}


def _unlock(path: Path, fd: int) -> None:
    for key, (held, users) in list(_LOCKS.items()):
        if held != fd:
            continue
        if users > 1:
            _LOCKS[key] = (held, users - 1)
            return
        del _LOCKS[key]
        for extra in _EXTRA_FDS.pop(key, []):
            with contextlib.suppress(OSError):
                os.close(extra)
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases the flock
        return


def _create(path: Path, mode: str) -> None:
    """Build a fresh database under a temporary name and link it into place (atomic, never over a file).

    The temporary file uses a rollback journal, not WAL: a committed WAL transaction can sit in the ``-wal``
    file until a checkpoint that a full disk refuses, and linking the main file alone would then publish an
    empty, malformed database. With a rollback journal the COMMIT either lands in the file or fails; the file
    is then synced and validated before the link, so the path holds a complete database or nothing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.init-{os.getpid()}")
    for leftover in path.parent.glob(f".{path.name}.init-*"):  # a creation killed half-way: never the real file
        leftover.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.chmod(tmp, 0o600)
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            for sql in MIGRATIONS[0]:
                conn.execute(sql)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [("app", APP_ID), ("mode", mode), ("schema_version", "1")])
            for i, steps in enumerate(MIGRATIONS[1:], start=2):
                for sql in steps:
                    conn.execute(sql)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(i),))
            conn.execute("COMMIT")
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _validate(tmp, mode)  # complete and readable on its own, or it is never published
        os.link(tmp, path)  # fails if something appeared at ``path`` meanwhile: never replace a file
        _fsync_dir(path.parent)
    finally:
        for side in (tmp, tmp.with_name(tmp.name + "-journal"), tmp.with_name(tmp.name + "-wal"),
                     tmp.with_name(tmp.name + "-shm")):
            side.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _validate(path: Path, mode: str) -> int:
    """Schema version of a readable tradebot database of this mode; raises and writes nothing otherwise."""
    if not path.is_file():
        raise StateError(f"{path}: not a regular file")
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc}") from None
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise StateCorruptError(f"{path}: not a tradebot state database (empty, truncated or a foreign file); "
                                "left untouched, move it away to start fresh")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateCorruptError(f"{path}: cannot open: {exc}") from None
    try:
        conn.execute("PRAGMA query_only=1")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            raise StateCorruptError(f"{path}: integrity check failed ({check[0] if check else 'no answer'}); "
                                    "left untouched")
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if has_meta else {}
    except sqlite3.DatabaseError as exc:
        raise StateCorruptError(f"{path}: corrupt or not a database ({exc}); left untouched") from None
    finally:
        conn.close()
    if meta.get("app") != APP_ID:
        raise StateCorruptError(f"{path}: an SQLite file that is not a tradebot state database; left untouched")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise StateCorruptError(f"{path}: schema_version missing or not a number; left untouched") from None
    if version > SCHEMA_VERSION:
        raise StateVersionError(f"{path}: schema version {version} is newer than this tradebot understands "
                                f"({SCHEMA_VERSION}); upgrade tradebot, the file was left untouched")
    if meta.get("mode") != mode:
        raise StateError(f"{path}: holds {meta.get('mode')!r} state, not {mode!r}; refusing to mix them")
    return version


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for i in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in MIGRATIONS[i]:
                conn.execute(sql)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(i + 1),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
