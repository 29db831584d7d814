"""The built-in simulated market: the default feed, and a reusable generator of realistic CME sessions.

Two layers on purpose. :func:`generate_session` builds one Globex session of one contract as numpy columns
(vectorised, deterministic for a seed), so backtests and benchmarks can write the same data to DBN files
without going through the async feed; :class:`SimulatedMarket` only walks those columns and emits raw
records in time order, paced like a replay.

The model is small but every piece exists because a later stage needs it:

* **Arrivals** are a Hawkes process (cluster representation: Poisson "immigrants", each spawning a
  Poisson number of children a few ms or a few hundred ms later, recursively) on top of an intensity
  that follows the CME U-shaped intraday curve (calibrated on real ES 5-minute bars: ~80% of trades in
  RTH, open and close spikes), a slowly varying activity factor and the regime. So bursts are
  self-exciting, not just a busy Poisson process.
* **Price** moves one tick when an aggressor consumes the touch; only aggressors move it, so every
  up-tick is caused by a buy at the ask and every down-tick by a sell at the bid. Children copy their
  parent's side most of the time, which gives one-sided bursts. Regimes (trend up/down, range,
  volatile) change side bias, move probability, activity and burstiness; a range folds the walk into a
  band, so the flow that hits the band edge stops moving the price (absorption-like by itself).
* **Episodes** are injected on purpose so detectors always have something to find: absorption (heavy
  one-sided flow into a level that holds, then a reversal), exhaustion (a ladder with volume fading
  toward the extreme, then a reversal), sweeps (fast one-sided ladders: stacked imbalances), and large
  prints well above the contract's ``large_order_size``.
* **Book**: the spread is one tick; the size at the touch is the volume still to trade there before the
  level goes, plus resting size that is cancelled as the level nears its end, so a level visibly thins
  before price leaves it and a wall that absorbs shows as a wall. Deeper levels grow with distance and
  vary smoothly. Quote-only updates (size changes, momentary one-level pulls) arrive between trades.

Timestamps are only ever inside real sessions of the contract's exchange calendar.

Size: the session model (arrivals, regimes, episodes, the book) is one vectorised generator whose parts share its
random stream and columns; the feed that walks the columns is small and stays beside it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import heapq
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from tradebot.core.calendar import NS, Session, calendar_for
from tradebot.core.config import ConfigError, SimSettings
from tradebot.core.contracts import CONTRACTS, ContractSpec, UnknownContractError, front_month, spec_for
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.base import Pacer

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

_MIN = 60 * NS


class Regime(enum.IntEnum):
    TREND_UP = 0
    TREND_DOWN = 1
    RANGE = 2
    VOLATILE = 3


class Episode(enum.IntEnum):
    """Injected order-flow episodes, labelled per row so tests can find them."""

    NONE = 0
    ABSORPTION = 1
    EXHAUSTION = 2
    SWEEP = 3


class BookKind(enum.IntEnum):
    """Why a book row exists (not emitted; kept for tests and writers that want to filter)."""

    SNAPSHOT = 0
    POST_TRADE = 1
    QUOTE = 2
    PULL_BID = 3
    PULL_ASK = 4
    RESTORE = 5


# --- model parameters ----------------------------------------------------------------------------------
# Per regime, indexed by Regime value: TREND_UP, TREND_DOWN, RANGE, VOLATILE.
_ACTIVITY = np.array([1.1, 1.1, 0.8, 1.6])
"""Intensity multiplier: volatile markets trade more, ranges less."""
_BRANCHING = np.array([0.55, 0.55, 0.45, 0.72])
"""Hawkes branching ratio (mean children per event): the share of trades triggered by other trades."""
_TREND = np.array([1.0, -1.0, 0.0, 0.0])
"""Direction of the side bias of independent ("immigrant") aggressors."""
_TREND_DRIFT = 2.0
"""A session spent entirely trending would drift this many daily ranges; the side bias is derived from it
so trends look alike whatever the tick count of a contract's day (a fixed 53/47 split would make drift, which
grows with the number of moves, swamp the noise on contracts with many ticks per day)."""
_MOVE_MULT = np.array([1.0, 1.0, 0.7, 3.0])
"""Multiplier on the chance that an aggressor consumes the touch."""
_SIZE_SHIFT = np.array([0.0, 0.0, -0.1, 0.25])
"""Added to the log-size mean: volatile markets print bigger."""
_QUOTE_PROB = np.array([0.35, 0.35, 0.3, 0.5])
"""Chance of quote-only book activity in the gap after a trade."""
_PULL_PROB = np.array([0.15, 0.15, 0.1, 0.35])
"""Given quote activity, chance that it is a momentary one-level pull (spread widens, then refills)."""

_P_PRINTS = 0.65
"""Geometric parameter of prints per aggressor (fills against several resting orders): mean ~1.5."""
_COPY_SIDE = 0.85
"""A child aggressor takes its parent's side this often: one-sided bursts."""
_CHILD_MOVE = 1.6
"""Children (bursts) consume the touch more readily than lone aggressors."""
_SIZE_MU, _SIZE_SIGMA = -0.8, 1.1
"""Log-normal print size, ceil'd: ~77% one lot, ~14% two, tail to a few dozen (real ES prints)."""
_FAST_CHILD_NS, _SLOW_CHILD_NS, _FAST_SHARE = 3e6, 4e8, 0.6
"""Child delays: a mix of millisecond follow-ups (sweeps, algos) and sub-second reactions."""
_RANGE_DIVISOR = 5.6
_COMMON_FLOW = 8.0
"""Side bias from the flow factor shared by contracts on one calendar (ES and NQ move together): scaled by
1/sqrt(moves) so it is comparable to the tick noise over minutes for any contract."""
"""Touch moves per session ~ (daily range / this)^2, so the range does not depend on trade count."""
_QUOTE_SMOOTH = 24
"""Rows over which deeper-level sizes decorrelate (moving average window)."""


