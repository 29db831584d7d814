"""Volume profile: volume by price tick, POC, value area, HVN/LVN, naked POCs, trading bias.

Definitions follow reference/ORDERFLOW.md. Adding a print is O(1) (a dict update and a few integer
compares) because it runs per trade; everything derived (POC, value area, nodes) is computed on demand
over the dense tick range, which for a futures session is a few hundred to a few thousand levels.

Prices are integer ticks throughout; volumes are integers; the value-area target is compared exactly
(``Fraction`` of the configured share) so a 70% boundary never flips on float rounding.

Size: one data structure and the analyses over its dense tick range (POC, value area, nodes, naked POCs, bias), kept
with it so the per-trade update stays O(1) and the derived figures read its arrays directly.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate
from typing import Literal

from tradebot.core.calendar import ExchangeCalendar, Session, calendar_for
from tradebot.core.config import ProfileSettings
from tradebot.core.contracts import ContractSpec
from tradebot.core.types import Side, Trade

ValueAreaMethod = Literal["two_level", "one_level"]

_BUY = Side.BUY
_SELL = Side.SELL


class Bias(enum.StrEnum):
    BULLISH = "BULLISH"
    BEARISH = "BEARISH"
    NEUTRAL = "NEUTRAL"


@dataclass(frozen=True, slots=True)
class ValueArea:
    val: int
    """Value-area low, ticks."""
    vah: int
    """Value-area high, ticks."""
    poc: int
    volume: int
    """Volume inside [val, vah]."""
    total: int
    """Volume of the whole profile."""

    def contains(self, price: int) -> bool:
        return self.val <= price <= self.vah


@dataclass(frozen=True, slots=True)
class VolumeNode:
    """A high- or low-volume node: a peak (trough) of the smoothed profile."""

    price: int
    volume: int
    """Raw (unsmoothed) volume at ``price``."""
    prominence: float
    """Prominence of the smoothed peak (trough) as a share of the smoothed profile's maximum."""


@dataclass(frozen=True, slots=True)
class ProfileSnapshot:
    """Everything derived from one profile at one moment (a completed session, or the developing one)."""

    total: int
    low: int
    high: int
    poc: int
    value_area: ValueArea
    hvn: tuple[VolumeNode, ...]
    lvn: tuple[VolumeNode, ...]
    buy_volume: int
    sell_volume: int

    @property
    def vah(self) -> int:
        return self.value_area.vah

    @property
    def val(self) -> int:
        return self.value_area.val

    @property
    def delta(self) -> int:
        return self.buy_volume - self.sell_volume


@dataclass(frozen=True, slots=True)
class BiasReading:
    bias: Bias
    reason: str
    distance_ticks: int
    """How far price is beyond VAH (positive) or below VAL (negative); 0 inside the value area."""


@dataclass(frozen=True, slots=True)
class NakedPoc:
    trading_date: dt.date
    price: int


# ---------------------------------------------------------------------------------------------------
# The profile


