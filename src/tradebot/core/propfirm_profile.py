"""A prop-firm account profile's rules as data, read from the profiles file when the settings load.

The built-in ``tradebot/data/propfirms.toml`` or the operator's copy (``TRADEBOT_PROPFIRM__PROFILES_FILE``) is
parsed once, at load, where a damaged profile is a one-line config error naming the file's variable and the
field; the settings then hold the parsed profiles (:class:`ProfilesFile`), and the rules in
:mod:`tradebot.execution.propfirm` take a :class:`PropFirmProfile`.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN = "data/propfirms.toml"
"""The package's own profiles file (Topstep's accounts), relative to the ``tradebot`` package."""


class Drawdown(enum.StrEnum):
    EOD = "eod"
    """Trails the highest end-of-day balance."""
    INTRADAY = "intraday"
    """Trails the equity peak including open profit."""


@dataclass(frozen=True, slots=True)
class PropFirmProfile:
    """One account type's rules, all money in integer cents."""

    name: str
    firm: str
    program: str
    account_size_cents: int
    max_loss_cents: int
    """Trailing maximum drawdown: the floor sits this far below the high-water mark."""
    drawdown: Drawdown
    lock_cents: int | None
    """The floor never trails above ``account_size + lock`` (Topstep: 0, the starting balance); ``None``: no lock."""
    daily_loss_cents: int | None
    """Loss in one trading day (realized plus open) that ends the day; ``None``: no daily limit."""
    max_contracts: int
    """In full-size contracts; a micro counts ``1 / micro_ratio`` of one."""
    micro_ratio: int
    flat_by: dt.time | None
    """Exchange-local time (the calendar's zone: CT for CME) by which every position must be flat."""
    consistency_pct: int | None
    """Best day must stay below this percentage of the total profit; ``None``: no consistency rule."""
    profit_target_cents: int | None
    source: str = ""
    """Where the values came from and when they were checked (shown by ``status``)."""

    @property
    def max_units(self) -> int:
        """``max_contracts`` in micro units (a full-size contract is ``micro_ratio`` units)."""
        return self.max_contracts * self.micro_ratio


_FIELDS = {"firm", "program", "account_size", "max_loss", "drawdown", "drawdown_lock", "daily_loss_limit",
           "max_contracts", "micro_ratio", "flat_by", "consistency", "profit_target", "source"}


def _cents(name: str, key: str, v: Any, *, positive: bool = True) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
        raise ValueError(f"profile {name}: {key} must be a number of US dollars, not {v!r}")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"profile {name}: {key} must be a number of US dollars, not {v!r}") from None
    if not d.is_finite() or (d <= 0 if positive else d < 0):
        raise ValueError(f"profile {name}: {key} must be {'positive' if positive else 'zero or more'}, not {v!r}")
    cents = d * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"profile {name}: {key} has fractions of a cent ({v!r})")
    return int(cents)


def _optional_cents(name: str, key: str, raw: Mapping[str, Any]) -> int | None:
    """Absent or 0: the rule is off."""
    v = raw.get(key)
    if v is None or (not isinstance(v, bool) and isinstance(v, int | float) and v == 0):
        return None
    return _cents(name, key, v)


def parse_profile(name: str, raw: Mapping[str, Any]) -> PropFirmProfile:
    """One ``[profile]`` table; raises ``ValueError`` naming the profile and the field."""
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ValueError(f"profile {name}: unknown field(s) {', '.join(sorted(unknown))}")
    for key in ("account_size", "max_loss", "max_contracts"):
        if key not in raw:
            raise ValueError(f"profile {name}: {key} is required")
    try:
        drawdown = Drawdown(str(raw.get("drawdown", "eod")))
    except ValueError:
        raise ValueError(f"profile {name}: drawdown must be 'eod' or 'intraday', not {raw.get('drawdown')!r}") from None
    lock = raw.get("drawdown_lock")
    max_contracts, ratio = raw["max_contracts"], raw.get("micro_ratio", 10)
    for key, v in (("max_contracts", max_contracts), ("micro_ratio", ratio)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"profile {name}: {key} must be a positive whole number, not {v!r}")
    flat_by: dt.time | None = None
    if raw.get("flat_by"):
        text = str(raw["flat_by"])
        try:
            hh, mm = (int(x) for x in text.split(":"))
            flat_by = dt.time(hh, mm)
        except ValueError:
            raise ValueError(f"profile {name}: flat_by must be HH:MM exchange time, not {text!r}") from None
    consistency = raw.get("consistency")
    if consistency is not None and (isinstance(consistency, bool) or not isinstance(consistency, int)
                                    or not 0 <= consistency < 100):
        raise ValueError(f"profile {name}: consistency must be a whole percentage 1-99 (0 = off), not {consistency!r}")
    return PropFirmProfile(
        name=name, firm=str(raw.get("firm", "")), program=str(raw.get("program", "")),
        account_size_cents=_cents(name, "account_size", raw["account_size"]),
        max_loss_cents=_cents(name, "max_loss", raw["max_loss"]), drawdown=drawdown,
        lock_cents=None if lock is None else _cents(name, "drawdown_lock", lock, positive=False),
        daily_loss_cents=_optional_cents(name, "daily_loss_limit", raw),
        max_contracts=int(max_contracts), micro_ratio=int(ratio), flat_by=flat_by,
        consistency_pct=int(consistency) if consistency else None,
        profit_target_cents=_optional_cents(name, "profit_target", raw), source=str(raw.get("source", "")))


def parse_profiles(doc: Mapping[str, Any]) -> dict[str, PropFirmProfile]:
    """Every table of the document is a profile named by its key (``topstep-50k``)."""
    out: dict[str, PropFirmProfile] = {}
    for name, raw in doc.items():
        if not isinstance(raw, Mapping):
            raise ValueError(f"profile {name}: expected a [table] of rules, got {type(raw).__name__}")
        out[name] = parse_profile(name, raw)
    return out


@dataclass(frozen=True, slots=True)
class ProfilesFile:
    """A profiles file as read at load: its path (``None``: the built-in one) and every profile in it."""

    path: Path | None
    profiles: Mapping[str, PropFirmProfile]


def read_profiles(path: Path | None) -> ProfilesFile:
    """Parse a profiles file (``None``: the built-in one); ``ValueError`` naming the file and the field."""
    where = str(path) if path is not None else f"tradebot/{BUILTIN}"
    try:
        if path is None:
            return _builtin()
        return ProfilesFile(path, parse_profiles(tomllib.loads(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


@functools.cache
def _builtin() -> ProfilesFile:
    text = resources.files("tradebot").joinpath(BUILTIN).read_text(encoding="utf-8")
    return ProfilesFile(None, parse_profiles(tomllib.loads(text)))
