"""Bar indicators for the regime detector: EMA, ATR, +DI/-DI/DX/ADX (TA-Lib exact) and session VWAP.

Why one arithmetic path: the live daemon feeds bars one at a time into the ``*Stream`` classes while
backtests call the batch functions, and a regime decision must not depend on which path produced the number.
Every batch function therefore *runs the stream* over the array: the same float operations in the same order,
so batch and streaming agree bit for bit. The operation order, the seeding of the first value and the output
alignment are TA-Lib's (``ta_EMA.c``, ``ta_ATR.c``, ``ta_PLUS_DI.c``, ``ta_DX.c``, ``ta_ADX.c``),
so the values agree with TA-Lib on real ES bars: EMA, +DI/-DI/DX and ADX to the last bit, ATR to ~1e-14 (TA-Lib
0.8 rewrote the Wilder step as ``fma((n-1)/n, atr, (1/n)*tr)``, which rounds differently from the classic
``(atr*(n-1) + tr)/n`` kept here, bit-exact with TA-Lib <= 0.6; the fused form depends on the CPU's FMA, and
Python 3.11 has no ``math.fma``, so no single rounding matches every TA-Lib build).

Alignment (TA-Lib's *lookback*): output ``i`` is the value whose last input bar is ``i``; the first
``lookback`` valid bars produce no value (NaN in batch output, ``None`` from ``update``):

=========  ==============  ===========================================================================
indicator  lookback        first value
=========  ==============  ===========================================================================
EMA(n)     ``n - 1``       SMA of the first ``n`` values, then ``ema += (x - ema) * 2/(n+1)``
ATR(n)     ``n``           mean of the true ranges of bars ``1..n`` (bar 0 has no previous close), then
                           Wilder: ``atr = (atr * (n-1) + tr) / n``
+DI/-DI/DX ``n``           DM and TR summed over bars ``1..n-1``, then Wilder-smoothed from bar ``n``:
                           ``s = s - s/n + x`` (TA-Lib's seeding: the first smoothed TR is *not* a plain
                           sum of n true ranges)
ADX(n)     ``2n - 1``      mean of DX over bars ``n..2n-1``, then ``adx = (adx * (n-1) + dx) / n``
VWAP       ``0``           first bar of the session with positive volume
=========  ==============  ===========================================================================

Degenerate bars follow current TA-Lib (0.8, the build tested) as well: a smoothed TR of exactly zero gives
DI 0 (and no DX); a DI sum inside +-1e-14 gives no DX, in which case the DX output repeats its previous value
(0.0 at the first DX bar) and ADX keeps its value (the initial ADX average counts such a bar as DX 0).

Invalid bars (NaN/inf or non-numeric inputs; negative volume for VWAP) are *skipped*: the output at that
index is NaN (``None`` from ``update``), the state is left untouched and the stream counts it in
``rejected``. Leading NaNs are therefore handled exactly like TA-Lib's Python wrapper (the indicator starts at
the first finite bar); an interior NaN, which would poison every later TA-Lib value, is simply a missing bar
here, so ``f(x)[valid] == talib_f(x[valid])``.

These are float64 statistics of bar values (not money, never price keys); prices may be fed as floats or as
integer ticks, the indicator is then in the same unit.

Size: every indicator is a streaming class plus a batch function that runs it, over shared float helpers; the bit-
for-bit agreement of the two paths is this module's point, so they stay side by side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tradebot.core.calendar import calendar_for

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_PERIOD = 100_000
"""TA-Lib's upper bound for every period here."""

DI_SUM_EPSILON = 1e-14
"""TA-Lib's ``TA_IS_ZERO`` band applied to ``+DI + -DI`` before dividing by it (TA-Lib 0.4 used 1e-8)."""


def ema_lookback(period: int) -> int:
    """Bars consumed before the first EMA value (TA_EMA_Lookback)."""
    return _check_period("EMA", period, 2) - 1


