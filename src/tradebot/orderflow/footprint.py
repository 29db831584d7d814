"""Footprint bars and cumulative delta, built incrementally from validated trades.

Definitions follow ``reference/ORDERFLOW.md``: at a price, *ask volume* is buy-aggressor volume and *bid
volume* sell-aggressor volume; ``delta = ask - bid``; the POC is the level with the most volume (tie:
nearest the bar's mid price, then the lower price); every tick inside ``[low, high]`` is a level, with zeros
where nothing traded, so detectors never confuse "no trade" with "no data".

UNKNOWN aggressor side (Databento ``N``, e.g. the opening auction's match): the volume really traded, so it
counts in the level's and the bar's ``volume``, in the trade counts, and in the POC; it is neither bid nor ask,
so it adds nothing to delta, imbalances or cumulative delta. ``volume == ask_volume + bid_volume +
unknown_volume`` always holds. With exchange-flagged data unknown volume is rare and the POC rule is exactly
the reference's "largest bid + ask".

Time bars align to the session open from the exchange calendar (17:00 CT for CME Globex), so a DST switch
never shifts them and a bar never spans a session boundary (the session's last bar may be short). Trades
outside every session (the daily break, a holiday) are dropped and counted: the calendar, not the data,
decides what a trading day is. Bars with no trade are not emitted.

The per-trade path is the engine's hot path: it touches a few slots and one small list per price and
allocates nothing except the first time a price appears in a bar; the immutable bar is built once, at close.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tradebot.core.calendar import NS, ExchangeCalendar, Session, calendar_for
from tradebot.core.config import FootprintSettings
from tradebot.core.contracts import ContractSpec
from tradebot.core.logging import get_logger
from tradebot.core.types import Side, Trade

_BIG = 1 << 62
_BUY = Side.BUY
_SELL = Side.SELL
_LOG_FIRST = 5
_LOG_EVERY = 1000


@dataclass(frozen=True, slots=True)
class Level:
    """One price of a footprint bar. ``bid`` = sell-aggressor volume, ``ask`` = buy-aggressor volume."""

    price: int
    """Integer ticks."""
    bid: int = 0
    ask: int = 0
    unknown: int = 0
    """Volume whose aggressor side is unknown (in ``volume``, not in ``delta``)."""
    trades: int = 0

    @property
    def volume(self) -> int:
        return self.bid + self.ask + self.unknown

    @property
    def delta(self) -> int:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class FootprintBar:
    """A closed footprint bar: immutable, prices in ticks, times in UTC ns.

    ``levels`` is dense and ascending: ``levels[i].price == low + i`` for every tick of ``[low, high]``.
    """

    symbol: str
    trading_date: dt.date
    start_ns: int
    """Time bars: the aligned window start. Volume bars: the first trade's timestamp."""
    end_ns: int
    """Exclusive. Time bars: window end, clipped to the session close. Volume bars: last trade + 1 ns."""
    open: int
    high: int
    low: int
    close: int
    volume: int
    ask_volume: int
    """Buy-aggressor volume."""
    bid_volume: int
    """Sell-aggressor volume."""
    unknown_volume: int
    delta: int
    max_delta: int
    """Highest running delta inside the bar (running delta after each trade; the zero start is not counted)."""
    min_delta: int
    trades: int
    poc: int
    levels: tuple[Level, ...]
    first_ts: int
    last_ts: int
    cum_delta: int = 0
    """Session cumulative delta at the bar's close (resets at the trading-day boundary, 17:00 CT)."""
    rth_cum_delta: int = 0
    """Cumulative delta of this session's RTH trades only, as of the bar's close (0 before the RTH open)."""
    index: int = 0
    """Bar number within its session (time bars: the aligned slot, so gaps skip numbers)."""

    def level(self, price: int) -> Level:
        """The level at ``price``; an all-zero level outside ``[low, high]``."""
        i = price - self.low
        if 0 <= i < len(self.levels):
            return self.levels[i]
        return Level(price)

    def bid(self, price: int) -> int:
        i = price - self.low
        return self.levels[i].bid if 0 <= i < len(self.levels) else 0

    def ask(self, price: int) -> int:
        i = price - self.low
        return self.levels[i].ask if 0 <= i < len(self.levels) else 0

    def volume_at(self, price: int) -> int:
        i = price - self.low
        return self.levels[i].volume if 0 <= i < len(self.levels) else 0

    @property
    def n_levels(self) -> int:
        return self.high - self.low + 1


