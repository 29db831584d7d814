"""``tradebot data synth``: multi-day synthetic market data as real DBN files in the catalog layout.

The sessions are exactly those of the built-in simulated market (:func:`tradebot.feeds.simulated.iter_sessions`
with the same seed, start date, trades per session and depth), so a backtest over these files sees what
``tradebot run`` with the simulated feed would have streamed: same prices, sizes, sides, timestamps and
sequence numbers (sequences continue across days as in the feed, so a multi-day replay never repeats one).

Files are real DBN (metadata with dataset, schema, time span, raw symbol and its instrument-id mapping), so
:class:`~tradebot.feeds.dbn_files.DbnFileFeed` and ``tradebot data inspect`` read them like vendor files.
The default dataset is ``SIM.GLBX``, not ``GLBX.MDP3``: synthetic data must never pass for a real download
in a shared catalog. Encoding is vectorised (numpy structured arrays laid out as DBN records, see
:mod:`tradebot.feeds.dbn_write`), in row chunks so memory stays bounded for an MBP-10 day.

Schemas: ``tbbo`` (each trade with the book before it), ``trades``, ``mbp-1`` and ``mbp-10`` (every book
update and trade; book updates carry the side, level, price and size that changed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tradebot.core.calendar import calendar_for
from tradebot.core.config import ConfigError, Settings, SimSettings
from tradebot.core.contracts import CONTRACTS, UnknownContractError, spec_for
from tradebot.feeds.catalog import MARKET_SCHEMAS, SIM_DATASET, Catalog, CatalogError
from tradebot.feeds.dbn_write import (
    ACTION_ADD,
    ACTION_CANCEL,
    ACTION_TRADE,
    F_LAST,
    F_SNAPSHOT,
    SIDE_ASK,
    SIDE_BID,
    SIDE_NONE,
    UNDEF_PRICE,
    empty_records,
    metadata_bytes,
    write_dbn,
)
from tradebot.feeds.simulated import SessionData, iter_sessions

DEFAULT_DATASET = SIM_DATASET
PUBLISHER_ID = 1
"""GLBX.MDP3's publisher id: the synthetic venue is a Globex look-alike."""
CHUNK_ROWS = 1 << 17
"""Rows encoded per step: ~48 MB of MBP-10 records, small enough to keep peak memory flat."""
SYNTH_SCHEMAS = MARKET_SCHEMAS


def instrument_id_for(root: str) -> int:
    """The simulated market's instrument id for a root (the same the live simulated feed uses)."""
    return 1 + list(CONTRACTS).index(root)


