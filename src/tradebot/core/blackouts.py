"""News blackout windows (FOMC, CPI, NFP...) loaded from a small file the operator maintains.

File formats (examples in ``data/samples/blackouts.example.csv`` and ``.json``):

CSV, ``#`` starts a comment line, a header row is required::

    start,end,label,tz
    2025-03-19 13:45,2025-03-19 15:00,FOMC statement + press conference,America/New_York
    2025-03-12T12:25:00Z,2025-03-12T12:45:00Z,CPI,

JSON: a list of objects (or ``{"blackouts": [...]}``) with the same keys (``tz`` and ``label`` optional).

Times are ISO 8601 (``YYYY-MM-DD HH:MM[:SS]`` or with ``T``; a bare date means midnight). A time that
carries an offset (``Z``, ``+00:00``, ``-04:00``) is taken as written; otherwise it is local time in the
row's ``tz`` column, or in the file-wide default (``TRADEBOT_REGIME__BLACKOUT_TZ``, America/New_York),
converted through the IANA zone so DST is right on both sides of a switch. A window is ``[start, end)``.

A blackout file is configuration: a bad row is an operator error that must be seen before the session, not
a record to skip (skipping one would mean trading through the FOMC). ``load_blackouts`` therefore raises
:class:`BlackoutFileError` naming every bad line; ``strict=False`` keeps the good rows and returns the
problems in ``errors`` for tools that only want to show the file.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradebot.core.calendar import to_ns


class BlackoutFileError(ValueError):
    """One line per problem: ``file:line: what is wrong``."""


@dataclass(frozen=True, slots=True)
class Blackout:
    start_ns: int
    end_ns: int
    label: str

    def contains(self, ts_ns: int) -> bool:
        return self.start_ns <= ts_ns < self.end_ns


@dataclass(frozen=True, slots=True)
class BlackoutSchedule:
    windows: tuple[Blackout, ...] = ()
    """Sorted by start."""
    errors: tuple[str, ...] = ()
    source: str = ""
    _starts: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _longest: int = field(default=0, repr=False, compare=False)

    @classmethod
    def of(cls, windows: Iterable[Blackout], errors: Iterable[str] = (), source: str = "") -> BlackoutSchedule:
        ws = tuple(sorted(windows, key=lambda b: (b.start_ns, b.end_ns)))
        longest = max((b.end_ns - b.start_ns for b in ws), default=0)
        return cls(ws, tuple(errors), source, tuple(b.start_ns for b in ws), longest)

    def active(self, ts_ns: int) -> tuple[Blackout, ...]:
        """Windows containing ``ts_ns``: a bisect, then a scan back no further than the longest window."""
        i = bisect.bisect_right(self._starts, ts_ns)
        out = []
        j = i - 1
        while j >= 0 and self._starts[j] > ts_ns - self._longest - 1:
            b = self.windows[j]
            if b.contains(ts_ns):
                out.append(b)
            j -= 1
        return tuple(reversed(out))

    def __len__(self) -> int:
        return len(self.windows)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def parse_time(text: str, tz: dt.tzinfo) -> int:
    """An ISO time to UTC ns; ``tz`` applies only when the text has no offset of its own."""
    t = text.strip()
    if not t:
        raise ValueError("empty time")
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"{t!r} is not an ISO time (YYYY-MM-DD HH:MM)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return to_ns(when)


def _row(values: Mapping[str, Any], default_tz: str) -> Blackout:
    start, end = values.get("start"), values.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        raise ValueError("needs start and end as text")
    tz_name = values.get("tz") or default_tz
    if not isinstance(tz_name, str):
        raise ValueError("tz must be text")
    tz = _zone(tz_name.strip())
    s, e = parse_time(start, tz), parse_time(end, tz)
    if e <= s:
        raise ValueError(f"end {end.strip()!r} is not after start {start.strip()!r}")
    label = values.get("label") or "blackout"
    return Blackout(s, e, str(label).strip())


def parse_blackouts(text: str, default_tz: str = "America/New_York", fmt: str = "csv",
                    source: str = "<text>", strict: bool = True) -> BlackoutSchedule:
    """Parse blackout rows from text (``fmt`` ``csv`` or ``json``); see the module docstring."""
    _zone(default_tz)
    rows: list[tuple[int, Mapping[str, Any]]] = []
    errors: list[str] = []
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BlackoutFileError(f"{source}:{exc.lineno}: not JSON ({exc.msg})") from None
        items = doc.get("blackouts") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise BlackoutFileError(f"{source}: expected a list of {{start, end, label, tz}} objects")
        for i, item in enumerate(items, start=1):
            if isinstance(item, dict):
                rows.append((i, item))
            else:
                errors.append(f"{source}:item {i}: not an object")
    elif fmt == "csv":
        lines = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1)
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            return BlackoutSchedule.of((), (), source)
        header = [h.strip().lower() for h in next(csv.reader([lines[0][1]]))]
        if "start" not in header or "end" not in header:
            raise BlackoutFileError(f"{source}:{lines[0][0]}: header must name start and end (got {header})")
        for n, ln in lines[1:]:
            cells = next(csv.reader(io.StringIO(ln)), [])
            if len(cells) > len(header):
                errors.append(f"{source}:{n}: {len(cells)} fields, header has {len(header)}")
                continue
            rows.append((n, {h: c.strip() for h, c in zip(header, cells, strict=False)}))
    else:
        raise ValueError(f"unknown blackout format {fmt!r}; use csv or json")
    windows = []
    for n, values in rows:
        try:
            windows.append(_row(values, default_tz))
        except ValueError as exc:
            errors.append(f"{source}:{n}: {exc}")
    if errors and strict:
        raise BlackoutFileError("\n".join(errors))
    return BlackoutSchedule.of(windows, errors, source)


def load_blackouts(path: Path | str, default_tz: str = "America/New_York", strict: bool = True) -> BlackoutSchedule:
    """Read a ``.csv`` or ``.json`` blackout file (by suffix; anything else is read as CSV)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise BlackoutFileError(f"{p}: cannot read blackout file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BlackoutFileError(f"{p}: not UTF-8 text") from None
    fmt = "json" if p.suffix.lower() == ".json" else "csv"
    return parse_blackouts(text, default_tz, fmt, str(p), strict)
