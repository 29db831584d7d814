"""Tick files in delimited text (CSV, Sierra Chart exports) as a replayable feed.

Vendors disagree on everything in a tick file: delimiter, how time is written and in which zone, how the
aggressor side is coded, whether a book is attached. A :class:`CsvMapping` names those choices once, by
column *name* (resolved against the file's own header), so one reader serves every layout and a file whose
header does not match its mapping fails at open with a message instead of producing nonsense mid-stream.

Rows that do not parse are skipped and counted (``stats["malformed_rows"]`` plus one
``malformed:<reason>`` key per cause); a bad row never ends the replay. Numbers are checked for length and
magnitude before any conversion (``1e999999999`` is one row rejected as ``bad_size``, not minutes of big-integer
arithmetic), a line longer than :data:`MAX_LINE` is skipped unread (``oversized_row``), and a line the csv
module refuses (a NUL byte, a broken quote) costs that line only.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradebot.core.calendar import to_ns
from tradebot.core.contracts import spec_for
from tradebot.core.logging import get_logger
from tradebot.core.prices import decimal_to_fp, tick_fp
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.base import GeneratorFeed, Pacer

TimeFormat = str
"""A ``strptime`` format for the timestamp text before any fraction of a second (date and time joined by
one space when they are separate columns), or ``epoch_s``/``epoch_ms``/``epoch_us``/``epoch_ns``."""

FractionMode = Literal["decimal", "micros"]
"""How to read the digits after the seconds' dot: ``decimal`` is an ordinary fraction (``.5`` = 500 ms);
``micros`` is an integer count of microseconds printed without zero padding (Sierra Chart:
``13:30:00.5000`` is 13:30:00.005000)."""

_EPOCH_SCALE = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1_000, "epoch_ns": 1}
_LOG_FIRST = 5
MAX_LINE = 64 * 1024
"""Longest line read as a row (characters). A 40-level Sierra DOM row is under 1 KiB; anything near the csv
module's 128 KiB field limit is damage, skipped without being held in memory whole."""
_MAX_TIME_TEXT = 64
_MAX_TS = 1 << 63
_INT_TEXT = re.compile(r"[+-]?\d{1,18}")
_EPOCH_TEXT = re.compile(r"[+-]?\d{1,20}")


class CsvMappingError(ValueError):
    """The file does not have the columns its mapping names (a configuration problem, not a bad row)."""


@dataclass(frozen=True, slots=True)
class DomColumns:
    """Depth-of-market columns laid out as sizes at consecutive ticks from a base price per side."""

    ask_base: str = "AskDOMPrice"
    bid_base: str = "BidDOMPrice"
    ask_prefix: str = "AskDOM_"
    """``AskDOM_i`` is the size at ``ask_base + i`` ticks."""
    bid_prefix: str = "BidDOM_"
    """``BidDOM_i`` is the size at ``bid_base - i`` ticks."""
    tick_size: Decimal | None = None
    """Tick between DOM levels; ``None`` takes the contract's own tick from the feed's symbol."""


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """Which column means what in one tick-file layout."""

    price: str
    size: str
    time: str
    date: str | None = None
    """A separate date column, joined to ``time`` with one space before parsing."""
    time_format: TimeFormat = "%Y-%m-%d %H:%M:%S"
    fraction: FractionMode = "decimal"
    timezone: str = "UTC"
    """IANA zone the times are written in; converted per timestamp, so DST is never a fixed offset."""
    delimiter: str = ","
    side: str | None = None
    buy_codes: tuple[str, ...] = ("B", "BUY")
    """Codes (case-insensitive) meaning the buyer was the aggressor (lifted the ask)."""
    sell_codes: tuple[str, ...] = ("S", "SELL")
    side_rule: SideRule = SideRule.EXCHANGE
    """How the source decided the side; sides mapped from the codes carry this rule."""
    bid_price: str | None = None
    ask_price: str | None = None
    bid_size: str | None = None
    ask_size: str | None = None
    dom: DomColumns | None = None
    """When set, the book before each trade comes from the DOM; otherwise from the bid/ask columns."""
    sequence: str | None = None
    name: str = "custom"


