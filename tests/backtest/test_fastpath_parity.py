"""The fast replay path against the event path it must equal: same trades, bars, decisions, rejections.

Every comparison runs both engines on the same DBN file: the event path (``load_events`` + ``run_events``,
the daemon's own trading core) and :mod:`tradebot.backtest.fast`. Both call the real ``Router.on_bar`` once
per closed bar, so a spy on it sees each engine's bars, patterns, regimes, router contexts and decisions; they
are compared one by one (contexts on every field the router and the filters read), then the trade lists and
their hashes, the decision and taken counts, the accepted events and the rejection counters.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento as db
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tradebot.backtest.fast import (
    FastDay,
    FastDayResult,
    UnsupportedError,
    fast_supported,
    run_day_fast,
    run_task,
)
from tradebot.backtest.fast.execution import ExecutionModel
from tradebot.backtest.fast.kernels import NO_PX
from tradebot.backtest.fast.load import DayColumns, load_day
from tradebot.backtest.overrides import apply_overrides
from tradebot.backtest.runner import DayTask, load_events, run_day, run_events
from tradebot.core.calendar import calendar_for, local_ns
from tradebot.core.config import Settings, load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.orders import EntryType, OrderIntent, make_signal_id
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.execution.manager import ExecutionManager
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.execution.trades import TradeRecord, trade_hash
from tradebot.feeds.dbn_write import UNDEF_PRICE, metadata_bytes, read_all, write_dbn
from tradebot.feeds.synth import synthesize
from tradebot.orderflow.footprint import FootprintBuilder
from tradebot.regime.router import Router, RouterContext
from tradebot.state.store import StateStore
from tradebot.trading import closed_trades

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL = sorted((DATA / "real").glob("*.dbn.zst"))

# --- generated days (small, deterministic) ---------------------------------------------------------------

DAYS = {  # name: (symbol, schema, first trading date, trades per day, seed)
    "es_tbbo": ("ES", "tbbo", "2025-03-10", 20_000, 1),
    "es_tbbo_b": ("ES", "tbbo", "2025-03-12", 15_000, 7),
    "es_mbp10": ("ES", "mbp-10", "2025-03-12", 12_000, 2),
    "gc_tbbo": ("GC", "tbbo", "2025-03-10", 15_000, 3),
    "cl_mbp10": ("CL", "mbp-10", "2025-03-11", 12_000, 4),
    "es_early_close": ("ES", "tbbo", "2025-11-28", 15_000, 5),  # the day after Thanksgiving: 12:15 CT close
    "es_mbp1_early": ("ES", "mbp-1", "2025-07-03", 12_000, 6),
    "es_trades": ("ES", "trades", "2025-03-13", 15_000, 8),  # no book at all
}


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("synth")
    paths = {}
    for name, (sym, schema, start, n, seed) in DAYS.items():
        (d,) = synthesize(out / name, symbol=sym, days=1, start=dt.date.fromisoformat(start), trades_per_day=n,
                          seed=seed, schema=schema)
        paths[name] = d.path
    return paths


# --- both engines with a spy on the router ---------------------------------------------------------------


@dataclass
class Outcome:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    trades: list[TradeRecord] = field(default_factory=list)
    decisions: int = 0
    taken: int = 0
    events: int = 0
    rejects: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def router_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    original = Router.on_bar

    def on_bar(self: Router, bar: Any, patterns: Any, regime: Any, context: RouterContext | None = None,
               now_ns: int | None = None, has_position: Any = False) -> Any:
        out = original(self, bar, patterns, regime, context, now_ns, has_position)
        calls.append((bar, tuple(patterns), regime, context, now_ns, tuple(out)))
        return out

    monkeypatch.setattr(Router, "on_bar", on_bar)
    return calls


def read_fields(ctx: RouterContext | None, *, full_profile: bool = False) -> Any:
    """Everything of a context the router and the tradeability filters read (and a little more)."""
    if ctx is None:
        return None
    m, p = ctx.micro, ctx.profile
    micro = None if m is None else (
        m.symbol, m.ts_ns, m.book_available, m.book_depth, m.book_ts_ns, m.best_bid, m.best_ask, m.bid_size,
        m.ask_size, m.spread_ticks, m.spread_bps, m.mid, m.weighted_mid, m.top_imbalance, m.depth_for(5),
        m.depth_imbalance, m.flow_window_seconds, m.trades, m.volume, m.buy_volume, m.sell_volume,
        m.trade_intensity, m.buy_pressure, m.order_imbalance, m.last_price)
    prof = None if p is None else (p if full_profile else (p.total, p.low, p.high, p.poc, p.value_area, p.buy_volume,
                                                            p.sell_volume))
    return ctx.cum_delta, ctx.last_price, ctx.last_trade_ns, micro, prof


def run_both(path: Path, symbol: str, s: Settings, spy: list[tuple[Any, ...]], *,
             full_profile: bool = False) -> tuple[Outcome, Outcome]:
    spy.clear()
    day = FastDay([path], symbol, s, full_profile=full_profile)
    run = day.run(s)
    cols = day.columns(s)
    fast = Outcome(list(spy), run.trades, run.decisions, run.taken, cols.events, dict(cols.rejects))
    spy.clear()
    events, validator = load_events([path], s, symbol)
    _, cr = run_events(events, s, symbol)
    reference = Outcome(list(spy), [TradeRecord.from_dict(t) for t in cr.trades], cr.decisions, cr.taken,
                        len(events), dict(validator.rejects))
    spy.clear()
    return fast, reference


def assert_same(fast: Outcome, ref: Outcome, *, full_profile: bool = False) -> None:
    assert len(fast.calls) == len(ref.calls), "bar count"
    for i, (f, e) in enumerate(zip(fast.calls, ref.calls, strict=True)):
        fb, fp, fr, fc, fn, fd = f
        eb, ep, er, ec, en, ed = e
        assert fb == eb, f"bar {i}"
        assert fp == ep, f"patterns of bar {i}"
        assert fr == er, f"regime of bar {i}"
        assert fn == en, f"decision time of bar {i}"
        assert read_fields(fc, full_profile=full_profile) == read_fields(ec, full_profile=full_profile), \
            f"context of bar {i}"
        assert fd == ed, f"decisions of bar {i}"
    assert fast.trades == ref.trades
    assert trade_hash(fast.trades) == trade_hash(ref.trades)
    assert (fast.decisions, fast.taken) == (ref.decisions, ref.taken)
    assert (fast.events, fast.rejects) == (ref.events, ref.rejects)


# --- parity on generated days ------------------------------------------------------------------------------

LOOSE = {"min_confidence": "0.4"}
CASES: list[tuple[str, dict[str, str], set[str]]] = [
    # (day, overrides, exit reasons that must occur: proves the scenario was exercised)
    ("es_tbbo", {}, set()),
    ("es_tbbo", {**LOOSE, "DAILY_LOSS_LIMIT": "-10", "DAILY_PROFIT_TARGET": "10"}, {"loss_limit"}),
    ("es_tbbo", {**LOOSE, "execution.market_slippage_ticks": "1", "execution.stop_slippage_ticks": "2",
                 "router.cooldown_seconds": "0"}, {"stop"}),
    ("es_tbbo_b", {**LOOSE, "footprint.bar_type": "volume", "footprint.bar_volume": "250"}, {"target"}),
    ("es_tbbo_b", {**LOOSE, "execution.starting_balance": "6000", "execution.flatten_on_limit": "false",
                   "DAILY_LOSS_LIMIT": "-40", "DAILY_PROFIT_TARGET": "40"}, set()),
    ("es_mbp10", {**LOOSE}, set()),
    ("es_mbp10", {**LOOSE, "regime.session_basis": "full", "router.cooldown_seconds": "0",
                  "DAILY_PROFIT_TARGET": "20"}, {"profit_target"}),
    ("gc_tbbo", {**LOOSE}, set()),
    ("gc_tbbo", {**LOOSE, "execution.tiers_enabled": "false", "router.base_size": "3",
                 "execution.limits_include_unrealized": "false"}, set()),
    ("cl_mbp10", {}, {"target"}),
    ("cl_mbp10", {**LOOSE, "filters.mode": "aggressive", "filters.missing_book": "fail",
                  "execution.auto_flatten_time": "13:00"}, set()),
    ("es_early_close", {**LOOSE, "router.risk_reward": "6"}, {"auto_flatten"}),
    ("es_mbp1_early", {**LOOSE, "router.risk_reward": "6"}, {"auto_flatten"}),
    ("es_trades", {**LOOSE}, set()),
]


@pytest.mark.parametrize(("day", "overrides", "reasons"), CASES,
                         ids=[f"{d}-{i}" for i, (d, _, _) in enumerate(CASES)])
def test_fast_path_equals_event_path(days: dict[str, Path], router_spy: list[tuple[Any, ...]], day: str,
                                     overrides: dict[str, str], reasons: set[str]) -> None:
    s = apply_overrides(load_settings(), overrides)
    fast, ref = run_both(days[day], DAYS[day][0], s, router_spy)
    assert ref.calls, "the day produced bars"
    assert_same(fast, ref)
    assert reasons <= {t.exit_reason for t in ref.trades}, "the scenario this case exists for did not happen"


def test_full_profile_snapshot_equals_the_tracker(days: dict[str, Path], router_spy: list[tuple[Any, ...]]) -> None:
    fast, ref = run_both(days["es_mbp10"], "ES", apply_overrides(load_settings(), LOOSE), router_spy,
                           full_profile=True)
    assert_same(fast, ref, full_profile=True)
    assert any(c[3] is not None and c[3].profile.hvn for c in fast.calls)


def test_every_generated_case_trades(days: dict[str, Path]) -> None:
    """The parity cases are only worth something if execution is exercised: most days trade."""
    traded = sum(bool(run_day_fast([days[d]], apply_overrides(load_settings(), o), DAYS[d][0])) for d, o, _ in CASES)
    assert traded >= len(CASES) - 3


# --- real data ---------------------------------------------------------------------------------------------

SHORT_BARS = {  # one real minute: 2 s bars and short warm-ups so the regime and router get to trade
    "footprint.bar_seconds": "2", "regime.adx_period": "2", "regime.atr_period": "2", "regime.ema_fast": "2",
    "regime.ema_slow": "3", "regime.structure_lookback": "1", "regime.atr_min_history": "1",
    "regime.atr_history_bars": "10", "regime.volume_min_history": "1", "regime.open_buffer_minutes": "0",
    "regime.close_buffer_minutes": "0", "router.cooldown_seconds": "0", "min_confidence": "0.3",
    "router.intensity_min_history": "1", "DAILY_PROFIT_TARGET": "40", "DAILY_LOSS_LIMIT": "-40",
    "router.stop_points_by_symbol": "ES:0.5", "execution.market_slippage_ticks": "1"}


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
@pytest.mark.parametrize("overrides", [{}, SHORT_BARS], ids=["defaults", "short-bars"])
def test_real_data(router_spy: list[tuple[Any, ...]], path: Path, overrides: dict[str, str]) -> None:
    assert REAL, "the real data files are missing"
    fast, ref = run_both(path, "ES", apply_overrides(load_settings(), overrides), router_spy)
    assert_same(fast, ref)
    assert fast.events == 4052 if "tbbo" in path.name else fast.events > 2025
    if overrides:
        assert ref.trades, "the short-bar variant trades on the real minute"


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_data_without_sides(router_spy: list[tuple[Any, ...]], path: Path, tmp_path: Path) -> None:
    """Every side stripped (``N``): both paths infer the same sides from the same books, so the same trades."""
    store = db.DBNStore.from_file(path)
    rec = store.to_ndarray().copy()
    rec["side"] = b"N"
    stripped = _rewrite_records(store, rec, tmp_path / path.name)
    fast, ref = run_both(stripped, "ES", apply_overrides(load_settings(), SHORT_BARS), router_spy)
    assert_same(fast, ref)
    assert ref.trades, "the short-bar variant trades on the real minute"


VENDOR = sorted((DATA / "databento").glob("*/*.dbn.zst"))


@pytest.mark.parametrize("path", VENDOR, ids=[f"{p.parent.name}/{p.name}" for p in VENDOR])
def test_vendor_sample_files(path: Path) -> None:
    """Databento's own sample files, every schema: the same trades and counts, or the same refusal."""
    s = load_settings()
    try:
        events, validator = load_events([path], s, "ES")
    except Exception as exc:  # not replayable at all (definitions, OHLCV, ...): the fast path says the same
        with pytest.raises(type(exc)):
            run_day_fast([path], s, "ES")
        return
    _, cr = run_events(events, s, "ES")
    assert run_day_fast([path], s, "ES") == [TradeRecord.from_dict(t) for t in cr.trades]
    try:
        cols = FastDay([path], "ES", s).columns(s)
    except UnsupportedError:
        return  # a mixed capture or a status file: the event path ran above
    assert (cols.events, dict(cols.rejects)) == (len(events), dict(validator.rejects))


