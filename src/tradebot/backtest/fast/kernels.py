"""The fast path's compiled loops: stream validation, footprint bar boundaries, one bracket's life.

Each loop is a statement-for-statement restatement of sequential rules that live elsewhere (the validator, the
footprint builder, the paper broker with the execution manager); the parity tests run both on the same days
and compare every trade, bar and decision, so a change on either side that is not mirrored fails there.

Events are addressed by *position codes*: record ``r`` of a DBN file yields its book event at ``2 r`` and its
trade event at ``2 r + 1`` (the converter emits the book before the trade of a TBBO/MBP record), so "the events
before the one that closed a bar" is an integer comparison and no interleaved copy of the day is needed.
All functions take and return plain numpy arrays (no Python objects) and are called once per day or once
per taken signal, never per tick.

Size: each kernel restates one sequential rule set statement for statement, and numba compiles each with the helpers
it calls; kept in one module so the parity tests' counterpart of every rule is found in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numba
import numpy as np
from numba import types as nbt
from numba.typed import Dict as NbDict
from numpy.typing import NDArray

from tradebot.execution import fills

F = TypeVar("F", bound=Callable[..., Any])


def _jit(f: F) -> F:
    # cache=True: the compiled code is kept next to the module, so worker processes load it instead of compiling.
    return cast(F, numba.njit(cache=True, nogil=True)(f))


# --- rejection codes (the validator's reasons, in its own words; see CODE_NAMES) -----------------------------

NO_EVENT = -1
OK = 0
UNKNOWN_INSTRUMENT = 1
NON_FINITE_PRICE = 2
NON_POSITIVE_PRICE = 3
OFF_TICK_GRID = 4
NON_POSITIVE_SIZE = 5
MALFORMED = 6
OUT_OF_ORDER = 7
DUPLICATE_SEQUENCE = 8
PRICE_JUMP = 9
CROSSED_BOOK = 10

CODE_NAMES: dict[int, str] = {
    UNKNOWN_INSTRUMENT: "unknown_instrument", NON_FINITE_PRICE: "non_finite_price",
    NON_POSITIVE_PRICE: "non_positive_price", OFF_TICK_GRID: "off_tick_grid",
    NON_POSITIVE_SIZE: "non_positive_size", MALFORMED: "malformed", OUT_OF_ORDER: "out_of_order",
    DUPLICATE_SEQUENCE: "duplicate_sequence", PRICE_JUMP: "price_jump", CROSSED_BOOK: "crossed_book",
}

_SEQ_KEEP_MAX = 4096
"""The validator's duplicate-sequence memory: above this many it keeps the newest (largest) half."""
_SEQ_KEEP = 2048
_RING = 8192


@_jit
def _evict(d: Any) -> None:
    """Keep the largest half, in place (``sorted(seqs)[-2048:]``)."""
    keys = np.empty(len(d), np.int64)
    for i, k in enumerate(d):
        keys[i] = k
    keys.sort()
    for k in keys[:keys.size - _SEQ_KEEP]:
        del d[k]


_KEY5 = nbt.UniTuple(nbt.int64, 5)  # type: ignore[no-untyped-call]
"""(sequence, ts_event, content 1..3): one remembered record of the duplicate rule."""


@_jit
def _purge_below(kd: Any, lowest: int) -> None:
    """Forget the content keys of evicted sequence numbers (those below ``lowest``)."""
    gone = []
    for k in kd:
        if k[0] < lowest:
            gone.append(k)
    for k in gone:
        del kd[k]