class VolumeProfile:
    """Volume by price tick, split by aggressor side, built incrementally."""

    __slots__ = ("_buy", "_dirty", "_poc", "_sell", "_vol", "buy_volume", "high", "low", "sell_volume", "total")

    def __init__(self) -> None:
        self._vol: dict[int, int] = {}
        self._buy: dict[int, int] = {}
        self._sell: dict[int, int] = {}
        self.total = 0
        self.buy_volume = 0
        self.sell_volume = 0
        self.low: int | None = None
        self.high: int | None = None
        self._poc: int | None = None
        self._dirty = False

    def add(self, price: int, volume: int, side: Side = Side.UNKNOWN) -> None:
        """Add ``volume`` traded at ``price`` ticks; non-positive volumes are ignored (nothing traded)."""
        if volume <= 0:
            return
        vol = self._vol
        vol[price] = vol.get(price, 0) + volume
        self.total += volume
        if side is _BUY:
            self._buy[price] = self._buy.get(price, 0) + volume
            self.buy_volume += volume
        elif side is _SELL:
            self._sell[price] = self._sell.get(price, 0) + volume
            self.sell_volume += volume
        if self.low is None or price < self.low:
            self.low = price
        if self.high is None or price > self.high:
            self.high = price
        self._dirty = True

    def add_trade(self, trade: Trade) -> None:
        self.add(trade.price, trade.size, trade.side)

    def __len__(self) -> int:
        return len(self._vol)

    def __bool__(self) -> bool:
        return self.total > 0

    def volume_at(self, price: int) -> int:
        return self._vol.get(price, 0)

    def buy_volume_at(self, price: int) -> int:
        """Ask volume (buy aggressors) at ``price``."""
        return self._buy.get(price, 0)

    def sell_volume_at(self, price: int) -> int:
        """Bid volume (sell aggressors) at ``price``."""
        return self._sell.get(price, 0)

    def dense(self) -> list[int]:
        """Volumes from ``low`` to ``high`` inclusive; untraded ticks inside the range are zeros, not gaps."""
        if self.low is None or self.high is None:
            return []
        get = self._vol.get
        return [get(p, 0) for p in range(self.low, self.high + 1)]

    def poc(self) -> int | None:
        """Largest volume; ties go to the level nearest the middle of the range, then to the lower price."""
        if self._dirty or self._poc is None:
            self._poc = poc_of(self._vol) if self._vol else None
            self._dirty = False
        return self._poc

    def value_area(self, pct: float = 0.70, method: ValueAreaMethod = "two_level") -> ValueArea | None:
        if self.low is None:
            return None
        poc = self.poc()
        assert poc is not None
        return value_area(self.dense(), self.low, poc, pct, method)

    def nodes(self, smoothing: int = 1, min_prominence: float = 0.10) -> tuple[list[VolumeNode], list[VolumeNode]]:
        """(HVNs, LVNs) of the profile; see :func:`volume_nodes`."""
        if self.low is None:
            return [], []
        return volume_nodes(self.dense(), self.low, smoothing, min_prominence)

    def snapshot(self, settings: ProfileSettings | None = None) -> ProfileSnapshot | None:
        if self.low is None or self.high is None:
            return None
        s = settings or ProfileSettings()
        dense = self.dense()
        poc = self.poc()
        assert poc is not None
        va = value_area(dense, self.low, poc, s.value_area_pct, s.value_area_method)
        hvn, lvn = volume_nodes(dense, self.low, s.node_smoothing_ticks, s.node_min_prominence)
        return ProfileSnapshot(self.total, self.low, self.high, poc, va, tuple(hvn), tuple(lvn),
                               self.buy_volume, self.sell_volume)

    def copy(self) -> VolumeProfile:
        out = VolumeProfile()
        out._vol = dict(self._vol)
        out._buy = dict(self._buy)
        out._sell = dict(self._sell)
        out.total, out.buy_volume, out.sell_volume = self.total, self.buy_volume, self.sell_volume
        out.low, out.high, out._poc, out._dirty = self.low, self.high, self._poc, self._dirty
        return out


# ---------------------------------------------------------------------------------------------------
# Pure functions (used by the profile, and by anything holding volumes by tick)


def poc_of(volumes: dict[int, int]) -> int:
    """POC of a non-empty {price: volume}: max volume, tie -> nearest the range mid, then the lower price."""
    lo = min(volumes)
    hi = max(volumes)
    best = max(volumes.values())
    twice_mid = lo + hi  # compare |2p - (lo + hi)| to stay in integers
    return min((p for p, v in volumes.items() if v == best), key=lambda p: (abs(2 * p - twice_mid), p))


def _target(total: int, pct: float) -> tuple[int, int]:
    """(numerator, denominator) with ``covered * den >= num * total`` meaning 'target reached' exactly."""
    frac = Fraction(str(pct))
    return frac.numerator * total, frac.denominator


def value_area(dense: list[int], low: int, poc: int, pct: float = 0.70,
               method: ValueAreaMethod = "two_level") -> ValueArea:
    """Value area grown outward from the POC until it holds ``pct`` of the volume.

    ``two_level`` (Dalton / CBOT): compare the sum of the next two levels above with the next two below,
    add the larger pair (a tie adds the upper pair), stop once the covered volume reaches the target.
    Near an edge a "pair" is whatever is left on that side (one level or none). ``one_level`` compares
    single levels with the same tie rule. Zero-volume ticks inside the range count as levels.
    """
    if not dense:
        raise ValueError("empty profile")
    total = sum(dense)
    num, den = _target(total, pct)
    step = 2 if method == "two_level" else 1
    n = len(dense)
    i = lo_i = hi_i = poc - low
    if not 0 <= i < n:
        raise ValueError("POC outside the profile's range")
    covered = dense[i]
    while covered * den < num and (lo_i > 0 or hi_i < n - 1):
        up_end = min(hi_i + step, n - 1)
        down_end = max(lo_i - step, 0)
        up = sum(dense[hi_i + 1:up_end + 1])
        down = sum(dense[down_end:lo_i])
        if hi_i < n - 1 and (up >= down or lo_i == 0):
            covered += up
            hi_i = up_end
        else:
            covered += down
            lo_i = down_end
    return ValueArea(low + lo_i, low + hi_i, poc, covered, total)


