"""Issue 12 through the real daemon process: one writer per database, private files whatever the umask, fail
closed on every exception, a full disk (a real small tmpfs), atomic database creation, and one alert per event.

The daemon runs as a subprocess (``tests/support/faulty_tradebot.py`` is ``python -m tradebot`` with fault
switches) against the Discord stand-in; the operator's commands run as CLI subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.discord_server import DiscordStandIn
from support.polling import poll_until
from tradebot.ops.heartbeat import HEARTBEAT_FILE, read_heartbeat

WRAPPER = str(Path(__file__).parent.parent / "support" / "faulty_tradebot.py")
# What Discord shows for each outbox row: a collapse summary carries "(xN)" after its title.
OUTBOX_TITLES = ("SELECT json_extract(payload, '$.title') || CASE WHEN json_extract(payload, '$.repeats') > 0 "
                 "THEN ' (x' || json_extract(payload, '$.repeats') || ')' ELSE '' END FROM outbox ORDER BY id")
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")


def env_for(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_DATA_DIR": str(data), "TRADEBOT_SIM__TRADES_PER_SESSION": "4000",
                "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.3", "TRADEBOT_LOG_FORMAT": "json",
                "TRADEBOT_DAEMON__SHUTDOWN_FLUSH_SECONDS": "5", **extra})
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")])
    return env


async def start(env: dict[str, str], cwd: Path, *args: str, umask: int | None = None) -> asyncio.subprocess.Process:
    """The daemon with its output (JSON log lines on stdout, messages on stderr) in one file, read by
    :func:`output`: a pipe nobody drains would stall a chatty daemon."""
    def pre() -> None:
        if umask is not None:
            os.umask(umask)

    log = _new_log(cwd)
    with log.open("wb") as fh:
        proc = await asyncio.create_subprocess_exec(sys.executable, WRAPPER, "run", *args, cwd=cwd, env=env,
                                                    stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pre)
    _LOGS[proc.pid] = log
    return proc


_LOGS: dict[int, Path] = {}


def _new_log(cwd: Path) -> Path:
    return cwd / f"daemon-{len(list(cwd.glob('daemon-*.log')))}.log"


def output(proc: asyncio.subprocess.Process) -> str:
    return _LOGS[proc.pid].read_text(errors="replace")


async def cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "tradebot", *args, cwd=cwd, env=env,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


def heartbeat(data: Path) -> dict[str, Any] | None:
    return read_heartbeat(data / HEARTBEAT_FILE)


async def wait_for(cond: Any, within: float = 90.0) -> Any:
    return await poll_until(cond, within)


async def stop(proc: asyncio.subprocess.Process, signalled: bool = True) -> tuple[int, str]:
    """SIGTERM (or, with ``signalled=False``, wait for the daemon to exit by itself)."""
    if proc.returncode is None and signalled:
        proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(proc.wait(), 60)
    return rc, output(proc)


def private_modes(root: Path, dirs: list[Path]) -> dict[str, int]:
    """Mode of every folder and file under ``dirs`` (sockets aside; a heartbeat temp file may vanish meanwhile)."""
    out: dict[str, int] = {}
    for p in [*dirs, *(q for d in dirs for q in d.rglob("*"))]:
        with contextlib.suppress(FileNotFoundError):
            if not p.is_socket():
                out[str(p.relative_to(root))] = stat.S_IMODE(p.stat().st_mode)
    return out


def db_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
async def discord() -> AsyncIterator[DiscordStandIn]:
    s = DiscordStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path | None]:
    """A 24 MiB tmpfs (the tests run as root); ``None`` where mounting is not allowed (ENOSPC is injected)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system until ENOSPC (or until ``leave`` bytes are free)."""
    filler = directory / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb") as fh:
        try:
            while True:
                free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
                if free <= leave:
                    break
                fh.write(chunk if free - leave >= len(chunk) else chunk[: max(4096, free - leave)])
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


# --- fail closed, every time -----------------------------------------------------------------------


async def test_fail_closed_on_every_exception_one_writer_per_database_and_private_files(
        tmp_path: Path, discord: DiscordStandIn) -> None:
    data = tmp_path / "data"
    db = tmp_path / "shared" / "state.db"
    flag = tmp_path / "fault"
    env = env_for(data, DISCORD_WEBHOOK_URL=discord.url, TRADEBOT_TEST_FAULT_FILE=str(flag),
                  TRADEBOT_SIM__TRADES_PER_SESSION="60000", TRADEBOT_EXECUTION__DB_PATH=str(db))
    proc = await start(env, tmp_path, "--speed", "2000", "--timeframe", "60", "--stay", umask=0o022)
    try:
        await wait_for(lambda: (h := heartbeat(data)) and h["events"] > 2000 and h["trading_state"] == "active")

        # One writer per database: another daemon with its own data dir but the same DB_PATH is refused.
        other = await start(env_for(tmp_path / "other", TRADEBOT_EXECUTION__DB_PATH=str(db)), tmp_path,
                            "--speed", "0")
        rc, err = await stop(other, signalled=False)
        assert rc == 4, err[-2000:]
        assert "another tradebot process is writing this database" in err and "Traceback" not in err

        # Whatever the umask (022 here), everything the daemon wrote is private: files 0600, folders 0700.
        modes = private_modes(tmp_path, [data, db.parent])
        assert "shared/state.db-wal" in modes and "data/heartbeat.json" in modes
        wrong = {k: oct(m) for k, m in modes.items() if m != (0o700 if (tmp_path / k).is_dir() else 0o600)}
        assert not wrong, wrong

        # Fail closed every time: each exception halts (not only the first), and the operator resumes each.
        for round_ in (1, 2):
            flag.touch()
            # (a heartbeat from before the resume may still say halted: wait for this round's halt)
            await wait_for(lambda r=round_: (h := heartbeat(data)) and h["trading_state"] == "halted"
                           and h["halts_on_error"] == r)
            flag.unlink()
            code, out, err = await cli(env, tmp_path, "resume", "--reason", f"fixed {round_}", "--json")
            assert code == 0 and json.loads(out)["state"] == "active", err
    finally:
        rc, err = await stop(proc)
    assert rc == 0, err[-2000:]
    last = heartbeat(data)  # the last heartbeat, written at shutdown
    assert last is not None
    errors = last["errors"]
    assert errors >= 2 and last["halts_on_error"] == 2
    notifier = last["notifier"]
    titles = discord.titles()
    # Each halt is its own message; the repeated exceptions of one component collapse into a counted summary.
    assert titles.count("Trading halted") == 2, titles
    assert titles.count("Trading resumed") == 2
    component = [t for t in titles if t.startswith("Trading halted: trading core error")]
    assert component[0] == "Trading halted: trading core error"
    # Heartbeat: every repeat not sent on its own was counted as collapsed.
    assert notifier["collapsed"] == errors - component.count("Trading halted: trading core error")
    assert notifier["possible_duplicates"] == 0
    # "(xN)" counts every occurrence in its window, the first (sent at once) included.
    assert sum(int(t.rsplit("(x", 1)[1].rstrip(")")) - 1 if "(x" in t else 1 for t in component) == errors
    # Every durable alert went out once, in outbox order (the component errors were counted, never queued).
    outbox = [r[0] for r in db_rows(db, OUTBOX_TITLES)]
    assert [t for t in titles if t in set(outbox)] == outbox


async def test_a_halt_that_cannot_be_recorded_stops_the_daemon(tmp_path: Path, discord: DiscordStandIn) -> None:
    """Fail closed: an error halt the journal refuses cannot be trusted to hold, so the process stops (exit 1,
    systemd restarts it and recovery starts from the journal) with an alert, instead of trading on."""
    data = tmp_path / "data"
    flag = tmp_path / "fault"
    flag.touch()
    env = env_for(data, DISCORD_WEBHOOK_URL=discord.url, TRADEBOT_TEST_FAULT_FILE=str(flag),
                  TRADEBOT_TEST_HALT_FAILS="1")
    proc = await start(env, tmp_path, "--speed", "0", "--stay")
    rc, err = await stop(proc, signalled=False)
    assert rc == 1, err[-2000:]
    assert "could not record the halt" in err
    assert "Trading stopped: the halt could not be recorded" in discord.titles()


# --- calendar jobs across restarts ---------------------------------------------------------------


async def test_restarts_never_refire_a_past_days_auto_flatten_or_digest(tmp_path: Path,
                                                                        discord: DiscordStandIn) -> None:
    """Two trading days, then a restart over the same data: each day keeps one auto-flatten (journal row and alert)
    and one digest; nothing is reported missed (every job ran on its day). Before the fix the restart re-fired the
    first day's auto-flatten (its day was not the latest one the ledger remembered)."""
    data = tmp_path / "data"
    env = env_for(data, DISCORD_WEBHOOK_URL=discord.url, TRADEBOT_SIM__TRADES_PER_SESSION="1500")
    db = data / "tradebot-paper.db"
    counts = []
    for _ in range(2):
        proc = await start(env, tmp_path, "--speed", "0", "--sessions", "2")
        rc, err = await stop(proc, signalled=False)
        assert rc == 0, err[-2000:]
        days = [r[0] for r in db_rows(db, "SELECT json_extract(payload, '$.day') FROM journal "
                                          "WHERE kind = 'auto_flatten' ORDER BY seq")]
        titles = discord.titles()
        counts.append((days, sum(t.startswith("Auto-flatten") for t in titles),
                       sum(t.startswith("Daily digest") for t in titles)))
    assert counts[0] == (["2025-03-10", "2025-03-11"], 2, 2)
    assert counts[1] == counts[0]
    assert not [t for t in discord.titles() if t.startswith("Missed")]
    assert db_rows(db, "SELECT COUNT(*) FROM job_runs WHERE status = 'missed'") == [(0,)]


