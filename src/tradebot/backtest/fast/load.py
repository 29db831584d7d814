"""One DBN day file as validated numpy columns, with the validator's verdict on every record.

Read with ``DBNStore.to_ndarray`` in chunks (bounded memory for an MBP-10 day), reduced per chunk to what the
rest of the fast path needs: per record its time, the trade (price in ticks, size, aggressor side), the best
bid and ask *after dropping empty levels* (what a ``BookUpdate`` shows as level 0) and, per configured depth N,
the top-N sizes and notionals the microstructure snapshot reports. The record-local rules of
:class:`tradebot.feeds.validation.Validator` (instrument, prices on the grid, sizes, crossed books) are
applied here, vectorised; the stream rules (time order, duplicate sequences, the price-jump filter) run in
:func:`tradebot.backtest.fast.kernels.validate_stream`, and trades without an exchange side get the validator's
inferred side (:func:`tradebot.backtest.fast.kernels.infer_sides`). The outcome is the validator's: the same events
accepted, the same rejections counted under the same names.

Anything this reader cannot reproduce exactly (several files, a mixed-schema capture, a status file, ``ts_out``
records, a truncated or corrupt file, foreign record types, timestamps past int64) raises
:class:`UnsupportedError`; the caller then runs the event path for that day. So does damaged or unusual input
whose verdicts the event path decides record by record: a record ahead of the wall clock or outside the file's
declared span, a file that declares no end, an implausible size (print or any book level), .
"""

from __future__ import annotations

import functools
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tradebot.backtest.fast import kernels as kn
from tradebot.core.contracts import ContractSpec, root_of, spec_for
from tradebot.feeds.dbn_convert import SymbolMap
from tradebot.feeds.dbn_files import DbnFileError, open_store, schema_of
from tradebot.feeds.validation import PLAUSIBLE_SIZE_FACTOR

I64 = NDArray[np.int64]
I8 = NDArray[np.int8]
B = NDArray[np.bool_]

CHUNK_BYTES = 4 << 20
"""Decoded bytes per step (~11k MBP-10 or ~52k TBBO records): the decoded file never sits in memory whole."""

SCHEMAS = ("trades", "tbbo", "mbp-1", "mbp-10")
_RTYPE = {"trades": 0x00, "tbbo": 0x01, "mbp-1": 0x01, "mbp-10": 0x0A}
_LEVELS = {"trades": 0, "tbbo": 1, "mbp-1": 1, "mbp-10": 10}
_ITEMSIZE = {"trades": 48, "tbbo": 80, "mbp-1": 80, "mbp-10": 368}
_TRADE_COLUMNS = frozenset({"ts", "tpre", "tpx", "tsz", "tside", "seq"})
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_ZSTD_RATIO = 40
"""Record-count bound from a compressed file's size (DBN compresses 5-10x; the bound only reserves address
space, and a file that beats it makes the columns grow once)."""


class UnsupportedError(Exception):
    """The day cannot be replayed exactly by the fast path; the message says why."""


@dataclass
class DepthColumns:
    """Per book record, the top-N aggregates of :func:`tradebot.orderflow.microstructure.depth` (N levels of
    the compacted book): sizes, and notionals in ticks x contracts (times the tick value = cents)."""

    bid_size: NDArray[np.int32]
    ask_size: NDArray[np.int32]
    bid_notional: NDArray[np.int32]
    ask_notional: NDArray[np.int32]




