"""Databento DBN files (``.dbn``, ``.dbn.zst``) as a replayable feed.

Conversion is :mod:`tradebot.feeds.dbn_convert`'s job, shared with the live gateway so both paths agree on
sides and symbols; this module decides *which* records to read and *who owns trades*: a trade must count
once even when the same prints arrive as ``TradeMsg`` in one file and as action-``T`` book records in
another (or in the same mixed live capture). Several files are merged in receive-time order.

A file that cannot be opened is refused at construction (:class:`DbnFileError`, a clear message); a file
that turns out corrupt or truncated part-way is counted (``decode_errors`` / ``truncated_files``), logged,
reported as a :class:`FeedStatus`, and the replay carries on with the other files.

Size: which records to read and who owns trades across several files is one merge over one reader; the damage
accounting (truncated or corrupt files) is part of that reader.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import numpy as np
import zstandard

from tradebot.core.instruments import register_from_dataset
from tradebot.core.logging import get_logger
from tradebot.core.types import FeedEvent, FeedState, RawRecord, RawStatus
from tradebot.feeds.base import GeneratorFeed, Pacer
from tradebot.feeds.dbn_convert import DbnConverter, SymbolMap
from tradebot.feeds.dbn_write import DbnScanError, decompressed_chunks

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


@dataclass
class DbnDamage:
    """One damaged stretch of a DBN file: what was lost, where, and between which good records."""

    kind: str
    """``bad_record`` (a record the decoder refuses, skipped by its length), ``resync`` (framing lost; bytes
    skipped to the next run of well-formed records), ``trailing_bytes`` (junk after the last record),
    ``truncated_record`` (the file ends inside a record), ``stream`` (the zstd stream is corrupt or cut short:
    nothing after the damage can be read)."""
    offset: int
    """Byte offset in the decompressed record stream (after the metadata)."""
    bytes_lost: int
    records_lost: int | None
    """Records lost (from the lost bytes and the file's record length); ``None`` when unknowable."""
    after_ns: int | None
    """``ts_event`` of the last good record before the damage (``None``: at the start)."""
    before_ns: int | None
    """``ts_event`` of the first good record after it (``None``: nothing readable after it)."""
    detail: str = ""

    def describe(self) -> str:
        lost = "an unknown number of records" if self.records_lost is None else f"{self.records_lost:,} record(s)"
        span = f"between {_iso(self.after_ns, 'the start')} and {_iso(self.before_ns, 'the end')}"
        return f"{self.kind} at byte {self.offset:,}: {lost} ({self.bytes_lost:,} bytes) lost {span}" + (
            f"; {self.detail}" if self.detail else "")


def _iso(ts: int | None, default: str) -> str:
    if ts is None:
        return default
    sec, ns = divmod(ts, 1_000_000_000)
    return dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def _raw_chunks(store: Any) -> Iterator[bytes]:
    """The decompressed stream (metadata first); raises :class:`DbnScanError` when the zstd stream is corrupt
    or ends inside a frame (``DBNStore`` reads such a file as if it were whole)."""
    path = getattr(getattr(store, "_data_source", None), "path", None)
    if path is not None:
        with Path(path).open("rb") as fh:
            yield from decompressed_chunks(fh)
        return
    reader = store.reader
    while raw := reader.read(READ_SIZE):
        yield raw


class _Reader:
    """Decodes a DBN record stream, reading past damage where the format allows.

    A clean stretch is decoded a chunk at a time by ``databento_dbn`` (the fast case, and the only one a clean
    file ever takes). When the decoder refuses a chunk, that chunk is walked record by record by the length
    byte: a record the decoder refuses but whose length matches its type's is skipped alone (``bad_record``);
    otherwise framing is lost and the walk looks for the next offset where two consecutive well-formed records
    start (``resync``). Every loss is a :class:`DbnDamage`.
    """

    def __init__(self, store: Any, stats: Counter[str]) -> None:
        meta = store.metadata
        self.version = int(meta.version)
        self.ts_out = bool(meta.ts_out)
        self.stats = stats
        self.damage: list[DbnDamage] = []
        self.lengths: dict[int, int] = {}
        """rtype -> record length in bytes, learnt from well-formed records."""
        self.last_ts: int | None = None
        self.offset = 0  # stream offset of the next undecoded byte (after the metadata)
        self._open: DbnDamage | None = None  # a damage still waiting for its first good record after it

    def _decoder(self) -> Any:
        # The stub declares the enum's members as ``int``; the runtime value is the enum member.
        return dbn.DBNDecoder(has_metadata=False, ts_out=self.ts_out, input_version=self.version,
                              upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)  # type: ignore[arg-type]

    def _good(self, recs: list[Any]) -> None:
        if not recs:
            return
        if self._open is not None:
            self._open.before_ns = _ts_of(recs[0])
            self._open = None
        for rec in reversed(recs):
            ts = _ts_of(rec)
            if ts is not None:
                self.last_ts = ts
                break

    def _lose(self, kind: str, offset: int, nbytes: int, detail: str = "", known: bool = True) -> None:
        typical = max(self.lengths.values(), default=0)
        records: int | None = -(-nbytes // typical) if typical and known else None
        if kind in ("bad_record", "truncated_record"):
            records = 1
        elif kind == "trailing_bytes":
            records = None  # junk is not records: nothing says any were there
        last = self._open
        if last is not None and last.offset + last.bytes_lost == offset:
            # One stretch of damage, read across chunk boundaries (or cut short by the end of the stream):
            # it keeps the name of how it ended.
            self.stats["records_lost"] -= last.records_lost or 0
            last.bytes_lost += nbytes
            last.kind = kind
            last.detail = detail
            last.records_lost = None if records is None else (
                records if kind in ("bad_record", "truncated_record") else -(-last.bytes_lost // typical))
            self.stats["records_lost"] += last.records_lost or 0
            return
        d = DbnDamage(kind, offset, nbytes, records, self.last_ts, None, detail)
        self.damage.append(d)
        self._open = d
        self.stats["damaged_" + kind] += 1
        self.stats["records_lost"] += records or 0

    def _one(self, buf: bytes | bytearray, pos: int) -> Any | None:
        """The record at ``pos`` if it is well formed (known type, its type's length, decodable)."""
        if pos + 2 > len(buf):
            return None
        length = buf[pos] * 4
        rtype = buf[pos + 1]
        if length < 16 or pos + length > len(buf):
            return None
        known = self.lengths.get(rtype)
        if known is not None and known != length:
            return None
        try:
            recs = self._decoder().write_and_decode(bytes(buf[pos:pos + length]))
        except Exception:  # DBNError: not a record
            return None
        if len(recs) != 1:
            return None
        self.lengths.setdefault(rtype, length)
        return recs[0]

    def _resync(self, buf: bytearray, start: int, final: bool) -> int | None:
        """The first offset >= ``start`` where two well-formed records follow each other (or one ends the
        stream); ``None`` when there is none in ``buf`` yet."""
        if self.lengths:
            view = np.frombuffer(bytes(buf[start:]), dtype=np.uint8)
            cand = np.zeros(max(0, view.size - 1), bool)
            for rtype, length in self.lengths.items():
                cand |= (view[1:] == rtype) & (view[:-1] == length // 4)
            positions = (np.flatnonzero(cand) + start).tolist()
        else:
            positions = list(range(start, len(buf) - 1))
        for p in positions:
            rec = self._one(buf, p)
            if rec is None:
                continue
            nxt = p + buf[p] * 4
            if nxt >= len(buf):
                if final and nxt == len(buf):
                    return p
                return None
            if self._one(buf, nxt) is not None:
                return p
        return None

    def careful(self, buf: bytearray, final: bool) -> tuple[list[Any], int]:
        """Walk ``buf`` record by record; (good records, bytes consumed)."""
        out: list[Any] = []
        pos = 0
        n = len(buf)
        while pos + 2 <= n:
            length = buf[pos] * 4
            if length >= 16 and pos + length > n and not final:
                break  # a record still arriving
            rec = self._one(buf, pos)
            if rec is not None:
                self._good([rec])
                out.append(rec)
                pos += length
                continue
            rtype = buf[pos + 1]
            if (length >= 16 and pos + length <= n and self.lengths.get(rtype, length) == length
                    and self.lengths and (pos + length == n or self._one(buf, pos + length) is not None)):
                # A record of the right length the decoder refuses (unknown type, bad enum): skip just it.
                self._lose("bad_record", self.offset + pos, length, f"record type 0x{rtype:02x} not decodable")
                pos += length
                continue
            if final and pos + length > n and self.lengths.get(rtype) == length:
                self._lose("truncated_record", self.offset + pos, n - pos, "the file ends inside a record")
                pos = n
                break
            nxt = self._resync(buf, pos + 1, final)
            if nxt is None:
                if final:
                    self._lose("trailing_bytes", self.offset + pos, n - pos, "no readable record after them")
                    pos = n
                    break
                keep = max(pos, n - 2 * max(self.lengths.values(), default=512))
                if keep > pos:
                    self._lose("resync", self.offset + pos, keep - pos, "framing lost")
                    pos = keep
                break
            self._lose("resync", self.offset + pos, nxt - pos, "framing lost")
            pos = nxt
        return out, pos

    def decode(self, buf: bytearray, final: bool) -> tuple[list[Any], int]:
        """Good records of ``buf`` and the bytes consumed (the rest is an incomplete record)."""
        if not buf:
            return [], 0
        dec = self._decoder()
        try:
            recs = dec.write_and_decode(bytes(buf))
        except Exception:  # DBNError: damage somewhere in this chunk
            return self.careful(buf, final)
        left = len(dec.buffer())
        if recs and len(buf) >= 2:
            self.lengths.setdefault(buf[1], buf[0] * 4)
        self._good(recs)
        if final and left:
            more, used = self.careful(bytearray(buf[len(buf) - left:]), True)
            return recs + more, len(buf) - left + used
        return recs, len(buf) - left


def _ts_of(rec: Any) -> int | None:
    ts = getattr(rec, "ts_event", None)
    return ts if isinstance(ts, int) and 0 < ts < _MAX_TS else None


def iter_dbn(store: Any, stats: Counter[str], damage: list[DbnDamage] | None = None) -> Iterator[Any]:
    """Every readable record of a store, reading past damage; each loss is appended to ``damage``.

    Counts: ``dbn_records`` (records decoded), ``damaged_<kind>`` and ``records_lost`` per :class:`DbnDamage`.
    """
    reader = _Reader(store, stats)
    buf = bytearray()
    meta_len: int | None = None
    stream_error: str | None = None
    chunks = _raw_chunks(store)
    try:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            buf += chunk
            if meta_len is None:
                if len(buf) < 8:
                    continue
                meta_len = 8 + int.from_bytes(buf[4:8], "little")
            if len(buf) < meta_len:
                continue
            if meta_len:
                del buf[:meta_len]
                meta_len = 0
            recs, used = reader.decode(buf, final=False)
            del buf[:used]
            reader.offset += used
            stats["dbn_records"] += len(recs)
            yield from recs
    except (DbnScanError, OSError, zstandard.ZstdError) as exc:
        stream_error = str(exc)
    if meta_len == 0 and buf:
        recs, used = reader.decode(buf, final=True)
        reader.offset += used
        stats["dbn_records"] += len(recs)
        yield from recs
    if stream_error is not None:
        reader._lose("stream", reader.offset, 0, stream_error, known=False)
    if damage is not None:
        damage.extend(reader.damage)


def has_trade_msgs(store: Any) -> bool:
    """Whether a mixed capture carries ``TradeMsg`` records (stops at the first; a corrupt file says no)."""
    scratch: Counter[str] = Counter()
    return any(type(rec) is dbn.TradeMsg for rec in iter_dbn(store, scratch))


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
        # A recorded Nasdaq/NYSE (or Coinbase) session names its stocks (crypto) in the metadata: make them known.
        register_from_dataset(f.dataset, [*f.symbols, *(str(k) for k in (store.mappings or {}))])
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
        self.damage: list[tuple[Path, DbnDamage]] = []

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
        damage: list[DbnDamage] = []
        for rec in iter_dbn(f.store, self.stats, damage):
            if tally is not None:
                tally.add(rec)
            if accept is not None and not accept(rec) and not isinstance(rec, _CONTROL_TYPES):
                self.stats["filtered"] += 1
                continue
            yield from convert(rec)
        for d in damage:
            if d.kind == "stream" and d.before_ns is None and f.end < _MAX_TS:
                d.detail += f"; the file declares data up to {_iso(f.end, '?')}"
            self._log.error("dbn file damaged; read past it", path=str(f.path), kind=d.kind,
                            records_lost=d.records_lost, bytes_lost=d.bytes_lost, detail=d.describe())
            self.damage.append((f.path, d))
        self.stats["files_done"] += 1

    def time_spans(self) -> dict[str, tuple[int, int]]:
        """Per record source, the span the file's metadata declares (files that declare an end only)."""
        out: dict[str, tuple[int, int]] = {}
        for f in self.files:
            if f.start > 0 and f.end < _MAX_TS:
                key = f"dbn:{f.path.name}"
                old = out.get(key)
                out[key] = (f.start, f.end) if old is None else (min(old[0], f.start), max(old[1], f.end))
        return out

    def damage_report(self) -> list[str]:
        """One line per damaged stretch of input (empty for clean files)."""
        lines = [f"{path.name}: {d.describe()}" for path, d in self.damage]
        if self.stats["malformed"]:
            lines.append(f"{self.stats['malformed']:,} record(s) the converter could not read")
        return lines

    def _merged(self) -> Iterator[RawRecord]:
        if len(self.files) == 1:
            return self._converted(self.files[0])
        streams = [((_order_key(r), r) for r in self._converted(f)) for f in self.files]
        return (r for _, r in heapq.merge(*streams, key=lambda kr: kr[0]))

    async def _events(self) -> AsyncIterator[FeedEvent]:
        pacer = Pacer(self.speed)
        wait = pacer.wait
        self.state = FeedState.STREAMING
        self.damage.clear()
        paced = self.speed > 0  # at full speed the pacer only counts, so skip working out timestamps
        for rec in self._merged():
            if self._closed:
                return
            await wait(_order_key(rec) if paced else 0)
            yield rec
        self.state = FeedState.STOPPED


def register_recorded_instruments(paths: Sequence[Path | str]) -> list[str]:
    """Register the stocks/crypto that recorded DBN files name (their dataset and symbols), before anything
    resolves symbols (``tradebot run --feed replay --input NVDA.dbn.zst --symbols NVDA``)."""
    out: list[str] = []
    for path in paths:
        store = open_store(Path(path))
        syms = [*(s for s in (store.symbols or []) if s), *(str(k) for k in (store.mappings or {}))]
        out += register_from_dataset(str(store.dataset or ""), syms)
    return out
