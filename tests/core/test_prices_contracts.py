"""Exact prices and contract specs: the float bug class must not exist, rolls land on the right contract."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.core.contracts import CONTRACTS, front_month, root_of, spec_for
from tradebot.core.prices import (
    PRICE_SCALE,
    UNDEF_PRICE,
    decimal_to_fp,
    float_to_fp,
    fp_to_decimal,
    fp_to_ticks,
    tick_fp,
)


def test_float_price_that_breaks_naive_division_is_exact() -> None:
    # 228.765 / 0.01 == 22876.4999... in binary floats; our path must give 22876.5 exactly, i.e. off-grid.
    fp = float_to_fp(228.765)
    assert fp == 228_765_000_000
    assert fp_to_ticks(fp, tick_fp(Decimal("0.005"))) == 45753
    assert fp_to_ticks(fp, tick_fp(Decimal("0.01"))) is None


def test_non_finite_and_garbage_prices_are_none() -> None:
    assert float_to_fp(float("nan")) is None
    assert float_to_fp(float("inf")) is None
    assert decimal_to_fp("abc") is None
    assert decimal_to_fp("NaN") is None
    assert decimal_to_fp("4500.25") == 4500 * PRICE_SCALE + 250_000_000


def test_sub_nanounit_price_never_lands_on_grid() -> None:
    fp = decimal_to_fp("100.0000000001")
    assert fp is not None and fp_to_ticks(fp, tick_fp(Decimal("0.25"))) is None


@given(st.integers(min_value=1, max_value=10**7), st.sampled_from(sorted(CONTRACTS)))
def test_ticks_roundtrip_through_text(ticks: int, root: str) -> None:
    spec = spec_for(root)
    text = spec.fmt(ticks)
    fp = decimal_to_fp(text)
    assert fp is not None and fp_to_ticks(fp, spec.tick_fp) == ticks
    assert fp_to_decimal(fp) == Decimal(text)


def test_tick_values_match_the_exchange_specs() -> None:
    assert spec_for("ES").tick_value_cents == 1250
    assert spec_for("MES").tick_value_cents == 125
    assert spec_for("NQ").point_value_cents == 2000
    assert spec_for("CL").point_value_cents == 100_000
    assert spec_for("GC").point_value_cents == 10_000
    assert spec_for("HG").tick_size == Decimal("0.0005")


@pytest.mark.parametrize(("symbol", "root"), [
    ("ES", "ES"), ("ESH2", "ES"), ("MESZ5", "MES"), ("ES.FUT", "ES"), ("ES.c.0", "ES"), ("NQ.n.1", "NQ"),
    ("MNQU25", "MNQ"), ("NVDA", None), ("", None), ("ESX", None), ("E", None),
])
def test_root_of(symbol: str, root: str | None) -> None:
    assert root_of(symbol) == root


def test_unknown_contract_error_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known roots"):
        spec_for("ZZ")


def test_stop_distance_rounds_up_to_ticks_and_configured_prices_must_be_on_grid() -> None:
    gc = spec_for("GC")
    assert gc.points_to_ticks("5.0") == 50
    assert spec_for("ES").points_to_ticks("1.1") == 5
    assert spec_for("ES").to_ticks("4500.25") == 18001
    with pytest.raises(ValueError, match="tick grid"):
        spec_for("ES").to_ticks("4500.10")


@pytest.mark.parametrize(("root", "day", "expected"), [
    # Equity index: third Friday of Mar 2025 is the 21st; roll six business days earlier (Thu 13th).
    ("ES", dt.date(2025, 3, 12), "ESH5"),
    ("ES", dt.date(2025, 3, 13), "ESM5"),
    ("ES", dt.date(2025, 12, 31), "ESH6"),
    ("MNQ", dt.date(2025, 7, 1), "MNQU5"),
    # Crude rolls monthly before expiry (around the 20th of the prior month).
    ("CL", dt.date(2025, 3, 3), "CLJ5"),
    ("CL", dt.date(2025, 3, 18), "CLK5"),
    # Gold trades the even-month cycle and rolls before first notice (end of the prior month).
    ("GC", dt.date(2025, 3, 10), "GCJ5"),
    ("GC", dt.date(2025, 3, 28), "GCM5"),
])
def test_front_month(root: str, day: dt.date, expected: str) -> None:
    assert front_month(root, day) == expected


def test_undef_price_constant_is_databentos() -> None:
    assert UNDEF_PRICE == 2**63 - 1
