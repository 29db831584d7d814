"""The router's context at a bar's close, from cumulative arrays instead of per-event trackers.

``SymbolStrategy`` hands the router a :class:`RouterContext` built from the microstructure tracker and the
session profile *as they stand before the event that closed the bar*. Here the same values come from the
columns: "before that event" is a position-code comparison, the book is the last accepted book before it,
the flow window is a range of the (bucketed) accepted trades found by ``searchsorted`` over prefix sums, and
the developing profile is a volume-by-price array advanced bar by bar (the closes come in order).

What is computed is what the router and the tradeability filters read, with their own pure functions where
they exist (:func:`~tradebot.orderflow.microstructure.imbalance`, :func:`~tradebot.orderflow.profile.value_area`,
:func:`~tradebot.orderflow.profile.volume_nodes`): book availability, depth and age, best quotes and spread,
the top-N depth statistics, buy pressure and the flow counts, the last price; POC, value area and volumes of
the profile. Fields no decision reads are left empty: OFI, market-order impact, VWAP, and (unless
``full_profile``) the profile's HVN/LVN lists, which cost more than the rest of the snapshot together.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tradebot.backtest.fast import kernels as kn
from tradebot.backtest.fast.bars import Trades
from tradebot.backtest.fast.load import DayColumns
from tradebot.core.config import Settings
from tradebot.orderflow.footprint import FootprintBar
from tradebot.orderflow.microstructure import DepthStats, MicrostructureSnapshot, imbalance
from tradebot.orderflow.profile import ProfileSnapshot, VolumeNode, value_area, volume_nodes
from tradebot.regime.router import RouterContext

I64 = NDArray[np.int64]
_NS = 1_000_000_000


class ContextBuilder:
    """``at(bar, close_pos)`` for the bars of one day, called in close order."""

    def __init__(self, cols: DayColumns, trades: Trades, settings: Settings, *, full_profile: bool = False) -> None:
        self.cols = cols
        self.trades = trades
        self.ms = settings.microstructure
        self.ps = settings.profile
        self.full_profile = full_profile
        spec = cols.spec
        self.symbol = spec.root
        self.tick = float(spec.tick_size)
        self.tick_value = spec.tick_value_cents
        # books
        bidx = cols.book_records
        self.bk_rec = bidx
        lv = np.maximum(cols.bid_levels[bidx], cols.ask_levels[bidx])
        self.bk_seen = np.maximum.accumulate(lv) if lv.size else lv
        # flow window: the tracker's 100 ms buckets. The accepted trade stream never goes back in time (the
        # validator's out-of-order rule with no tolerance, which ``fast_supported`` requires), so "a late print
        # joins the newest bucket" never applies and a bucket range is a time range of the trades.
        self.bucket_ns = self.ms.bucket_ms * 1_000_000
        w_ns = self.ms.flow_window_seconds * _NS
        self.n_buckets = -(-w_ns // self.bucket_ns)
        self.span = self.n_buckets + 1
        # running totals of the trades before the latest close (the profile's volumes), advanced in close order
        self.tot_vol = self.tot_buy = self.tot_sell = 0
        # profile: volume by price over the day's accepted trades, advanced in close order
        if len(trades):
            self.p0 = int(trades.px.min())
            width = int(trades.px.max()) - self.p0 + 1
        else:
            self.p0, width = 0, 1
        self.pv = np.zeros(width, np.int64)
        self.pv_upto = 0
        self.p_low = self.p_high = 0

    # -- pieces ----------------------------------------------------------------------------------------

    def trades_before(self, close_pos: int) -> int:
        """How many accepted trades precede the event at ``close_pos`` (``-1``: all). Record r's trade is event
        ``2r + 1``, before ``close_pos`` exactly when ``r < close_pos // 2``."""
        if close_pos < 0:
            return len(self.trades)
        return int(np.searchsorted(self.trades.records, np.int32(close_pos // 2)))

    def micro(self, close_pos: int, now_ns: int) -> MicrostructureSnapshot:
        cols = self.cols
        ms = self.ms
        # books before the closing event: record r's book is event 2r, so r < ceil(close_pos / 2)
        kb = (int(np.searchsorted(self.bk_rec, np.int32((close_pos + 1) // 2))) if close_pos >= 0
              else int(self.bk_rec.size))
        best_bid = best_ask = bid_size = ask_size = spread_t = None
        sp_bps = mid = wmid = top_imb = depth_imb = None
        book_ts: int | None = None
        seen = 0
        depths: tuple[DepthStats, ...] = ()
        if kb > 0:
            r = int(self.bk_rec[kb - 1])
            seen = int(self.bk_seen[kb - 1])
            book_ts = int(cols.rts[r])
            b, a = int(cols.bid[r]), int(cols.ask[r])
            if b != kn.NO_PX:
                best_bid, bid_size = b, int(cols.bid_sz[r])
            if a != kn.NO_PX:
                best_ask, ask_size = a, int(cols.ask_sz[r])
            if best_bid is not None and best_ask is not None and bid_size is not None and ask_size is not None:
                spread_t = best_ask - best_bid
                sp_bps = 2.0 * (best_ask - best_bid) / (best_ask + best_bid) * 1e4
                mid = (best_bid + best_ask) / 2 * self.tick
                if bid_size + ask_size > 0:
                    wmid = (bid_size * best_ask + ask_size * best_bid) / (bid_size + ask_size) * self.tick
            top_imb = imbalance(bid_size or 0, ask_size or 0)
            nb, na = int(cols.bid_levels[r]), int(cols.ask_levels[r])
            out = []
            for n in ms.depth_levels:
                if n > seen:
                    continue
                dc = cols.depth.get(n)
                if dc is None:
                    continue  # a depth nothing reads (see FastDay: every read depth is loaded)
                bs, as_ = int(dc.bid_size[r]), int(dc.ask_size[r])
                out.append(DepthStats(n, min(n, nb), min(n, na), bs, as_, int(dc.bid_notional[r]) * self.tick_value,
                                      int(dc.ask_notional[r]) * self.tick_value, imbalance(bs, as_)))
            depths = tuple(out)
            if depths and depths[0].levels == ms.depth_levels[0]:
                depth_imb = depths[0].imbalance
        # trades before the closing event, in the flow window at ``now`` (bucket resolution, ring eviction)
        m = self.trades_before(close_pos)
        trades_n = volume = buys = sells = 0
        last_price: int | None = None
        if m > 0:
            ts = self.trades.ts
            b = self.bucket_ns
            now_idx = now_ns // b
            lo_idx = max(now_idx - self.n_buckets, int(ts[m - 1]) // b - self.span)
            lo = int(np.searchsorted(ts[:m], (lo_idx + 1) * b, side="left"))
            hi = int(np.searchsorted(ts[:m], (now_idx + 1) * b, side="left"))
            if hi > lo:
                size = self.trades.size[lo:hi]
                side = self.trades.side[lo:hi]
                trades_n = hi - lo
                volume = int(size.sum(dtype=np.int64))
                buys = int(size.sum(dtype=np.int64, where=side == 1))
                sells = int(size.sum(dtype=np.int64, where=side == -1))
            last_price = int(self.trades.px[m - 1])
        sided = buys + sells
        return MicrostructureSnapshot(
            symbol=self.symbol, ts_ns=now_ns, book_available=kb > 0, book_depth=seen, book_ts_ns=book_ts,
            best_bid=best_bid, best_ask=best_ask, bid_size=bid_size, ask_size=ask_size, spread_ticks=spread_t,
            spread_bps=sp_bps, mid=mid, weighted_mid=wmid, top_imbalance=top_imb, depth=depths,
            depth_imbalance=depth_imb, last_ofi=None, last_ofi_multi=None, ofi=(), impact_buy=None, impact_sell=None,
            flow_window_seconds=ms.flow_window_seconds, trades=trades_n, volume=volume, buy_volume=buys,
            sell_volume=sells, trade_intensity=trades_n * 60 / ms.flow_window_seconds,
            buy_pressure=buys / sided if sided else None,
            order_imbalance=(buys - sells) / sided if sided else None, last_price=last_price, vwap=None,
            vwap_deviation_pct=None)

    def profile(self, close_pos: int) -> ProfileSnapshot | None:
        t = self.trades
        m = self.trades_before(close_pos)
        if m == 0:
            return None
        if m > self.pv_upto:
            k = self.pv_upto
            px = t.px[k:m]
            size = t.size[k:m]
            side = t.side[k:m]
            self.pv += np.bincount(px - self.p0, weights=size.astype(np.float64),
                                   minlength=self.pv.size).astype(np.int64)
            self.tot_vol += int(size.sum(dtype=np.int64))
            self.tot_buy += int(size.sum(dtype=np.int64, where=side == 1))
            self.tot_sell += int(size.sum(dtype=np.int64, where=side == -1))
            lo_new, hi_new = int(px.min()), int(px.max())
            self.p_low = lo_new if k == 0 else min(self.p_low, lo_new)
            self.p_high = hi_new if k == 0 else max(self.p_high, hi_new)
            self.pv_upto = m
        elif m < self.pv_upto:
            raise ValueError("profile snapshots must be taken in close order")
        low, high = self.p_low, self.p_high
        dense_a = self.pv[low - self.p0:high - self.p0 + 1]
        best = dense_a.max()
        cand = np.flatnonzero(dense_a == best) + low
        dist = np.abs(2 * cand - (low + high))
        poc = int(cand[np.lexsort((cand, dist))[0]])
        dense = dense_a.tolist()
        ps = self.ps
        va = value_area(dense, low, poc, ps.value_area_pct, ps.value_area_method)
        hvn: tuple[VolumeNode, ...] = ()
        lvn: tuple[VolumeNode, ...] = ()
        if self.full_profile:
            h, lv = volume_nodes(dense, low, ps.node_smoothing_ticks, ps.node_min_prominence)
            hvn, lvn = tuple(h), tuple(lv)
        return ProfileSnapshot(self.tot_vol, low, high, poc, va, hvn, lvn, self.tot_buy, self.tot_sell)

    def at(self, bar: FootprintBar, close_pos: int) -> RouterContext:
        """What ``SymbolStrategy`` hands the router for a bar with patterns."""
        return RouterContext(cum_delta=bar.cum_delta, micro=self.micro(close_pos, bar.end_ns),
                             profile=self.profile(close_pos), last_price=bar.close, last_trade_ns=bar.last_ts)
