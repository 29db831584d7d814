"""Crash recovery: crash at every step and at every commit, recover, continue, end where an uninterrupted run
ends. Plus reconciliation: what the journal cannot explain halts trading (fail closed) with an alert.

A "crash" drops every object without closing anything; an injected crash (fault hook) dies just before a
COMMIT, so the interrupted transaction is lost exactly as after ``kill -9``. The interrupted input is then
delivered again (at-least-once), which the manager must absorb without duplicating anything.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support.exec_helpers import T0, S, Step, System, intent, scenario, scenario_settings, settings, trade
from support.fake_broker import FakeBroker
from tradebot.core.types import Side
from tradebot.execution.ledger import rebuild_from_journal
from tradebot.execution.model import BracketState, HaltKind, LegState, OrderType, OrderView, TradingState
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.state.store import CrashPoint, StateStore

STEPS = scenario()


def final_state(s: System) -> dict[str, Any]:
    """What must not differ between a crashed-and-recovered run and an uninterrupted one."""
    dump = s.store.dump_projections()
    outbox = Counter((r["kind"], r["payload"]) for r in s.store.query("SELECT kind, payload FROM outbox"))
    fill_ids = [r.payload["fill_id"] for r in s.store.journal() if r.kind == "broker_fill"]
    return {"projections": dump, "outbox": outbox, "journal_fills": sorted(fill_ids),
            "positions": s.broker.query_positions(),
            "broker_orders": sorted((o.client_order_id, o.state.value, o.filled_qty, o.quantity, o.price)
                                    for o in s.broker.query_orders())}


def run(path: Path, steps: list[Step], *, crash_before: int | None = None, crash_step: int | None = None,
        crash_commit: int | None = None) -> System:
    """Run the script; crash before step ``crash_before``, or at commit ``crash_commit`` inside ``crash_step``."""
    s = System(path, scenario_settings(), synchronous="OFF")
    for k, (_, ts, action) in enumerate(steps):
        if k == crash_before:
            s = _crash_and_reopen(s, ts)
        if k == crash_step:
            commits = 0

            def hook() -> None:
                nonlocal commits
                commits += 1
                if commits == crash_commit:
                    raise CrashPoint(f"commit {commits}")

            s.store.fault_hook = hook
            try:
                action(s.manager)
            except CrashPoint:
                s = _crash_and_reopen(s, ts)
                action(s.manager)  # the interrupted input arrives again
                continue
            s.store.fault_hook = None
            continue
        action(s.manager)
    return s


def _crash_and_reopen(s: System, ts: int) -> System:
    path, cfg = s.path, s.cfg
    del s
    gc.collect()
    return System(path, cfg, now_ns=ts, synchronous="OFF")


def commits_per_step(path: Path) -> list[int]:
    s = System(path, scenario_settings(), synchronous="OFF")
    counts = []
    for _, _, action in STEPS:
        n = 0

        def hook() -> None:
            nonlocal n
            n += 1

        s.store.fault_hook = hook
        action(s.manager)
        counts.append(n)
    return counts


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    s = run(tmp_path_factory.mktemp("ref") / "ref.db", STEPS)
    out = final_state(s)
    # The scenario really exercises what it claims: 5 closed brackets, a limit halt, an auto-flatten.
    closed = s.store.query("SELECT exit_reason FROM brackets WHERE state = 'closed' ORDER BY submitted_ns")
    assert [r["exit_reason"] for r in closed] == ["target", "stop", "exit_signal", "loss_limit", "auto_flatten"]
    assert s.manager.trading_state == TradingState.REDUCING
    return out


def test_crash_between_every_step_ends_like_an_uninterrupted_run(tmp_path: Path, reference: dict[str, Any]) -> None:
    for k in range(1, len(STEPS)):
        s = run(tmp_path / f"c{k}.db", STEPS, crash_before=k)
        got = final_state(s)
        assert got["projections"] == reference["projections"], f"crash before step {k} ({STEPS[k][0]})"
        assert got == reference, f"crash before step {k} ({STEPS[k][0]})"
        s.close()


def test_crash_at_every_commit_inside_every_step(tmp_path: Path, reference: dict[str, Any]) -> None:
    counts = commits_per_step(tmp_path / "count.db")
    assert sum(counts) > 40
    runs = 0
    for k, n in enumerate(counts):
        for j in range(1, n + 1):
            s = run(tmp_path / f"c{k}_{j}.db", STEPS, crash_step=k, crash_commit=j)
            got = final_state(s)
            assert got["projections"] == reference["projections"], f"step {k} ({STEPS[k][0]}) commit {j}"
            assert got == reference, f"step {k} ({STEPS[k][0]}) commit {j}"
            s.close()
            runs += 1
    assert runs == sum(counts)


def test_journal_replay_equals_the_projections(tmp_path: Path, reference: dict[str, Any]) -> None:
    s = run(tmp_path / "r.db", STEPS)
    before = s.store.dump_projections()
    s.store.conn.execute("DELETE FROM brackets")  # damage a projection: the journal is the truth
    s.store.conn.execute("UPDATE positions SET qty = 99")
    ledger = rebuild_from_journal(s.store, s.manager.ledger.starting_balance_cents)
    assert s.store.dump_projections() == before == reference["projections"]
    assert ledger.balance_cents == s.manager.ledger.balance_cents
    assert {k: b.qty for k, b in ledger.positions.items()} == {k: b.qty for k, b in s.manager.ledger.positions.items()}


def test_full_durability_settings_on_the_real_path(tmp_path: Path, reference: dict[str, Any]) -> None:
    """The default (WAL + synchronous=FULL) gives the same result; one crash in the middle for good measure."""
    path = tmp_path / "full.db"
    s = System(path, scenario_settings())  # synchronous=FULL
    assert s.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert s.store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for k, (_, ts, action) in enumerate(STEPS):
        if k == len(STEPS) // 2:
            del s
            gc.collect()
            s = System(path, scenario_settings(), now_ns=ts)
        action(s.manager)
    assert final_state(s)["projections"] == reference["projections"]


def test_open_bracket_resumes_after_restart(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(trade(1, 1000))
    sid = s.manager.on_intent(intent(2, stop=990, target=1010)).signal_id
    s.manager.on_market_event(trade(3, 1000))
    del s
    gc.collect()
    s2 = System(tmp_path / "t.db", settings(), now_ns=T0 + 4 * S)
    assert s2.report.ok and s2.report.open_brackets == [sid]
    assert s2.broker.query_positions() == {"ES": 1}
    s2.manager.on_market_event(trade(5, 1011))  # the restored paper broker still holds the target
    b = s2.manager.ledger.brackets[sid]
    assert (b.state, b.exit_reason) == (BracketState.CLOSED, "target")


def test_unexplained_broker_position_halts_and_alerts(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(trade(1, 1000))
    del s
    gc.collect()
    fb = FakeBroker()
    fb.positions = {"ES": 2}  # the broker says we are long 2; the journal knows nothing of it
    s2 = System(tmp_path / "t.db", settings(), fb, now_ns=T0 + 2 * S)
    assert not s2.report.ok and "position ES" in s2.report.mismatches[0]
    t = s2.manager.ledger.trading
    assert (t.state, t.kind) == (TradingState.HALTED, HaltKind.ERROR)
    alerts = [o for o in s2.store.pending_notifications() if o.kind == "recovery_mismatch"]
    assert alerts and alerts[0].severity == "critical"
    assert not s2.manager.on_intent(intent(3, stop=990, target=1010)).taken
    s3 = s2.reopen(T0 + 4 * S, PaperBroker(PaperConfig(), ["ES"]))  # the halt survives the next restart too
    assert s3.manager.ledger.trading.kind == HaltKind.ERROR


def test_unknown_working_order_at_the_broker_is_a_mismatch(tmp_path: Path) -> None:
    fb = FakeBroker()
    fb.orders["rogue-E"] = OrderView("rogue-E", "ES", Side.BUY, OrderType.LIMIT, 1, 0, 990, LegState.WORKING, T0)
    s = System(tmp_path / "t.db", settings(), fb)
    assert not s.report.ok and "rogue-E" in s.report.mismatches[0]
    assert s.manager.ledger.trading.kind == HaltKind.ERROR


def test_crash_after_journaling_before_sending_is_resolved_by_query_not_resend(tmp_path: Path) -> None:
    """Live-broker shape: the bracket was journaled but never reached the broker. Recovery asks; the broker
    does not know it; the bracket becomes REJECTED. Nothing is sent twice."""
    fb = FakeBroker()
    s = System(tmp_path / "t.db", settings(), fb)
    sid = s.manager.on_intent(intent(1, stop=990, target=1010)).signal_id
    del s
    gc.collect()
    fb2 = FakeBroker()
    s2 = System(tmp_path / "t.db", settings(), fb2, now_ns=T0 + 2 * S)
    assert s2.report.ok and fb2.kinds("status") == [f"{sid}-E"]
    assert fb2.kinds("submit") == []
    from tradebot.execution.model import StatusReport

    fb2.push(StatusReport(f"{sid}-E", T0 + 3 * S, None))
    s2.manager.pump()
    assert s2.manager.ledger.brackets[sid].state == BracketState.REJECTED


def test_recovered_fills_are_remembered_by_the_deduper(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(trade(1, 1000))
    sid = s.manager.on_intent(intent(2, stop=990, target=1010)).signal_id
    s.manager.on_market_event(trade(3, 1000))
    del s
    gc.collect()
    fb = FakeBroker()
    fb.positions = {"ES": 1}
    legs = [("E", Side.BUY, OrderType.MARKET, 1, 1, None, LegState.FILLED),
            ("S", Side.SELL, OrderType.STOP, 1, 0, 990, LegState.WORKING),
            ("T", Side.SELL, OrderType.LIMIT, 1, 0, 1010, LegState.WORKING)]
    fb.orders = {f"{sid}-{r}": OrderView(f"{sid}-{r}", "ES", side, t, q, f, px, st, T0)
                 for r, side, t, q, f, px, st in legs}
    s2 = System(tmp_path / "t.db", settings(), fb, now_ns=T0 + 4 * S)
    assert s2.report.ok, s2.report.mismatches
    from tradebot.execution.model import Fill

    n = s2.store.journal_count()
    fb.push(Fill(f"{sid}-E.1", f"{sid}-E", "ES", Side.BUY, 1, 1000, T0 + 3 * S, 190))  # replayed by the broker
    s2.manager.pump()
    assert s2.store.journal_count() == n and s2.manager.stats["duplicate_fill"] == 1


def test_store_reopen_while_a_crashed_transaction_was_open(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "t.db")
    store.fault_hook = lambda: (_ for _ in ()).throw(CrashPoint("x"))
    with pytest.raises(CrashPoint), store.transaction() as tx:
        tx.journal("anomaly", 1, {"reason": "lost"})
    again = StateStore.open(tmp_path / "t.db")
    assert again.journal_count() == 0
    with again.transaction() as tx:
        tx.journal("anomaly", 2, {"reason": "kept"})
    assert [json.dumps(r.payload) for r in again.journal()] == ['{"reason": "kept"}']
