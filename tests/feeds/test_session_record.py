"""A live session's market data recorded to the catalog replays to the same decisions.

The daemon's recorder is fed, in its real place in the daemon's loop, every record the validation layer accepted
(here from a day file standing in for the live socket: the socket feeds are tested on their own); the recorded
catalog file is then replayed through a second daemon, and both journals must hold the same signals, verdicts and
fills.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.core.config import Settings
from tradebot.daemon import Daemon
from tradebot.feeds.catalog import Catalog
from tradebot.feeds.session_record import SCHEMA, SessionRecorder, dataset_for, live_recorder


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "5", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=env | {"TRADEBOT_DATA_DIR": str(out / "d")})
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


def cfg(data: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data, trading_symbol="ES",  # type: ignore[call-arg]
                    footprint={"bar_seconds": 60}, daemon={"heartbeat_seconds": 0.5})


def run(data: Path, inputs: list[Path], recorder: SessionRecorder | None) -> Daemon:
    d = Daemon(cfg(data), ["ES"], "dbn", inputs=[str(p) for p in inputs], speed=0.0)
    d.recorder = recorder
    assert asyncio.run(asyncio.wait_for(d.run(), 300)) == 0
    return d


def decisions(db: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    con = sqlite3.connect(db)
    try:
        sig = con.execute("SELECT signal_id, side, verdict, reason, traded_symbol, traded_qty, stop_price, "
                          "target_price FROM signals ORDER BY ts_ns, signal_id").fetchall()
        fills = con.execute("SELECT signal_id, role, side, quantity, price, ts_ns FROM fills "
                            "ORDER BY ts_ns, fill_id").fetchall()
    finally:
        con.close()
    return sig, fills


def test_a_recorded_session_replays_to_the_same_decisions(tmp_path: Path, day_file: Path) -> None:
    catalog = Catalog(tmp_path / "catalog")
    rec = SessionRecorder(catalog, "projectx")
    live = run(tmp_path / "live", [day_file], rec)
    assert rec.stats["errors"] == 0
    (written,) = rec.written
    path = Path(written["path"])
    assert path == catalog.path(dataset_for("projectx"), SCHEMA, "ES", dt.date(2025, 3, 11))
    assert written["trades"] > 10_000 and written["books"] > 0
    assert written["trades"] + written["books"] == live.stats["events"]  # every accepted record, nothing else
    replay = run(tmp_path / "replay", [path], None)
    live_sig, live_fills = decisions(tmp_path / "live" / "tradebot-paper.db")
    rep_sig, rep_fills = decisions(tmp_path / "replay" / "tradebot-paper.db")
    assert live_sig and live_fills, "the day must trade for the comparison to mean something"
    assert rep_sig == live_sig
    assert rep_fills == live_fills
    # The replay sees each trade's book again just before it (unchanged): more events, the same decisions.
    assert replay.stats["events"] >= live.stats["events"]


def test_a_restart_the_same_day_keeps_the_earlier_part(tmp_path: Path, day_file: Path) -> None:
    from tradebot.feeds.files import open_file_feed
    from tradebot.feeds.validation import Validator

    settings = cfg(tmp_path)
    catalog = Catalog(tmp_path / "catalog")
    events: list[object] = []

    async def load() -> None:
        feed = open_file_feed([day_file], speed=0.0, symbol="ES")
        v = Validator(settings.validation, ["ES"])
        v.declare_spans_of(feed)
        async for ev in feed:
            if v.validate(ev) is not None and type(ev).__name__ in ("RawTrade", "RawBook"):
                events.append(ev)
            if len(events) >= 3000:
                break
        await feed.close()

    asyncio.run(load())
    first = SessionRecorder(catalog, "rithmic", checkpoint_seconds=1e9)
    second = SessionRecorder(catalog, "rithmic", checkpoint_seconds=1e9)
    for ev in events[:1000]:
        first.add(ev)  # type: ignore[arg-type]
    first.close()
    for ev in events[1000:]:
        second.add(ev)  # type: ignore[arg-type]
    (w,) = second.close()
    assert w["trades"] + w["books"] == 3000 and w["sessions"] == 2
    assert live_recorder(settings, "projectx") is not None and live_recorder(settings, "dbn") is None
    off = settings.model_copy(update={"daemon": settings.daemon.model_copy(update={"record_live": False})})
    assert live_recorder(off, "rithmic") is None


def test_a_checkpoint_bounds_what_a_kill_loses(tmp_path: Path, day_file: Path) -> None:
    """Checkpoints commit the day so far: a recorder that is never closed (the process killed) still leaves a
    committed file holding everything up to its last checkpoint."""
    from tradebot.feeds.files import open_file_feed
    from tradebot.feeds.validation import Validator

    settings = cfg(tmp_path)
    events: list[object] = []

    async def load() -> None:
        feed = open_file_feed([day_file], speed=0.0, symbol="ES")
        v = Validator(settings.validation, ["ES"])
        v.declare_spans_of(feed)
        async for ev in feed:
            if v.validate(ev) is not None and type(ev).__name__ in ("RawTrade", "RawBook"):
                events.append(ev)
        await feed.close()

    asyncio.run(load())
    first_ts = events[0].ts_event  # type: ignore[attr-defined]
    catalog = Catalog(tmp_path / "catalog")
    rec = SessionRecorder(catalog, "projectx", checkpoint_seconds=600)
    for ev in events:
        rec.add(ev)  # type: ignore[arg-type]
    rec._pool.shutdown(wait=True)  # the process "dies" here: no close(), the open part is never committed
    assert rec.stats["checkpoints"] >= 2 and rec.stats["errors"] == 0
    (w,) = rec.written
    after_last = [e for e in events if e.ts_event > first_ts]  # type: ignore[attr-defined]
    assert 0 < w["trades"] + w["books"] < len(events) and len(after_last) > 0
    # Everything up to the last checkpoint is in the committed file, in order, readable by the replay path.
    from tradebot.feeds.dbn_files import open_store

    store = open_store(Path(w["path"]))
    n = sum(1 for _ in store)
    assert n == w["trades"] + w["books"]