def atr_lookback(period: int) -> int:
    """Bars consumed before the first ATR value (TA_ATR_Lookback)."""
    return _check_period("ATR", period, 1)


def dmi_lookback(period: int) -> int:
    """Bars consumed before the first +DI, -DI and DX value (TA_PLUS_DI/TA_DX_Lookback)."""
    return _check_period("DMI", period, 2)


def adx_lookback(period: int) -> int:
    """Bars consumed before the first ADX value (TA_ADX_Lookback)."""
    return 2 * _check_period("ADX", period, 2) - 1


def _check_period(name: str, period: int, minimum: int) -> int:
    # A period is configuration, not market data: a wrong one is a programming error and must fail loudly.
    if isinstance(period, bool) or not isinstance(period, int) or not minimum <= period <= MAX_PERIOD:
        raise ValueError(f"{name} period must be an int in [{minimum}, {MAX_PERIOD}], got {period!r}")
    return period


def finite_floats(*values: float) -> tuple[float, ...] | None:
    """The values as finite floats, or ``None`` when any is missing, non-numeric, NaN or infinite."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    for v in out:
        if not math.isfinite(v):
            return None
    return out


def _true_range(high: float, low: float, prev_close: float) -> float:
    # TA-Lib's TRANGE: the largest of the bar range and the two gaps to the previous close.
    tr = high - low
    gap = abs(high - prev_close)
    if gap > tr:
        tr = gap
    gap = abs(low - prev_close)
    if gap > tr:
        tr = gap
    return tr


# --------------------------------------------------------------------------------------------------- EMA


class EmaStream:
    """Incremental EMA(n): ``None`` for the first ``n - 1`` valid values, then the TA-Lib EMA."""

    __slots__ = ("_count", "_k", "_sum", "period", "rejected", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_period("EMA", period, 2)
        self._k = 2.0 / (period + 1)  # TA-Lib's PER_TO_K
        self._count = 0
        self._sum = 0.0
        self.value: float | None = None
        self.rejected = 0

    @property
    def ready(self) -> bool:
        return self.value is not None

    def update(self, value: float) -> float | None:
        got = finite_floats(value)
        if got is None:
            self.rejected += 1
            return None
        x = got[0]
        prev = self.value
        if prev is not None:
            prev = (x - prev) * self._k + prev
            self.value = prev
            return prev
        self._sum += x
        self._count += 1
        if self._count == self.period:
            self.value = self._sum / self.period
        return self.value


# --------------------------------------------------------------------------------------------------- ATR


class AtrStream:
    """Incremental ATR(n) (Wilder), TA-Lib seeding: first value = mean of the first n true ranges."""

    __slots__ = ("_count", "_prev_close", "_sum", "period", "rejected", "true_range", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period("ATR", period, 1)
        self._prev_close: float | None = None
        self._count = 0
        self._sum = 0.0
        self.true_range: float | None = None
        """True range of the last valid bar (``None`` on the first bar, which has no previous close)."""
        self.value: float | None = None
        self.rejected = 0

    @property
    def ready(self) -> bool:
        return self.value is not None

    def update(self, high: float, low: float, close: float) -> float | None:
        got = finite_floats(high, low, close)
        if got is None:
            self.rejected += 1
            return None
        h, lo, c = got
        prev_close = self._prev_close
        self._prev_close = c
        if prev_close is None:
            return None
        tr = _true_range(h, lo, prev_close)
        self.true_range = tr
        n = self.period
        atr = self.value
        if atr is not None:
            # TA-Lib: prevATR *= n-1; prevATR += tr; prevATR /= n (this order, for identical bits)
            atr = (atr * (n - 1) + tr) / n
            self.value = atr
            return atr
        self._sum += tr
        self._count += 1
        if self._count == n:
            self.value = self._sum / n
        return self.value


# --------------------------------------------------------------------------------------------- DMI / ADX


class AdxStream:
    """Incremental Wilder DMI: ``update`` returns ADX(n); ``plus_di``, ``minus_di``, ``dx`` follow TA-Lib's
    PLUS_DI, MINUS_DI and DX (``None`` until bar ``n``), ``adx`` until bar ``2n - 1``."""

    __slots__ = (
        "_count",
        "_mdm",
        "_pdm",
        "_prev_close",
        "_prev_high",
        "_prev_low",
        "_sum_dx",
        "_tr",
        "adx",
        "dx",
        "minus_di",
        "period",
        "plus_di",
        "rejected",
    )

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period("ADX", period, 2)
        self._count = 0
        self._prev_high = self._prev_low = self._prev_close = 0.0
        self._pdm = self._mdm = self._tr = 0.0
        self._sum_dx = 0.0
        self.plus_di: float | None = None
        self.minus_di: float | None = None
        self.dx: float | None = None
        self.adx: float | None = None
        self.rejected = 0

    @property
    def ready(self) -> bool:
        return self.adx is not None

    def update(self, high: float, low: float, close: float) -> float | None:
        got = finite_floats(high, low, close)
        if got is None:
            self.rejected += 1
            return None
        h, lo, c = got
        count = self._count
        self._count = count + 1
        if count == 0:
            self._prev_high, self._prev_low, self._prev_close = h, lo, c
            return None
        n = self.period
        diff_p = h - self._prev_high  # up move
        diff_m = self._prev_low - lo  # down move
        tr = _true_range(h, lo, self._prev_close)
        self._prev_high, self._prev_low, self._prev_close = h, lo, c
        pdm = self._pdm
        mdm = self._mdm
        if count < n:
            # TA-Lib seeds with the plain sums over bars 1..n-1 (n-1 values, not n).
            if diff_m > 0 and diff_p < diff_m:
                self._mdm = mdm + diff_m
            elif diff_p > 0 and diff_p > diff_m:
                self._pdm = pdm + diff_p
            self._tr += tr
            return None
        mdm -= mdm / n
        pdm -= pdm / n
        if diff_m > 0 and diff_p < diff_m:
            mdm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            pdm += diff_p
        prev_tr = self._tr
        tr_s = prev_tr - prev_tr / n + tr
        self._pdm, self._mdm, self._tr = pdm, mdm, tr_s
        dx: float | None = None
        if tr_s > 0.0:
            minus_di = 100.0 * (mdm / tr_s)
            plus_di = 100.0 * (pdm / tr_s)
            di_sum = minus_di + plus_di
            if not -DI_SUM_EPSILON < di_sum < DI_SUM_EPSILON:
                dx = 100.0 * (abs(minus_di - plus_di) / di_sum)
        else:
            minus_di = plus_di = 0.0
        self.plus_di = plus_di
        self.minus_di = minus_di
        if dx is not None:
            self.dx = dx
        elif self.dx is None:
            self.dx = 0.0  # TA_DX writes 0.0 for an undefined first value, else repeats the previous one
        stage = count - n  # 0 on the first DI bar
        if stage < n:
            if dx is not None:
                self._sum_dx += dx
            if stage == n - 1:
                self.adx = self._sum_dx / n
            return self.adx
        adx = self.adx
        if dx is not None and adx is not None:
            adx = (adx * (n - 1) + dx) / n
            self.adx = adx
        return adx


# -------------------------------------------------------------------------------------------------- VWAP


class VwapPoint(NamedTuple):
    """Session VWAP with volume-weighted standard-deviation bands at ``vwap +- k * std``."""

    vwap: float
    std: float
    upper: tuple[float, ...]
    lower: tuple[float, ...]


class VwapStream:
    """Session-resetting VWAP: ``sum(p*v) / sum(v)`` since the session's first bar, with bands.

    ``std`` is the volume-weighted population standard deviation of the session's prices around their
    weighted mean, ``sqrt(sum(v*(p - mean)^2) / sum(v))``, accumulated with West's weighted update (stable; the
    textbook ``E[p^2] - E[p]^2`` loses ~9 of 16 digits at ES prices). A new ``session_id`` (any change, not
    only an increase) starts a new session; ``update`` returns ``None`` until the session has volume.
    """

    __slots__ = ("_m2", "_mean", "_pv", "_session", "_w", "band_k", "rejected", "value")

    def __init__(self, band_k: Sequence[float] = (1.0, 2.0)) -> None:
        self.band_k: tuple[float, ...] = _check_bands(band_k)
        self._session: int | None = None
        self._w = self._pv = self._mean = self._m2 = 0.0
        self.value: VwapPoint | None = None
        self.rejected = 0

    def update(self, price: float, volume: float, session_id: int) -> VwapPoint | None:
        got = finite_floats(price, volume)
        if got is None or got[1] < 0.0:
            self.rejected += 1
            return None
        p, v = got
        if session_id != self._session:
            self._session = session_id
            self._w = self._pv = self._mean = self._m2 = 0.0
            self.value = None
        if v > 0.0:
            w = self._w + v
            self._pv += p * v
            delta = p - self._mean
            mean = self._mean + delta * (v / w)
            self._m2 += v * delta * (p - mean)
            self._mean = mean
            self._w = w
        elif self._w == 0.0:
            return None
        vwap = self._pv / self._w
        var = self._m2 / self._w
        std = math.sqrt(var) if var > 0.0 else 0.0
        self.value = VwapPoint(
            vwap, std, tuple(vwap + k * std for k in self.band_k), tuple(vwap - k * std for k in self.band_k)
        )
        return self.value


def _check_bands(band_k: Iterable[float]) -> tuple[float, ...]:
    ks = tuple(float(k) for k in band_k)
    if any(not math.isfinite(k) or k <= 0.0 for k in ks):
        raise ValueError(f"VWAP band multipliers must be finite and positive, got {ks!r}")
    return ks


# ------------------------------------------------------------------------------------------------- batch


def _column(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def float_columns(**cols: npt.ArrayLike) -> list[FloatArray]:
    """Named input columns as float arrays of one length (``ValueError`` naming the columns otherwise); shared
    by the batch indicators here and in :mod:`tradebot.regime.structure`."""
    arrays = [_column(v, k) for k, v in cols.items()]
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError(
            "input arrays differ in length: "
            + ", ".join(f"{k}={a.shape[0]}" for k, a in zip(cols, arrays, strict=True))
        )
    return arrays


def _to_array(values: list[float | None]) -> FloatArray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def ema(values: npt.ArrayLike, period: int) -> FloatArray:
    """TA-Lib EMA aligned with ``values``; NaN for the first ``period - 1`` valid values and for invalid ones."""
    x = _column(values, "values")
    update = EmaStream(period).update
    return _to_array([update(v) for v in x.tolist()])


def true_range(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> FloatArray:
    """TA-Lib TRANGE (lookback 1: NaN on the first valid bar), previous close = last valid bar's close."""
    h, lo, c = float_columns(high=high, low=low, close=close)
    stream = AtrStream(1)
    update = stream.update
    return _to_array([update(a, b, d) for a, b, d in zip(h.tolist(), lo.tolist(), c.tolist(), strict=True)])


def atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int = 14) -> FloatArray:
    """TA-Lib ATR aligned with the bars; NaN for the first ``period`` valid bars (lookback ``period``)."""
    h, lo, c = float_columns(high=high, low=low, close=close)
    update = AtrStream(period).update
    return _to_array([update(a, b, d) for a, b, d in zip(h.tolist(), lo.tolist(), c.tolist(), strict=True)])


class DmiResult(NamedTuple):
    """Wilder's directional movement system, each array aligned with the bars (NaN in warm-up)."""

    plus_di: FloatArray
    minus_di: FloatArray
    dx: FloatArray
    adx: FloatArray


def dmi(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int = 14) -> DmiResult:
    """+DI, -DI, DX (lookback ``period``) and ADX (lookback ``2*period - 1``), as TA-Lib computes them."""
    h, lo, c = float_columns(high=high, low=low, close=close)
    size = h.shape[0]
    out = np.full((4, size), np.nan)
    stream = AdxStream(period)
    update = stream.update
    valid = (np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)).tolist()
    hs, ls, cs = h.tolist(), lo.tolist(), c.tolist()
    rows: list[list[float]] = [[], [], [], []]
    idx: list[int] = []
    for i in range(size):
        if not valid[i]:
            continue
        update(hs[i], ls[i], cs[i])
        if stream.plus_di is not None:
            idx.append(i)
            rows[0].append(stream.plus_di)
            rows[1].append(stream.minus_di if stream.minus_di is not None else math.nan)
            rows[2].append(stream.dx if stream.dx is not None else math.nan)
            rows[3].append(stream.adx if stream.adx is not None else math.nan)
    if idx:
        out[:, np.asarray(idx, dtype=np.int64)] = np.asarray(rows, dtype=np.float64)
    return DmiResult(out[0], out[1], out[2], out[3])


