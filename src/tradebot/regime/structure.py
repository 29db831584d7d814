"""Market structure: is price making higher highs and higher lows, lower highs and lower lows, or neither?

Definition (window against window, the way a trader reads swing levels off a chart). At bar ``t`` with
lookback ``N`` (default 5):

- the *recent* window is the last ``N`` bars, ``t-N+1 .. t``; the *prior* window the ``N`` bars before it,
  ``t-2N+1 .. t-N`` (adjacent, not overlapping);
- a window's swing high is its highest high, its swing low its lowest low;
- **BULLISH** (``+1``): recent swing high > prior swing high **and** recent swing low > prior swing low (HH + HL);
- **BEARISH** (``-1``): recent swing high < prior swing high **and** recent swing low < prior swing low (LH + LL);
- **NEUTRAL** (``0``): anything else: an inside pair (LH + HL, contraction), an outside pair (HH + LL,
  expansion), or an equal swing high or low (a double top is not a higher high).

Comparisons are strict and exact (bar prices are tick multiples, so equality is meaningful). The first value
needs ``2N`` bars (lookback ``2N - 1``, TA-Lib's convention: NaN/``None`` before). Bars with a non-finite high
or low are skipped like in ``tradebot.regime.indicators``: NaN at that index, state untouched, counted in the
stream's ``rejected``. Batch and streaming compare the same floats, so they agree exactly.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from tradebot.regime.indicators import FloatArray, finite_floats, float_columns

MAX_LOOKBACK = 10_000


class Structure(IntEnum):
    BEARISH = -1
    NEUTRAL = 0
    BULLISH = 1


def _check_lookback(lookback: int) -> int:
    if isinstance(lookback, bool) or not isinstance(lookback, int) or not 1 <= lookback <= MAX_LOOKBACK:
        raise ValueError(f"structure lookback must be an int in [1, {MAX_LOOKBACK}], got {lookback!r}")
    return lookback


def structure_lookback(lookback: int = 5) -> int:
    """Bars consumed before the first structure value: two full windows minus the current bar."""
    return 2 * _check_lookback(lookback) - 1


def _classify(recent_high: float, recent_low: float, prior_high: float, prior_low: float) -> Structure:
    if recent_high > prior_high and recent_low > prior_low:
        return Structure.BULLISH
    if recent_high < prior_high and recent_low < prior_low:
        return Structure.BEARISH
    return Structure.NEUTRAL


def market_structure(high: npt.ArrayLike, low: npt.ArrayLike, lookback: int = 5) -> FloatArray:
    """Structure per bar as float64 ``+1`` / ``-1`` / ``0`` (see module docstring), NaN in warm-up and on
    invalid bars; ``Structure(int(x))`` turns a value back into the enum."""
    n = _check_lookback(lookback)
    h, lo = float_columns(high=high, low=low)
    out = np.full(h.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(h) & np.isfinite(lo))
    if idx.size < 2 * n:
        return out
    hv, lv = h[idx], lo[idx]
    win_high = np.lib.stride_tricks.sliding_window_view(hv, n).max(axis=1)  # win_high[j] = max(hv[j : j+n])
    win_low = np.lib.stride_tricks.sliding_window_view(lv, n).min(axis=1)
    recent_h, prior_h = win_high[n:], win_high[:-n]
    recent_l, prior_l = win_low[n:], win_low[:-n]
    bull = (recent_h > prior_h) & (recent_l > prior_l)
    bear = (recent_h < prior_h) & (recent_l < prior_l)
    out[idx[2 * n - 1 :]] = np.where(bull, 1.0, np.where(bear, -1.0, 0.0))
    return out


class MarketStructureStream:
    """Bar-by-bar ``market_structure``; the four swing levels of the last classification stay readable."""

    __slots__ = (
        "_highs",
        "_lows",
        "lookback",
        "prior_high",
        "prior_low",
        "recent_high",
        "recent_low",
        "rejected",
        "value",
    )

    def __init__(self, lookback: int = 5) -> None:
        self.lookback = _check_lookback(lookback)
        self._highs: deque[float] = deque(maxlen=2 * lookback)
        self._lows: deque[float] = deque(maxlen=2 * lookback)
        self.recent_high: float | None = None
        self.recent_low: float | None = None
        self.prior_high: float | None = None
        self.prior_low: float | None = None
        self.value: Structure | None = None
        self.rejected = 0

    def update(self, high: float, low: float) -> Structure | None:
        got = finite_floats(high, low)
        if got is None:
            self.rejected += 1
            return None
        self._highs.append(got[0])
        self._lows.append(got[1])
        n = self.lookback
        if len(self._highs) < 2 * n:
            return None
        highs = list(self._highs)
        lows = list(self._lows)
        self.prior_high, self.recent_high = max(highs[:n]), max(highs[n:])
        self.prior_low, self.recent_low = min(lows[:n]), min(lows[n:])
        self.value = _classify(self.recent_high, self.recent_low, self.prior_high, self.prior_low)
        return self.value
