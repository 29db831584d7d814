"""Settings written as text, held typed: parsed once at load, a bad value is one config error line naming the
variable, and every typed value dumps back to the text the operator wrote (so a dumped group validates again)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from tradebot.backtest.overrides import apply_overrides
from tradebot.core.config import ConfigError, Settings, load_settings
from tradebot.core.values import CapitalTier, TimeWindow, parse_tiers

TEXT = {
    "TRADEBOT_EXECUTION__AUTO_FLATTEN_TIME": "15:40",
    "TRADEBOT_EXECUTION__TIERS": "0:MES:1:Start,2500.50:ES:2",
    "TRADEBOT_EXECUTION__FEES_CENTS": "ES:140,MES:37.5",
    "TRADEBOT_EXECUTION__MARGIN_OVERRIDES": "ES:500",
    "TRADEBOT_EXECUTION__MARGIN_LIMITS": "NQ:900",
    "TRADEBOT_REGIME__TRADING_WINDOWS": "07:00-10:00,22:00-02:00",
    "TRADEBOT_ROUTER__STOP_POINTS_BY_SYMBOL": "ES:1.25",
    "TRADEBOT_ROUTER__CUM_DELTA_THRESHOLD_BY_SYMBOL": "ES:2000",
    "TRADEBOT_WATCHDOG__REPORT_AT": "16:30",
    "TRADEBOT_COINBASE__DAY_BOUNDARY": "01:30:15",
    "TRADEBOT_SIM__START_DATE": "2025-04-17",
    "TRADEBOT_STOCKS__WATCHLIST": "aapl, TSLA",
    "TRADEBOT_PROPFIRM__ALERT_STEPS": "10,50,25",
}


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for k, v in TEXT.items():
        monkeypatch.setenv(k, v)
    return load_settings(_env_file=None)


def test_text_settings_load_as_typed_values(typed: Settings) -> None:
    ex = typed.execution
    assert ex.auto_flatten_time == dt.time(15, 40)
    assert ex.tiers == (CapitalTier(1, "Start", 0, "MES", 1), CapitalTier(2, "Tier 2", 250_050, "ES", 2))
    assert ex.fees_cents == {"ES": Decimal(140), "MES": Decimal("37.5")}
    assert ex.margin_overrides == {"ES": Decimal(500)} and ex.margin_limits == {"NQ": Decimal(900)}
    assert typed.regime.trading_windows == (TimeWindow(dt.time(7), dt.time(10)), TimeWindow(dt.time(22), dt.time(2)))
    assert typed.router.stop_points_by_symbol == {"ES": Decimal("1.25")}
    assert typed.watchdog.report_at == dt.time(16, 30)
    assert typed.coinbase.day_boundary == dt.time(1, 30, 15)
    assert typed.sim.start_date == dt.date(2025, 4, 17)
    assert typed.stocks.watchlist == ("AAPL", "TSLA")
    assert typed.propfirm.alert_steps == (50, 25, 10)


def test_typed_values_dump_to_their_text_and_validate_again(typed: Settings) -> None:
    dump = json.loads(typed.model_dump_json())
    ex = dump["execution"]
    assert (ex["auto_flatten_time"], ex["fees_cents"], ex["tiers"]) == (
        "15:40", "ES:140,MES:37.5", "0:MES:1:Start,2500.5:ES:2:Tier 2")
    assert dump["regime"]["trading_windows"] == "07:00-10:00,22:00-02:00"
    assert (dump["coinbase"]["day_boundary"], dump["sim"]["start_date"]) == ("01:30:15", "2025-04-17")
    assert (dump["stocks"]["watchlist"], dump["propfirm"]["alert_steps"]) == ("AAPL,TSLA", "50,25,10")
    for group in ("execution", "regime", "router", "watchdog", "coinbase", "sim", "stocks", "propfirm"):
        model = getattr(typed, group)
        assert type(model).model_validate(dump[group]) == model, group  # the groups read no environment
    # A backtest's --set dumps a group and validates it again: the typed values survive, the new one is typed.
    s = apply_overrides(typed, {"execution.auto_flatten_time": "13:00"})
    assert s.execution.auto_flatten_time == dt.time(13) and s.execution.tiers == typed.execution.tiers


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TRADEBOT_EXECUTION__AUTO_FLATTEN_TIME", "24:00", "give HH:MM"),
    ("TRADEBOT_EXECUTION__TIERS", "3500:ES:1,0:MES:2", "ascending"),
    ("TRADEBOT_EXECUTION__TIERS", "1e999:ES:1", "beyond any account"),
    ("TRADEBOT_EXECUTION__FEES_CENTS", "ZZ:1", "known root"),
    ("TRADEBOT_EXECUTION__MARGIN_LIMITS", "ES:1e999999", "beyond any real figure"),
    ("TRADEBOT_REGIME__TRADING_WINDOWS", "10:00-10:00", "different from its end"),
    ("TRADEBOT_COINBASE__DAY_BOUNDARY", "25:00", "HH:MM[:SS]"),
    ("TRADEBOT_SIM__START_DATE", "17/04/2025", "YYYY-MM-DD"),
    ("TRADEBOT_STOCKS__SUB_DOLLAR", "AAPL,$$", "not a ticker"),
    ("TRADEBOT_PROPFIRM__ALERT_STEPS", "50,100", "between 1 and 99"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                     message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as e:
        load_settings(_env_file=None)
    text = str(e.value)
    assert len(text.splitlines()) == 1 and text.startswith(f"config error: {name}=") and message in text


def test_time_windows_wrap_midnight() -> None:
    night = TimeWindow(dt.time(22), dt.time(2))
    assert night.contains(dt.time(23, 59)) and night.contains(dt.time(1, 59)) and not night.contains(dt.time(2))
    day = TimeWindow(dt.time(7), dt.time(10))
    assert day.contains(dt.time(7)) and not day.contains(dt.time(10)) and not day.contains(dt.time(6, 59))


def test_tiers_are_exact_cents_numbered_in_order() -> None:
    tiers = parse_tiers(" 0:mes:2 , 3500.01:ES:1:ES Entry")
    assert [(t.number, t.root, t.min_balance_cents, t.name) for t in tiers] == [
        (1, "MES", 0, "Tier 1"), (2, "ES", 350_001, "ES Entry")]
