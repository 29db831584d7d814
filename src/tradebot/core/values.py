"""Setting values the operator writes as text and the code reads typed: clock times, time windows, per-root
maps and capital tiers.

Each is parsed and checked once, when the settings load (a bad value is the usual one-line config error naming
the variable), and held typed in the settings model, so no stage re-parses ``"15:55"`` or ``"ES:500,MES:50"``
where it uses it. Each type dumps back to its text form: ``model_dump``, ``.env.example``, the web page and a
backtest run's recorded configuration show what the operator wrote, and a dumped group validates again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

from tradebot.core.contracts import root_of

# -- clock times -----------------------------------------------------------------------------------------------


def parse_hhmm(text: str) -> dt.time:
    """``"15:55"`` -> ``time(15, 55)``; raises ``ValueError`` with the accepted form."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r}: give HH:MM")
    h, m = int(parts[0]), int(parts[1])
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"{text!r}: give HH:MM")
    return dt.time(h, m)


def parse_hhmmss(text: str) -> dt.time:
    """``HH:MM`` or ``HH:MM:SS`` -> a time of day."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
        raise ValueError(f"{text!r} is not a HH:MM[:SS] time")
    return dt.time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def fmt_clock(t: dt.time) -> str:
    """``HH:MM``, or ``HH:MM:SS`` when the seconds are not zero (the form the settings accept)."""
    return f"{t.hour:02d}:{t.minute:02d}" + (f":{t.second:02d}" if t.second else "")


def parse_iso_date(text: str) -> dt.date:
    """``YYYY-MM-DD`` only (pydantic's own date parsing would also take a Unix timestamp)."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: not a date (YYYY-MM-DD)") from None


# -- time windows ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``[start, end)`` in a zone's wall-clock time; ``end < start`` wraps midnight (``22:00-02:00``)."""

    start: dt.time
    end: dt.time

    def contains(self, t: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{fmt_clock(self.start)}-{fmt_clock(self.end)}"


def parse_time_windows(text: str) -> tuple[TimeWindow, ...]:
    """``"07:00-10:00,13:30-15:00"`` -> windows; a window may wrap midnight (``22:00-02:00``)."""
    out: list[TimeWindow] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start, sep, end = part.partition("-")
        if not sep:
            raise ValueError(f"{part!r}: give HH:MM-HH:MM")
        a, b = parse_hhmm(start), parse_hhmm(end)
        if a == b:
            raise ValueError(f"{part!r}: a window needs a start different from its end")
        out.append(TimeWindow(a, b))
    return tuple(out)


# -- per-root maps -------------------------------------------------------------------------------------------


def parse_root_map(text: str) -> dict[str, Decimal]:
    """``"ES:500,MES:50"`` -> ``{"ES": Decimal(500), ...}``; roots must be known contracts."""
    out: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        root, sep, value = part.partition(":")
        r = root_of(root)
        if not sep or r is None:
            raise ValueError(f"{part!r}: give ROOT:value with a known root")
        try:
            d = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"{part!r}: value is not a number") from None
        if not d.is_finite() or d < 0:
            raise ValueError(f"{part!r}: value must be a non-negative number")
        if d.adjusted() > 15:  # 1e999999 is a typo, and converting it to cents would never finish
            raise ValueError(f"{part!r}: value beyond any real figure")
        out[r] = d
    return out


def fmt_root_map(m: Mapping[str, Decimal]) -> str:
    return ",".join(f"{k}:{v}" for k, v in m.items())


def parse_tickers(text: str) -> tuple[str, ...]:
    """``"aapl, TSLA"`` -> ``("AAPL", "TSLA")``: stock tickers, upper case, in the order given, once each."""
    out: list[str] = []
    for part in filter(None, (p.strip().upper() for p in text.split(","))):
        if not re.fullmatch(r"[A-Z0-9.\-]{1,12}", part):
            raise ValueError(f"{part!r}: not a ticker")
        if part not in out:
            out.append(part)
    return tuple(out)


def parse_steps(text: str) -> tuple[int, ...]:
    """``"50,25,10"`` -> ``(50, 25, 10)``: alert when the headroom left falls to these percentages."""
    steps: list[int] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            v = int(part.strip())
        except ValueError:
            raise ValueError(f"headroom step {part.strip()!r} is not a whole percentage") from None
        if not 0 < v < 100:
            raise ValueError(f"headroom step {v} must lie between 1 and 99 (percent of the limit left)")
        steps.append(v)
    return tuple(sorted(set(steps), reverse=True))


# -- capital tiers -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapitalTier:
    """One capital tier: from ``min_balance_cents`` on, trade ``root`` with at most ``max_contracts``.

    The one tier definition: the execution manager picks from the settings' tiers, and backtest statistics and
    reports read the same tuple (no second table of defaults)."""

    number: int
    """1-based position in the ascending table."""
    name: str
    min_balance_cents: int
    root: str
    max_contracts: int


def parse_tiers(text: str) -> tuple[CapitalTier, ...]:
    """Capital tiers ``min_usd:ROOT:max_contracts[:name],...``, strictly ascending by balance."""
    tiers: list[CapitalTier] = []
    for i, part in enumerate(filter(None, (p.strip() for p in text.split(","))), start=1):
        fields = part.split(":", 3)
        if len(fields) < 3:
            raise ValueError(f"{part!r}: give min_balance_usd:ROOT:max_contracts[:name]")
        root = root_of(fields[1])
        try:
            min_usd = Decimal(fields[0].strip())
            max_n = int(fields[2])
        except (ArithmeticError, ValueError):
            raise ValueError(f"{part!r}: balance and max contracts must be numbers") from None
        if root is None or not min_usd.is_finite() or min_usd < 0 or max_n < 1:
            raise ValueError(f"{part!r}: need a known root, balance >= 0 and max contracts >= 1")
        if min_usd.adjusted() > 15:
            raise ValueError(f"{part!r}: balance beyond any account")
        name = fields[3].strip() if len(fields) > 3 and fields[3].strip() else f"Tier {i}"
        tiers.append(CapitalTier(i, name, int((min_usd * 100).to_integral_value()), root, max_n))
    if not tiers:
        raise ValueError("give at least one tier")
    mins = [t.min_balance_cents for t in tiers]
    if mins != sorted(mins) or len(set(mins)) != len(mins):
        raise ValueError("tiers must be in strictly ascending min balance order")
    return tuple(tiers)


def fmt_tiers(tiers: tuple[CapitalTier, ...]) -> str:
    return ",".join(f"{Decimal(t.min_balance_cents) / 100}:{t.root}:{t.max_contracts}:{t.name}" for t in tiers)


# -- the pydantic field types ------------------------------------------------------------------------------------


def _from_text(parse: Callable[[str], Any], show: Callable[[Any], str]) -> BeforeValidator:
    """Text is parsed; a typed value (a dumped-and-revalidated group keeps its text form, code may pass the value
    itself) goes through its text form, so it is checked by exactly the same rules."""

    def validate(v: Any) -> Any:
        if isinstance(v, str):
            return parse(v)
        try:
            text = show(v)
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"give text, not {type(v).__name__}") from None
        return parse(text)

    return BeforeValidator(validate)