@dataclass(frozen=True, slots=True)
class MarketProfile:
    """A plausible 2025 price and typical daily range per root (the sim's starting point, not a forecast)."""

    start_price: Decimal
    daily_range: Decimal


_PROFILES: dict[str, MarketProfile] = {
    root: MarketProfile(Decimal(px), Decimal(rng)) for root, (px, rng) in {
        "ES": ("5700.00", "50"), "MES": ("5700.00", "50"), "NQ": ("20000.00", "250"),
        "MNQ": ("20000.00", "250"), "RTY": ("2100.0", "35"), "M2K": ("2100.0", "35"),
        "YM": ("42000", "400"), "MYM": ("42000", "400"), "CL": ("68.00", "2.00"), "MCL": ("68.00", "2.00"),
        "GC": ("2900.0", "35"), "MGC": ("2900.0", "35"), "SI": ("32.000", "0.800"), "PL": ("950.0", "20"),
        "HG": ("4.5000", "0.0900"),
    }.items()
}


def market_profile(spec: ContractSpec) -> tuple[int, int]:
    """(start price, typical daily range), both in ticks; a neutral default for roots without a profile."""
    prof = _PROFILES.get(spec.root)
    if prof is None:
        return 20_000, 200
    return spec.to_ticks(prof.start_price), max(10, int(prof.daily_range / spec.tick_size))


# --- session data ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SessionData:
    """One simulated session of one contract, as columns in time order.

    Rows are trades (``is_trade``) or book updates. Book levels are stored once per *book row* (trades do
    not change the book: the exchange reports the resulting book as its own update); ``book_idx[i]`` is the
    book in force at row ``i``, so a trade's touch is ``bid_px[book_idx[i], 0]`` / ``ask_px[...]``.
    Prices are integer ticks; multiply by ``tick_fp`` for Databento fixed point.
    """

    root: str
    symbol: str
    """The front-month contract code on the trading date (``ESH5``), as a vendor would send it."""
    session: Session
    tick_fp: int
    ts_event: I64
    ts_recv: I64
    is_trade: NDArray[np.bool_]
    price: I64
    """Trade price in ticks (0 on book rows)."""
    size: I64
    """Trade size in contracts (0 on book rows)."""
    side: NDArray[np.int8]
    """Aggressor: +1 buy (at the ask), -1 sell (at the bid), 0 on book rows."""
    book_idx: I64
    regime: NDArray[np.int8]
    episode: NDArray[np.int8]
    bid_px: I64
    """(n_book, depth) ticks, best first."""
    bid_sz: NDArray[np.int32]
    ask_px: I64
    ask_sz: NDArray[np.int32]
    book_kind: NDArray[np.int8]
    """Per book row, a :class:`BookKind`."""

    @property
    def n_rows(self) -> int:
        return int(self.ts_event.size)

    @property
    def n_trades(self) -> int:
        return int(np.count_nonzero(self.is_trade))

    @property
    def depth(self) -> int:
        return int(self.bid_px.shape[1])

    @property
    def trade_rows(self) -> I64:
        return np.flatnonzero(self.is_trade).astype(np.int64)

    @property
    def volume(self) -> int:
        return int(self.size.sum())

    @property
    def last_price(self) -> int:
        """Last trade price in ticks (the next session opens here)."""
        rows = self.trade_rows
        return int(self.price[rows[-1]]) if rows.size else int(self.bid_px[-1, 0])


@dataclass(frozen=True, slots=True)
class RegimePlan:
    """Regime sequence of one session, shared by every contract on the same calendar that day.

    Boundaries are positions on the session's *activity clock* (share of the day's expected volume), so
    regime changes cluster in busy hours as they do in real markets. Sharing the plan and the common
    flow factor (``factor_seed``) across contracts makes ES and NQ trend and burst together.
    """

    bounds: tuple[float, ...]
    regimes: tuple[Regime, ...]
    factor_seed: int