SIERRA_TICKS = CsvMapping(
    name="sierra-chart-ticks",
    delimiter=";",
    date="Date",
    time="Time",
    time_format="%Y-%m-%d %H:%M:%S",
    fraction="micros",
    timezone="America/Chicago",
    price="Price",
    size="Volume",
    side="TradeType",
    buy_codes=("2",),  # at ask: the buyer lifted the offer
    sell_codes=("1",),  # at bid: the seller hit the bid
    bid_price="BidPrice",
    ask_price="AskPrice",
    bid_size="BidSize",
    ask_size="AskSize",
    dom=DomColumns(),
    sequence="Sequence",
)
"""Sierra Chart's "tick by tick with market depth" export (``Date;Time;Sequence;...;AskDOM_0;BidDOM_0;...``)."""

SIERRA_REQUIRED_HEADER = ("Date", "Time", "Price", "Volume", "TradeType")


def looks_like_sierra_ticks(header: list[str]) -> bool:
    """True for a Sierra tick export header (bar exports have Open/High/Low/Last instead of Price)."""
    cols = {c.strip() for c in header}
    return all(c in cols for c in SIERRA_REQUIRED_HEADER)


def read_header(path: Path, delimiter: str) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        first = next(csv.reader(fh, delimiter=delimiter, skipinitialspace=True), [])
    return [c.strip().lstrip("\ufeff") for c in first]


class _RowError(Exception):
    """A row that cannot become a trade; ``args[0]`` is the counted reason."""