def poc_of(levels: tuple[Level, ...], low: int, high: int) -> int:
    """Largest volume; tie: nearest the mid ``(low + high) / 2``, then the lower price."""
    best = levels[0]
    best_vol = best.volume
    mid2 = low + high
    best_dist = abs(2 * best.price - mid2)
    for lv in levels[1:]:
        v = lv.volume
        if v > best_vol or (v == best_vol and abs(2 * lv.price - mid2) < best_dist):
            best, best_vol, best_dist = lv, v, abs(2 * lv.price - mid2)
    return best.price


class _LevelSlots:
    __slots__ = Level.__slots__


def _level(price: int, bid: int, ask: int, unknown: int, trades: int) -> Level:
    """``Level(price, bid, ask, unknown, trades)`` without the frozen ``__init__``'s per-field
    ``object.__setattr__`` (a bar has a level per tick of its range, built at every close)."""
    o: Any = _LevelSlots()
    o.price = price
    o.bid = bid
    o.ask = ask
    o.unknown = unknown
    o.trades = trades
    o.__class__ = Level
    lv: Level = o
    return lv


def finalize_bar(symbol: str, trading_date: dt.date, start_ns: int, end_ns: int, o: int, h: int, low: int,
                 c: int, per_price: Mapping[int, list[int]], max_delta: int, min_delta: int, first_ts: int,
                 last_ts: int, cum_delta: int, rth_cum_delta: int, index: int) -> FootprintBar:
    """Build the immutable bar from per-price ``[bid, ask, unknown, trades]`` accumulators (public: the backtest's
    columnar fast path closes its bars through this same function, so levels, totals and the POC rule agree)."""
    levels = []
    bid_t = ask_t = unk_t = n_t = 0
    get = per_price.get
    for p in range(low, h + 1):
        acc = get(p)
        if acc is None:
            levels.append(_level(p, 0, 0, 0, 0))
            continue
        b, a, u, n = acc
        bid_t += b
        ask_t += a
        unk_t += u
        n_t += n
        levels.append(_level(p, b, a, u, n))
    lv = tuple(levels)
    return FootprintBar(
        symbol=symbol, trading_date=trading_date, start_ns=start_ns, end_ns=end_ns, open=o, high=h, low=low,
        close=c, volume=bid_t + ask_t + unk_t, ask_volume=ask_t, bid_volume=bid_t, unknown_volume=unk_t,
        delta=ask_t - bid_t, max_delta=max_delta, min_delta=min_delta, trades=n_t, poc=poc_of(lv, low, h),
        levels=lv, first_ts=first_ts, last_ts=last_ts, cum_delta=cum_delta, rth_cum_delta=rth_cum_delta,
        index=index,
    )


def make_bar(symbol: str, levels: Mapping[int, tuple[int, int]], *, open: int, close: int,
             start_ns: int = 0, end_ns: int = 300 * NS, trading_date: dt.date = dt.date(2025, 1, 2),
             max_delta: int | None = None, min_delta: int | None = None, cum_delta: int = 0,
             rth_cum_delta: int = 0, index: int = 0) -> FootprintBar:
    """A bar from ``{price_ticks: (bid, ask)}``: for constructed scenarios (tests, tools), not the data path.

    High and low span the given prices plus open and close; missing ticks are zero levels. Trade counts are
    one per non-zero side. ``max_delta``/``min_delta`` default to the bar delta (the path is unknown).
    """
    if not levels:
        raise ValueError("a bar needs at least one level")
    per: dict[int, list[int]] = {}
    for p, (b, a) in levels.items():
        if b < 0 or a < 0:
            raise ValueError("volumes must be >= 0")
        per[int(p)] = [b, a, 0, (b > 0) + (a > 0)]
    low = min(min(per), open, close)
    high = max(max(per), open, close)
    delta = sum(a - b for b, a, _, _ in per.values())
    return finalize_bar(symbol, trading_date, start_ns, end_ns, open, high, low, close, per,
                     delta if max_delta is None else max_delta, delta if min_delta is None else min_delta,
                     start_ns, max(start_ns, end_ns - 1), cum_delta, rth_cum_delta, index)


