"""The SQLite state store: creation, durability settings, append-only journal, migrations, outbox, read-only
mode, and bad files on disk (each must raise a clear error and leave the file byte-for-byte untouched)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from support.exec_helpers import System, scenario, scenario_settings
from tradebot.state import store as store_mod
from tradebot.state.store import (
    SCHEMA_VERSION,
    StateCorruptError,
    StateError,
    StateStore,
    StateVersionError,
    default_db_path,
)


def populated(path: Path) -> None:
    """A real database with a few days of journal (the scripted scenario), cleanly closed."""
    s = System(path, scenario_settings(), synchronous="OFF")
    for _, _, action in scenario()[:12]:
        action(s.manager)
    s.close()


def assert_untouched(path: Path, exc: type[Exception], match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(exc, match=match):
        StateStore.open(path)
    with pytest.raises(exc, match=match):
        StateStore.open(path, readonly=True)
    assert path.read_bytes() == before


def test_new_database_pragmas_schema_and_no_leftovers(tmp_path: Path) -> None:
    path = default_db_path(tmp_path / "data", "paper")
    assert path.name == "tradebot-paper.db"
    st = StateStore.open(path)
    assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert st.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert st.schema_version() == SCHEMA_VERSION
    assert dict(st.conn.execute("SELECT key, value FROM meta").fetchall())["mode"] == "paper"
    st.close()
    assert sorted(p.name for p in path.parent.iterdir() if "init" in p.name) == []


def test_journal_is_append_only(tmp_path: Path) -> None:
    st = StateStore.open(tmp_path / "t.db")
    with st.transaction() as tx:
        rec = tx.journal("anomaly", 5, {"reason": "x", "n": 1})
    assert (rec.seq, rec.payload) == (1, {"n": 1, "reason": "x"})
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        st.conn.execute("UPDATE journal SET kind = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        st.conn.execute("DELETE FROM journal")
    assert [r.kind for r in st.journal()] == ["anomaly"]


def test_failed_transaction_rolls_back_everything(tmp_path: Path) -> None:
    st = StateStore.open(tmp_path / "t.db")
    with pytest.raises(RuntimeError), st.transaction() as tx:
        tx.journal("anomaly", 1, {})
        tx.upsert({"positions": [{"symbol": "ES", "qty": 1, "lots": "[]", "realized_cents": 0,
                                  "commission_cents": 0, "updated_ns": 1}]})
        tx.outbox(1, "x", "info", {"title": "t"})
        raise RuntimeError("boom")
    assert st.journal_count() == 0
    assert st.query("SELECT * FROM positions") == [] and st.pending_notifications() == []
    with pytest.raises(ValueError, match="projection"):
        st.upsert_sql("journal", ("seq",))


def test_truncated_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    populated(path)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    assert_untouched(path, StateCorruptError, "untouched")


def test_empty_file_is_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"")
    assert_untouched(path, StateCorruptError, "empty, truncated or a foreign file")
    assert path.stat().st_size == 0


def test_foreign_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(os.urandom(8192))
    assert_untouched(path, StateCorruptError, "foreign")


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('someone')")
    conn.commit()
    conn.close()
    assert_untouched(path, StateCorruptError, "not a tradebot state database")


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    populated(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    assert_untouched(path, StateVersionError, "newer")


def test_corrupted_page_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    populated(path)
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(2 * page, min(len(data), 4 * page)):  # scribble over interior b-tree pages
        data[i] = 0xA5
    path.write_bytes(bytes(data))
    assert_untouched(path, StateCorruptError, "untouched")


def test_paper_and_live_never_mix(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    StateStore.open(path).close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="refusing to mix"):
        StateStore.open(path, mode="live")
    assert path.read_bytes() == before


def test_readonly_mode_reads_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with pytest.raises(StateError, match="no state database"):
        StateStore.open(path, readonly=True)
    assert not path.exists()
    populated(path)
    before = path.read_bytes()
    ro = StateStore.open(path, readonly=True)
    assert ro.journal_count() > 10 and ro.query("SELECT COUNT(*) AS n FROM brackets")[0]["n"] >= 2
    with pytest.raises(StateError, match="read-only"), ro.transaction():
        pass
    with pytest.raises(sqlite3.OperationalError):
        ro.conn.execute("INSERT INTO marks VALUES ('ES', 1, 1)")
    ro.close()
    assert path.read_bytes() == before


def test_migrations_upgrade_an_older_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.db"
    populated(path)
    n_journal = StateStore.open(path, readonly=True).journal_count()
    v2 = [*store_mod.MIGRATIONS, ["ALTER TABLE brackets ADD COLUMN note TEXT NOT NULL DEFAULT ''"]]
    monkeypatch.setattr(store_mod, "MIGRATIONS", v2)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(v2))
    st = StateStore.open(path)
    assert st.schema_version() == len(v2) and st.journal_count() == n_journal
    assert "note" in {r["name"] for r in st.query("PRAGMA table_info(brackets)")}


def test_outbox_delivery_bookkeeping(tmp_path: Path) -> None:
    st = StateStore.open(tmp_path / "t.db")
    with st.transaction() as tx:
        tx.outbox(10, "trade_opened", "info", {"title": "a"})
        tx.outbox(11, "loss_limit_hit", "warning", {"title": "b"})
    first, second = st.pending_notifications()
    assert (first.kind, first.payload, first.attempts) == ("trade_opened", {"title": "a"}, 0)
    st.mark_delivered(first.id, 20)
    st.mark_failed(second.id, "HTTP 429")
    (again,) = st.pending_notifications()
    assert (again.id, again.attempts, again.last_error) == (second.id, 1, "HTTP 429")
    assert st.pending_notifications(max_attempts=1) == []
    row = st.query("SELECT delivered_ns, attempts FROM outbox WHERE id = ?", (first.id,))[0]
    assert row == {"delivered_ns": 20, "attempts": 1}


def test_creation_never_replaces_an_existing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new file is built aside and linked into place; if something appeared there meanwhile, we fail."""
    path = tmp_path / "t.db"
    real_link = os.link

    def racing_link(src: str, dst: str) -> None:
        Path(dst).write_bytes(b"someone else's")
        real_link(src, dst)

    monkeypatch.setattr(store_mod.os, "link", racing_link)
    with pytest.raises(FileExistsError):
        StateStore.open(path)
    assert path.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["t.db"]