@dataclass
class DayColumns:
    """A day's validated columns, indexed by record (events addressed by position codes ``2r`` / ``2r + 1``)."""

    path: Path
    schema: str
    spec: ContractSpec
    raw_symbol: str
    rts: I64
    """``ts_event`` per record."""
    book_ok: B
    """The record's book event exists and was accepted."""
    trade_ok: B
    """The record's trade event exists and was accepted."""
    tpx: NDArray[np.int32]
    """Trade price, ticks (meaningful where ``trade_ok``)."""
    tsz: NDArray[np.int32]
    tside: I8
    bid: NDArray[np.int32]
    """Best bid after dropping empty levels, ticks; ``NO_PX`` when the side is empty."""
    ask: NDArray[np.int32]
    bid_sz: NDArray[np.int32]
    ask_sz: NDArray[np.int32]
    bid_levels: I8
    """Non-empty bid levels (the compacted book's length)."""
    ask_levels: I8
    depth: dict[int, DepthColumns] = field(default_factory=dict)
    rejects: Counter[str] = field(default_factory=Counter)

    @property
    def n(self) -> int:
        return int(self.rts.size)

    @functools.cached_property
    def trade_records(self) -> NDArray[np.int32]:
        """Records whose trade event was accepted, in stream order."""
        return np.flatnonzero(self.trade_ok).astype(np.int32)

    @functools.cached_property
    def book_records(self) -> NDArray[np.int32]:
        return np.flatnonzero(self.book_ok).astype(np.int32)

    @property
    def events(self) -> int:
        return int(self.book_ok.sum()) + int(self.trade_ok.sum())


