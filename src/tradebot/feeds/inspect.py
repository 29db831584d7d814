"""``tradebot data inspect FILE...``: what a market data file holds, before anyone trusts a replay of it.

The numbers come from the same readers and validation layer a replay uses, so "inspect says 2,026 trades,
0 rejects" is a statement about what the engine will see, not about a separate parser's opinion.
Exit codes: 0 all files read cleanly, 1 a file was damaged part-way or held broken records (its report still
prints, with what was lost),
2 a file is missing or not a format we read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tradebot.core.config import ConfigError, Settings
from tradebot.core.contracts import CONTRACTS, root_of
from tradebot.core.logging import configure_logging
from tradebot.core.types import BookUpdate, FeedStatus, RawBook, RawStatus, RawTrade, Side
from tradebot.feeds.base import damage_of
from tradebot.feeds.csv_ticks import CsvTickFeed
from tradebot.feeds.dbn_files import DbnFileError, DbnFileFeed, RecordTally
from tradebot.feeds.files import csv_mapping_for, file_kind, symbol_for_csv
from tradebot.feeds.sides import format_side_rules
from tradebot.feeds.validation import DAMAGE_REASONS, Validator

_CHICAGO = "America/Chicago"
_NEW_YORK = "America/New_York"
_US_EQUITY_VENUES = ("XNAS", "XNYS", "XBOS", "XPSX", "XCHI", "XCIS", "BATS", "BATY", "EDGA", "EDGX", "IEXG",
                     "ARCX", "MEMX", "EPRL", "DBEQ", "EQUS", "XASE", "AMXO", "OPRA")


class CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is *at write time*.

    structlog keeps the file object it was configured with; binding ``sys.stderr`` itself would keep
    writing to a stream that has since been replaced and closed (pytest's capture, a redirected CLI run),
    and a log line must never be what raises.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())


@dataclass
class _Tally:
    """Counts over the raw and validated stream of one file."""

    trades: dict[str, list[int]] = field(default_factory=lambda: {"buy": [0, 0], "sell": [0, 0], "unknown": [0, 0]})
    events: Counter[str] = field(default_factory=Counter)
    instruments: dict[int, str] = field(default_factory=dict)
    symbols: set[str] = field(default_factory=set)
    book_levels: int = 0
    max_filled: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    failures: list[str] = field(default_factory=list)

    def time(self, ts: int) -> None:
        if ts <= 0 or ts >= 1 << 63:
            return
        self.first_ts = ts if self.first_ts is None or ts < self.first_ts else self.first_ts
        self.last_ts = ts if self.last_ts is None or ts > self.last_ts else self.last_ts


_SIDE_KEY = {Side.BUY: "buy", Side.SELL: "sell", Side.UNKNOWN: "unknown"}


async def _consume(feed: DbnFileFeed | CsvTickFeed, validator: Validator) -> _Tally:
    t = _Tally()
    validator.declare_spans_of(feed)
    try:
        async for ev in feed:
            if isinstance(ev, FeedStatus):
                t.failures.append(ev.detail)
                continue
            if isinstance(ev, RawTrade):
                t.events["trade"] += 1
                bucket = t.trades[_SIDE_KEY.get(ev.side, "unknown")]
                bucket[0] += 1
                bucket[1] += ev.size if isinstance(ev.size, int) else 0
                t.instruments.setdefault(ev.instrument_id, ev.symbol)
                t.symbols.add(ev.symbol)
                t.time(ev.ts_event)
            elif isinstance(ev, RawBook):
                t.events["book"] += 1
                t.book_levels = max(t.book_levels, len(ev.bid_px_fp), len(ev.ask_px_fp))
                t.instruments.setdefault(ev.instrument_id, ev.symbol)
                t.symbols.add(ev.symbol)
                t.time(ev.ts_event)
            elif isinstance(ev, RawStatus):
                t.events["status"] += 1
                t.symbols.add(ev.symbol)
                t.time(ev.ts_event)
            else:
                t.events[type(ev).__name__] += 1
                continue
            out = validator.validate(ev)
            if isinstance(out, BookUpdate):
                t.max_filled = max(t.max_filled, out.depth)
        t.failures.extend(damage_of(feed))
        if validator.damaged:
            t.failures.append(f"{validator.damaged:,} broken record(s) rejected: " + ", ".join(
                f"{k} {v:,}" for k, v in sorted(validator.rejects.items()) if k in DAMAGE_REASONS))
    finally:
        await feed.close()
    return t


def _zone_for(dataset: str, symbols: set[str]) -> str:
    if dataset.startswith("GLBX") or any(root_of(s) in CONTRACTS for s in symbols if s):
        return _CHICAGO  # every futures contract we trade is CME Group, on Chicago time (stocks are registered too)
    if dataset.split(".", 1)[0] in _US_EQUITY_VENUES:
        return _NEW_YORK
    return "UTC"


def iso_ns(ts: int, tz: dt.tzinfo) -> str:
    """ISO 8601 with all nine digits: DBN timestamps are nanoseconds and inspection should not round."""
    sec, ns = divmod(ts, 1_000_000_000)
    base = dt.datetime.fromtimestamp(sec, tz=dt.UTC).astimezone(tz)
    text = base.isoformat()
    head, offset = text[:19], text[19:]
    return f"{head}.{ns:09d}{'Z' if offset == '+00:00' else offset}"


def _time_range(first: int | None, last: int | None, zone: str) -> dict[str, Any] | None:
    if first is None or last is None:
        return None
    tz = ZoneInfo(zone)
    return {
        "start_ns": first, "end_ns": last, "seconds": round((last - first) / 1e9, 9),
        "start_utc": iso_ns(first, dt.UTC), "end_utc": iso_ns(last, dt.UTC),
        "timezone": zone, "start_local": iso_ns(first, tz), "end_local": iso_ns(last, tz),
    }


def _common(t: _Tally, validator: Validator) -> dict[str, Any]:
    trades = {k: {"count": v[0], "volume": v[1]} for k, v in t.trades.items()}
    return {
        "events": dict(t.events),
        "trades": {"count": sum(v[0] for v in t.trades.values()), "volume": sum(v[1] for v in t.trades.values()),
                   **trades},
        "book": {"levels": t.book_levels, "max_filled_levels": t.max_filled},
        "validation": {"accepted": validator.accepted, "rejected": validator.total_rejects,
                       "rejects": dict(sorted(validator.rejects.items()))},
        "side_rules": validator.sides.counts(),
        "errors": t.failures,
    }


def inspect_dbn(path: Path, settings: Settings) -> dict[str, Any]:
    feed = DbnFileFeed([path], allow_any_schema=True, count_kinds=True)
    f = feed.files[0]
    validator = Validator(settings.validation)
    t = asyncio.run(_consume(feed, validator))
    tally = feed.tally or RecordTally()
    smap = f.converter.symbols if f.converter is not None else None
    instruments = {iid: sym for iid, sym in t.instruments.items()}
    if smap is not None:
        instruments = {**smap.as_dict(), **instruments}
    zone = _zone_for(f.dataset, t.symbols | set(instruments.values()))
    first, last = (t.first_ts, t.last_ts) if t.first_ts is not None else (tally.first_ts, tally.last_ts)
    meta = f.store.metadata
    return {
        "path": str(path), "format": "dbn", "compression": str(getattr(f.store.compression, "value", "")),
        "dbn_version": int(meta.version), "schema": f.schema or "mixed", "dataset": f.dataset,
        "stype_in": None if f.store.stype_in is None else str(getattr(f.store.stype_in, "value", f.store.stype_in)),
        "symbols_requested": list(f.store.symbols or []),
        "instruments": {str(k): v for k, v in sorted(instruments.items())},
        "time_range": _time_range(first, last, zone),
        "records": dict(sorted(tally.kinds.items())),
        "trades_from_book": f.trades_from_book,
        **_common(t, validator),
        "feed_stats": dict(sorted(feed.stats.items())),
    }


def inspect_csv(path: Path, symbol: str | None, settings: Settings) -> dict[str, Any]:
    mapping = csv_mapping_for(path)
    sym = symbol_for_csv(path, symbol)
    feed = CsvTickFeed(path, mapping, sym)
    validator = Validator(settings.validation)
    t = asyncio.run(_consume(feed, validator))
    zone = mapping.timezone if mapping.timezone != "UTC" else _zone_for("", {sym})
    return {
        "path": str(path), "format": "csv", "schema": mapping.name, "dataset": None, "symbol": sym,
        "instruments": {"0": sym},
        "time_range": _time_range(t.first_ts, t.last_ts, zone),
        "records": {"rows": feed.stats["rows"], "malformed_rows": feed.stats["malformed_rows"]},
        **_common(t, validator),
        "feed_stats": dict(sorted(feed.stats.items())),
    }


def inspect_bars(path: Path, symbol: str | None) -> dict[str, Any]:
    """A bar export (Sierra BarData or alike): rows, accepted bars, rejects by reason, sessions, totals."""
    from tradebot.feeds.bars import read_bars

    b = read_bars(path, symbol)
    errors = []
    if b.rejects.get("malformed"):
        errors.append(f"{b.rejects['malformed']} malformed row(s)")
    if b.rows and not len(b):
        errors.append("no bar passed validation")
    accepted = len(b)
    first = int(b.start_ns[0]) if accepted else None
    last = int(b.end_ns[-1]) if accepted else None
    return {
        "path": str(path), "format": "bars", "schema": "sierra-bardata", "dataset": None, "symbol": b.symbol,
        "contract": str(b.contract[0]) if accepted else None,
        "instruments": {"0": str(b.contract[0]) if accepted else b.symbol},
        "time_range": _time_range(first, last, _CHICAGO),
        "records": {"rows": b.rows},
        "events": {"bar": accepted},
        "bars": {"count": accepted, "trading_days": len(b.days()), "volume": int(b.volume.sum()),
                 "bid_volume": int(b.bid_volume.sum()), "ask_volume": int(b.ask_volume.sum()),
                 "delta": int(b.delta.sum()), "trades": int(b.trades.sum())},
        "trades": {"count": 0, "volume": 0, "buy": {"count": 0, "volume": 0}, "sell": {"count": 0, "volume": 0},
                   "unknown": {"count": 0, "volume": 0}},
        "book": {"levels": 0, "max_filled_levels": 0},
        "validation": {"accepted": accepted, "rejected": sum(b.rejects.values()),
                       "rejects": {k: v for k, v in sorted(b.rejects.items()) if v},
                       "notes": {k: v for k, v in sorted(b.notes.items()) if v},
                       "examples": b.examples},
        "errors": errors,
    }


def inspect_file(path: Path, symbol: str | None, settings: Settings) -> dict[str, Any]:
    """One file's report; raises :class:`ConfigError` for a missing or unsupported file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        from tradebot.feeds.bars import is_bar_file

        if is_bar_file(path):
            return inspect_bars(path, symbol)
        if file_kind(path) == "dbn":
            return inspect_dbn(path, settings)
        return inspect_csv(path, symbol, settings)
    except (DbnFileError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from exc


def _compression(name: str) -> str:
    return "uncompressed" if name in ("", "none") else name


def _fmt_side(d: dict[str, int]) -> str:
    return f"{d['count']:,} ({d['volume']:,} lots)"


def render(report: dict[str, Any]) -> str:
    lines = [report["path"]]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<13}{text}")

    if report["format"] == "dbn":
        row("format", f"DBN v{report['dbn_version']} ({_compression(report['compression'])}), "
                      f"schema {report['schema']}, dataset {report['dataset']}")
    elif report["format"] == "bars":
        row("format", f"text bars with bid/ask volume, layout {report['schema']}, contract {report['contract']}")
    else:
        row("format", f"text ticks, layout {report['schema']}, symbol {report['symbol']}")
    inst = report["instruments"]
    row("instruments", ", ".join(f"{k} -> {v or '?'}" for k, v in inst.items()) or "none")
    tr = report["time_range"]
    if tr:
        row("time (UTC)", f"{tr['start_utc']} .. {tr['end_utc']}  ({tr['seconds']:,.3f} s)")
        row("time (local)", f"{tr['start_local']} .. {tr['end_local']}  ({tr['timezone']})")
    else:
        row("time", "no timestamped records")
    row("records", ", ".join(f"{k} {v:,}" for k, v in report["records"].items()) or "none")
    row("events", ", ".join(f"{k} {v:,}" for k, v in report["events"].items()) or "none")
    if report["format"] == "bars":
        b = report["bars"]
        row("bars", f"{b['count']:,} over {b['trading_days']} trading days; volume {b['volume']:,} (bid "
                    f"{b['bid_volume']:,}, ask {b['ask_volume']:,}, delta {b['delta']:+,}), {b['trades']:,} trades")
        val = report["validation"]
        rejects = ", ".join(f"{k} {v:,}" for k, v in val["rejects"].items())
        row("validation", f"accepted {val['accepted']:,}, rejected {val['rejected']:,}"
            + (f" ({rejects})" if rejects else ""))
        for k, v in val["notes"].items():
            row("note", f"{k} {v:,} (accepted under that year's session rules; the plain calendar refuses them)")
        for k, v in val["examples"].items():
            row("e.g.", f"{k}: {', '.join(v)} (local)")
        for err in report["errors"]:
            row("ERROR", err)
        return "\n".join(lines)
    trades = report["trades"]
    row("trades", f"{trades['count']:,} ({trades['volume']:,} lots): buy {_fmt_side(trades['buy'])}, "
                  f"sell {_fmt_side(trades['sell'])}, unknown side {_fmt_side(trades['unknown'])}")
    row("side rules", format_side_rules(report["side_rules"]))
    book = report["book"]
    row("book", f"{book['levels']} level(s) per side, at most {book['max_filled_levels']} filled"
        if book["levels"] else "none")
    val = report["validation"]
    rejects = ", ".join(f"{k} {v:,}" for k, v in val["rejects"].items())
    row("validation", f"accepted {val['accepted']:,}, rejected {val['rejected']:,}" + (f" ({rejects})" if rejects
                                                                                       else ""))
    for err in report["errors"]:
        row("ERROR", err)
    return "\n".join(lines)