def test_leftovers_of_a_killed_creation_are_cleared(tmp_path: Path) -> None:
    stale = tmp_path / ".t.db.init-99999"
    stale.write_bytes(b"half-written")
    StateStore.open(tmp_path / "t.db").close()
    assert not stale.exists() and (tmp_path / "t.db").exists()


def test_private_dir_creates_0700_and_never_tightens_a_shared_folder(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o1777)  # like /tmp
        store_mod.private_dir(shared)
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
        mine = tmp_path / "mine"
        mine.mkdir(mode=0o755)
        store_mod.private_dir(mine)
        assert stat.S_IMODE(mine.stat().st_mode) == 0o700
        store_mod.private_dir(mine / "a" / "b")
        assert {stat.S_IMODE((mine / p).stat().st_mode) for p in ("a", "a/b")} == {0o700}
        other = tmp_path / "other"
        other.mkdir(mode=0o755)
        store_mod.private_dir(other, tighten_existing=False)  # a database path's parent: left as it is
        assert stat.S_IMODE(other.stat().st_mode) == 0o755
        s = StateStore.open(mine / "t.db")
        s.close()
        assert stat.S_IMODE((mine / "t.db").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_full_disk_while_creating_leaves_no_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creation is complete or absent: the COMMIT that a full disk refuses publishes nothing (no mount needed;
    tests/ops/test_ops_faults.py does it for real on a small tmpfs)."""
    real_connect = sqlite3.connect

    class FullDisk:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: object) -> object:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

    def connect(path: str, *args: object, **kw: object) -> object:
        conn = real_connect(path, *args, **kw)  # type: ignore[arg-type]
        return FullDisk(conn) if ".init-" in str(path) else conn

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    with pytest.raises(store_mod.DiskFullError, match="nothing was created"):
        StateStore.open(tmp_path / "t.db")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(store_mod.sqlite3, "connect", real_connect)
    StateStore.open(tmp_path / "t.db").close()  # space is back: a normal start
    assert (tmp_path / "t.db").exists()