# --- validation: crafted bad records, then random ones ----------------------------------------------------


def _rewrite(src: Path, dst: Path, mutate: Any) -> Path:
    store = db.DBNStore.from_file(src)
    rec = store.to_ndarray().copy()
    mutate(rec)
    m = store.metadata
    meta = metadata_bytes(dataset=str(m.dataset), schema=str(store.schema.value), start_ns=int(m.start),
                          end_ns=int(m.end), symbol=str(m.symbols[0]), instrument_id=int(rec["instrument_id"][0]))
    write_dbn(dst, meta, [rec], compress=True)
    return dst


def _vandalise(rec: Any) -> None:
    """One or more records of every kind the validator rejects, plus out-of-order sequence numbers."""
    tick = 250_000_000
    n = rec.size
    i = np.arange(n)
    rec["price"][i % 997 == 5] += 1  # off the tick grid
    rec["price"][i % 1499 == 7] = UNDEF_PRICE
    rec["price"][i % 1999 == 9] = -tick
    rec["size"][i % 1201 == 11] = 0
    rec["instrument_id"][i % 1777 == 13] = 999  # an instrument the file does not map
    late = np.flatnonzero(i % 1303 == 17)
    rec["ts_event"][late] = rec["ts_event"][late - 3] - 1_000  # back in time
    rec["ts_event"][i == 2203] = 0
    dup = np.flatnonzero(i % 911 == 19)
    rec["sequence"][dup] = rec["sequence"][dup - 2]  # a repeated sequence number
    rec["sequence"][(i > 3000) & (i < 3400)] = rec["sequence"][(i > 3000) & (i < 3400)][::-1]  # reordered
    rec["sequence"][i % 701 == 23] = 0  # no sequence: never a duplicate
    rec["price"][4000:4003] += 600 * tick  # a fat finger: three prints rejected
    rec["price"][5000:5009] += 600 * tick  # a real gap: believed after five
    if "bid_px_00" in rec.dtype.names:
        crossed = i % 1103 == 29
        rec["bid_px_00"][crossed] = rec["ask_px_00"][crossed] + tick
        if "bid_px_05" in rec.dtype.names:
            rec["ask_px_05"][i % 809 == 31] += 7  # a deep level off the grid
            rec["bid_px_03"][i % 613 == 37] = UNDEF_PRICE  # an empty level: fine
            rec["bid_sz_02"][i % 613 == 41] = 0
            rec["bid_px_07"][i % 1409 == 43] = -tick


