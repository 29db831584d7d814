"""The pre-trade risk gate on hand-built views: no store, no broker, no clock."""

from __future__ import annotations

import pytest

from support.exec_helpers import T0, settings
from tradebot.core.orders import EntryType, OrderIntent
from tradebot.core.types import Side
from tradebot.core.values import CapitalTier
from tradebot.execution.gate import Candidate, GateView, MarginNeeded, RiskGate, intent_problem
from tradebot.execution.model import TradingState

DAY = "2025-03-10"
OK_MARGIN = {(DAY, "ES"): {"ok": True, "margin_cents": 1_500_000, "limit_cents": 2_000_000}}


def intent(symbol: str = "ES", qty: int = 1, side: Side = Side.BUY, stop: int = 980, target: int = 1040,
           entry_type: EntryType = EntryType.MARKET, entry: int | None = None) -> OrderIntent:
    return OrderIntent("sig-1", symbol, side, qty, entry_type, entry, stop, target, T0, 0.9, "p")


def view(**kw: object) -> GateView:
    base: dict[str, object] = {"settings": settings(), "day": DAY, "margin": OK_MARGIN}
    base.update(kw)
    return GateView(**base)  # type: ignore[arg-type]


def test_a_clean_intent_is_taken_at_its_size() -> None:
    d = RiskGate().evaluate(view(), intent(qty=3))
    assert d.taken and (d.reason, d.symbol, d.quantity) == ("", "ES", 3)


def test_size_is_capped_by_max_position_size() -> None:
    d = RiskGate().evaluate(view(), intent(qty=9))
    assert d.taken and d.quantity == 4  # settings(): max_position_size 4


@pytest.mark.parametrize("state", [TradingState.HALTED, TradingState.REDUCING])
def test_not_active_rejects_before_anything_else(state: TradingState) -> None:
    d = RiskGate().evaluate(view(state=state, state_reason="operator"), intent(symbol="NOPE"))
    assert not d.taken and d.reason == f"trading {state.value}: operator" and d.symbol == ""


@pytest.mark.parametrize(("it", "why"), [
    (intent(qty=0), "quantity must be positive"),
    (intent(symbol="NOPE"), "unknown contract NOPE"),
    (intent(stop=1040, target=980), "stop must be on the losing side of the target"),
    (intent(side=Side.SELL, stop=980, target=1040), "stop must be on the losing side of the target"),
    (intent(entry_type=EntryType.LIMIT), "limit entry needs a price"),
    (intent(entry_type=EntryType.LIMIT, entry=1050), "entry must lie between stop and target"),
])
def test_malformed_intents_are_refused_with_the_reason(it: OrderIntent, why: str) -> None:
    assert intent_problem(it) == why
    d = RiskGate().evaluate(view(), it)
    assert d.reason == f"invalid intent: {why}"


def test_margin_unknown_for_today_asks_for_it_instead_of_guessing() -> None:
    d = RiskGate().evaluate(view(margin={}), intent())
    assert not d.taken and d.reason == "" and d.margin_needed == MarginNeeded(DAY, "ES")


def test_margin_above_the_limit_refuses_that_contract() -> None:
    m = {(DAY, "ES"): {"ok": False, "margin_cents": 2_500_000, "limit_cents": 2_000_000}}
    d = RiskGate().evaluate(view(margin=m), intent())
    assert d.reason == f"margin $25,000.00 above limit $20,000.00 for ES on {DAY}" and d.symbol == "ES"


def test_before_the_first_session_there_is_no_margin_day_to_check() -> None:
    assert RiskGate().evaluate(view(day="", margin={}), intent()).taken


def test_one_bracket_per_family_micro_and_mini_count_as_one() -> None:
    d = RiskGate().evaluate(view(open_brackets=[("old", "MES")]), intent())
    assert d.reason == "bracket old still open on ES"
    assert RiskGate().evaluate(view(open_brackets=[("old", "NQ")]), intent()).taken


def test_the_tier_maps_a_mini_signal_to_its_micro_and_caps_the_size() -> None:
    cfg = settings(tiers_enabled=True)
    tier = CapitalTier(1, "starter", 0, "MES", 2)
    m = {(DAY, "MES"): {"ok": True, "margin_cents": 150_000, "limit_cents": 200_000}}
    d = RiskGate().evaluate(view(settings=cfg, tier=tier, margin=m), intent(qty=5))
    assert d.taken and (d.symbol, d.quantity) == ("MES", 2)


def test_an_added_check_runs_after_the_built_in_ones_and_sees_the_view() -> None:
    seen: list[tuple[int, str, int]] = []

    def daily_loss_cap(v: GateView, c: Candidate) -> str:
        seen.append((v.day_pnl_cents, c.symbol, c.quantity))
        return "account daily loss cap reached" if v.day_pnl_cents <= -100_000 else ""

    gate = RiskGate()
    gate.add(daily_loss_cap)
    assert gate.evaluate(view(day_pnl_cents=-50_000), intent()).taken
    d = gate.evaluate(view(day_pnl_cents=-100_000), intent(qty=2))
    assert d.reason == "account daily loss cap reached" and (d.symbol, d.quantity) == ("ES", 2)
    assert seen == [(-50_000, "ES", 1), (-100_000, "ES", 2)]
    # A built-in rule that fails first wins: the added check is not consulted.
    gate.evaluate(view(open_brackets=[("old", "ES")]), intent())
    assert len(seen) == 2
