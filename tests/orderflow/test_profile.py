"""Volume profile: ORDERFLOW.md's value-area vector, POC ties, HVN/LVN, bias, sessions, naked POCs, real ES."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import databento as db
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.calendar import CT, calendar_for, to_ns
from tradebot.core.clock import ManualClock
from tradebot.core.config import ProfileSettings
from tradebot.core.contracts import spec_for
from tradebot.core.types import Side, SideRule, Trade
from tradebot.feeds.dbn_convert import iter_store
from tradebot.feeds.validation import Validator
from tradebot.orderflow.profile import (
    Bias,
    SessionProfiles,
    ValueArea,
    VolumeProfile,
    poc_of,
    trading_bias,
    value_area,
    volume_nodes,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SIERRA_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SIERRA_TXT = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"

ES = spec_for("ES")
T = ES.to_ticks

VA_VECTOR = {"99.00": 10, "99.25": 20, "99.50": 40, "99.75": 60, "100.00": 100, "100.25": 70, "100.50": 50,
             "100.75": 30, "101.00": 15, "101.25": 5}


def profile_of(levels: dict[str, int]) -> VolumeProfile:
    p = VolumeProfile()
    for price, vol in levels.items():
        p.add(T(price), vol)
    return p


def trade(price: str | int, size: int, ts: int, side: Side = Side.BUY) -> Trade:
    ticks = T(price) if isinstance(price, str) else price
    return Trade("ES", ts, ts, ticks, size, side, SideRule.EXCHANGE)


def ct(*a: int) -> int:
    return to_ns(dt.datetime(*a, tzinfo=CT))


# --- value area ------------------------------------------------------------------------------------


def test_value_area_known_answer_two_level() -> None:
    p = profile_of(VA_VECTOR)
    assert p.total == 400
    assert p.poc() == T("100.00")
    va = p.value_area(0.70, "two_level")
    assert va is not None
    assert (va.val, va.vah, va.volume, va.total) == (T("99.50"), T("100.50"), 320, 400)


def test_value_area_known_answer_one_level() -> None:
    va = profile_of(VA_VECTOR).value_area(0.70, "one_level")
    assert va is not None
    assert (va.val, va.vah, va.volume) == (T("99.75"), T("100.50"), 280)


def test_value_area_stops_when_target_is_reached_exactly_and_grows_just_above() -> None:
    p = profile_of(VA_VECTOR)
    at = p.value_area(0.80)  # target 320: reached exactly by the same two pairs
    above = p.value_area(0.81)  # target 324: one more pair; above 100.75+101.00=45 beats below 30
    assert at is not None and above is not None
    assert (at.val, at.vah, at.volume) == (T("99.50"), T("100.50"), 320)
    assert (above.val, above.vah, above.volume) == (T("99.50"), T("101.00"), 365)


def test_value_area_pair_tie_goes_to_the_upper_pair() -> None:
    # POC 100 in the middle; both pairs sum to 30 -> the upper pair is added first, which already covers 70%.
    p = profile_of({"99.50": 10, "99.75": 20, "100.00": 40, "100.25": 20, "100.50": 10})
    va = p.value_area(0.70)
    assert va is not None
    assert (va.val, va.vah, va.volume) == (T("100.00"), T("100.50"), 70)
    one = p.value_area(0.70, "one_level")  # single levels 20 vs 20: upper first, then lower
    assert one is not None
    assert (one.val, one.vah, one.volume) == (T("99.75"), T("100.25"), 80)


def test_value_area_at_the_edge_only_grows_the_open_side() -> None:
    p = profile_of({"100.00": 100, "99.75": 10, "99.50": 10, "99.25": 10})
    va = p.value_area(0.90)  # target 117: POC + the pair below (120) is enough
    assert va is not None
    assert (va.val, va.vah, va.volume) == (T("99.50"), T("100.00"), 120)
    va = p.value_area(0.95)  # target 123.5: the last single level below is the remaining "pair"
    assert va is not None
    assert (va.val, va.vah, va.volume) == (T("99.25"), T("100.00"), 130)


def test_value_area_counts_untraded_ticks_inside_the_range_as_zero_levels() -> None:
    # 99.75 and 99.50 untraded: the lower pair is (0 + 0), the upper pair wins although it is far smaller.
    p = profile_of({"99.25": 50, "100.00": 100, "100.25": 5})
    assert p.dense() == [50, 0, 0, 100, 5]
    va = p.value_area(0.70)
    assert va is not None
    assert (va.val, va.vah, va.volume) == (T("99.25"), T("100.25"), 155)


def test_value_area_of_a_single_level() -> None:
    va = profile_of({"100.00": 7}).value_area()
    assert va == ValueArea(T("100.00"), T("100.00"), T("100.00"), 7, 7)


def test_empty_profile_has_no_poc_value_area_or_snapshot() -> None:
    p = VolumeProfile()
    p.add(T("100.00"), 0)  # nothing traded
    assert not p and p.poc() is None and p.value_area() is None and p.snapshot() is None
    assert p.nodes() == ([], [])
    with pytest.raises(ValueError):
        value_area([], 0, 0)


# --- POC -------------------------------------------------------------------------------------------


def test_poc_tie_goes_nearest_the_middle_of_the_range() -> None:
    # Range 99.00..101.00, mid 100.00; equal maxima at 99.25 and 100.25 -> 100.25 is nearer the mid.
    p = profile_of({"99.00": 1, "99.25": 50, "100.25": 50, "101.00": 1})
    assert p.poc() == T("100.25")


def test_poc_tie_equidistant_from_the_middle_goes_to_the_lower_price() -> None:
    p = profile_of({"99.50": 50, "100.50": 50, "100.00": 10})
    assert p.poc() == T("99.50")
    assert poc_of({10: 3, 12: 3}) == 10


def test_poc_follows_incremental_adds() -> None:
    p = profile_of({"100.00": 10, "100.25": 9})
    assert p.poc() == T("100.00")
    p.add(T("100.25"), 2)
    assert p.poc() == T("100.25")


def test_side_split_and_delta() -> None:
    p = VolumeProfile()
    p.add_trade(trade("100.00", 5, 1, Side.BUY))
    p.add_trade(trade("100.00", 3, 2, Side.SELL))
    p.add_trade(trade("100.25", 2, 3, Side.UNKNOWN))
    assert (p.buy_volume_at(T("100.00")), p.sell_volume_at(T("100.00")), p.volume_at(T("100.25"))) == (5, 3, 2)
    snap = p.snapshot()
    assert snap is not None
    assert (snap.total, snap.buy_volume, snap.sell_volume, snap.delta) == (10, 5, 3, 2)
    c = p.copy()
    c.add(T("101.00"), 1)
    assert p.high == T("100.25") and c.high == T("101.00")


# --- HVN / LVN -------------------------------------------------------------------------------------


def test_bimodal_profile_has_two_hvns_and_one_lvn_between() -> None:
    dense = [5, 20, 60, 100, 60, 20, 8, 20, 55, 90, 50, 15, 4]
    hvn, lvn = volume_nodes(dense, 400, smoothing=1, min_prominence=0.10)
    assert [n.price for n in hvn] == [403, 409]  # largest volume first
    assert [n.price for n in lvn] == [406]
    assert all(0 < n.prominence <= 1 for n in hvn + lvn)
    assert hvn[0].volume == 100 and lvn[0].volume == 8


def test_small_wiggle_below_the_prominence_threshold_is_not_a_node() -> None:
    dense = [10, 50, 100, 90, 92, 88, 60, 20]
    hvn, lvn = volume_nodes(dense, 0, smoothing=0, min_prominence=0.10)
    assert [n.price for n in hvn] == [2] and lvn == []
    hvn_fine, lvn_fine = volume_nodes(dense, 0, smoothing=0, min_prominence=0.01)
    assert [n.price for n in hvn_fine] == [2, 4] and [n.price for n in lvn_fine] == [3]


def test_smoothing_merges_a_split_peak_and_edges_are_never_nodes() -> None:
    split = [10, 50, 20, 50, 10]  # raw: two peaks split by a one-tick dip
    raw_hvn, raw_lvn = volume_nodes(split, 0, smoothing=0, min_prominence=0.05)
    assert [n.price for n in raw_hvn] == [1, 3] and [n.price for n in raw_lvn] == [2]
    sm_hvn, sm_lvn = volume_nodes(split, 0, smoothing=1, min_prominence=0.05)
    assert [n.price for n in sm_hvn] == [2] and sm_lvn == []  # moving sums 60, 80, 120, 80, 60
    edges = [100, 10, 50, 20, 50, 10, 100]
    hvn, _ = volume_nodes(edges, 0, smoothing=0, min_prominence=0.05)
    assert [n.price for n in hvn] == [2, 4]  # the 100s at the edges are not nodes
    plateau, _ = volume_nodes([0, 5, 9, 9, 9, 9, 5, 0], 0, smoothing=0)
    assert [n.price for n in plateau] == [3]  # a flat top reports its (lower) middle


def test_too_short_or_flat_profiles_have_no_nodes() -> None:
    assert volume_nodes([5, 9], 0) == ([], [])
    assert volume_nodes([4, 4, 4, 4], 0, smoothing=0) == ([], [])


# --- trading bias ----------------------------------------------------------------------------------


def test_trading_bias_against_the_value_area_boundaries() -> None:
    va = ValueArea(T("99.50"), T("100.50"), T("100.00"), 320, 400)
    assert trading_bias(T("100.75"), va).bias is Bias.BULLISH
    assert trading_bias(T("100.75"), va).distance_ticks == 1
    assert trading_bias(T("100.50"), va).bias is Bias.NEUTRAL  # at VAH is still inside
    assert trading_bias(T("99.50"), va).bias is Bias.NEUTRAL
    below = trading_bias(T("99.25"), va, spec=ES)
    assert below.bias is Bias.BEARISH and below.distance_ticks == -1 and "99.50" in below.reason
    assert "POC" in trading_bias(T("100.00"), va).reason
    # With a buffer price must be further out.
    assert trading_bias(T("100.75"), va, buffer_ticks=1).bias is Bias.NEUTRAL
    assert trading_bias(T("101.00"), va, buffer_ticks=1).bias is Bias.BULLISH


# --- sessions --------------------------------------------------------------------------------------


def test_session_roll_at_17_00_ct_keeps_the_prior_profile_and_resets_the_developing_one() -> None:
    sp = SessionProfiles(ES, ProfileSettings(), calendar_for("equity"))
    # Tue 2025-03-11 session: a print in the evening (ETH) and in RTH.
    sp.on_trade(trade("100.00", 10, ct(2025, 3, 10, 18, 0)))
    sp.on_trade(trade("100.25", 4, ct(2025, 3, 11, 9, 0)))
    sp.on_trade(trade("100.00", 1, ct(2025, 3, 11, 15, 59)))
    assert sp.trading_date == dt.date(2025, 3, 11)
    rth = sp.rth_snapshot()
    assert rth is not None and rth.total == 4
    # 16:30 CT is in the daily break: it belongs to the next trading day (Wed 12 March).
    sp.on_trade(trade("101.00", 2, ct(2025, 3, 11, 16, 30)))
    assert sp.trading_date == dt.date(2025, 3, 12)
    prior = sp.prior()
    dev = sp.snapshot()
    assert prior is not None and dev is not None
    assert (prior.total, prior.poc) == (15, T("100.00"))
    assert (dev.total, dev.poc) == (2, T("101.00"))
    assert sp.rth_snapshot() is None
    assert sp.completed[-1][0] == dt.date(2025, 3, 11)


def test_late_trade_from_a_finished_session_is_counted_and_dropped() -> None:
    sp = SessionProfiles(ES, calendar=calendar_for("equity"))
    sp.on_trade(trade("100.00", 1, ct(2025, 3, 11, 17, 5)))
    sp.on_trade(trade("99.00", 9, ct(2025, 3, 11, 15, 0)))
    assert sp.stats["late_trade"] == 1
    snap = sp.snapshot()
    assert snap is not None and snap.total == 1


def test_trade_beyond_the_calendar_is_counted_not_raised() -> None:
    sp = SessionProfiles(ES, calendar=calendar_for("equity"))
    sp.on_trade(trade("100.00", 1, ct(2040, 1, 3, 10, 0)))
    assert sp.stats["outside_calendar"] == 1 and sp.snapshot() is None


def test_naked_poc_stays_until_a_later_session_trades_through_it() -> None:
    sp = SessionProfiles(ES, calendar=calendar_for("equity"))
    sp.on_trade(trade("100.00", 50, ct(2025, 3, 11, 9, 0)))
    sp.on_trade(trade("101.00", 5, ct(2025, 3, 11, 9, 1)))
    sp.on_trade(trade("102.00", 3, ct(2025, 3, 12, 9, 0)))  # next session, above the POC
    assert [(n.trading_date, n.price) for n in sp.naked_pocs()] == [(dt.date(2025, 3, 11), T("100.00"))]
    sp.on_trade(trade("100.50", 3, ct(2025, 3, 12, 9, 5)))  # not there yet
    assert len(sp.naked_pocs()) == 1
    sp.on_trade(trade("99.75", 3, ct(2025, 3, 12, 9, 6)))  # a gap through 100.00 without a print at it
    assert sp.naked_pocs() == ()


def test_naked_pocs_are_bounded_and_newest_first() -> None:
    sp = SessionProfiles(ES, ProfileSettings(max_naked_pocs=2), calendar_for("equity"), keep_sessions=2)
    for i, day in enumerate((10, 11, 12, 13)):
        sp.on_trade(trade(T("100.00") + 10 * i, 5, ct(2025, 3, day, 9, 0)))
    assert [n.price for n in sp.naked_pocs()] == [T("100.00") + 20, T("100.00") + 10]
    assert [d for d, _ in sp.completed] == [dt.date(2025, 3, 11), dt.date(2025, 3, 12)]


def test_session_bias_uses_the_prior_session_then_falls_back_to_the_developing_one() -> None:
    sp = SessionProfiles(ES, calendar=calendar_for("equity"))
    assert sp.bias(T("100.00")) is None
    for price, vol in VA_VECTOR.items():
        sp.on_trade(trade(price, vol, ct(2025, 3, 11, 9, 0)))
    dev = sp.bias(T("101.00"))
    assert dev is not None and dev.bias is Bias.BULLISH and "developing" in dev.reason
    sp.on_trade(trade("99.00", 1, ct(2025, 3, 12, 9, 0)))
    prior = sp.bias(T("99.25"))
    assert prior is not None and prior.bias is Bias.BEARISH and "prior session" in prior.reason
    developing = SessionProfiles(ES, ProfileSettings(bias_reference="developing"), calendar_for("equity"))
    developing.on_trade(trade("99.00", 1, ct(2025, 3, 12, 9, 0)))
    reading = developing.bias(T("99.00"))
    assert reading is not None and reading.bias is Bias.NEUTRAL


# --- real data -------------------------------------------------------------------------------------


def test_real_es_minute_profile_matches_the_sierra_export() -> None:
    """DBN -> validation -> profile, checked level by level against the independent Sierra text export."""
    store = db.DBNStore.from_file(SIERRA_TBBO)
    v = Validator(symbols=["ES"], clock=ManualClock(0), wall_clock_future=False)  # recorded data
    sp = SessionProfiles(ES, calendar=calendar_for("equity"))
    n = 0
    for raw in iter_store(store):
        ev = v.validate(raw)
        if isinstance(ev, Trade):
            sp.on_trade(ev)
            n += 1
    src = pd.read_csv(SIERRA_TXT, sep=";", dtype={"Price": str})
    src["ticks"] = [T(p) for p in src["Price"]]
    by_level = src.groupby("ticks")["Volume"].sum()
    buys = src[src.TradeType == 2].groupby("ticks")["Volume"].sum()
    sells = src[src.TradeType == 1].groupby("ticks")["Volume"].sum()

    assert n == len(src)
    assert sp.trading_date == dt.date(2022, 1, 24)
    prof = sp.developing
    assert prof.total == int(src["Volume"].sum())
    for ticks, vol in by_level.items():
        assert prof.volume_at(int(ticks)) == vol
        assert prof.buy_volume_at(int(ticks)) == buys.get(ticks, 0)
        assert prof.sell_volume_at(int(ticks)) == sells.get(ticks, 0)
    snap = sp.snapshot()
    assert snap is not None
    assert snap.poc == int(by_level.idxmax())
    assert snap.val <= snap.poc <= snap.vah
    assert Fraction(snap.value_area.volume, snap.total) >= Fraction(7, 10)
    assert ES.fmt(snap.poc) == str(Decimal(src.loc[src.ticks == snap.poc, "Price"].iloc[0]))
    # The whole minute is in RTH (13:30 CT).
    rth = sp.rth_snapshot()
    assert rth is not None and rth.total == snap.total


# --- properties ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    vols=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60).filter(lambda v: sum(v) > 0),
    pct=st.sampled_from([0.5, 0.68, 0.7, 0.8, 0.95, 1.0]),
    method=st.sampled_from(["two_level", "one_level"]),
    low=st.integers(min_value=-50, max_value=100_000),
)
def test_value_area_properties(vols: list[int], pct: float, method: str, low: int) -> None:
    p = VolumeProfile()
    for i, v in enumerate(vols):
        p.add(low + i, v)
    poc = p.poc()
    assert poc is not None
    assert p.volume_at(poc) == max(vols)
    va = p.value_area(pct, "two_level" if method == "two_level" else "one_level")
    assert va is not None
    assert va.val <= poc <= va.vah
    assert va.volume == sum(p.volume_at(x) for x in range(va.val, va.vah + 1))
    assert Fraction(va.volume, va.total) >= Fraction(str(pct))
    hvn, lvn = p.nodes()
    assert all(p.low is not None and p.high is not None and p.low < n.price < p.high for n in hvn + lvn)