@pytest.mark.parametrize("day", ["es_tbbo_b", "es_mbp10"])
def test_rejections_are_the_validators(days: dict[str, Path], router_spy: list[tuple[Any, ...]],
                                       tmp_path: Path, day: str) -> None:
    bad = _rewrite(days[day], tmp_path / "bad.dbn.zst", _vandalise)
    s = apply_overrides(load_settings(), LOOSE)
    fast, ref = run_both(bad, "ES", s, router_spy)
    assert_same(fast, ref)
    assert {"off_tick_grid", "non_finite_price", "non_positive_price", "non_positive_size", "unknown_instrument",
            "out_of_order", "malformed", "duplicate_sequence", "price_jump"} <= set(ref.rejects)
    if day == "es_mbp10":
        assert "crossed_book" in ref.rejects


RECORDS = st.lists(st.tuples(
    st.integers(0, 3),  # time step in ms (0: the same timestamp)
    st.integers(-3, 3),  # price move in ticks
    st.sampled_from([0, 1, 1, 1, 2, 5]),  # size
    st.sampled_from([b"A", b"B", b"N"]),
    st.integers(0, 40),  # what to break (most values: nothing)
    st.integers(0, 6),  # sequence number source
), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=RECORDS, mbp10=st.booleans())
def test_validation_matches_on_random_records(days: dict[str, Path], rows: list[tuple[int, ...]],
                                              mbp10: bool) -> None:
    src = days["es_mbp10" if mbp10 else "es_tbbo"]
    tick = 250_000_000
    store = db.DBNStore.from_file(src)
    rec = next(iter(store.to_ndarray(count=len(rows)))).copy()
    t = int(rec["ts_event"][0])
    px = int(rec["price"][0])
    seqs = [0, 5, 5, 9, 3, 11, 12]
    for k, (dt_ms, move, size, side, brk, sq) in enumerate(rows):
        t += dt_ms * 1_000_000
        px += move * tick
        rec["ts_event"][k], rec["price"][k], rec["size"][k], rec["side"][k] = t, px, size, side
        rec["sequence"][k] = seqs[sq] + (k if sq > 4 else 0)
        rec["bid_px_00"][k], rec["ask_px_00"][k] = px - tick, px + tick
        if brk == 1:
            rec["price"][k] += 3
        elif brk == 2:
            rec["ts_event"][k] -= 5_000_000
        elif brk == 3:
            rec["bid_px_00"][k] = px + 2 * tick  # crossed
        elif brk == 4:
            rec["price"][k] += 500 * tick
        elif brk == 5:
            rec["ask_px_00"][k] = UNDEF_PRICE  # one side empty
        elif brk == 6 and mbp10:
            rec["bid_px_04"][k] += 1
        elif brk == 7:
            rec["instrument_id"][k] = 4242
    with tempfile.TemporaryDirectory() as tmp:
        path = _rewrite_records(store, rec[:len(rows)], Path(tmp) / "r.dbn.zst")
        s = load_settings()
        cols = load_day(path, "ES", depth_levels=(5, 10), tolerance_ns=0, max_jump_ticks=400, jump_confirm_prints=5)
        events, validator = load_events([path], s, "ES")
    assert dict(cols.rejects) == dict(validator.rejects)
    for reason in validator.rejects:
        event(f"rejected {reason}")
    ev = iter(events)
    for r in range(cols.n):
        for ok, kind in ((cols.book_ok[r], BookUpdate), (cols.trade_ok[r], Trade)):
            if ok:
                e = next(ev)
                assert isinstance(e, kind) and e.ts_event == cols.rts[r]
                if isinstance(e, Trade):
                    assert (e.price, e.size, int(e.side)) == (cols.tpx[r], cols.tsz[r], cols.tside[r])
                else:
                    assert (e.bid_px[0] if e.bid_px else NO_PX) == cols.bid[r]
                    assert (e.ask_px[0] if e.ask_px else NO_PX) == cols.ask[r]
    assert next(ev, None) is None