ClockTime = Annotated[dt.time, _from_text(parse_hhmm, fmt_clock), PlainSerializer(fmt_clock, return_type=str)]
"""``HH:MM``."""
ClockTimeSeconds = Annotated[dt.time, _from_text(parse_hhmmss, fmt_clock),
                             PlainSerializer(fmt_clock, return_type=str)]
"""``HH:MM[:SS]``."""
TimeWindows = Annotated[tuple[TimeWindow, ...],
                        _from_text(parse_time_windows, lambda v: ",".join(str(w) for w in v)),
                        PlainSerializer(lambda v: ",".join(str(w) for w in v), return_type=str), NoDecode]
"""``HH:MM-HH:MM[,...]``; empty = none."""
RootMap = Annotated[dict[str, Decimal], _from_text(parse_root_map, fmt_root_map),
                    PlainSerializer(fmt_root_map, return_type=str), NoDecode]
"""``ROOT:value[,...]`` (known roots, values >= 0)."""
IsoDate = Annotated[dt.date, _from_text(parse_iso_date, dt.date.isoformat),
                    PlainSerializer(dt.date.isoformat, return_type=str)]
"""``YYYY-MM-DD``."""
Tickers = Annotated[tuple[str, ...], _from_text(parse_tickers, ",".join), PlainSerializer(",".join, return_type=str),
                    NoDecode]
"""``AAPL,TSLA`` (upper-cased); empty = none."""
PercentSteps = Annotated[tuple[int, ...], _from_text(parse_steps, lambda v: ",".join(map(str, v))),
                         PlainSerializer(lambda v: ",".join(map(str, v)), return_type=str), NoDecode]
"""``50,25,10``: whole percentages 1-99, held in descending order."""
Tiers = Annotated[tuple[CapitalTier, ...], _from_text(parse_tiers, fmt_tiers),
                  PlainSerializer(fmt_tiers, return_type=str), NoDecode]
"""``min_usd:ROOT:max_contracts[:name],...`` ascending."""
