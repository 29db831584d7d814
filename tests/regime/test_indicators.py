"""Indicators and market structure: hand-computed cases, TA-Lib on real ES bars, streaming == batch, VWAP
session resets, invalid and short input."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import itertools
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import talib  # independent reference: the TA-Lib C library (PyPI ``ta-lib`` wheel bundles it)

from tradebot.core.calendar import calendar_for, local_ns
from tradebot.regime.indicators import (
    AdxStream,
    AtrStream,
    EmaStream,
    VwapStream,
    adx,
    adx_lookback,
    atr,
    atr_lookback,
    dmi,
    dmi_lookback,
    ema,
    ema_lookback,
    session_ids,
    true_range,
    vwap,
)
from tradebot.regime.structure import (
    MarketStructureStream,
    Structure,
    market_structure,
    structure_lookback,
)

SIERRA = Path(__file__).resolve().parents[3] / "shared" / "data" / "sierra"
FILES = ["ESU24_5m_bars.txt", "ESZ24_5m_bars.txt"]
NAN = math.nan
TOL = 1e-9  # the brief asks 1e-6 after warm-up; measured <= 1e-14 (ATR), 0.0 elsewhere


class Bars(NamedTuple):
    ts_ns: np.ndarray
    local_time: list[str]
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@functools.cache
def load(name: str) -> Bars:
    """Sierra 5-minute bars: Date (Y/m/d), Time (bar start, US Central), Open, High, Low, Last, Volume, ..."""
    with (SIERRA / name).open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        rows = [[c.strip() for c in row] for row in reader if row]
    col = {h: i for i, h in enumerate(header)}
    ts = np.array(
        [
            local_ns(dt.datetime.strptime(r[col["Date"]], "%Y/%m/%d").date(), dt.time.fromisoformat(r[col["Time"]]))
            for r in rows
        ],
        dtype=np.int64,
    )

    def num(name: str) -> np.ndarray:
        return np.array([float(r[col[name]]) for r in rows], dtype=np.float64)

    return Bars(ts, [r[col["Time"]] for r in rows], num("High"), num("Low"), num("Last"), num("Volume"))


def assert_same_nan_and_close(ours: np.ndarray, ref: np.ndarray, tol: float = TOL) -> float:
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    finite = ~np.isnan(ref)
    assert finite.any()
    err = float(np.max(np.abs(ours[finite] - ref[finite])))
    assert err <= tol, err
    return err


# ------------------------------------------------------------------------------------------ hand-computed


def test_ema_hand_computed() -> None:
    # EMA(3): k = 0.5, seed = mean(2, 4, 6) = 4; then 4 + 0.5*(8-4) = 6; 6 + 0.5*(4-6) = 5
    np.testing.assert_array_equal(ema([2.0, 4.0, 6.0, 8.0, 4.0], 3), [NAN, NAN, 4.0, 6.0, 5.0])
    s = EmaStream(3)
    assert [s.update(v) for v in (2.0, 4.0, 6.0, 8.0, 4.0)] == [None, None, 4.0, 6.0, 5.0]
    assert s.ready and s.value == 5.0


def test_atr_hand_computed() -> None:
    high = [10.0, 11.0, 13.0, 16.0, 15.0]
    low = [8.0, 9.0, 10.0, 15.0, 14.0]
    close = [9.0, 10.5, 12.0, 15.5, 14.0]
    # TR: bar1 max(2, |11-9|, |9-9|) = 2; bar2 max(3, 2.5, 0.5) = 3; bar3 gap up max(1, 4, 3) = 4;
    # bar4 max(1, 0.5, 1.5) = 1.5. ATR(3): first at bar 3 = (2+3+4)/3 = 3, then (3*2 + 1.5)/3 = 2.5
    np.testing.assert_array_equal(true_range(high, low, close), [NAN, 2.0, 3.0, 4.0, 1.5])
    np.testing.assert_array_equal(atr(high, low, close, 3), [NAN, NAN, NAN, 3.0, 2.5])
    s = AtrStream(3)
    assert [s.update(h, lo, c) for h, lo, c in zip(high, low, close, strict=True)] == [None, None, None, 3.0, 2.5]
    assert s.true_range == 1.5


def test_dmi_hand_computed_period_2() -> None:
    high = [10.0, 12.0, 13.0, 12.0, 11.0]
    low = [8.0, 9.0, 11.0, 9.0, 10.0]
    close = [9.0, 11.0, 12.0, 10.0, 10.5]
    # bar1 (seed, plain sums): +DM 2, -DM 0, TR 3
    # bar2: +DM = 2 - 2/2 + 1 = 2, TR = 3 - 1.5 + 2 = 3.5 -> +DI 400/7, -DI 0, DX 100
    # bar3: down move 2: +DM 1, -DM 2, TR = 3.5 - 1.75 + 3 = 4.75 -> +DI 400/19, -DI 800/19, DX 100/3;
    #       first ADX = mean(DX over bars 2..3) = 200/3
    # bar4: inside bar: +DM 0.5, -DM 1, TR 3.375 -> DX 100/3, ADX = (200/3 + 100/3) / 2 = 50
    res = dmi(high, low, close, 2)
    np.testing.assert_allclose(res.plus_di, [NAN, NAN, 400 / 7, 400 / 19, 50 / 3.375], rtol=1e-15)
    np.testing.assert_allclose(res.minus_di, [NAN, NAN, 0.0, 800 / 19, 100 / 3.375], rtol=1e-15)
    np.testing.assert_allclose(res.dx, [NAN, NAN, 100.0, 100 / 3, 100 / 3], rtol=1e-15)
    np.testing.assert_allclose(res.adx, [NAN, NAN, NAN, 200 / 3, 50.0], rtol=1e-15)
    np.testing.assert_array_equal(adx(high, low, close, 2), res.adx)


def test_vwap_hand_computed_with_bands_and_reset() -> None:
    price = [10.0, 12.0, 20.0, 21.0]
    volume = [1.0, 3.0, 0.0, 2.0]
    sid = [1, 1, 2, 2]
    res = vwap(price, volume, sid, band_k=(1.0, 2.0))
    # session 1: (10*1 + 12*3)/4 = 11.5, var = (1*1.5^2 + 3*0.5^2)/4 = 0.75
    # session 2: no volume on its first bar (NaN), then a single price 21 -> std 0
    np.testing.assert_array_equal(res.vwap, [10.0, 11.5, NAN, 21.0])
    np.testing.assert_allclose(res.std, [0.0, math.sqrt(0.75), NAN, 0.0], rtol=1e-15, atol=0)
    np.testing.assert_allclose(res.upper[1], res.vwap + 2 * res.std)
    np.testing.assert_allclose(res.lower[0], res.vwap - res.std)
    assert res.upper.shape == (2, 4) and res.band_k == (1.0, 2.0)
    s = VwapStream((1.0,))
    pts = [s.update(p, v, i) for p, v, i in zip(price, volume, sid, strict=True)]
    assert pts[2] is None
    assert pts[1] is not None and pts[1].vwap == 11.5 and pts[1].upper == (11.5 + pts[1].std,)


# ------------------------------------------------------------------------------- TA-Lib on real ES bars


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("period", [2, 9, 20, 50])
def test_ema_matches_talib_on_real_bars(name: str, period: int) -> None:
    b = load(name)
    ours = ema(b.close, period)
    assert_same_nan_and_close(ours, talib.EMA(b.close, period))
    assert int(np.flatnonzero(~np.isnan(ours))[0]) == ema_lookback(period) == period - 1


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("period", [1, 5, 14, 30])
def test_atr_matches_talib_on_real_bars(name: str, period: int) -> None:
    b = load(name)
    ours = atr(b.high, b.low, b.close, period)
    assert_same_nan_and_close(ours, talib.ATR(b.high, b.low, b.close, period))
    assert int(np.flatnonzero(~np.isnan(ours))[0]) == atr_lookback(period) == period


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("period", [2, 5, 14, 28])
def test_dmi_matches_talib_on_real_bars(name: str, period: int) -> None:
    b = load(name)
    h, lo, c = b.high, b.low, b.close
    res = dmi(h, lo, c, period)
    assert_same_nan_and_close(res.plus_di, talib.PLUS_DI(h, lo, c, period))
    assert_same_nan_and_close(res.minus_di, talib.MINUS_DI(h, lo, c, period))
    assert_same_nan_and_close(res.dx, talib.DX(h, lo, c, period))
    assert_same_nan_and_close(res.adx, talib.ADX(h, lo, c, period))
    assert int(np.flatnonzero(~np.isnan(res.dx))[0]) == dmi_lookback(period) == period
    assert int(np.flatnonzero(~np.isnan(res.adx))[0]) == adx_lookback(period) == 2 * period - 1


def test_true_range_matches_talib_on_real_bars() -> None:
    b = load(FILES[0])
    np.testing.assert_array_equal(true_range(b.high, b.low, b.close), talib.TRANGE(b.high, b.low, b.close))


def test_degenerate_flat_and_quiet_bars_match_talib() -> None:
    # 20 identical bars (TR 0, DM 0), then a few moves, then flat again: the zero-TR / zero-DI-sum branches.
    c = np.array([100.0] * 20 + [100.25, 100.5, 100.25, 100.0] + [100.0] * 20)
    h, lo = c.copy(), c.copy()
    res = dmi(h, lo, c, 5)
    assert_same_nan_and_close(res.plus_di, talib.PLUS_DI(h, lo, c, 5))
    assert_same_nan_and_close(res.minus_di, talib.MINUS_DI(h, lo, c, 5))
    assert_same_nan_and_close(res.dx, talib.DX(h, lo, c, 5))
    assert_same_nan_and_close(res.adx, talib.ADX(h, lo, c, 5))
    assert_same_nan_and_close(atr(h, lo, c, 5), talib.ATR(h, lo, c, 5))
    assert res.dx[9] == 0.0 and res.adx[9] == 0.0  # no movement at all yet


# ---------------------------------------------------------------------------------- streaming == batch


@pytest.mark.parametrize("name", FILES)
def test_streams_equal_batch_bit_for_bit_on_real_bars(name: str) -> None:
    b = load(name)
    bars = list(zip(b.high.tolist(), b.low.tolist(), b.close.tolist(), strict=True))
    e, a, d, m = EmaStream(20), AtrStream(14), AdxStream(14), MarketStructureStream(5)
    cols: dict[str, list[float]] = {k: [] for k in ("ema", "atr", "adx", "pdi", "mdi", "dx", "ms")}

    def f(x: float | None) -> float:
        return NAN if x is None else float(x)

    for h, lo, c in bars:
        cols["ema"].append(f(e.update(c)))
        cols["atr"].append(f(a.update(h, lo, c)))
        cols["adx"].append(f(d.update(h, lo, c)))
        cols["pdi"].append(f(d.plus_di))
        cols["mdi"].append(f(d.minus_di))
        cols["dx"].append(f(d.dx))
        cols["ms"].append(f(m.update(h, lo)))
    res = dmi(b.high, b.low, b.close, 14)
    for key, batch in (
        ("ema", ema(b.close, 20)),
        ("atr", atr(b.high, b.low, b.close, 14)),
        ("adx", res.adx),
        ("pdi", res.plus_di),
        ("mdi", res.minus_di),
        ("dx", res.dx),
        ("ms", market_structure(b.high, b.low, 5)),
    ):
        np.testing.assert_array_equal(np.array(cols[key]), batch, err_msg=key)

    typical = (b.high + b.low + b.close) / 3.0
    sid = session_ids(b.ts_ns)
    batch_v = vwap(typical, b.volume, sid, band_k=(1.0, 2.5))
    vs = VwapStream((1.0, 2.5))
    pts = [vs.update(p, v, s) for p, v, s in zip(typical.tolist(), b.volume.tolist(), sid.tolist(), strict=True)]
    assert all(p is not None for p in pts)  # every Sierra bar has volume
    np.testing.assert_array_equal([p.vwap for p in pts if p], batch_v.vwap)
    np.testing.assert_array_equal([p.std for p in pts if p], batch_v.std)
    np.testing.assert_array_equal(np.array([p.upper for p in pts if p]).T, batch_v.upper)
    np.testing.assert_array_equal(np.array([p.lower for p in pts if p]).T, batch_v.lower)


# ------------------------------------------------------------------------------------- VWAP sessions


@pytest.mark.parametrize("name", FILES)
def test_session_ids_change_at_the_exchange_boundary(name: str) -> None:
    b = load(name)
    cal = calendar_for("equity")
    sid = session_ids(b.ts_ns)
    sample = range(0, len(sid), 37)
    assert [int(sid[i]) for i in sample] == [cal.trading_day(int(b.ts_ns[i])).toordinal() for i in sample]
    changes = np.flatnonzero(np.diff(sid)) + 1
    assert len(changes) >= 60  # a quarter of trading days
    for i in changes:
        prev = cal.session_for(int(b.ts_ns[i - 1]))
        assert b.ts_ns[i] >= prev.close_ns  # the previous bar's session has ended
        # 17:00 CT reopen, or the calendar's early close (12:00 CT) on a holiday eve
        assert b.local_time[i] == "17:00:00" or prev.early_close
    assert sum(b.local_time[i] == "17:00:00" for i in changes) >= len(changes) - 2


@pytest.mark.parametrize("name", FILES)
def test_vwap_resets_each_session_against_independent_sums(name: str) -> None:
    b = load(name)
    price = (b.high + b.low + b.close) / 3.0
    sid = session_ids(b.ts_ns)
    res = vwap(price, b.volume, sid, band_k=(1.0, 2.0))
    # independent: grouped cumulative sums
    starts = np.r_[0, np.flatnonzero(np.diff(sid)) + 1]
    ref = np.empty_like(price)
    bounds = [*starts.tolist(), len(price)]
    for s, e in itertools.pairwise(bounds):
        ref[s:e] = np.cumsum(price[s:e] * b.volume[s:e]) / np.cumsum(b.volume[s:e])
    np.testing.assert_allclose(res.vwap, ref, rtol=1e-13, atol=0)
    # reset: the first bar of each session is its own VWAP with zero spread
    np.testing.assert_allclose(res.vwap[starts], price[starts], rtol=1e-15, atol=0)  # (p*v)/v, one rounding
    np.testing.assert_array_equal(res.std[starts], 0.0)
    # two-pass weighted standard deviation on sampled bars
    session_start = np.repeat(starts, np.diff(bounds))
    for i in range(5, len(price), 211):
        s = session_start[i]
        p, w = price[s : i + 1], b.volume[s : i + 1]
        mean = np.average(p, weights=w)
        std = math.sqrt(np.average((p - mean) ** 2, weights=w))
        assert abs(res.std[i] - std) <= 1e-9 * max(1.0, std)
        assert res.upper[1][i] == res.vwap[i] + 2.0 * res.std[i]
    # the VWAP of a session never leaves the session's price range
    for s, e in itertools.pairwise(bounds):
        seg = res.vwap[s:e]
        assert np.all(seg >= np.minimum.accumulate(b.low[s:e])) and np.all(seg <= np.maximum.accumulate(b.high[s:e]))


# --------------------------------------------------------------------------- invalid and short inputs


@pytest.mark.parametrize("name", FILES)
def test_invalid_bars_are_skipped_as_missing(name: str) -> None:
    b = load(name)
    n = 3000
    h, lo, c = b.high[:n].copy(), b.low[:n].copy(), b.close[:n].copy()
    rng = np.random.default_rng(7)
    bad = np.zeros(n, dtype=bool)
    bad[:3] = True  # leading NaNs, as TA-Lib's wrapper handles them
    bad[rng.choice(np.arange(3, n), 40, replace=False)] = True
    h[bad] = NAN
    c[bad] = NAN
    c[np.flatnonzero(bad)[::2]] = math.inf
    ok = ~bad
    for ours, ref in (
        (ema(c, 10), talib.EMA(c[ok], 10)),
        (atr(h, lo, c, 14), talib.ATR(h[ok], lo[ok], c[ok], 14)),
        (adx(h, lo, c, 14), talib.ADX(h[ok], lo[ok], c[ok], 14)),
        (dmi(h, lo, c, 14).plus_di, talib.PLUS_DI(h[ok], lo[ok], c[ok], 14)),
    ):
        assert np.all(np.isnan(ours[bad]))
        assert_same_nan_and_close(ours[ok], ref)
    ms_all, ms_ok = market_structure(h, lo, 5), market_structure(h[ok], lo[ok], 5)
    assert np.all(np.isnan(ms_all[bad]))
    np.testing.assert_array_equal(ms_all[ok], ms_ok)
    # streams: a bad bar returns None, is counted, and leaves the state alone
    a, a_ref = AtrStream(14), AtrStream(14)
    for i in range(n):
        got = a.update(h[i], lo[i], c[i])
        if bad[i]:
            assert got is None
        else:
            assert got == a_ref.update(h[i], lo[i], c[i])
    assert a.rejected == int(bad.sum()) and a_ref.rejected == 0


def test_non_numeric_input_to_streams_does_not_crash() -> None:
    e, a, d, v, m = EmaStream(3), AtrStream(3), AdxStream(3), VwapStream(), MarketStructureStream(2)
    junk: list[object] = [None, "abc", math.nan, math.inf, -math.inf, object()]
    for x in junk:
        assert e.update(x) is None  # type: ignore[arg-type]
        assert a.update(x, 1.0, 1.0) is None  # type: ignore[arg-type]
        assert d.update(1.0, x, 1.0) is None  # type: ignore[arg-type]
        assert v.update(1.0, x, 1) is None  # type: ignore[arg-type]
        assert m.update(x, 1.0) is None  # type: ignore[arg-type]
    assert v.update(100.0, -5.0, 1) is None  # negative volume is invalid
    assert (e.rejected, a.rejected, d.rejected, v.rejected, m.rejected) == (6, 6, 6, 7, 6)
    assert e.value is None and a.value is None and d.adx is None and v.value is None and m.value is None
    assert [e.update(x) for x in (1, 2, 3)] == [None, None, 2.0]  # integer ticks work too


@pytest.mark.parametrize("size", [0, 1, 5, 13, 27])
def test_short_inputs_give_all_nan_of_the_same_length(size: int) -> None:
    b = load(FILES[0])
    h, lo, c, v = b.high[:size], b.low[:size], b.close[:size], b.volume[:size]
    outputs = [ema(c, 30), atr(h, lo, c, 28), adx(h, lo, c, 14), *dmi(h, lo, c, 28), market_structure(h, lo, 14)]
    for out in outputs:
        assert out.shape == (size,) and out.dtype == np.float64 and np.all(np.isnan(out))
    res = vwap(c, v, np.zeros(size, dtype=np.int64))
    assert res.vwap.shape == (size,) and res.upper.shape == (2, size)
    all_nan = np.full(size, NAN)
    np.testing.assert_array_equal(ema(all_nan, 3), all_nan)
    np.testing.assert_array_equal(adx(all_nan, all_nan, all_nan, 3), all_nan)
    assert session_ids(np.array([], dtype=np.int64)).shape == (0,)


def test_bad_parameters_and_shapes_raise() -> None:
    for call in (
        lambda: ema([1.0, 2.0], 1),
        lambda: EmaStream(0),
        lambda: atr([1.0], [1.0], [1.0], 0),
        lambda: AdxStream(1),
        lambda: dmi([1.0], [1.0], [1.0], 2.5),  # type: ignore[arg-type]
        lambda: atr([1.0, 2.0], [1.0], [1.0], 3),
        lambda: ema([[1.0, 2.0]], 2),
        lambda: vwap([1.0], [1.0], [1, 2]),
        lambda: VwapStream((1.0, -2.0)),
        lambda: market_structure([1.0], [1.0], 0),
        lambda: MarketStructureStream(True),
    ):
        with pytest.raises(ValueError):
            call()


# --------------------------------------------------------------------------------------- market structure


def stairs(step: float, bars: int = 12) -> tuple[list[float], list[float]]:
    mids = [100.0 + step * i for i in range(bars)]
    return [m + 1.0 for m in mids], [m - 1.0 for m in mids]


def test_structure_rising_falling_and_flat() -> None:
    for step, want in ((0.25, 1.0), (-0.25, -1.0), (0.0, 0.0)):
        h, lo = stairs(step)
        out = market_structure(h, lo, 3)
        assert np.all(np.isnan(out[: structure_lookback(3)]))
        np.testing.assert_array_equal(out[structure_lookback(3) :], want)


def test_structure_inside_outside_and_equal_swings_are_neutral() -> None:
    # windows of 2 bars: prior = bars 0-1, recent = bars 2-3
    cases = {
        "inside (LH + HL)": ([110.0, 105.0, 108.0, 104.0], [100.0, 101.0, 102.0, 103.0], 0.0),
        "outside (HH + LL)": ([110.0, 105.0, 111.0, 104.0], [100.0, 101.0, 99.0, 103.0], 0.0),
        "double top (=H + HL)": ([110.0, 105.0, 110.0, 104.0], [100.0, 101.0, 102.0, 103.0], 0.0),
        "HH + HL": ([110.0, 105.0, 110.25, 104.0], [100.0, 101.0, 102.0, 100.25], 1.0),
        "LH + LL": ([110.0, 105.0, 109.75, 104.0], [100.0, 101.0, 102.0, 99.75], -1.0),
    }
    for label, (h, lo, want) in cases.items():
        out = market_structure(h, lo, 2)
        assert out[3] == want, label
        s = MarketStructureStream(2)
        got = [s.update(a, b) for a, b in zip(h, lo, strict=True)]
        assert got[:3] == [None, None, None] and got[3] == Structure(int(want)), label
    s = MarketStructureStream(2)
    for a, b in zip([110.0, 105.0, 110.25, 104.0], [100.0, 101.0, 102.0, 100.25], strict=True):
        s.update(a, b)
    assert (s.prior_high, s.prior_low, s.recent_high, s.recent_low) == (110.0, 100.0, 110.25, 100.25)


@pytest.mark.parametrize("name", FILES)
def test_structure_on_real_bars_follows_the_definition(name: str) -> None:
    b = load(name)
    n = 5
    out = market_structure(b.high, b.low, n)
    # direct loop over the definition on a sample of bars
    for t in range(2 * n - 1, len(out), 97):
        rh, rl = b.high[t - n + 1 : t + 1].max(), b.low[t - n + 1 : t + 1].min()
        ph, pl = b.high[t - 2 * n + 1 : t - n + 1].max(), b.low[t - 2 * n + 1 : t - n + 1].min()
        want = 1.0 if rh > ph and rl > pl else -1.0 if rh < ph and rl < pl else 0.0
        assert out[t] == want
    counts = {k: int(np.sum(out == k)) for k in (-1.0, 0.0, 1.0)}
    assert all(v > 1000 for v in counts.values()), counts  # a quarter of ES shows all three states