def _rewrite_records(store: Any, rec: Any, dst: Path) -> Path:
    m = store.metadata
    meta = metadata_bytes(dataset=str(m.dataset), schema=str(store.schema.value), start_ns=int(m.start),
                          end_ns=int(m.end), symbol=str(m.symbols[0]), instrument_id=1)
    write_dbn(dst, meta, [rec], compress=True)
    return dst


# --- footprint bars against the builder on random streams ---------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 400), st.integers(-2, 2), st.integers(1, 9), st.integers(-1, 1),
                                st.booleans(), st.booleans()), min_size=1, max_size=80),
       volume=st.booleans(), start=st.integers(-120, 60))
def test_bars_match_the_builder(steps: list[tuple[int, ...]], volume: bool, start: int) -> None:
    """Random trades and books across a session's close, the daily break and the next open."""
    spec = spec_for("ES")
    cal = calendar_for(spec.session)
    close = cal.session_on(dt.date(2025, 3, 11)).close_ns  # type: ignore[union-attr]
    t = close + start * 1_000_000_000
    s = apply_overrides(load_settings(), {"footprint.bar_seconds": "60", "footprint.bar_type":
                                          "volume" if volume else "time", "footprint.bar_volume": "20"})
    rts, tpx, tsz, tside, book, trade = [], [], [], [], [], []
    px = 24_000
    for gap_s, move, size, side, is_book, is_trade in steps:
        t += gap_s * 1_000_000_000 // 7 if gap_s < 300 else 3_700 * 1_000_000_000  # sometimes over the break
        px += move
        rts.append(t)
        tpx.append(px)
        tsz.append(size)
        tside.append(side)
        book.append(is_book)
        trade.append(is_trade or not is_book)
    cols = _columns(spec, rts, tpx, tsz=tsz, tside=tside, book=book, trade=trade)
    from tradebot.backtest.fast.bars import Trades, build_bars

    series = build_bars(cols, Trades.of(cols), s.footprint)
    builder = FootprintBuilder(spec, s.footprint, cal)
    bars = []
    for r in range(cols.n):
        if cols.book_ok[r] and (b := builder.close_until(int(cols.rts[r]))) is not None:
            bars.append((b, 2 * r))
        if cols.trade_ok[r]:
            tr = Trade("ES", int(cols.rts[r]), int(cols.rts[r]), int(cols.tpx[r]), int(cols.tsz[r]),
                       Side(int(cols.tside[r])), SideRule.EXCHANGE)
            if (b := builder.on_trade(tr)) is not None:
                bars.append((b, 2 * r + 1))
    if (b := builder.flush()) is not None:
        bars.append((b, -1))
    assert series.bars == [b for b, _ in bars]
    assert series.close_pos == [p for _, p in bars]


