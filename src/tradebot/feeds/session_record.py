"""Every live session's market data into the catalog, as DBN, so any live day can be replayed exactly.

The daemon hands this recorder each raw record the validation layer *accepted* (what the engine acted on, no
more, no less), so a replay of the file through the same validation gives the engine the same stream.
Per symbol and trading day the records go to ``<catalog>/LIVE.<FEED>/mbp-10/<ROOT>/<day>.dbn.zst``
(``LIVE.PROJECTX``, ``LIVE.RITHMIC``, ``LIVE.DATABENTO``: never mixed with history fetched from a vendor):

- a book update is an MBP-10 record (action modify) with every level the feed gave (one for a top-of-book
  feed; the empty levels are undefined and dropped again on reading);
- a trade is an MBP-10 record with action ``T``, the print's price, size and aggressor side, carrying the book in
  force; the reader turns it back into that book followed by the trade (the book unchanged, so the engine's
  state is the same as live).

Writes happen off the trading loop: rows are buffered and each full chunk is encoded, compressed and written
by one background thread (in order). A day's file is committed to the catalog when the trading day rolls and
when the daemon stops, and every ``record_checkpoint_seconds`` (15 minutes) of event time as a checkpoint; the
next part of the day merges the committed one, so a restart never loses the morning to the afternoon and a
kill -9 loses at most the records since the last checkpoint (the dead writer's temporary file, counted as
``partial_lost``).
"""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.calendar import calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import root_of, spec_for
from tradebot.core.logging import get_logger
from tradebot.core.types import RawBook, RawTrade, Side
from tradebot.feeds.catalog import Catalog, StagedFile

log = get_logger(__name__)

SCHEMA = "mbp-10"
LEVELS = 10
CHUNK_ROWS = 2048
RECORDED_FEEDS = frozenset({"databento", "projectx", "rithmic"})
"""Live futures feeds whose sessions are recorded (the others are files already, or stocks/crypto with
``tradebot data record``)."""


def dataset_for(feed: str) -> str:
    return f"LIVE.{feed.upper()}"


def instrument_id(root: str) -> int:
    """One stable id per root for the file's symbology (the vendor's id changes with every contract month)."""
    return zlib.crc32(f"live:{root}".encode()) & 0x7FFF_FFFF or 1


_Row = tuple[int, int, int, int, int, int, int, tuple[int, ...]]


@dataclass
class _Day:
    root: str
    day: dt.date
    open_ns: int
    close_ns: int
    meta: bytes
    commit_at_ns: int
    """Event time of the next checkpoint commit (a kill -9 loses at most this much of the day)."""
    staged: StagedFile | None = None
    ctx: Any = None
    writer: Any = None
    rows: list[_Row] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    merged: Counter[str] = field(default_factory=Counter)
    """What the earlier committed part of the day held (set on the recorder's thread)."""


