"""Broker events on their way into the journal, without a manager: what is refused, and what each becomes."""

from __future__ import annotations

import pytest

from tradebot.core.types import Side
from tradebot.execution.intake import FillDeduper, event_problem, journal_event, tick_value_for
from tradebot.execution.journal import (
    OrderAcknowledged,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    StopModified,
    decode,
    encode,
)
from tradebot.execution.model import Ack, Cancelled, Fill, LegState, Modified, Reject, StatusReport

T = 1_741_617_000_000_000_000
DAYS: list[int] = []


def day_of(ts: int) -> str:
    DAYS.append(ts)
    return "2025-03-10"


def fill(**kw: object) -> Fill:
    base: dict[str, object] = {"fill_id": "f1", "client_order_id": "S-E", "symbol": "ES", "side": Side.BUY,
                               "quantity": 1, "price": 20_000, "ts_ns": T, "commission_cents": 190}
    base.update(kw)
    return Fill(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ev", "problem"), [
    (Ack("", T), "missing client order id"),
    (Ack("S-E", 1.5), "timestamp is not an integer"),  # type: ignore[arg-type]
    (fill(fill_id=""), "fill without a fill id"),
    (fill(quantity=0), "fill quantity 0"),
    (fill(price=2.5), "fill price 2.5 is not integer ticks"),
    (fill(price=True), "fill price True is not integer ticks"),
    (fill(side=0), "fill side 0"),
    (fill(commission_cents=-1), "commission -1"),
    (fill(symbol="NOPE"), "fill for unknown contract 'NOPE'"),
    (object(), "missing client order id"),
])
def test_events_that_would_corrupt_the_books_are_named(ev: object, problem: str) -> None:
    assert event_problem(ev) == problem


def test_each_valid_event_becomes_its_journal_record_losslessly() -> None:
    DAYS.clear()
    cases = [
        (fill(), OrderFilled("f1", "S-E", "ES", Side.BUY, 1, 20_000, T, 190, "2025-03-10", tick_value_for("ES"))),
        (Ack("S-E", T), OrderAcknowledged("S-E")),
        (Reject("S-E", T, "price"), OrderRejected("S-E", "price")),
        (Cancelled("S-S", T, "oco"), OrderCancelled("S-S", "oco", "2025-03-10")),
        (Modified("S-S", T, 19_990), StopModified("S-S", 19_990)),
        (StatusReport("S-E", T, LegState.WORKING, 0), OrderStatus("S-E", LegState.WORKING, 0, "2025-03-10")),
    ]
    for ev, want in cases:
        assert event_problem(ev) == ""
        got = journal_event(ev, T, day_of)
        assert got == want and decode(*encode(got)) == want
    assert DAYS == [T, T, T]  # the day is looked up only for fills, cancels and status answers
    assert tick_value_for("NOPE") == 0


def test_the_deduper_forgets_the_oldest_ids_first() -> None:
    d = FillDeduper(3)
    for i in range(5):
        d.add(f"f{i}")
    assert len(d) == 3 and "f0" not in d and "f1" not in d and all(f"f{i}" in d for i in (2, 3, 4))