def draw_regime_plan(rng: np.random.Generator, extra_segments: float = 3.0) -> RegimePlan:
    """Every regime at least once (a permutation), plus a few more inserted between different neighbours."""
    seq = [int(r) for r in rng.permutation(len(Regime))]
    for _ in range(int(rng.poisson(extra_segments))):
        i = int(rng.integers(0, len(seq) + 1))
        banned = {seq[i - 1]} if i > 0 else set()
        if i < len(seq):
            banned.add(seq[i])
        choices = [r for r in range(len(Regime)) if r not in banned]
        seq.insert(i, choices[int(rng.integers(0, len(choices)))])
    weights = rng.dirichlet(np.full(len(seq), 3.0))
    weights = np.maximum(weights, 0.04)
    weights /= weights.sum()
    bounds = tuple(float(b) for b in np.cumsum(weights)[:-1])
    return RegimePlan(bounds, tuple(Regime(r) for r in seq), int(rng.integers(0, 2**63 - 1)))


# --- helpers ---------------------------------------------------------------------------------------------


def intraday_profile(session: Session, n_bins: int, bin_ns: int = NS) -> F64:
    """Relative trade intensity per time bin: quiet overnight, European-open bump, pre-open ramp, U-shaped RTH.

    Shape fitted to ESZ24 5-minute bars (Sierra export in shared/data): the RTH open half hour trades
    ~2.7x midday, the close ~2.3x, and RTH holds ~80% of the day's trades. Expressed relative to the
    session's own RTH window, so energy and metals calendars get their own hours.
    """
    t = session.open_ns + np.arange(n_bins, dtype=np.int64) * bin_ns + bin_ns // 2
    w = np.ones(n_bins)
    if not session.open_ns <= session.rth_open_ns < session.rth_close_ns <= session.close_ns:
        return w  # no RTH in this session (holiday hours): flat overnight-like activity
    m_open = (t - session.rth_open_ns) / _MIN
    m_close = (session.rth_close_ns - t) / _MIN
    w += 0.7 * np.exp(-0.5 * ((m_open + 390.0) / 45.0) ** 2)
    pre = (m_open >= -90) & (m_open < 0)
    w[pre] += 2.5 * ((m_open[pre] + 90.0) / 90.0) ** 2
    rth = (m_open >= 0) & (m_close > 0)
    w[rth] = 10.0 + 24.0 * np.exp(-m_open[rth] / 25.0) + 26.0 * np.exp(-m_close[rth] / 12.0)
    post = m_close <= 0
    w[post] = 1.0 + 4.0 * np.exp(m_close[post] / 15.0)
    return w


def smooth_noise(rng: np.random.Generator, n: int, tau: float) -> F64:
    """Unit-variance noise with exponential autocorrelation (an OU path on a grid), by FFT, no Python loop."""
    k = int(5 * tau) + 1
    kern = np.exp(-np.arange(k) / tau)
    z = rng.standard_normal(n + k)
    nfft = 1 << (n + 2 * k).bit_length()
    out = np.fft.irfft(np.fft.rfft(z, nfft) * np.fft.rfft(kern, nfft), nfft)[k:n + k]
    return np.asarray(out / np.sqrt(np.sum(kern ** 2)), dtype=np.float64)


def _fold(walk: I64, half_width: int) -> I64:
    """Reflect an integer walk into [-w, w] (a triangle wave): steps stay +-1, direction flips at the edges."""
    w = half_width
    return np.asarray(w - np.abs(np.mod(walk + w, 4 * w) - 2 * w), dtype=np.int64)


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


@dataclass
class _Block:
    kind: Episode
    side: NDArray[np.int8]
    delta: NDArray[np.int8]
    size_shift: F64
    compress: bool = False
    large_at: int = -1
    """Order within the block that carries a large print (-1: none)."""
    fixed_size: I64 | None = None
    """Per order: a single print of exactly this size (0: drawn as usual). Makes a ladder's shape certain."""