# --- disk full ---------------------------------------------------------------------------------------


async def test_a_full_disk_stops_with_one_alert_and_the_daemon_resumes_when_space_returns(
        tmp_path: Path, discord: DiscordStandIn, small_fs: Path | None) -> None:
    base = small_fs or tmp_path
    data = base / "data"
    enospc = tmp_path / "enospc"
    env = env_for(data, DISCORD_WEBHOOK_URL=discord.url, TRADEBOT_SIM__TRADES_PER_SESSION="60000",
                  **({} if small_fs else {"TRADEBOT_TEST_ENOSPC_FILE": str(enospc)}))
    proc = await start(env, tmp_path, "--speed", "3000", "--timeframe", "60", "--stay")
    try:
        await wait_for(lambda: (h := heartbeat(data)) and h["events"] > 3000)
        filler = fill(base) if small_fs else enospc
        if not small_fs:
            enospc.touch()
        rc = await asyncio.wait_for(proc.wait(), 30)  # never a daemon that does not exit
    finally:
        if proc.returncode is None:
            proc.kill()
    err = output(proc)
    assert rc == 75, err[-2000:]
    assert "DISK FULL" in err and "Traceback" not in err
    disk_alerts = [t for t in discord.titles() if t.startswith("Disk full")]
    assert disk_alerts == ["Disk full: trading stopped"]

    db = data / "tradebot-paper.db"
    before = db_rows(db, "SELECT COUNT(*), MAX(seq) FROM journal")[0]
    # Still full: a restart is refused with the same code and no second alert.
    if small_fs:
        proc = await start(env, tmp_path, "--speed", "3000", "--stay")
        rc, err = await stop(proc, signalled=False)
        assert rc == 75 and "disk full" in err, err[-2000:]
    filler.unlink()
    sent = len(discord.received)

    proc = await start(env, tmp_path, "--speed", "3000", "--timeframe", "60", "--stay")
    try:
        await wait_for(lambda: (h := heartbeat(data)) and h["pid"] == proc.pid and h["events"] > 100)
    finally:
        rc, err = await stop(proc)
    assert rc == 0, err[-2000:]
    assert db_rows(db, "PRAGMA quick_check") == [("ok",)]
    count, last = db_rows(db, "SELECT COUNT(*), MAX(seq) FROM journal")[0]
    assert count >= before[0] and last >= before[1] and count == last  # nothing lost, no gap
    assert [t for t in discord.titles()[sent:] if t.startswith("Disk full")] == []
    assert "tradebot started" in discord.titles()[sent:]
    # Alerts written before the disk filled are delivered after the restart: nothing is left behind.
    assert db_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered_ns IS NULL") == [(0,)]


async def test_first_start_on_a_full_disk_leaves_no_database_and_a_later_start_works(
        tmp_path: Path, small_fs: Path | None) -> None:
    if small_fs is None:
        pytest.skip("needs a tmpfs mount (root); the store's atomic creation is covered in test_state_store")
    data = small_fs / "data"
    env = env_for(data, TRADEBOT_DAEMON__MIN_FREE_MB="0", TRADEBOT_SIM__TRADES_PER_SESSION="2000")
    filler = fill(small_fs, leave=48 * 1024)  # room for the folder and a few pages, not a whole schema
    proc = await start(env, tmp_path, "--speed", "0")
    rc, err = await stop(proc, signalled=False)
    assert rc == 75 and "disk full while creating the state database" in err, err[-2000:]
    assert sorted(p.name for p in data.iterdir()) == []  # complete or absent: no half database, no leftovers
    filler.unlink()
    proc = await start(env, tmp_path, "--speed", "0")
    rc, err = await stop(proc, signalled=False)
    assert rc == 0, err[-2000:]
    assert db_rows(data / "tradebot-paper.db", "PRAGMA quick_check") == [("ok",)]
