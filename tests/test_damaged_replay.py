"""Damaged input through the real commands, as subprocesses: one bad record costs one record, the run says what
was lost and exits 1, and nothing of the damage survives into the next day or the database.

The multi-day case is the one a trader meets: a month of day files where one file carries a record stamped
decades ahead. Before, that record became the stream's clock (every later record of the file "out of order"),
the trading core halted "beyond the calendar's span" and the journal's latest time moved to 2090, so the next
day (and every later session on that database) silently stopped trading.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from tradebot.core.calendar import CT, from_ns
from tradebot.state.store import StateStore
from tradebot.trading import closed_trades

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")
FUTURE_2090 = 3_786_912_000 * 10**9


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_LOG_LEVEL": "WARNING", **extra})
    return env


def tradebot(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradebot", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=clean_env(TRADEBOT_DATA_DIR=str(cwd / "data")))


def together(*commands: tuple[str, ...], cwd: Path, timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Several ``tradebot`` commands at once (independent runs; the machine's cores do them side by side)."""
    procs = [subprocess.Popen([sys.executable, "-m", "tradebot", *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=cwd, env=clean_env(TRADEBOT_DATA_DIR=str(cwd / "data")))
             for c in commands]
    out = []
    for c, p in zip(commands, procs, strict=True):
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(c, p.returncode, stdout, stderr))
    return out


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cat")
    r = tradebot("data", "synth", "--days", "2", "--out", str(out), "--symbol", "ES", "--trades-per-day", "5000",
                 "--seed", "11", "--start", "2025-03-10", cwd=out)
    assert r.returncode == 0, r.stderr
    files = sorted(out.rglob("*.dbn.zst"))
    assert len(files) == 2
    return files


def stamp_far_future(src: Path, dst: Path, which: float = 0.5) -> int:
    """A copy of ``src`` with one record's ``ts_event`` set to 2090; returns that record's index."""
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(src.read_bytes())
    meta = 8 + int.from_bytes(raw[4:8], "little")
    size = raw[meta] * 4
    n = (len(raw) - meta) // size
    k = int(n * which)
    at = meta + k * size + 8  # ts_event: after length, rtype, publisher and instrument id
    data = raw[:at] + FUTURE_2090.to_bytes(8, "little") + raw[at + 8:]
    dst.write_bytes(zstandard.ZstdCompressor().compress(data))
    return k


def replay_args(files: list[Path], db: Path) -> tuple[str, ...]:
    return ("replay", "--symbol", "ES", "--db", str(db), "--json", "--input", *map(str, files))


def by_day(db: Path) -> dict[dt.date, list[tuple[object, ...]]]:
    store = StateStore.open(db, readonly=True)
    try:
        trades = closed_trades(store)
    finally:
        store.close()
    out: dict[dt.date, list[tuple[object, ...]]] = {}
    for t in trades:
        out.setdefault(from_ns(t.entry_ns, CT).date(), []).append(
            (t.side, t.quantity, t.entry_ns, t.exit_ns, t.entry_price, t.exit_price, t.pattern))
    return out


def error_halts(db: Path) -> list[str]:
    store = StateStore.open(db, readonly=True)
    try:
        rows = store.query("SELECT payload FROM journal")
    finally:
        store.close()
    return [str(r["payload"])[:300] for r in rows if re.search(r'"kind":\s*"error"', str(r["payload"]))]


def latest_journal_time(db: Path) -> int:
    store = StateStore.open(db, readonly=True)
    try:
        return int(store.query("SELECT MAX(ts_ns) AS t FROM journal")[0]["t"] or 0)
    finally:
        store.close()


def test_far_future_record_costs_one_record_and_the_next_day_trades_as_a_clean_run(days: list[Path],
                                                                                       tmp_path: Path) -> None:
    bad = tmp_path / days[0].name
    bad.parent.mkdir(exist_ok=True)
    stamp_far_future(days[0], bad)
    clean_r, hurt_r = together(replay_args(days, tmp_path / "clean.db"),
                               replay_args([bad, days[1]], tmp_path / "hurt.db"), cwd=tmp_path)
    assert clean_r.returncode == 0, clean_r.stderr[-3000:]
    assert hurt_r.returncode == 1, hurt_r.stderr[-3000:]
    assert json.loads(hurt_r.stdout.strip().splitlines()[-1])["exit_code"] == 1
    assert "future" in hurt_r.stderr and "damaged input" in hurt_r.stderr
    assert "Traceback" not in hurt_r.stderr

    clean_days = by_day(tmp_path / "clean.db")
    hurt_days = by_day(tmp_path / "hurt.db")
    assert len(clean_days) == 2 and all(clean_days.values()), "the synthetic days must trade"
    second = max(clean_days)
    assert hurt_days.get(second) == clean_days[second], "the day after the damaged file trades exactly as clean"
    assert error_halts(tmp_path / "hurt.db") == [], "no HALTED(error) persisted"
    assert latest_journal_time(tmp_path / "hurt.db") < FUTURE_2090 // 2, "the journal's clock never moved to 2090"


def test_inspect_and_analyze_report_what_the_damage_cost(days: list[Path], tmp_path: Path) -> None:
    """A damaged day file: inspect names the loss (records and time range) and exits 1; analyze exits 1 and
    keeps every other record; the clean file exits 0 from both."""
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(days[0].read_bytes())
    meta = 8 + int.from_bytes(raw[4:8], "little")
    size = raw[meta] * 4
    k = ((len(raw) - meta) // size) // 3
    broken = bytearray(raw)
    broken[meta + k * size + 1] = 0x77  # a record type nobody knows
    bad = tmp_path / "bad.dbn"
    bad.write_bytes(bytes(broken))
    r, clean, a, a_clean = together(("data", "inspect", "--json", str(bad)),
                                    ("data", "inspect", "--json", str(days[0])),
                                    ("analyze", "--json", "--symbol", "ES", str(bad)),
                                    ("analyze", "--json", "--symbol", "ES", str(days[0])), cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    [report] = json.loads(r.stdout)["files"]
    [err] = [e for e in report["errors"] if "bad_record" in e]
    assert "1 record(s)" in err and re.search(r"between \d{4}-\d\d-\d\dT.* and \d{4}-", err)
    assert clean.returncode == 0, clean.stderr[-2000:]
    [ref] = json.loads(clean.stdout)["files"]
    assert report["trades"]["count"] >= ref["trades"]["count"] - 1
    assert a.returncode == 1 and "bad_record" in a.stderr
    assert a_clean.returncode == 0, a_clean.stderr[-2000:]
    doc, ref_doc = json.loads(a.stdout), json.loads(a_clean.stdout)
    assert doc["validation"]["accepted"] >= ref_doc["validation"]["accepted"] - 2, "one record: a book and a trade"
    assert doc["damage"] and not ref_doc["damage"]
