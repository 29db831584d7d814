"""The live path's fast paths decide exactly as the general code they shortcut.

The validator's fast paths are checked record by record against ``Validator._validate_general`` (the general
rules, which the rest of test_validation.py pins down) on mostly-plausible streams with every kind of defect
mixed in; the fast constructors against the dataclasses' own ``__init__``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.clock import ManualClock
from tradebot.core.config import ValidationSettings
from tradebot.core.prices import PRICE_SCALE, UNDEF_PRICE
from tradebot.core.types import (
    BookUpdate,
    RawBook,
    RawStatus,
    RawTrade,
    Side,
    SideRule,
    Trade,
    new_book_update,
    new_trade,
)
from tradebot.feeds.validation import Validator

T0 = 1_700_000_000 * 10**9
ES_TICK = PRICE_SCALE // 4


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))


def test_fast_constructors_build_the_same_frozen_objects() -> None:
    t = new_trade("ES", 1, 2, 18000, 3, Side.SELL, SideRule.QUOTE, 7, "ESH4")
    ref = Trade("ES", 1, 2, 18000, 3, Side.SELL, SideRule.QUOTE, 7, "ESH4")
    assert type(t) is Trade and t == ref and hash(t) == hash(ref) and repr(t) == repr(ref)
    b = new_book_update("ES", 1, 2, (10, 9), (1, 2), (11,), (3,), 4, "ESH4")
    bref = BookUpdate("ES", 1, 2, (10, 9), (1, 2), (11,), (3,), 4, "ESH4")
    assert type(b) is BookUpdate and b == bref and b.depth == 2
    for obj in (t, b):
        try:
            obj.symbol = "NQ"  # type: ignore[misc]
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError("a fast-built event must stay frozen")
    # Every field is a parameter, in declaration order: adding a field to the dataclass fails here first.
    for cls, fn in ((Trade, new_trade), (BookUpdate, new_book_update)):
        assert [f.name for f in dataclasses.fields(cls)] == list(inspect.signature(fn).parameters)


# --- validator: fast path == general path --------------------------------------------------------------------

_weird = st.sampled_from([None, True, False, 0, -1, 1.5, float("nan"), "x", UNDEF_PRICE, ES_TICK + 1, 2**70])


@st.composite
def _streams(draw: st.DrawFn) -> list[Any]:
    """Mostly valid ES records (so the fast paths engage), with every kind of defect sprinkled in."""
    n = draw(st.integers(1, 60))
    ts = T0
    seq = 0
    price = 18000
    out: list[Any] = []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 1, 1000, 10**9, -1, -(10**7)]))
        seq += draw(st.sampled_from([1, 1, 1, 0, -1, -5]))
        price += draw(st.sampled_from([0, 1, -1, 2, 500, -500]))
        sym = draw(st.sampled_from(["ESH4", "ESH4", "ESH4", "ESM4", "NQH4", "XX", ""]))
        kind = draw(st.sampled_from(["trade", "trade", "book", "book", "status", "defect"]))
        if kind == "trade":
            fp: Any = price * ES_TICK
            size: Any = draw(st.sampled_from([1, 2, 5, 0, -1]))
            ts_v: Any = ts
            seq_v: Any = seq
            if draw(st.booleans()) and draw(st.booleans()):
                which = draw(st.sampled_from(["fp", "size", "ts", "seq"]))
                bad = draw(_weird)
                fp, size, ts_v, seq_v = (bad if which == "fp" else fp, bad if which == "size" else size,
                                         bad if which == "ts" else ts_v, bad if which == "seq" else seq_v)
            out.append(RawTrade(sym, ts_v, ts_v, fp, size, draw(st.sampled_from(list(Side))), SideRule.EXCHANGE,
                                seq_v))
        elif kind == "book":
            depth = draw(st.sampled_from([1, 1, 2, 10, 0]))
            spread = draw(st.sampled_from([1, 1, 2, 0, -1]))
            bpx: list[Any] = [(price - i) * ES_TICK for i in range(depth)]
            apx: list[Any] = [(price + spread + i) * ES_TICK for i in range(depth)]
            bsz: list[Any] = [draw(st.sampled_from([1, 7, 0])) for _ in range(depth)]
            asz: list[Any] = [draw(st.sampled_from([1, 7, 0])) for _ in range(depth)]
            if depth and draw(st.booleans()):
                side = draw(st.sampled_from([bpx, apx, bsz, asz]))
                side[draw(st.integers(0, depth - 1))] = draw(_weird)
            if depth and draw(st.integers(0, 9)) == 0:
                bsz.pop()  # unequal lengths
            out.append(RawBook(sym, ts, ts, tuple(bpx), tuple(bsz), tuple(apx), tuple(asz), seq))
        elif kind == "status":
            out.append(RawStatus(sym, ts, draw(st.booleans())))
        else:
            out.append(draw(st.sampled_from([None, 3, "junk", RawTrade(["ES"], ts, ts, ES_TICK, 1),  # type: ignore[arg-type]
                                             RawBook("ESH4", ts, ts, [ES_TICK], [1], (), ())])))  # type: ignore[arg-type]
    return out


@settings(max_examples=300, deadline=None)
@given(records=_streams(), staleness=st.booleans(), jump=st.sampled_from([400, 3]))
def test_fast_paths_decide_every_record_as_the_general_rules(records: list[Any], staleness: bool,
                                                              jump: int) -> None:
    vs = ValidationSettings(check_staleness=staleness, stale_seconds=5, future_seconds=2, max_jump_ticks=jump,
                            jump_confirm_prints=2, out_of_order_ms=0.005)
    clock_a, clock_b = ManualClock(T0 + 3 * 10**9), ManualClock(T0 + 3 * 10**9)
    log_a, log_b = _Log(), _Log()
    fast = Validator(vs, ["ES"], clock=clock_a, logger=log_a)
    ref = Validator(vs, ["ES"], clock=clock_b, logger=log_b)
    for rec in records:
        got = fast.validate(rec)
        want = ref._validate_general(rec)
        if type(want) is Trade:  # side inference runs after either path, on the accepted events alike
            want = ref.sides.trade(want)
        elif type(want) is BookUpdate:
            ref.sides.book(want)
        assert got == want and type(got) is type(want), rec
        clock_a.advance(10**8)
        clock_b.advance(10**8)
    assert fast.rejects == ref.rejects and fast.accepted == ref.accepted
    assert log_a.lines == log_b.lines


def test_the_fast_path_is_taken_for_plain_records() -> None:
    v = Validator()
    for i in range(3):
        v.validate(RawTrade("ESH4", T0 + i, T0 + i, 18000 * ES_TICK, 1, Side.BUY, SideRule.EXCHANGE, i + 1))
        v.validate(RawBook("ESH4", T0 + i, T0 + i, (17999 * ES_TICK,), (3,), (18000 * ES_TICK,), (4,), 10 + i))
    assert set(v._fast_trade) == {"ESH4"} and set(v._fast_book) == {"ESH4"}
    assert v.accepted == 6


# --- microstructure windows: O(1) sums == the sums over the ring ---------------------------------------------


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(-3, 40), st.integers(-5, 9)), min_size=1, max_size=120),
       span=st.integers(2, 30), queries=st.lists(st.tuples(st.integers(-5, 60), st.integers(1, 40)), max_size=8))
def test_window_sums_equal_the_walk_over_the_buckets(steps: list[tuple[int, int]], span: int,
                                                      queries: list[tuple[int, int]]) -> None:
    from tradebot.orderflow.microstructure import _Buckets

    bucket = 10
    b = _Buckets(bucket, span, 3)
    ts = 1000
    for dt_, v in steps:
        ts += dt_  # mostly forward, sometimes a late event (joins the newest bucket)
        cur = b.ring[-1] if ts < b.end_ns else b.current(ts)
        assert cur is b.current(ts)
        cur[1] += v
        cur[2] += 2 * v
        cur[3] += 1
        for ahead, window in [*queries, (0, 10**6)]:
            now = ts + ahead
            now_idx = now // bucket
            first = now_idx - -(-window // bucket)
            want = [0, 0, 0]
            for bk in b.ring:
                if first < bk[0] <= now_idx:
                    for k in range(3):
                        want[k] += bk[k + 1]
            assert b.sums(now, window) == want


# --- session profile: the written-out per-trade update == VolumeProfile.add ----------------------------------


@settings(max_examples=100, deadline=None)
@given(prints=st.lists(st.tuples(st.integers(0, 23 * 3600), st.integers(17990, 18010), st.integers(1, 50),
                                 st.sampled_from(list(Side))), min_size=1, max_size=80))
def test_session_profile_fast_update_matches_the_general_one(prints: list[tuple[int, int, int, Side]]) -> None:
    from tradebot.core.calendar import calendar_for
    from tradebot.core.contracts import spec_for
    from tradebot.orderflow.profile import NakedPoc, SessionProfiles

    spec = spec_for("ES")
    cal = calendar_for(spec.session)
    session = next(s for s in cal.sessions if s.trading_date.isoformat() == "2025-03-11")
    fast, ref = SessionProfiles(spec, calendar=cal), SessionProfiles(spec, calendar=cal)
    for p in (fast, ref):  # naked POCs of "earlier sessions" for the range checks
        p._naked = [NakedPoc(session.trading_date, px) for px in (17985, 17995, 18000, 18012)]
    for sec, price, size, side in sorted(prints):
        t = Trade("ES", session.open_ns + sec * 10**9, 0, price, size, side, SideRule.EXCHANGE)
        fast.on_trade(t)
        ts = t.ts_event
        if not ref._lo_ns <= ts < ref._hi_ns and not ref._roll(ts):
            ref.stats["late_trade"] += 1
            continue
        ref._add_general(t, ts, t.price)
    for a, b in ((fast.developing, ref.developing), (fast.rth, ref.rth)):
        assert (a._vol, a._buy, a._sell, a.total, a.buy_volume, a.sell_volume, a.low, a.high) == (
            b._vol, b._buy, b._sell, b.total, b.buy_volume, b.sell_volume, b.low, b.high)
        assert a.snapshot() == b.snapshot()
    assert fast.naked_pocs() == ref.naked_pocs() and fast.stats == ref.stats


# --- profile nodes: the stack-based prominence == the step-by-step walk it replaced -------------------------


def _smooth_ref(dense: list[int], k: int) -> list[int]:
    if k <= 0:
        return list(dense)
    n = len(dense)
    prefix = [0]
    for v in dense:
        prefix.append(prefix[-1] + v)
    return [prefix[min(n, i + k + 1)] - prefix[max(0, i - k)] for i in range(n)]


def _extrema_ref(values: list[int], sign: int) -> list[tuple[int, int]]:
    """The definition, walked step by step (the implementation before the stack-based one)."""
    v = [sign * x for x in values]
    n = len(v)
    out: list[tuple[int, int]] = []
    i = 1
    while i < n - 1:
        if v[i] > v[i - 1]:
            j = i
            while j + 1 < n and v[j + 1] == v[i]:
                j += 1
            if j + 1 < n and v[j + 1] < v[i]:
                h = v[i]
                left_min = h
                a = i - 1
                while a >= 0 and v[a] <= h:
                    left_min = min(left_min, v[a])
                    a -= 1
                right_min = h
                b = j + 1
                while b < n and v[b] <= h:
                    right_min = min(right_min, v[b])
                    b += 1
                out.append(((i + j) // 2, h - max(left_min, right_min)))
            i = j + 1
        else:
            i += 1
    return out


@settings(max_examples=1500, deadline=None)
@given(data=st.one_of(st.lists(st.integers(0, 3), max_size=40), st.lists(st.integers(0, 10**6), max_size=60),
                      st.lists(st.sampled_from([0, 0, 1, 2, 5, 100]), max_size=40)),
       k=st.integers(0, 4))
def test_profile_nodes_match_the_step_by_step_definition(data: list[int], k: int) -> None:
    from tradebot.orderflow.profile import _extrema, _smooth

    assert _smooth(data, k) == _smooth_ref(data, k)
    sm = _smooth_ref(data, k)
    for sign in (1, -1):
        assert _extrema(sm, sign) == _extrema_ref(sm, sign)
        assert _extrema(data, sign) == _extrema_ref(data, sign)


def test_fast_level_is_a_level() -> None:
    from tradebot.orderflow.footprint import Level, _level

    lv = _level(18000, 3, 4, 1, 5)
    assert type(lv) is Level and lv == Level(18000, 3, 4, 1, 5) and lv.volume == 8 and lv.delta == 1
    assert _level(17999, 0, 0, 0, 0) == Level(17999)
    assert [f.name for f in dataclasses.fields(Level)] == list(inspect.signature(_level).parameters)


# --- microstructure: the written-out OFI == the definition (ofi_at per level) -------------------------------

_levels = st.integers(0, 10).flatmap(lambda n: st.tuples(
    st.lists(st.integers(17990, 18010), min_size=n, max_size=n), st.lists(st.integers(0, 50), min_size=n, max_size=n)))


@settings(max_examples=200, deadline=None)
@given(books=st.lists(st.tuples(_levels, _levels), min_size=2, max_size=12), ofi_levels_n=st.integers(1, 10))
def test_ofi_per_book_update_matches_the_definition(books: list[Any], ofi_levels_n: int) -> None:
    from tradebot.core.config import MicrostructureSettings
    from tradebot.core.contracts import spec_for
    from tradebot.orderflow.microstructure import MicrostructureTracker, ofi_at, ofi_levels

    tracker = MicrostructureTracker(spec_for("ES"), MicrostructureSettings(ofi_levels=ofi_levels_n))
    prev = None
    for k, ((bpx, bsz), (apx, asz)) in enumerate(books):
        cur = BookUpdate("ES", T0 + k * 10**6, T0, tuple(sorted(bpx, reverse=True)), tuple(bsz), tuple(sorted(apx)),
                         tuple(asz))
        tracker.on_book(cur)
        if prev is not None:
            assert tracker._last_ofi == ofi_at(prev, cur, 0)
            assert tracker._last_ofi_multi == sum(ofi_levels(prev, cur, ofi_levels_n))
        prev = cur