def _columns(spec: Any, rts: list[int], tpx: list[int], *, tsz: list[int] | None = None,
             tside: list[int] | None = None, book: list[bool] | None = None, trade: list[bool] | None = None,
             bid: list[int] | None = None, ask: list[int] | None = None) -> DayColumns:
    n = len(rts)
    arr = np.array(tpx, np.int32)  # the loader's dtypes, so the kernels run their compiled specialisation
    return DayColumns(
        Path("mem"), "tbbo", spec, spec.root, np.array(rts, np.int64), np.array(book or [False] * n, bool),
        np.array(trade or [True] * n, bool), arr, np.array(tsz or [1] * n, np.int32),
        np.array(tside or [1] * n, np.int8), np.array(bid if bid is not None else arr - 1, np.int32),
        np.array(ask if ask is not None else arr + 1, np.int32), np.ones(n, np.int32), np.ones(n, np.int32),
        np.ones(n, np.int8), np.ones(n, np.int8))


# --- one bracket at a time: the kernel against the manager and the paper broker --------------------------------

@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 500), n_intents=st.integers(1, 12),
       slip=st.integers(0, 2), stop_slip=st.integers(0, 2), limit=st.sampled_from(["5", "15", "60", "500"]),
       unreal=st.booleans(), flatten_on_limit=st.booleans(),
       flatten_at=st.sampled_from(["15:50", "15:52", "15:54", "15:57", "16:30"]), tiers=st.booleans())