class TimestampParser:
    """Text -> UTC nanoseconds for one mapping; caches the whole-second part since ticks share seconds."""

    def __init__(self, time_format: TimeFormat, fraction: FractionMode, timezone: str) -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CsvMappingError(f"unknown time zone {timezone!r}") from exc
        self.fmt = time_format
        self.fraction = fraction
        self._epoch = _EPOCH_SCALE.get(time_format)
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        """Parse or raise ``ValueError``."""
        text = text.strip()
        if len(text) > _MAX_TIME_TEXT:
            raise ValueError("timestamp text too long")
        cut = text.rfind(".")
        if cut >= 0 and (self._epoch is not None or cut > text.rfind(":")):
            head, frac = text[:cut], text[cut + 1:]
        else:
            head, frac = text, ""
        if self._epoch is not None:
            if not _EPOCH_TEXT.fullmatch(head):
                raise ValueError(f"not an epoch count: {head[:30]!r}")
            base = int(head) * self._epoch
            ts = base + (self._frac_ns(frac) * self._epoch // 1_000_000_000 if frac else 0)
            if not 0 < ts < _MAX_TS:
                raise ValueError("epoch time outside 1970..2262")
            return ts
        base_ns = self._cache.get(head)
        if base_ns is None:
            when = dt.datetime.strptime(head, self.fmt).replace(tzinfo=self.zone)
            base_ns = to_ns(when)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[head] = base_ns
        return base_ns + (self._frac_ns(frac) if frac else 0)

    def _frac_ns(self, frac: str) -> int:
        if not frac.isdigit():
            raise ValueError(f"bad fraction of a second {frac!r}")
        if self.fraction == "micros":
            if len(frac) > 6:
                raise ValueError(f"more than 6 digits of microseconds: {frac!r}")
            return int(frac) * 1_000
        if len(frac) > 9:
            raise ValueError(f"finer than nanoseconds: {frac!r}")
        return int(frac.ljust(9, "0"))


@dataclass
class _Columns:
    """Column indexes resolved from the header once, so the row loop does no name lookups."""

    price: int
    size: int
    time: int
    date: int | None
    side: int | None
    sequence: int | None
    bbo: tuple[int, int, int, int] | None  # bid px, bid sz, ask px, ask sz
    dom_bases: tuple[int, int] | None  # ask base, bid base
    dom_ask: list[int] = field(default_factory=list)
    dom_bid: list[int] = field(default_factory=list)
    width: int = 0


def _resolve(header: list[str], mapping: CsvMapping, book_levels: int) -> _Columns:
    index = {name: i for i, name in enumerate(header)}

    def col(name: str) -> int:
        if name not in index:
            raise CsvMappingError(f"column {name!r} (mapping {mapping.name!r}) not in the file header: "
                                  f"{', '.join(header[:20])}{' ...' if len(header) > 20 else ''}")
        return index[name]

    def opt(name: str | None) -> int | None:
        return None if name is None else col(name)

    bbo_names = (mapping.bid_price, mapping.bid_size, mapping.ask_price, mapping.ask_size)
    if any(n is not None for n in bbo_names) and not all(n is not None for n in bbo_names):
        raise CsvMappingError("bid/ask columns need all four of bid_price, bid_size, ask_price, ask_size")
    bbo = tuple(col(n) for n in bbo_names if n is not None)
    cols = _Columns(
        price=col(mapping.price), size=col(mapping.size), time=col(mapping.time), date=opt(mapping.date),
        side=opt(mapping.side), sequence=opt(mapping.sequence),
        bbo=(bbo[0], bbo[1], bbo[2], bbo[3]) if len(bbo) == 4 else None, dom_bases=None,
    )
    dom = mapping.dom
    if dom is not None and book_levels > 0:
        cols.dom_bases = (col(dom.ask_base), col(dom.bid_base))
        i = 0
        while f"{dom.ask_prefix}{i}" in index and f"{dom.bid_prefix}{i}" in index and i < book_levels:
            cols.dom_ask.append(index[f"{dom.ask_prefix}{i}"])
            cols.dom_bid.append(index[f"{dom.bid_prefix}{i}"])
            i += 1
        if not cols.dom_ask:
            raise CsvMappingError(f"no {dom.ask_prefix}0/{dom.bid_prefix}0 columns for the DOM in the header")
    used = [cols.price, cols.size, cols.time, *(c for c in (cols.date, cols.side, cols.sequence) if c is not None),
            *(cols.bbo or ()), *(cols.dom_bases or ()), *cols.dom_ask, *cols.dom_bid]
    cols.width = max(used) + 1
    return cols


class CsvTickFeed(GeneratorFeed):
    """Replays a tick file: per row, optionally a :class:`RawBook` (DOM or BBO), then the :class:`RawTrade`.

    ``speed`` paces replay on the file's timestamps (0 = as fast as possible); ``book_levels`` caps the
    depth of the emitted book (0 = trades only).
    """

    def __init__(self, path: Path | str, mapping: CsvMapping, symbol: str, speed: float = 0.0,
                 book_levels: int = 10) -> None:
        self.path = Path(path)
        self.mapping = mapping
        self.symbol = symbol
        self.speed = speed
        self.book_levels = max(0, book_levels)
        self.name = f"csv:{self.path.name}"
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self._log = get_logger("tradebot.feeds.csv")
        self._stretches: list[list[Any]] = []
        self._closed = False
        self._gen: AsyncIterator[FeedEvent] | None = None
        Pacer(speed)  # validates speed now rather than at first iteration
        if not self.path.is_file():
            raise FileNotFoundError(f"no such tick file: {self.path}")
        self.header = read_header(self.path, mapping.delimiter)
        self._cols = _resolve(self.header, mapping, self.book_levels)
        self._parse_ts = TimestampParser(mapping.time_format, mapping.fraction, mapping.timezone)
        self._buy = {c.upper() for c in mapping.buy_codes}
        self._sell = {c.upper() for c in mapping.sell_codes}
        self._dom_tick = 0
        if self._cols.dom_bases is not None and mapping.dom is not None:
            self._dom_tick = tick_fp(mapping.dom.tick_size if mapping.dom.tick_size is not None
                                     else spec_for(symbol).tick_size)


    # -- reading -----------------------------------------------------------------------------------

    async def _events(self) -> AsyncIterator[FeedEvent]:
        pacer = Pacer(self.speed)
        self._stretches.clear()
        self._open = None
        self._last_good = None
        self.state = FeedState.STREAMING
        parse = self._parse_row
        try:
            with self.path.open(newline="", encoding="utf-8", errors="replace") as fh:
                fh.readline(MAX_LINE)  # header, resolved at construction
                lines = self._bounded_lines(fh)
                reader = csv.reader(lines, delimiter=self.mapping.delimiter, skipinitialspace=True,
                                    quoting=csv.QUOTE_NONE)  # a stray quote never swallows the lines after it
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        self.stats["rows"] += 1
                        self._malformed("csv_error", self._line, [str(exc)])
                        continue
                    if self._closed:
                        return
                    self.stats["rows"] += 1
                    if not row or (len(row) == 1 and not row[0].strip()):
                        self.stats["blank_rows"] += 1
                        continue
                    try:
                        book, trade = parse(row)
                    except _RowError as err:
                        self._malformed(str(err.args[0]), self._line, row)
                        continue
                    await pacer.wait(trade.ts_event)
                    if book is not None:
                        self.stats["books"] += 1
                        yield book
                    self.stats["trades"] += 1
                    self._last_good = trade.ts_event
                    if self._open is not None:
                        self._open[3] = trade.ts_event
                        self._open = None
                    yield trade
        except OSError as exc:
            self.stats["read_errors"] += 1
            self.state = FeedState.FAILED
            self._log.error("tick file read failed", path=str(self.path), error=repr(exc))
            yield FeedStatus(0, FeedState.FAILED, self.name, f"read error: {exc}")
            return
        if self.state is FeedState.STREAMING:
            self.state = FeedState.STOPPED

    _line = 1

    def _bounded_lines(self, fh: Any) -> Iterator[str]:
        """The file's lines, each read with a bound; an oversized or NUL-carrying line is counted and skipped."""
        self._line = 1
        while True:
            line = fh.readline(MAX_LINE + 1)
            if not line:
                return
            self._line += 1
            if len(line) > MAX_LINE and not line.endswith("\n"):
                dropped = len(line)
                while True:  # the rest of the line, a bounded piece at a time
                    more = fh.readline(MAX_LINE)
                    dropped += len(more)
                    if not more or more.endswith("\n"):
                        break
                self.stats["rows"] += 1
                self._malformed("oversized_row", self._line, [f"<{dropped:,} characters>"])
                continue
            if "\0" in line:
                self.stats["rows"] += 1
                self._malformed("nul_byte", self._line, [line[:80].replace("\0", "\\0")])
                continue
            yield line

    _last_good: int | None = None
    _open: list[Any] | None = None

    def damage_report(self) -> list[str]:
        """What the damage cost: rows lost per reason, and where (line and time between good rows)."""
        if not self.stats["malformed_rows"]:
            return []
        reasons = ", ".join(f"{k.split(':', 1)[1]} {v:,}" for k, v in sorted(self.stats.items())
                            if k.startswith("malformed:"))
        lines = [f"{self.path.name}: {self.stats['malformed_rows']:,} row(s) lost ({reasons})"]
        for first, last, after, before, n in self._stretches[:10]:
            where = f"line {first:,}" if first == last else f"lines {first:,}-{last:,}"
            lines.append(f"{self.path.name}: {where}: {n:,} row(s) lost between {_iso(after, 'the start')} "
                         f"and {_iso(before, 'the end')}")
        if len(self._stretches) > 10:
            lines.append(f"{self.path.name}: ... and {len(self._stretches) - 10:,} more damaged stretch(es)")
        return lines

    def _malformed(self, reason: str, line: int, row: list[str]) -> None:
        if self._open is None:
            self._open = [line, line, self._last_good, None, 1]
            self._stretches.append(self._open)
        else:
            self._open[1] = line
            self._open[4] += 1
        self.stats["malformed_rows"] += 1
        self.stats[f"malformed:{reason}"] += 1
        n = self.stats["malformed_rows"]
        if n <= _LOG_FIRST or n % 1000 == 0:
            self._log.warning("malformed tick row skipped", path=str(self.path), line=line, reason=reason,
                              count=n, row=";".join(row)[:200])

    def _parse_row(self, row: list[str]) -> tuple[RawBook | None, RawTrade]:
        c = self._cols
        if len(row) < c.width:
            raise _RowError("short_row")
        try:
            stamp = row[c.time] if c.date is None else f"{row[c.date].strip()} {row[c.time].strip()}"
            ts = self._parse_ts(stamp)
        except (ValueError, OverflowError):
            raise _RowError("bad_timestamp") from None
        price = decimal_to_fp(row[c.price])
        if price is None:
            raise _RowError("bad_price")
        size = _int(row[c.size])
        if size is None:
            raise _RowError("bad_size")
        side, rule = Side.UNKNOWN, SideRule.NONE
        if c.side is not None:
            code = row[c.side].strip().upper()
            if code in self._buy:
                side, rule = Side.BUY, self.mapping.side_rule
            elif code in self._sell:
                side, rule = Side.SELL, self.mapping.side_rule
            else:
                self.stats["unknown_side"] += 1
        seq = 0
        if c.sequence is not None:
            parsed = _int(row[c.sequence])
            if parsed is None:
                raise _RowError("bad_sequence")
            seq = parsed
        book = self._book(row, ts, seq) if self.book_levels else None
        trade = RawTrade(self.symbol, ts, ts, price, size, side, rule, seq, 0, self.name)
        return book, trade

    def _book(self, row: list[str], ts: int, seq: int) -> RawBook | None:
        c = self._cols
        if c.dom_bases is not None:
            ask_base = decimal_to_fp(row[c.dom_bases[0]])
            bid_base = decimal_to_fp(row[c.dom_bases[1]])
            if ask_base is None or bid_base is None:
                raise _RowError("bad_dom_price")
            ask_l = [_int(row[i]) for i in c.dom_ask]
            bid_l = [_int(row[i]) for i in c.dom_bid]
            if None in ask_l or None in bid_l:
                raise _RowError("bad_dom_size")
            ask_sz = tuple(x for x in ask_l if x is not None)
            bid_sz = tuple(x for x in bid_l if x is not None)
            tick = self._dom_tick
            ask_px: tuple[int | None, ...] = tuple(ask_base + i * tick for i in range(len(ask_sz)))
            bid_px: tuple[int | None, ...] = tuple(bid_base - i * tick for i in range(len(bid_sz)))
            return RawBook(self.symbol, ts, ts, bid_px, bid_sz, ask_px, ask_sz, seq, 0, self.name)
        if c.bbo is not None:
            bpx, bsz, apx, asz = c.bbo
            bid = decimal_to_fp(row[bpx])
            ask = decimal_to_fp(row[apx])
            bid_size = _int(row[bsz])
            ask_size = _int(row[asz])
            if bid is None or ask is None:
                raise _RowError("bad_bbo_price")
            if bid_size is None or ask_size is None:
                raise _RowError("bad_bbo_size")
            return RawBook(self.symbol, ts, ts, (bid,), (bid_size,), (ask,), (ask_size,), seq, 0, self.name)
        return None


def _int(text: str) -> int | None:
    """A whole number of at most 18 digits, or ``None``; the bound comes before any conversion."""
    text = text.strip()
    if _INT_TEXT.fullmatch(text):
        return int(text)
    if len(text) > 32:
        return None
    try:  # "3.0" from spreadsheet round-trips is still a whole number
        d = Decimal(text)
    except ArithmeticError:
        return None
    if not d.is_finite() or d.adjusted() > 18:
        return None
    return int(d) if d == d.to_integral_value() else None



def _iso(ts: int | None, default: str) -> str:
    if ts is None:
        return default
    sec, ns = divmod(ts, 1_000_000_000)
    return dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"
