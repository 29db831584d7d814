"""Tradeability filters (seed 003) restated for CME futures: spread, dollar depth, gaps and halts.

Why not the seed's numbers: they are for equities quoted in dollars (SAFE: spread < 0.5%, depth > $100k;
AGGRESSIVE: < 1.0%, > $50k). On futures both are meaningless. ES trades with a one-tick spread, 0.25 points
at ~6000, i.e. about 0.4 bp: the 50 bp rule would pass a book ten ticks wide. And one ES contract is ~$300k
of notional, so a single resting lot "passes" $100k of depth. The project therefore measures:

- **spread in ticks** (the currency of futures microstructure). SAFE allows 1 tick, the normal state of
  every liquid CME contract we trade; AGGRESSIVE allows 2, which happens in thin hours and in SI/HG/PL.
  A wider book is a fast or broken market where a market order and its stop pay several ticks of slippage.
- **dollar depth** as the notional of the *thinner* side of the top N levels (N = 5), because that side is
  the one an exit or a stop may have to hit. SAFE >= $2M, AGGRESSIVE >= $500k. In lots (notional per contract
  ~ price x point value, 2025 prices): SAFE is ~7 lots of ES (~$300k each) or GC (~$330k), ~12 of SI, ~18 of
  HG, ~27 of PL and ~67 of MES over the five levels of the thinner side; AGGRESSIVE a quarter of that. So for
  the full-size index and gold contracts the depth rule only trips on a book that has all but vanished (the
  spread rule is their binding one), while it does real work for the micros and the thin metals: an overnight
  MES or platinum book of a few lots a level is "AGGRESSIVE only" or not tradeable, which is where a bracket
  of a few lots starts to move the price it exits at.
- **gap**: price range over the last ``gap_window_seconds`` (default 5 minutes) larger than ``gap_max_pct``
  (5%, the seed's rule; for index futures that is close to the exchange's own price limits, so it only
  catches genuine dislocations) or, optionally, than ``gap_max_ticks``. The range comes from the closed
  bars: the bars that ended in ``(now - W, now]`` plus the close of the last bar that ended in
  ``[now - 2W, now - W]`` (the price as the window opened: a jump between consecutive bars counts, a jump
  across the daily break or a data hole longer than the window does not).
- **halt**: an exchange status halt (``StatusEvent``) until it is lifted and for ``halt_recent_seconds``
  after (the seed's "recent halts"), or no trade for ``no_trade_seconds`` while the session is open.

Missing data never crashes and never silently passes: without a book (trades-only feed, an MBP-1 feed and
a top-5 rule, a stale book after a gap) the spread/depth checks say ``unavailable`` and the configured
``missing_book`` policy decides whether that passes or fails; the decision log shows which.
"""

from __future__ import annotations

import enum
import functools
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tradebot.core.calendar import NS, ExchangeCalendar, calendar_for
from tradebot.core.config import FilterSettings
from tradebot.core.contracts import ContractSpec, root_of
from tradebot.core.types import StatusEvent
from tradebot.orderflow.footprint import FootprintBar
from tradebot.orderflow.microstructure import MicrostructureSnapshot