def test_bracket_kernel_matches_the_manager(seed: int, n: int, n_intents: int, slip: int, stop_slip: int,
                                            limit: str, unreal: bool, flatten_on_limit: bool, flatten_at: str,
                                            tiers: bool) -> None:
    """Random trade/book paths and market brackets decided at random events, every execution rule in play:
    fills on trades and on books (an empty side does not fill), slippage, stop through or gapped, target
    through, the auto-flatten cancelling a working entry or closing a position, daily limits on realized and
    unrealized P&L with and without flattening, tiers (MES on ES data), one bracket at a time."""
    rng = np.random.default_rng(seed)
    day = dt.date(2025, 3, 11)
    s = apply_overrides(load_settings(), {
        "execution.market_slippage_ticks": str(slip), "execution.stop_slippage_ticks": str(stop_slip),
        "DAILY_PROFIT_TARGET": limit, "DAILY_LOSS_LIMIT": f"-{limit}",
        "execution.limits_include_unrealized": str(unreal).lower(),
        "execution.flatten_on_limit": str(flatten_on_limit).lower(), "execution.tiers_enabled": str(tiers).lower(),
        "execution.auto_flatten_time": flatten_at})
    t0 = local_ns(day, dt.time(14, 49))  # CT: the auto-flatten (ET) often falls inside the path
    rts = (t0 + np.cumsum(rng.choice([0, 0, 1, 2, 5, 20], n) * 1_000_000_000 // 4)).tolist()
    tpx = (24_000 + np.cumsum(rng.integers(-2, 3, n))).tolist()
    kind = rng.integers(0, 4, n)  # 0: trade only; 1: book only; else a TBBO-like book then trade
    book = (kind != 0).tolist()
    trade = (kind != 1).tolist()
    empty = rng.integers(0, 12, n)
    bid = [NO_PX if e == 1 else p - 1 for e, p in zip(empty, tpx, strict=True)]
    ask = [NO_PX if e == 2 else p + 1 for e, p in zip(empty, tpx, strict=True)]
    at: dict[int, list[OrderIntent]] = {}
    for k, r in enumerate(sorted(rng.integers(0, n, n_intents).tolist())):
        pos = 2 * r + (1 if trade[r] else 0)
        ts = rts[r] - int(rng.integers(0, 3)) * 1_000_000
        long = bool(rng.integers(0, 2))
        stop, rr = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        sign = 1 if long else -1
        intent = OrderIntent(make_signal_id("ES", ts, "TEST", str(k)), "ES", Side.BUY if long else Side.SELL, 1,
                             EntryType.MARKET, None, tpx[r] - sign * stop, tpx[r] + sign * stop * rr, ts, 0.9, "TEST")
        at.setdefault(pos, []).append(intent)
    fast_v, event_v, fast_t, event_t, cancelled = _execute_both(s, rts, tpx, book, trade, bid, ask, at)
    assert fast_v == event_v
    assert fast_t == event_t
    for tr in event_t:
        event(f"exit {tr.exit_reason}")
    if cancelled:
        event("entry cancelled")


def _execute_both(s: Settings, rts: list[int], tpx: list[int], book: list[bool], trade: list[bool], bid: list[int],
                  ask: list[int], at: dict[int, list[OrderIntent]]) -> tuple[Any, ...]:
    """Verdicts and trades of the manager + paper broker (each intent right after the event at its position)
    and of the fast path's execution model, plus how many brackets the manager cancelled."""
    spec = spec_for("ES")
    cal = calendar_for(spec.session)
    n = len(rts)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore.open(Path(tmp) / "x.db", mode="paper", synchronous="OFF")
        try:
            mgr = ExecutionManager(s, store, PaperBroker(PaperConfig.from_settings(s), data_symbols=["ES"]),
                                   symbols=["ES"], calendar=cal)
            mgr.recover(rts[0])
            event_verdicts = []
            for r in range(n):
                for ph, ok in ((0, book[r]), (1, trade[r])):
                    if not ok:
                        continue
                    ev: Any = (Trade("ES", rts[r], rts[r], tpx[r], 1, Side.BUY, SideRule.EXCHANGE) if ph else
                               BookUpdate("ES", rts[r], rts[r], () if bid[r] == NO_PX else (bid[r],),
                                          () if bid[r] == NO_PX else (5,), () if ask[r] == NO_PX else (ask[r],),
                                          () if ask[r] == NO_PX else (5,)))
                    mgr.on_market_event(ev)
                    for intent in at.get(2 * r + ph, []):
                        event_verdicts.append(mgr.on_intent(intent).taken)
            event_trades = closed_trades(store)
            cancelled = store.query("SELECT COUNT(*) AS n FROM brackets WHERE state = 'cancelled'")[0]["n"]
        finally:
            store.close()
    model = ExecutionModel(s, _columns(spec, rts, tpx, book=book, trade=trade, bid=bid, ask=ask), cal)
    fast_verdicts = [model.on_intent(i, pos) for pos in sorted(at) for i in at[pos]]
    return fast_verdicts, event_verdicts, model.trades(), event_trades, cancelled


def test_auto_flatten_cancels_a_working_entry_and_refuses_later_intents() -> None:
    day = dt.date(2025, 3, 11)
    flat = local_ns(day, dt.time(14, 55))  # 15:55 ET
    rts = [flat - 3_000_000_000, flat - 1_000_000_000, flat + 1_000_000_000, flat + 2_000_000_000,
           flat + 3_000_000_000]
    tpx = [24_000, 24_001, 24_002, 24_003, 24_004]
    book = [True, False, True, False, True]
    trade = [True, True, False, True, True]
    bid = [23_999, NO_PX, 24_001, NO_PX, NO_PX]  # the last book has no bid: a sell cannot fill on it
    ask = [24_001, NO_PX, 24_003, NO_PX, 24_005]

    def intent(k: int, ts: int, side: Side) -> OrderIntent:
        sign = 1 if side == Side.BUY else -1
        return OrderIntent(make_signal_id("ES", ts, "T", str(k)), "ES", side, 1, EntryType.MARKET, None,
                           24_001 - sign * 4, 24_001 + sign * 8, ts, 0.9, "T")

    at = {3: [intent(0, rts[1], Side.BUY)], 7: [intent(1, rts[3], Side.SELL)]}
    fast_v, event_v, fast_t, event_t, cancelled = _execute_both(load_settings(), rts, tpx, book, trade, bid, ask, at)
    assert fast_v == event_v == [True, False]
    assert fast_t == event_t == []
    assert cancelled == 1


# --- what the fast path does not model falls back -----------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    {"ORDER_FLOW_EXIT_MODE": "auto", "ORDER_FLOW_MONITORING_MODE": "all"},
    {"router.entry_type": "limit"},
    {"execution.limit_fill_rule": "queue", "execution.queue_ahead_contracts": "3"},
    {"validation.out_of_order_ms": "5"},
], ids=["exit-mode-auto", "limit-entries", "queue-fills", "out-of-order-tolerance"])
def test_unsupported_settings_fall_back(days: dict[str, Path], overrides: dict[str, str]) -> None:
    s = apply_overrides(load_settings(), {**LOOSE, **overrides})
    assert fast_supported(s)
    with pytest.raises(UnsupportedError):
        FastDay([days["cl_mbp10"]], "CL", s).run(s)
    events, _ = load_events([days["cl_mbp10"]], s, "CL")
    _, cr = run_events(events, s, "CL")
    expected = [TradeRecord.from_dict(t) for t in cr.trades]
    assert run_day_fast([days["cl_mbp10"]], s, "CL") == expected