@_jit
def validate_stream(pre: Any, ts: Any, seq: Any, ticks: Any, tolerance_ns: int, check_jump: bool,
                    max_jump: int, confirm: int, c1: Any, c2: Any, c3: Any) -> Any:
    """Codes per record of one stream (trade or book of one symbol): ``NO_EVENT``, ``OK`` or a reason.

    ``pre`` holds the record-local verdict (unknown instrument, price, size, levels, crossed book) or
    ``NO_EVENT``; this loop adds the stream rules in the validator's order: timestamp, out of order, duplicate,
    then (trades) the fat-finger jump with its re-anchoring after ``confirm`` consistent prints. A duplicate is
    the validator's: a sequence number it remembers *and* the same content as a record accepted with it
    (``ts`` plus ``c1, c2, c3``: price, size, side of a trade; two hashes of a book's levels), so the trades of
    one packet are all kept. The memory is the validator's bounded one: exact, including its eviction of the
    older half of the sequence numbers (with their contents).
    """
    n = pre.size
    codes = np.empty(n, np.int8)
    last_ts = -1
    has_price = False
    last_price = 0
    jump_rejects = 0
    # Sequence memory: while accepted sequences only increase it is the last ``size`` of a ring buffer (the
    # common case, no hashing); the first insertion out of order switches to an exact hash set.
    mono = True
    ring = np.empty(_RING, np.int64)
    head = 0
    size = 0
    max_seq = -1
    d = NbDict.empty(key_type=nbt.int64, value_type=nbt.boolean)
    kd = NbDict.empty(key_type=_KEY5, value_type=nbt.boolean)
    for i in range(n):
        c = pre[i]
        if c != OK:
            codes[i] = c
            continue
        t = ts[i]
        if t <= 0:
            codes[i] = MALFORMED
            continue
        if t + tolerance_ns < last_ts:
            codes[i] = OUT_OF_ORDER
            continue
        s = int(seq[i])
        present = False
        key = (np.int64(s), np.int64(t), np.int64(c1[i]), np.int64(c2[i]), np.int64(c3[i]))
        if s != 0:
            if mono:
                if s <= max_seq:
                    j = head
                    for _ in range(size):
                        j = (j - 1) % _RING
                        if ring[j] == s:
                            present = True
                            break
            elif s in d:
                present = True
            if present and key in kd:
                codes[i] = DUPLICATE_SEQUENCE
                continue
        if check_jump and has_price and abs(ticks[i] - last_price) > max_jump:
            jump_rejects += 1
            if jump_rejects <= confirm:
                codes[i] = PRICE_JUMP
                continue
        codes[i] = OK
        if t > last_ts:
            last_ts = t
        if s != 0:
            kd[key] = True
            if present:
                pass  # another record of a remembered sequence number (same packet): only its content is new
            elif mono and s > max_seq:
                ring[head] = s
                head = (head + 1) % _RING
                size += 1
                max_seq = s
                if size > _SEQ_KEEP_MAX:
                    size = _SEQ_KEEP  # increasing: the largest half is the newest half
                    _purge_below(kd, ring[(head - size) % _RING])
            else:
                if mono:
                    mono = False
                    j = head
                    for _ in range(size):
                        j = (j - 1) % _RING
                        d[ring[j]] = True
                d[s] = True
                if len(d) > _SEQ_KEEP_MAX:
                    _evict(d)
                    lowest = -1
                    for k in d:
                        if lowest < 0 or k < lowest:
                            lowest = k
                    _purge_below(kd, lowest)
        if check_jump:
            jump_rejects = 0
            last_price = ticks[i]
            has_price = True
    return codes


# --- decoding -----------------------------------------------------------------------------------------------

UNDEF_PX = (1 << 63) - 1
"""Databento's undefined price (INT64_MAX)."""
NO_PX = fills.NO_QUOTE
"""Best bid/ask of a book event whose side is empty (prices are int32 ticks; a valid price is positive)."""
MAX_TICKS = (1 << 31) - 1


