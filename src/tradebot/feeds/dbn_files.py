"""Databento DBN files (``.dbn``, ``.dbn.zst``) as a replayable feed.

Conversion is :mod:`tradebot.feeds.dbn_convert`'s job, shared with the live gateway so both paths agree on
sides and symbols; this module decides *which* records to read and *who owns trades*: a trade must count
once even when the same prints arrive as ``TradeMsg`` in one file and as action-``T`` book records in
another (or in the same mixed live capture). Several files are merged in receive-time order.

A file that cannot be opened is refused at construction (:class:`DbnFileError`, a clear message); a file
that turns out corrupt or truncated part-way is counted (``decode_errors`` / ``truncated_files``), logged,
reported as a :class:`FeedStatus`, and the replay carries on with the other files.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn

from tradebot.core.logging import get_logger
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, RawRecord, RawStatus
from tradebot.feeds.base import GeneratorFeed, Pacer
from tradebot.feeds.dbn_convert import DbnConverter, SymbolMap

READ_SIZE = 1 << 16
"""Bytes decoded per step (~800 MBP-1 records): the per-chunk overhead is already negligible, and a corrupt
record costs at most the records decoded with it in one step (the decoder gives all or nothing)."""

BOOK_SCHEMAS = ("tbbo", "mbp-1", "mbp-10")
SUPPORTED_SCHEMAS = ("trades", *BOOK_SCHEMAS, "status")
_TRADE_RANK = {"trades": 3, "tbbo": 2, "mbp-1": 1, "mbp-10": 0}
"""Which source owns trades when files overlap: a dedicated trades stream, then the trade-aligned TBBO,
then the shallower book (its action-``T`` records are the same prints)."""

_MAX_TS = 1 << 63
_CONTROL_TYPES: tuple[type, ...] = (dbn.SymbolMappingMsg, dbn.InstrumentDefMsg, dbn.SystemMsg, dbn.ErrorMsg)
"""Records that carry no market data but keep symbology or report state: never filtered out."""


class DbnFileError(ValueError):
    """A DBN file that cannot be replayed at all (missing, empty, not DBN, unsupported schema)."""


def _is_trade_tbbo(rec: Any) -> bool:
    return type(rec) is dbn.MBP1Msg and rec.action == "T"


_SCHEMA_FILTERS: dict[str, Callable[[Any], bool]] = {
    "trades": lambda rec: type(rec) is dbn.TradeMsg,
    "tbbo": _is_trade_tbbo,
    "mbp-1": lambda rec: type(rec) is dbn.MBP1Msg,
    "mbp-10": lambda rec: type(rec) is dbn.MBP10Msg,
    "status": lambda rec: type(rec) is dbn.StatusMsg,
}


def open_store(path: Path) -> Any:
    """``DBNStore.from_file`` with every way it fails turned into one clear :class:`DbnFileError`."""
    if not path.is_file():
        raise DbnFileError(f"{path}: no such file")
    try:
        return db.DBNStore.from_file(path)
    except Exception as exc:  # BentoError, DBNError, ValueError (empty), OSError: all "not a DBN file"
        raise DbnFileError(f"{path}: not a readable DBN file ({type(exc).__name__}: {exc})") from exc


def schema_of(store: Any) -> str | None:
    """The file's schema as Databento spells it (``mbp-10``), ``None`` for a mixed-schema capture."""
    schema = store.schema
    return None if schema is None else str(getattr(schema, "value", schema))


def iter_dbn(store: Any, stats: Counter[str]) -> Iterator[Any]:
    """Every record of a store, with corruption and truncation counted instead of raised or warned.

    ``DBNStore.__iter__`` only *warns* on a truncated file and raises mid-stream on a corrupt one; a replay
    needs both as counted outcomes, so this mirrors its loop with those two cases handled.
    """
    # The stub declares the enum's members as ``int``; the runtime value is the enum member.
    decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)  # type: ignore[arg-type]
    try:
        reader = store.reader
        while True:
            raw = reader.read(READ_SIZE)
            if not raw:
                break
            records = decoder.write_and_decode(raw)
            if records and type(records[0]) is dbn.Metadata:
                records = records[1:]
            stats["dbn_records"] += len(records)
            yield from records
        decoder.decode()
        if len(decoder.buffer()) > 0:
            stats["truncated_files"] += 1
            raise _TruncatedError(f"ends in an incomplete record ({len(decoder.buffer())} bytes left over)")
    except _TruncatedError:
        raise
    except Exception as exc:  # DBNError (bad rtype/length), ZstdError, OSError
        stats["decode_errors"] += 1
        raise _CorruptError(f"{type(exc).__name__}: {exc}") from exc


