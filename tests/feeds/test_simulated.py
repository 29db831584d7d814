"""The simulated market: generator invariants, realism checks against real ES data, and the feed contract."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradebot.core.calendar import calendar_for
from tradebot.core.config import ConfigError, SimSettings, load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.types import FeedState, FeedStatus, RawBook, RawTrade, Side, Trade
from tradebot.feeds.base import Feed
from tradebot.feeds.simulated import (
    BookKind,
    Episode,
    Regime,
    SessionData,
    SimulatedMarket,
    generate_session,
    iter_sessions,
    raw_records,
    trading_sessions,
)
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SIERRA_TICKS = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"
ES_BARS = DATA / "sierra" / "ESZ24_5m_bars.txt"
ES = spec_for("ES")
MONDAY = dt.date(2025, 3, 10)
N = 60_000


def es_session(day: dt.date = MONDAY) -> SessionData:
    session = calendar_for("equity").session_on(day)
    assert session is not None
    return generate_session(ES, session, N, np.random.default_rng(7))


@pytest.fixture(scope="module")
def es() -> SessionData:
    return es_session()


def array_fields(d: SessionData) -> dict[str, np.ndarray]:
    return {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if isinstance(getattr(d, f.name), np.ndarray)}


async def collect(feed: SimulatedMarket) -> list[object]:
    return [ev async for ev in feed]


# --- determinism -------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays(es: SessionData) -> None:
    again = es_session()
    a, b = array_fields(es), array_fields(again)
    assert a.keys() == b.keys() and len(a) == 14
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_different_seed_gives_different_session(es: SessionData) -> None:
    session = calendar_for("equity").session_on(MONDAY)
    assert session is not None
    other = generate_session(ES, session, N, np.random.default_rng(8))
    assert other.n_trades == es.n_trades  # same configuration...
    assert not np.array_equal(other.ts_event[other.is_trade], es.ts_event[es.is_trade])  # ...different market
    assert not np.array_equal(other.price[other.is_trade], es.price[es.is_trade])


# --- structural invariants ---------------------------------------------------------------------------------


def test_exact_trade_count_and_plausible_volume(es: SessionData) -> None:
    assert es.n_trades == N
    assert 1.2 * N < es.volume < 2.5 * N
    assert np.all(es.size[es.is_trade] >= 1) and np.all(es.size[~es.is_trade] == 0)
    assert set(np.unique(es.side[es.is_trade]).tolist()) == {-1, 1}


def test_timestamps_non_decreasing_and_inside_the_session(es: SessionData) -> None:
    s = es.session
    assert np.all(np.diff(es.ts_event) >= 0)
    assert es.ts_event[0] >= s.open_ns and es.ts_event[-1] < s.close_ns
    assert np.all(es.ts_recv >= es.ts_event)
    cal = calendar_for("equity")
    for ts in es.ts_event[:: max(1, es.n_rows // 500)].tolist():
        found = cal.session_at(ts)
        assert found is not None and found.trading_date == MONDAY
    assert es.symbol == "ESH5"  # front month on 2025-03-10 (rolls to M5 on the 13th)


def test_book_never_crossed_levels_ordered_sizes_positive(es: SessionData) -> None:
    assert np.all(es.bid_px[:, 0] < es.ask_px[:, 0])
    assert np.all(np.diff(es.bid_px, axis=1) < 0) and np.all(np.diff(es.ask_px, axis=1) > 0)
    assert es.bid_sz.min() >= 1 and es.ask_sz.min() >= 1
    assert es.bid_px.shape == (es.n_rows - es.n_trades, 10)
    spread = es.ask_px[:, 0] - es.bid_px[:, 0]
    assert set(np.unique(spread).tolist()) == {1, 2}  # one tick, momentarily two when a level is pulled
    assert np.mean(spread == 1) > 0.9


def test_every_trade_prints_at_the_touch(es: SessionData) -> None:
    rows = es.trade_rows
    book = es.book_idx[rows]
    buy = es.side[rows] > 0
    expected = np.where(buy, es.ask_px[book, 0], es.bid_px[book, 0])
    assert np.array_equal(es.price[rows], expected)
    # the book in force is the latest book row before the trade
    assert np.all(~es.is_trade[np.flatnonzero(~es.is_trade)])
    assert np.all(np.diff(es.book_idx) >= 0)


def test_trades_that_do_not_move_price_consume_displayed_size(es: SessionData) -> None:
    """After a buy that leaves the touch in place the ask shows less; mirrored for sells."""
    book_rows = np.flatnonzero(~es.is_trade)
    post = np.flatnonzero(es.book_kind == BookKind.POST_TRADE)
    before, after = post - 1, post
    stayed = (es.bid_px[before, 0] == es.bid_px[after, 0]) & (es.ask_px[before, 0] == es.ask_px[after, 0])
    side = es.side[book_rows[post] - 1]  # the row before a post-trade book is the order's last print
    buys, sells = stayed & (side > 0), stayed & (side < 0)
    assert buys.sum() > 1000 and sells.sum() > 1000
    assert np.all(es.ask_sz[after[buys], 0] < es.ask_sz[before[buys], 0])
    assert np.all(es.bid_sz[after[sells], 0] < es.bid_sz[before[sells], 0])
    moved_up = es.bid_px[after, 0] > es.bid_px[before, 0]
    assert np.all(side[moved_up] > 0)  # only buyers lift the market...
    assert np.all(side[es.bid_px[after, 0] < es.bid_px[before, 0]] < 0)  # ...and only sellers drop it
    assert np.all(np.abs(es.bid_px[after, 0] - es.bid_px[before, 0]) <= 1)


def test_tiny_and_odd_configurations_still_valid() -> None:
    session = calendar_for("metals").session_on(MONDAY)
    assert session is not None
    for n, depth in ((1, 1), (7, 3), (250, 10)):
        d = generate_session(spec_for("HG"), session, n, np.random.default_rng(n), depth=depth)
        assert d.n_trades == n and d.depth == depth
        assert np.all(d.bid_px[:, 0] < d.ask_px[:, 0]) and np.all(d.bid_px[:, -1] > 0)
    with pytest.raises(ValueError):
        generate_session(ES, session, 0, np.random.default_rng(0))
    # a start price too low for the book's depth is lifted rather than producing non-positive levels
    d = generate_session(ES, session, 2000, np.random.default_rng(1), start_price_ticks=3)
    assert d.bid_px.min() > 0


# --- realism -------------------------------------------------------------------------------------------------


def test_all_regimes_occur_in_a_session() -> None:
    for seed in (1, 2, 3):
        session = calendar_for("equity").session_on(MONDAY)
        assert session is not None
        d = generate_session(ES, session, 20_000, np.random.default_rng(seed))
        share = np.bincount(d.regime[d.is_trade], minlength=len(Regime)) / d.n_trades
        assert np.all(share > 0.02), share


def test_regimes_shape_the_price(es: SessionData) -> None:
    """Trend-up stretches rise, trend-down stretches fall, volatile stretches move most per trade."""
    rows = es.trade_rows
    px, reg = es.price[rows], es.regime[rows]
    step = np.diff(px)
    net = {r: step[reg[1:] == r].sum() for r in Regime}
    assert net[Regime.TREND_UP] > 20 and net[Regime.TREND_DOWN] < -20
    k = 100  # price change over blocks of 100 trades: per trade, so the time of day does not matter
    n = px.size // k * k
    blocks, labels = px[:n].reshape(-1, k), reg[:n].reshape(-1, k)
    pure = np.all(labels == labels[:, :1], axis=1)
    move = np.abs(blocks[:, -1] - blocks[:, 0])
    mean_move = {r: move[pure & (labels[:, 0] == r)].mean() for r in Regime}
    assert mean_move[Regime.VOLATILE] > 1.8 * mean_move[Regime.RANGE], mean_move
    assert mean_move[Regime.VOLATILE] > 1.4 * max(mean_move[Regime.TREND_UP], mean_move[Regime.TREND_DOWN])


def test_large_orders_occur_well_above_the_contract_threshold(es: SessionData) -> None:
    sizes = es.size[es.is_trade]
    large = sizes[sizes >= ES.large_order_size]
    assert len(large) >= 5
    assert large.min() >= 1.5 * ES.large_order_size
    assert np.count_nonzero(sizes >= ES.large_order_size) < 0.01 * N  # occasional, not common


def test_print_sizes_resemble_real_es_prints(es: SessionData) -> None:
    real = pd.read_csv(SIERRA_TICKS, sep=";", usecols=["Volume"])["Volume"].to_numpy()
    sim = es.size[es.is_trade]
    for lots in (1, 2):
        assert abs(np.mean(sim == lots) - np.mean(real == lots)) < 0.1
    assert abs(np.median(sim) - np.median(real)) <= 1


def test_intraday_volume_is_u_shaped_like_real_es_bars() -> None:
    """Averaged over days, as the real bars are (single days vary with their regimes)."""
    bars = pd.read_csv(ES_BARS, sep=r",\s*", engine="python")
    minutes = bars["Time"].str[:2].astype(int) * 60 + bars["Time"].str[3:5].astype(int)
    rth = (minutes >= 8 * 60 + 30) & (minutes < 15 * 60)
    real_rth_share = bars.loc[rth, "NumberOfTrades"].sum() / bars["NumberOfTrades"].sum()

    half_hour = 30 * 60 * 10**9
    shares, opening, midday, closing, overnight = [], [], [], [], []
    for d in iter_sessions(SimSettings(trades_per_session=20_000, sessions=5), ES):
        s = d.session
        ts = d.ts_event[d.is_trade]

        def rate(a: int, b: int, ts: np.ndarray = ts) -> float:
            return float(np.count_nonzero((ts >= a) & (ts < b))) / (b - a)

        shares.append(np.mean((ts >= s.rth_open_ns) & (ts < s.rth_close_ns)))
        opening.append(rate(s.rth_open_ns, s.rth_open_ns + half_hour))
        midday.append(rate(s.rth_open_ns + 3 * half_hour, s.rth_open_ns + 9 * half_hour))
        closing.append(rate(s.rth_close_ns - half_hour, s.rth_close_ns))
        overnight.append(rate(s.open_ns, s.rth_open_ns - 4 * half_hour))
    assert abs(np.mean(shares) - real_rth_share) < 0.05, (shares, real_rth_share)
    assert np.mean(opening) > 1.8 * np.mean(midday) and np.mean(closing) > 1.5 * np.mean(midday)
    assert np.mean(midday) > 3 * np.mean(overnight)


def test_arrivals_are_bursty(es: SessionData) -> None:
    s = es.session
    ts = es.ts_event[es.is_trade]
    mid = ts[(ts >= s.rth_open_ns + 2 * 3600 * 10**9) & (ts < s.rth_open_ns + 4 * 3600 * 10**9)]
    counts = np.bincount((mid - mid.min()) // 10**9)
    assert counts.var() / counts.mean() > 2.5  # a Poisson process would give ~1
    gaps = np.diff(np.unique(ts))
    assert gaps.std() / gaps.mean() > 1.5  # inter-arrival CV of an exponential is 1


def episode_blocks(d: SessionData, kind: Episode) -> list[np.ndarray]:
    rows = np.flatnonzero((d.episode == kind) & d.is_trade)
    return [b for b in np.split(rows, np.flatnonzero(np.diff(rows) > 20) + 1) if b.size]


def level_volumes(d: SessionData, rows: np.ndarray) -> dict[int, list[int]]:
    """price -> [bid volume (sells), ask volume (buys)], a footprint of the rows."""
    out: dict[int, list[int]] = {}
    for p, z, s in zip(d.price[rows].tolist(), d.size[rows].tolist(), d.side[rows].tolist(), strict=True):
        out.setdefault(p, [0, 0])[0 if s < 0 else 1] += z
    return out


def test_sweeps_leave_stacked_imbalances(es: SessionData) -> None:
    blocks = episode_blocks(es, Episode.SWEEP)
    assert blocks
    for rows in blocks:
        s = int(es.side[rows[0]])
        fp = level_volumes(es, rows)
        prices = sorted(fp)
        # diagonal rule (reference/ORDERFLOW.md): ask(p) > 3 * bid(p - 1); bid(p) > 3 * ask(p + 1)
        if s > 0:
            imb = [fp[p][1] > 3 * fp.get(p - 1, [0, 0])[0] and fp[p][1] > 0 for p in prices]
        else:
            imb = [fp[p][0] > 3 * fp.get(p + 1, [0, 0])[1] and fp[p][0] > 0 for p in prices]
        assert sum(imb) >= 3 and len(prices) >= 4 and max(prices) - min(prices) == len(prices) - 1
        span_ns = int(es.ts_event[rows[-1]] - es.ts_event[rows[0]])
        assert span_ns < 10**9 * 0.2 * rows.size  # a burst, not a drift


def test_absorption_heavy_flow_into_a_level_that_holds_then_reverses(es: SessionData) -> None:
    blocks = episode_blocks(es, Episode.ABSORPTION)
    assert blocks
    for rows in blocks:
        s = int(es.side[rows[0]])  # the absorbed aggressor side
        fp = level_volumes(es, rows)
        vol = {p: sum(v) for p, v in fp.items()}
        extreme = min(fp) if s < 0 else max(fp)
        assert vol[extreme] >= 3 * np.mean(list(vol.values()))
        assert vol[extreme] == max(vol.values())
        assert fp[extreme][0 if s < 0 else 1] >= 0.9 * vol[extreme]  # it was the aggressor side hitting it
        last = int(es.price[rows[-1]])
        assert (last - extreme) * -s >= 4  # closed well away from the absorbed extreme


def test_exhaustion_volume_fades_toward_the_extreme(es: SessionData) -> None:
    blocks = episode_blocks(es, Episode.EXHAUSTION)
    assert blocks
    for rows in blocks:
        s = int(es.side[rows[0]])
        ladder = rows[es.side[rows] == s]
        fp = level_volumes(es, ladder)
        toward = sorted(fp, reverse=s < 0)  # from the first ladder level to the extreme
        vols = [fp[p][1 if s > 0 else 0] for p in toward]
        assert len(vols) >= 4 and toward[-1] - toward[0] == s * (len(vols) - 1)
        assert np.all(np.diff(vols) < 0) and vols[-1] == 1, vols  # fading to a single lot at the extreme
        rest = rows[rows > ladder[-1]]
        assert rest.size >= 6 and np.all(es.side[rest] == -s)  # the reversal follows
        assert (int(es.price[rest[-1]]) - toward[-1]) * -s >= 5


def test_contracts_on_one_calendar_move_together() -> None:
    """Bonus realism: ES and NQ share the day's regime plan and flow factor."""
    corrs = []
    for seed in (7, 8, 9):
        sim = SimSettings(seed=seed, trades_per_session=30_000)
        es_d, nq_d = next(iter_sessions(sim, ES)), next(iter_sessions(sim, spec_for("NQ")))

        def minute_close(d: SessionData) -> np.ndarray:
            rows = d.trade_rows
            minute = (d.ts_event[rows] - d.session.open_ns) // (60 * 10**9)
            last = np.full(int(minute.max()) + 1, -1)
            last[minute] = d.price[rows]
            return last

        a, b = minute_close(es_d), minute_close(nq_d)
        n = min(a.size, b.size)
        both = np.flatnonzero((a[:n] > 0) & (b[:n] > 0))[::5]
        corrs.append(np.corrcoef(np.diff(a[both]), np.diff(b[both]))[0, 1])
    assert np.mean(corrs) > 0.15, corrs


