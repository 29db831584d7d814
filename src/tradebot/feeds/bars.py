"""Bar data with bid/ask volume (Sierra Chart "BarData" text exports, or any CSV through a column mapping).

A bar file is read whole into numpy columns (a quarter of 5-minute ES bars is ~17,000 rows), validated with the
same discipline as ticks, and every rejected row is counted by reason, never dropped silently:

* ``malformed``: a field that does not parse; ``nonexistent_local_time``: a wall-clock time the DST switch
  skipped; ``non_positive_price``; ``off_tick_grid``: a price not on the contract's tick grid;
  ``ohlc_inconsistent``: low > high, or open/close outside [low, high]; ``negative_volume``;
  ``bid_ask_exceeds_volume``: bid + ask volume > volume; ``out_of_order`` / ``duplicate``: a bar at or before
  the previous one;
* session rules: ``market_closed`` (the exchange calendar has no session then: weekend, holiday, the daily
  break, after an early close), ``historical_halt`` (inside the 15:15-15:30 CT equity halt that existed until
  trade date 2021-06-25), ``after_historical_close`` (16:15 CT close until 2015-09-18, 16:00 CT later).

**The session history.** ``pandas_market_calendars`` (CME_Equity, the project's calendar) gives today's
schedule for every year: open 17:00 CT, close 16:00 CT, no mid-afternoon halt. The real ES session was
different, and the Sierra files show it as it happened: until trade date 2015-09-18 the equity session closed
at 16:15 CT (bars at 16:00-16:10 exist on 2,000-odd days), from 2015-09-21 at 16:00 CT; until trade date
2021-06-25 trading halted 15:15-15:30 CT (no bars then), from 2021-06-28 it did not. :data:`ES_HISTORY`
overlays those two changes on the calendar (its holidays and early closes are kept), so a bar is accepted
when the exchange of *that year* was open; what the plain calendar would have refused is counted
(``calendar_disagrees``) so the overlay is visible. The few prints that Sierra recorded during a halt or
after the close (a handful of 1-100 lot bars) are reported and dropped.

Bar times are the bar's *start* in the file's time zone (Sierra exports US Central); inside, times are UTC ns.
A bar's end is the next slot boundary, clipped to the session close or a halt.

**Several files, one series.** :func:`continuous` keeps, for each trading day, the front contract: the
earliest-expiring file that has bars on that day. Other files' bars of that day are dropped and counted
(``not_front``), never added, so volume and delta are not double counted. Each change of contract is a roll,
reported with its date. Prices stay as traded (no back-adjustment) unless ``adjust="difference"`` is asked
for, which shifts every earlier contract by the gap between the two contracts' closes at the roll (from bars
of both on the roll day when they overlap, else the last close of the old against the first open of the new).

Size: reading, validating (each rejection counted by reason) and joining contract files into one continuous series
work on the same numpy columns and session rules; split apart, each half would re-derive the other's calendar
bounds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tradebot.core.calendar import CT, NS, ExchangeCalendar, calendar_for, local_ns
from tradebot.core.contracts import ContractSpec, spec_for

I64 = NDArray[np.int64]

MONTHS = "FGHJKMNQUVXZ"
CONTRACT_RE = re.compile(r"(?<![A-Z])([A-Z0-9]{1,3}?)([FGHJKMNQUVXZ])(\d{2})(?!\d)")


@dataclass(frozen=True)
class BarMapping:
    """Which column holds what; defaults are Sierra Chart's BarData export (``Date, Time, Open, ...``)."""

    date: str = "Date"
    time: str = "Time"
    open: str = "Open"
    high: str = "High"
    low: str = "Low"
    close: str = "Last"
    volume: str = "Volume"
    trades: str | None = "NumberOfTrades"
    bid_volume: str = "BidVolume"
    ask_volume: str = "AskVolume"
    datetime: str | None = None
    """One combined date-time column instead of ``date`` + ``time``."""
    timezone: str = "America/Chicago"
    bar_seconds: int = 300
    separator: str = ","

    @classmethod
    def from_text(cls, text: str) -> BarMapping:
        """``close=Close,volume=Vol,timezone=UTC`` -> a mapping (unknown keys raise ``ValueError``)."""
        kw: dict[str, object] = {}
        names = set(cls.__dataclass_fields__)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in names:
                raise ValueError(f"bar mapping: unknown key {key!r}; known: {', '.join(sorted(names))}")
            kw[key] = int(value) if key == "bar_seconds" else (value.strip() or None)
        return cls(**kw)  # type: ignore[arg-type]


SIERRA = BarMapping()