class FootprintBuilder:
    """Builds footprint bars and cumulative delta for one contract root, one trade at a time.

    ``on_trade`` returns the bar the trade closed (a time bar closes when a trade arrives at or after its end,
    a volume bar when the next trade finds it full, any bar at a session change), else ``None``. At most one
    bar closes per trade. ``close_until(now)`` closes a due bar from a timer without waiting for a trade;
    ``flush()`` closes whatever is open (end of data).
    """

    __slots__ = (
        "_active", "_bar_ns", "_c", "_cal", "_cap", "_cd", "_d", "_dmax", "_dmin", "_end", "_first", "_h",
        "_index", "_l", "_last", "_log", "_o", "_per", "_rcd", "_rth_close", "_rth_open", "_session",
        "_start", "_vidx", "_vol", "settings", "spec", "stats", "symbol",
    )
    # state of the open bar (see _reset_bar)
    _active: bool
    _start: int
    _end: int
    _vol: int
    _per: dict[int, list[int]]
    _d: int
    _dmax: int
    _dmin: int
    _o: int
    _h: int
    _l: int
    _c: int
    _first: int
    _last: int
    _index: int

    def __init__(self, spec: ContractSpec, settings: FootprintSettings | None = None,
                 calendar: ExchangeCalendar | None = None, logger: Any = None) -> None:
        self.spec = spec
        self.symbol = spec.root
        self.settings = settings or FootprintSettings()
        self._cal = calendar or calendar_for(spec.session)
        self._log = logger if logger is not None else get_logger("tradebot.orderflow.footprint")
        self.stats: Counter[str] = Counter()
        """``outside_session``, ``late_trade`` (kept in the open bar), ``late_trade_dropped``, ``wrong_symbol``."""
        volume_bars = self.settings.bar_type == "volume"
        self._bar_ns = self.settings.bar_seconds * NS
        self._cap = self.settings.bar_volume if volume_bars else _BIG
        self._session: Session | None = None
        self._rth_open = self._rth_close = 0
        self._cd = self._rcd = 0
        self._vidx = 0
        self._reset_bar()

    # -- public ------------------------------------------------------------------------------------

    @property
    def cum_delta(self) -> int:
        """Session cumulative delta so far (live, including the open bar)."""
        return self._cd

    @property
    def rth_cum_delta(self) -> int:
        """This session's RTH-only cumulative delta so far."""
        return self._rcd

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def has_open_bar(self) -> bool:
        return self._active

    def on_trade(self, t: Trade) -> FootprintBar | None:
        if t.symbol != self.symbol:
            self._count("wrong_symbol", t)
            return None
        ts = t.ts_event
        p = t.price
        closed = None
        if ts >= self._end or self._vol >= self._cap:
            closed = self._roll(ts, p)
            if not self._active:
                return closed
        elif ts < self._start:
            self._count("late_trade", t)
        acc = self._per.get(p)
        if acc is None:
            acc = self._per[p] = [0, 0, 0, 0]
        s = t.size
        side = t.side
        if side is _BUY:
            acc[1] += s
            d = self._d + s
            self._cd += s
            if self._rth_open <= ts < self._rth_close:
                self._rcd += s
        elif side is _SELL:
            acc[0] += s
            d = self._d - s
            self._cd -= s
            if self._rth_open <= ts < self._rth_close:
                self._rcd -= s
        else:
            acc[2] += s
            d = self._d
        acc[3] += 1
        self._d = d
        if d > self._dmax:
            self._dmax = d
        if d < self._dmin:
            self._dmin = d
        if p > self._h:
            self._h = p
        elif p < self._l:
            self._l = p
        self._c = p
        self._last = ts
        self._vol += s
        return closed

    def on_trades(self, trades: Iterable[Trade]) -> list[FootprintBar]:
        """Feed many trades; the bars they closed, in order (a batch/backtest convenience)."""
        out = []
        on_trade = self.on_trade
        for t in trades:
            bar = on_trade(t)
            if bar is not None:
                out.append(bar)
        return out

    def close_until(self, ts_ns: int) -> FootprintBar | None:
        """Close the open bar if it is due at ``ts_ns`` (its window ended, or a volume bar is full)."""
        if self._active and (ts_ns >= self._end or self._vol >= self._cap):
            bar = self._close()
            self._reset_bar()
            return bar
        return None

    def flush(self) -> FootprintBar | None:
        """Close the open bar whatever its state (end of data, shutdown)."""
        if not self._active:
            return None
        bar = self._close()
        self._reset_bar()
        return bar

    def snapshot(self) -> FootprintBar | None:
        """The developing bar as it stands (for display); the builder keeps accumulating it."""
        return self._close() if self._active else None

    # -- internals ---------------------------------------------------------------------------------

    def _reset_bar(self) -> None:
        self._active = False
        self._end = -1  # any timestamp rolls
        self._start = -1
        self._vol = 0
        self._per = {}
        self._d = 0
        self._dmax = -_BIG
        self._dmin = _BIG
        self._o = self._h = self._l = self._c = 0
        self._first = self._last = 0
        self._index = 0

    def _count(self, reason: str, t: Trade) -> None:
        self.stats[reason] += 1
        n = self.stats[reason]
        if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
            self._log.warning("footprint: trade not binned normally", reason=reason, count=n, symbol=t.symbol,
                              ts_event=t.ts_event, price=t.price)

    def _roll(self, ts: int, p: int) -> FootprintBar | None:
        """Close the open bar (if any) and open the one ``ts`` belongs to, when ``ts`` is in a session."""
        closed = self._close() if self._active else None
        self._reset_bar()
        sess = self._session
        if sess is None or not sess.open_ns <= ts < sess.close_ns:
            found = self._cal.session_at(ts)
            if found is None:
                self.stats["outside_session"] += 1
                n = self.stats["outside_session"]
                if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
                    self._log.warning("footprint: trade outside every session dropped", symbol=self.symbol,
                                      ts_event=ts, price=p, count=n)
                return closed
            if sess is not None and found.open_ns < sess.open_ns:
                # A print from an earlier session after a later one began: its bars are closed and immutable.
                self.stats["late_trade_dropped"] += 1
                return closed
            if sess is None or found.open_ns != sess.open_ns:
                self._session = sess = found
                self._cd = self._rcd = 0
                self._vidx = 0
                self._rth_open, self._rth_close = found.rth_open_ns, found.rth_close_ns
        if self._cap == _BIG:
            idx = (ts - sess.open_ns) // self._bar_ns
            self._start = sess.open_ns + idx * self._bar_ns
            self._end = min(self._start + self._bar_ns, sess.close_ns)
            self._index = idx
        else:
            self._start = ts
            self._end = sess.close_ns
            self._index = self._vidx
            self._vidx += 1
        self._active = True
        self._o = self._h = self._l = self._c = p
        self._first = self._last = ts
        return closed

    def _close(self) -> FootprintBar:
        sess = self._session
        assert sess is not None
        if self._cap == _BIG:
            start, end = self._start, self._end
        else:
            start, end = self._first, self._last + 1
        return finalize_bar(self.symbol, sess.trading_date, start, end, self._o, self._h, self._l, self._c,
                         self._per, self._dmax, self._dmin, self._first, self._last, self._cd, self._rcd,
                         self._index)


def build_bars(trades: Iterable[Trade], spec: ContractSpec, settings: FootprintSettings | None = None,
               calendar: ExchangeCalendar | None = None) -> list[FootprintBar]:
    """All bars of a trade sequence, the last one flushed (backtests, tests)."""
    builder = FootprintBuilder(spec, settings, calendar)
    bars = builder.on_trades(trades)
    last = builder.flush()
    if last is not None:
        bars.append(last)
    return bars