def _smooth(dense: list[int], k: int) -> list[int]:
    """Moving *sum* over 2k+1 ticks, zero outside the range (outside really is zero volume).

    A sum rather than a mean keeps the values integers, so plateaus and comparisons are exact.
    """
    if k <= 0:
        return list(dense)
    n = len(dense)
    prefix = [0, *accumulate(dense)]
    # sm[i] = prefix[min(n, i + k + 1)] - prefix[max(0, i - k)], with the clamped ends as plain lists
    hi = prefix[k + 1:] + [prefix[n]] * min(n, k)
    lo = [0] * min(n, k) + prefix[:max(0, n - k)]
    return [a - b for a, b in zip(hi[:n], lo, strict=True)]


def _extrema(values: list[int], sign: int) -> list[tuple[int, int]]:
    """(index, prominence) of interior local maxima of ``sign * values`` (plateaus -> their middle).

    Prominence as in topography / scipy.signal.peak_prominences: the height above the higher of the two
    lowest points reached walking away from the peak until a higher point (or the edge).

    The walks are not taken step by step (that is quadratic in the worst case and dominated the profile
    snapshot on bar close). Between two neighbouring peaks the values fall, then rise (a peak sits wherever
    they rise then fall), so walking left from a peak of height ``h`` passes every lower-or-equal peak and
    stops on the falling side of the nearest *higher* peak to its left, found with a stack of peaks; with no
    higher peak, it stops in the run falling from the left edge, or at the edge. The same holds to the right.
    The lowest point passed is then a C-level ``min`` over the run walked.
    """
    v = values if sign == 1 else [-x for x in values]
    n = len(v)
    # A peak starts at an interior rise that does not keep rising (a rise can never sit inside a plateau).
    peaks: list[tuple[int, int, int]] = []  # (first, last, height) of each peak plateau, left to right
    for i in [i for i, (p, c, nx) in enumerate(zip(v, v[1:], v[2:], strict=False), 1) if p < c >= nx]:
        h = v[i]
        j = i
        while j + 1 < n and v[j + 1] == h:
            j += 1
        if j + 1 < n and v[j + 1] < h:
            peaks.append((i, j, h))
    if not peaks:
        return []
    # Left stops a: the last index left of the peak holding a higher value (-1: the walk reaches the edge).
    lefts: list[int] = []
    stack: list[tuple[int, int, int]] = []  # peaks so far that no later peak reaches (heights decreasing)
    for pk in peaks:
        i, _, h = pk
        while stack and stack[-1][2] <= h:
            stack.pop()
        if stack:
            a = stack[-1][1]  # the higher peak's last index; its falling side stays above h for a while
            while v[a + 1] > h:
                a += 1
        else:
            a = -1  # only the run falling from the left edge can hold higher values
            while v[a + 1] > h:
                a += 1
        lefts.append(a)
        stack.append(pk)
    # Right stops b: the first index right of the peak holding a higher value (n: the walk reaches the edge).
    rights = [0] * len(peaks)
    stack.clear()
    for k in range(len(peaks) - 1, -1, -1):
        pk = peaks[k]
        _, j, h = pk
        while stack and stack[-1][2] <= h:
            stack.pop()
        b = stack[-1][0] if stack else n
        while v[b - 1] > h:
            b -= 1
        rights[k] = b
        stack.append(pk)
    out: list[tuple[int, int]] = []
    for (i, j, h), a, b in zip(peaks, lefts, rights, strict=True):
        # v[i - 1] < h and v[j + 1] < h, so both runs are non-empty and every value in them is <= h.
        left_min = min(v[a + 1:i])
        right_min = min(v[j + 1:b])
        out.append(((i + j) // 2, h - (left_min if left_min > right_min else right_min)))
    return out


def volume_nodes(dense: list[int], low: int, smoothing: int = 1,
                 min_prominence: float = 0.10) -> tuple[list[VolumeNode], list[VolumeNode]]:
    """HVNs and LVNs: local maxima / minima of the profile smoothed over ``2*smoothing+1`` ticks whose
    prominence is at least ``min_prominence`` of the smoothed maximum.

    Edges are never nodes (a profile's tails are always low; that is not a low-volume *node*).
    HVNs are sorted by volume (largest first), LVNs by price.
    """
    if len(dense) < 3:
        return [], []
    sm = _smooth(dense, smoothing)
    peak = max(sm)
    if peak <= 0:
        return [], []
    hvn = [VolumeNode(low + i, dense[i], prom / peak) for i, prom in _extrema(sm, 1) if prom >= min_prominence * peak]
    lvn = [VolumeNode(low + i, dense[i], prom / peak) for i, prom in _extrema(sm, -1)
           if prom >= min_prominence * peak]
    hvn.sort(key=lambda n: (-n.volume, n.price))
    return hvn, lvn


def trading_bias(price: int, va: ValueArea, buffer_ticks: int = 0, spec: ContractSpec | None = None) -> BiasReading:
    """Seed 001's bias: price accepted above the value area is BULLISH, below it BEARISH, inside NEUTRAL.

    The value area is the market's fair-value range: trading above VAH means buyers are moving value
    up (continuation bias), below VAL the mirror; inside it the auction is balanced. ``buffer_ticks``
    asks price to be that far beyond the edge before leaving NEUTRAL (0 = strictly beyond).
    """
    def fmt(p: int) -> str:
        return spec.fmt(p) if spec is not None else str(p)

    if price > va.vah + buffer_ticks:
        d = price - va.vah
        return BiasReading(Bias.BULLISH, f"price {fmt(price)} is {d} ticks above VAH {fmt(va.vah)}", d)
    if price < va.val - buffer_ticks:
        d = price - va.val
        return BiasReading(Bias.BEARISH, f"price {fmt(price)} is {-d} ticks below VAL {fmt(va.val)}", d)
    where = "at the POC" if price == va.poc else f"inside the value area {fmt(va.val)}-{fmt(va.vah)}"
    return BiasReading(Bias.NEUTRAL, f"price {fmt(price)} {where} (balanced)", 0)


# ---------------------------------------------------------------------------------------------------
# Session profiles


class SessionProfiles:
    """Per-symbol session profile (17:00 CT trading day), its RTH part, prior sessions and naked POCs.

    ``on_trade`` is the hot path: a cached session-range compare, dict updates, and a naked-POC check
    only when the session's range extends. A trade from an earlier trading day than the current one (a
    late print after the roll) is counted in ``stats['late_trade']`` and dropped.
    """

    def __init__(self, spec: ContractSpec, settings: ProfileSettings | None = None,
                 calendar: ExchangeCalendar | None = None, keep_sessions: int = 5) -> None:
        self.spec = spec
        self.settings = settings or ProfileSettings()
        self.calendar = calendar or calendar_for(spec.session)
        self.keep_sessions = keep_sessions
        self.stats: Counter[str] = Counter()
        self.session: Session | None = None
        self.developing = VolumeProfile()
        self.rth = VolumeProfile()
        self.completed: list[tuple[dt.date, ProfileSnapshot]] = []
        """Completed sessions, oldest first, at most ``keep_sessions``."""
        self._naked: list[NakedPoc] = []
        self._lo_ns = 0
        self._hi_ns = -1

    @property
    def trading_date(self) -> dt.date | None:
        return self.session.trading_date if self.session else None

    def on_trade(self, trade: Trade) -> None:
        ts = trade.ts_event
        if not self._lo_ns <= ts < self._hi_ns and not self._roll(ts):
            self.stats["late_trade"] += 1
            return
        prof = self.developing
        p = trade.price
        size = trade.size
        if size <= 0:  # nothing traded (validated trades never get here): the general form
            self._add_general(trade, ts, p)
            return
        side = trade.side
        # ``VolumeProfile.add`` for the session and (inside RTH) the RTH profile, written out: this runs per trade.
        lo = prof.low
        hi = prof.high
        vol = prof._vol
        vol[p] = vol.get(p, 0) + size
        prof.total += size
        if side is _BUY:
            d = prof._buy
            d[p] = d.get(p, 0) + size
            prof.buy_volume += size
        elif side is _SELL:
            d = prof._sell
            d[p] = d.get(p, 0) + size
            prof.sell_volume += size
        extends = False
        if lo is None or p < lo:
            prof.low = p
            extends = True
        if hi is None or p > hi:
            prof.high = p
            extends = True
        prof._dirty = True
        session = self.session
        if session is not None and session.rth_open_ns <= ts < session.rth_close_ns:
            rth = self.rth
            vol = rth._vol
            vol[p] = vol.get(p, 0) + size
            rth.total += size
            if side is _BUY:
                d = rth._buy
                d[p] = d.get(p, 0) + size
                rth.buy_volume += size
            elif side is _SELL:
                d = rth._sell
                d[p] = d.get(p, 0) + size
                rth.sell_volume += size
            if rth.low is None or p < rth.low:
                rth.low = p
            if rth.high is None or p > rth.high:
                rth.high = p
            rth._dirty = True
        if extends and self._naked:
            lo, hi = prof.low, prof.high
            assert lo is not None and hi is not None
            self._naked = [n for n in self._naked if not lo <= n.price <= hi]

    def _add_general(self, trade: Trade, ts: int, p: int) -> None:
        prof = self.developing
        extends = prof.low is None or p < prof.low or (prof.high is not None and p > prof.high)
        prof.add(p, trade.size, trade.side)
        session = self.session
        if session is not None and session.rth_open_ns <= ts < session.rth_close_ns:
            self.rth.add(p, trade.size, trade.side)
        if extends and self._naked:
            lo, hi = prof.low, prof.high
            assert lo is not None and hi is not None
            self._naked = [n for n in self._naked if not lo <= n.price <= hi]

    def _roll(self, ts: int) -> bool:
        """Move to the session ``ts`` belongs to; ``False`` if that is earlier than the current one."""
        try:
            session = self.calendar.session_for(ts)
        except ValueError:
            self.stats["outside_calendar"] += 1
            return False
        cur = self.session
        if cur is not None and session.trading_date < cur.trading_date:
            return False
        if cur is None or session.trading_date != cur.trading_date:
            self._close_session()
            self.session = session
        # Prints in the break before the open belong to this session too (session_for says so).
        self._lo_ns = min(ts, session.open_ns)
        self._hi_ns = session.close_ns
        return True

    def _close_session(self) -> None:
        if self.session is None or not self.developing:
            self.developing = VolumeProfile()
            self.rth = VolumeProfile()
            return
        snap = self.developing.snapshot(self.settings)
        assert snap is not None
        self.completed.append((self.session.trading_date, snap))
        if len(self.completed) > self.keep_sessions:
            del self.completed[:len(self.completed) - self.keep_sessions]
        if self.settings.max_naked_pocs:
            self._naked.insert(0, NakedPoc(self.session.trading_date, snap.poc))
            del self._naked[self.settings.max_naked_pocs:]
        self.stats["sessions"] += 1
        self.developing = VolumeProfile()
        self.rth = VolumeProfile()

    def snapshot(self) -> ProfileSnapshot | None:
        """The developing (session so far) profile."""
        return self.developing.snapshot(self.settings)

    def rth_snapshot(self) -> ProfileSnapshot | None:
        return self.rth.snapshot(self.settings)

    def prior(self) -> ProfileSnapshot | None:
        return self.completed[-1][1] if self.completed else None

    def naked_pocs(self) -> tuple[NakedPoc, ...]:
        """Prior sessions' POCs no later session has traded through, newest first."""
        return tuple(self._naked)

    def bias(self, price: int) -> BiasReading | None:
        """Bias of ``price`` against the configured reference (prior session, else the developing one)."""
        ref = self.prior() if self.settings.bias_reference == "prior_session" else None
        label = "prior session"
        if ref is None:
            ref = self.snapshot()
            label = "developing session"
        if ref is None:
            return None
        r = trading_bias(price, ref.value_area, self.settings.bias_buffer_ticks, self.spec)
        return BiasReading(r.bias, f"{r.reason} of the {label}", r.distance_ticks)