@_jit
def decode_chunk(b8: Any, b32: Any, b64: Any, n: int, itemsize: int, o_len: int, o_rtype: int, o_iid: int,
                 o_ts: int, o_px: int, o_sz: int, o_act: int, o_side: int, o_seq: int, o_lv: int, rtype: int,
                 n_levels: int, book_schema: bool, tick: int, good_ids: Any, depth_ns: Any, ts: Any, tpre: Any,
                 tpx: Any, tsz: Any, tside: Any, seq: Any, bpre: Any, bid: Any, ask: Any, bsz: Any, asz: Any,
                 nbl: Any, nal: Any, dep_bs: Any, dep_as: Any, dep_bn: Any, dep_an: Any) -> int:
    """One chunk of raw DBN records (viewed as bytes, uint32 and int64) to per-record columns, in one pass.

    Per record: the trade event's record-local verdict (``NO_EVENT`` for a book record that is not a trade;
    instrument, price defined, positive, on the grid, size positive, in the validator's order), price in ticks,
    size, aggressor side; the book event's verdict (instrument, each side's non-empty levels positive and on
    the grid, first bad level deciding, then crossed), best bid/ask (first non-empty level, ticks) with sizes,
    the number of non-empty levels per side and, per depth N in ``depth_ns``, the top-N sizes and
    price x size sums. Returns 0, or 1 for a record of another type/length, 2 for a timestamp past int64, 3 for
    a price (or a top-N price x size sum) beyond int32.
    """
    words = itemsize // 4
    qwords = itemsize // 8
    nd = depth_ns.size
    for i in range(n):
        base = i * itemsize
        if b8[base + o_rtype] != rtype or np.int64(b8[base + o_len]) * 4 != itemsize:
            return 1
        t = b64[i * qwords + o_ts // 8]
        if t < 0:
            return 2
        ts[i] = t
        iid = b32[i * words + o_iid // 4]
        known = False
        for g in good_ids:
            if g == iid:
                known = True
                break
        px = b64[i * qwords + o_px // 8]
        sz = np.int64(b32[i * words + o_sz // 4])
        sd = b8[base + o_side]
        tside[i] = 1 if sd == 66 else (-1 if sd == 65 else 0)  # 'B' buy aggressor, 'A' sell aggressor
        tsz[i] = sz
        seq[i] = b32[i * words + o_seq // 4]
        is_t = (b8[base + o_act] == 84) or not book_schema  # 'T'
        tpx[i] = 0
        if not is_t:
            tpre[i] = NO_EVENT
        elif not known:
            tpre[i] = UNKNOWN_INSTRUMENT
        elif px == UNDEF_PX:
            tpre[i] = NON_FINITE_PRICE
        elif px <= 0:
            tpre[i] = NON_POSITIVE_PRICE
        elif px % tick != 0:
            tpre[i] = OFF_TICK_GRID
        elif sz <= 0:
            tpre[i] = NON_POSITIVE_SIZE
        else:
            tpre[i] = OK
            if px // tick > MAX_TICKS:
                return 3
            tpx[i] = px // tick
        if not book_schema:
            continue
        code = OK
        best_b = NO_PX
        best_a = NO_PX
        sb = 0
        sa = 0
        cb = 0
        ca = 0
        for k in range(nd):
            dep_bs[k, i] = 0
            dep_as[k, i] = 0
            dep_bn[k, i] = 0
            dep_an[k, i] = 0
        for side in range(2):
            cnt = 0
            for lvl in range(n_levels):
                lb = base + o_lv + lvl * 32
                p = b64[lb // 8 + side]
                q = int(b32[lb // 4 + 4 + side])
                if p == UNDEF_PX or q == 0:
                    continue
                if code == OK:
                    if p <= 0:
                        code = NON_POSITIVE_PRICE
                    elif p % tick != 0:
                        code = OFF_TICK_GRID
                if code != OK:
                    continue  # the verdict is decided; the rest no longer matters
                pt = int(p // tick)
                if pt > MAX_TICKS:
                    return 3
                if cnt == 0:
                    if side == 0:
                        best_b = pt
                        sb = q
                    else:
                        best_a = pt
                        sa = q
                cnt += 1
                for k in range(nd):
                    if cnt <= depth_ns[k]:
                        if side == 0:
                            dep_bs[k, i] += q
                            notional = dep_bn[k, i] + pt * q
                            if notional > MAX_TICKS:
                                return 3
                            dep_bn[k, i] = notional
                        else:
                            dep_as[k, i] += q
                            notional = dep_an[k, i] + pt * q
                            if notional > MAX_TICKS:
                                return 3
                            dep_an[k, i] = notional
            if side == 0:
                cb = cnt
            else:
                ca = cnt
            if code != OK:
                break
        if code == OK and best_b != NO_PX and best_a != NO_PX and best_b >= best_a:
            code = CROSSED_BOOK
        if not known:
            code = UNKNOWN_INSTRUMENT
        bpre[i] = code
        bid[i] = best_b
        ask[i] = best_a
        bsz[i] = sb
        asz[i] = sa
        nbl[i] = cb
        nal[i] = ca
    return 0


# --- aggressor side inference ---------------------------------------------------------------------------


@_jit
def infer_sides(trade_ok: Any, tpx: Any, tside: Any, book_ok: Any, bid: Any, ask: Any, book_schema: bool) -> int:
    """:class:`tradebot.feeds.sides.SideInference` over one contract's day, in place on ``tside`` (0 = unknown).

    Record ``r``'s book event comes before its trade event, so the quote a trade is compared with is the last
    accepted book at or before its own record; the tick rule runs over accepted trades in stream order (exchange
    sided ones included). Returns the number of trades whose side was inferred.
    """
    have_q = False
    qb = np.int64(0)
    qa = np.int64(0)
    last = np.int64(-1)
    tick = 0
    inferred = 0
    for i in range(tpx.size):
        if book_schema and book_ok[i]:
            b = np.int64(bid[i])
            a = np.int64(ask[i])
            have_q = bool(b != NO_PX and a != NO_PX and 0 < b <= a)
            qb = b
            qa = a
        if not trade_ok[i]:
            continue
        p = np.int64(tpx[i])
        if last >= 0:
            if p > last:
                tick = 1
            elif p < last:
                tick = -1
        last = p
        if tside[i] != 0:
            continue
        inferred += 1
        s = 0
        if have_q:
            if 2 * p > qb + qa:
                s = 1
            elif 2 * p < qb + qa:
                s = -1
        tside[i] = s if s != 0 else tick
    return inferred


# --- footprint bar boundaries ----------------------------------------------------------------------------

BIG = 1 << 62
# columns of the bar table
B_START, B_END, B_INDEX, B_SESSION, B_OPEN, B_HIGH, B_LOW, B_CLOSE = 0, 1, 2, 3, 4, 5, 6, 7
B_FIRST_TS, B_LAST_TS, B_DMAX, B_DMIN, B_CD, B_RCD, B_CLOSE_POS, B_FIRST_TRADE, B_TRADES = (
    8, 9, 10, 11, 12, 13, 14, 15, 16)
B_FIELDS = 17


@_jit
def assign_bars(rts: Any, book_ok: Any, trade_ok: Any, tpx: Any, tsz: Any, tside: Any, s_open: Any,
                s_close: Any, s_rth_open: Any, s_rth_close: Any, bar_ns: int, cap: int, volume_bars: bool,
                capacity: int) -> Any:
    """The footprint builder's bar boundaries over the validated event stream, as a table of bars.

    Mirrors ``FootprintBuilder.on_trade`` / ``close_until``: a time bar closes at the first event (trade or
    book) at or after its end, a volume bar at the first event after it holds ``cap`` contracts, any bar at a
    session change; trades outside every session are dropped (they still close the open bar). Per bar: window,
    OHLC, running-delta extremes, session and RTH cumulative delta at its close, the position code of the event
    that closed it (``-1``: still open at the end of data, closed by the flush) and its run of accepted trades.
    More than ``capacity`` bars: an empty ``(0, 1)`` table (call again with more room). The table is never
    regrown inside the loop: a reassigned array costs numba a reference count per iteration.
    """
    n = rts.size
    out = np.empty((capacity, B_FIELDS), np.int64)
    nb = 0
    active = False
    start = -1
    end = -1
    vol = 0
    d = 0
    dmax = -BIG
    dmin = BIG
    o = h = lo = c = 0
    first = last = 0
    index = 0
    sess = -1
    cd = 0
    rcd = 0
    vidx = 0
    rth_o = 0
    rth_c = 0
    ti = 0
    first_trade = 0
    ntr = 0
    for e in range(2 * n + 1):
        final = e == 2 * n
        r = e >> 1
        is_trade = (e & 1) == 1
        if not final:
            if is_trade:
                if not trade_ok[r]:
                    continue
            elif not book_ok[r]:
                continue
            ts = rts[r]
        else:
            ts = BIG  # the end-of-data flush closes whatever is open
        if ts >= end or vol >= cap:
            if active:
                if nb == capacity:
                    return np.empty((0, 1), np.int64)
                row = out[nb]
                row[B_START] = first if volume_bars else start
                row[B_END] = last + 1 if volume_bars else end
                row[B_INDEX] = index
                row[B_SESSION] = sess
                row[B_OPEN] = o
                row[B_HIGH] = h
                row[B_LOW] = lo
                row[B_CLOSE] = c
                row[B_FIRST_TS] = first
                row[B_LAST_TS] = last
                row[B_DMAX] = dmax
                row[B_DMIN] = dmin
                row[B_CD] = cd
                row[B_RCD] = rcd
                row[B_CLOSE_POS] = -1 if final else e
                row[B_FIRST_TRADE] = first_trade
                row[B_TRADES] = ntr
                nb += 1
            active = False
            start = -1
            end = -1
            vol = 0
            d = 0
            dmax = -BIG
            dmin = BIG
            if not is_trade or final:
                continue
            # the roll: the session (and bar) this trade belongs to
            ok = True
            if sess < 0 or not (s_open[sess] <= ts < s_close[sess]):
                f = np.searchsorted(s_open, ts, side="right") - 1
                if f < 0 or ts >= s_close[f]:
                    ok = False  # outside every session: dropped
                elif sess >= 0 and s_open[f] < s_open[sess]:
                    ok = False  # a print of an earlier session: its bars are closed
                elif sess < 0 or f != sess:
                    sess = f
                    cd = 0
                    rcd = 0
                    vidx = 0
                    rth_o = s_rth_open[f]
                    rth_c = s_rth_close[f]
            if not ok:
                ti += 1
                continue
            if volume_bars:
                start = ts
                end = s_close[sess]
                index = vidx
                vidx += 1
            else:
                idx = (ts - s_open[sess]) // bar_ns
                start = s_open[sess] + idx * bar_ns
                end = min(start + bar_ns, s_close[sess])
                index = idx
            active = True
            p0 = tpx[r]
            o = h = lo = c = p0
            first = last = ts
            first_trade = ti
            ntr = 0
        elif not is_trade:
            continue
        # accumulate the trade into the open bar (a late print joins it too); branch-free where it can be
        p = tpx[r]
        s = tsz[r]
        signed = s * np.int64(tside[r])
        d += signed
        cd += signed
        if rth_o <= ts < rth_c:
            rcd += signed
        dmax = max(dmax, d)
        dmin = min(dmin, d)
        h = max(h, p)
        lo = min(lo, p)
        c = p
        last = ts
        vol += s
        ntr += 1
        ti += 1
    return out[:nb].copy()


@_jit
def bar_levels(table: Any, tpx: Any, tsz: Any, tside: Any) -> Any:
    """Per bar and tick of its range: ``[bid, ask, unknown, trades]`` (rows of all bars, low to high, stacked)."""
    nb = table.shape[0]
    offsets = np.empty(nb + 1, np.int64)
    offsets[0] = 0
    for b in range(nb):
        offsets[b + 1] = offsets[b] + table[b, B_HIGH] - table[b, B_LOW] + 1
    acc = np.zeros((offsets[nb], 4), np.int64)
    for b in range(nb):
        base = offsets[b] - table[b, B_LOW]
        t0 = table[b, B_FIRST_TRADE]
        for i in range(t0, t0 + table[b, B_TRADES]):
            k = base + tpx[i]
            sd = tside[i]
            col = 1 if sd == 1 else (0 if sd == -1 else 2)
            acc[k, col] += tsz[i]
            acc[k, 3] += 1
    return offsets, acc


# --- one bracket, tick by tick -------------------------------------------------------------------------------



def _inlined(f: F) -> F:
    # Inlined at numba's IR level: a call between separately compiled functions costs a call and an exception
    # check per event in the loop below (about a quarter of its time); inlined it costs nothing.
    return cast(F, numba.njit(cache=True, nogil=True, inline="always")(f))


# The paper broker's per-order fill rules (execution/fills.py), compiled: the same functions both engines run.
_slipped = _inlined(fills.slipped)
_market_on_book = _inlined(fills.market_on_book)
_market_on_trade = _inlined(fills.market_on_trade)
_stop_elected = _inlined(fills.stop_elected)
_stop_fill = _inlined(fills.stop_fill)
_limit_through = _inlined(fills.limit_through)

# status
ST_CLOSED = 0
ST_OPEN_AT_END = 1
ST_PENDING_AT_END = 2
ST_CANCELLED = 3
ST_UNSUPPORTED = 9
# exit reasons
X_STOP = 1
X_TARGET = 2
X_AUTO_FLATTEN = 3
X_PROFIT_TARGET = 4
X_LOSS_LIMIT = 5
NONE = -1
"""A position code, time, price or reason the bracket never reached."""


class BracketMarket(NamedTuple):
    """The day's columns the bracket loop reads (:class:`~tradebot.backtest.fast.load.DayColumns`), by record."""

    rts: NDArray[np.int64]
    book_ok: NDArray[np.bool_]
    trade_ok: NDArray[np.bool_]
    tpx: NDArray[np.int32]
    tside: NDArray[np.int8]
    bid: NDArray[np.int32]
    ask: NDArray[np.int32]


class BracketParams(NamedTuple):
    """One market-entry bracket and the trading day's state as the manager hands it over (Python ints and bools
    only: numba compiles one version per field type, so an ``np.int64`` here would compile a second one)."""

    start_pos: int
    """Position code of the first event after the decision."""
    resume_ns: int
    """The manager sees only events at or after this time."""
    armed_ns: int
    """The manager's clock when it sent the entry: it fills on an event strictly later."""
    side: int
    qty: int
    stop: int
    target: int
    tick_value: int
    """Cents per tick per contract."""
    fee: int
    """Commission and fees per contract per side, cents."""
    market_slip: int
    stop_slip: int
    day_net: int
    """Realized net P&L of the day so far, cents."""
    had_fill: bool
    profit_cents: int
    loss_cents: int
    include_unrealized: bool
    flatten_on_limit: bool
    limit_done: bool
    """A daily limit was already hit today (checked once per day)."""
    flatten_at: int
    """The auto-flatten time still ahead today (``1 << 62``: none)."""
    session_close: int


class BracketResult(NamedTuple):
    """How the bracket ended (``status``) and what it changed of the day; ``NONE`` for what it never reached."""

    status: int
    entry_pos: int
    entry_ts: int
    entry_px: int
    exit_pos: int
    exit_ts: int
    exit_px: int
    reason: int
    limit: int
    """``X_PROFIT_TARGET`` or ``X_LOSS_LIMIT`` when a daily limit was hit during the bracket, else 0."""
    limit_pos: int
    flatten_pos: int
    """Position code of the event that triggered the auto-flatten (``NONE``: it did not happen)."""
    day_net: int
    had_fill: bool


_R_ENTRY_POS, _R_ENTRY_TS, _R_ENTRY_PX, _R_EXIT_POS, _R_EXIT_TS, _R_EXIT_PX, _R_REASON, _R_LIMIT_POS = range(8)
_R_FLATTEN_POS, _R_FIELDS = 8, 9


@_jit
def run_bracket(m: BracketMarket, p: BracketParams) -> BracketResult:
    """A market-entry bracket from its decision to its close, exactly as the paper broker and the manager run it.

    Per event from ``start_pos`` (the manager sees only events at or after ``resume_ns``): the auto-flatten
    once the event time reaches ``flatten_at`` (a working entry is cancelled, a position gets a market exit),
    the mark (trades), then the broker in its order: entry, exit, stop, target, each only on events strictly
    after it was armed (entry: ``armed_ns``, the manager's clock when it sent the order; stop and target: the
    entry fill). Fill prices are the paper broker's own rules (:mod:`tradebot.execution.fills`, compiled):
    market orders at the prevailing opposite quote (on a trade without one, at the print or a tick worse), plus
    ``market_slip``; the stop elects on a trade at or through it and fills at the stop or the worse print plus
    ``stop_slip``; the target fills at its price on a trade strictly through it (stop before target:
    one-cancels-other). Fees per contract per side on every fill. After each fill and after each event (once
    there ever was a fill): the daily limits on realized (+ unrealized at the last trade price) net P&L, once
    per day, flattening at the event's time. A session roll while the bracket lives is outside what this loop
    models: ``ST_UNSUPPORTED``.
    """
    rts, book_ok, trade_ok, tpx, tside, bbid, bask = m
    start_pos = p.start_pos
    resume_ns = p.resume_ns
    armed_ns = p.armed_ns
    side = p.side
    qty = p.qty
    stop = p.stop
    target = p.target
    tick_value = p.tick_value
    fee = p.fee
    market_slip = p.market_slip
    stop_slip = p.stop_slip
    day_net = p.day_net
    had_fill = p.had_fill
    profit_cents = p.profit_cents
    loss_cents = p.loss_cents
    include_unrealized = p.include_unrealized
    flatten_on_limit = p.flatten_on_limit
    limit_done = p.limit_done
    flatten_at = p.flatten_at
    session_close = p.session_close
    n = rts.size
    # the mark: the last trade the manager saw before the start
    has_mark = False
    mark = 0
    pc = start_pos - 1
    while pc >= 0:
        rr = pc // 2
        if pc % 2 == 1 and trade_ok[rr] and rts[rr] >= resume_ns:
            mark = tpx[rr]
            has_mark = True
            break
        pc -= 1
    # the prevailing quote: the latest book the broker saw before the start (it notes every book)
    q_bid = NO_PX
    q_ask = NO_PX
    pc = start_pos - 1
    while pc >= 0:
        if pc % 2 == 0 and book_ok[pc // 2]:
            q_bid = bbid[pc // 2]
            q_ask = bask[pc // 2]
            break
        pc -= 1
    exit_side = -side
    entry_state = 0  # 0 working, 1 filled, 2 cancelled
    entry_px = 0
    pos = 0
    exit_pending = False
    exit_armed = 0
    exit_reason = 0
    child = False
    child_armed = 0
    limit_code = 0
    far = 1 << 62
    r0 = start_pos // 2
    ph0 = start_pos % 2
    status = ST_PENDING_AT_END
    # What the bracket reached, written where it happens: slots of one small array, not loop-carried locals (ten
    # more live values in the loop cost it about a fifth of its speed in register spills).
    res = np.full(_R_FIELDS, NONE, np.int64)
    done = False
    for r in range(r0, n):
        t = rts[r]
        for ph in range(2):
            if r == r0 and ph < ph0:
                continue
            if ph == 0:
                if not book_ok[r]:
                    continue
            elif not trade_ok[r]:
                continue
            if t < resume_ns:
                continue
            pcode = 2 * r + ph
            if t >= session_close:
                status = ST_UNSUPPORTED
                done = True
                break
            if t >= flatten_at:
                flatten_at = far
                res[_R_FLATTEN_POS] = pcode
                if entry_state == 0:
                    status = ST_CANCELLED
                    res[_R_EXIT_POS] = pcode
                    res[_R_EXIT_TS] = t
                    res[_R_REASON] = X_AUTO_FLATTEN
                    done = True
                    break
                if pos > 0 and not exit_pending:
                    child = False
                    exit_pending = True
                    exit_armed = t
                    exit_reason = X_AUTO_FLATTEN
            is_trade = ph == 1
            if is_trade:
                px = tpx[r]
                mark = px
                has_mark = True
            else:
                px = 0
                q_bid = bbid[r]
                q_ask = bask[r]
            filled_entry = False
            closed = False
            xpx = 0
            xreason = 0
            # a market order pays (before slippage) the broker's price for this event; NO_PX: no fill on it
            if entry_state == 0 and armed_ns < t:
                in_px = (_market_on_trade(side, px, tside[r], q_bid, q_ask) if is_trade
                         else _market_on_book(side, q_bid, q_ask))
                if in_px != NO_PX:
                    entry_px = _slipped(side, in_px, market_slip)
                    filled_entry = True
                    entry_state = 1
                    pos = qty
                    child = True
                    child_armed = t
                    res[_R_ENTRY_POS] = pcode
                    res[_R_ENTRY_TS] = t
                    res[_R_ENTRY_PX] = entry_px
            if exit_pending and exit_armed < t:
                out_px = (_market_on_trade(exit_side, px, tside[r], q_bid, q_ask) if is_trade
                          else _market_on_book(exit_side, q_bid, q_ask))
                if out_px != NO_PX:
                    xpx = _slipped(exit_side, out_px, market_slip)
                    closed = True
                    xreason = exit_reason
            if not closed and child and child_armed < t and is_trade:
                if _stop_elected(exit_side, stop, px):
                    xpx = _stop_fill(exit_side, stop, px, stop_slip)
                    xreason = X_STOP
                    closed = True
                elif _limit_through(exit_side, target, px):
                    xpx = target
                    xreason = X_TARGET
                    closed = True
            # the manager applies the fills (limit check after each), then checks the limits for the event
            if filled_entry:
                had_fill = True
                day_net -= fee * qty
                if not limit_done:
                    pnl = day_net
                    if include_unrealized and has_mark:
                        pnl += (mark - entry_px) * pos * tick_value * side
                    if not (loss_cents < pnl < profit_cents):
                        limit_done = True
                        limit_code = X_PROFIT_TARGET if pnl >= profit_cents else X_LOSS_LIMIT
                        res[_R_LIMIT_POS] = pcode
                        if flatten_on_limit and not exit_pending:
                            child = False
                            exit_pending = True
                            exit_armed = t
                            exit_reason = limit_code
            if closed:
                day_net += (xpx - entry_px) * qty * tick_value * side - fee * qty
                pos = 0
                if not limit_done and not (loss_cents < day_net < profit_cents):
                    limit_done = True
                    limit_code = X_PROFIT_TARGET if day_net >= profit_cents else X_LOSS_LIMIT
                    res[_R_LIMIT_POS] = pcode
                status = ST_CLOSED
                res[_R_EXIT_POS] = pcode
                res[_R_EXIT_TS] = t
                res[_R_EXIT_PX] = xpx
                res[_R_REASON] = xreason
                had_fill = True
                done = True
                break
            if had_fill and not limit_done:
                pnl = day_net
                if include_unrealized and pos > 0 and has_mark:
                    pnl += (mark - entry_px) * pos * tick_value * side
                if not (loss_cents < pnl < profit_cents):
                    limit_done = True
                    limit_code = X_PROFIT_TARGET if pnl >= profit_cents else X_LOSS_LIMIT
                    res[_R_LIMIT_POS] = pcode
                    if flatten_on_limit:
                        if entry_state == 0:
                            status = ST_CANCELLED
                            res[_R_EXIT_POS] = pcode
                            res[_R_EXIT_TS] = t
                            res[_R_REASON] = limit_code
                            done = True
                            break
                        if pos > 0 and not exit_pending:
                            child = False
                            exit_pending = True
                            exit_armed = t
                            exit_reason = limit_code
        if done:
            break
    if not done and entry_state == 1:
        status = ST_OPEN_AT_END
    return BracketResult(status, res[_R_ENTRY_POS], res[_R_ENTRY_TS], res[_R_ENTRY_PX], res[_R_EXIT_POS],
                         res[_R_EXIT_TS], res[_R_EXIT_PX], res[_R_REASON], limit_code, res[_R_LIMIT_POS],
                         res[_R_FLATTEN_POS], day_net, had_fill)


def _drop_stale_bracket_cache() -> None:
    """numba keys :func:`run_bracket`'s on-disk cache by this file alone, but the fill rules it calls
    (``execution/fills.py``) are compiled into it: after an edit of those rules the cache would go on running the
    old ones. So the cache remembers the rules' source hash beside it and is dropped (recompiled once) when the
    rules change."""
    cache = getattr(run_bracket, "_cache", None)
    where = getattr(cache, "_cache_path", None)
    if cache is None or where is None:
        return
    stamp = hashlib.sha256(Path(fills.__file__).read_bytes()).hexdigest()
    marker = Path(where) / "kernels.run_bracket.fills.sha256"
    with contextlib.suppress(OSError):
        if marker.read_text() == stamp:
            return
    cache.flush()
    with contextlib.suppress(OSError):
        marker.write_text(stamp)


_drop_stale_bracket_cache()