def load_day(path: Path, symbol: str, *, depth_levels: tuple[int, ...], tolerance_ns: int, max_jump_ticks: int,
             jump_confirm_prints: int, max_size: int = 0, future_ns: int = 2_000_000_000,
             slack_ns: int = 21_600_000_000_000) -> DayColumns:
    """Read and validate one day file for ``symbol`` (its root's contract); raises :class:`UnsupportedError`."""
    spec = spec_for(symbol)
    root = spec.root
    size_bound = max_size or spec.large_order_size * PLAUSIBLE_SIZE_FACTOR
    now_limit = time.time_ns() + future_ns
    try:
        store = open_store(Path(path))
    except DbnFileError as exc:
        raise UnsupportedError(str(exc)) from exc
    schema = schema_of(store)
    if schema not in SCHEMAS:
        raise UnsupportedError(f"schema {schema or 'mixed'} (the fast path reads one of {', '.join(SCHEMAS)})")
    meta = store.metadata
    if meta.ts_out:
        raise UnsupportedError("records carry ts_out")
    if not meta.start or not meta.end:
        raise UnsupportedError("the file declares no time span (the event path checks each record's time)")
    span_lo, span_hi = int(meta.start) - slack_ns, int(meta.end) + slack_ns
    smap = SymbolMap.from_store(store)
    tick = spec.tick_fp
    n_levels = _LEVELS[schema]
    book_schema = n_levels > 0
    # Depths deeper than the file's book can never be shown (the tracker reports only depths it has seen).
    depth_ns = np.array([d for d in depth_levels if d <= n_levels], np.int64)
    names = ("ts", "tpre", "tpx", "tsz", "tside", "seq", "bpre", "bid", "ask", "bsz", "asz", "nbl", "nal", "bh1",
             "bh2")
    dtypes = {"ts": np.int64, "tpx": np.int32, "bid": np.int32, "ask": np.int32, "tsz": np.int32, "bsz": np.int32,
              "asz": np.int32, "seq": np.uint32, "tpre": np.int8, "tside": np.int8, "bpre": np.int8, "nbl": np.int8,
              "nal": np.int8, "bh1": np.int64, "bh2": np.int64, "dbs": np.int32, "das": np.int32, "dbn": np.int32,
              "dan": np.int32}
    nd = depth_ns.size if book_schema else 0
    itemsize = _ITEMSIZE[schema]
    # Columns are written in place, preallocated for an upper bound on the record count (pages past the records
    # actually decoded are never touched, so never resident); growing them is the rare exception. Decoding into
    # chunk-sized pieces and concatenating them instead would need the day twice over at the end.
    size = Path(path).stat().st_size
    cap = size * (_MAX_ZSTD_RATIO if meta_is_compressed(Path(path)) else 1) // itemsize + 1024
    cols: dict[str, NDArray[Any]] = {}

    def alloc(capacity: int) -> None:
        for k in names:
            rows = capacity if (book_schema or k in _TRADE_COLUMNS) else 0  # a trades file has no book columns
            new = np.empty(rows, dtypes[k])
            if k in cols:
                new[:min(rows, cols[k].size)] = cols[k][:rows]
            cols[k] = new
        for k in ("dbs", "das", "dbn", "dan"):
            new = np.empty((nd, capacity if book_schema else 0), dtypes[k])
            if k in cols:
                new[:, :cols[k].shape[1]] = cols[k]
            cols[k] = new

    alloc(cap)
    n = 0
    known_ids: dict[int, bool] = {}
    raw_symbol = ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a truncated file only warns in databento: here it is a fallback
        try:
            for chunk in store.to_ndarray(count=max(1024, CHUNK_BYTES // itemsize)):
                m = int(chunk.size)
                if m == 0:
                    continue
                if n + m > cap:
                    cap = max(2 * cap, n + m)
                    alloc(cap)
                f = chunk.dtype.fields
                iids = chunk["instrument_id"]
                first = int(iids[0])
                for u in ([first] if (iids == first).all() else np.unique(iids).tolist()):
                    if u not in known_ids:
                        sym = smap.get(int(u))
                        known_ids[u] = bool(sym) and root_of(sym) == root
                        if known_ids[u] and not raw_symbol:
                            raw_symbol = sym
                good = np.array([u for u, ok in known_ids.items() if ok], np.int64)
                raw = np.frombuffer(chunk.data, np.uint8)
                b0, b1 = (n, n + m) if book_schema else (0, 0)
                status = kn.decode_chunk(
                    raw, raw.view(np.uint32), raw.view(np.int64), m, chunk.dtype.itemsize, f["length"][1],
                    f["rtype"][1], f["instrument_id"][1], f["ts_event"][1], f["price"][1], f["size"][1],
                    f["action"][1], f["side"][1], f["sequence"][1], f["bid_px_00"][1] if book_schema else 0,
                    _RTYPE[schema], n_levels, book_schema, tick, good, depth_ns, *(cols[k][n:n + m] for k in (
                        "ts", "tpre", "tpx", "tsz", "tside", "seq")), *(cols[k][b0:b1] for k in (
                        "bpre", "bid", "ask", "bsz", "asz", "nbl", "nal")),
                    *(cols[k][:, b0:b1] for k in ("dbs", "das", "dbn", "dan")))
                if status == 1:
                    raise UnsupportedError("records of another type or length than the schema's")
                if status == 2:
                    raise UnsupportedError("a timestamp beyond int64 (undefined time)")
                if status == 3:
                    raise UnsupportedError("a price, or a book side's top-N ticks x size, beyond 2**31")
                _check_damage(raw, m, chunk.dtype.itemsize, f, n_levels, cols["ts"][n:n + m],
                              size_bound, now_limit, span_lo, span_hi)
                if book_schema:
                    cols["bh1"][b0:b1], cols["bh2"][b0:b1] = _book_hashes(raw, m, chunk.dtype.itemsize,
                                                                          f["bid_px_00"][1], n_levels)
                n += m
        except UnsupportedError:
            raise
        except Exception as exc:  # BentoError, BentoWarning (truncated), zstd errors: the event path decides
            why = f"file not decodable as whole {schema} records ({type(exc).__name__}: {exc})"
            raise UnsupportedError(why) from exc

    def col(name: str) -> NDArray[Any]:
        arr = cols.pop(name)
        return arr[:n] if book_schema or name in _TRADE_COLUMNS else np.empty(0, dtypes[name])

    rts = col("ts")
    tsz, tside, tticks = col("tsz"), col("tside"), col("tpx")
    seq = col("seq")
    tcodes = kn.validate_stream(col("tpre"), rts, seq, tticks, tolerance_ns, True, max_jump_ticks,
                                jump_confirm_prints, tticks, tsz, tside)
    rejects: Counter[str] = Counter()
    depth: dict[int, DepthColumns] = {}
    if book_schema:
        bh1, bh2 = col("bh1"), col("bh2")
        bcodes = kn.validate_stream(col("bpre"), rts, seq, tticks, tolerance_ns, False, 0, 0, bh1, bh2,
                                    np.zeros(n, np.int8))
        del bh1, bh2
        book_ok = bcodes == kn.OK
        _count(rejects, bcodes)
        del bcodes
        bid, ask, bsz, asz, nbl, nal = (col(k) for k in ("bid", "ask", "bsz", "asz", "nbl", "nal"))
        dbs, das, dbn, dan = (cols.pop(k) for k in ("dbs", "das", "dbn", "dan"))
        for di, nlev in enumerate(depth_ns.tolist()):
            depth[nlev] = DepthColumns(dbs[di, :n], das[di, :n], dbn[di, :n], dan[di, :n])
    else:
        book_ok = np.zeros(n, bool)
        bid = ask = np.full(n, kn.NO_PX, np.int32)
        bsz = asz = np.zeros(n, np.int32)
        nbl = nal = np.zeros(n, np.int8)
    del seq
    cols.clear()
    _count(rejects, tcodes)
    trade_ok = tcodes == kn.OK
    del tcodes
    if (tside[trade_ok] == 0).any():
        if sum(known_ids.values()) > 1:  # the validator infers per contract; these columns are one stream
            raise UnsupportedError("unsided trades of several contracts of one root")
        kn.infer_sides(trade_ok, tticks, tside, book_ok, bid, ask, book_schema)
    return DayColumns(Path(path), schema, spec, raw_symbol, rts, book_ok, trade_ok, tticks, tsz, tside, bid, ask,
                      bsz, asz, nbl, nal, depth, rejects)


def _check_damage(raw: NDArray[np.uint8], m: int, itemsize: int, fields: Any, n_levels: int, ts: I64,
                  size_bound: int, now_limit: int, span_lo: int, span_hi: int) -> None:
    """Raise :class:`UnsupportedError` for a chunk holding records the validator rejects record by record:
    a time past the wall clock or outside the file's declared span, or a size past the plausibility bound."""
    if ts.size and (int(ts.max()) > min(now_limit, span_hi) or int(ts[ts > 0].min(initial=span_lo)) < span_lo):
        raise UnsupportedError("a record ahead of the clock or outside the file's declared span")
    words = raw[:m * itemsize].view(np.uint32).reshape(m, itemsize // 4)
    sizes = [words[:, fields["size"][1] // 4]]
    if n_levels:
        lv = fields["bid_px_00"][1]
        for k in range(n_levels):
            base = (lv + 32 * k) // 4
            sizes += [words[:, base + 4], words[:, base + 5]]
    if any(int(s.max()) > size_bound for s in sizes):
        raise UnsupportedError("an implausible size (a print or book level beyond the contract's bound)")


_H1 = np.uint64(0x9E3779B97F4A7C15)
_H2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _book_hashes(raw: NDArray[np.uint8], m: int, itemsize: int, levels_at: int,
                 n_levels: int) -> tuple[I64, I64]:
    """Two independent 64-bit hashes per record of its levels' prices and sizes (what a ``RawBook`` holds, order
    counts aside): the book stream's duplicate rule compares contents, and 128 bits make a false match of two
    different books of one sequence number and timestamp practically impossible."""
    q = raw[:m * itemsize].view(np.uint64).reshape(m, itemsize // 8)
    h1 = np.full(m, 0x84222325, np.uint64)
    h2 = np.full(m, 0x1B873593, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n_levels):
            base = (levels_at + 32 * k) // 8
            for w in (q[:, base], q[:, base + 1], q[:, base + 2]):  # bid px, ask px, bid sz | ask sz
                h1 = (h1 ^ w) * _H1
                h2 = ((h2 + w) * _H2) ^ (h2 >> np.uint64(29))
    return h1.view(np.int64), h2.view(np.int64)


def meta_is_compressed(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == _ZSTD_MAGIC


def _count(rejects: Counter[str], codes: I8) -> None:
    bad = codes[codes > 0]
    if bad.size:
        for code, cnt in enumerate(np.bincount(bad).tolist()):
            if cnt:
                rejects[kn.CODE_NAMES[code]] += cnt
