"""The typed journal: every kind has one event class and survives the store's JSON round trip unchanged."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebot.core.types import Side
from tradebot.execution import journal as jn
from tradebot.execution.model import HaltKind, LegState, OrderType, TradingState
from tradebot.state.store import StateStore


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a field type, independent of the codec (so a codec gap shows up as a failure)."""
    if tp is int:
        return st.integers()
    if tp is str:
        return st.text()
    if tp is bool:
        return st.booleans()
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return event_strategy(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if set(args) == {int, Fraction}:
            return st.integers() | st.fractions()
        return st.one_of(*[st.none() if a is type(None) else strategy_for(a) for a in args])
    if origin is tuple:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    raise AssertionError(f"no strategy for {tp!r}")


def event_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


ANY_EVENT = st.one_of(*[event_strategy(cls) for cls in jn.EVENT_TYPES.values()])


def test_every_kind_has_exactly_one_event_class() -> None:
    assert set(jn.EVENT_TYPES) == set(jn.JournalKind)
    assert len(set(jn.EVENT_TYPES.values())) == len(jn.JournalKind)
    assert set(typing.get_args(jn.JournalEvent)) == set(jn.EVENT_TYPES.values())
    for kind, cls in jn.EVENT_TYPES.items():
        assert jn.KIND_OF[cls] is kind
        assert cls.__dataclass_params__.frozen and hasattr(cls, "__slots__")  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", list(jn.JournalKind), ids=str)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_kind_round_trips_through_json_losslessly(kind: jn.JournalKind, data: st.DataObject) -> None:
    event = data.draw(event_strategy(jn.EVENT_TYPES[kind]))
    got_kind, payload = jn.encode(event)
    assert got_kind is kind
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)  # what the store writes
    back = jn.decode(kind.value, json.loads(text))
    assert back == event
    assert type(back) is type(event)
    assert jn.encode(back) == (kind, payload)  # and canonical: decoding then encoding writes the same JSON


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(events=st.lists(ANY_EVENT, min_size=1, max_size=8))
def test_round_trip_through_the_real_store(tmp_path: Path, events: list[Any]) -> None:
    path = tmp_path / f"j-{abs(hash(repr(events)))}.db"
    store = StateStore.open(path)
    try:
        written = []
        with store.transaction() as tx:
            for i, ev in enumerate(events):
                written.append(jn.append(tx, 1_000 + i, ev))
        read = list(jn.read(store))
        assert read == written
        assert [e.kind for e in read] == [jn.kind_of(ev) for ev in events]
        assert list(jn.StoredJournal(store).entries(after_seq=written[0].seq)) == written[1:]
    finally:
        store.close()
        path.unlink()


def test_unknown_kind_fails_loudly_naming_the_record(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "t.db")
    with store.transaction() as tx:
        jn.append(tx, 1, jn.StatusRequested("ES-1-E"))
        tx.journal("broker_fill_while_away", 2, {"client_order_id": "ES-1-E"})
    entries = jn.read(store)
    assert next(entries).event == jn.StatusRequested("ES-1-E")
    with pytest.raises(jn.UnknownJournalKindError, match=r"journal record 2: .*'broker_fill_while_away'.*version"):
        next(entries)


@pytest.mark.parametrize(("kind", "payload", "match"), [
    ("status_request", {"client_order_id": "a", "extra": 1}, "unknown field"),
    ("status_request", {}, "missing field"),
    ("status_request", [], "an object"),
    ("modify_request", {"client_order_id": "a", "stop_price": "10"}, "stop_price: expected an integer"),
    ("modify_request", {"client_order_id": "a", "stop_price": True}, "expected an integer"),
    ("modify_request", {"client_order_id": "a", "stop_price": 1.5}, "expected an integer"),
    ("trading_state", {"state": "paused", "kind": "", "reason": ""}, "trading_state.state"),
    ("broker_status", {"client_order_id": "a", "state": "gone", "filled_qty": 0, "day": ""}, "state"),
    ("broker_fill", {"fill_id": "f", "client_order_id": "c", "symbol": "ES", "side": 2, "quantity": 1, "price": 1,
                     "ts_ns": 1, "commission_cents": 0, "day": "d", "tick_value_cents": 1250}, "side"),
    ("broker_fill", {"fill_id": "f", "client_order_id": "c", "symbol": "ES", "side": 1, "quantity": 1, "price": 1,
                     "ts_ns": 1, "commission_cents": 0, "day": "d", "tick_value_cents": "x/y"}, "tick value"),
    ("margin_check", {"day": "d", "results": [{"symbol": "ES"}]}, r"margin_check.results\[0\]: missing"),
    ("session_start", {"day": "d", "mode": "paper", "symbols": "ES"}, "a list"),
])
def test_malformed_payloads_are_refused(kind: str, payload: Any, match: str) -> None:
    with pytest.raises(jn.JournalDecodeError, match=match):
        jn.decode(kind, payload)


