"""One order representation with an explicit transition table, used by the ledger and the paper broker."""

from __future__ import annotations

from tradebot.core.types import Side
from tradebot.execution.journal import (
    IntentVerdict,
    JournalEntry,
    OrderAcknowledged,
    OrderFilled,
    PositionAdopted,
    SignalDecided,
)
from tradebot.execution.ledger import Ledger
from tradebot.execution.model import (
    LEG_TRANSITIONS,
    TERMINAL_LEG,
    LegRole,
    LegState,
    OrderType,
    leg_transition_allowed,
)

T0 = 1_700_000_000_000_000_000
SID = "ES-1-abc"


def test_the_table_covers_every_state_and_only_fills_leave_a_terminal_state() -> None:
    assert set(LEG_TRANSITIONS) == set(LegState)
    assert LEG_TRANSITIONS[LegState.FILLED] == frozenset()
    for state in TERMINAL_LEG - {LegState.FILLED}:  # a fill that raced the cancel / followed a reject is booked
        assert LEG_TRANSITIONS[state] == {LegState.PARTIALLY_FILLED, LegState.FILLED}
    for state, nxt in LEG_TRANSITIONS.items():
        assert LegState.HELD not in nxt and LegState.PENDING not in nxt  # nothing goes back to unsent
        if state not in TERMINAL_LEG:
            assert {LegState.FILLED, LegState.CANCELLED, LegState.REJECTED} <= nxt | {state}
    assert leg_transition_allowed(LegState.WORKING, LegState.WORKING)  # staying is a no-op, always allowed
    assert not leg_transition_allowed(LegState.FILLED, LegState.CANCELLED)
    assert not leg_transition_allowed(LegState.CANCELLED, LegState.WORKING)


def test_an_illegal_order_transition_is_refused_counted_and_reported() -> None:
    """An adoption journaled with the id of a bracket whose entry already filled would move the filled entry
    back to working: the table refuses it, the ledger counts it and reports it, the entry stays filled."""
    led = Ledger(250_000)
    led.apply(JournalEntry(1, T0, SignalDecided(SID, T0, "ES", Side.BUY, 1, OrderType.MARKET, None, 100, 200, 0.5,
                                                "p", "", (), IntentVerdict.TAKEN, "", "ES", 1, 1250)))
    entry_id = f"{SID}-{LegRole.ENTRY.value}"
    led.apply(JournalEntry(2, T0 + 1, OrderAcknowledged(entry_id)))
    led.apply(JournalEntry(3, T0 + 2, OrderFilled(f"{entry_id}.1", entry_id, "ES", Side.BUY, 1, 150, T0 + 2, 140,
                                                  "2023-11-14", 1250)))
    assert led.legs[entry_id].state == LegState.FILLED
    assert led.anomalies["illegal_leg_transition"] == 0
    effects = led.apply(JournalEntry(4, T0 + 3, PositionAdopted(SID, "ES", Side.BUY, 1, 150, 100, 1250, "2023-11-14",
                                                                "operator adopt")))
    assert led.anomalies["illegal_leg_transition"] == 1
    assert any(e.kind == "illegal" and "filled -> working" in e.detail for e in effects)
    assert led.legs[entry_id].state == LegState.FILLED