def _absorption(rng: np.random.Generator) -> _Block:
    s = 1 if rng.random() < 0.5 else -1  # -1: selling absorbed by a bid that holds; +1: offers absorb buying
    push, absorb, revert = int(rng.integers(3, 7)), int(rng.integers(20, 60)), int(rng.integers(6, 14))
    side = np.concatenate([np.full(push + absorb, s), np.full(revert, -s)]).astype(np.int8)
    delta = np.concatenate([np.full(push, s), np.zeros(absorb), np.full(revert, -s)]).astype(np.int8)
    shift = np.concatenate([np.zeros(push), np.full(absorb, 0.9), np.zeros(revert)])
    return _Block(Episode.ABSORPTION, side, delta, shift, large_at=push + absorb // 2)


def _exhaustion(rng: np.random.Generator) -> _Block:
    s = 1 if rng.random() < 0.5 else -1  # +1: buying exhausts at a high; -1: selling exhausts at a low
    counts = [int(rng.integers(8, 13))]
    while counts[-1] > 1 and len(counts) < 6:  # strictly fewer aggressors per level, down to one
        counts.append(max(1, min(counts[-1] - 1, round(counts[-1] * 0.55))))
    deltas: list[int] = []
    sizes: list[int] = []
    for i, c in enumerate(counts):
        deltas += [0] * (c - 1) + [s if i < len(counts) - 1 else 0]  # the last level fails to break
        sizes += [max(1, round(3 * 0.6 ** i))] * c  # and prints get smaller: volume fades level by level
    revert = int(rng.integers(6, 11))
    side = np.concatenate([np.full(len(deltas), s), np.full(revert, -s)]).astype(np.int8)
    delta = np.concatenate([deltas, np.full(revert, -s)]).astype(np.int8)
    fixed = np.concatenate([sizes, np.zeros(revert)]).astype(np.int64)
    return _Block(Episode.EXHAUSTION, side, delta, np.zeros(side.size), fixed_size=fixed)


def _sweep(rng: np.random.Generator) -> _Block:
    s = 1 if rng.random() < 0.5 else -1
    deltas: list[int] = []
    for _ in range(int(rng.integers(4, 8))):
        deltas += [0] * int(rng.integers(1, 4)) + [s]
    n = len(deltas)
    return _Block(Episode.SWEEP, np.full(n, s, dtype=np.int8), np.array(deltas, dtype=np.int8),
                  np.full(n, 0.6), compress=True)


# --- the generator ---------------------------------------------------------------------------------------


def generate_session(spec: ContractSpec, session: Session, n_trades: int, rng: np.random.Generator,
                     depth: int = 10, start_price_ticks: int | None = None, *,
                     plan: RegimePlan | None = None) -> SessionData:
    """One session of ``n_trades`` trade prints for ``spec``, deterministic for the state of ``rng``."""
    if n_trades < 1:
        raise ValueError("n_trades must be >= 1")
    if depth < 1:
        raise ValueError("depth must be >= 1")
    start_default, range_ticks = market_profile(spec)
    start = start_default if start_price_ticks is None else int(start_price_ticks)
    if plan is None:
        plan = draw_regime_plan(rng)
    large = spec.large_order_size
    top_scale = max(2.0, large / 5)
    open_ns, close_ns = session.open_ns, session.close_ns

    # -- aggressors and their prints ---------------------------------------------------------------------
    k_all = rng.geometric(_P_PRINTS, size=int(n_trades * _P_PRINTS * 1.3) + 64).astype(np.int64)
    cs = np.cumsum(k_all)
    while cs[-1] < n_trades:  # practically never; keeps tiny sessions correct
        k_all = np.concatenate([k_all, rng.geometric(_P_PRINTS, size=64).astype(np.int64)])
        cs = np.cumsum(k_all)
    m = int(np.searchsorted(cs, n_trades)) + 1
    k = k_all[:m].copy()
    k[-1] -= int(cs[m - 1]) - n_trades

    # -- intensity on a 1-second grid ----------------------------------------------------------------------
    n_bins = -(-(close_ns - open_ns) // NS)
    base = intraday_profile(session, n_bins)
    clock = np.cumsum(base) / base.sum()
    reg_bin = np.asarray(plan.regimes, dtype=np.int8)[np.searchsorted(np.asarray(plan.bounds), clock,
                                                                        side="right")]
    frng = np.random.default_rng(plan.factor_seed)
    common_flow = smooth_noise(frng, n_bins, 600.0)
    common_act = smooth_noise(frng, n_bins, 300.0)
    own_act = smooth_noise(rng, n_bins, 300.0)
    intensity = base * np.exp(0.35 * common_act + 0.3 * own_act) * _ACTIVITY[reg_bin]
    eta_bin = _BRANCHING[reg_bin]
    pi_base = min(0.5, (range_ticks / _RANGE_DIVISOR) ** 2 / m)  # chance a lone aggressor moves the touch
    n_moves = pi_base * m
    trend_bias = min(0.15, 0.5 * _TREND_DRIFT * range_ticks / n_moves)
    flow_bias = min(0.12, _COMMON_FLOW / np.sqrt(n_moves))
    p_buy_bin = np.clip(0.5 + trend_bias * _TREND[reg_bin] + flow_bias * common_flow, 0.2, 0.8)

    # -- Hawkes arrivals (cluster representation) ---------------------------------------------------------
    imm_w = intensity * (1.0 - eta_bin)
    n_imm = int(m * imm_w.sum() / intensity.sum() * 1.25) + 16
    cw = np.cumsum(imm_w)
    b = np.minimum(np.searchsorted(cw, rng.random(n_imm) * cw[-1], side="right"), n_bins - 1)
    t = np.minimum(open_ns + b * NS + rng.integers(0, NS, n_imm), close_ns - 1)
    side0 = np.where(rng.random(n_imm) < p_buy_bin[b], 1, -1).astype(np.int8)
    ts_parts, side_parts, child_parts = [t], [side0], [np.zeros(n_imm, dtype=bool)]
    par_t, par_side, par_b = t, side0, b
    while par_t.size:
        n_child = rng.poisson(eta_bin[par_b])
        total = int(n_child.sum())
        if total == 0:
            break
        idx = np.repeat(np.arange(par_t.size), n_child)
        scale = np.where(rng.random(total) < _FAST_SHARE, _FAST_CHILD_NS, _SLOW_CHILD_NS)
        ct = par_t[idx] + (rng.exponential(1.0, total) * scale).astype(np.int64)
        keep = ct < close_ns
        idx, ct = idx[keep], ct[keep]
        random_side = np.where(rng.random(ct.size) < 0.5, 1, -1).astype(np.int8)
        cside = np.where(rng.random(ct.size) < _COPY_SIDE, par_side[idx], random_side).astype(np.int8)
        ts_parts.append(ct)
        side_parts.append(cside)
        child_parts.append(np.ones(ct.size, dtype=bool))
        par_t, par_side, par_b = ct, cside, (ct - open_ns) // NS
    t_all = np.concatenate(ts_parts)
    s_all = np.concatenate(side_parts)
    c_all = np.concatenate(child_parts)
    if t_all.size < m:  # top up with lone aggressors (a short draw of a heavy-tailed process)
        extra = m - t_all.size
        b = np.minimum(np.searchsorted(cw, rng.random(extra) * cw[-1], side="right"), n_bins - 1)
        t_all = np.concatenate([t_all, np.minimum(open_ns + b * NS + rng.integers(0, NS, extra), close_ns - 1)])
        s_all = np.concatenate([s_all, np.where(rng.random(extra) < p_buy_bin[b], 1, -1).astype(np.int8)])
        c_all = np.concatenate([c_all, np.zeros(extra, dtype=bool)])
    pick = rng.permutation(t_all.size)[:m]
    pick = pick[np.argsort(t_all[pick], kind="stable")]
    ts = t_all[pick].astype(np.int64)
    side = s_all[pick].astype(np.int8)
    child = c_all[pick]
    reg = reg_bin[(ts - open_ns) // NS]

    # -- which aggressors consume the touch -----------------------------------------------------------------
    pi = np.minimum(pi_base * _MOVE_MULT[reg] * np.where(child, _CHILD_MOVE, 1.0), 0.9)
    delta = np.where(rng.random(m) < pi, side, 0).astype(np.int64)
    size_shift = _SIZE_SHIFT[reg].astype(np.float64)
    for s0, e0 in _runs(reg == Regime.RANGE):
        w = max(3, round(range_ticks * float(rng.uniform(0.05, 0.12))))
        folded = _fold(np.cumsum(delta[s0:e0]), w)
        d = np.diff(folded, prepend=0)
        delta[s0:e0] = d
        side[s0:e0] = np.where(d != 0, d, side[s0:e0]).astype(np.int8)

    # -- injected episodes ----------------------------------------------------------------------------------
    episode = np.zeros(m, dtype=np.int8)
    large_orders: list[int] = []
    fixed_size = np.zeros(m, dtype=np.int64)
    rate = max(0.3, m / 30_000)
    blocks = ([_absorption(rng) for _ in range(1 + int(rng.poisson(rate)))]
              + [_exhaustion(rng) for _ in range(1 + int(rng.poisson(rate)))]
              + [_sweep(rng) for _ in range(1 + int(rng.poisson(rate)))])
    blocks = [blocks[i] for i in rng.permutation(len(blocks))]
    while blocks and sum(bl.side.size for bl in blocks) > m // 2:
        blocks.pop()
    if blocks:
        total_len = sum(bl.side.size for bl in blocks)
        slots = np.sort(rng.choice(m - total_len + 1, size=len(blocks), replace=False))
        offset = 0
        for slot, bl in zip(slots.tolist(), blocks, strict=True):
            s0 = slot + offset
            e0 = s0 + bl.side.size
            offset += bl.side.size
            side[s0:e0] = bl.side
            delta[s0:e0] = bl.delta
            size_shift[s0:e0] = bl.size_shift
            episode[s0:e0] = bl.kind
            if bl.large_at >= 0:
                large_orders.append(s0 + bl.large_at)
            if bl.fixed_size is not None:
                fixed_size[s0:e0] = bl.fixed_size
            if bl.compress:  # a sweep is microseconds, not minutes; min() keeps time order
                gaps = rng.integers(1_000, 200_000, e0 - s0)
                gaps[0] = 0
                ts[s0:e0] = np.minimum(ts[s0:e0], ts[s0] + np.cumsum(gaps))

    # -- prints ----------------------------------------------------------------------------------------------
    fixed = np.flatnonzero(fixed_size)
    spare = int((k[fixed] - 1).sum())
    if spare:  # one print each for fixed-size orders; their other prints go to ordinary orders (same total)
        k[fixed] = 1
        np.add.at(k, rng.choice(np.flatnonzero(episode == Episode.NONE), size=spare), 1)
    order_of_print = np.repeat(np.arange(m), k)
    k_start = np.concatenate(([0], np.cumsum(k)[:-1]))
    mu = _SIZE_MU + size_shift[order_of_print]
    sz = np.ceil(np.exp(mu + _SIZE_SIGMA * rng.standard_normal(n_trades))).astype(np.int64)
    np.clip(sz, 1, max(1, large - 1), out=sz)
    sz[k_start[fixed]] = fixed_size[fixed]
    n_large = 2 + int(rng.poisson(n_trades / 5000))
    free = np.flatnonzero(episode[order_of_print] == Episode.NONE)
    large_prints = [int(k_start[o]) for o in large_orders]
    if free.size:
        large_prints += rng.choice(free, size=min(n_large, free.size), replace=False).tolist()
    if large_prints:
        lp = np.asarray(large_prints, dtype=np.int64)
        sz[lp] = np.rint(large * (1.5 + rng.exponential(1.0, lp.size))).astype(np.int64)

    bid = start + np.concatenate(([0], np.cumsum(delta)))  # bid of state p (before order p), p = 0..m
    np.maximum(bid, depth + 1, out=bid)  # never a non-positive level, whatever the start price
    price = (bid[:m] + (side > 0))[order_of_print]

    # -- touch sizes per state --------------------------------------------------------------------------------
    vol = np.add.reduceat(sz, k_start)
    cum_b = np.concatenate(([0], np.cumsum(np.where(side > 0, vol, 0))))
    cum_s = np.concatenate(([0], np.cumsum(np.where(side < 0, vol, 0))))
    mover = delta != 0
    nxt = np.minimum.accumulate(np.where(mover, np.arange(m), m)[::-1])[::-1]
    nxt = np.concatenate((nxt, [m]))  # next order at/after state p that moves the touch (m: none)
    p = np.arange(m + 1)
    end = np.minimum(nxt + 1, m)
    rem_b = cum_b[end] - cum_b[p]
    rem_s = cum_s[end] - cum_s[p]
    starts_seg = np.concatenate(([True], mover))
    seg = np.cumsum(starts_seg) - 1
    seg_start = np.maximum.accumulate(np.where(starts_seg, p, 0))
    frac = np.clip((nxt - p) / np.maximum(end - seg_start, 1), 0.0, 1.0)
    nxt_dir = np.concatenate((delta, [0]))[np.minimum(nxt, m)]
    q_ask = top_scale * np.exp(0.5 * rng.standard_normal(int(seg[-1]) + 1))
    q_bid = top_scale * np.exp(0.5 * rng.standard_normal(int(seg[-1]) + 1))
    ask_top_sz = np.maximum(1, rem_b + np.rint(q_ask[seg] * np.where(nxt_dir > 0, frac, 1.0)).astype(np.int64))
    bid_top_sz = np.maximum(1, rem_s + np.rint(q_bid[seg] * np.where(nxt_dir < 0, frac, 1.0)).astype(np.int64))

    # -- row layout: [snapshot] then per order: prints, post-trade book, 0-2 quote rows ---------------------
    gap = np.diff(ts)
    gap_reg = reg[:-1]
    has_q = (gap >= 4) & (rng.random(m - 1) < _QUOTE_PROB[gap_reg])
    pull = has_q & (rng.random(m - 1) < _PULL_PROB[gap_reg])
    q = np.concatenate((has_q.astype(np.int64) + pull, [0]))
    cnt = k + 1 + q
    n_rows = 1 + int(cnt.sum())
    first = 1 + np.concatenate(([0], np.cumsum(cnt)[:-1]))
    trade_pos = np.repeat(first, k) + (np.arange(n_trades) - np.repeat(k_start, k))
    post_pos = first + k
    order_of_row = np.concatenate(([0], np.repeat(np.arange(m), cnt)))

    is_trade = np.zeros(n_rows, dtype=bool)
    is_trade[trade_pos] = True
    ts_event = ts[order_of_row]
    ts_event[0] = open_ns
    qj = np.flatnonzero(has_q)
    u1 = rng.random(qj.size)
    room = gap[qj] - 3
    t1 = ts[qj] + 1 + (u1 * room).astype(np.int64)
    ts_event[post_pos[qj] + 1] = t1
    pj = np.flatnonzero(pull)
    t1p = ts_event[post_pos[pj] + 1]
    ts_event[post_pos[pj] + 2] = t1p + 1 + (rng.random(pj.size) ** 3 * (ts[pj + 1] - t1p - 2)).astype(np.int64)

    price_row = np.zeros(n_rows, dtype=np.int64)
    price_row[trade_pos] = price
    size_row = np.zeros(n_rows, dtype=np.int64)
    size_row[trade_pos] = sz
    side_row = np.zeros(n_rows, dtype=np.int8)
    side_row[trade_pos] = side[order_of_print]
    book_idx = np.cumsum(~is_trade) - 1
    n_book = n_rows - n_trades

    # -- book rows -------------------------------------------------------------------------------------------
    state = np.zeros(n_book, dtype=np.int64)
    kind = np.zeros(n_book, dtype=np.int8)
    state[book_idx[post_pos]] = np.arange(1, m + 1)
    kind[book_idx[post_pos]] = BookKind.POST_TRADE
    q_rows = book_idx[post_pos[qj] + 1]
    state[q_rows] = qj + 1
    pulled_ask = rng.random(qj.size) < 0.5
    kind[q_rows] = np.where(pull[qj], np.where(pulled_ask, BookKind.PULL_ASK, BookKind.PULL_BID), BookKind.QUOTE)
    r_rows = book_idx[post_pos[pj] + 2]
    state[r_rows] = pj + 1
    kind[r_rows] = BookKind.RESTORE

    lvl = np.arange(depth, dtype=np.int64)
    bid_top = bid[state] - (kind == BookKind.PULL_BID)
    ask_top = bid[state] + 1 + (kind == BookKind.PULL_ASK)
    bid_px = bid_top[:, None] - lvl
    ask_px = ask_top[:, None] + lvl
    z = rng.standard_normal((n_book + _QUOTE_SMOOTH, 2 * depth), dtype=np.float32)
    np.cumsum(z, axis=0, out=z)
    ma = (z[_QUOTE_SMOOTH:] - z[:-_QUOTE_SMOOTH]) * np.float32(1.0 / np.sqrt(_QUOTE_SMOOTH))
    scale = (top_scale * (1.2 + 0.35 * lvl)).astype(np.float32)
    bid_deep = np.maximum(1, np.rint(scale * np.exp(np.float32(0.45) * ma[:, :depth]))).astype(np.int32)
    ask_deep = np.maximum(1, np.rint(scale * np.exp(np.float32(0.45) * ma[:, depth:]))).astype(np.int32)
    del z, ma
    bid_sz = bid_deep.copy()
    ask_sz = ask_deep.copy()
    bid_sz[:, 0] = bid_top_sz[state]
    ask_sz[:, 0] = ask_top_sz[state]
    quote = np.flatnonzero(kind == BookKind.QUOTE)
    add = rng.poisson(top_scale * 0.3, quote.size).astype(np.int32) + 1
    on_bid = rng.random(quote.size) < 0.5
    bid_sz[quote[on_bid], 0] += add[on_bid]
    ask_sz[quote[~on_bid], 0] += add[~on_bid]
    for pulled_kind, sizes, deep in ((BookKind.PULL_BID, bid_sz, bid_deep), (BookKind.PULL_ASK, ask_sz, ask_deep)):
        rows = np.flatnonzero(kind == pulled_kind)
        if depth > 1:
            sizes[rows, :-1] = deep[rows, 1:]
        sizes[rows, -1] = deep[rows, -1]

    ts_recv = np.maximum.accumulate(ts_event + 20_000 + rng.exponential(150_000.0, n_rows).astype(np.int64))
    return SessionData(
        root=spec.root, symbol=front_month(spec.root, session.trading_date), session=session,
        tick_fp=spec.tick_fp, ts_event=ts_event, ts_recv=ts_recv, is_trade=is_trade, price=price_row,
        size=size_row, side=side_row, book_idx=book_idx.astype(np.int64), regime=reg[order_of_row],
        episode=episode[order_of_row], bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
        book_kind=kind,
    )


# --- sessions, seeds ---------------------------------------------------------------------------------------


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


def session_rng(seed: int, root: str, index: int) -> np.random.Generator:
    """The generator for one contract's ``index``-th session: independent of which other symbols run."""
    return np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, _key(root), index])


def plan_for(seed: int, template: str, index: int) -> RegimePlan:
    """The regime plan shared by every contract on ``template``'s calendar for the ``index``-th session."""
    return draw_regime_plan(np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, _key(template), index, 1]))


