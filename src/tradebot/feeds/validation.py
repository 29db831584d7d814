"""The validation layer between every feed and the engine (seed 000's rules).

Turns raw records into validated events (integer ticks, a known contract) or a counted rejection with a
log line. It never raises into the loop: anything unexpected about a record is itself a rejection
(``malformed``). Counts are a plain ``Counter`` the heartbeat reads. Every accepted trade without an exchange
side leaves with an inferred one (:mod:`tradebot.feeds.sides`), so no source reaches the engine unsided.

One bad record costs one record: a rejected record never moves a stream's clock or price anchor, so a record
stamped decades ahead cannot make the rest of a file "out of order". Time is checked against the wall clock
(recorded data cannot come from the future; live data may not be more than ``future_seconds`` ahead), against
the span the file itself declares (DBN metadata, see :meth:`Validator.declare_span`) and, for sources that
declare none, against the stream's own recent past (``time_jump``, believed after ``jump_confirm_prints``
consistent records, as a real gap would be). A duplicate is a true repeat of a record (same sequence *and*
same content): several trades of one packet share ``ts_event`` and ``sequence`` and are all kept.

Size: the Validator is one stateful gate with one rule per rejection reason, over per-stream state every rule reads;
splitting it would spread that state across modules.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.clock import Clock, SystemClock
from tradebot.core.config import ValidationSettings
from tradebot.core.contracts import ContractSpec, root_of, spec_for
from tradebot.core.prices import UNDEF_PRICE, fp_to_ticks
from tradebot.core.types import (
    BookUpdate,
    MarketEvent,
    RawBook,
    RawRecord,
    RawStatus,
    RawTrade,
    StatusEvent,
    Trade,
    new_book_update,
    new_trade,
)
from tradebot.feeds.sides import SideInference

REASONS = (
    "non_finite_price", "non_positive_price", "off_tick_grid", "non_positive_size", "stale",
    "future", "out_of_order", "price_jump", "crossed_book", "unknown_instrument", "duplicate_sequence",
    "malformed", "implausible_size", "outside_file_range", "time_jump",
)

DAMAGE_REASONS = frozenset({
    "non_finite_price", "non_positive_price", "off_tick_grid", "non_positive_size", "implausible_size", "future",
    "outside_file_range", "time_jump", "malformed",
})
"""Rejections that say a record itself is broken (not a market condition such as a crossed book, a fat-finger
print or a repeat): a file with any of these is damaged input, and the commands that read it exit non-zero."""

PLAUSIBLE_SIZE_FACTOR = 1000
"""Per contract, the largest plausible print or book level is this many times its large-print size (ES: 100 ->
100,000 contracts; the biggest real ES levels are a few thousand). An unsigned "-1" (4,294,967,295) is not a size."""

_LOG_EVERY = 1000  # after the first few, log one line per this many rejections of one reason


@dataclass
class _StreamState:
    last_ts: int = -1
    last_price: int | None = None
    jump_rejects: int = 0
    time_jumps: int = 0
    recent: dict[int, Any] = field(default_factory=dict)
    """Sequence -> content key of the record accepted with it (a list once several records share it)."""


def _is_repeat(st: _StreamState, seq: int, key: object) -> bool:
    prev = st.recent.get(seq)
    if prev is None:
        return False
    if type(prev) is list:
        return key in prev
    return bool(prev == key)


def _remember(st: _StreamState, seq: int, key: object) -> None:
    recent = st.recent
    prev = recent.get(seq)
    if prev is None:
        recent[seq] = key
        if len(recent) > 4096:  # bounded memory: keep the newest half
            st.recent = {s: recent[s] for s in sorted(recent)[-2048:]}
    elif type(prev) is list:
        prev.append(key)
    else:
        recent[seq] = [prev, key]


class Validator:
    """Validates raw records for a set of allowed contract roots (empty = any known contract)."""

    def __init__(self, settings: ValidationSettings | None = None, symbols: list[str] | None = None,
                 clock: Clock | None = None, logger: Any = None, *, wall_clock_future: bool = True) -> None:
        self.settings = settings or ValidationSettings()
        self.allowed = {r for r in (root_of(s) for s in symbols or []) if r}
        self.clock = clock or SystemClock()
        self.log = logger
        self.rejects: Counter[str] = Counter()
        self.accepted = 0
        self._streams: dict[tuple[str, str], _StreamState] = {}
        self._specs: dict[str, ContractSpec | None] = {}
        self._tick_fp: dict[str, int] = {}  # per root: ContractSpec.tick_fp re-parses a Decimal each call
        # Per vendor symbol, once a record of it has been accepted: (root, tick in fixed point, stream state).
        self._fast_trade: dict[str, tuple[str, int, _StreamState]] = {}
        self._fast_book: dict[str, tuple[str, int, _StreamState]] = {}
        self._tolerance_ns = int(self.settings.out_of_order_ms * 1_000_000)
        self._stale_ns = int(self.settings.stale_seconds * 1e9)
        self._future_ns = int(self.settings.future_seconds * 1e9)
        self.sides = SideInference()
        """Every accepted trade without an exchange side leaves here with an inferred one (see ``feeds.sides``)."""
        self._gap_ns = int(self.settings.max_time_gap_seconds * 1e9)
        self._slack_ns = int(self.settings.range_slack_seconds * 1e9)
        self.wall_clock_future = wall_clock_future
        """Reject records ahead of the wall clock even when not live (off only for a simulated market, whose
        time is its own)."""
        self._spans: dict[str, tuple[int, int]] = {}
        self._max_size: dict[str, int] = {}
        self._future_limit = -1
        """Wall clock + ``future_seconds`` when last read. The clock only moves forward, so a record at or below
        it is not from the future; only one beyond it pays for reading the clock again (replay reads it about
        once per ``future_seconds`` of wall time instead of per record)."""

    def _beyond_clock(self, ts: int) -> bool:
        self._future_limit = self.clock.now_ns() + self._future_ns
        return ts > self._future_limit

    def declare_span(self, source: str, start_ns: int, end_ns: int) -> None:
        """Records of ``source`` (their ``source`` field) must lie in ``[start, end)`` give or take the slack."""
        lo, hi = start_ns - self._slack_ns, end_ns + self._slack_ns
        old = self._spans.get(source)
        self._spans[source] = (lo, hi) if old is None else (min(lo, old[0]), max(hi, old[1]))

    def declare_spans_of(self, feed: object) -> None:
        """Adopt the spans a feed's files declare (``feed.time_spans()``, where it has one)."""
        spans = getattr(feed, "time_spans", None)
        if callable(spans):
            for source, (start, end) in spans().items():
                self.declare_span(source, start, end)

    @property
    def damaged(self) -> int:
        """Records rejected because they are broken (see :data:`DAMAGE_REASONS`)."""
        return sum(n for r, n in self.rejects.items() if r in DAMAGE_REASONS)

    # -- public ------------------------------------------------------------------------------------

    def validate(self, rec: RawRecord) -> MarketEvent | None:
        """The validated event, or ``None`` with the rejection counted (and logged, rate-limited).

        Per record this is the live path's first step, so the common case (a well-formed record of a symbol
        already seen, exact ``int`` fields) takes a straight-line fast path; anything else, or anything the fast
        path is unsure about before it has changed any state, goes through the general rules below, which
        decide every record exactly as the fast path would have.
        """
        if type(rec) is RawTrade:
            ev = self._fast_trade_or_general(rec)
            return self.sides.trade(ev) if type(ev) is Trade else ev
        if type(rec) is RawBook:
            ev = self._fast_book_or_general(rec)
            if type(ev) is BookUpdate:
                self.sides.book(ev)
            return ev
        ev = self._validate_general(rec)
        if type(ev) is Trade:
            return self.sides.trade(ev)
        if type(ev) is BookUpdate:
            self.sides.book(ev)
        return ev

    def _validate_general(self, rec: RawRecord) -> MarketEvent | None:
        try:
            if isinstance(rec, RawTrade):
                return self._trade(rec)
            if isinstance(rec, RawBook):
                return self._book(rec)
            if isinstance(rec, RawStatus):
                spec = self._spec(rec.symbol)
                if spec is None:
                    self._reject("unknown_instrument", rec)
                    return None
                ts = rec.ts_event
                if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
                    self._reject("malformed", rec)
                    return None
                if ((self.wall_clock_future or self.settings.check_staleness)
                        and ts > self._future_limit and self._beyond_clock(ts)):
                    self._reject("future", rec)
                    return None
                return StatusEvent(spec.root, ts, rec.halted, rec.reason)
            self._reject("malformed", rec)
            return None
        except Exception as exc:  # a record must never take the loop down
            self._reject("malformed", rec, error=repr(exc))
            return None

    def on_gap(self) -> None:
        """The feed says data was missed: side inference starts afresh (see :meth:`SideInference.on_gap`)."""
        self.sides.on_gap()

    @property
    def total_rejects(self) -> int:
        return sum(self.rejects.values())

    def snapshot(self) -> dict[str, int]:
        return {"accepted": self.accepted, **dict(self.rejects)}

    # -- fast paths ------------------------------------------------------------------------------------
    #
    # Each runs in two phases. Phase 1 only reads: it proves the record passes every rule the general path
    # checks before the stream-time rules (known symbol, on-grid positive price, positive size, a plain
    # positive timestamp) and otherwise hands the untouched record to the general path. Phase 2 is the general
    # path's own code from there on, statement for statement (same order, same counters, same log lines, an
    # exception counted as ``malformed`` as ``_validate_general`` does).

    def _fast_trade_or_general(self, rec: RawTrade) -> MarketEvent | None:
        try:
            ent = self._fast_trade.get(rec.symbol)
        except TypeError:  # an unhashable symbol: the general path names the problem
            ent = None
        fp = rec.price_fp
        size = rec.size
        ts = rec.ts_event
        seq = rec.sequence
        if (ent is None or type(fp) is not int or type(size) is not int or type(ts) is not int
                or type(seq) is not int or fp <= 0 or fp >= UNDEF_PRICE or size <= 0 or ts <= 0 or fp % ent[1]):
            return self._validate_general(rec)
        root, tick, st = ent
        if size > (self._max_size.get(root) or self._size_bound(root)):
            return self._validate_general(rec)
        ticks = fp // tick
        try:
            settings = self.settings
            key = (ts, fp, size, rec.side) if seq else None
            # _time_rule, written out (the live path's per-record cost)
            if settings.check_staleness:
                now = self.clock.now_ns()
                if ts > now + self._future_ns:
                    self._reject("future", rec)
                    return None
                if ts < now - self._stale_ns:
                    self._reject("stale", rec)
                    return None
            elif self.wall_clock_future and ts > self._future_limit and self._beyond_clock(ts):
                self._reject("future", rec)
                return None
            last_ts = st.last_ts
            span = self._spans.get(rec.source) if self._spans else None
            if span is not None:
                if not span[0] <= ts <= span[1]:
                    self._reject("outside_file_range", rec)
                    return None
            elif last_ts > 0 and ts - last_ts > self._gap_ns:
                st.time_jumps += 1
                if st.time_jumps <= settings.jump_confirm_prints:
                    self._reject("time_jump", rec)
                    return None
            if ts + self._tolerance_ns < last_ts:
                self._reject("out_of_order", rec)
                return None
            prev = None
            if seq:  # _is_repeat, written out
                prev = st.recent.get(seq)
                if prev is not None and (key in prev if type(prev) is list else prev == key):
                    self._reject("duplicate_sequence", rec)
                    return None
            last = st.last_price
            if last is not None and abs(ticks - last) > settings.max_jump_ticks:
                st.jump_rejects += 1
                if st.jump_rejects <= settings.jump_confirm_prints:
                    self._reject("price_jump", rec, last=last, price=ticks)
                    return None
            if ts > st.last_ts:
                st.last_ts = ts
            st.time_jumps = 0
            if seq:  # _remember, written out
                if prev is None:
                    recent = st.recent
                    recent[seq] = key
                    if len(recent) > 4096:
                        st.recent = {s: recent[s] for s in sorted(recent)[-2048:]}
                elif type(prev) is list:
                    prev.append(key)
                else:
                    st.recent[seq] = [prev, key]
            st.jump_rejects = 0
            st.last_price = ticks
            self.accepted += 1
            return new_trade(root, ts, rec.ts_recv, ticks, size, rec.side, rec.side_rule, seq, rec.symbol)
        except Exception as exc:  # as in _validate_general: a record must never take the loop down
            self._reject("malformed", rec, error=repr(exc))
            return None

    def _fast_book_or_general(self, rec: RawBook) -> MarketEvent | None:
        try:
            ent = self._fast_book.get(rec.symbol)
        except TypeError:
            ent = None
        ts = rec.ts_event
        seq = rec.sequence
        if ent is None or type(ts) is not int or type(seq) is not int or ts <= 0:
            return self._validate_general(rec)
        root, tick, st = ent
        bid = _plain_levels(rec.bid_px_fp, rec.bid_sz, tick)
        ask = _plain_levels(rec.ask_px_fp, rec.ask_sz, tick) if bid is not None else None
        if bid is None or ask is None:
            return self._validate_general(rec)
        bpx, bsz = bid
        apx, asz = ask
        bound = self._max_size.get(root) or self._size_bound(root)
        if (bsz and max(bsz) > bound) or (asz and max(asz) > bound):
            return self._validate_general(rec)
        try:
            if bpx and apx and bpx[0] >= apx[0]:
                self._reject("crossed_book", rec)
                return None
            settings = self.settings
            key = (ts, rec.bid_px_fp, rec.bid_sz, rec.ask_px_fp, rec.ask_sz) if seq else None
            # _time_rule, written out (the live path's per-record cost)
            if settings.check_staleness:
                now = self.clock.now_ns()
                if ts > now + self._future_ns:
                    self._reject("future", rec)
                    return None
                if ts < now - self._stale_ns:
                    self._reject("stale", rec)
                    return None
            elif self.wall_clock_future and ts > self._future_limit and self._beyond_clock(ts):
                self._reject("future", rec)
                return None
            last_ts = st.last_ts
            span = self._spans.get(rec.source) if self._spans else None
            if span is not None:
                if not span[0] <= ts <= span[1]:
                    self._reject("outside_file_range", rec)
                    return None
            elif last_ts > 0 and ts - last_ts > self._gap_ns:
                st.time_jumps += 1
                if st.time_jumps <= settings.jump_confirm_prints:
                    self._reject("time_jump", rec)
                    return None
            if ts + self._tolerance_ns < last_ts:
                self._reject("out_of_order", rec)
                return None
            prev = None
            if seq:  # _is_repeat, written out
                prev = st.recent.get(seq)
                if prev is not None and (key in prev if type(prev) is list else prev == key):
                    self._reject("duplicate_sequence", rec)
                    return None
            if ts > st.last_ts:
                st.last_ts = ts
            st.time_jumps = 0
            if seq:  # _remember, written out
                if prev is None:
                    recent = st.recent
                    recent[seq] = key
                    if len(recent) > 4096:
                        st.recent = {s: recent[s] for s in sorted(recent)[-2048:]}
                elif type(prev) is list:
                    prev.append(key)
                else:
                    st.recent[seq] = [prev, key]
            self.accepted += 1
            return new_book_update(root, ts, rec.ts_recv, bpx, bsz, apx, asz, seq, rec.symbol)
        except Exception as exc:
            self._reject("malformed", rec, error=repr(exc))
            return None

    def _size_bound(self, root: str) -> int:
        bound = self._max_size.get(root)
        if bound is None:
            spec = spec_for(root)
            bound = self._max_size[root] = self.settings.max_size or spec.large_order_size * PLAUSIBLE_SIZE_FACTOR
        return bound

    def _time_rule(self, rec: RawTrade | RawBook, ts: int, st: _StreamState) -> str | None:
        """The time rules after the timestamp's type: wall clock, declared span, stream order (not duplicates).

        Shared by both paths, so they cannot disagree. May count a suspected time jump on ``st`` (as the price
        rule counts suspected fat fingers); never moves the stream's clock.
        """
        settings = self.settings
        if settings.check_staleness:
            now = self.clock.now_ns()
            if ts > now + self._future_ns:
                return "future"
            if ts < now - self._stale_ns:
                return "stale"
        elif self.wall_clock_future and ts > self._future_limit and self._beyond_clock(ts):
            return "future"
        if self._spans:
            span = self._spans.get(rec.source)
            if span is not None and not span[0] <= ts <= span[1]:
                return "outside_file_range"
        else:
            span = None
        if span is None and st.last_ts > 0 and ts - st.last_ts > self._gap_ns:
            st.time_jumps += 1
            if st.time_jumps <= settings.jump_confirm_prints:
                return "time_jump"
        if ts + self._tolerance_ns < st.last_ts:
            return "out_of_order"
        return None

    # -- internals ---------------------------------------------------------------------------------

    def _spec(self, symbol: object) -> ContractSpec | None:
        if not isinstance(symbol, str):
            return None
        if symbol not in self._specs:
            root = root_of(symbol)
            ok = root is not None and (not self.allowed or root in self.allowed)
            self._specs[symbol] = spec_for(root) if ok and root else None
        return self._specs[symbol]

    def _reject(self, reason: str, rec: object, **extra: Any) -> None:
        self.rejects[reason] += 1
        n = self.rejects[reason]
        if self.log is not None and (n <= 5 or n % _LOG_EVERY == 0):
            self.log.warning("record rejected", reason=reason, count=n, record=safe_repr(rec), **extra)

    def _check_time(self, rec: RawTrade | RawBook, kind: str, key: str, content: object) -> str | None:
        ts = rec.ts_event
        if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
            return "malformed"
        st = self._streams.setdefault((kind, key), _StreamState())
        why = self._time_rule(rec, ts, st)
        if why:
            return why
        if rec.sequence and _is_repeat(st, rec.sequence, content):
            return "duplicate_sequence"
        return None

    def _commit_time(self, rec: RawTrade | RawBook, kind: str, key: str, content: object) -> _StreamState:
        st = self._streams[(kind, key)]
        st.last_ts = max(st.last_ts, rec.ts_event)
        st.time_jumps = 0
        if rec.sequence:
            _remember(st, rec.sequence, content)
        return st

    def _price(self, fp: object, spec: ContractSpec) -> tuple[int | None, str | None]:
        if fp is None or isinstance(fp, bool) or fp == UNDEF_PRICE:
            return None, "non_finite_price"
        if isinstance(fp, float):
            if not math.isfinite(fp):
                return None, "non_finite_price"
            return None, "malformed"
        if not isinstance(fp, int):
            return None, "malformed"
        if fp > UNDEF_PRICE:  # past int64: no feed can carry it, and no market trades there
            return None, "non_finite_price"
        if fp <= 0:
            return None, "non_positive_price"
        tick = self._tick_fp.get(spec.root)
        if tick is None:
            tick = self._tick_fp[spec.root] = spec.tick_fp
        ticks = fp_to_ticks(fp, tick)
        if ticks is None:
            return None, "off_tick_grid"
        return ticks, None

    def _trade(self, rec: RawTrade) -> Trade | None:
        spec = self._spec(rec.symbol)
        if spec is None:
            self._reject("unknown_instrument", rec)
            return None
        ticks, why = self._price(rec.price_fp, spec)
        if why:
            self._reject(why, rec)
            return None
        assert ticks is not None
        if not isinstance(rec.size, int) or isinstance(rec.size, bool) or rec.size <= 0:
            self._reject("non_positive_size", rec)
            return None
        if rec.size > self._size_bound(spec.root):
            self._reject("implausible_size", rec, size=_bounded_int(rec.size))
            return None
        content = (rec.ts_event, rec.price_fp, rec.size, rec.side)
        why = self._check_time(rec, "trade", rec.symbol, content)
        if why:
            self._reject(why, rec)
            return None
        st = self._streams[("trade", rec.symbol)]
        if st.last_price is not None and abs(ticks - st.last_price) > self.settings.max_jump_ticks:
            # A real gap repeats; a fat finger does not. Re-anchor after enough consistent prints.
            st.jump_rejects += 1
            if st.jump_rejects <= self.settings.jump_confirm_prints:
                self._reject("price_jump", rec, last=st.last_price, price=ticks)
                return None
        st = self._commit_time(rec, "trade", rec.symbol, content)
        st.jump_rejects = 0
        st.last_price = ticks
        self.accepted += 1
        if type(rec.symbol) is str:
            self._fast_trade[rec.symbol] = (spec.root, self._tick_fp[spec.root], st)
        return Trade(spec.root, rec.ts_event, rec.ts_recv, ticks, rec.size, rec.side, rec.side_rule,
                     rec.sequence, rec.symbol)

    def _levels(self, pxs: tuple[int | None, ...], szs: tuple[int, ...],
                spec: ContractSpec) -> tuple[tuple[int, ...], tuple[int, ...], str | None]:
        out_px: list[int] = []
        out_sz: list[int] = []
        bound = self._size_bound(spec.root)
        for fp, sz in zip(pxs, szs, strict=True):
            if fp is None or fp == UNDEF_PRICE or (isinstance(sz, int) and sz == 0):
                continue  # an empty level, not an error
            ticks, why = self._price(fp, spec)
            if why:
                return (), (), why
            if not isinstance(sz, int) or sz < 0:
                return (), (), "non_positive_size"
            if sz > bound:
                return (), (), "implausible_size"
            assert ticks is not None
            out_px.append(ticks)
            out_sz.append(sz)
        return tuple(out_px), tuple(out_sz), None

    def _book(self, rec: RawBook) -> BookUpdate | None:
        spec = self._spec(rec.symbol)
        if spec is None:
            self._reject("unknown_instrument", rec)
            return None
        bpx, bsz, why = self._levels(rec.bid_px_fp, rec.bid_sz, spec)
        if why:
            self._reject(why, rec)
            return None
        apx, asz, why = self._levels(rec.ask_px_fp, rec.ask_sz, spec)
        if why:
            self._reject(why, rec)
            return None
        if bpx and apx and bpx[0] >= apx[0]:
            self._reject("crossed_book", rec)
            return None
        content = (rec.ts_event, rec.bid_px_fp, rec.bid_sz, rec.ask_px_fp, rec.ask_sz)
        why = self._check_time(rec, "book", rec.symbol, content)
        if why:
            self._reject(why, rec)
            return None
        st = self._commit_time(rec, "book", rec.symbol, content)
        self.accepted += 1
        if type(rec.symbol) is str and spec.root in self._tick_fp:
            self._fast_book[rec.symbol] = (spec.root, self._tick_fp[spec.root], st)
        return BookUpdate(spec.root, rec.ts_event, rec.ts_recv, bpx, bsz, apx, asz, rec.sequence, rec.symbol)