def _counts(sizes: NDArray[np.int64]) -> NDArray[np.uint32]:
    """Orders behind a displayed size: ~3 lots per order, at least one (only for the ``*_ct`` fields)."""
    return np.maximum(1, (sizes + 2) // 3).astype(np.uint32)


def _book_changes(data: SessionData, lo: int, hi: int) -> tuple[NDArray[Any], ...]:
    """For book rows ``lo:hi``: (action, side, depth, price fp, size) of the level that changed.

    The change is found against the previous book row: the shallowest level that differs on either side
    (bid first on a tie). A level that gained size or a better price is an add, one that lost size or
    vanished is a cancel, as a vendor's MBP stream would label it. The first book row of a session is the
    opening snapshot.
    """
    tick = data.tick_fp
    depth = data.depth
    prev = np.arange(lo - 1, hi - 1)
    first = prev < 0
    prev = np.maximum(prev, 0)
    cur_b, cur_bs = data.bid_px[lo:hi], data.bid_sz[lo:hi]
    cur_a, cur_as = data.ask_px[lo:hi], data.ask_sz[lo:hi]
    pb, pbs, pa, pas = data.bid_px[prev], data.bid_sz[prev], data.ask_px[prev], data.ask_sz[prev]
    bid_diff = (cur_b != pb) | (cur_bs != pbs)
    ask_diff = (cur_a != pa) | (cur_as != pas)
    has_b, has_a = bid_diff.any(axis=1), ask_diff.any(axis=1)
    lvl_b = np.where(has_b, bid_diff.argmax(axis=1), depth)
    lvl_a = np.where(has_a, ask_diff.argmax(axis=1), depth)
    on_bid = has_b & (lvl_b <= lvl_a)
    on_bid |= first
    lvl = np.where(on_bid, lvl_b, lvl_a)
    lvl = np.where(first, 0, lvl)
    rows = np.arange(hi - lo)
    safe = np.minimum(lvl, depth - 1)
    px_new = np.where(on_bid, cur_b[rows, safe], cur_a[rows, safe])
    px_old = np.where(on_bid, pb[rows, safe], pa[rows, safe])
    sz_new = np.where(on_bid, cur_bs[rows, safe], cur_as[rows, safe]).astype(np.int64)
    sz_old = np.where(on_bid, pbs[rows, safe], pas[rows, safe]).astype(np.int64)
    # A better price (higher bid, lower ask) or more size at the same price is an add; anything else a cancel.
    better = np.where(on_bid, px_new > px_old, px_new < px_old)
    added = better | ((px_new == px_old) & (sz_new > sz_old)) | first
    changed = has_b | has_a | first
    action = np.where(added, ACTION_ADD, ACTION_CANCEL)
    side = np.where(changed, np.where(on_bid, SIDE_BID, SIDE_ASK), SIDE_NONE)
    price = np.where(changed, px_new * tick, UNDEF_PRICE)
    return action, side, np.where(changed, lvl, 0).astype(np.uint8), price, np.where(changed, sz_new, 0)


def _fill_levels(rec: NDArray[Any], data: SessionData, book: NDArray[np.int64], levels: int) -> None:
    tick = data.tick_fp
    lv = rec["levels"]
    n = min(levels, data.depth)
    bpx = data.bid_px[book, :n] * tick
    apx = data.ask_px[book, :n] * tick
    bsz = data.bid_sz[book, :n].astype(np.int64)
    asz = data.ask_sz[book, :n].astype(np.int64)
    lv["bid_px"][:, :n] = bpx
    lv["ask_px"][:, :n] = apx
    lv["bid_sz"][:, :n] = bsz
    lv["ask_sz"][:, :n] = asz
    lv["bid_ct"][:, :n] = _counts(bsz)
    lv["ask_ct"][:, :n] = _counts(asz)
    if n < levels:  # a shallower simulated book: the rest is undefined, as in a thin real book
        lv["bid_px"][:, n:] = UNDEF_PRICE
        lv["ask_px"][:, n:] = UNDEF_PRICE


def session_records(data: SessionData, schema: str, *, instrument_id: int, sequence_start: int = 1,
                    chunk_rows: int = CHUNK_ROWS) -> Iterator[NDArray[Any]]:
    """The session as DBN records of ``schema``, in chunks of at most ``chunk_rows`` records.

    ``sequence`` is ``sequence_start + row`` for every schema, so a trade keeps the same sequence number in a
    TBBO and an MBP-10 file of the same session (and the same as the simulated feed gives it).
    """
    if schema not in SYNTH_SCHEMAS:
        raise ValueError(f"cannot write schema {schema!r}; one of {', '.join(SYNTH_SCHEMAS)}")
    rows_all = data.trade_rows if schema in ("tbbo", "trades") else np.arange(data.n_rows, dtype=np.int64)
    levels = {"tbbo": 1, "mbp-1": 1, "mbp-10": 10}.get(schema, 0)
    for lo in range(0, rows_all.size, chunk_rows):
        rows = rows_all[lo:lo + chunk_rows]
        rec = empty_records(schema, rows.size)
        rec["publisher_id"] = PUBLISHER_ID
        rec["instrument_id"] = instrument_id
        ts_event = data.ts_event[rows]
        ts_recv = data.ts_recv[rows]
        rec["ts_event"] = ts_event
        rec["ts_recv"] = ts_recv
        rec["ts_in_delta"] = np.minimum(ts_recv - ts_event, np.iinfo(np.int32).max)
        rec["sequence"] = (sequence_start + rows) & 0xFFFF_FFFF
        rec["flags"] = F_LAST
        trade = data.is_trade[rows]
        rec["action"] = np.where(trade, ACTION_TRADE, ACTION_ADD)
        rec["side"] = np.where(data.side[rows] > 0, SIDE_BID, SIDE_ASK)
        rec["price"] = data.price[rows] * data.tick_fp
        rec["size"] = data.size[rows]
        if levels:
            _fill_levels(rec, data, data.book_idx[rows], levels)
        if schema in ("mbp-1", "mbp-10") and not trade.all():
            book_pos = np.flatnonzero(~trade)
            b_lo, b_hi = int(data.book_idx[rows[book_pos[0]]]), int(data.book_idx[rows[book_pos[-1]]]) + 1
            action, side, depth, price, size = _book_changes(data, b_lo, b_hi)
            rec["action"][book_pos] = action
            rec["side"][book_pos] = side
            rec["depth"][book_pos] = depth
            rec["price"][book_pos] = price
            rec["size"][book_pos] = size
            if b_lo == 0:
                rec["flags"][book_pos[0]] = F_LAST | F_SNAPSHOT
        yield rec


# --- days in the catalog -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthDay:
    day: dt.date
    symbol: str
    path: Path
    trades: int
    records: int
    raw_bytes: int
    file_bytes: int
    sha256: str
    seconds: float
    """Encoding and writing only (generation is timed separately)."""
    generate_seconds: float


def synthesize(out: Path, *, symbol: str, days: int, start: dt.date, trades_per_day: int, seed: int,
               schema: str = "tbbo", dataset: str = DEFAULT_DATASET, depth: int = 10,
               start_price: Decimal | str | None = None,
               progress: Callable[[SynthDay], None] | None = None) -> list[SynthDay]:
    """Write ``days`` trading days from ``start`` (weekends and holidays skipped) into the catalog at ``out``.

    ``start_price`` opens the first day there (default: the simulator's 2025 level for the contract); each
    later day opens at the previous day's last price.
    """
    try:
        spec = spec_for(symbol)
    except UnknownContractError:
        raise ConfigError(f"--symbol {symbol}: unknown contract; one of {', '.join(CONTRACTS)}") from None
    if schema not in SYNTH_SCHEMAS:
        raise ConfigError(f"--schema {schema}: synthetic data is written as one of {', '.join(SYNTH_SCHEMAS)}")
    if days < 1 or trades_per_day < 1:
        raise ConfigError("--days and --trades-per-day must be at least 1")
    if not 1 <= depth <= 10:
        raise ConfigError("book depth must be 1..10")
    try:
        start_ticks = None if start_price is None else spec.to_ticks(start_price)
    except (ValueError, ArithmeticError):
        raise ConfigError(f"--start-price {start_price}: not a price on the {spec.root} tick grid "
                          f"({spec.tick_size})") from None
    if start_ticks is not None and start_ticks <= 10:
        raise ConfigError(f"--start-price {start_price}: too low for a ten-level book")
    cal = calendar_for(spec.session)
    sessions = [s for s in cal.sessions if s.trading_date >= start][:days]
    if start < cal.first_date or len(sessions) < days:
        raise ConfigError(f"--start {start} --days {days}: outside the exchange calendar "
                          f"({cal.first_date} to {cal.last_date})")
    sim = SimSettings(seed=seed, trades_per_session=trades_per_day, book_depth=depth, sessions=days,
                      start_date=start.isoformat())
    catalog = Catalog(out)
    inst = instrument_id_for(spec.root)
    written: list[SynthDay] = []
    seq = 1
    t_gen = time.perf_counter()
    for data in iter_sessions(sim, spec, start_ticks):
        gen_s = time.perf_counter() - t_gen
        t0 = time.perf_counter()
        s = data.session
        meta = metadata_bytes(dataset=dataset, schema=schema, start_ns=s.open_ns, end_ns=s.close_ns,
                              symbol=data.symbol, instrument_id=inst)
        n_records = data.n_trades if schema in ("tbbo", "trades") else data.n_rows
        with catalog.stage(dataset, schema, spec.root, s.trading_date) as staged:
            raw = write_dbn(staged.path, meta, session_records(data, schema, instrument_id=inst, sequence_start=seq),
                            compress=True)
            final = staged.commit({
                "source": "synthetic", "generator": "tradebot.feeds.simulated", "seed": seed,
                "start_date": start.isoformat(), "session_index": len(written), "trades_per_day": trades_per_day,
                "book_depth": depth, "start_price": None if start_price is None else str(start_price),
                "contract": data.symbol, "dataset": dataset, "schema": schema,
                "trades": data.n_trades, "records": n_records,
            })
        day = SynthDay(s.trading_date, data.symbol, final, data.n_trades, n_records, raw, final.stat().st_size,
                       catalog.fingerprint(final), time.perf_counter() - t0, gen_s)
        written.append(day)
        if progress is not None:
            progress(day)
        seq += data.n_rows
        t_gen = time.perf_counter()
    return written


# --- command ---------------------------------------------------------------------------------------------


def _date(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: not a date (YYYY-MM-DD)") from None


def synth_command(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when every day was written, 2 for bad arguments, 1 when writing failed."""
    sim = settings.sim
    try:
        start = _date(args.start, "--start") if args.start is not None else sim.start_date
    except ConfigError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    trades = args.trades_per_day if args.trades_per_day is not None else sim.trades_per_session
    seed = args.seed if args.seed is not None else sim.seed
    symbol = args.symbol or settings.trading_symbol
    t0 = time.perf_counter()

    def report(d: SynthDay) -> None:
        rate = d.records / d.seconds if d.seconds > 0 else 0.0
        print(f"{d.day}  {d.symbol}  {d.trades:>10,} trades  {d.records:>10,} records  "
              f"{d.file_bytes / 1e6:8.1f} MB  generate {d.generate_seconds:5.2f} s  write {d.seconds:5.2f} s "
              f"({rate:,.0f} records/s)  {d.sha256[:12]}", flush=True)

    try:
        days = synthesize(args.out, symbol=symbol, days=args.days, start=start, trades_per_day=trades, seed=seed,
                          schema=args.schema, dataset=args.dataset, depth=sim.book_depth,
                          start_price=getattr(args, "start_price", None), progress=report)
    except (ConfigError, CatalogError) as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"synth: cannot write under {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - t0
    n_trades = sum(d.trades for d in days)
    write_s = sum(d.seconds for d in days)
    where = days[0].path.parent if days else args.out
    raw_mb = sum(d.raw_bytes for d in days) / 1e6
    print(f"wrote {len(days)} day(s), {n_trades:,} trades, {sum(d.file_bytes for d in days) / 1e6:.1f} MB to {where} "
          f"in {total:.1f} s (writing {write_s:.1f} s: {raw_mb / max(write_s, 1e-9):,.0f} MB/s of DBN)")
    return 0


__all__ = [
    "DEFAULT_DATASET", "SYNTH_SCHEMAS", "SynthDay", "instrument_id_for", "session_records",
    "synth_command", "synthesize",
]