def trading_sessions(template: str, start: dt.date, count: int) -> list[Session]:
    """The first ``count`` real sessions trading on or after ``start`` (weekends and holidays skipped)."""
    cal = calendar_for(template)
    dates = [s.trading_date for s in cal.sessions]
    i = bisect.bisect_left(dates, start)
    out = cal.sessions[i:i + count]
    if start < cal.first_date or len(out) < count:
        raise ConfigError(f"config error: TRADEBOT_SIM__START_DATE={start.isoformat()!r}: {count} session(s) "
                          f"from there fall outside the exchange calendar ({cal.first_date} to {cal.last_date})")
    return out


def iter_sessions(sim: SimSettings, spec: ContractSpec, start_price_ticks: int | None = None) -> Iterator[SessionData]:
    """Successive sessions of one contract as configured; each opens at the previous session's last price."""
    sessions = trading_sessions(spec.session, sim.start_date, sim.sessions)
    last = start_price_ticks
    for i, session in enumerate(sessions):
        data = generate_session(spec, session, sim.trades_per_session, session_rng(sim.seed, spec.root, i),
                                sim.book_depth, last, plan=plan_for(sim.seed, spec.session, i))
        last = data.last_price
        yield data


def raw_records(data: SessionData, sequence_start: int = 1, instrument_id: int = 0,
                source: str = "sim", chunk: int = 65_536) -> Iterator[RawTrade | RawBook]:
    """The session as adapter output (fixed-point prices), in row order.

    Columns become Python lists a chunk at a time: indexing numpy scalars per record would cost more than
    building the records, and converting a 750k-trade day at once would hold a gigabyte of Python ints.
    """
    tick = data.tick_fp
    sym = data.symbol
    buy, sell, rule = Side.BUY, Side.SELL, SideRule.EXCHANGE
    for c0 in range(0, data.n_rows, chunk):
        c1 = min(c0 + chunk, data.n_rows)
        ts = data.ts_event[c0:c1].tolist()
        tr = data.ts_recv[c0:c1].tolist()
        trade = data.is_trade[c0:c1].tolist()
        px = (data.price[c0:c1] * tick).tolist()
        sz = data.size[c0:c1].tolist()
        sd = data.side[c0:c1].tolist()
        b0 = int(data.book_idx[c0])
        b1 = int(data.book_idx[c1 - 1]) + 1
        bi = (data.book_idx[c0:c1] - b0).tolist()
        bpx = [tuple(r) for r in (data.bid_px[b0:b1] * tick).tolist()]
        apx = [tuple(r) for r in (data.ask_px[b0:b1] * tick).tolist()]
        bsz = [tuple(r) for r in data.bid_sz[b0:b1].tolist()]
        asz = [tuple(r) for r in data.ask_sz[b0:b1].tolist()]
        seq = sequence_start + c0
        for i in range(c1 - c0):
            if trade[i]:
                yield RawTrade(sym, ts[i], tr[i], px[i], sz[i], buy if sd[i] > 0 else sell, rule, seq + i,
                               instrument_id, source)
            else:
                b = bi[i]
                yield RawBook(sym, ts[i], tr[i], bpx[b], bsz[b], apx[b], asz[b], seq + i, instrument_id, source)