def inspect_command(args: argparse.Namespace, settings: Settings) -> int:
    # The report owns stdout (``--json`` must parse); warnings about damaged records go to stderr.
    configure_logging(settings.log_level, settings.log_format, stream=CurrentStderr())
    reports: list[dict[str, Any]] = []
    for name in args.files:
        try:
            reports.append(inspect_file(Path(name), getattr(args, "symbol", None), settings))
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    series = _bar_series([Path(r["path"]) for r in reports if r["format"] == "bars"], getattr(args, "symbol", None))
    if args.json:
        print(json.dumps({"files": reports, **({"series": series} if series else {})}, indent=2))
    else:
        print("\n\n".join(render(r) for r in reports))
        if series:
            rolls = "; ".join(f"{r['day']} {r['old']} -> {r['new']} (gap {r['gap_ticks']} ticks)"
                              for r in series["rolls"])
            print(f"\nseries of {len(series['contracts'])} bar files: {series['bars']:,} bars, "
                  f"{series['trading_days']} trading days, not_front {series['not_front']:,}\n"
                  f"  rolls {rolls or 'none'}")
    return 1 if any(r["errors"] for r in reports) else 0


def _bar_series(paths: list[Path], symbol: str | None) -> dict[str, Any] | None:
    """Several bar files: the continuous front-contract series they make (rolls, bars dropped as not front)."""
    if len(paths) < 2:
        return None
    from tradebot.feeds.bars import BarFileError, continuous, read_bars

    try:
        s = continuous([read_bars(p, symbol) for p in paths])
    except BarFileError as exc:
        return {"error": str(exc), "contracts": [], "bars": 0, "trading_days": 0, "not_front": 0, "rolls": []}
    return {"contracts": sorted({str(c) for c in s.contract}), "bars": len(s), "trading_days": len(s.days()),
            "not_front": s.rejects.get("not_front", 0),
            "rolls": [{"day": r.day.isoformat(), "old": r.old, "new": r.new, "gap_ticks": r.gap_ticks}
                      for r in s.rolls]}