def adx(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int = 14) -> FloatArray:
    """TA-Lib ADX aligned with the bars; NaN for the first ``2*period - 1`` valid bars."""
    return dmi(high, low, close, period).adx


class VwapResult(NamedTuple):
    """Session VWAP arrays; ``upper[j]``/``lower[j]`` are the bands at ``band_k[j]`` standard deviations."""

    vwap: FloatArray
    std: FloatArray
    upper: FloatArray  # shape (len(band_k), n)
    lower: FloatArray
    band_k: tuple[float, ...]


def vwap(
    price: npt.ArrayLike,
    volume: npt.ArrayLike,
    session_id: npt.ArrayLike,
    band_k: Sequence[float] = (1.0, 2.0),
) -> VwapResult:
    """Session-resetting VWAP with bands (see ``VwapStream``); NaN before a session's first volume and on
    invalid bars. ``price`` is the caller's choice (typical price ``(h+l+c)/3`` or close for bars)."""
    ks = _check_bands(band_k)
    p, v = float_columns(price=price, volume=volume)
    sid = np.asarray(session_id)
    if sid.shape != p.shape:
        raise ValueError(f"session_id has shape {sid.shape}, prices {p.shape}")
    update = VwapStream(ks).update
    points = [update(a, b, s) for a, b, s in zip(p.tolist(), v.tolist(), sid.tolist(), strict=True)]
    mid = _to_array([pt.vwap if pt is not None else None for pt in points])
    std = _to_array([pt.std if pt is not None else None for pt in points])
    k = np.asarray(ks, dtype=np.float64)[:, None]
    return VwapResult(mid, std, mid[None, :] + k * std[None, :], mid[None, :] - k * std[None, :], ks)


def session_ids(ts_ns: npt.ArrayLike, template: str = "equity") -> IntArray:
    """Trading-date ordinal (``date.toordinal()``) of each UTC-ns timestamp: the session VWAP's reset key.

    Same rule as ``ExchangeCalendar.session_for``: a timestamp in the open session belongs to it, one in a
    break or a closed day to the session that opens next (so the 17:00 CT reopen starts a new id).
    """
    cal = calendar_for(template)
    ts = np.asarray(ts_ns, dtype=np.int64)
    opens = np.fromiter((s.open_ns for s in cal.sessions), dtype=np.int64, count=len(cal.sessions))
    closes = np.fromiter((s.close_ns for s in cal.sessions), dtype=np.int64, count=len(cal.sessions))
    ordinals = np.fromiter((s.trading_date.toordinal() for s in cal.sessions), dtype=np.int64, count=len(cal.sessions))
    i = np.searchsorted(opens, ts, side="right") - 1
    inside = (i >= 0) & (ts < closes[np.clip(i, 0, None)])
    j = np.where(inside, i, i + 1)
    if ts.size and (j.min() < 0 or j.max() >= len(cal.sessions)):
        raise ValueError("timestamps beyond the calendar's span")
    return ordinals[j]