class _TruncatedError(Exception):
    pass


class _CorruptError(Exception):
    pass


def has_trade_msgs(store: Any) -> bool:
    """Whether a mixed capture carries ``TradeMsg`` records (stops at the first; a corrupt file says no)."""
    scratch: Counter[str] = Counter()
    try:
        return any(type(rec) is dbn.TradeMsg for rec in iter_dbn(store, scratch))
    except (_TruncatedError, _CorruptError):
        return False


@dataclass
class DbnFile:
    """One input file and the decisions made about it before replay."""

    path: Path
    store: Any
    schema: str | None
    """The file's own schema; ``None`` for a mixed capture."""
    dataset: str
    symbols: frozenset[str]
    start: int = 0
    end: int = _MAX_TS
    """The span the metadata says the file covers (end exclusive); unbounded when it does not say."""
    accept: Callable[[Any], bool] | None = None
    """Record filter from ``schema=`` for a mixed capture (control records always pass)."""
    trade_msgs: bool = False
    """The file delivers trades as ``TradeMsg`` (a trades file, or a capture that includes trades)."""
    book_trades: bool = False
    """The file's book records carry action-``T`` trades."""
    trades_from_book: bool = True
    converter: DbnConverter | None = None
    """The converter of the latest pass (its symbol map has learnt in-stream mappings)."""

    @property
    def rank(self) -> int:
        if self.trade_msgs:
            return _TRADE_RANK["trades"]
        return _TRADE_RANK.get(self.schema or "mbp-1", 0)

    def overlaps(self, other: DbnFile) -> bool:
        """Could both files hold the same prints? Unknown dataset, symbols or span count as "yes"."""
        if self.dataset and other.dataset and self.dataset != other.dataset:
            return False
        if self.symbols and other.symbols and not self.symbols & other.symbols:
            return False
        return self.start < other.end and other.start < self.end


def prepare_files(paths: list[Path], schema: str | None = None, *,
                  allow_any_schema: bool = False) -> list[DbnFile]:
    """Open every file and decide per file what to read and whether its book records emit trades."""
    if schema is not None and schema not in SUPPORTED_SCHEMAS:
        raise DbnFileError(f"schema {schema!r} is not replayable; choose one of {', '.join(SUPPORTED_SCHEMAS)}")
    files: list[DbnFile] = []
    for path in paths:
        store = open_store(path)
        own = schema_of(store)
        if own is not None and schema is not None and own != schema:
            raise DbnFileError(f"{path}: holds {own} records, not the requested {schema}")
        if own is not None and own not in SUPPORTED_SCHEMAS and not allow_any_schema:
            raise DbnFileError(f"{path}: schema {own} carries no trades or book; replayable schemas: "
                               f"{', '.join(SUPPORTED_SCHEMAS)}")
        meta = store.metadata
        f = DbnFile(path, store, own, str(store.dataset or ""), frozenset(s for s in (store.symbols or []) if s),
                    start=int(meta.start or 0), end=int(meta.end) if meta.end else _MAX_TS)
        if own is None:
            f.accept = _SCHEMA_FILTERS[schema] if schema is not None else None
            f.trade_msgs = schema == "trades" or (schema is None and has_trade_msgs(store))
            f.book_trades = schema in BOOK_SCHEMAS or schema is None
        else:
            f.trade_msgs = own == "trades"
            f.book_trades = own in BOOK_SCHEMAS
        files.append(f)
    for f in files:
        if f.trade_msgs:
            # The TradeMsg stream owns trades; the same capture's action-T book records repeat them.
            f.trades_from_book = False
            continue
        # Files of the same schema are different periods or sessions (day 1, day 2): each keeps its trades.
        f.trades_from_book = f.book_trades and not any(
            g.rank > f.rank and (g.trade_msgs or g.book_trades) and f.overlaps(g)
            for g in files if g is not f
        )
    return files


@dataclass
class RecordTally:
    """What a file holds at the DBN level (record types, event-time span), for ``tradebot data inspect``."""

    kinds: Counter[str] = field(default_factory=Counter)
    first_ts: int | None = None
    last_ts: int | None = None

    def add(self, rec: Any) -> None:
        self.kinds[type(rec).__name__] += 1
        ts = getattr(rec, "ts_event", None)
        if isinstance(ts, int) and 0 < ts < _MAX_TS:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)


