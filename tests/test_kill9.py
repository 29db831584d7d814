"""kill -9 at random points of a replayed session, restart, repeat: nothing lost, nothing duplicated, and the
final state equals an uninterrupted run of the same data.

A kill costs a daemon start plus half a replay on average: ~3 s on an idle 2-core machine, ~20 s at load 13 (eight
test suites at once). The default suite kills 5 times (about 40 s idle, 200 s at load 13, with its own 600 s
timeout) and the 50- and 200-kill runs are soak tests (``make soak``): the 50-kill run once hit the default suite's
300 s timeout on a loaded machine. In-process crashes at every commit of every step are in test_state_recovery.py.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")
TABLES = {
    "fills": "fill_id, client_order_id, signal_id, role, symbol, side, quantity, price, ts_ns, commission_cents, "
             "realized_cents, trading_day",
    "orders": "client_order_id, signal_id, role, symbol, side, order_type, quantity, price, state, filled_qty, "
              "fill_value, created_ns",
    "brackets": "signal_id, symbol, side, quantity, entry_price, stop_price, target_price, state, entry_filled, "
                "exit_filled, entry_value, exit_value, realized_cents, commission_cents, exit_reason, opened_ns, "
                "closed_ns",
    "positions": "symbol, qty, realized_cents, commission_cents",
    "daily_stats": "*",
    "signals": "signal_id, ts_ns, symbol, side, pattern, verdict, reason, traded_symbol, traded_qty",
}


def base_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_DATA_DIR": str(data), "TRADEBOT_LOG_LEVEL": "WARNING",
                "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.5"})
    return env


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "3", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=base_env(out / "unused"))
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


def command(day: Path) -> list[str]:
    return [sys.executable, "-m", "tradebot", "run", "--feed", "replay", "--input", str(day), "--symbol", "ES",
            "--speed", "0", "--timeframe", "60"]


def snapshot(data: Path) -> dict[str, list[tuple[object, ...]]]:
    con = sqlite3.connect(data / "tradebot-paper.db")
    try:
        return {t: sorted(con.execute(f"SELECT {cols} FROM {t}").fetchall(), key=repr) for t, cols in TABLES.items()}
    finally:
        con.close()


def run_to_end(day: Path, data: Path) -> float:
    t0 = time.monotonic()
    r = subprocess.run(command(day), env=base_env(data), cwd=data.parent, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    return time.monotonic() - t0


def crash_and_finish(day: Path, data: Path, kills: int, span: float, seed: int) -> int:
    """SIGKILL ``kills`` runs at random points (runs that finish first do not count), then run to the end.

    The reference run's duration sets the window, but load on a shared machine changes from run to run: a run that
    finishes before its kill narrows the window, so the test still kills ``kills`` times instead of failing on timing.
    """
    rng = random.Random(seed)
    killed = attempts = 0
    window = span
    while killed < kills and attempts < kills * 6:
        attempts += 1
        proc = subprocess.Popen(command(day), env=base_env(data), cwd=data.parent, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.95 * window))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        else:  # the machine got faster than the reference run (load changes): aim earlier next time
            window = max(0.2, window * 0.6)
        proc.wait(timeout=60)
    run_to_end(day, data)
    return killed


def check(day: Path, tmp_path: Path, kills: int) -> None:
    ref = tmp_path / "ref" / "data"
    ref.mkdir(parents=True)
    span = run_to_end(day, ref)
    expected = snapshot(ref)
    assert len(expected["fills"]) >= 4, "the day must trade for the test to mean anything"
    crashed = tmp_path / "crash" / "data"
    crashed.mkdir(parents=True)
    killed = crash_and_finish(day, crashed, kills, span, seed=kills)
    assert killed == kills, f"only {killed} runs were killed before finishing"
    got = snapshot(crashed)
    for table in TABLES:
        assert got[table] == expected[table], f"{table} differs after {killed} kills"
    fill_ids = [f[0] for f in got["fills"]]
    assert len(fill_ids) == len(set(fill_ids))


@pytest.mark.timeout(600)
def test_five_random_kills_change_nothing(day_file: Path, tmp_path: Path) -> None:
    check(day_file, tmp_path, 5)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_fifty_random_kills_change_nothing(day_file: Path, tmp_path: Path) -> None:
    check(day_file, tmp_path, 50)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_two_hundred_random_kills_change_nothing(day_file: Path, tmp_path: Path) -> None:
    check(day_file, tmp_path, 200)