def _plain_levels(pxs: object, szs: object, tick: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``Validator._levels`` for the plain case (tuples of exact ints, every price positive and on the grid,
    every size >= 0), ``None`` when the general rules must decide. Empty levels are dropped the same way."""
    if type(pxs) is not tuple or type(szs) is not tuple:
        return None
    n = len(pxs)
    if n != len(szs):
        return None
    if n == 1:  # MBP-1 / TBBO: the common live shape
        fp = pxs[0]
        sz = szs[0]
        if fp is None:
            return (), ()
        if type(fp) is not int or type(sz) is not int:
            return None
        if fp == UNDEF_PRICE or sz == 0:
            return (), ()
        if fp <= 0 or sz < 0 or fp > UNDEF_PRICE or fp % tick:
            return None
        return (fp // tick,), szs
    for fp, sz in zip(pxs, szs, strict=True):  # MBP-10: usually every level present and plain
        if type(fp) is not int or type(sz) is not int or fp <= 0 or sz <= 0 or fp >= UNDEF_PRICE or fp % tick:
            break
    else:
        return tuple([fp // tick for fp in pxs]), szs
    out_px: list[int] = []
    out_sz: list[int] = []
    for fp, sz in zip(pxs, szs, strict=True):
        if fp is None:
            continue
        if type(fp) is not int or type(sz) is not int:
            return None
        if fp == UNDEF_PRICE or sz == 0:
            continue
        if fp <= 0 or sz < 0 or fp > UNDEF_PRICE or fp % tick:
            return None
        out_px.append(fp // tick)
        out_sz.append(sz)
    return tuple(out_px), (szs if len(out_sz) == n else tuple(out_sz))


_MAX_REPR_DIGITS = 40


def _bounded_int(value: int) -> int | str:
    """An int for a log line, or a short description when printing it would mean converting a huge number."""
    if -(10**_MAX_REPR_DIGITS) < value < 10**_MAX_REPR_DIGITS:
        return value
    return f"<{value.bit_length()}-bit integer>"


def _short(value: object, depth: int = 0) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_bounded_int(value)) if type(value) is int else repr(value)
    if isinstance(value, tuple | list) and depth < 2:
        inner = ", ".join(_short(v, depth + 1) for v in value[:12]) + (", ..." if len(value) > 12 else "")
        return f"({inner}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inner}]"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def safe_repr(rec: object, limit: int = 300) -> str:
    """``repr`` for a log line that never converts a huge number (Python refuses ints past 4,300 digits, and a
    million-digit one takes seconds to print) and never raises; a record reads as its dataclass repr."""
    try:
        fields = getattr(type(rec), "__dataclass_fields__", None)
        if fields:
            inner = ", ".join(f"{f}={_short(getattr(rec, f, None))}" for f in fields)
            return f"{type(rec).__name__}({inner})"[:limit]
        return _short(rec)[:limit]
    except Exception as exc:  # a log line must never be what raises
        return f"<{type(rec).__name__}, unrepresentable: {type(exc).__name__}>"