@dataclass(frozen=True)
class HistoryRule:
    """A change of the session rules: before ``until`` (a trade date), this rule applies."""

    until: dt.date
    halt: tuple[dt.time, dt.time] | None = None
    """A daily halt inside the session, local Chicago time ``[start, end)``."""
    close: dt.time | None = None
    """The regular close (early-close days keep the calendar's)."""
    note: str = ""


ES_HISTORY: tuple[HistoryRule, ...] = (
    HistoryRule(dt.date(2015, 9, 21), close=dt.time(16, 15),
                note="equity close 16:15 CT until trade date 2015-09-18 (16:00 CT from 2015-09-21)"),
    HistoryRule(dt.date(2021, 6, 28), halt=(dt.time(15, 15), dt.time(15, 30)),
                note="15:15-15:30 CT halt until trade date 2021-06-25 (none from 2021-06-28)"),
)
"""CME equity-index session changes the calendar library does not know (seen in the Sierra ES files)."""

HISTORY: Mapping[str, tuple[HistoryRule, ...]] = {"equity": ES_HISTORY}


@dataclass
class BarColumns:
    """Accepted bars of one file (or a continuous series), in time order; prices in ticks, times UTC ns."""

    symbol: str
    """Contract root."""
    contract: np.ndarray
    """Contract code per bar (``ESH15``), object array."""
    start_ns: I64
    end_ns: I64
    trading_date: NDArray[np.int32]
    """Trading date as a proleptic ordinal."""
    open: I64
    high: I64
    low: I64
    close: I64
    volume: I64
    trades: I64
    bid_volume: I64
    ask_volume: I64
    rows: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    """Accepted bars worth knowing about (``calendar_disagrees``: the plain calendar would refuse them)."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Up to five local times per reject reason, for the report."""
    rolls: list[Roll] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.start_ns.size)

    @property
    def delta(self) -> I64:
        return self.ask_volume - self.bid_volume

    def take(self, idx: NDArray[np.bool_] | NDArray[np.intp]) -> BarColumns:
        return BarColumns(self.symbol, self.contract[idx], self.start_ns[idx], self.end_ns[idx],
                          self.trading_date[idx], self.open[idx], self.high[idx], self.low[idx], self.close[idx],
                          self.volume[idx], self.trades[idx], self.bid_volume[idx], self.ask_volume[idx], self.rows,
                          Counter(self.rejects), Counter(self.notes), dict(self.examples), list(self.rolls))

    def days(self) -> list[dt.date]:
        return [dt.date.fromordinal(int(d)) for d in np.unique(self.trading_date)]


@dataclass(frozen=True)
class Roll:
    day: dt.date
    """First trading day of the new contract."""
    old: str
    new: str
    gap_ticks: int | None = None
    """New minus old price at the roll (for back-adjustment), when both traded near it."""


class BarFileError(ValueError):
    pass


def contract_of(path: Path | str, root: str | None = None) -> str:
    """``ESH15`` from ``ESH15_5m_bars.txt``; the root alone when the name carries no contract code."""
    name = Path(path).name.upper()
    for m in CONTRACT_RE.finditer(name):
        if root is None or m.group(1) == root:
            return m.group(0)
    return root or name


def expiry_key(contract: str) -> tuple[int, int]:
    """(year, month) of a contract code such as ``ESZ22`` (two-digit years are 20xx)."""
    m = CONTRACT_RE.search(contract)
    if not m:
        return (9999, 99)
    return 2000 + int(m.group(3)), MONTHS.index(m.group(2)) + 1


