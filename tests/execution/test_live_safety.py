"""The live fail-safe rules in process, against a scripted live broker over the paper broker's fills.

Each test ends with the account flat or protected and the journal equal to the broker (positions, fills).
"""

from __future__ import annotations

import time
from pathlib import Path

from support.exec_helpers import T0, S, System, book, intent, settings, trade
from support.fake_broker import ScriptedLiveBroker
from tradebot.core.orders import EntryType
from tradebot.core.types import Side
from tradebot.execution.model import BracketState, HaltKind, LegRole, LegState, TradingState, client_order_id
from tradebot.execution.reconcile import Reconciler

WALL = 1_000_000_000_000


def live_system(path: Path, broker: ScriptedLiveBroker | None = None, **ex: object) -> System:
    return System(path, settings(**ex), broker if broker is not None else ScriptedLiveBroker(),
                  now_ns=T0)


def lb(s: System) -> ScriptedLiveBroker:
    assert isinstance(s.broker, ScriptedLiveBroker)
    return s.broker


def journal_equals_broker(s: System) -> None:
    b = lb(s)
    ours = {sym: book.qty for sym, book in s.manager.ledger.positions.items() if book.qty}
    assert ours == b.query_positions()
    assert set(s.manager.ledger.fills) == {f.fill_id for f in b.fills}
    rows = s.store.query("SELECT fill_id FROM fills")
    assert {r["fill_id"] for r in rows} == {f.fill_id for f in b.fills}


def open_long(s: System, i: float = 1) -> str:
    s.manager.on_market_event(book(i - 0.5, 999, 1000))
    v = s.manager.on_intent(intent(i, stop=990, target=1010, qty=2))
    assert v.taken, v.reason
    s.manager.on_market_event(trade(i + 1, 1000))  # the entry fills at the ask
    return v.signal_id


def test_live_broker_is_recognised_and_recovery_is_clean(tmp_path: Path) -> None:
    s = live_system(tmp_path / "a.db")
    assert s.manager.protection.active and s.report.ok