# --- the feed -----------------------------------------------------------------------------------------------


def _ts_of(ev: RawTrade | RawBook) -> int:
    return ev.ts_event


class SimulatedMarket:
    """The embedded default feed: simulated sessions of one or more contracts, merged in time order."""

    def __init__(self, sim: SimSettings, symbols: Sequence[str]) -> None:
        if not symbols:
            raise ConfigError("config error: the simulated market needs at least one symbol")
        specs: list[ContractSpec] = []
        for s in symbols:
            try:
                spec = spec_for(s)
            except UnknownContractError:
                raise ConfigError(f"config error: unknown contract {s!r} for the simulated market; "
                                  f"allowed: {', '.join(CONTRACTS)}") from None
            if spec not in specs:
                specs.append(spec)
        start = sim.start_date
        for spec in specs:  # fail at construction, not mid-stream
            trading_sessions(spec.session, start, sim.sessions)
        self.sim = sim
        self.specs = specs
        self.name = "sim"
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self._closed = False
        self._roots = list(CONTRACTS)

    def _stream(self, spec: ContractSpec) -> Iterator[RawTrade | RawBook]:
        seq = 1
        inst = 1 + self._roots.index(spec.root)
        for data in iter_sessions(self.sim, spec):
            self.stats["sessions"] += 1
            self.stats["trades_generated"] += data.n_trades
            self.stats["books_generated"] += data.n_rows - data.n_trades
            yield from raw_records(data, seq, inst, self.name)
            seq += data.n_rows

    async def __aiter__(self) -> AsyncIterator[FeedEvent]:
        pacer = Pacer(self.sim.speed)
        streams = [self._stream(spec) for spec in self.specs]
        merged: Iterator[RawTrade | RawBook] = (
            streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_ts_of))
        emitted = 0
        last_ts = 0
        try:
            for ev in merged:
                if self._closed:
                    break
                if emitted == 0:
                    self.state = FeedState.STREAMING
                    yield FeedStatus(ev.ts_event, FeedState.STREAMING, self.name,
                                     f"simulating {','.join(s.root for s in self.specs)}")
                await pacer.wait(ev.ts_event)
                if self._closed:  # closed while we slept
                    break
                emitted += 1
                last_ts = ev.ts_event
                if not emitted & 4095:  # the heartbeat reads stats while we stream
                    self.stats["events"] = emitted
                yield ev
            else:
                self.state = FeedState.STOPPED
                self.stats["events"] = emitted
                yield FeedStatus(last_ts, FeedState.STOPPED, self.name, "simulation finished",
                                 {k: int(v) for k, v in self.stats.items()})
        finally:
            self.stats["events"] = emitted
            self.state = FeedState.STOPPED

    async def close(self) -> None:
        self._closed = True
        self.state = FeedState.STOPPED


__all__ = [
    "BookKind", "Episode", "MarketProfile", "Regime", "RegimePlan", "SessionData", "SimulatedMarket",
    "draw_regime_plan", "generate_session", "intraday_profile", "iter_sessions", "market_profile",
    "plan_for", "raw_records", "session_rng", "smooth_noise", "trading_sessions",
]
