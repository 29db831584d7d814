"""Book and trade-flow microstructure features (seeds 001 and 003, definitions in reference/ORDERFLOW.md).

Two layers: pure functions over :class:`BookUpdate` snapshots (spread, depth, imbalance, weighted mid,
OFI, market-order impact) that anyone can call, and :class:`MicrostructureTracker`, which keeps the
last book and bounded rolling windows per symbol and assembles a frozen snapshot on demand.

Cost model: ``on_book``/``on_trade`` run per event, so they only update integer accumulators in the
newest time bucket (OFI needs the previous book, so that one comparison happens per update too).
Everything else is computed in ``snapshot()``, which callers take per bar or per decision. Windows are
rings of ``bucket_ms`` buckets, so memory is bounded by ``longest window / bucket``, not by event rate;
a window of W seconds means the buckets within W of ``now`` (exact to one bucket).

Without a book (trades-only feeds, a gap, an MBP-1 feed asked for depth 10) the book features are
``None`` and the snapshot says why (``book_available``, ``book_depth``); nothing raises.

Size: the pure book functions and the per-symbol tracker that assembles them into snapshots share their definitions
(reference/ORDERFLOW.md); the tracker's rolling buckets are private to it.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from collections import Counter, deque
from dataclasses import dataclass

from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import MicrostructureSettings
from tradebot.core.contracts import ContractSpec
from tradebot.core.types import BookUpdate, Side, Trade

# ---------------------------------------------------------------------------------------------------
# Pure book functions (prices in ticks; float results only for ratios and averages, never as keys)


def spread_ticks(book: BookUpdate) -> int | None:
    if not book.bid_px or not book.ask_px:
        return None
    return book.ask_px[0] - book.bid_px[0]


def spread_bps(book: BookUpdate) -> float | None:
    """``(ask - bid) / mid * 1e4``; in ticks the tick size cancels, so no decimal conversion is needed."""
    if not book.bid_px or not book.ask_px:
        return None
    b, a = book.bid_px[0], book.ask_px[0]
    return 2.0 * (a - b) / (a + b) * 1e4


def mid_ticks(book: BookUpdate) -> float | None:
    if not book.bid_px or not book.ask_px:
        return None
    return (book.bid_px[0] + book.ask_px[0]) / 2


def weighted_mid_ticks(book: BookUpdate) -> float | None:
    """``I * ask + (1 - I) * bid`` with ``I = bid_size / (bid_size + ask_size)`` (the 'microprice').

    A heavy bid pulls the estimate toward the ask: the next trade is more likely to lift the offer.
    """
    if not book.bid_px or not book.ask_px:
        return None
    qb, qa = book.bid_sz[0], book.ask_sz[0]
    if qb + qa <= 0:
        return None
    return (qb * book.ask_px[0] + qa * book.bid_px[0]) / (qb + qa)


def imbalance(bid: int, ask: int) -> float | None:
    """``(bid - ask) / (bid + ask)`` in [-1, 1]; ``None`` when both are zero."""
    total = bid + ask
    return (bid - ask) / total if total > 0 else None


@dataclass(frozen=True, slots=True)
class DepthStats:
    """Resting size over the top ``levels`` levels of each side."""

    levels: int
    bid_levels: int
    """Levels actually present on the bid (a thin book may show fewer than asked)."""
    ask_levels: int
    bid_size: int
    ask_size: int
    bid_notional_cents: int
    """Dollar value of the resting bids, in cents: size x price x point value (exact integers)."""
    ask_notional_cents: int
    imbalance: float | None
    """``(bid_size - ask_size) / (bid_size + ask_size)``."""


def depth(book: BookUpdate, levels: int, spec: ContractSpec) -> DepthStats:
    bp, bs = book.bid_px[:levels], book.bid_sz[:levels]
    ap, as_ = book.ask_px[:levels], book.ask_sz[:levels]
    bid = sum(bs)
    ask = sum(as_)
    bid_n = sum(p * s for p, s in zip(bp, bs, strict=True))
    ask_n = sum(p * s for p, s in zip(ap, as_, strict=True))
    exact = spec.tick_value_exact
    if exact is None:
        bid_n *= spec.tick_value_cents
        ask_n *= spec.tick_value_cents
    else:  # crypto base units, sub-dollar stocks: an exact fraction of a cent per tick and unit
        bid_n, ask_n = math.floor(bid_n * exact), math.floor(ask_n * exact)
    return DepthStats(levels, len(bp), len(ap), bid, ask, bid_n, ask_n, imbalance(bid, ask))


def _ofi_side_bid(p0: int, q0: int, p1: int, q1: int) -> int:
    e = 0
    if p1 >= p0:
        e += q1
    if p1 <= p0:
        e -= q0
    return e


def _ofi_side_ask(p0: int, q0: int, p1: int, q1: int) -> int:
    e = 0
    if p1 <= p0:
        e -= q1
    if p1 >= p0:
        e += q0
    return e


def ofi_at(prev: BookUpdate, cur: BookUpdate, level: int = 0) -> int:
    """Cont-Kukanov-Stoikov (2014) order-flow imbalance of one update at one book level::

        e = 1{Pb >= Pb'} qb - 1{Pb <= Pb'} qb' - 1{Pa <= Pa'} qa + 1{Pa >= Pa'} qa'

    (primes = previous update). A side missing the level in either book contributes 0: there is no
    queue to compare, and inventing one would manufacture flow.
    """
    e = 0
    if len(prev.bid_px) > level and len(cur.bid_px) > level:
        e += _ofi_side_bid(prev.bid_px[level], prev.bid_sz[level], cur.bid_px[level], cur.bid_sz[level])
    if len(prev.ask_px) > level and len(cur.ask_px) > level:
        e += _ofi_side_ask(prev.ask_px[level], prev.ask_sz[level], cur.ask_px[level], cur.ask_sz[level])
    return e


def ofi_levels(prev: BookUpdate, cur: BookUpdate, levels: int) -> tuple[int, ...]:
    """Multi-level OFI (Xu, Gould & Howison; Cont, Cucuringu & Zhang): the same rule at each level."""
    return tuple(ofi_at(prev, cur, m) for m in range(levels))


@dataclass(frozen=True, slots=True)
class PriceImpact:
    """What a market order of ``size`` would pay walking the visible book."""

    side: Side
    """BUY walks the asks, SELL the bids."""
    size: int
    filled: int
    """Contracts the visible book could fill (``< size`` when it is too thin)."""
    avg_price_ticks: float | None
    worst_price: int | None
    """Last level touched, ticks."""
    slippage_ticks: float | None
    """Average fill vs the best quote, per contract, always >= 0."""
    slippage_vs_mid_ticks: float | None
    """Average fill vs the mid (includes half the spread); ``None`` without both sides."""
    cost_cents: int
    """Total slippage vs the best quote over the filled contracts, in cents (exact)."""

    @property
    def complete(self) -> bool:
        return self.filled >= self.size


def price_impact(book: BookUpdate, size: int, side: Side, spec: ContractSpec) -> PriceImpact:
    if side is Side.BUY:
        px, sz, sign = book.ask_px, book.ask_sz, 1
    elif side is Side.SELL:
        px, sz, sign = book.bid_px, book.bid_sz, -1
    else:
        raise ValueError("side must be BUY or SELL")
    if size <= 0 or not px:
        return PriceImpact(side, size, 0, None, None, None, None, 0)
    best = px[0]
    left = size
    notional = 0
    slip = 0
    worst = best
    for p, q in zip(px, sz, strict=True):
        take = q if q < left else left
        if take <= 0:
            continue
        notional += p * take
        slip += (p - best) * sign * take
        worst = p
        left -= take
        if left == 0:
            break
    filled = size - left
    if filled == 0:
        return PriceImpact(side, size, 0, None, None, None, None, 0)
    avg = notional / filled
    mid = mid_ticks(book)
    vs_mid = (avg - mid) * sign if mid is not None else None
    cost = slip * spec.tick_value_cents if spec.tick_value_exact is None else math.ceil(slip * spec.tick_value_exact)
    return PriceImpact(side, size, filled, avg, worst, slip / filled, vs_mid, cost)


# ---------------------------------------------------------------------------------------------------
# Snapshot


@dataclass(frozen=True, slots=True)
class OfiWindow:
    seconds: int
    ofi: int
    """Sum of top-of-book OFI over the window."""
    ofi_multi: int
    """Sum over the window of the multi-level OFI (levels 1..``ofi_levels`` added with equal weight)."""
    updates: int


@dataclass(frozen=True, slots=True)
class MicrostructureSnapshot:
    symbol: str
    ts_ns: int
    # --- book -------------------------------------------------------------------------------------
    book_available: bool
    """A book has been seen (and not invalidated by a gap) for this symbol."""
    book_depth: int
    """Most levels the feed has shown (1 for MBP-1/TBBO, 10 for MBP-10, 0 without a book)."""
    book_ts_ns: int | None
    best_bid: int | None
    best_ask: int | None
    bid_size: int | None
    ask_size: int | None
    spread_ticks: int | None
    spread_bps: float | None
    mid: float | None
    """Mid price (decimal price as float, for display and ratios)."""
    weighted_mid: float | None
    """Size-weighted mid ('microprice'), price as float."""
    top_imbalance: float | None
    """Imbalance of the best bid size against the best ask size, [-1, 1]."""
    depth: tuple[DepthStats, ...]
    """One entry per configured depth the feed can show; deeper requests are left out (unavailable)."""
    depth_imbalance: float | None
    """Imbalance over the shallowest configured depth (top 5 by default), ``None`` if unavailable."""
    last_ofi: int | None
    last_ofi_multi: int | None
    ofi: tuple[OfiWindow, ...]
    impact_buy: PriceImpact | None
    impact_sell: PriceImpact | None
    # --- trade flow ----------------------------------------------------------------------------------
    flow_window_seconds: int
    trades: int
    volume: int
    buy_volume: int
    sell_volume: int
    trade_intensity: float
    """Trades per minute over the flow window (the window's full length, even before it has filled)."""
    buy_pressure: float | None
    """Aggressive buy share of side-classified volume, [0, 1]; unknown-side prints are left out."""
    order_imbalance: float | None
    """``(buy_volume - sell_volume) / (buy_volume + sell_volume)`` over the flow window, [-1, 1]."""
    last_price: int | None
    vwap: float | None
    """Session VWAP (resets at the 17:00 CT boundary), price as float."""
    vwap_deviation_pct: float | None
    """``(last - vwap) / vwap * 100``."""

    def depth_for(self, levels: int) -> DepthStats | None:
        for d in self.depth:
            if d.levels == levels:
                return d
        return None

    def ofi_for(self, seconds: int) -> OfiWindow | None:
        for w in self.ofi:
            if w.seconds == seconds:
                return w
        return None


# ---------------------------------------------------------------------------------------------------
# Tracker


class _Buckets:
    """A ring of time buckets, each a list ``[index, v0, v1, ..., base0, base1, ...]``; bounded to ``span`` buckets.

    Only the newest bucket ever changes (a late event joins it), so when a bucket is appended the one before it
    is final, and the new bucket records as its ``base`` the running totals of every bucket before it (the
    previous base plus the previous values). A window's sums are then one subtraction per field, whatever its
    length, instead of a walk over thousands of buckets per snapshot; the integers are the same.
    """

    __slots__ = ("base", "bucket_ns", "end_ns", "fields", "ring", "span")

    def __init__(self, bucket_ns: int, span: int, fields: int) -> None:
        self.bucket_ns = bucket_ns
        self.span = span
        self.fields = fields
        self.ring: deque[list[int]] = deque()
        self.base = [0] * fields
        """Totals before the first bucket (the base of a bucket appended to an empty ring)."""
        self.end_ns = _NEVER
        """End of the newest bucket's window: an event before it joins that bucket (``current``'s fast test)."""

    def current(self, ts: int) -> list[int]:
        """The bucket to add into for an event at ``ts`` (a late event joins the newest bucket)."""
        idx = ts // self.bucket_ns
        ring = self.ring
        f = self.fields
        if ring:
            last = ring[-1]
            if idx <= last[0]:
                return last
            # The new bucket's base: the previous one's base plus its (now final) values.
            if f == 4:
                b = [idx, 0, 0, 0, 0, last[5] + last[1], last[6] + last[2], last[7] + last[3], last[8] + last[4]]
            elif f == 3:
                b = [idx, 0, 0, 0, last[4] + last[1], last[5] + last[2], last[6] + last[3]]
            else:
                b = [idx] + [0] * f + [last[f + 1 + k] + last[k + 1] for k in range(f)]
        else:
            b = [idx] + [0] * f + self.base
        ring.append(b)
        self.end_ns = (idx + 1) * self.bucket_ns
        floor = idx - self.span
        while ring[0][0] <= floor:
            ring.popleft()
        return b

    def sums(self, now_ns: int, window_ns: int) -> list[int]:
        """Field sums over buckets whose index lies in ``(now - window, now]`` (bucket resolution)."""
        now_idx = now_ns // self.bucket_ns
        first = now_idx - -(-window_ns // self.bucket_ns)
        ring = self.ring
        f = self.fields
        # Indices strictly increase along the ring: the window is the contiguous run ring[lo:hi].
        hi = bisect_right(ring, now_idx, key=_index)
        lo = bisect_right(ring, first, key=_index, hi=hi)
        if lo >= hi:
            return [0] * f
        a = ring[lo]
        b = ring[hi - 1]
        return [b[f + 1 + k] + b[k + 1] - a[f + 1 + k] for k in range(f)]

    def clear(self) -> None:
        newest = self.ring[-1] if self.ring else None
        if newest is not None:  # the totals carry on across a clear (only differences are ever read)
            f = self.fields
            self.base = [newest[f + 1 + k] + newest[k + 1] for k in range(f)]
        self.ring.clear()
        self.end_ns = _NEVER


def _index(b: list[int]) -> int:
    return b[0]


_NEVER = -(1 << 80)
_NS = 1_000_000_000
_BUY = Side.BUY
_SELL = Side.SELL


class MicrostructureTracker:
    """Per-symbol microstructure state: last book, OFI and trade-flow windows, session VWAP."""

    def __init__(self, spec: ContractSpec, settings: MicrostructureSettings | None = None,
                 calendar: ExchangeCalendar | None = None, symbol: str | None = None) -> None:
        self.spec = spec
        self.symbol = symbol or spec.root
        self.settings = s = settings or MicrostructureSettings()
        self.stats: Counter[str] = Counter()
        bucket_ns = s.bucket_ms * 1_000_000
        longest_ofi = max(s.ofi_windows_seconds) * _NS
        self._book_b = _Buckets(bucket_ns, -(-longest_ofi // bucket_ns) + 1, 3)  # ofi, ofi_multi, updates
        self._flow_b = _Buckets(bucket_ns, -(-s.flow_window_seconds * _NS // bucket_ns) + 1, 4)
        # trades, volume, buy volume, sell volume
        self._book: BookUpdate | None = None
        self._depth_seen = 0
        self._last_ofi: int | None = None
        self._last_ofi_multi: int | None = None
        self._ofi_levels = s.ofi_levels
        self._calendar = calendar
        self._vwap_num = 0
        self._vwap_den = 0
        self._vwap_date: dt.date | None = None
        self._sess_lo = 0
        self._sess_hi = -1
        self._last_price: int | None = None
        self._last_ts = 0

    # -- events -----------------------------------------------------------------------------------

    def on_book(self, book: BookUpdate) -> None:
        prev = self._book
        self._book = book
        cb = book.bid_px
        ca = book.ask_px
        n = len(cb) if len(cb) > len(ca) else len(ca)
        if n > self._depth_seen:
            self._depth_seen = n
        ts = book.ts_event
        if ts > self._last_ts:
            self._last_ts = ts
        if prev is None:
            return
        # Top-of-book OFI, ``ofi_at(prev, book, 0)`` written out (this runs per book update).
        pb = prev.bid_px
        pa = prev.ask_px
        e = 0
        if pb and cb:
            p0 = pb[0]
            p1 = cb[0]
            if p1 >= p0:
                e += book.bid_sz[0]
            if p1 <= p0:
                e -= prev.bid_sz[0]
        if pa and ca:
            p0 = pa[0]
            p1 = ca[0]
            if p1 <= p0:
                e -= book.ask_sz[0]
            if p1 >= p0:
                e += prev.ask_sz[0]
        multi = e
        if len(pb) > 1 or len(pa) > 1:  # deeper levels, ``ofi_at(prev, book, m)`` written out
            nb = len(pb) if len(pb) < len(cb) else len(cb)
            na = len(pa) if len(pa) < len(ca) else len(ca)
            pbs = prev.bid_sz
            cbs = book.bid_sz
            pas = prev.ask_sz
            cas = book.ask_sz
            for m in range(1, self._ofi_levels):
                if m >= len(pb) and m >= len(pa):
                    break
                if m < nb:
                    p0 = pb[m]
                    p1 = cb[m]
                    if p1 >= p0:
                        multi += cbs[m]
                    if p1 <= p0:
                        multi -= pbs[m]
                if m < na:
                    p0 = pa[m]
                    p1 = ca[m]
                    if p1 <= p0:
                        multi -= cas[m]
                    if p1 >= p0:
                        multi += pas[m]
        self._last_ofi = e
        self._last_ofi_multi = multi
        bb = self._book_b
        b = bb.ring[-1] if ts < bb.end_ns else bb.current(ts)
        b[1] += e
        b[2] += multi
        b[3] += 1

    def on_trade(self, trade: Trade) -> None:
        ts = trade.ts_event
        size = trade.size
        price = trade.price
        fb = self._flow_b
        b = fb.ring[-1] if ts < fb.end_ns else fb.current(ts)
        b[1] += 1
        b[2] += size
        side = trade.side
        if side is _BUY:
            b[3] += size
        elif side is _SELL:
            b[4] += size
        # (the two range tests first: they are free of side effects, and true for nearly every trade)
        if self._sess_lo <= ts < self._sess_hi or self.settings.vwap_reset != "session" or self._vwap_roll(ts):
            self._vwap_num += price * size
            self._vwap_den += size
        self._last_price = price
        if ts > self._last_ts:
            self._last_ts = ts

    def reset_book(self) -> None:
        """Forget the book (after a feed gap): OFI must not compare across missing updates."""
        self._book = None
        self._last_ofi = self._last_ofi_multi = None
        self.stats["book_reset"] += 1

    def _vwap_roll(self, ts: int) -> bool:
        """Move the VWAP to the session of ``ts``; ``False`` (trade left out of VWAP) if it cannot."""
        cal = self._calendar
        if cal is None:
            cal = self._calendar = calendar_for(self.spec.session)
        try:
            session = cal.session_for(ts)
        except ValueError:
            self.stats["outside_calendar"] += 1
            return False
        if session.trading_date != self._vwap_date:
            if self._vwap_date is not None and session.trading_date < self._vwap_date:
                self.stats["late_trade"] += 1
                return False
            self._vwap_date = session.trading_date
            self._vwap_num = self._vwap_den = 0
        self._sess_lo = min(ts, session.open_ns)
        self._sess_hi = session.close_ns
        return True

    # -- queries ----------------------------------------------------------------------------------

    @property
    def book(self) -> BookUpdate | None:
        return self._book

    def price_impact(self, size: int, side: Side) -> PriceImpact | None:
        return price_impact(self._book, size, side, self.spec) if self._book is not None else None

    def snapshot(self, now_ns: int | None = None) -> MicrostructureSnapshot:
        s = self.settings
        now = self._last_ts if now_ns is None else now_ns
        tick = float(self.spec.tick_size)
        book = self._book

        best_bid = best_ask = bid_size = ask_size = spread_t = None
        sp_bps = mid = wmid = top_imb = depth_imb = None
        depths: tuple[DepthStats, ...] = ()
        impact_buy = impact_sell = None
        ofi_w: tuple[OfiWindow, ...] = ()
        if book is not None:
            if book.bid_px:
                best_bid, bid_size = book.bid_px[0], book.bid_sz[0]
            if book.ask_px:
                best_ask, ask_size = book.ask_px[0], book.ask_sz[0]
            spread_t = spread_ticks(book)
            sp_bps = spread_bps(book)
            m = mid_ticks(book)
            mid = m * tick if m is not None else None
            w = weighted_mid_ticks(book)
            wmid = w * tick if w is not None else None
            top_imb = imbalance(bid_size or 0, ask_size or 0)
            depths = tuple(depth(book, n, self.spec) for n in s.depth_levels if n <= self._depth_seen)
            if depths and depths[0].levels == s.depth_levels[0]:
                depth_imb = depths[0].imbalance
            impact_buy = price_impact(book, s.impact_size, Side.BUY, self.spec)
            impact_sell = price_impact(book, s.impact_size, Side.SELL, self.spec)
        if self._depth_seen:
            ofi_w = tuple(OfiWindow(w_s, *self._book_b.sums(now, w_s * _NS)) for w_s in s.ofi_windows_seconds)

        trades, volume, buys, sells = self._flow_b.sums(now, s.flow_window_seconds * _NS)
        sided = buys + sells
        vwap = vdev = None
        if self._vwap_den:
            v = self._vwap_num / self._vwap_den
            vwap = v * tick
            if self._last_price is not None:
                vdev = (self._last_price - v) / v * 100
        return MicrostructureSnapshot(
            symbol=self.symbol, ts_ns=now,
            book_available=book is not None, book_depth=self._depth_seen,
            book_ts_ns=book.ts_event if book is not None else None,
            best_bid=best_bid, best_ask=best_ask, bid_size=bid_size, ask_size=ask_size,
            spread_ticks=spread_t, spread_bps=sp_bps, mid=mid, weighted_mid=wmid, top_imbalance=top_imb,
            depth=depths, depth_imbalance=depth_imb,
            last_ofi=self._last_ofi, last_ofi_multi=self._last_ofi_multi, ofi=ofi_w,
            impact_buy=impact_buy, impact_sell=impact_sell,
            flow_window_seconds=s.flow_window_seconds, trades=trades, volume=volume,
            buy_volume=buys, sell_volume=sells,
            trade_intensity=trades * 60 / s.flow_window_seconds,
            buy_pressure=buys / sided if sided else None,
            order_imbalance=(buys - sells) / sided if sided else None,
            last_price=self._last_price, vwap=vwap, vwap_deviation_pct=vdev,
        )