def is_bar_file(path: Path) -> bool:
    """A text file whose header names OHLC and bid/ask volume columns (Sierra BarData or alike)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            head = f.readline()
    except OSError:
        return False
    cols = {c.strip().lower() for c in re.split(r"[,;\t]", head)}
    return {"open", "high", "low"} <= cols and ("bidvolume" in cols or "bid volume" in cols)


def _sep(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        head = f.readline()
    return max((",", ";", "\t"), key=head.count)


def _note(examples: dict[str, list[str]], reason: str, texts: Sequence[str]) -> None:
    have = examples.setdefault(reason, [])
    for t in texts:
        if len(have) >= 5:
            break
        have.append(t)


def session_bounds(cal: ExchangeCalendar, history: Sequence[HistoryRule], days: Sequence[dt.date]
                   ) -> dict[dt.date, tuple[int, int, int, int, int]]:
    """Per trading date: (open, close, halt start, halt end, calendar close) in UTC ns under that year's rules.
    No halt: halt start == halt end == close."""
    out = {}
    for d in days:
        s = cal.session_on(d)
        if s is None:
            continue
        close = s.close_ns
        hs = he = close
        for rule in history:
            if d >= rule.until:
                continue
            if rule.close is not None and not s.early_close:
                close = max(close, local_ns(d, rule.close, CT))
            if rule.halt is not None and not s.early_close:
                hs, he = local_ns(d, rule.halt[0], CT), local_ns(d, rule.halt[1], CT)
        if hs == he:
            hs = he = close
        out[d] = (s.open_ns, close, hs, he, s.close_ns)
    return out


def read_bars(path: Path | str, symbol: str | None = None, mapping: BarMapping = SIERRA, *,
              calendar: ExchangeCalendar | None = None) -> BarColumns:
    """Read and validate one bar file. Raises :class:`BarFileError` when it cannot be read at all
    (missing, no header, required columns absent); damaged rows are counted, not raised."""
    p = Path(path)
    contract = contract_of(p, None)
    root = symbol or (CONTRACT_RE.search(contract).group(1) if CONTRACT_RE.search(contract) else None)  # type: ignore[union-attr]
    if root is None:
        raise BarFileError(f"{p}: no contract code in the name; give --symbol")
    spec = spec_for(root)
    if contract == p.name.upper():
        contract = spec.root
    cal = calendar or calendar_for(spec.session)
    try:
        df = pd.read_csv(p, sep=mapping.separator if mapping is not SIERRA else _sep(p), skipinitialspace=True,
                         keep_default_na=False,
                         dtype={c: str for c in (mapping.date, mapping.time, mapping.datetime) if c})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BarFileError(f"{p}: cannot read ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    need = [mapping.open, mapping.high, mapping.low, mapping.close, mapping.volume, mapping.bid_volume,
            mapping.ask_volume] + ([mapping.datetime] if mapping.datetime else [mapping.date, mapping.time])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BarFileError(f"{p}: missing column(s) {', '.join(missing)} (have {', '.join(df.columns)})")
    return _validate(df, p, contract, spec, cal, mapping)


def _num(s: pd.Series) -> NDArray[np.float64]:
    if pd.api.types.is_numeric_dtype(s.dtype):
        return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(pd.to_numeric(s.astype(str).str.strip(), errors="coerce"), dtype=np.float64)


def _validate(df: pd.DataFrame, path: Path, contract: str, spec: ContractSpec, cal: ExchangeCalendar,
              mapping: BarMapping) -> BarColumns:
    rows = len(df)
    rejects: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    if mapping.datetime:
        text = df[mapping.datetime].astype(str).str.strip()
    else:
        text = df[mapping.date].astype(str).str.strip() + " " + df[mapping.time].astype(str).str.strip()
    try:
        local = pd.to_datetime(text, format="%Y/%m/%d %H:%M:%S")
    except ValueError:
        local = pd.to_datetime(text, errors="coerce", format="mixed")
    o, h, lo, c = (_num(df[k]) for k in (mapping.open, mapping.high, mapping.low, mapping.close))
    vol, bid, ask = (_num(df[k]) for k in (mapping.volume, mapping.bid_volume, mapping.ask_volume))
    ntr = _num(df[mapping.trades]) if mapping.trades and mapping.trades in df.columns else np.zeros(rows)
    alln = np.column_stack([o, h, lo, c, vol, bid, ask, ntr])
    bad = np.asarray(local.isna()) | ~np.isfinite(alln).all(axis=1)
    keep = ~bad
    texts = text.to_numpy()

    def reject(mask: object, reason: str) -> None:
        nonlocal keep
        hit = np.asarray(mask, bool) & keep
        n = int(hit.sum())
        if n:
            rejects[reason] += n
            _note(examples, reason, [str(t) for t in texts[np.flatnonzero(hit)[:5]]])
            keep = keep & ~hit

    rejects["malformed"] += int(bad.sum())
    if bad.any():
        _note(examples, "malformed", [str(t) for t in texts[np.flatnonzero(bad)[:5]]])
    # local wall time -> UTC ns; the repeated hour of the autumn switch: first pass DST, second standard
    loc = local.dt.tz_localize(mapping.timezone, ambiguous="NaT", nonexistent="NaT")
    amb = loc.isna() & ~local.isna()
    if amb.any():
        nonexist = local.dt.tz_localize(mapping.timezone, ambiguous=True, nonexistent="NaT").isna() & amb
        ambiguous = amb & ~nonexist
        if ambiguous.any():
            first = ~local[ambiguous].duplicated(keep="first")
            fixed = local[ambiguous].dt.tz_localize(mapping.timezone, ambiguous=first.to_numpy())
            loc = loc.astype(fixed.dtype)
            loc[ambiguous] = fixed
        reject(np.asarray(nonexist), "nonexistent_local_time")
    utc = loc.dt.tz_convert("UTC").dt.tz_localize(None)
    start = np.asarray(utc.to_numpy(dtype="datetime64[ns]")).astype(np.int64)
    tick = float(spec.tick_size)
    px = np.column_stack([o, h, lo, c])
    with np.errstate(invalid="ignore"):
        ticks = np.rint(px / tick)
        reject(~(px > 0).all(axis=1), "non_positive_price")
        reject((np.abs(ticks * tick - px) > 1e-7 * np.maximum(1.0, np.abs(px))).any(axis=1), "off_tick_grid")
        t_o, t_h, t_l, t_c = (ticks[:, i] for i in range(4))
        reject((t_l > t_h) | (t_o > t_h) | (t_o < t_l) | (t_c > t_h) | (t_c < t_l), "ohlc_inconsistent")
        reject((vol < 0) | (bid < 0) | (ask < 0) | (ntr < 0), "negative_volume")
        reject(bid + ask > vol, "bid_ask_exceeds_volume")
    # order: each bar strictly after the previous accepted one
    idx = np.flatnonzero(keep)
    if idx.size:
        st = start[idx]
        prev_max = np.maximum.accumulate(np.concatenate(([np.iinfo(np.int64).min], st[:-1])))
        dup = st == prev_max
        ooo = st < prev_max
        for mask, reason in ((dup, "duplicate"), (ooo, "out_of_order")):
            m = np.zeros(rows, bool)
            m[idx[mask]] = True
            reject(m, reason)
    # sessions under the rules of each year
    tdate = np.zeros(rows, np.int32)
    end = np.zeros(rows, np.int64)
    idx = np.flatnonzero(keep)
    if idx.size:
        st = start[idx]
        opens = np.asarray([s.open_ns for s in cal.sessions], np.int64)
        k = np.searchsorted(opens, st, side="right") - 1
        outside = k < 0
        kk = np.where(outside, 0, k)
        sess_dates = [cal.sessions[int(i)].trading_date for i in np.unique(kk)]
        bounds = session_bounds(cal, HISTORY.get(spec.session, ()), sess_dates)
        barlen = mapping.bar_seconds * NS
        closed = np.zeros(idx.size, bool)
        halted = np.zeros(idx.size, bool)
        late = np.zeros(idx.size, bool)
        disagree = np.zeros(idx.size, bool)
        ends = np.zeros(idx.size, np.int64)
        tds = np.zeros(idx.size, np.int32)
        for j in range(idx.size):
            if outside[j]:
                closed[j] = True
                continue
            sess = cal.sessions[int(kk[j])]
            b = bounds[sess.trading_date]
            t = int(st[j])
            _op, cl, hs, he, cal_close = b
            if t >= cl:
                if not sess.early_close and t < local_ns(sess.trading_date, dt.time(17, 0), CT):
                    late[j] = True
                else:
                    closed[j] = True
                continue
            if hs <= t < he:
                halted[j] = True
                continue
            if t >= cal_close:
                disagree[j] = True
            e = t + barlen
            e = min(e, cl)
            if t < hs:
                e = min(e, hs)
            ends[j] = e
            tds[j] = sess.trading_date.toordinal()
        for mask, reason in ((closed, "market_closed"), (halted, "historical_halt"), (late, "after_historical_close")):
            m = np.zeros(rows, bool)
            m[idx[mask]] = True
            reject(m, reason)
        notes["calendar_disagrees"] += int(disagree.sum())
        end[idx] = ends
        tdate[idx] = tds
    keep_idx = np.flatnonzero(keep)
    ti = ticks.astype(np.int64, copy=False) if np.isfinite(ticks).all() else np.nan_to_num(ticks).astype(np.int64)
    return BarColumns(
        spec.root, np.full(keep_idx.size, contract, dtype=object), start[keep_idx], end[keep_idx],
        tdate[keep_idx], ti[keep_idx, 0], ti[keep_idx, 1], ti[keep_idx, 2], ti[keep_idx, 3],
        vol[keep_idx].astype(np.int64), ntr[keep_idx].astype(np.int64), bid[keep_idx].astype(np.int64),
        ask[keep_idx].astype(np.int64), rows, rejects, notes, examples)


Adjust = Literal["none", "difference"]


def continuous(parts: Sequence[BarColumns], adjust: Adjust = "none") -> BarColumns:
    """One series from several contracts' files: per trading day the front (earliest-expiring) contract with bars
    that day; the others' bars of that day are counted as ``not_front`` and left out."""
    if not parts:
        raise BarFileError("no bar files")
    symbol = parts[0].symbol
    if any(p.symbol != symbol for p in parts):
        raise BarFileError("bar files of different roots: " + ", ".join(sorted({p.symbol for p in parts})))
    order = sorted(range(len(parts)), key=lambda i: expiry_key(str(parts[i].contract[0]) if len(parts[i]) else "~"))
    front: dict[int, int] = {}
    for i in order:
        for d in np.unique(parts[i].trading_date):
            front.setdefault(int(d), i)
    pieces = []
    rejects: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    rows = 0
    for i in order:
        p = parts[i]
        rows += p.rows
        rejects.update(p.rejects)
        notes.update(p.notes)
        for k, v in p.examples.items():
            _note(examples, k, v)
        own = np.asarray([front[int(d)] == i for d in p.trading_date], bool) if len(p) else np.zeros(0, bool)
        if (~own).any():
            rejects["not_front"] += int((~own).sum())
        pieces.append(p.take(own))
    cat = {f: np.concatenate([getattr(x, f) for x in pieces]) for f in (
        "contract", "start_ns", "end_ns", "trading_date", "open", "high", "low", "close", "volume", "trades",
        "bid_volume", "ask_volume")}
    srt = np.argsort(cat["start_ns"], kind="stable")
    c = {k: v[srt] for k, v in cat.items()}
    out = BarColumns(symbol, c["contract"], c["start_ns"], c["end_ns"], c["trading_date"], c["open"], c["high"],
                     c["low"], c["close"], c["volume"], c["trades"], c["bid_volume"], c["ask_volume"], rows=rows,
                     rejects=rejects, notes=notes, examples=examples)
    # overlapping times between files of consecutive front days cannot happen (one contract per day), but a
    # file whose bars interleave another's inside one day would: refuse quietly-wrong input
    if len(out) > 1 and (np.diff(out.start_ns) <= 0).any():
        raise BarFileError("continuous series: bars of the chosen contracts overlap in time")
    out.rolls = _rolls(out, parts)
    if adjust == "difference" and out.rolls:
        _back_adjust(out)
    return out