def test_lost_ack_is_resolved_by_a_status_query_never_a_resend(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    s = live_system(tmp_path / "a.db", broker, submit_timeout_seconds=0.2)
    s.manager.on_market_event(book(0.5, 999, 1000))
    it = intent(1, stop=990, target=1010, entry_type=EntryType.LIMIT, entry=995)
    sid, entry_id = it.signal_id, client_order_id(it.signal_id, LegRole.ENTRY)
    broker.lose_acks.add(entry_id)
    s.manager.on_intent(it)
    assert s.manager.ledger.brackets[sid].state == BracketState.PENDING
    s.manager.on_market_event(book(5, 999, 1000))  # live: the timeout is on the wall clock, not the market's
    assert s.manager.ledger.brackets[sid].state == BracketState.PENDING and not broker.kinds("status")
    time.sleep(0.25)
    s.manager.on_market_event(book(5.5, 999, 1000))  # past the timeout: UNKNOWN, then asked
    assert broker.kinds("status") == [entry_id]
    assert s.manager.ledger.brackets[sid].state == BracketState.WORKING  # the answer: working at the broker
    s.manager.on_market_event(trade(3, 994, side=Side.SELL))
    assert s.manager.ledger.brackets[sid].state == BracketState.FILLED
    assert len(broker.kinds("submit")) == 1
    journal_equals_broker(s)


def test_duplicate_and_reversed_events_apply_once(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    broker.duplicate = True
    broker.reverse = True
    s = live_system(tmp_path / "a.db", broker)
    sid = open_long(s)
    s.manager.on_market_event(trade(5, 1011))  # the target fills
    b = s.manager.ledger.brackets[sid]
    assert b.state == BracketState.CLOSED and b.position == 0
    assert s.manager.stats["duplicate_fill"] >= 2
    assert s.manager.stats["duplicate_broker_event"] >= 1
    journal_equals_broker(s)


def test_out_of_order_state_event_is_dropped(tmp_path: Path) -> None:
    from tradebot.execution.model import Ack, Cancelled

    s = live_system(tmp_path / "a.db")
    s.manager.on_market_event(book(0.5, 999, 1000))
    it = intent(1, stop=990, target=1010, entry_type=EntryType.LIMIT, entry=995)
    s.manager.on_intent(it)
    coid = client_order_id(it.signal_id, LegRole.ENTRY)
    s.manager.on_broker_event(Cancelled(coid, T0 + 3 * S, "user"))
    before = s.store.query("SELECT COUNT(*) AS n FROM journal")[0]["n"]
    s.manager.on_broker_event(Ack(coid, T0 + 2 * S))  # late: older than the cancel
    assert s.manager.stats["out_of_order_broker_event"] == 1
    assert s.store.query("SELECT COUNT(*) AS n FROM journal")[0]["n"] == before


def test_fill_while_down_is_journaled_from_the_brokers_record(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    s = live_system(tmp_path / "a.db", broker)
    sid = open_long(s)
    s.close()
    broker.muted = True  # the daemon is down: the stop fills, nobody hears it
    broker.on_market_event(trade(10, 990, side=Side.SELL))
    broker.poll_events()
    broker.muted = False
    assert broker.query_positions() == {}
    s2 = s.reopen(T0 + 20 * S, broker)
    assert s2.report.ok, s2.report.mismatches
    assert any("journaled from the broker's record" in a for a in s2.report.actions)
    b = s2.manager.ledger.brackets[sid]
    assert b.state == BracketState.CLOSED and b.exit_reason == "stop"
    assert s2.manager.ledger.legs[client_order_id(sid, LegRole.TARGET)].state == LegState.CANCELLED
    journal_equals_broker(s2)


def test_kill_with_open_position_restarts_reconciled_and_protected(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    s = live_system(tmp_path / "a.db", broker)
    sid = open_long(s)
    s.store.close()  # (a kill: nothing else runs)
    s2 = s.reopen(T0 + 20 * S, broker)
    assert s2.report.ok, s2.report.mismatches
    assert s2.manager.ledger.trading.state == TradingState.ACTIVE
    assert s2.manager.protection.check(WALL) == []  # the stop is working at the broker
    assert s2.manager.protection.confirmed(s2.manager.ledger.brackets[sid])
    journal_equals_broker(s2)


def test_foreign_position_halts_at_start(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    broker.paper._positions["ES"] = 1
    s = live_system(tmp_path / "a.db", broker)
    assert not s.report.ok
    assert "position ES: journal 0, broker 1" in s.report.mismatches
    t = s.manager.ledger.trading
    assert t.state == TradingState.HALTED and t.kind == HaltKind.ERROR
    assert any(n.kind == "recovery_mismatch" for n in s.notes)


def test_rejected_stop_is_replaced_then_flattened_when_rejected_again(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    broker.reject_stops = 1
    s = live_system(tmp_path / "a.db", broker)
    sid = open_long(s)
    (req,) = broker.kinds("place_stop")
    assert req.stop_id == client_order_id(sid, LegRole.STOP, 2) and req.quantity == 2 and req.stop_price == 990
    b = s.manager.ledger.brackets[sid]
    assert b.position == 2 and s.manager.protection.confirmed(b)
    assert any(n.kind == "stop_replaced" for n in s.notes)
    s.manager.on_market_event(trade(8, 989, side=Side.SELL))  # the re-placed stop protects: it fills
    assert b.state == BracketState.CLOSED and b.exit_reason == "stop"
    assert s.manager.ledger.legs[client_order_id(sid, LegRole.TARGET)].state == LegState.CANCELLED
    journal_equals_broker(s)

    broker2 = ScriptedLiveBroker()
    broker2.reject_stops = 2
    s2 = live_system(tmp_path / "b.db", broker2)
    sid2 = open_long(s2)
    assert len(broker2.kinds("place_stop")) == 1
    (fl,) = broker2.kinds("flatten")
    assert fl.signal_id == sid2 and fl.quantity == 2
    s2.manager.on_market_event(trade(8, 1001))
    assert s2.manager.ledger.brackets[sid2].state == BracketState.CLOSED
    assert broker2.query_positions() == {}
    journal_equals_broker(s2)


def test_lost_stop_is_replaced_after_the_deadline_then_flattened_if_never_confirmed(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    broker.lose_stops = 1
    s = live_system(tmp_path / "a.db", broker, protect_seconds=2)
    sid = open_long(s)
    b = s.manager.ledger.brackets[sid]
    p = s.manager.protection
    assert not p.confirmed(b)
    assert p.check(WALL) == []
    assert p.check(WALL + 1 * S) == []
    assert p.check(WALL + 2 * S) == [f"re-placed {sid}"]
    assert p.confirmed(b)
    assert p.check(WALL + 10 * S) == []
    journal_equals_broker(s)
    # Never confirmed: the re-placed stop is hidden too.
    broker2 = ScriptedLiveBroker()
    broker2.lose_stops = 1
    s2 = live_system(tmp_path / "b.db", broker2, protect_seconds=2)
    sid2 = open_long(s2)
    broker2._hidden.add(client_order_id(sid2, LegRole.STOP, 2))
    p2 = s2.manager.protection
    p2.check(WALL)
    assert p2.check(WALL + 2 * S) == [f"re-placed {sid2}"]
    assert p2.check(WALL + 3 * S) == []
    assert p2.check(WALL + 4 * S) == [f"flattened {sid2}"]
    s2.manager.on_market_event(trade(8, 1001))
    assert broker2.query_positions() == {}
    assert any(n.kind == "unprotected_position" for n in s2.notes)
    journal_equals_broker(s2)


def test_periodic_reconcile_halts_on_a_persistent_mismatch_only(tmp_path: Path) -> None:
    broker = ScriptedLiveBroker()
    s = live_system(tmp_path / "a.db", broker)
    r = Reconciler(s.manager)
    assert r.check(T0 + S) == []
    broker.paper._positions["NQ"] = -1  # someone traded NQ on the account by hand
    assert r.check(T0 + 2 * S) == []  # once may be in flight
    assert r.check(T0 + 3 * S) == ["position NQ: journal 0, broker -1"]
    t = s.manager.ledger.trading
    assert t.state == TradingState.HALTED and t.kind == HaltKind.ERROR
    assert sum(n.kind == "reconcile_mismatch" for n in s.notes) == 1
    r.check(T0 + 4 * S)
    assert sum(n.kind == "reconcile_mismatch" for n in s.notes) == 1  # no alert storm


def test_adopting_a_foreign_position_needs_a_stop_and_protects_it(tmp_path: Path) -> None:
    import pytest

    from tradebot.execution.reconcile import AdoptError, adopt

    broker = ScriptedLiveBroker()
    broker.paper._positions["ES"] = 2  # opened by hand before the daemon started
    s = live_system(tmp_path / "a.db", broker)
    assert not s.report.ok
    m = s.manager
    with pytest.raises(AdoptError, match="no market price"):
        adopt(m, "ES", 990, T0 + S)
    m.on_market_event(trade(1, 1000))
    with pytest.raises(AdoptError, match="below the market"):
        adopt(m, "ES", 1001, T0 + 2 * S)
    with pytest.raises(AdoptError, match="nothing to adopt"):
        adopt(m, "NQ", 1, T0 + 2 * S)
    sid = adopt(m, "ES", 990, T0 + 2 * S, "bought by hand")
    b = m.ledger.brackets[sid]
    assert b.position == 2 and b.state == BracketState.FILLED
    (req,) = broker.kinds("place_stop")
    assert (req.stop_id, req.quantity, req.stop_price, req.side) == (f"{sid}-S2", 2, 990, Side.SELL)
    assert m.protection.confirmed(b)
    assert {sym: bk.qty for sym, bk in m.ledger.positions.items() if bk.qty} == broker.query_positions() == {"ES": 2}
    assert m.ledger.trading.state == TradingState.HALTED  # the operator resumes once satisfied
    assert any(n.kind == "position_adopted" for n in s.notes)
    with pytest.raises(AdoptError, match="nothing to adopt"):
        adopt(m, "ES", 990, T0 + 3 * S)
    s.close()
    s2 = s.reopen(T0 + 5 * S, broker)  # the adoption survives a restart: reconciled, still protected
    assert s2.report.ok, s2.report.mismatches
    m2 = s2.manager
    m2.on_market_event(trade(6, 989, side=Side.SELL))  # the adopted stop fills
    assert m2.ledger.brackets[sid].state == BracketState.CLOSED
    assert broker.query_positions() == {} and not any(bk.qty for bk in m2.ledger.positions.values())
