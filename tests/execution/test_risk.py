"""Risk rules through the manager and the paper broker: daily limits, halts across restarts, auto-flatten,
capital tiers, margin protection, order-flow exit signals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from support.exec_helpers import T0, S, System, intent, settings, trade
from tradebot.core.calendar import ET, local_ns
from tradebot.core.orders import EntryType, OrderIntent, make_signal_id
from tradebot.core.types import Side, SideRule, Trade
from tradebot.execution.model import BracketState, HaltKind, TradingState

DAY2 = T0 + 86_400 * S  # Tuesday 2025-03-11, same wall time


def at_et(day: dt.date, hh: int, mm: int, ss: int = 0) -> int:
    return local_ns(day, dt.time(hh, mm, ss), ET)


def tr(ts: int, price: int, symbol: str = "ES") -> Trade:
    return Trade(symbol, ts, ts, price, 1, Side.BUY, SideRule.EXCHANGE)


def open_long(s: System, i: float = 1, qty: int = 1, stop: int = 980, target: int = 1040) -> str:
    s.manager.on_market_event(trade(i, 1000))
    v = s.manager.on_intent(intent(i + 0.5, stop=stop, target=target, qty=qty))
    assert v.taken, v.reason
    s.manager.on_market_event(trade(i + 1, 1000))
    assert s.manager.ledger.brackets[v.signal_id].state == BracketState.FILLED
    return v.signal_id


def intent_at(ts: int) -> OrderIntent:
    """A long market intent at an absolute time (tests spanning days)."""
    return OrderIntent(make_signal_id("ES", ts, "p"), "ES", Side.BUY, 1, EntryType.MARKET, None, 980, 1040, ts, 0.9,
                       "p")


def kinds(s: System) -> list[str]:
    return [n.kind for n in s.notes]


def test_loss_limit_on_open_pnl_halts_flattens_and_notifies(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(DAILY_LOSS_LIMIT=-100))
    sid = open_long(s)
    s.manager.on_market_event(trade(5, 993))  # -7 ticks * $12.50 - $1.90 = -$89.40: inside the limit
    assert s.manager.trading_state == TradingState.ACTIVE
    s.manager.on_market_event(trade(6, 992))  # -$101.90 with commission: limit
    t = s.manager.ledger.trading
    assert (t.state, t.kind) == (TradingState.HALTED, HaltKind.LIMIT) and "loss limit" in t.reason
    assert "loss_limit_hit" in kinds(s)
    s.manager.on_market_event(trade(7, 991, side=Side.SELL))  # the flatten's market sell fills at the bid
    b = s.manager.ledger.brackets[sid]
    assert b.state == BracketState.CLOSED and b.exit_reason == "loss_limit"
    assert b.book.realized_cents == -9 * 1250
    v = s.manager.on_intent(intent(8, stop=980, target=1040))
    assert not v.taken and v.reason.startswith("trading halted")
    outbox = s.store.pending_notifications()
    assert {"loss_limit_hit", "trade_closed"} <= {o.kind for o in outbox}


def test_profit_target_halts_new_entries(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(DAILY_PROFIT_TARGET=100, limits_include_unrealized=False))
    open_long(s, target=1010)
    s.manager.on_market_event(trade(5, 1015))  # unrealized +$187.50: ignored by this configuration
    assert s.manager.trading_state == TradingState.HALTED  # ... but the target filled on this print (through)
    assert s.manager.ledger.day_stats("2025-03-10").net_cents == 10 * 1250 - 2 * 190
    assert "profit_target_hit" in kinds(s)


def test_limits_ignore_open_pnl_when_configured(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(DAILY_LOSS_LIMIT=-100, limits_include_unrealized=False))
    open_long(s)
    s.manager.on_market_event(trade(5, 985))  # -$187.50 open, realized only -$1.90
    assert s.manager.trading_state == TradingState.ACTIVE


def test_operator_halt_survives_restart_until_resumed(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(trade(1, 1000))
    s.manager.halt("checking something", T0 + 2 * S)
    del s  # crash: nothing closed
    s2 = System(tmp_path / "t.db", settings(), now_ns=T0 + 3 * S)
    t = s2.manager.ledger.trading
    assert (t.state, t.kind, t.reason) == (TradingState.HALTED, HaltKind.OPERATOR, "checking something")
    assert not s2.manager.on_intent(intent(4, stop=980, target=1040)).taken
    s2.manager.on_market_event(tr(DAY2, 1000))  # a new trading day does not clear an operator halt
    assert s2.manager.trading_state == TradingState.HALTED
    s2.manager.resume(DAY2 + S)
    s3 = s2.reopen(DAY2 + 2 * S)
    assert s3.manager.trading_state == TradingState.ACTIVE
    assert s3.manager.on_intent(intent_at(DAY2 + 3 * S)).taken


def test_limit_halt_clears_next_day_error_halt_does_not(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(DAILY_LOSS_LIMIT=-100))
    open_long(s)
    s.manager.on_market_event(trade(5, 990))
    s.manager.on_market_event(trade(6, 990))
    assert s.manager.ledger.trading.kind == HaltKind.LIMIT
    s2 = s.reopen(T0 + 10 * S)
    assert s2.manager.ledger.trading.kind == HaltKind.LIMIT  # persisted across the restart
    s2.manager.on_market_event(tr(DAY2, 1000))
    assert s2.manager.trading_state == TradingState.ACTIVE
    assert any(n.title == "Trading resumed" for n in s2.notes)
    s2.manager.halt("broker mismatch", DAY2 + S, kind=HaltKind.ERROR)
    s2.manager.on_market_event(tr(DAY2 + 86_400 * S, 1000))
    assert s2.manager.ledger.trading.kind == HaltKind.ERROR


def test_auto_flatten_at_1555_is_idempotent_and_blocks_entries(tmp_path: Path) -> None:
    day = dt.date(2025, 3, 10)
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(tr(at_et(day, 15, 50), 1000))
    v = s.manager.on_intent(intent_at(at_et(day, 15, 50, 1)))
    s.manager.on_market_event(tr(at_et(day, 15, 50, 2), 1000))
    assert s.manager.ledger.brackets[v.signal_id].state == BracketState.FILLED
    assert not s.manager.auto_flatten(at_et(day, 15, 54, 59))
    assert s.manager.auto_flatten(at_et(day, 15, 55))
    assert not s.manager.auto_flatten(at_et(day, 15, 56))  # once per day
    t = s.manager.ledger.trading
    assert (t.state, t.kind, t.auto_flatten_day) == (TradingState.REDUCING, HaltKind.EOD, "2025-03-10")
    assert "auto_flatten" in kinds(s)
    s.manager.on_market_event(tr(at_et(day, 15, 55, 1), 1001))
    assert s.manager.ledger.brackets[v.signal_id].exit_reason == "auto_flatten"
    assert not s.manager.on_intent(intent_at(at_et(day, 15, 57))).taken
    s2 = s.reopen(at_et(day, 15, 58))
    assert not s2.manager.auto_flatten(at_et(day, 15, 59))  # persisted: not twice after a restart
    s2.manager.on_market_event(tr(at_et(dt.date(2025, 3, 11), 9, 31), 1000))
    assert s2.manager.trading_state == TradingState.ACTIVE
    assert s2.manager.on_intent(intent_at(at_et(dt.date(2025, 3, 11), 9, 32))).taken


def test_auto_flatten_happens_on_event_time_and_before_an_early_close(tmp_path: Path) -> None:
    day = dt.date(2025, 11, 28)  # equity close 13:15 ET
    s = System(tmp_path / "t.db", settings(), now_ns=at_et(day, 12, 0))
    s.manager.on_market_event(tr(at_et(day, 13, 0), 1000))
    v = s.manager.on_intent(intent_at(at_et(day, 13, 0, 1)))
    s.manager.on_market_event(tr(at_et(day, 13, 0, 2), 1000))
    s.manager.on_market_event(tr(at_et(day, 13, 9, 59), 1000))
    assert s.manager.ledger.trading.auto_flatten_day is None
    s.manager.on_market_event(tr(at_et(day, 13, 10), 1002))  # five minutes before the early close
    assert s.manager.ledger.trading.auto_flatten_day == "2025-11-28"
    s.manager.on_market_event(tr(at_et(day, 13, 10, 1), 1003))
    b = s.manager.ledger.brackets[v.signal_id]
    assert (b.state, b.exit_reason) == (BracketState.CLOSED, "auto_flatten")


def test_tiers_choose_contract_and_size_and_promotion_is_notified(tmp_path: Path) -> None:
    cfg = settings(tiers_enabled=True, starting_balance=3490)
    s = System(tmp_path / "t.db", cfg)
    s.manager.on_market_event(trade(1, 1000))
    v = s.manager.on_intent(intent(2, stop=980, target=1040, qty=3))
    assert (v.symbol, v.quantity) == ("MES", 2)  # Tier 1 MES Building, max 2
    s.manager.on_market_event(trade(3, 1000))
    s.manager.on_market_event(trade(4, 1041))  # +40 ticks * 2 * $1.25 = $100 - 4 * $0.87
    b = s.manager.ledger.brackets[v.signal_id]
    assert b.state == BracketState.CLOSED and b.tick_value_cents == 125
    assert b.net_cents == 40 * 2 * 125 - 4 * 87
    assert s.manager.ledger.balance_cents == 349_000 + b.net_cents
    # The balance crossed $3,500, but the tier follows the account at the trading-day boundary: the rest of
    # today still trades Tier 1 (MES x2).
    t = s.manager.ledger.trading
    assert (t.tier_number, t.tier_name, t.tier_symbol) == (1, "MES Building", "MES")
    assert not [n for n in s.notes if n.kind == "tier_change"]
    v1 = s.manager.on_intent(intent(5, stop=980, target=1040, qty=3, tag="1"))
    assert (v1.symbol, v1.quantity) == ("MES", 2)
    s.manager.flatten("test", T0 + 6 * S)
    s.manager.on_market_event(trade(7, 1000))
    # The next trading day starts at 17:00 CT (22:00 UTC in March): Tier 2 from its first event.
    next_day = 9 * 3600
    s.manager.on_market_event(trade(next_day, 1000))
    t = s.manager.ledger.trading
    assert (t.trading_day, t.tier_number, t.tier_name, t.tier_symbol) == ("2025-03-11", 2, "ES Entry", "ES")
    (note,) = [n for n in s.notes if n.kind == "tier_change"]
    assert dict(note.fields)["from"] == "MES Building" and dict(note.fields)["direction"] == "promoted"
    v2 = s.manager.on_intent(intent(next_day + 1, stop=980, target=1040, qty=3, tag="2"))
    assert (v2.symbol, v2.quantity) == ("ES", 1)
    assert s.store.query("SELECT tier_name FROM trading_state")[0]["tier_name"] == "ES Entry"


def test_open_position_keeps_its_tick_value_across_a_tier_change(tmp_path: Path) -> None:
    """C4: an MES position opened in Tier 1 closes at $1.25/tick after the account moved to an ES tier."""
    s = System(tmp_path / "t.db", settings(tiers_enabled=True, starting_balance=2500))
    s.manager.on_market_event(trade(1, 1000))
    v = s.manager.on_intent(intent(2, stop=980, target=1040, qty=2))
    s.manager.on_market_event(trade(3, 1000))
    assert v.symbol == "MES"
    # Restart after a deposit: the balance now reaches Tier 5 (ES Full).
    s2 = System(tmp_path / "t.db", settings(tiers_enabled=True, starting_balance=12000), now_ns=T0 + 4 * S)
    assert s2.manager.ledger.trading.tier_name == "ES Full"
    assert any(n.kind == "tier_change" for n in s2.notes)
    s2.manager.on_market_event(trade(5, 1041))
    b = s2.manager.ledger.brackets[v.signal_id]
    assert b.state == BracketState.CLOSED and b.book.realized_cents == 40 * 2 * 125
    assert s2.manager.ledger.positions["MES"].realized_cents == 40 * 2 * 125
    v2 = s2.manager.on_intent(intent(6, stop=980, target=1040, qty=9, tag="b"))
    assert (v2.symbol, v2.quantity) == ("ES", 4)
    assert s2.manager.ledger.brackets[v2.signal_id].tick_value_cents == 1250


def test_margin_above_limit_blocks_the_day_and_is_rechecked_next_day(tmp_path: Path) -> None:
    margins = {"2025-03-10": 50_000, "2025-03-11": 30_000}  # ES $500 (FOMC-like), then $300
    s = System(tmp_path / "t.db", settings())
    s.manager.margin_provider = lambda sym, day: margins.get(day.isoformat())
    s.manager.on_market_event(trade(1, 1000))
    t = s.manager.ledger.trading
    assert (t.state, t.kind) == (TradingState.HALTED, HaltKind.MARGIN) and "$500.00 > $400.00" in t.reason
    (note,) = [n for n in s.notes if n.kind == "margin_high"]
    assert dict(note.fields)["symbols"] == {"ES": "$500.00 > $400.00"}
    assert not s.manager.on_intent(intent(2, stop=980, target=1040)).taken
    rows = s.store.query("SELECT * FROM margin_checks")
    assert rows == [{"trading_day": "2025-03-10", "symbol": "ES", "margin_cents": 50_000, "limit_cents": 40_000,
                     "ok": 0, "source": "broker"}]
    s.manager.on_market_event(tr(DAY2, 1000))
    assert s.manager.trading_state == TradingState.ACTIVE
    assert s.manager.on_intent(intent_at(DAY2 + S)).taken
    again = s.manager.check_margin(dt.date(2025, 3, 11))
    assert [r.ok for r in again] == [True]


def test_margin_override_and_general_limits(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(tiers_enabled=True, margin_overrides="MES:50"))
    s.manager.on_market_event(trade(1, 1000))
    assert s.manager.ledger.trading.kind == HaltKind.MARGIN  # MES $50 > MES_MARGIN_LIMIT $40
    s2 = System(tmp_path / "u.db", settings(margin_limits="NQ:900"), symbols=("NQ",))
    res = s2.manager.check_margin(dt.date(2025, 3, 10))
    assert [(r.symbol, r.margin_cents, r.limit_cents, r.ok, r.source) for r in res] == [
        ("NQ", 100_000, 90_000, False, "default")]


def test_exit_signal_alert_mode_notifies_only(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    sid = open_long(s)
    assert s.manager.on_exit_signal("ES", T0 + 5 * S, "3 large sellers in 2 min") == "alert"
    (note,) = [n for n in s.notes if n.kind == "exit_signal"]
    assert dict(note.fields)["decision"] == "alert"
    s.manager.on_market_event(trade(6, 1001))
    assert s.manager.ledger.brackets[sid].state == BracketState.FILLED
    rows = s.store.query("SELECT symbol, reason, decision FROM decisions WHERE kind = 'exit_signal'")
    assert rows == [{"symbol": "ES", "reason": "3 large sellers in 2 min", "decision": "alert"}]


def test_exit_signal_follows_the_position_side(tmp_path: Path) -> None:
    """Large sellers threaten a long, large buyers a short: a signal for the other side leaves the position be."""
    s = System(tmp_path / "t.db", settings(ORDER_FLOW_EXIT_MODE="auto"))
    sid = open_long(s)
    assert s.manager.on_exit_signal("ES", T0 + 5 * S, "3 large buyers", threatens="short") == "no_position"
    assert not [n for n in s.notes if n.kind == "exit_signal"]
    assert s.manager.on_exit_signal("ES", T0 + 6 * S, "3 large sellers", threatens="long") == "auto_exit"
    s.manager.on_market_event(trade(7, 1003))
    assert s.manager.ledger.brackets[sid].exit_reason == "exit_signal"


def test_exit_signal_auto_mode_closes_at_market(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(ORDER_FLOW_EXIT_MODE="auto"))
    sid = open_long(s)
    assert s.manager.on_exit_signal("MES", T0 + 5 * S, "red burst") == "auto_exit"  # same family as ES
    s.manager.on_market_event(trade(6, 1003, side=Side.SELL))
    b = s.manager.ledger.brackets[sid]
    assert (b.state, b.exit_reason, b.book.realized_cents) == (BracketState.CLOSED, "exit_signal", 3 * 1250)
    assert s.manager.on_exit_signal("ES", T0 + 7 * S, "again") == "no_position"
    assert [r["decision"] for r in s.store.query("SELECT decision FROM decisions WHERE kind = 'exit_signal' "
                                                  "ORDER BY ts_ns")] == ["auto_exit", "no_position"]


def test_reducing_blocks_entries_allows_exits_and_a_broken_notifier_never_blocks(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings(ORDER_FLOW_EXIT_MODE="auto"))
    sid = open_long(s)

    def boom(_: object) -> None:
        raise RuntimeError("webhook down")

    s.manager.on_notification = boom
    s.manager.reduce("winding down", T0 + 4 * S)
    assert not s.manager.on_intent(intent(5, stop=980, target=1040, tag="x")).taken
    assert s.manager.on_exit_signal("ES", T0 + 6 * S, "flow") == "auto_exit"
    s.manager.on_market_event(trade(7, 1000))
    assert s.manager.ledger.brackets[sid].state == BracketState.CLOSED


def test_intent_validation_and_one_bracket_per_family(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(trade(1, 1000))
    bad = s.manager.on_intent(intent(2, stop=1040, target=980))
    assert not bad.taken and "stop" in bad.reason
    ok = s.manager.on_intent(intent(3, stop=980, target=1040))
    assert ok.taken
    second = s.manager.on_intent(intent(4, side=Side.SELL, stop=1040, target=980))
    assert not second.taken and "still open" in second.reason
    dup = s.manager.on_intent(intent(3, stop=980, target=1040))
    assert dup.duplicate and s.manager.stats["duplicate_intent"] == 1
    rows = s.store.query("SELECT verdict, reason FROM signals ORDER BY ts_ns")
    assert [r["verdict"] for r in rows] == ["rejected", "taken", "rejected"]


def test_garbage_timestamps_never_roll_the_day_back_or_crash(tmp_path: Path) -> None:
    s = System(tmp_path / "t.db", settings())
    s.manager.on_market_event(trade(1, 1000))
    day = s.manager.ledger.trading.trading_day
    old = s.manager.on_intent(intent_at(1))  # 1970
    assert not old.taken and "before the current session" in old.reason
    far = s.manager.on_intent(intent_at(4_102_444_800 * S))  # 2100: beyond the calendar
    assert not far.taken and "calendar" in far.reason
    s.manager.on_market_event(tr(5, 999))
    assert s.manager.stats["bad_event_time"] >= 1 and s.manager.ledger.trading.trading_day == day
    assert not s.manager.auto_flatten(4_102_444_800 * S)
    assert s.manager.on_intent(intent(3, stop=980, target=1040)).taken
