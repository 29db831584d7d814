"""Position and P&L math: exact integers, FIFO, tick value captured at entry (audit C4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.execution.positions import Lot, PositionBook

fills = st.lists(
    st.tuples(st.integers(-5, 5).filter(bool), st.integers(20_000, 20_100)), min_size=1, max_size=40)


@given(fills, st.integers(19_900, 20_200), st.sampled_from([125, 1250, 500, 50]))
@settings(max_examples=300, deadline=None)
def test_total_pnl_equals_cash_flows_marked_to_market(seq: list[tuple[int, int]], mark: int, tv: int) -> None:
    """Realized + unrealized equals the sum of signed cash flows plus the position at the mark, exactly."""
    book = PositionBook()
    for q, px in seq:
        book.apply(q, px, tv)
    cash = -sum(q * px for q, px in seq) * tv
    net_qty = sum(q for q, _ in seq)
    assert book.qty == net_qty
    assert book.realized_cents + book.unrealized_cents(mark) == cash + net_qty * mark * tv
    assert all(isinstance(x, int) for x in (book.realized_cents, book.unrealized_cents(mark)))
    # All open lots are on one side of the market.
    assert len({lot.qty > 0 for lot in book.lots}) <= 1


@given(fills, st.sampled_from([125, 1250]))
@settings(max_examples=200, deadline=None)
def test_flat_book_realizes_everything(seq: list[tuple[int, int]], tv: int) -> None:
    book = PositionBook()
    for q, px in seq:
        book.apply(q, px, tv)
    closing = -book.qty
    if closing:
        book.apply(closing, 20_050, tv)
    assert book.qty == 0 and book.lots == []
    flows = seq + ([(closing, 20_050)] if closing else [])
    assert book.realized_cents == -sum(q * px for q, px in flows) * tv
    assert book.unrealized_cents(12345) == 0


@given(fills, st.lists(st.integers(0, 300), min_size=40, max_size=40))
@settings(max_examples=200, deadline=None)
def test_commissions_add_up_and_net_is_exact(seq: list[tuple[int, int]], comms: list[int]) -> None:
    book = PositionBook()
    total = 0
    for (q, px), c in zip(seq, comms, strict=False):
        book.apply(q, px, 125, c)
        total += c
    assert book.commission_cents == total
    assert book.net_realized_cents == book.realized_cents - total


@given(fills, st.integers(19_900, 20_200))
@settings(max_examples=200, deadline=None)
def test_json_round_trip_keeps_lots(seq: list[tuple[int, int]], mark: int) -> None:
    book = PositionBook()
    for q, px in seq:
        book.apply(q, px, 1250, 3)
    again = PositionBook.from_json(book.to_json(), book.realized_cents, book.commission_cents)
    assert again.to_json() == book.to_json()
    assert again.unrealized_cents(mark) == book.unrealized_cents(mark)


def test_fifo_matching_and_flip() -> None:
    book = PositionBook()
    book.apply(2, 100, 125)
    book.apply(1, 104, 125)
    assert book.apply(-2, 110, 125) == 2 * 10 * 125  # the two lots at 100 close first
    assert book.lots == [Lot(1, 104, 125)]
    assert book.apply(-3, 100, 125) == -4 * 125  # closes the 104 lot at a loss, then goes short 2
    assert book.lots == [Lot(-2, 100, 125)]
    assert book.unrealized_cents(98) == 2 * 2 * 125
    assert book.avg_entry_ticks() == 100


def test_tick_value_captured_at_entry_survives_a_contract_switch() -> None:
    """C4: an MES lot opened before a tier change to ES is still worth $1.25 a tick when it closes."""
    book = PositionBook()
    book.apply(1, 20_000, 125)  # MES
    book.apply(1, 20_000, 1250)  # a later ES lot (same family, same grid)
    assert book.unrealized_cents(20_004) == 4 * 125 + 4 * 1250
    assert book.apply(-1, 20_008, 1250) == 8 * 125  # FIFO: the MES lot, at its own tick value
    assert book.apply(-1, 20_008, 125) == 8 * 1250


def test_zero_quantity_fill_is_refused() -> None:
    with pytest.raises(ValueError):
        PositionBook().apply(0, 100, 125)
