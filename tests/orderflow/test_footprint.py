"""Footprint bars and cumulative delta: the reference vector, session alignment across DST, the 17:00 CT and
RTH resets, volume bars, bad input, a real ES minute against Sierra's own export, and properties over random
trade streams checked against a naive re-implementation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path

import databento as db
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebot.core.calendar import CT, NS, UTC, calendar_for, local_ns, to_ns
from tradebot.core.config import FootprintSettings
from tradebot.core.contracts import spec_for
from tradebot.core.types import RawTrade, Side, SideRule, Trade
from tradebot.feeds.dbn_convert import DbnConverter, SymbolMap, iter_store
from tradebot.feeds.validation import Validator
from tradebot.orderflow.footprint import FootprintBar, FootprintBuilder, Level, build_bars, make_bar, poc_of

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SIERRA_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SIERRA_TXT = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"

ES = spec_for("ES")
CAL = calendar_for("equity")
BUY, SELL, UNK = Side.BUY, Side.SELL, Side.UNKNOWN


def tr(ts: int, price: int | str, size: int, side: Side, symbol: str = "ES") -> Trade:
    p = ES.to_ticks(price) if isinstance(price, str) else price
    return Trade(symbol, ts, ts, p, size, side, SideRule.EXCHANGE)


def ct(y: int, m: int, d: int, hh: int, mm: int = 0, ss: int = 0) -> int:
    return local_ns(dt.date(y, m, d), dt.time(hh, mm, ss), CT)


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return to_ns(dt.datetime(y, m, d, hh, mm, tzinfo=UTC))


# --- the reference vector ---------------------------------------------------------------------------

REFERENCE = [("100.00", 10, 5), ("100.25", 12, 40), ("100.50", 8, 45), ("100.75", 5, 30), ("101.00", 3, 2)]


def reference_trades(t0: int) -> list[Trade]:
    out = []
    ts = t0
    for price, bid, ask in REFERENCE:
        out.append(tr(ts, price, bid, SELL))
        out.append(tr(ts + 1, price, ask, BUY))
        ts += NS
    return out


def test_reference_vector_through_the_builder() -> None:
    t0 = ct(2025, 3, 11, 10, 0, 1)
    bars = build_bars(reference_trades(t0), ES)
    assert len(bars) == 1
    bar = bars[0]
    t = ES.to_ticks
    assert (bar.low, bar.high, bar.open, bar.close) == (t("100.00"), t("101.00"), t("100.00"), t("101.00"))
    assert [(ES.fmt(lv.price), lv.bid, lv.ask) for lv in bar.levels] == [(p, b, a) for p, b, a in REFERENCE]
    assert bar.delta == 84 and bar.ask_volume == 122 and bar.bid_volume == 38 and bar.volume == 160
    assert ES.fmt(bar.poc) == "100.50"
    assert bar.trades == 10 and all(lv.trades == 2 for lv in bar.levels)
    # running delta: -10, -5, -17, 23, 15, 60, 55, 85, 82, 84
    assert (bar.max_delta, bar.min_delta) == (85, -17)
    assert [lv.delta for lv in bar.levels] == [-5, 28, 37, 25, -1]
    assert bar.start_ns == ct(2025, 3, 11, 10, 0) and bar.end_ns == ct(2025, 3, 11, 10, 5)
    assert bar.trading_date == dt.date(2025, 3, 11)
    assert bar.cum_delta == 84 and bar.rth_cum_delta == 84


def test_make_bar_matches_the_builder_on_the_reference_vector() -> None:
    t = ES.to_ticks
    made = make_bar("ES", {t(p): (b, a) for p, b, a in REFERENCE}, open=t("100.00"), close=t("101.00"))
    built = build_bars(reference_trades(ct(2025, 3, 11, 10, 0, 1)), ES)[0]
    assert made.levels == built.levels and made.poc == built.poc and made.delta == built.delta == 84


def test_missing_levels_inside_the_range_are_zero_levels() -> None:
    t0 = ct(2025, 3, 11, 10, 0, 1)
    bar = build_bars([tr(t0, "100.00", 5, BUY), tr(t0 + 1, "101.00", 7, SELL)], ES)[0]
    assert [lv.price for lv in bar.levels] == list(range(bar.low, bar.high + 1))
    assert [lv.volume for lv in bar.levels] == [5, 0, 0, 0, 7]
    assert bar.level(ES.to_ticks("100.50")) == Level(ES.to_ticks("100.50"))
    assert bar.bid(bar.high + 1) == 0 and bar.ask(bar.low - 1) == 0 and bar.volume_at(bar.low) == 5


@pytest.mark.parametrize(("vols", "expected"), [
    ([5, 9, 9, 1], 1),  # tie at 1 and 2 around mid 1.5: equal distance -> the lower price
    ([9, 1, 1, 9, 1], 3),  # mid 2: tie 0 vs 3 -> 3 is nearer
    ([1, 9, 1, 1, 9], 1),  # mid 2: tie 1 vs 4 -> 1 is nearer
    ([7], 0),
    ([1, 2, 3], 2),
])
def test_poc_tie_rule(vols: list[int], expected: int) -> None:
    levels = tuple(Level(100 + i, bid=v) for i, v in enumerate(vols))
    assert poc_of(levels, 100, 100 + len(vols) - 1) == 100 + expected


# --- session alignment, DST, session boundaries -----------------------------------------------------

@pytest.mark.parametrize(("day", "open_utc"), [
    (dt.date(2025, 3, 7), utc(2025, 3, 6, 23)),  # before the US switch: 17:00 CST = 23:00 UTC
    (dt.date(2025, 3, 10), utc(2025, 3, 9, 22)),  # first session after it: 17:00 CDT = 22:00 UTC
    (dt.date(2025, 3, 11), utc(2025, 3, 10, 22)),
    (dt.date(2025, 10, 31), utc(2025, 10, 30, 22)),  # before the switch back: CDT
    (dt.date(2025, 11, 3), utc(2025, 11, 2, 23)),  # after it: 17:00 CST
])
def test_first_bar_starts_at_the_1700_ct_session_open(day: dt.date, open_utc: int) -> None:
    trades = [tr(open_utc + NS // 2, 4000, 1, BUY), tr(open_utc + 301 * NS, 4001, 2, SELL),
              tr(open_utc + 15 * 3600 * NS + 30 * 60 * NS + 5 * NS, 4002, 3, BUY)]  # 08:30:05 CT
    bars = build_bars(trades, ES)
    assert [b.start_ns for b in bars] == [open_utc, open_utc + 300 * NS, open_utc + 15 * 3600 * NS + 1800 * NS]
    assert [b.index for b in bars] == [0, 1, 186]
    assert all(b.trading_date == day and b.end_ns - b.start_ns == 300 * NS for b in bars)
    assert dt.datetime.fromtimestamp(bars[2].start_ns / NS, CT).time() == dt.time(8, 30)


def test_bar_never_spans_a_session_boundary_and_the_last_bar_is_short() -> None:
    s = FootprintSettings(bar_seconds=7 * 60)  # 23 h is not a multiple of 7 min
    b = FootprintBuilder(ES, s)
    assert b.on_trade(tr(ct(2025, 3, 11, 15, 59, 30), 4000, 1, BUY)) is None
    closed = b.on_trade(tr(ct(2025, 3, 11, 17, 0, 10), 4001, 1, SELL))
    assert closed is not None
    assert closed.end_ns == ct(2025, 3, 11, 16, 0) and closed.trading_date == dt.date(2025, 3, 11)
    assert closed.end_ns - closed.start_ns < 7 * 60 * NS
    nxt = b.flush()
    assert nxt is not None and nxt.start_ns == ct(2025, 3, 11, 17, 0) and nxt.trading_date == dt.date(2025, 3, 12)


def test_early_close_clips_the_last_bar() -> None:
    day = CAL.session_on(dt.date(2025, 11, 28))  # day after Thanksgiving: the calendar's early close
    assert day is not None and day.early_close
    bar_ns = 600 * NS
    assert (day.close_ns - day.open_ns) % bar_ns != 0  # so the last slot is cut short
    bars = build_bars([tr(day.close_ns - 30 * NS, 4000, 1, BUY)], ES, FootprintSettings(bar_seconds=600))
    assert bars[0].end_ns == day.close_ns and 0 < bars[0].end_ns - bars[0].start_ns < bar_ns
    assert (bars[0].start_ns - day.open_ns) % bar_ns == 0


def test_trades_outside_every_session_are_dropped_and_counted() -> None:
    b = FootprintBuilder(ES)
    assert b.on_trade(tr(ct(2025, 3, 11, 15, 58), 4000, 2, BUY)) is None
    closed = b.on_trade(tr(ct(2025, 3, 11, 16, 30), 4000, 5, BUY))  # daily break: closes the open bar
    assert closed is not None and closed.volume == 2
    assert b.on_trade(tr(ct(2025, 12, 25, 10, 0), 4000, 5, SELL)) is None  # Christmas
    assert b.stats["outside_session"] == 2 and not b.has_open_bar and b.flush() is None


def test_time_bar_closes_on_the_first_trade_at_or_after_its_end() -> None:
    b = FootprintBuilder(ES)
    t0 = ct(2025, 3, 11, 10, 0)
    assert b.on_trade(tr(t0, 4000, 1, BUY)) is None
    assert b.on_trade(tr(t0 + 300 * NS - 1, 4001, 1, BUY)) is None  # last ns of the bar
    closed = b.on_trade(tr(t0 + 300 * NS, 4002, 1, BUY))
    assert closed is not None and closed.volume == 2 and closed.close == 4001
    assert b.close_until(t0 + 600 * NS - 1) is None
    timer = b.close_until(t0 + 600 * NS)
    assert timer is not None and timer.volume == 1 and timer.start_ns == t0 + 300 * NS
    assert b.close_until(t0 + 900 * NS) is None and b.flush() is None
    # an empty slot emits no bar: the next trade two bars later opens its own slot
    b.on_trade(tr(t0 + 1500 * NS, 4003, 1, SELL))
    last = b.flush()
    assert last is not None and last.index == (t0 + 1500 * NS - ct(2025, 3, 10, 17, 0)) // (300 * NS)


# --- cumulative delta ---------------------------------------------------------------------------------

def test_cumulative_delta_resets_at_the_1700_ct_boundary() -> None:
    b = FootprintBuilder(ES)
    bars = b.on_trades([
        tr(ct(2025, 3, 11, 15, 0), 4000, 10, BUY),
        tr(ct(2025, 3, 11, 15, 55), 4000, 3, SELL),
        tr(ct(2025, 3, 11, 15, 59, 59), 4000, 4, UNK),  # volume, no delta
    ])
    assert b.cum_delta == 7
    bars += b.on_trades([tr(ct(2025, 3, 11, 17, 0), 4001, 4, BUY)])
    assert b.cum_delta == 4 and b.session is not None and b.session.trading_date == dt.date(2025, 3, 12)
    last = b.flush()
    assert last is not None
    bars.append(last)
    assert [x.cum_delta for x in bars] == [10, 7, 4]
    assert [x.trading_date.day for x in bars] == [11, 11, 12]
    assert bars[1].volume == 7 and bars[1].unknown_volume == 4 and bars[1].delta == -3


def test_rth_cumulative_delta_counts_only_rth_and_resets_each_session() -> None:
    b = FootprintBuilder(ES)
    trades = [
        tr(ct(2025, 3, 11, 7, 0), 4000, 5, BUY),  # ETH
        tr(ct(2025, 3, 11, 8, 29, 59), 4000, 2, SELL),  # ETH
        tr(ct(2025, 3, 11, 8, 30), 4000, 3, BUY),  # the RTH open is inclusive, both sides
        tr(ct(2025, 3, 11, 8, 30), 4000, 1, SELL),
        tr(ct(2025, 3, 11, 10, 0), 4000, 1, SELL),
        tr(ct(2025, 3, 11, 14, 59, 59), 4000, 2, BUY),
        tr(ct(2025, 3, 11, 15, 0), 4000, 7, SELL),  # the RTH close is exclusive, both sides
        tr(ct(2025, 3, 11, 15, 0), 4000, 4, BUY),
        tr(ct(2025, 3, 11, 15, 30), 4000, 2, BUY),
    ]
    bars = b.on_trades(trades)
    assert (b.cum_delta, b.rth_cum_delta) == (5, 3)
    assert [(x.cum_delta, x.rth_cum_delta) for x in bars] == [(5, 0), (3, 0), (5, 2), (4, 1), (6, 3), (3, 3)]
    b.on_trades([tr(ct(2025, 3, 11, 18, 0), 4000, 1, BUY)])
    assert (b.cum_delta, b.rth_cum_delta) == (1, 0)


def test_rth_ends_at_an_early_close() -> None:
    day = CAL.session_on(dt.date(2025, 11, 28))
    assert day is not None and day.rth_close_ns == day.close_ns < ct(2025, 11, 28, 15, 0)
    b = FootprintBuilder(ES)
    b.on_trades([tr(day.close_ns - 60 * NS, 4000, 3, BUY), tr(day.close_ns, 4000, 3, BUY)])
    assert b.stats["outside_session"] == 1 and b.rth_cum_delta == 3 and b.cum_delta == 3


# --- volume bars ----------------------------------------------------------------------------------------

def test_volume_bars_close_when_full_and_at_session_end() -> None:
    s = FootprintSettings(bar_type="volume", bar_volume=10)
    b = FootprintBuilder(ES, s)
    t0 = ct(2025, 3, 11, 10, 0)
    assert b.on_trade(tr(t0, 4000, 4, BUY)) is None
    assert b.on_trade(tr(t0 + 1, 4001, 4, SELL)) is None
    assert b.on_trade(tr(t0 + 2, 4002, 4, BUY)) is None  # 12 >= 10: full, the trade is kept whole
    full = b.close_until(t0 + 3)
    assert full is not None and full.volume == 12 and (full.start_ns, full.end_ns) == (t0, t0 + 3)
    assert b.on_trade(tr(t0 + 5, 4000, 10, BUY)) is None
    first = b.on_trade(tr(t0 + 6, 4000, 1, BUY))  # finds the bar full: closes it
    assert first is not None and first.volume == 10 and first.index == 1
    partial = b.on_trade(tr(ct(2025, 3, 11, 17, 0), 4000, 1, BUY))  # new session closes the short bar
    assert partial is not None and partial.volume == 1 and partial.trading_date == dt.date(2025, 3, 11)
    nxt = b.flush()
    assert nxt is not None and nxt.index == 0 and nxt.trading_date == dt.date(2025, 3, 12)


# --- bad input --------------------------------------------------------------------------------------------

def test_late_and_foreign_trades_are_counted_never_raised() -> None:
    b = FootprintBuilder(ES)
    t0 = ct(2025, 3, 11, 10, 5)
    b.on_trade(tr(t0, 4000, 1, BUY))
    assert b.on_trade(tr(t0 - 10 * NS, 4000, 2, BUY)) is None  # tolerated backward step into the open bar
    assert b.on_trade(tr(t0, 4000, 9, BUY, symbol="NQ")) is None
    bar = b.flush()
    assert bar is not None and bar.volume == 3
    assert b.stats["late_trade"] == 1 and b.stats["wrong_symbol"] == 1
    b.on_trade(tr(ct(2025, 3, 12, 10, 0), 4000, 1, BUY))
    b.flush()
    b.on_trade(tr(ct(2025, 3, 11, 10, 0), 4000, 1, BUY))  # a print from a session already closed
    assert b.stats["late_trade_dropped"] == 1 and not b.has_open_bar


def test_closed_bars_are_immutable() -> None:
    bar = build_bars(reference_trades(ct(2025, 3, 11, 10, 0, 1)), ES)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bar.delta = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bar.levels[0].bid = 1  # type: ignore[misc]
    assert isinstance(bar.levels, tuple)


def test_snapshot_does_not_disturb_the_developing_bar() -> None:
    b = FootprintBuilder(ES)
    t0 = ct(2025, 3, 11, 10, 0)
    b.on_trade(tr(t0, 4000, 2, BUY))
    snap = b.snapshot()
    b.on_trade(tr(t0 + 1, 4000, 3, SELL))
    assert snap is not None and snap.volume == 2
    final = b.flush()
    assert final is not None and final.volume == 5 and final.delta == -1


# --- real data -----------------------------------------------------------------------------------------

def test_real_es_minute_matches_sierra_per_price_bid_ask() -> None:
    """2,025 real ES prints through the project's DBN converter and validator, against Sierra's own file."""
    store = db.DBNStore.from_file(SIERRA_TBBO)
    validator = Validator(symbols=["ES"])
    trades = []
    for rec in iter_store(store, DbnConverter(SymbolMap.from_store(store))):
        if isinstance(rec, RawTrade):
            ev = validator.validate(rec)
            assert isinstance(ev, Trade)
            trades.append(ev)
    bars = build_bars(trades, ES, FootprintSettings(bar_seconds=60))
    want: dict[int, Counter[str]] = defaultdict(Counter)
    rows = [line.split(";") for line in SIERRA_TXT.read_text().splitlines()[1:] if line.strip()]
    for f in rows:
        want[ES.to_ticks(f[4])]["ask" if f[6] == "2" else "bid"] += int(f[5])
    got: dict[int, Counter[str]] = defaultdict(Counter)
    for bar in bars:
        for lv in bar.levels:
            got[lv.price]["ask"] += lv.ask
            got[lv.price]["bid"] += lv.bid
    assert {p: c for p, c in got.items() if +c} == want
    assert bars[0].start_ns == ct(2022, 1, 24, 13, 30) and bars[0].trading_date == dt.date(2022, 1, 24)
    assert sum(b.trades for b in bars) == len(trades) == len(rows) > 2000
    total_delta = sum(c["ask"] - c["bid"] for c in want.values())
    assert bars[-1].cum_delta == sum(b.delta for b in bars) == total_delta


# --- properties ------------------------------------------------------------------------------------------

SESSION = CAL.session_on(dt.date(2025, 3, 11))
assert SESSION is not None
NEXT = CAL.session_on(dt.date(2025, 3, 12))
assert NEXT is not None

trade_streams = st.lists(
    st.tuples(st.integers(SESSION.close_ns - 3 * 3600 * NS, NEXT.open_ns + 2 * 3600 * NS),  # spans the break
              st.integers(-4, 4), st.integers(1, 30), st.sampled_from([BUY, SELL, UNK])),
    min_size=1, max_size=300,
)


def naive_bars(trades: list[Trade], bar_ns: int) -> dict[tuple[int, int], dict[int, list[int]]]:
    """(session open, slot) -> price -> [bid, ask, unknown], straight from the definitions."""
    out: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for t in trades:
        s = CAL.session_at(t.ts_event)
        if s is None:
            continue
        acc = out[(s.open_ns, (t.ts_event - s.open_ns) // bar_ns)][t.price]
        acc[{SELL: 0, BUY: 1, UNK: 2}[t.side]] += t.size
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=trade_streams, bar_seconds=st.sampled_from([1, 60, 300, 420, 3600]))
def test_random_streams_match_the_definitions(raw: list[tuple[int, int, int, Side]], bar_seconds: int) -> None:
    trades = [tr(ts, 4000 + dp, size, side) for ts, dp, size, side in sorted(raw, key=lambda r: r[0])]
    bars = build_bars(trades, ES, FootprintSettings(bar_seconds=bar_seconds))
    inside = [t for t in trades if CAL.session_at(t.ts_event) is not None]
    side_vol = Counter[Side]()
    for t in inside:
        side_vol[t.side] += t.size
    assert sum(b.ask_volume for b in bars) == side_vol[BUY]
    assert sum(b.bid_volume for b in bars) == side_vol[SELL]
    assert sum(b.unknown_volume for b in bars) == side_vol[UNK]
    assert sum(b.delta for b in bars) == side_vol[BUY] - side_vol[SELL]
    expected = naive_bars(inside, bar_seconds * NS)
    assert len(bars) == len(expected)
    running: dict[dt.date, int] = defaultdict(int)
    for bar in bars:
        assert isinstance(bar, FootprintBar)
        sess = CAL.session_on(bar.trading_date)
        assert sess is not None and sess.open_ns <= bar.start_ns < bar.end_ns <= sess.close_ns
        assert bar.start_ns <= bar.first_ts <= bar.last_ts < bar.end_ns
        want = expected[(sess.open_ns, bar.index)]
        assert {lv.price: [lv.bid, lv.ask, lv.unknown] for lv in bar.levels if lv.volume} == \
            {p: v for p, v in want.items()}
        assert [lv.price for lv in bar.levels] == list(range(bar.low, bar.high + 1))
        assert bar.low == min(want) and bar.high == max(want)
        assert bar.volume == bar.ask_volume + bar.bid_volume + bar.unknown_volume == sum(
            lv.volume for lv in bar.levels)
        assert bar.delta == bar.ask_volume - bar.bid_volume == sum(lv.delta for lv in bar.levels)
        assert bar.min_delta <= bar.delta <= bar.max_delta
        top = max(lv.volume for lv in bar.levels)
        assert bar.volume_at(bar.poc) == top
        tied = [lv.price for lv in bar.levels if lv.volume == top]
        best = min(tied, key=lambda p: (abs(2 * p - bar.low - bar.high), p))
        assert bar.poc == best
        running[bar.trading_date] += bar.delta
        assert bar.cum_delta == running[bar.trading_date]
        with pytest.raises(dataclasses.FrozenInstanceError):
            bar.volume = 0  # type: ignore[misc]


@settings(max_examples=100, deadline=None)
@given(raw=trade_streams, cap=st.integers(1, 80))
def test_random_streams_volume_bars(raw: list[tuple[int, int, int, Side]], cap: int) -> None:
    trades = [tr(ts, 4000 + dp, size, side) for ts, dp, size, side in sorted(raw, key=lambda r: r[0])]
    bars = build_bars(trades, ES, FootprintSettings(bar_type="volume", bar_volume=cap))
    inside = [t for t in trades if CAL.session_at(t.ts_event) is not None]
    assert sum(b.volume for b in bars) == sum(t.size for t in inside)
    assert sum(b.delta for b in bars) == sum(t.size * int(t.side) for t in inside)
    naive: list[list[Trade]] = []
    sess_open = None
    for t in inside:  # a new bar when the session changes or the current one is full
        s = CAL.session_at(t.ts_event)
        assert s is not None
        if not naive or s.open_ns != sess_open or sum(x.size for x in naive[-1]) >= cap:
            naive.append([])
        sess_open = s.open_ns
        naive[-1].append(t)
    assert [b.volume for b in bars] == [sum(t.size for t in group) for group in naive]
    assert [(b.start_ns, b.end_ns) for b in bars] == [(g[0].ts_event, g[-1].ts_event + 1) for g in naive]
    for bar, group in zip(bars, naive, strict=True):
        assert bar.volume - group[-1].size < cap  # full only with its last trade


# --- throughput (make bench) ------------------------------------------------------------------------------

@pytest.mark.bench
def test_builder_throughput() -> None:
    """``pytest -m bench tests/orderflow/test_footprint.py -s``: trades per second through ``on_trade``."""
    import random
    import time

    rng = random.Random(1)
    ts, p = SESSION.open_ns, 24000
    sides_cycle = [BUY, SELL, BUY, SELL, UNK]
    trades = []
    for i in range(1_000_000):
        ts += rng.randint(0, 150_000_000)
        p += rng.choice((-1, 0, 0, 0, 1))
        trades.append(tr(ts, p, rng.randint(1, 20), sides_cycle[i % 5]))
    b = FootprintBuilder(ES)
    on_trade = b.on_trade
    t0 = time.perf_counter()
    for t in trades:
        on_trade(t)
    rate = len(trades) / (time.perf_counter() - t0)
    print(f"footprint builder: {rate:,.0f} trades/s")
    assert rate > 1_000_000
