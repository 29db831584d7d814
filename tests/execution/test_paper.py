"""Paper broker fill rules, on synthetic prints and on the real ES tape (Sierra -> DBN TBBO)."""

from __future__ import annotations

from pathlib import Path

import databento as db
import pytest

from support.exec_helpers import T0, S, book, trade
from tradebot.core.types import Side, Trade
from tradebot.execution.journal import (
    CancelRequested,
    IntentVerdict,
    JournalEntry,
    OrderFilled,
    ProtectRequested,
    SignalDecided,
)
from tradebot.execution.model import (
    Ack,
    BracketRequest,
    Cancelled,
    Fill,
    FlattenRequest,
    LegState,
    Modified,
    OrderType,
    Reject,
    StatusReport,
    StopRequest,
)
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.feeds.dbn_convert import DbnConverter, SymbolMap, iter_store
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
FEE = 190  # ES: 50 commission + 140 fees per contract per side


def broker(**kw: object) -> PaperBroker:
    cfg = PaperConfig(**{"stop_slippage_ticks": 0, "fees_cents": {"ES": FEE, "MES": 87}, **kw})  # type: ignore[arg-type]
    return PaperBroker(cfg, data_symbols=["ES"])


def bracket(side: Side = Side.BUY, *, qty: int = 1, entry_type: OrderType = OrderType.MARKET,
            entry: int | None = None, stop: int = 990, target: int = 1010, sid: str = "ES-1-abc",
            symbol: str = "ES") -> BracketRequest:
    return BracketRequest(sid, symbol, side, qty, entry_type, entry, stop, target, T0)