# --- sessions and calendars ----------------------------------------------------------------------------------


def test_sessions_follow_the_exchange_calendar() -> None:
    # Good Friday 2025 is a holiday on the energy calendar; the weekend is skipped too
    sim = SimSettings(sessions=3, trades_per_session=2000, start_date="2025-04-17")
    days = list(iter_sessions(sim, spec_for("CL")))
    assert [d.session.trading_date for d in days] == [dt.date(2025, 4, 17), dt.date(2025, 4, 21),
                                                      dt.date(2025, 4, 22)]
    cal = calendar_for("energy")
    for d in days:
        assert d.ts_event.min() >= d.session.open_ns and d.ts_event.max() < d.session.close_ns
        assert cal.session_at(int(d.ts_event[d.n_rows // 2])) == d.session
    for prev, nxt in itertools.pairwise(days):
        assert prev.ts_event[-1] < nxt.ts_event[0]
        assert abs(int(nxt.price[nxt.trade_rows[0]]) - prev.last_price) <= 3  # opens where the last closed
    # a Saturday start begins with Monday's session (which opened Sunday evening)
    assert trading_sessions("equity", dt.date(2025, 3, 8), 1)[0].trading_date == MONDAY


def test_early_close_session_stays_inside_its_hours() -> None:
    session = calendar_for("equity").session_on(dt.date(2024, 12, 24))
    assert session is not None and session.early_close
    d = generate_session(ES, session, 5000, np.random.default_rng(3))
    assert d.ts_event.max() < session.close_ns and d.n_trades == 5000


def test_bad_configuration_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRADEBOT_SIM__START_DATE"):  # refused when the settings load
        load_settings(_env_file=None, sim={"start_date": "10/03/2025"})
    with pytest.raises(ConfigError, match="TRADEBOT_SIM__START_DATE"):
        SimulatedMarket(SimSettings(start_date="2032-12-30", sessions=5), ["ES"])
    with pytest.raises(ConfigError, match="unknown contract"):
        SimulatedMarket(SimSettings(), ["ES", "ZZ"])
    with pytest.raises(ConfigError):
        SimulatedMarket(SimSettings(), [])


# --- the feed ------------------------------------------------------------------------------------------------


async def test_feed_passes_validation_with_zero_rejects() -> None:
    roots = ["ES", "HG", "SI"]  # tick sizes 0.25, 0.0005, 0.005
    sim = SimSettings(trades_per_session=4000, sessions=2, book_depth=10)
    feed = SimulatedMarket(sim, roots)
    assert isinstance(feed, Feed)
    validator = Validator(None, roots)
    events = await collect(feed)
    raw = [e for e in events if isinstance(e, RawTrade | RawBook)]
    status = [e for e in events if isinstance(e, FeedStatus)]
    out = [validator.validate(e) for e in raw]
    assert validator.total_rejects == 0, dict(validator.rejects)
    assert validator.accepted == len(raw)
    trades = [t for t in out if isinstance(t, Trade)]
    assert len(trades) == 2 * 4000 * len(roots)
    assert {t.symbol for t in trades} == set(roots)
    for e in raw:  # every fixed-point price sits on its contract's grid
        tick = spec_for(e.symbol).tick_fp
        prices = [e.price_fp] if isinstance(e, RawTrade) else [*e.bid_px_fp, *e.ask_px_fp]
        assert all(p is not None and p > 0 and p % tick == 0 for p in prices)
    assert [e.ts_event for e in raw] == sorted(e.ts_event for e in raw)  # merged in time order
    assert [s.state for s in status] == [FeedState.STREAMING, FeedState.STOPPED]
    assert feed.state == FeedState.STOPPED
    assert feed.stats["sessions"] == 2 * len(roots) and feed.stats["events"] == len(raw)


def test_raw_records_carry_the_columns_exactly(es: SessionData) -> None:
    recs = list(raw_records(es, sequence_start=100, instrument_id=9))
    assert len(recs) == es.n_rows
    assert recs == list(raw_records(es, sequence_start=100, instrument_id=9, chunk=777))  # chunking is invisible
    i = int(es.trade_rows[10])
    t = recs[i]
    assert isinstance(t, RawTrade)
    assert t.price_fp == int(es.price[i]) * ES.tick_fp and t.size == int(es.size[i])
    assert t.side == (Side.BUY if es.side[i] > 0 else Side.SELL) and t.sequence == 100 + i
    b = recs[i - 1] if not es.is_trade[i - 1] else recs[0]
    assert isinstance(b, RawBook) and len(b.bid_px_fp) == 10
    assert len({r.sequence for r in recs}) == len(recs)


async def test_close_stops_the_stream() -> None:
    feed = SimulatedMarket(SimSettings(trades_per_session=5000), ["MES"])
    n = 0
    async for ev in feed:
        if isinstance(ev, RawTrade | RawBook):
            n += 1
            if n == 50:
                await feed.close()
    assert n == 50
    assert feed.state == FeedState.STOPPED
    assert feed.stats["events"] == 50 and feed.stats["sessions"] == 1


async def test_speed_zero_streams_a_session_quickly() -> None:
    feed = SimulatedMarket(SimSettings(trades_per_session=60_000, speed=0), ["ES"])
    t0 = time.monotonic()
    n = sum([1 async for ev in feed if isinstance(ev, RawTrade)])
    assert n == 60_000
    assert time.monotonic() - t0 < 15  # ~1 s on a quiet machine; a real session would take 23 hours


async def test_speed_keeps_relative_timing() -> None:
    speed = 600.0  # ten simulated minutes per wall second
    feed = SimulatedMarket(SimSettings(trades_per_session=60_000, speed=speed), ["ES"])
    seen: list[tuple[int, float]] = []
    async for ev in feed:
        if isinstance(ev, RawTrade | RawBook):
            seen.append((ev.ts_event, time.monotonic()))
            if ev.ts_event - seen[0][0] >= 150 * 10**9:  # 2.5 simulated minutes = 0.25 s
                break
    await feed.close()
    ts0, wall0 = seen[0]
    assert len(seen) > 3
    for ts, wall in seen[1:]:
        assert wall - wall0 >= (ts - ts0) / 1e9 / speed - 0.005  # never early
    expected = (seen[-1][0] - ts0) / 1e9 / speed
    assert expected >= 0.25
    assert seen[-1][1] - wall0 < expected + 0.25  # and not much late


@pytest.mark.bench
def test_generation_speed_full_day() -> None:
    session = calendar_for("equity").session_on(MONDAY)
    assert session is not None
    t0 = time.perf_counter()
    d = generate_session(ES, session, 750_000, np.random.default_rng(0))
    assert d.n_trades == 750_000
    assert time.perf_counter() - t0 < 3.0


def test_feed_default_settings_run_in_asyncio() -> None:
    """The factory's construction path with defaults (what ``make run`` streams)."""
    feed = SimulatedMarket(SimSettings(trades_per_session=1000), ["MES"])
    events = asyncio.run(collect(feed))
    assert sum(isinstance(e, RawTrade) for e in events) == 1000
    trades = [e for e in events if isinstance(e, RawTrade)]
    assert all(e.symbol == "MESH5" for e in trades)