class SessionRecorder:
    """Accepted raw records of a live session -> one DBN file per root and trading day in the catalog."""

    def __init__(self, catalog: Catalog, feed: str, *, checkpoint_seconds: float = 900.0) -> None:
        from tradebot.core.prices import UNDEF_PRICE

        self.commit_ns = int(checkpoint_seconds * 1_000_000_000)

        self.catalog = catalog
        self.dataset = dataset_for(feed)
        self.days: dict[str, _Day] = {}
        self.books: dict[str, tuple[int, ...]] = {}
        """Per root, the book in force (flattened levels, see :meth:`_levels`): a trade record carries it."""
        self._roots: dict[str, str] = {}
        self.written: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        """The recorder's thread counts too; the heartbeat reads a copy under the lock."""
        self._undef = int(UNDEF_PRICE)
        self._pad_px = (self._undef,) * LEVELS
        self._pad_sz = (0,) * LEVELS
        self._empty = self._pad_px * 2 + self._pad_sz * 2
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbn-record")

    # -- the daemon's calls -------------------------------------------------------------------------------

    def add(self, ev: RawTrade | RawBook) -> None:
        """One accepted record (cheap: a tuple appended; a full chunk is written in the background)."""
        try:
            root = self._roots.get(ev.symbol)
            if root is None:
                root = self._roots[ev.symbol] = root_of(ev.symbol) or ev.symbol
            ts = ev.ts_event
            d = self.days.get(root)
            if d is None or not d.open_ns <= ts < d.close_ns:
                d = self._day_for(root, ts)
            if type(ev) is RawBook:
                book = self._levels(ev)
                self.books[root] = book
                d.rows.append((ts, ev.ts_recv, ev.sequence, 0, self._undef, 0, 0, book))
                d.counts["books"] += 1
            elif type(ev) is RawTrade:
                book = self.books.get(root) or self._empty
                side = 1 if ev.side == Side.BUY else 2 if ev.side == Side.SELL else 0
                px = ev.price_fp if ev.price_fp is not None else self._undef
                d.rows.append((ts, ev.ts_recv, ev.sequence, 1, px, ev.size, side, book))
                d.counts["trades"] += 1
            else:
                return
            if len(d.rows) >= CHUNK_ROWS:
                self._flush(d)
            if ts >= d.commit_at_ns:
                with self._stats_lock:
                    self.stats["checkpoints"] += 1
                self._close(root, checkpoint=True)  # the next record reopens the day and merges this part
        except Exception as exc:  # recording must never stop trading: counted, logged, visible
            with self._stats_lock:
                self.stats["errors"] += 1
            if self.stats["errors"] <= 5:
                log.error("live session record failed", error=repr(exc))

    def close(self) -> list[dict[str, Any]]:
        """Commit every open day (the daemon is stopping); the committed files' catalog entries."""
        for root in list(self.days):
            self._close(root)
        self._pool.shutdown(wait=True)
        return self.written

    def snapshot(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "open_days": {r: d.day.isoformat() for r, d in self.days.items()},
                "rows": {r: dict(d.counts) for r, d in self.days.items()}, "files": len(self.written),
                **self._stats()}

    def _stats(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self.stats)

    # -- internals ----------------------------------------------------------------------------------------

    def _levels(self, ev: RawBook) -> tuple[int, ...]:
        """Bid prices, ask prices, bid sizes, ask sizes, ``LEVELS`` each (undefined / 0 beyond the feed's depth)."""
        u = self._undef
        bp = tuple(u if v is None else v for v in ev.bid_px_fp[:LEVELS])
        ap = tuple(u if v is None else v for v in ev.ask_px_fp[:LEVELS])
        bs, az = ev.bid_sz[:LEVELS], ev.ask_sz[:LEVELS]
        return (bp + self._pad_px[len(bp):] + ap + self._pad_px[len(ap):]
                + bs + self._pad_sz[len(bs):] + az + self._pad_sz[len(az):])

    def _day_for(self, root: str, ts_ns: int) -> _Day:
        day = calendar_for(spec_for(root).session).trading_day(ts_ns)
        cur = self.days.get(root)
        if cur is not None and cur.day != day:
            self._close(root)
            cur = None
        if cur is None:
            cur = self.days[root] = self._open(root, day, ts_ns)
        return cur

    def _open(self, root: str, day: dt.date, ts_ns: int) -> _Day:
        from tradebot.feeds.dbn_write import metadata_bytes

        sess = calendar_for(spec_for(root).session).session_on(day)
        start, end = (sess.open_ns, sess.close_ns) if sess is not None else (0, 0)
        meta = metadata_bytes(dataset=self.dataset, schema=SCHEMA, start_ns=start, end_ns=end, symbol=root,
                              instrument_id=instrument_id(root))
        d = _Day(root, day, start, end, meta, ts_ns + self.commit_ns)
        self._submit(self._begin, d)
        return d

    def _submit(self, fn: Any, *args: Any) -> None:
        """Every file operation runs on the recorder's one thread, in order; a failure is counted and logged."""
        def job() -> None:
            try:
                fn(*args)
            except Exception as exc:
                with self._stats_lock:
                    self.stats["errors"] += 1
                log.error("live session recording failed", step=getattr(fn, "__name__", "?"), error=repr(exc))

        self._pool.submit(job)

    def _begin(self, d: _Day) -> None:
        """(Recorder thread) stage the day's file; a part committed earlier (a restart, a checkpoint) comes first."""
        from tradebot.feeds.dbn_write import DbnWriter, read_all

        lost = self.catalog.partials(self.dataset, SCHEMA, d.root, d.day)
        if lost:
            with self._stats_lock:
                self.stats["partial_lost"] += len(lost)
            log.warning("a recorded part of the day was lost (the process was killed while recording)",
                        symbol=d.root, day=d.day.isoformat(), files=len(lost))
        earlier = self.catalog.find(self.dataset, SCHEMA, d.root, d.day)
        d.ctx = self.catalog.stage(self.dataset, SCHEMA, d.root, d.day)
        d.staged = d.ctx.__enter__()
        d.writer = DbnWriter(d.staged.path, d.meta, compress=True)
        if earlier is not None:
            raw = read_all(earlier)
            d.writer.write(raw[8 + int.from_bytes(raw[4:8], "little"):])
            info = self.catalog.info(earlier)
            d.merged.update({k: int(info.get(k, 0)) for k in ("books", "trades", "sessions")})

    def _flush(self, d: _Day) -> None:
        rows, d.rows = d.rows, []
        if rows:
            self._submit(self._write, d, rows)

    def _write(self, d: _Day, rows: list[_Row]) -> None:
        import numpy as np

        from tradebot.feeds.dbn_write import ACTION_MODIFY, ACTION_TRADE, F_LAST, SIDE_NONE, empty_records

        n = len(rows)
        head = np.array([r[:7] for r in rows], dtype=np.int64)
        lv = np.array([r[7] for r in rows], dtype=np.int64).reshape(n, 4, LEVELS)
        rec = empty_records(SCHEMA, n)
        rec["instrument_id"] = instrument_id(d.root)
        rec["ts_event"] = head[:, 0]
        rec["ts_recv"] = head[:, 1]
        rec["sequence"] = head[:, 2] & 0xFFFF_FFFF
        trade = head[:, 3] == 1
        rec["action"] = np.where(trade, ACTION_TRADE, ACTION_MODIFY)
        rec["side"] = np.where(trade, np.array([b"N", b"B", b"A"])[head[:, 6]], SIDE_NONE)
        rec["price"] = head[:, 4]
        rec["size"] = head[:, 5]
        rec["flags"] = F_LAST
        levels = rec["levels"]
        levels["bid_px"][:] = lv[:, 0]
        levels["ask_px"][:] = lv[:, 1]
        levels["bid_sz"][:] = lv[:, 2]
        levels["ask_sz"][:] = lv[:, 3]
        assert d.writer is not None
        d.writer.write(rec)

    def _close(self, root: str, checkpoint: bool = False) -> None:
        """Commit the day's file (in the background): at the day's end, the daemon's stop, or a checkpoint."""
        d = self.days.pop(root)
        self._flush(d)
        counts = Counter(d.counts)
        if not checkpoint:
            counts["sessions"] += 1
        self._submit(self._finish, d, counts, checkpoint)

    def _finish(self, d: _Day, counts: Counter[str], checkpoint: bool) -> None:
        """(Recorder thread) close and commit; the committed file holds every earlier part too."""
        try:
            if d.writer is None or d.staged is None:
                return
            d.writer.close()
            total = counts + d.merged
            if total["trades"] + total["books"] > 0:
                info = {"source": f"live:{self.dataset}", "dataset": self.dataset, "schema": SCHEMA, "symbol": d.root,
                        "trading_date": d.day.isoformat(), **dict(total), "checkpoint": checkpoint,
                        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
                path = d.staged.commit(info)
                self.written = [w for w in self.written if w["path"] != str(path)] + [{**info, "path": str(path)}]
                log.info("live session recorded", path=str(path), trades=total["trades"], books=total["books"],
                         checkpoint=checkpoint)
        finally:
            if d.ctx is not None:
                d.ctx.__exit__(None, None, None)


def live_recorder(settings: Settings, feed: str) -> SessionRecorder | None:
    """The recorder for a live futures feed (``TRADEBOT_DAEMON__RECORD_LIVE``, on), else ``None``."""
    if feed not in RECORDED_FEEDS or not settings.daemon.record_live:
        return None
    from tradebot.feeds.catalog import catalog_root

    return SessionRecorder(Catalog(catalog_root(settings.data_dir)), feed,
                           checkpoint_seconds=settings.daemon.record_checkpoint_seconds)
