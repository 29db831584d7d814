"""Footprint bars from columns: the very ``FootprintBar`` objects the incremental builder makes.

Boundaries, OHLC, delta extremes and cumulative deltas come from the compiled emulation of the builder
(:func:`tradebot.backtest.fast.kernels.assign_bars`); the per-price (bid, ask, unknown, trades) volumes from one
compiled pass over each bar's run of trades (:func:`~tradebot.backtest.fast.kernels.bar_levels`, a bincount over
(bar, level, side) without the temporaries); the immutable bar itself from the footprint module's own constructor
(:func:`tradebot.orderflow.footprint.finalize_bar`), so levels, totals and the POC rule are shared code, not a
copy. A day has a few hundred bars, so building them as objects costs little; everything per trade is
vectorised.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tradebot.backtest.fast import kernels as kn
from tradebot.backtest.fast.load import DayColumns
from tradebot.core.calendar import NS, ExchangeCalendar, Session, calendar_for
from tradebot.core.config import FootprintSettings
from tradebot.orderflow.footprint import FootprintBar, finalize_bar

I64 = NDArray[np.int64]


@dataclass(frozen=True)
class SessionArrays:
    sessions: tuple[Session, ...]
    open_ns: I64
    close_ns: I64
    rth_open_ns: I64
    rth_close_ns: I64


@functools.lru_cache(maxsize=8)
def session_arrays(template: str) -> SessionArrays:
    cal: ExchangeCalendar = calendar_for(template)
    ss = tuple(cal.sessions)
    return SessionArrays(ss, np.array([s.open_ns for s in ss], np.int64), np.array([s.close_ns for s in ss], np.int64),
                         np.array([s.rth_open_ns for s in ss], np.int64),
                         np.array([s.rth_close_ns for s in ss], np.int64))


@dataclass
class Trades:
    """The accepted trades in stream order (what every trade consumer of the engine sees)."""

    records: NDArray[np.int32]
    """Record index of each (its event is ``2 r + 1``)."""
    ts: I64
    px: NDArray[np.int32]
    size: NDArray[np.int32]
    side: NDArray[np.int8]

    @classmethod
    def of(cls, cols: DayColumns) -> Trades:
        idx = cols.trade_records
        return cls(idx, cols.rts[idx], cols.tpx[idx], cols.tsz[idx], cols.tside[idx])

    def __len__(self) -> int:
        return int(self.ts.size)


@dataclass
class BarSeries:
    bars: list[FootprintBar]
    close_pos: list[int]
    """Position code of the event that closed each bar; ``-1`` when the end-of-data flush closed it."""


def _bar_bound(cols: DayColumns, trades: Trades, sa: SessionArrays, settings: FootprintSettings) -> int:
    """Room for every bar: time slots spanned (volume bars: full bars) plus a few per session crossed."""
    if not len(trades):
        return 8
    lo, hi = int(trades.ts[0]), int(trades.ts[-1])  # the accepted trade stream is in time order
    sessions = int(np.searchsorted(sa.open_ns, hi, side="right") - np.searchsorted(sa.open_ns, lo, side="right")) + 1
    if settings.bar_type == "volume":
        body = int(trades.size.sum()) // settings.bar_volume
    else:
        body = (hi - lo) // (settings.bar_seconds * NS)
    return body + 4 * sessions + 8


def build_bars(cols: DayColumns, trades: Trades, settings: FootprintSettings) -> BarSeries:
    spec = cols.spec
    sa = session_arrays(spec.session)
    volume_bars = settings.bar_type == "volume"
    cap = settings.bar_volume if volume_bars else kn.BIG
    capacity = _bar_bound(cols, trades, sa, settings)
    while True:
        table = kn.assign_bars(cols.rts, cols.book_ok, cols.trade_ok, cols.tpx, cols.tsz, cols.tside, sa.open_ns,
                              sa.close_ns, sa.rth_open_ns, sa.rth_close_ns, settings.bar_seconds * NS, cap,
                              volume_bars, capacity)
        if table.shape[1] == kn.B_FIELDS:
            break
        capacity *= 2
    if table.shape[0] == 0:
        return BarSeries([], [])
    offsets, acc = kn.bar_levels(table, trades.px, trades.size, trades.side)
    rows = table.tolist()
    off_l = offsets.tolist()
    lv = acc.tolist()
    symbol = spec.root
    bars: list[FootprintBar] = []
    for b, row in enumerate(rows):
        lo, hi = row[kn.B_LOW], row[kn.B_HIGH]
        per = {lo + i: a for i, a in enumerate(lv[off_l[b]:off_l[b + 1]]) if a[3]}
        bars.append(finalize_bar(symbol, sa.sessions[row[kn.B_SESSION]].trading_date, row[kn.B_START], row[kn.B_END],
                              row[kn.B_OPEN], hi, lo, row[kn.B_CLOSE], per, row[kn.B_DMAX], row[kn.B_DMIN],
                              row[kn.B_FIRST_TS], row[kn.B_LAST_TS], row[kn.B_CD], row[kn.B_RCD], row[kn.B_INDEX]))
    return BarSeries(bars, [int(x) for x in table[:, kn.B_CLOSE_POS].tolist()])