def _order_key(rec: RawRecord) -> int:
    """Receive time where the vendor gave one (the order the data arrived in), else the event time."""
    if type(rec) is RawStatus:
        return rec.ts_event
    ts_recv: int = rec.ts_recv  # type: ignore[union-attr]
    return ts_recv if 0 < ts_recv < _MAX_TS else rec.ts_event


class DbnFileFeed(GeneratorFeed):
    """Replays DBN files through the shared converter, merged in time order and paced by ``speed``.

    ``speed``: 0 = as fast as possible, 1 = real time (relative timing kept), N = N times faster.
    ``schema``: pick one schema out of mixed-schema captures (single-schema files must match it).
    ``allow_any_schema``: open files whose schema carries no market data (``tradebot data inspect``).
    """

    def __init__(self, paths: list[Path], speed: float = 0.0, schema: str | None = None, *,
                 allow_any_schema: bool = False, count_kinds: bool = False) -> None:
        if not paths:
            raise DbnFileError("no DBN files given")
        Pacer(speed)  # rejects a negative speed now, not at first iteration
        self.paths = [Path(p) for p in paths]
        self.speed = speed
        self.schema = schema
        self.name = "dbn:" + ",".join(p.name for p in self.paths)
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self.tally: RecordTally | None = RecordTally() if count_kinds else None
        """DBN record types and event-time span seen, when asked for (inspection)."""
        self._log = get_logger("tradebot.feeds.dbn")
        self.files = prepare_files(self.paths, schema, allow_any_schema=allow_any_schema)
        self._closed = False
        self._gen: AsyncIterator[FeedEvent] | None = None
        self._failures: list[FeedStatus] = []


    def symbol_maps(self) -> dict[Path, SymbolMap]:
        """Per file, what its instrument ids mean (after a pass, including in-stream mappings)."""
        return {f.path: (f.converter.symbols if f.converter else SymbolMap.from_store(f.store)) for f in self.files}

    # -- reading -----------------------------------------------------------------------------------

    def _converted(self, f: DbnFile) -> Iterator[RawRecord]:
        """One file's raw records in file order (symbology records are applied as they come)."""
        conv = DbnConverter(SymbolMap.from_store(f.store), trades_from_book=f.trades_from_book,
                            source=f"dbn:{f.path.name}", logger=self._log)
        conv.stats = self.stats  # one live Counter for the heartbeat, across files
        f.converter = conv
        convert = conv.convert
        accept = f.accept
        tally = self.tally
        try:
            for rec in iter_dbn(f.store, self.stats):
                if tally is not None:
                    tally.add(rec)
                if accept is not None and not accept(rec) and not isinstance(rec, _CONTROL_TYPES):
                    self.stats["filtered"] += 1
                    continue
                yield from convert(rec)
        except _TruncatedError as exc:
            self._fail(f, "truncated", str(exc))
        except _CorruptError as exc:
            self._fail(f, "corrupt", str(exc))
        self.stats["files_done"] += 1

    def _fail(self, f: DbnFile, kind: str, detail: str) -> None:
        self._log.error("dbn file damaged; its remaining records are lost", path=str(f.path), kind=kind,
                        detail=detail)
        counts = {"decode_errors": self.stats["decode_errors"], "truncated_files": self.stats["truncated_files"]}
        self._failures.append(FeedStatus(time.time_ns(), FeedState.FAILED, self.name,
                                         f"{f.path.name}: {kind}: {detail}", counts))

    def _merged(self) -> Iterator[RawRecord]:
        if len(self.files) == 1:
            return self._converted(self.files[0])
        streams = [((_order_key(r), r) for r in self._converted(f)) for f in self.files]
        return (r for _, r in heapq.merge(*streams, key=lambda kr: kr[0]))

    async def _events(self) -> AsyncIterator[FeedEvent]:
        pacer = Pacer(self.speed)
        wait = pacer.wait
        self.state = FeedState.STREAMING
        self._failures.clear()
        paced = self.speed > 0  # at full speed the pacer only counts, so skip working out timestamps
        for rec in self._merged():
            if self._closed:
                return
            await wait(_order_key(rec) if paced else 0)
            while self._failures:
                yield self._failures.pop(0)
            yield rec
        while self._failures:
            yield self._failures.pop(0)
        self.state = FeedState.STOPPED