def test_records_written_before_a_field_existed_decode_with_its_default() -> None:
    """The payloads of databases written by earlier versions (no armed_ns, threatens, set_state, source)."""
    old_signal = {"signal_id": "ES-1-x", "ts_ns": 5, "symbol": "ES", "side": 1, "quantity": 1, "entry_type": "market",
                  "entry_price": None, "stop_price": 90, "target_price": 120, "confidence": 0.7, "pattern": "p",
                  "regime": "trend", "reasons": ["a", "b"], "verdict": "taken", "reason": "", "traded_symbol": "MES",
                  "traded_qty": 2, "tick_value_cents": 125}
    sig = jn.decode("signal", old_signal)
    assert isinstance(sig, jn.SignalDecided)
    assert (sig.armed_ns, sig.side, sig.entry_type, sig.reasons, sig.taken) == (
        0, Side.BUY, OrderType.MARKET, ("a", "b"), True)
    ex = jn.decode("exit_signal", {"symbol": "ES", "reason": "r", "decision": "alert", "signal_ids": ["s"],
                                   "flatten": [], "flatten_reason": "exit_signal"})
    assert isinstance(ex, jn.ExitSignalDecided) and ex.threatens == "any"
    sess = jn.decode("session_start", {"day": "2026-01-05", "mode": "paper", "symbols": ["ES"]})
    assert sess == jn.SessionStarted("2026-01-05", "paper", ("ES",), None)
    with_state = jn.decode("recovery", {"decision": "mismatch", "reason": "x",
                                        "set_state": {"state": "halted", "kind": "error", "reason": "y"}})
    assert with_state == jn.RecoveryChecked("mismatch", "x", jn.StateChange(TradingState.HALTED, HaltKind.ERROR, "y"))
    ack = jn.decode("broker_ack", {"client_order_id": "c"})
    assert ack == jn.OrderAcknowledged("c", "")
    status = jn.decode("broker_status", {"client_order_id": "c", "state": None, "filled_qty": 0, "day": "d"})
    assert isinstance(status, jn.OrderStatus) and status.state is None
    assert jn.decode("broker_status", {"client_order_id": "c", "state": "partially_filled", "filled_qty": 1,
                                       "day": "d"}).state is LegState.PARTIALLY_FILLED


def test_fractional_tick_values_stay_exact() -> None:
    fill = jn.OrderFilled("f.1", "c", "BTC", Side.SELL, 3, 6_000_000, 9, 12, "2026-01-05", Fraction(1, 100_000_000))
    kind, payload = jn.encode(fill)
    assert payload["tick_value_cents"] == "1/100000000"
    assert jn.decode(kind, json.loads(json.dumps(payload))) == fill


def test_an_unregistered_class_is_not_a_journal_event() -> None:
    with pytest.raises(TypeError, match="not a journal event"):
        jn.encode(jn.StateChange(TradingState.ACTIVE))
    with pytest.raises(TypeError, match="frozen dataclass"):
        jn.journal_event(jn.JournalKind.TIER)(type("Loose", (), {}))


def test_check_kinds_names_every_unknown_kind() -> None:
    jn.check_kinds(["signal", "broker_fill", "adopt"])
    with pytest.raises(jn.UnknownJournalKindError, match=r"\(fills_while_down, zz\).*different version"):
        jn.check_kinds(["signal", "zz", "fills_while_down"])
