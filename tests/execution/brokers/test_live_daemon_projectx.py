"""The daemon process trading live through the ProjectX stand-in (real adapter, real protocol), fault by fault.

Each test ends with the account flat or protected and the journal equal to the broker (support/live_harness.py).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live_harness import MS, LiveRig, StandInThread, wait_for
from tradebot.core.calendar import to_ns
from tradebot.core.types import Side

DAY_START = to_ns(dt.datetime(2025, 3, 11, 13, 0, tzinfo=dt.UTC))
S = 1_000_000_000


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADEBOT_DATA_DIR"] = str(out / "unused")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "3", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


@pytest.fixture
def standin() -> Iterator[StandInThread]:
    px = StandInThread()
    yield px
    px.stop()


@pytest.fixture
def rig(tmp_path: Path, day_file: Path, standin: StandInThread) -> Iterator[LiveRig]:
    r = LiveRig(tmp_path, day_file, standin, DAY_START)
    yield r
    if r.proc is not None:
        r.proc.kill()
        r.proc.communicate()


def open_position(rig: LiveRig) -> dict[str, int]:
    """Start the daemon and let the stand-in fill its first entry; returns the open bracket's prices."""
    rig.start()
    rig.fill_entries(lambda: rig.broker_position() != 0 and len(rig.open_orders()) >= 2)
    (row,) = wait_for(lambda: rig.query("SELECT signal_id, stop_price, target_price, entry_filled FROM brackets "
                                        "WHERE state IN ('filled', 'partially_filled')"), what="open bracket", rig=rig)
    return {"stop": int(row["stop_price"]), "target": int(row["target_price"]), "qty": int(row["entry_filled"])}


def test_normal_live_day_opens_protects_and_closes_at_the_target(rig: LiveRig) -> None:
    b = open_position(rig)
    rig.protected_or_flat()
    wait_for(lambda: rig.query("SELECT 1 FROM orders WHERE role = 'S' AND state = 'working'"), rig=rig)
    now = rig.px.do(lambda: rig.px.server.now_ns)
    rig.print_at(b["target"] + 1, now + MS, Side.BUY)  # a print through the target (a sell limit) fills it
    wait_for(lambda: rig.query("SELECT 1 FROM brackets WHERE state = 'closed' AND exit_reason = 'target'"),
             what="closed at the target", rig=rig)
    wait_for(lambda: not rig.open_orders(), what="the stop cancelled (OCO)", rig=rig)
    wait_for(lambda: rig.query("SELECT 1 FROM orders WHERE role = 'S' AND state = 'cancelled'"), rig=rig)
    assert rig.stop() == 0
    rig.journal_equals_broker()
    assert rig.broker_position() == 0
    code, out, err = rig.runs[-1]
    assert "preflight ok" in err