def _rolls(s: BarColumns, parts: Sequence[BarColumns]) -> list[Roll]:
    if not len(s):
        return []
    change = np.flatnonzero(s.contract[1:] != s.contract[:-1]) + 1
    by_contract = {str(p.contract[0]): p for p in parts if len(p)}
    out = []
    for i in change:
        old, new = str(s.contract[i - 1]), str(s.contract[i])
        gap = None
        po, pn = by_contract.get(old), by_contract.get(new)
        if po is not None and pn is not None:
            common = np.intersect1d(po.start_ns, pn.start_ns)
            if common.size:
                t = common[-1]
                gap = int(pn.close[pn.start_ns == t][0] - po.close[po.start_ns == t][0])
            else:
                gap = int(s.open[i] - s.close[i - 1])
        out.append(Roll(dt.date.fromordinal(int(s.trading_date[i])), old, new, gap))
    return out


def _back_adjust(s: BarColumns) -> None:
    """Shift each contract before a roll by the later rolls' gaps (difference adjustment; last contract as is)."""
    shift = np.zeros(len(s), np.int64)
    change = np.flatnonzero(s.contract[1:] != s.contract[:-1]) + 1
    for i, roll in zip(change, s.rolls, strict=True):
        shift[:i] += roll.gap_ticks or 0
    for f in ("open", "high", "low", "close"):
        setattr(s, f, getattr(s, f) + shift)


def load_series(paths: Sequence[Path | str], symbol: str | None = None, mapping: BarMapping = SIERRA,
                adjust: Adjust = "none", calendar: ExchangeCalendar | None = None) -> BarColumns:
    """Read every file and join them into one continuous series."""
    return continuous([read_bars(p, symbol, mapping, calendar=calendar) for p in paths], adjust)


def bar_files(root: Path) -> list[Path]:
    """Bar files under a folder (or the file itself), in name order."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*.txt") if p.is_file() and is_bar_file(p)) + sorted(
        p for p in root.glob("*.csv") if p.is_file() and is_bar_file(p))


__all__ = [
    "ES_HISTORY",
    "SIERRA",
    "BarColumns",
    "BarFileError",
    "BarMapping",
    "HistoryRule",
    "Roll",
    "bar_files",
    "continuous",
    "contract_of",
    "expiry_key",
    "is_bar_file",
    "load_series",
    "read_bars",
    "session_bounds",
]
