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
    assert "preflight ok" in rig.runs[-1][2]


def faults(rig: LiveRig, **kw: object) -> None:
    rig.px.do(lambda: [setattr(rig.px.server.faults, k, v) for k, v in kw.items()])


def close_by_target(rig: LiveRig, b: dict[str, int]) -> None:
    now = rig.px.do(lambda: rig.px.server.now_ns)
    rig.print_at(b["target"] + 1, now + MS, Side.BUY)
    wait_for(lambda: rig.query("SELECT 1 FROM brackets WHERE state = 'closed'"), what="closed", rig=rig)
    wait_for(lambda: not [o for o in rig.open_orders() if str(o.get("customTag") or "").rpartition("-")[2][:1]
                          in ("S", "T")], what="children gone", rig=rig)


def settle(rig: LiveRig) -> None:
    """Stop cleanly and compare: flat or protected, the journal equal to the broker."""
    wait_for(lambda: rig.query("SELECT 1 FROM journal WHERE kind = 'broker_fill'"), rig=rig)
    assert rig.stop() == 0, rig.runs[-1][1][-3000:]
    rig.protected_or_flat()
    rig.journal_equals_broker()


def test_lost_acknowledgement_is_found_by_tag_never_resent(rig: LiveRig) -> None:
    faults(rig, lose_place_answers=1)
    b = open_position(rig)
    entries = [o for o in rig.orders() if str(o.get("customTag") or "").endswith("-E")]
    assert len(entries) == 1  # placed once: the lost answer was resolved by a search, not a second placement
    rig.protected_or_flat()
    close_by_target(rig, b)
    settle(rig)


def test_duplicate_and_out_of_order_events_apply_once(rig: LiveRig) -> None:
    faults(rig, duplicate_events=True, out_of_order=True)
    b = open_position(rig)
    close_by_target(rig, b)
    settle(rig)
    assert rig.broker_position() == 0
    fills = rig.query("SELECT COUNT(*) AS n FROM fills")[0]["n"]
    assert fills == len(rig.px.do(lambda: rig.px.server.trades)) == 2


def test_disconnect_mid_bracket_resyncs_and_stays_protected(rig: LiveRig) -> None:
    faults(rig, disconnect_after_fills=1)  # the user hub drops right after the entry fill
    b = open_position(rig)
    wait_for(lambda: rig.query("SELECT 1 FROM orders WHERE role = 'S' AND state = 'working'"), rig=rig)
    rig.protected_or_flat()
    close_by_target(rig, b)
    settle(rig)


def test_refused_key_exits_2_and_429_at_login_is_retried(rig: LiveRig) -> None:
    bad = rig.run_once(PROJECTX_API_KEY="wrong-key-000000")
    assert bad.returncode == 2
    assert [ln for ln in bad.stderr.splitlines() if ln.startswith("refusing to start")] == [
        "refusing to start: projectx login refused: login refused for user 'trader': error 3: None"] or \
        "login refused" in bad.stderr
    assert "Traceback" not in bad.stderr
    faults(rig, http_status={"/api/Auth/loginKey": [429, 429, 503]})
    b = open_position(rig)
    close_by_target(rig, b)
    settle(rig)


def test_success_false_on_the_entry_is_a_reject(rig: LiveRig) -> None:
    faults(rig, reject_next={"/api/Order/place": 2})
    rig.start()
    wait_for(lambda: rig.query("SELECT 1 FROM brackets WHERE state = 'rejected'"), what="rejected bracket", rig=rig)
    assert rig.stop() == 0
    rig.journal_equals_broker()
    assert rig.broker_position() == 0


def test_fill_while_the_daemon_is_down_is_journaled_from_the_brokers_record(rig: LiveRig) -> None:
    b = open_position(rig)
    wait_for(lambda: rig.query("SELECT 1 FROM orders WHERE role = 'S' AND state = 'working'"), rig=rig)
    assert rig.stop() == 0  # a clean stop leaves the position with its stop at the broker
    now = rig.px.do(lambda: rig.px.server.now_ns)
    rig.print_at(b["stop"] - 1, now + MS)  # the stop fills while nobody listens; the target is OCO-cancelled
    assert rig.broker_position() == 0
    rig.start()
    wait_for(lambda: rig.query("SELECT 1 FROM brackets WHERE state = 'closed' AND exit_reason = 'stop'"),
             what="the stop fill journaled", rig=rig)
    settle(rig)
    assert rig.query("SELECT state FROM trading_state")[0]["state"] == "active"


def test_kill_9_with_an_open_position_restarts_reconciled_and_protected(rig: LiveRig) -> None:
    b = open_position(rig)
    wait_for(lambda: rig.query("SELECT 1 FROM orders WHERE role = 'S' AND state = 'working'"), rig=rig)
    rig.stop(signal.SIGKILL)
    rig.start()
    wait_for(lambda: len(rig.query("SELECT 1 FROM journal WHERE kind = 'recovery'")) == 2, what="recovered", rig=rig)
    rec = rig.query("SELECT payload FROM journal WHERE kind = 'recovery' ORDER BY seq DESC LIMIT 1")[0]
    assert '"decision":"ok"' in rec["payload"], rec["payload"]
    rig.protected_or_flat()
    assert rig.broker_position() == b["qty"]
    close_by_target(rig, b)
    settle(rig)


def test_a_stop_the_broker_rejects_is_replaced_then_the_position_flattened(rig: LiveRig) -> None:
    faults(rig, reject_stops=1)
    open_position(rig)
    wait_for(lambda: rig.query("SELECT 1 FROM orders WHERE client_order_id LIKE '%-S2' AND state = 'working'"),
             what="the re-placed stop working", rig=rig)
    rig.protected_or_flat()
    assert rig.stop() == 0
    rig.journal_equals_broker()


def test_a_stop_rejected_twice_flattens(rig: LiveRig) -> None:
    faults(rig, reject_stops=2)
    rig.start()
    rig.fill_entries(lambda: bool(rig.query("SELECT 1 FROM brackets WHERE state = 'closed'")))
    assert rig.query("SELECT exit_reason FROM brackets WHERE state = 'closed'")[0]["exit_reason"] == "unprotected"
    wait_for(lambda: rig.broker_position() == 0, rig=rig)
    assert rig.stop() == 0
    rig.journal_equals_broker()