def fills(events: list[object]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def test_market_entry_fills_on_the_next_trade_then_target_through() -> None:
    b = broker()
    b.submit_bracket(bracket())
    assert [type(e) for e in b.poll_events()] == [Ack]
    b.on_market_event(trade(1, 1000))
    (f,) = fills(b.poll_events())
    assert (f.fill_id, f.price, f.quantity, f.commission_cents, f.side) == ("ES-1-abc-E.1", 1000, 1, FEE, Side.BUY)
    b.on_market_event(trade(2, 1010))  # at the target: not through
    assert b.poll_events() == []
    b.on_market_event(trade(3, 1011))
    evs = b.poll_events()
    (t,) = fills(evs)
    assert (t.client_order_id, t.price, t.side) == ("ES-1-abc-T", 1010, Side.SELL)  # limit price, never better
    assert [e.client_order_id for e in evs if isinstance(e, Cancelled)] == ["ES-1-abc-S"]  # OCO
    assert b.query_positions() == {}


def test_market_order_on_a_book_update_takes_the_far_side_plus_slippage() -> None:
    b = broker(market_slippage_ticks=1)
    b.submit_bracket(bracket(side=Side.SELL, stop=1010, target=990))
    b.poll_events()
    b.on_market_event(book(1, 999, 1001))
    (f,) = fills(b.poll_events())
    assert f.price == 999 - 1 and f.side == Side.SELL


@pytest.mark.parametrize(("side", "print_side", "expected"), [
    (Side.BUY, Side.BUY, 1000), (Side.BUY, Side.SELL, 1001), (Side.BUY, Side.UNKNOWN, 1001),
    (Side.SELL, Side.SELL, 1000), (Side.SELL, Side.BUY, 999), (Side.SELL, Side.UNKNOWN, 999)])
def test_market_order_on_trades_only_data_takes_the_adverse_side_of_the_print(side: Side, print_side: Side,
                                                                             expected: int) -> None:
    """No quote ever seen: a print whose aggressor was on the other side traded at the other side's best, so our
    order pays one tick more (the spread is at least a tick); an unknown aggressor counts as the other side."""
    b = broker(market_slippage_ticks=1)
    stop, target = (990, 1010) if side == Side.BUY else (1010, 990)
    b.submit_bracket(bracket(side=side, stop=stop, target=target))
    b.poll_events()
    b.on_market_event(trade(1, 1000, side=print_side))
    (f,) = fills(b.poll_events())
    assert f.price == expected + (1 if side == Side.BUY else -1)


def test_market_order_on_a_trade_pays_the_prevailing_quote_not_the_print() -> None:
    """A buy meeting a sell print (at the bid, 999) still pays the ask of the latest book (1001): the quote the
    print traded against. The same for a sell meeting a buy print."""
    for side, expected in ((Side.BUY, 1001), (Side.SELL, 999)):
        b = broker()
        b.on_market_event(book(0.5, 999, 1001))  # before the order: the prevailing quote
        stop, target = (990, 1010) if side == Side.BUY else (1010, 990)
        b.submit_bracket(bracket(side=side, stop=stop, target=target))
        b.poll_events()
        b.on_market_event(trade(1, 999 if side == Side.BUY else 1001, side=Side.SELL if side == Side.BUY else Side.BUY))
        (f,) = fills(b.poll_events())
        assert f.price == expected


def test_market_order_never_trades_inside_the_event_group_that_produced_it() -> None:
    """A decision stamped at a bar's end T, sent while the first event after T (time X, a TBBO record: quote then
    print at the same nanosecond) is being processed, is armed at X: the print of that record cannot fill it;
    the next record's quote does."""
    b = broker()
    x = T0 + 5 * 10**9
    b.on_market_event(book(5, 999, 1001))  # the broker sees the record's quote first
    b.submit_bracket(BracketRequest("ES-1-abc", "ES", Side.BUY, 1, OrderType.MARKET, None, 990, 1010, T0, x))
    b.poll_events()
    b.on_market_event(trade(5, 999, side=Side.SELL))  # same record, same nanosecond: already seen by the decision
    assert fills(b.poll_events()) == []
    b.on_market_event(book(6, 1000, 1002))
    (f,) = fills(b.poll_events())
    assert (f.price, f.ts_ns) == (1002, T0 + 6 * 10**9)


def test_limit_at_the_price_does_not_fill_under_the_through_rule() -> None:
    b = broker(limit_fill_rule="through")
    b.submit_bracket(bracket(entry_type=OrderType.LIMIT, entry=1000))
    b.poll_events()
    for i in range(5):
        b.on_market_event(trade(i + 1, 1000, size=50))
    assert fills(b.poll_events()) == []
    b.on_market_event(trade(6, 999))
    (f,) = fills(b.poll_events())
    assert f.price == 1000


def test_limit_at_the_price_fills_after_the_queue_ahead_with_partials() -> None:
    b = broker(limit_fill_rule="queue", queue_ahead_contracts=10)
    b.submit_bracket(bracket(qty=3, entry_type=OrderType.LIMIT, entry=1000))
    b.poll_events()
    b.on_market_event(trade(1, 1000, size=6))  # 4 still ahead of us
    assert fills(b.poll_events()) == []
    b.on_market_event(trade(2, 1000, size=5))  # 4 for the queue, 1 for us
    (f1,) = fills(b.poll_events())
    assert (f1.quantity, f1.price, f1.fill_id) == (1, 1000, "ES-1-abc-E.1")
    assert {o.client_order_id: o.state for o in b.query_orders()}["ES-1-abc-E"] == LegState.PARTIALLY_FILLED
    b.on_market_event(trade(3, 1000, size=5))  # the other 2
    (f2,) = fills(b.poll_events())
    assert (f2.quantity, f2.fill_id, f2.commission_cents) == (2, "ES-1-abc-E.2", 2 * FEE)
    assert b.query_positions() == {"ES": 3}
    views = {o.client_order_id: o for o in b.query_orders()}
    assert views["ES-1-abc-S"].quantity == 3 and views["ES-1-abc-S"].state == LegState.WORKING


@pytest.mark.parametrize("slip", [0, 1, 2])
def test_stop_fills_with_configured_slippage(slip: int) -> None:
    b = broker(stop_slippage_ticks=slip)
    b.submit_bracket(bracket(stop=990, target=1010))
    b.on_market_event(trade(1, 1000))
    b.on_market_event(trade(2, 991))
    b.poll_events()
    b.on_market_event(trade(3, 990))
    (f,) = fills(b.poll_events())
    assert (f.client_order_id, f.price) == ("ES-1-abc-S", 990 - slip)


def test_stop_through_a_gap_fills_at_the_print_plus_slippage() -> None:
    b = broker(stop_slippage_ticks=1)
    b.submit_bracket(bracket(side=Side.SELL, stop=1010, target=990))
    b.on_market_event(trade(1, 1000))
    b.poll_events()
    b.on_market_event(trade(2, 1014))  # gapped 4 ticks past the buy stop
    (f,) = fills(b.poll_events())
    assert (f.side, f.price) == (Side.BUY, 1015)


def test_stop_entry_elects_on_a_print_at_the_stop() -> None:
    b = broker(stop_slippage_ticks=1)
    b.submit_bracket(bracket(entry_type=OrderType.STOP, entry=1004, stop=996, target=1020))
    b.poll_events()
    b.on_market_event(trade(1, 1003))
    assert fills(b.poll_events()) == []
    b.on_market_event(trade(2, 1004))
    (f,) = fills(b.poll_events())
    assert (f.client_order_id, f.price) == ("ES-1-abc-E", 1005)


def test_children_are_not_evaluated_on_the_entry_print() -> None:
    """A stop entry filled with slippage beyond the target must not close on the same print."""
    b = broker(stop_slippage_ticks=0)
    b.submit_bracket(bracket(entry_type=OrderType.STOP, entry=1004, stop=1000, target=1005))
    b.poll_events()
    b.on_market_event(trade(1, 1007))
    assert [f.client_order_id for f in fills(b.poll_events())] == ["ES-1-abc-E"]
    b.on_market_event(trade(2, 1007))
    assert [f.client_order_id for f in fills(b.poll_events())] == ["ES-1-abc-T"]


def test_partial_target_shrinks_the_stop_oco() -> None:
    b = broker(limit_fill_rule="queue", queue_ahead_contracts=0)
    b.submit_bracket(bracket(qty=2))
    b.on_market_event(trade(1, 1000))
    b.poll_events()
    b.on_market_event(trade(2, 1010, size=1))  # one contract at the target
    (f,) = fills(b.poll_events())
    assert f.quantity == 1
    views = {o.client_order_id: o for o in b.query_orders()}
    assert views["ES-1-abc-S"].quantity == 1 and views["ES-1-abc-S"].state == LegState.WORKING
    b.on_market_event(trade(3, 990))
    evs = b.poll_events()
    (s,) = fills(evs)
    assert (s.client_order_id, s.quantity) == ("ES-1-abc-S", 1)
    assert [e.client_order_id for e in evs if isinstance(e, Cancelled)] == ["ES-1-abc-T"]
    assert b.query_positions() == {}


def test_bar_touching_stop_and_target_is_a_loss() -> None:
    b = broker()
    b.submit_bracket(bracket(stop=990, target=1010))
    b.on_bar("ES", T0 + 60, 1000, 1001, 999, 1000)
    b.poll_events()
    b.on_bar("ES", T0 + 120, 1000, 1015, 985, 1000)  # both touched: pessimistic
    evs = b.poll_events()
    (f,) = fills(evs)
    assert (f.client_order_id, f.price) == ("ES-1-abc-S", 990)
    assert [e.client_order_id for e in evs if isinstance(e, Cancelled)] == ["ES-1-abc-T"]


def test_bar_entry_then_only_the_stop_on_the_same_bar() -> None:
    b = broker()
    b.submit_bracket(bracket(entry_type=OrderType.LIMIT, entry=1000, stop=995, target=1003))
    b.poll_events()
    b.on_bar("ES", T0 + 60, 1002, 1004, 999, 1003)  # entry through, target touched: target ignored
    assert [f.client_order_id for f in fills(b.poll_events())] == ["ES-1-abc-E"]
    b2 = broker()
    b2.submit_bracket(bracket(entry_type=OrderType.LIMIT, entry=1000, stop=995, target=1003))
    b2.poll_events()
    b2.on_bar("ES", T0 + 60, 1002, 1004, 994, 1003)  # entry and stop inside one bar: the stop counts
    assert [f.client_order_id for f in fills(b2.poll_events())] == ["ES-1-abc-E", "ES-1-abc-S"]


def test_bar_limit_needs_trade_through_and_market_fills_at_open() -> None:
    b = broker(market_slippage_ticks=1)
    b.submit_bracket(bracket(entry_type=OrderType.LIMIT, entry=1000, stop=995, target=1010))
    b.poll_events()
    b.on_bar("ES", T0 + 60, 1002, 1004, 1000, 1003)  # low == limit: no fill on bars
    assert fills(b.poll_events()) == []
    b.submit_bracket(bracket(sid="ES-2-def", stop=995, target=1010))
    b.poll_events()
    b.on_bar("ES", T0 + 120, 1003, 1004, 1001, 1003)
    (f,) = fills(b.poll_events())
    assert (f.client_order_id, f.price) == ("ES-2-def-E", 1004)


def test_flatten_cancels_legs_and_exits_at_market() -> None:
    b = broker()
    b.submit_bracket(bracket(qty=2))
    b.on_market_event(trade(1, 1000))
    b.poll_events()
    b.flatten(FlattenRequest("ES-1-abc", "ES", "ES-1-abc-X1", Side.SELL, 2,
                             ("ES-1-abc-E", "ES-1-abc-S", "ES-1-abc-T"), "test", T0 + 2 * 10**9))
    evs = b.poll_events()
    assert sorted(e.client_order_id for e in evs if isinstance(e, Cancelled)) == ["ES-1-abc-S", "ES-1-abc-T"]
    assert [e.client_order_id for e in evs if isinstance(e, Ack)] == ["ES-1-abc-X1"]
    b.on_market_event(trade(3, 1003, side=Side.SELL))  # a sell print: at the bid, where our sell exit goes
    (f,) = fills(b.poll_events())
    assert (f.fill_id, f.quantity, f.price, f.commission_cents) == ("ES-1-abc-X1.1", 2, 1003, 2 * FEE)
    assert b.query_positions() == {}


def test_rejects_inconsistent_brackets_and_answers_status_and_modify() -> None:
    b = broker()
    b.submit_bracket(bracket(stop=1010, target=990))  # long with the stop above the target
    (r,) = b.poll_events()
    assert isinstance(r, Reject) and "stop" in r.reason
    b.request_status("nope")
    (st,) = b.poll_events()
    assert isinstance(st, StatusReport) and st.state is None
    b.submit_bracket(bracket(sid="ES-2-x"))
    b.on_market_event(trade(1, 1000))
    b.poll_events()
    b.modify_stop("ES-2-x-S", 995)
    (m,) = b.poll_events()
    assert isinstance(m, Modified) and m.stop_price == 995
    b.on_market_event(trade(2, 995))
    assert fills(b.poll_events())[0].price == 995
    b.submit_bracket(bracket(sid="ES-2-x"))  # a re-sent bracket is answered, not executed twice
    (st2,) = b.poll_events()
    assert isinstance(st2, StatusReport) and st2.state == LegState.FILLED


def test_micro_orders_are_driven_by_the_mini_feed() -> None:
    b = broker()
    b.submit_bracket(bracket(symbol="MES", sid="ES-9-m"))
    b.poll_events()
    b.on_market_event(trade(1, 1000, symbol="ES"))
    (f,) = fills(b.poll_events())
    assert (f.symbol, f.commission_cents) == ("MES", 87)


def test_restore_from_journal_records_rebuilds_orders_and_positions() -> None:
    live = broker()
    recs = [JournalEntry(1, T0, SignalDecided("ES-1-abc", T0, "ES", Side.BUY, 2, OrderType.MARKET, None, 990, 1010,
                                              0.5, "p", "", (), IntentVerdict.TAKEN, "", "ES", 2, 1250))]
    live.submit_bracket(bracket(qty=2))
    live.on_market_event(trade(1, 1000))
    evs = live.poll_events()
    for i, f in enumerate(fills(evs), start=2):
        recs.append(JournalEntry(i, f.ts_ns, OrderFilled(f.fill_id, f.client_order_id, f.symbol, f.side, f.quantity,
                                                     f.price, f.ts_ns, f.commission_cents, "2025-03-10", 1250)))
    restored = broker()
    restored.restore(recs)
    assert restored.poll_events() == []
    assert restored.query_positions() == live.query_positions() == {"ES": 2}
    assert sorted(restored.query_orders(), key=str) == sorted(live.query_orders(), key=str)
    # Both continue identically: the same print closes both with the same fill id.
    for br in (live, restored):
        br.on_market_event(trade(5, 1011))
    assert fills(live.poll_events()) == fills(restored.poll_events())


def test_restore_replays_a_re_placed_stop() -> None:
    """A stop re-placed by the no-naked-position rule (cancel of the bracket's stop, then ``-S2``) is journaled as
    typed requests; a broker restored from them holds the same orders and stops out identically."""
    live = broker()
    sid = "ES-1-abc"
    live.submit_bracket(bracket())
    live.on_market_event(trade(1, 1000))
    (entry_fill,) = fills(live.poll_events())
    ts = T0 + 2 * S
    live.cancel(f"{sid}-S", ts, "re-placing the stop")
    live.place_stop(StopRequest(sid, "ES", f"{sid}-S2", Side.SELL, 1, 995, ts))
    live.poll_events()
    f = entry_fill
    recs = [
        JournalEntry(1, T0, SignalDecided(sid, T0, "ES", Side.BUY, 1, OrderType.MARKET, None, 990, 1010, 0.5, "p", "",
                                          (), IntentVerdict.TAKEN, "", "ES", 1, 1250)),
        JournalEntry(2, f.ts_ns, OrderFilled(f.fill_id, f.client_order_id, f.symbol, f.side, f.quantity, f.price,
                                             f.ts_ns, f.commission_cents, "2025-03-10", 1250)),
        JournalEntry(3, ts, CancelRequested(f"{sid}-S", "re-placing the stop")),
        JournalEntry(4, ts, ProtectRequested(sid, "ES", f"{sid}-S2", Side.SELL, 1, 995, "stop rejected",
                                             (f"{sid}-S",))),
    ]
    restored = broker()
    restored.restore(recs)
    assert restored.poll_events() == []
    assert sorted(restored.query_orders(), key=str) == sorted(live.query_orders(), key=str)
    assert {o.client_order_id: o.state for o in restored.query_orders()}[f"{sid}-S2"] == LegState.WORKING
    for br in (live, restored):
        br.on_market_event(trade(5, 994, side=Side.SELL))
    stopped = fills(live.poll_events())
    assert [x.client_order_id for x in stopped] == [f"{sid}-S2"]
    assert stopped == fills(restored.poll_events())
    assert live.anomalies == restored.anomalies == {}


def _real_trades() -> list[Trade]:
    store = db.DBNStore.from_file(REAL_TBBO)
    v = Validator(symbols=["ES"])
    out = [v.validate(r) for r in iter_store(store, DbnConverter(SymbolMap.from_store(store)))]
    return [e for e in out if isinstance(e, Trade)]


def test_real_tape_limit_and_stop_fills_match_an_independent_scan() -> None:
    tape = _real_trades()
    assert len(tape) > 2000
    first = tape[0].price
    # Long limit entry 4 ticks under the first print, stop 4 under that, target 8 above: recompute by scanning.
    entry, stop, target = first - 4, first - 8, first + 4
    t0 = tape[0].ts_event  # placed as the first print arrives: only strictly later prints can fill it
    b = broker(stop_slippage_ticks=1)
    b.submit_bracket(BracketRequest("ES-r-1", "ES", Side.BUY, 1, OrderType.LIMIT, entry, stop, target, t0))
    got: list[Fill] = []
    for t in tape:
        b.on_market_event(t)
        got += fills(b.poll_events())
    i_entry = next(i for i, t in enumerate(tape) if t.ts_event > t0 and t.price < entry)  # strictly through
    t_entry = tape[i_entry].ts_event
    exit_kind, exit_px, i_exit = None, None, None
    for j in range(i_entry + 1, len(tape)):
        p = tape[j].price
        if tape[j].ts_event <= t_entry:
            continue  # the rest of the entry's own sweep
        if p <= stop:
            exit_kind, exit_px, i_exit = "S", min(stop, p) - 1, j
            break
        if p > target:
            exit_kind, exit_px, i_exit = "T", target, j
            break
    assert got[0].price == entry and got[0].ts_ns == tape[i_entry].ts_event
    assert exit_kind is not None and i_exit is not None  # this minute of 2022-01-24 is volatile enough for both
    assert len(got) == 2
    assert got[1].client_order_id == f"ES-r-1-{exit_kind}"
    assert (got[1].price, got[1].ts_ns) == (exit_px, tape[i_exit].ts_event)
