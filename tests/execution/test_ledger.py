"""The ledger over random fill sequences (hypothesis): exact integer P&L, positions equal fills, a closed
bracket's P&L equals its cash flows, and a replay reproduces every projection row. Plus the daemon factory
and operator flatten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from support.exec_helpers import T0, S, System, intent, trade
from support.exec_helpers import settings as exec_settings
from tradebot.core.types import Side
from tradebot.execution.journal import IntentVerdict, JournalEntry, OrderFilled, SignalDecided
from tradebot.execution.ledger import Ledger
from tradebot.execution.model import BracketState, LegRole, OrderType, client_order_id

SID = "ES-1-abc"


def _records(side: int, qty: int, entries: list[tuple[int, int]], exits: list[tuple[str, int, int]],
             tick_value: int) -> list[JournalEntry]:
    recs = [JournalEntry(1, T0, SignalDecided(
        SID, T0, "ES", Side(side), qty, OrderType.MARKET, None, 0 if side > 0 else 10**6,
        10**6 if side > 0 else 0, 0.0, "", "", (), IntentVerdict.TAKEN, "", "ES", qty, tick_value))]
    exit_side = -side
    n: dict[str, int] = {}

    def add(role: LegRole, q: int, px: int, s: int) -> None:
        coid = client_order_id(SID, role)
        n[coid] = n.get(coid, 0) + 1
        recs.append(JournalEntry(len(recs) + 1, T0 + len(recs), OrderFilled(
            f"{coid}.{n[coid]}", coid, "ES", Side(s), q, px, T0 + len(recs), 37 * q, "2025-03-10", 0)))

    for q, px in entries:
        add(LegRole.ENTRY, q, px, side)
    for role, q, px in exits:
        add(LegRole.STOP if role == "S" else LegRole.TARGET, q, px, exit_side)
    return recs


@st.composite
def fill_plans(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]], list[tuple[str, int, int]], int]:
    side = draw(st.sampled_from([1, -1]))
    qty = draw(st.integers(1, 6))
    entry_sizes: list[int] = []
    left = qty
    while left and draw(st.booleans()) | (not entry_sizes):
        q = draw(st.integers(1, left))
        entry_sizes.append(q)
        left -= q
    entries = [(q, draw(st.integers(9_900, 10_100))) for q in entry_sizes]
    filled = sum(entry_sizes)
    exits: list[tuple[str, int, int]] = []
    left = draw(st.integers(0, filled))
    while left:
        q = draw(st.integers(1, left))
        exits.append((draw(st.sampled_from(["S", "T"])), q, draw(st.integers(9_800, 10_200))))
        left -= q
    return side, qty, entries, exits, draw(st.sampled_from([125, 1250, 500]))


@given(fill_plans(), st.integers(9_800, 10_200))
@settings(max_examples=300, deadline=None)
def test_random_fill_sequences_keep_exact_books(plan: tuple[Any, ...], mark: int) -> None:
    side, qty, entries, exits, tv = plan
    recs = _records(side, qty, entries, exits, tv)
    led = Ledger(250_000)
    for r in recs:
        led.apply(r)
    b = led.brackets[SID]
    e_qty, x_qty = sum(q for q, _ in entries), sum(q for _, q, _ in exits)
    assert b.entry_filled == e_qty and b.exit_filled == x_qty and b.position == e_qty - x_qty
    assert led.position_qty("ES") == side * (e_qty - x_qty)
    flows = -side * (sum(q * p for q, p in entries) - sum(q * p for _, q, p in exits)) * tv
    pos = led.positions["ES"]
    assert pos.realized_cents + pos.unrealized_cents(mark) == flows + side * (e_qty - x_qty) * mark * tv
    assert b.book.realized_cents == pos.realized_cents == led.daily["2025-03-10"].realized_cents
    comm = 37 * (e_qty + x_qty)
    assert led.daily["2025-03-10"].net_cents == pos.realized_cents - comm
    assert led.balance_cents == 250_000 + pos.realized_cents - comm
    if e_qty == qty and x_qty == e_qty:
        assert b.state == BracketState.CLOSED
        assert b.book.realized_cents == side * (b.exit_value - b.entry_value) * tv == flows
        assert led.daily["2025-03-10"].trades == 1
    elif x_qty < e_qty:
        assert b.state in (BracketState.FILLED, BracketState.PARTIALLY_FILLED)
        stop = led.legs[client_order_id(SID, LegRole.STOP)]
        assert stop.quantity - stop.filled_qty == b.position  # the stop always covers the open position
    assert led.anomalies["illegal_transition"] == 0
    again = Ledger(250_000)
    again.replay(recs)
    assert again.all_rows() == led.all_rows()


def test_operator_flatten_closes_everything_at_market(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", exec_settings())
    s.manager.on_market_event(trade(1, 1000))
    sid = s.manager.on_intent(intent(2, stop=990, target=1010, qty=2)).signal_id
    s.manager.on_market_event(trade(3, 1000))
    assert s.manager.flatten("operator", T0 + 4 * S) == 1
    assert s.manager.flatten("operator again", T0 + 4 * S) == 0  # already closing: not twice
    s.manager.on_market_event(trade(5, 1002, side=Side.SELL))  # a sell print: at the bid, where our exit sells
    b = s.manager.ledger.brackets[sid]
    assert (b.state, b.exit_reason, b.book.realized_cents) == (BracketState.CLOSED, "operator", 2 * 2 * 1250)
    assert s.broker.query_positions() == {}


def test_bars_only_session_through_the_manager_is_pessimistic(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", exec_settings())
    bar = 300 * S
    s.manager.on_bar("ES", T0, 1000, 1002, 998, 1000)
    sid = s.manager.on_intent(intent(1, stop=990, target=1010)).signal_id  # decided after the bar closed
    s.manager.on_bar("ES", T0 + bar, 1001, 1003, 999, 1002)  # market entry at this bar's open
    s.manager.on_bar("ES", T0 + 2 * bar, 1002, 1012, 988, 1000)  # touches target and stop: a loss
    b = s.manager.ledger.brackets[sid]
    assert (b.entry_value, b.exit_value, b.exit_reason) == (1001, 990 - 1, "stop")  # 1 tick stop slippage
    assert b.book.realized_cents == -12 * 1250
