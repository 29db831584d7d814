"""Stocks and crypto as instrument specs: symbol resolution next to the futures table, the NYSE and 24/7
calendars, exact sizes and money, seed 003's percent filters; recorded Nasdaq DBN through analyze."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from tradebot.core.calendar import ET, UTC, calendar_for, local_ns
from tradebot.core.config import FilterSettings
from tradebot.core.contracts import root_of, spec_for
from tradebot.core.instruments import (
    CryptoProduct,
    crypto_spec,
    register_for_feed,
    register_stocks,
    size_units,
    stock_spec,
)
from tradebot.execution.positions import PositionBook

NASDAQ = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "databento" / "XNAS.ITCH"


def test_stocks_and_crypto_resolve_only_once_registered_and_never_shadow_futures() -> None:
    assert root_of("ZZZQ") is None
    register_stocks(["zzzq"])
    assert root_of("ZZZQ") == "ZZZQ" and spec_for("ZZZQ").kind == "stock"
    with pytest.raises(ValueError, match="not stock tickers: BTC-USD"):
        register_for_feed("polygon", ["BTC-USD"])
    with pytest.raises(ValueError, match="not products: ES"):
        register_for_feed("coinbase", ["ES"])
    assert spec_for("ES").kind == "future" and spec_for("ESH6").root == "ES"


def test_stock_ticks_by_price_and_seed_000_share_threshold() -> None:
    s = stock_spec("AAPL")
    assert (s.tick_size, s.tick_value_cents, s.tick_value, s.large_order_size) == (Decimal("0.01"), 1, 1, 10_000)
    penny = stock_spec("SNDL", ref_price=Decimal("0.85"))
    assert penny.tick_size == Decimal("0.0001") and penny.tick_value == Fraction(1, 100)


def test_crypto_increments_and_exact_base_units() -> None:
    spec = crypto_spec(CryptoProduct("BTC-USD", Decimal("0.01"), Decimal("0.00000001")))
    assert spec.tick_value == Fraction(1, 10**8) and spec.large_order_size == 10**8
    assert size_units(spec, "0.00012345") == 12_345 and size_units(spec, "1") == 10**8
    assert size_units(spec, "0.000000001") is None and size_units(spec, "nan") is None


def test_fractional_tick_value_books_whole_cents_against_the_trader() -> None:
    tv = Fraction(1, 10**8)  # $0.01 x 1e-8 BTC, in cents
    book = PositionBook()
    book.apply(100_000, 9_700_000_123, tv)  # buy 0.001 BTC at 97000.00123... ticks
    gain = book.apply(-100_000, 9_700_000_123 + 1_999, tv)  # + 19.99 $ per coin x 0.001 = 1.999 cents
    assert gain == 1  # 1.999 cents -> 1 (never rounded up in the trader's favour)
    book.apply(100_000, 9_700_000_000, tv)
    loss = book.apply(-100_000, 9_700_000_000 - 1_999, tv)
    assert loss == -2  # a loss of 1.999 cents costs 2
    again = PositionBook.from_json(json.loads(json.dumps(PositionBook([], 0, 0).to_json())))
    assert again.lots == []
    book.apply(100_000, 9_700_000_000, tv)
    assert PositionBook.from_json(json.loads(json.dumps(book.to_json()))).lots[0].tick_value_cents == tv


def test_nyse_and_crypto_calendars() -> None:
    rth = calendar_for("nyse")
    ext = calendar_for("nyse_ext")
    day = dt.date(2024, 11, 29)  # the day after Thanksgiving: 13:00 early close
    s, e = rth.session_on(day), ext.session_on(day)
    assert s is not None and e is not None and s.early_close
    assert s.open_ns == local_ns(day, dt.time(9, 30), ET) and s.close_ns == local_ns(day, dt.time(13), ET)
    assert e.open_ns == local_ns(day, dt.time(4), ET) and e.close_ns == local_ns(day, dt.time(17), ET)
    assert rth.session_on(dt.date(2024, 11, 28)) is None  # Thanksgiving
    c = calendar_for("crypto@17:00")
    sat = c.session_on(dt.date(2024, 11, 30))
    assert sat is not None and sat.open_ns == local_ns(dt.date(2024, 11, 29), dt.time(17), UTC)
    assert c.trading_day(local_ns(dt.date(2024, 11, 30), dt.time(18), UTC)) == dt.date(2024, 12, 1)


def test_seed_003_filters_in_percent_and_dollar_depth_for_stocks() -> None:
    from types import SimpleNamespace

    from tradebot.regime.filters import _pct_spread_check

    snap = SimpleNamespace(best_bid=19_990, best_ask=20_090)  # $199.90 x $200.90: 0.499% of the mid
    ok = _pct_spread_check(snap, FilterSettings().pct_safe_max_spread, True)  # type: ignore[arg-type]
    wide = _pct_spread_check(SimpleNamespace(best_bid=19_900, best_ask=20_100), Decimal("0.5"), True)  # type: ignore[arg-type]
    assert ok.passed and not wide.passed and "1.000%" in wide.detail


def test_recorded_nasdaq_session_through_analyze(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tradebot.cli import main

    monkeypatch.setenv("TRADEBOT_STOCKS__EXTENDED_HOURS", "true")  # the sample is 04:05 ET pre-market
    assert main(["analyze", str(NASDAQ / "test_data.trades.dbn.zst"), "--bar-seconds", "60", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["validation"]["accepted"] == 4 and sum(b["volume"] for b in data["bars"]) == 42
    assert data["side_rules"]["exchange"] == 3  # Nasdaq's own aggressor flags; the fourth print is inferred


def test_sub_dollar_stocks_from_the_setting_use_the_hundredth_of_a_cent_grid() -> None:
    from tradebot.core.config import Settings, StockSettings
    from tradebot.feeds.factory import resolve_live_symbols

    s = Settings(_env_file=None, stocks=StockSettings(sub_dollar="sndl"))  # type: ignore[call-arg]
    assert resolve_live_symbols("polygon", ["SNDL", "AAPL"], s) == ["SNDL", "AAPL"]
    assert spec_for("SNDL").tick_size == Decimal("0.0001") and spec_for("AAPL").tick_size == Decimal("0.01")
    book = PositionBook()
    book.apply(999, 8_500, spec_for("SNDL").tick_value)  # 999 shares at $0.8500
    assert book.apply(-999, 8_537, spec_for("SNDL").tick_value) == 369  # + $0.0037 x 999 = 369.63 cents, floored