def test_unsupported_days_fall_back(days: dict[str, Path], tmp_path: Path) -> None:
    s = apply_overrides(load_settings(), LOOSE)
    two = [days["es_tbbo"], days["es_mbp10"]]
    truncated = tmp_path / "cut.dbn"
    truncated.write_bytes(read_all(days["es_tbbo_b"])[:-30])  # ends inside a record
    for paths in (two, [truncated]):
        with pytest.raises(UnsupportedError):
            FastDay(paths, "ES", s)
        events, _ = load_events(paths, s, "ES")
        _, cr = run_events(events, s, "ES")
        assert run_day_fast(paths, s, "ES") == [TradeRecord.from_dict(t) for t in cr.trades]


def test_task_equals_run_day(days: dict[str, Path]) -> None:
    """A sweep on one day (shared bars, analysis and confluence scores) equals the event path combo by combo."""
    combos = ({}, {"min_confidence": "0.4"}, {"min_confidence": "0.4", "router.risk_reward": "3"},
              {"min_confidence": "0.45", "router.risk_reward": "1.5", "router.stop_points_by_symbol": "CL:0.10"},
              {"min_confidence": "0.4", "router.cooldown_seconds": "0", "router.weight_profile": "0.2"},
              {"min_confidence": "0.4", "router.entry_type": "limit"})
    task = DayTask("2025-03-11", (str(days["cl_mbp10"]),), "CL", load_settings(), combos)
    fast = run_task(task)
    ref = run_day(task)
    assert isinstance(fast, FastDayResult) and fast.error is None and ref.error is None
    assert (fast.engine, fast.events, fast.rejects) == ("mixed", ref.events, ref.rejects)
    assert fast.fallback and "entry_type" in fast.fallback
    for f, e in zip(fast.combos, ref.combos, strict=True):
        assert (f.combo, f.trades, f.decisions, f.taken) == (e.combo, e.trades, e.decisions, e.taken)
    assert any(c.trades for c in fast.combos)
    assert run_task(task, "event").engine == "event"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="engine"):
        run_task(task, "gpu")
