"""The bracket state machine through the real manager, journal and store, driven by a scripted broker.

Covers every legal transition, illegal ones (rejected loudly: logged, counted, state unchanged), duplicate and
out-of-order broker events, fill de-duplication (C1/H1/H2) and the UNKNOWN path (queried, never re-sent).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.exec_helpers import T0, S, System, intent, settings
from support.fake_broker import FakeBroker
from tradebot.core.types import Side
from tradebot.execution.ledger import ALLOWED, Bracket, Ledger
from tradebot.execution.manager import FillDeduper
from tradebot.execution.model import (
    Ack,
    BracketState,
    Cancelled,
    Fill,
    HaltKind,
    LegRole,
    LegState,
    OrderType,
    Reject,
    StatusReport,
    TradingState,
    client_order_id,
    split_client_order_id,
)

B = BracketState


@pytest.fixture
def sys_(tmp_path: Path) -> System:
    return System(tmp_path / "t.db", settings(), FakeBroker())


def fb(s: System) -> FakeBroker:
    assert isinstance(s.broker, FakeBroker)
    return s.broker


def submit(s: System, i: float = 1, qty: int = 2) -> str:
    v = s.manager.on_intent(intent(i, stop=990, target=1010, qty=qty))
    assert v.taken, v.reason
    return v.signal_id


def fill(sid: str, role: LegRole, qty: int, price: int, i: float, n: int = 1, side: Side | None = None) -> Fill:
    coid = client_order_id(sid, role)
    if side is None:
        side = Side.BUY if role == LegRole.ENTRY else Side.SELL
    return Fill(f"{coid}.{n}", coid, "ES", side, qty, price, T0 + int(i * S), 190 * qty)


def push(s: System, *events: object) -> None:
    fb(s).push(*events)  # type: ignore[arg-type]
    s.manager.pump()


def state(s: System, sid: str) -> BracketState:
    return s.manager.ledger.brackets[sid].state


def test_client_order_ids_are_derived_from_the_signal_id(sys_: System) -> None:
    sid = submit(sys_)
    (req,) = fb(sys_).kinds("submit")
    assert (req.entry_id, req.stop_id, req.target_id) == (f"{sid}-E", f"{sid}-S", f"{sid}-T")
    assert split_client_order_id(f"{sid}-X2") == (sid, LegRole.EXIT)
    assert split_client_order_id("foreign-order-Z") is None
    assert split_client_order_id("noseparator") is None
    assert state(sys_, sid) == B.PENDING


@pytest.mark.parametrize("src", list(BracketState))
@pytest.mark.parametrize("dst", list(BracketState))
def test_transition_table_is_enforced(src: BracketState, dst: BracketState) -> None:
    led = Ledger()
    b = Bracket("sig", "ES", Side.BUY, 1, OrderType.MARKET, None, 990, 1010, 1250, "p", T0, state=src)
    effects: list[object] = []
    ok = led._transition(b, dst, "test", effects)  # type: ignore[arg-type]
    legal = dst == src or dst in ALLOWED[src]
    assert ok is legal
    assert b.state == (dst if legal else src)
    assert led.anomalies["illegal_transition"] == (0 if legal else 1)
    assert bool(effects) is (not legal)


def test_pending_working_filled_closed_by_target(sys_: System) -> None:
    sid = submit(sys_)
    push(sys_, Ack(f"{sid}-E", T0 + S))
    assert state(sys_, sid) == B.WORKING
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2))
    assert state(sys_, sid) == B.PARTIALLY_FILLED
    legs = sys_.manager.ledger.legs
    assert legs[f"{sid}-S"].state == LegState.WORKING and legs[f"{sid}-S"].quantity == 1
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1002, 3, n=2))
    assert state(sys_, sid) == B.FILLED and legs[f"{sid}-T"].quantity == 2
    push(sys_, fill(sid, LegRole.TARGET, 2, 1010, 4))
    assert state(sys_, sid) == B.CLOSED
    b = sys_.manager.ledger.brackets[sid]
    assert b.exit_reason == "target"
    assert b.book.realized_cents == (10 + 8) * 1250 and b.book.commission_cents == 4 * 190
    kinds = [n.kind for n in sys_.notes]
    assert kinds.count("trade_opened") == 1 and kinds.count("trade_closed") == 1
    row = sys_.store.query("SELECT state, realized_cents FROM brackets WHERE signal_id = ?", (sid,))[0]
    assert row == {"state": "closed", "realized_cents": 18 * 1250}


def test_fill_before_ack_then_a_late_ack_is_stale(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2))
    assert state(sys_, sid) == B.FILLED  # PENDING -> FILLED directly
    push(sys_, Ack(f"{sid}-E", T0 + S))
    assert state(sys_, sid) == B.FILLED
    assert sys_.manager.ledger.anomalies["stale_ack"] == 1
    assert sys_.manager.ledger.anomalies["illegal_transition"] == 0


def test_partial_fill_before_ack(sys_: System) -> None:
    sid = submit(sys_)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2))
    assert state(sys_, sid) == B.PARTIALLY_FILLED


def test_duplicate_ack_is_counted_not_applied(sys_: System) -> None:
    sid = submit(sys_)
    push(sys_, Ack(f"{sid}-E", T0 + S), Ack(f"{sid}-E", T0 + S))
    assert state(sys_, sid) == B.WORKING
    assert sys_.manager.ledger.anomalies["duplicate_ack"] == 1


def test_duplicate_fill_is_dropped_before_the_journal(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    f = fill(sid, LegRole.ENTRY, 1, 1000, 2)
    push(sys_, f)
    n = sys_.store.journal_count()
    push(sys_, f, f)
    assert sys_.store.journal_count() == n
    assert sys_.manager.stats["duplicate_fill"] == 2
    assert sys_.manager.ledger.position_qty("ES") == 1


def test_same_price_same_size_fills_with_distinct_ids_both_count(sys_: System) -> None:
    """H1: two genuine fills at the same price and size are different fills (ids differ)."""
    sid = submit(sys_, qty=2)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2, n=1), fill(sid, LegRole.ENTRY, 1, 1000, 2, n=2))
    assert sys_.manager.ledger.position_qty("ES") == 2 and state(sys_, sid) == B.FILLED


def test_dedupe_memory_is_bounded_and_the_database_backstops(tmp_path: Path) -> None:
    """H2: the in-memory set forgets the oldest ids; a duplicate of a forgotten id is still dropped."""
    s = System(tmp_path / "t.db", settings(fill_dedupe_size=10), FakeBroker())
    sid = submit(s, qty=1)
    first = fill(sid, LegRole.ENTRY, 1, 1000, 2)
    push(s, first)
    for k in range(30):
        push(s, Fill(f"foreign.{k}", "not-ours", "ES", Side.BUY, 1, 1000, T0 + 3 * S, 0))
    assert len(s.manager._dedupe) == 10 and first.fill_id not in s.manager._dedupe
    push(s, first)
    assert s.manager.stats["duplicate_fill"] == 1
    assert s.manager.ledger.brackets[sid].entry_filled == 1
    d = FillDeduper(3)
    for k in range(5):
        d.add(str(k))
    assert [str(k) in d for k in range(5)] == [False, False, True, True, True]


def test_cancel_before_ack_and_a_duplicate_cancel(sys_: System) -> None:
    sid = submit(sys_)
    push(sys_, Cancelled(f"{sid}-E", T0 + S, "user"))
    assert state(sys_, sid) == B.CANCELLED
    legs = sys_.manager.ledger.legs
    assert {legs[f"{sid}-{r}"].state for r in "ST"} == {LegState.CANCELLED}
    push(sys_, Cancelled(f"{sid}-E", T0 + S, "user"))
    assert sys_.manager.ledger.anomalies["duplicate_cancel"] == 1


def test_working_to_cancelled_and_rejected(sys_: System) -> None:
    a = submit(sys_, i=1)
    push(sys_, Ack(f"{a}-E", T0 + S), Cancelled(f"{a}-E", T0 + 2 * S))
    assert state(sys_, a) == B.CANCELLED
    b = submit(sys_, i=3)
    push(sys_, Ack(f"{b}-E", T0 + 3 * S), Reject(f"{b}-E", T0 + 4 * S, "risk"))
    assert state(sys_, b) == B.REJECTED
    assert any(n.kind == "order_rejected" for n in sys_.notes)


def test_pending_to_rejected(sys_: System) -> None:
    sid = submit(sys_)
    push(sys_, Reject(f"{sid}-E", T0 + S, "margin"))
    assert state(sys_, sid) == B.REJECTED
    assert sys_.store.query("SELECT verdict FROM signals")[0]["verdict"] == "taken"


def test_illegal_reject_after_fills_is_counted_and_ignored(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2))
    push(sys_, Reject(f"{sid}-E", T0 + 3 * S, "late"))
    assert state(sys_, sid) == B.FILLED
    assert sys_.manager.ledger.anomalies["stale_reject"] == 1  # the entry leg is already filled


def test_entry_fill_on_a_closed_bracket_is_illegal_and_halts(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2), fill(sid, LegRole.STOP, 1, 990, 3))
    assert state(sys_, sid) == B.CLOSED
    push(sys_, fill(sid, LegRole.ENTRY, 1, 995, 4, n=2))
    assert state(sys_, sid) == B.CLOSED
    led = sys_.manager.ledger
    assert led.anomalies["illegal_transition"] == 1 and led.anomalies["overfill"] == 1
    assert led.trading.state == TradingState.HALTED and led.trading.kind == HaltKind.ERROR
    assert led.position_qty("ES") == 1  # the fill is a fact: money moved, the position shows it
    assert any(n.severity == "critical" for n in sys_.notes)


def test_partially_filled_to_closed_when_stopped_out_then_remainder_cancelled(sys_: System) -> None:
    sid = submit(sys_, qty=2)
    push(sys_, Ack(f"{sid}-E", T0 + S), fill(sid, LegRole.ENTRY, 1, 1000, 2))
    push(sys_, fill(sid, LegRole.STOP, 1, 990, 3))
    assert state(sys_, sid) == B.PARTIALLY_FILLED
    assert fb(sys_).kinds("cancel") == [f"{sid}-E"]  # flat with a working entry: the manager cancels it
    push(sys_, Cancelled(f"{sid}-E", T0 + 4 * S))
    assert state(sys_, sid) == B.CLOSED
    assert sys_.manager.ledger.brackets[sid].exit_reason == "stop"


def test_partial_entry_remainder_cancelled_leaves_a_filled_bracket(sys_: System) -> None:
    sid = submit(sys_, qty=2)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2), Cancelled(f"{sid}-E", T0 + 3 * S))
    assert state(sys_, sid) == B.FILLED
    assert sys_.manager.ledger.legs[f"{sid}-S"].quantity == 1


def test_late_fill_after_cancel_reopens_and_the_unprotected_position_is_flattened(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, Ack(f"{sid}-E", T0 + S), Cancelled(f"{sid}-E", T0 + 2 * S))
    assert state(sys_, sid) == B.CANCELLED
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 3))
    assert state(sys_, sid) == B.FILLED  # CANCELLED -> FILLED: the race is legal
    assert sys_.manager.ledger.anomalies["late_fill"] == 1
    (req,) = fb(sys_).kinds("flatten")
    assert (req.exit_id, req.quantity, req.side, req.reason) == (f"{sid}-X1", 1, Side.SELL, "unprotected")
    push(sys_, Ack(req.exit_id, T0 + 4 * S),
         Fill(f"{req.exit_id}.1", req.exit_id, "ES", Side.SELL, 1, 999, T0 + 5 * S, 190))
    assert state(sys_, sid) == B.CLOSED
    assert sys_.manager.ledger.brackets[sid].exit_reason == "unprotected"


def test_cancel_confirm_after_the_fill_is_stale(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2), fill(sid, LegRole.TARGET, 1, 1010, 3))
    push(sys_, Cancelled(f"{sid}-T", T0 + 4 * S))
    assert state(sys_, sid) == B.CLOSED
    assert sys_.manager.ledger.anomalies["stale_cancel"] == 1


def test_rejected_stop_on_an_open_position_flattens(sys_: System) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2), Reject(f"{sid}-S", T0 + 3 * S, "stop through market"))
    (req,) = fb(sys_).kinds("flatten")
    assert req.quantity == 1 and f"{sid}-T" in req.cancel_ids
    assert any(n.kind == "execution_anomaly" and n.severity == "critical" for n in sys_.notes)


def test_orphan_fill_halts_and_shows_in_positions(sys_: System) -> None:
    push(sys_, Fill("x.1", "someone-elses-order", "ES", Side.BUY, 1, 1000, T0 + S, 0))
    assert sys_.manager.ledger.trading.kind == HaltKind.ERROR
    assert sys_.manager.ledger.position_qty("ES") == 1


def test_submit_timeout_goes_unknown_and_is_queried_never_resent(sys_: System) -> None:
    sid = submit(sys_)
    sys_.manager.check_timeouts(T0 + 3 * S)  # under the 5 s timeout
    assert state(sys_, sid) == B.PENDING
    sys_.manager.check_timeouts(T0 + 7 * S)
    assert state(sys_, sid) == B.UNKNOWN
    assert fb(sys_).kinds("status") == [f"{sid}-E"]
    sys_.manager.check_timeouts(T0 + 20 * S)  # no answer yet: ask again, still never re-send
    assert fb(sys_).kinds("status") == [f"{sid}-E", f"{sid}-E"]
    assert len(fb(sys_).kinds("submit")) == 1
    push(sys_, StatusReport(f"{sid}-E", T0 + 21 * S, LegState.WORKING))
    assert state(sys_, sid) == B.WORKING


def test_unknown_resolved_as_never_received_becomes_rejected(sys_: System) -> None:
    sid = submit(sys_)
    sys_.manager.check_timeouts(T0 + 10 * S)
    push(sys_, StatusReport(f"{sid}-E", T0 + 11 * S, None))
    assert state(sys_, sid) == B.REJECTED
    assert "not found" in sys_.manager.ledger.legs[f"{sid}-E"].reason
    assert len(fb(sys_).kinds("submit")) == 1


@pytest.mark.parametrize(("report", "want"), [
    (LegState.CANCELLED, B.CANCELLED), (LegState.REJECTED, B.REJECTED)])
def test_unknown_resolved_by_status(sys_: System, report: LegState, want: BracketState) -> None:
    sid = submit(sys_)
    sys_.manager.check_timeouts(T0 + 10 * S)
    push(sys_, StatusReport(f"{sid}-E", T0 + 11 * S, report))
    assert state(sys_, sid) == want


def test_unknown_then_fills_arrive(sys_: System) -> None:
    sid = submit(sys_, qty=2)
    sys_.manager.check_timeouts(T0 + 10 * S)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 11))
    assert state(sys_, sid) == B.PARTIALLY_FILLED
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 12, n=2))
    assert state(sys_, sid) == B.FILLED


def test_status_reporting_fills_we_never_saw_is_a_mismatch(sys_: System) -> None:
    sid = submit(sys_)
    sys_.manager.check_timeouts(T0 + 10 * S)
    push(sys_, StatusReport(f"{sid}-E", T0 + 11 * S, LegState.FILLED, filled_qty=2))
    assert sys_.manager.ledger.trading.kind == HaltKind.ERROR


def test_modify_stop_round_trip_and_refusal(sys_: System) -> None:
    from tradebot.execution.model import Modified

    sid = submit(sys_, qty=1)
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2))
    assert not sys_.manager.modify_stop(sid, 1010, T0 + 3 * S)  # at the target: refused
    assert sys_.manager.modify_stop(sid, 1000, T0 + 3 * S)
    assert fb(sys_).kinds("modify") == [(f"{sid}-S", 1000)]
    push(sys_, Modified(f"{sid}-S", T0 + 3 * S, 1000))
    assert sys_.manager.ledger.brackets[sid].stop_price == 1000
    assert sys_.store.query("SELECT stop_price FROM brackets")[0]["stop_price"] == 1000


@pytest.mark.parametrize("bad", [
    Fill("f.1", "X-E", "ES", Side.BUY, 0, 1000, T0, 0),
    Fill("f.1", "X-E", "ES", Side.BUY, -2, 1000, T0, 0),
    Fill("f.1", "X-E", "ES", Side.BUY, 1, 1000.25, T0, 0),  # type: ignore[arg-type]
    Fill("f.1", "X-E", "ES", Side.UNKNOWN, 1, 1000, T0, 0),
    Fill("f.1", "X-E", "ZZZ", Side.BUY, 1, 1000, T0, 0),
    Fill("", "X-E", "ES", Side.BUY, 1, 1000, T0, 0),
    Fill("f.1", "X-E", "ES", Side.BUY, 1, 1000, T0, -5),
    Ack("", T0),
    Ack("X-E", None),  # type: ignore[arg-type]
    "not an event",
])
def test_malformed_broker_events_are_dropped_counted_and_alerted(sys_: System, bad: object) -> None:
    sid = submit(sys_, qty=1)
    push(sys_, bad)
    assert sys_.manager.stats["bad_broker_event"] == 1
    assert state(sys_, sid) == B.PENDING and sys_.manager.ledger.positions == {}
    assert sys_.store.query("SELECT COUNT(*) AS n FROM fills")[0]["n"] == 0
    (note,) = [n for n in sys_.notes if n.kind == "execution_anomaly"]
    assert note.severity == "critical"
    push(sys_, fill(sid, LegRole.ENTRY, 1, 1000, 2))  # and the manager carries on
    assert state(sys_, sid) == B.FILLED


def test_a_failing_broker_call_never_raises_into_the_loop(tmp_path: Path) -> None:
    class Flaky(FakeBroker):
        def submit_bracket(self, req: object) -> None:
            raise ConnectionError("socket closed")

    s = System(tmp_path / "t.db", settings(), Flaky())
    v = s.manager.on_intent(intent(1, stop=990, target=1010))
    assert v.taken and s.manager.stats["broker_error"] == 1
    s.manager.check_timeouts(T0 + 10 * S)
    assert state(s, v.signal_id) == B.UNKNOWN and fb(s).kinds("status") == [f"{v.signal_id}-E"]
    push(s, StatusReport(f"{v.signal_id}-E", T0 + 11 * S, None))
    assert state(s, v.signal_id) == B.REJECTED
