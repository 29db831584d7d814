"""The risk decisions as pure functions of the ledger: what is journaled at a day's start, a tier change, a daily
limit, a margin check, the auto-flatten and an exit signal, and with which notifications. A bare ledger (its
fields set as a replay would) for state-only cases; a real paper session for the ones about open positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.exec_helpers import T0, System, intent, settings, trade
from tradebot.core.notifications import NotificationKind, Severity
from tradebot.core.types import Side
from tradebot.core.values import CapitalTier
from tradebot.execution import rules
from tradebot.execution.journal import (
    AutoFlattenDecided,
    DailyLimitHit,
    ExitSignalDecided,
    MarginChecked,
    ModifyRequested,
    SessionStarted,
    StateChange,
    TierChanged,
)
from tradebot.execution.ledger import Ledger
from tradebot.execution.model import HaltKind, TradingState
from tradebot.execution.risk import MarginResult

DAY = "2025-03-10"
TIERS = (CapitalTier(1, "MES Building", 0, "MES", 2), CapitalTier(2, "ES Entry", 350_000, "ES", 1))


def ledger(state: TradingState = TradingState.ACTIVE, kind: HaltKind = HaltKind.NONE, day: str | None = DAY,
           balance_cents: int = 250_000) -> Ledger:
    led = Ledger(balance_cents)
    led.trading.state, led.trading.kind, led.trading.trading_day = state, kind, day
    return led


def long_position(tmp_path: Path) -> System:
    s = System(tmp_path / "db.sqlite", settings())
    s.manager.on_market_event(trade(1, 1000))
    assert s.manager.on_intent(intent(1.5, stop=980, target=1040)).taken
    s.manager.on_market_event(trade(2, 1000))
    assert s.manager.ledger.open_brackets()[0].position == 1
    return s


@pytest.mark.parametrize(("kind", "resumes"), [(HaltKind.LIMIT, True), (HaltKind.MARGIN, True), (HaltKind.EOD, True),
                                               (HaltKind.OPERATOR, False), (HaltKind.ERROR, False)])
def test_a_new_day_lifts_only_the_daily_halts(kind: HaltKind, resumes: bool) -> None:
    led = ledger(TradingState.HALTED, kind, day="2025-03-07")
    d = rules.session_start(led, DAY, "paper", ["ES"], T0)
    assert d is not None and isinstance(d.event, SessionStarted) and d.event.day == DAY
    if resumes:
        assert d.event.set_state == StateChange(TradingState.ACTIVE, HaltKind.NONE, "new trading day")
        (n,) = d.notes
        assert (n.kind, n.severity, n.title) == (NotificationKind.TRADING_STATE, Severity.INFO, "Trading resumed")
    else:
        assert d.event.set_state is None and d.notes == ()
    assert rules.session_start(ledger(day=DAY), DAY, "paper", ["ES"], T0) is None  # already that day


def test_tiers_follow_the_balance_and_only_a_change_is_announced() -> None:
    first = rules.tier_change(ledger(), TIERS, True, T0)
    assert first is not None and first.event == TierChanged(1, "MES Building", "MES", 2, 250_000, None)
    assert first.notes == ()  # a new database's first tier is no change
    led = ledger(balance_cents=360_000)
    led.trading.tier_number, led.trading.tier_name = 1, "MES Building"
    up = rules.tier_change(led, TIERS, True, T0)
    assert up is not None and isinstance(up.event, TierChanged) and up.event.name == "ES Entry"
    assert dict(up.notes[0].fields)["direction"] == "promoted" and up.notes[0].kind == NotificationKind.TIER_CHANGE
    assert rules.current_tier(led, TIERS, True) == TIERS[0]  # the day's tier until the next day starts
    led.trading.tier_number, led.trading.tier_name = 2, "ES Entry"
    assert rules.tier_change(led, TIERS, True, T0) is None
    assert rules.tier_change(led, TIERS, False, T0) is None and rules.current_tier(led, TIERS, False) is None
    assert rules.traded_symbols(settings(tiers_enabled=True), TIERS[0], ["ES", "MES", "NQ"]) == ["MES", "NQ"]


def test_a_daily_limit_halts_once_and_names_the_limit() -> None:
    assert rules.daily_limit(ledger(), "ES", -19_999, 50_000, -20_000, True, T0) is None
    d = rules.daily_limit(ledger(), "ES", -20_000, 50_000, -20_000, True, T0)
    assert d is not None and d.event == DailyLimitHit(
        DAY, "ES", "loss_limit", "halt", -20_000, (), "loss_limit",
        StateChange(TradingState.HALTED, HaltKind.LIMIT, "daily loss limit reached (-$200.00)"))
    (n,) = d.notes
    assert (n.kind, n.severity, dict(n.fields)["limit"]) == (NotificationKind.LOSS_LIMIT_HIT, Severity.WARNING,
                                                            "-$200.00")
    win = rules.daily_limit(ledger(), "ES", 50_000, 50_000, -20_000, True, T0)
    assert win is not None and win.notes[0].kind == NotificationKind.PROFIT_TARGET_HIT
    assert win.notes[0].severity == Severity.INFO
    operator = rules.daily_limit(ledger(TradingState.HALTED, HaltKind.OPERATOR), "ES", -30_000, 50_000, -20_000,
                                 True, T0)
    assert operator is not None and isinstance(operator.event, DailyLimitHit)
    assert operator.event.set_state is None  # an operator halt stays the operator's
    done = ledger()
    done.limit_day = DAY
    assert rules.daily_limit(done, "ES", -90_000, 50_000, -20_000, True, T0) is None
    assert rules.daily_limit(ledger(day=None), "ES", -90_000, 50_000, -20_000, True, T0) is None


def test_a_daily_limit_flattens_the_open_brackets_when_configured(tmp_path: Path) -> None:
    s = long_position(tmp_path)
    try:
        led = s.manager.ledger
        sid = led.open_brackets()[0].signal_id
        d = rules.daily_limit(led, "ES", -25_000, 50_000, -20_000, True, T0)
        assert d is not None and isinstance(d.event, DailyLimitHit) and d.event.flatten == (sid,)
        keep = rules.daily_limit(led, "ES", -25_000, 50_000, -20_000, False, T0)
        assert keep is not None and isinstance(keep.event, DailyLimitHit) and keep.event.flatten == ()
    finally:
        s.close()


def margin(symbol: str, cents: int, limit: int | None) -> MarginResult:
    return MarginResult(symbol, cents, limit, "default")


def test_margin_blocks_a_contract_and_halts_only_when_every_contract_is_blocked() -> None:
    one = rules.margin_check(ledger(), DAY, [margin("ES", 50_000, 40_000), margin("NQ", 1, None)], True, T0)
    assert isinstance(one.event, MarginChecked) and one.event.set_state is None
    assert [r.ok for r in one.event.results] == [False, True]
    assert dict(one.notes[0].fields)["symbols"] == {"ES": "$500.00 > $400.00"}
    both = rules.margin_check(ledger(), DAY, [margin("ES", 50_000, 40_000)], True, T0)
    assert isinstance(both.event, MarginChecked) and both.event.set_state == StateChange(
        TradingState.HALTED, HaltKind.MARGIN, "margin above limit: ES $500.00 > $400.00")
    per_intent = rules.margin_check(ledger(), DAY, [margin("ES", 50_000, 40_000)], False, T0)
    assert isinstance(per_intent.event, MarginChecked) and per_intent.event.set_state is None
    lifted = rules.margin_check(ledger(TradingState.HALTED, HaltKind.MARGIN), DAY, [margin("ES", 1, 40_000)], True,
                                T0)
    assert isinstance(lifted.event, MarginChecked) and lifted.event.set_state is not None
    assert lifted.event.set_state.state == TradingState.ACTIVE
    assert [n.title for n in lifted.notes] == ["Trading resumed"]


def test_auto_flatten_orders_every_open_bracket_closed_and_exits_only(tmp_path: Path) -> None:
    quiet = rules.auto_flatten(ledger(), DAY, "15:55", T0)
    assert quiet.event == AutoFlattenDecided(DAY, "flatten", "15:55", "", (), "auto_flatten",
                                             StateChange(TradingState.REDUCING, HaltKind.EOD,
                                                         "after auto-flatten: exits only"))
    s = long_position(tmp_path)
    try:
        d = rules.auto_flatten(s.manager.ledger, DAY, "15:55", T0)
        assert isinstance(d.event, AutoFlattenDecided) and len(d.event.flatten) == 1 and d.event.symbol == "ES"
        assert dict(d.notes[0].fields)["open_brackets"] == 1
    finally:
        s.close()


def test_exit_signals_touch_only_the_side_they_threaten(tmp_path: Path) -> None:
    s = long_position(tmp_path)
    try:
        led = s.manager.ledger
        sid = led.open_brackets()[0].signal_id
        decision, alert = rules.exit_signal(led, "MES", "3 large sellers", "long", False, T0)
        assert decision == "alert"
        assert alert.event == ExitSignalDecided("MES", "3 large sellers", "alert", (sid,), (), "exit_signal", "long")
        assert alert.notes[0].title == "Exit signal on MES: review the position"
        _, auto = rules.exit_signal(led, "ES", "3 large sellers", None, True, T0)
        assert isinstance(auto.event, ExitSignalDecided) and auto.event.flatten == (sid,)
        _, other_side = rules.exit_signal(led, "ES", "3 large buyers", "short", True, T0)
        assert isinstance(other_side.event, ExitSignalDecided) and other_side.event.decision == "no_position"
        assert other_side.notes == ()
        assert led.open_brackets()[0].side == Side.BUY  # nothing here changes the books
    finally:
        s.close()


def test_flatten_and_stop_requests_come_from_the_ledger(tmp_path: Path) -> None:
    s = long_position(tmp_path)
    try:
        led = s.manager.ledger
        b = led.open_brackets()[0]
        req = rules.flatten_request(led, b, "operator")
        assert req is not None and (req.side, req.quantity, req.reason) == (Side.SELL, 1, "operator")
        assert req.exit_id == f"{b.signal_id}-X1" and set(req.cancel_ids) == {b.stop_id, b.target_id}
        assert rules.stop_move(led, b.signal_id, 990) == ModifyRequested(b.stop_id, 990)
        assert rules.stop_move(led, b.signal_id, 1040) is None  # would cross the target
        assert rules.stop_move(led, "nope", 990) is None
        assert s.manager.flatten("operator", T0 + 3 * 10**9) == 1
        assert rules.flatten_request(led, b, "again") is None  # already closing
    finally:
        s.close()