class CheckStatus(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class FilterCheck:
    name: str
    """``spread``, ``depth``, ``gap``, ``halt`` or ``activity``."""
    status: CheckStatus
    passed: bool
    """The check's effect: an UNAVAILABLE check passes or fails per ``missing_book``."""
    detail: str


@dataclass(frozen=True, slots=True)
class FilterResult:
    mode: str
    passed: bool
    checks: tuple[FilterCheck, ...]

    @property
    def failures(self) -> tuple[FilterCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def summary(self) -> str:
        """``ok`` or the failing checks; unavailable-but-passing checks are named so nobody assumes them."""
        bad = [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]
        if bad:
            return "RISKY (" + "; ".join(bad) + ")"
        na = [c.name for c in self.checks if c.status is CheckStatus.UNAVAILABLE]
        return "ok" + (f" ({', '.join(na)} n/a)" if na else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "passed": self.passed,
            "checks": [{"name": c.name, "status": str(c.status), "passed": c.passed, "detail": c.detail}
                       for c in self.checks],
        }


@functools.lru_cache(maxsize=4096)
def exact_fraction(x: float) -> Fraction:
    """A configured float as the decimal a human typed (5.0 -> 5, 0.1 -> 1/10), so boundaries are exact.

    Cached: the same few settings and feature values are converted on every decision."""
    return Fraction(repr(float(x)))


_exact = exact_fraction


def thresholds(settings: FilterSettings) -> tuple[int, Decimal]:
    """``(max spread ticks, min depth USD)`` of the configured mode."""
    if settings.mode == "aggressive":
        return settings.aggressive_max_spread_ticks, settings.aggressive_min_depth_usd
    return settings.safe_max_spread_ticks, settings.safe_min_depth_usd


def pct_thresholds(settings: FilterSettings) -> tuple[Decimal, Decimal]:
    """``(max spread % of the mid, min depth USD)`` for stocks and crypto: seed 003's own terms."""
    if settings.mode == "aggressive":
        return settings.pct_aggressive_max_spread, settings.pct_aggressive_min_depth_usd
    return settings.pct_safe_max_spread, settings.pct_safe_min_depth_usd


def _pct_spread_check(micro: MicrostructureSnapshot, max_pct: Decimal, na_pass: bool) -> FilterCheck:
    bid, ask = micro.best_bid, micro.best_ask
    if bid is None or ask is None or bid + ask <= 0:
        return FilterCheck("spread", CheckStatus.UNAVAILABLE, na_pass, "one side of the book is empty")
    pct = Fraction(200 * (ask - bid), ask + bid)  # (ask - bid) / mid in %, exact: the tick size cancels
    if pct <= Fraction(max_pct):
        return FilterCheck("spread", CheckStatus.PASS, True, f"{float(pct):.3f}% <= {max_pct}%")
    return FilterCheck("spread", CheckStatus.FAIL, False, f"{float(pct):.3f}% > {max_pct}%")


def book_checks(micro: MicrostructureSnapshot | None, now_ns: int, settings: FilterSettings,
                spec: ContractSpec) -> tuple[FilterCheck, FilterCheck]:
    """Spread and depth checks of one snapshot (pure). Futures: spread in ticks; stocks and crypto: in % of
    the mid (seed 003's SAFE < 0.5% / AGGRESSIVE < 1.0%), both with the dollar-depth rule."""
    max_spread, min_depth = thresholds(settings)
    pct_terms = spec.kind != "future"
    max_pct = Decimal(0)
    if pct_terms:
        max_pct, min_depth = pct_thresholds(settings)
    na_pass = settings.missing_book == "pass"
    why = _book_missing(micro, now_ns, settings)
    if why is not None or micro is None:
        reason = why or "no book"
        policy = "passes" if na_pass else "fails"
        return (FilterCheck("spread", CheckStatus.UNAVAILABLE, na_pass, f"{reason}; missing_book {policy}"),
                FilterCheck("depth", CheckStatus.UNAVAILABLE, na_pass, f"{reason}; missing_book {policy}"))
    sp = micro.spread_ticks
    if pct_terms:
        spread = _pct_spread_check(micro, max_pct, na_pass)
    elif sp is None:
        spread = FilterCheck("spread", CheckStatus.UNAVAILABLE, na_pass, "one side of the book is empty")
    elif sp <= max_spread:
        spread = FilterCheck("spread", CheckStatus.PASS, True, f"{sp} tick(s) <= {max_spread}")
    else:
        spread = FilterCheck("spread", CheckStatus.FAIL, False, f"{sp} ticks > {max_spread}")
    d = micro.depth_for(settings.depth_levels)
    if d is None:
        depth = FilterCheck("depth", CheckStatus.UNAVAILABLE, na_pass,
                            f"top-{settings.depth_levels} depth not available (feed shows {micro.book_depth} level(s))")
    else:
        thinner = min(d.bid_notional_cents, d.ask_notional_cents)
        need = int((min_depth * 100).to_integral_value())
        shown = f"${thinner // 100:,} on the thinner side of the top {settings.depth_levels}"
        if thinner >= need:
            depth = FilterCheck("depth", CheckStatus.PASS, True, f"{shown} >= ${min_depth:,}")
        else:
            depth = FilterCheck("depth", CheckStatus.FAIL, False, f"{shown} < ${min_depth:,}")
    return spread, depth


def _book_missing(micro: MicrostructureSnapshot | None, now_ns: int, settings: FilterSettings) -> str | None:
    if micro is None:
        return "no microstructure snapshot"
    if not micro.book_available:
        return "no book"
    if micro.book_ts_ns is not None and now_ns - micro.book_ts_ns > settings.book_stale_seconds * NS:
        age = (now_ns - micro.book_ts_ns) / NS
        return f"book stale ({age:.0f}s old)"
    return None


@dataclass(frozen=True, slots=True)
class _BarPoint:
    end_ns: int
    open: int
    high: int
    low: int
    close: int


def gap_check(points: list[_BarPoint] | tuple[_BarPoint, ...], now_ns: int, settings: FilterSettings,
              spec: ContractSpec) -> FilterCheck:
    """The range over the window (see the module docstring) against the % and tick bounds, exactly."""
    w = settings.gap_window_seconds * NS
    lo_edge = now_ns - w
    inside = [p for p in points if lo_edge < p.end_ns <= now_ns]
    if not inside:
        return FilterCheck("gap", CheckStatus.UNAVAILABLE, True, "no bar in the window")
    before = [p for p in points if lo_edge - w <= p.end_ns <= lo_edge]
    prices = [x for p in inside for x in (p.high, p.low)]
    if before:
        ref = before[-1].close
        prices.append(ref)
    else:
        ref = inside[0].open
    move = max(prices) - min(prices)
    secs = settings.gap_window_seconds
    if settings.gap_max_ticks and move > settings.gap_max_ticks:
        return FilterCheck("gap", CheckStatus.FAIL, False,
                           f"moved {move} ticks in {secs}s > {settings.gap_max_ticks} ticks")
    if ref > 0:
        pct = Fraction(move * 100, ref)
        if pct > _exact(settings.gap_max_pct):
            return FilterCheck("gap", CheckStatus.FAIL, False,
                               f"moved {float(pct):.2f}% ({spec.fmt(move)}) in {secs}s > {settings.gap_max_pct}%")
        return FilterCheck("gap", CheckStatus.PASS, True, f"{float(pct):.2f}% in {secs}s")
    return FilterCheck("gap", CheckStatus.PASS, True, f"moved {move} ticks in {secs}s (no % at price <= 0)")


class TradeabilityFilter:
    """Per-symbol filter state: the bars of the gap window and the exchange halt status.

    Feed it every closed bar (``on_bar``) and the symbol's ``StatusEvent`` s (``on_status``); ask
    ``evaluate`` when a signal needs a verdict.
    """

    def __init__(self, spec: ContractSpec, settings: FilterSettings | None = None,
                 calendar: ExchangeCalendar | None = None) -> None:
        self.spec = spec
        self.settings = settings or FilterSettings()
        self._cal = calendar or calendar_for(spec.session)
        self._bars: deque[_BarPoint] = deque()
        self.halted = False
        self.halt_reason = ""
        self.halted_since_ns: int | None = None
        self.resumed_ns: int | None = None
        self.ignored_status = 0

    def on_bar(self, bar: FootprintBar) -> None:
        self._bars.append(_BarPoint(bar.end_ns, bar.open, bar.high, bar.low, bar.close))
        # Keep one bar older than the window: its close is the reference of the next evaluation.
        horizon = bar.end_ns - 2 * self.settings.gap_window_seconds * NS
        while len(self._bars) > 2 and self._bars[1].end_ns < horizon:
            self._bars.popleft()

    def on_status(self, ev: StatusEvent) -> None:
        if root_of(ev.symbol) != self.spec.root:
            self.ignored_status += 1
            return
        if ev.halted and not self.halted:
            self.halted, self.halted_since_ns, self.halt_reason = True, ev.ts_event, ev.reason
        elif not ev.halted and self.halted:
            self.halted, self.resumed_ns = False, ev.ts_event

    def evaluate(self, now_ns: int, micro: MicrostructureSnapshot | None = None,
                 last_trade_ns: int | None = None) -> FilterResult:
        s = self.settings
        spread, depth = book_checks(micro, now_ns, s, self.spec)
        checks = [spread, depth, gap_check(tuple(self._bars), now_ns, s, self.spec), self._halt(now_ns),
                  self._activity(now_ns, last_trade_ns)]
        return FilterResult(s.mode.upper(), all(c.passed for c in checks), tuple(checks))

    def _halt(self, now_ns: int) -> FilterCheck:
        if self.halted:
            why = f" ({self.halt_reason})" if self.halt_reason else ""
            start = now_ns if self.halted_since_ns is None else self.halted_since_ns
            since = (now_ns - start) / NS
            return FilterCheck("halt", CheckStatus.FAIL, False, f"exchange halt{why} for {since:.0f}s")
        if self.resumed_ns is not None and now_ns - self.resumed_ns < self.settings.halt_recent_seconds * NS:
            ago = (now_ns - self.resumed_ns) / NS
            return FilterCheck("halt", CheckStatus.FAIL, False,
                               f"halt lifted {ago:.0f}s ago (< {self.settings.halt_recent_seconds}s)")
        return FilterCheck("halt", CheckStatus.PASS, True, "no recent halt")

    def _activity(self, now_ns: int, last_trade_ns: int | None) -> FilterCheck:
        limit = self.settings.no_trade_seconds
        if not limit:
            return FilterCheck("activity", CheckStatus.PASS, True, "check off")
        if self._cal.session_at(now_ns) is None and self._cal.session_at(now_ns - 1) is None:
            return FilterCheck("activity", CheckStatus.PASS, True, "market closed")
        if last_trade_ns is None:
            return FilterCheck("activity", CheckStatus.FAIL, False, "no trade seen in the session")
        idle = now_ns - last_trade_ns
        if idle > limit * NS:
            return FilterCheck("activity", CheckStatus.FAIL, False,
                               f"no trade for {idle / NS:.0f}s inside the session (> {limit}s)")
        return FilterCheck("activity", CheckStatus.PASS, True, f"last trade {idle / NS:.0f}s ago")
