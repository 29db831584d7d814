"""Seed 000's protective alerts: large seller, red burst, exit signal.

Rules (all on event time, so a replay raises exactly what live would have):

* **Large seller** - a SELL-aggressor print of at least ``large_order_size`` contracts, or a resting
  size at the best bid of at least that many. The seed says "orders > 10,000 shares at bid"; the
  project reads that as both a large print hitting the bid and a large resting bid, and the threshold
  is inclusive (``>=``). The per-contract default is ``ContractSpec.large_order_size`` (10,000 is a
  share count). A resting bid alerts once when it appears (or moves to a new best price), not on
  every book update it survives.
* **Red burst** - volume in the last ``burst_window_seconds`` is more than ``volume_spike_threshold``
  times the average volume per window of the ``baseline_seconds`` (5 minutes) *before* that window
  (so a burst does not inflate its own baseline), and sells are a majority of the window's volume
  (``2 * sell > volume``; unknown-side prints count in the volume but not as sells). The spike
  threshold (default 3.0 = the seed's "300%") decides *whether* there is a red burst; the red-burst
  threshold (default 4.0) decides its *severity*: ratio > red-burst threshold is CRITICAL, otherwise
  WARNING. Both comparisons are strict, as the seed's ">300%". No burst is raised until a full
  baseline has been observed (the engine saw the baseline's first second), nor against a zero
  baseline (no average to compare with).
  After a burst, the same or lower severity is quiet for ``burst_cooldown_seconds``; an escalation
  to CRITICAL is raised once. Volumes sit in whole-second buckets (window edges at whole seconds),
  with running sums, so each print costs O(1) however long the windows are.
* **Exit signal** - at least ``exit_min_alerts`` (3) large-seller alerts within
  ``alert_window_seconds`` (inclusive: first and last at most that far apart). One episode raises one
  signal: the signal clears the count and starts ``exit_cooldown_seconds`` during which large-seller
  alerts are still raised but not counted, so a new signal needs a fresh cluster after the cooldown.

Monitoring scope: ``positions_only`` raises alerts only for symbols with an open position
(:meth:`AlertEngine.set_open_positions`), ``all`` for every symbol. Volume statistics are kept for
every symbol either way (cheap) so a red burst can be judged from the moment a position opens.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from tradebot.core.config import Settings
from tradebot.core.contracts import ContractSpec, UnknownContractError, root_of, spec_for
from tradebot.core.types import BookUpdate, Side, Trade

_NS = 1_000_000_000


class AlertKind(enum.StrEnum):
    LARGE_SELLER = "large_seller"
    RED_BURST = "red_burst"
    EXIT_SIGNAL = "exit_signal"


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3


DetailValue = int | float | str


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    symbol: str
    ts_ns: int
    severity: Severity
    reason: str
    details: tuple[tuple[str, DetailValue], ...] = ()

    def detail(self, key: str) -> DetailValue | None:
        for k, v in self.details:
            if k == key:
                return v
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "symbol": self.symbol, "ts_ns": self.ts_ns,
                "severity": self.severity.name, "reason": self.reason, **dict(self.details)}


@dataclass(frozen=True, slots=True)
class AlertSettings:
    large_order_size: int | None = None
    """``None``: each contract's ``ContractSpec.large_order_size``."""
    volume_spike_threshold: float = 3.0
    red_burst_threshold: float = 4.0
    alert_window_seconds: int = 120
    monitoring_mode: Literal["positions_only", "all"] = "positions_only"
    burst_window_seconds: int = 60
    baseline_seconds: int = 300
    burst_cooldown_seconds: int | None = None
    """``None``: one burst window."""
    exit_min_alerts: int = 3
    exit_cooldown_seconds: int | None = None
    """``None``: one alert window."""
    book_large_bid: bool = True
    """Count a large resting best bid as a large seller (the seed's 'orders at bid')."""

    def __post_init__(self) -> None:
        if self.large_order_size is not None and self.large_order_size <= 0:
            raise ValueError("large_order_size must be positive")
        if self.volume_spike_threshold <= 0 or self.red_burst_threshold <= 0:
            raise ValueError("thresholds must be positive")
        if min(self.alert_window_seconds, self.burst_window_seconds, self.baseline_seconds) <= 0:
            raise ValueError("windows must be positive")
        if self.exit_min_alerts < 1:
            raise ValueError("exit_min_alerts must be >= 1")

    @classmethod
    def from_settings(cls, s: Settings, **overrides: Any) -> AlertSettings:
        """The seed's ``ORDER_FLOW_*`` variables, as loaded by :class:`Settings`."""
        base: dict[str, Any] = {
            "large_order_size": s.order_flow_large_order_size,
            "volume_spike_threshold": s.order_flow_volume_spike_threshold,
            "red_burst_threshold": s.order_flow_red_burst_threshold,
            "alert_window_seconds": s.order_flow_alert_window_seconds,
            "monitoring_mode": s.order_flow_monitoring_mode,
        }
        base.update(overrides)
        return cls(**base)


@dataclass
class _SymbolState:
    threshold: int
    key: str
    """Contract root, the key of the open-positions set."""
    first_sec: int | None = None
    # Per-second buckets [second, volume, sell volume]: `window` holds (cur - W, cur], `base` the B before.
    window: deque[list[int]] = field(default_factory=deque)
    base: deque[list[int]] = field(default_factory=deque)
    win_volume: int = 0
    win_sell: int = 0
    base_volume: int = 0
    burst_quiet_until: int = -1
    burst_severity: Severity | None = None
    large_bid_px: int | None = None
    seller_ts: deque[int] = field(default_factory=deque)
    exit_quiet_until: int = -1
    exit_signals: int = 0


_NONE: tuple[Alert, ...] = ()
_SELL = Side.SELL


class AlertEngine:
    """Seed 000's detector for many symbols. ``on_trade`` / ``on_book`` return the alerts they raise."""

    def __init__(self, settings: AlertSettings | None = None,
                 specs: Callable[[str], ContractSpec] = spec_for, logger: Any = None) -> None:
        self.settings = s = settings or AlertSettings()
        self._specs = specs
        self.log = logger
        self.stats: Counter[str] = Counter()
        self._state: dict[str, _SymbolState | None] = {}
        self._open: set[str] = set()
        self._all = s.monitoring_mode == "all"
        self._w = s.burst_window_seconds
        self._b = s.baseline_seconds
        self._window_ns = s.alert_window_seconds * _NS
        self._exit_cool_ns = (s.exit_cooldown_seconds if s.exit_cooldown_seconds is not None
                              else s.alert_window_seconds) * _NS
        self._burst_cool_ns = (s.burst_cooldown_seconds if s.burst_cooldown_seconds is not None
                               else s.burst_window_seconds) * _NS
        # The baseline must have been watched from its first second: (cur - W - B, cur - W].
        self._warm_s = self._w + self._b - 1
        spike = Fraction(str(s.volume_spike_threshold))
        red = Fraction(str(s.red_burst_threshold))
        self._spike = (spike.numerator, spike.denominator)
        self._red = (red.numerator, red.denominator)

    # -- scope ------------------------------------------------------------------------------------

    @staticmethod
    def _key(symbol: str) -> str:
        return root_of(symbol) or symbol

    def set_open_positions(self, symbols: Iterable[str]) -> None:
        self._open = {self._key(x) for x in symbols}

    def open_position(self, symbol: str) -> None:
        self._open.add(self._key(symbol))

    def close_position(self, symbol: str) -> None:
        self._open.discard(self._key(symbol))

    def monitored(self, symbol: str) -> bool:
        return self._all or symbol in self._open or self._key(symbol) in self._open

    def threshold(self, symbol: str) -> int | None:
        st = self._get(symbol)
        return st.threshold if st is not None else None

    def exit_signals(self, symbol: str) -> int:
        st = self._state.get(symbol)
        return st.exit_signals if st is not None else 0

    def _get(self, symbol: str) -> _SymbolState | None:
        try:
            return self._state[symbol]
        except KeyError:
            pass
        try:
            spec = self._specs(symbol)
            st: _SymbolState | None = _SymbolState(self.settings.large_order_size or spec.large_order_size,
                                                   self._key(symbol))
        except (UnknownContractError, KeyError, ValueError):
            st = None
        self._state[symbol] = st
        return st

    # -- events -----------------------------------------------------------------------------------

    def on_trade(self, trade: Trade) -> tuple[Alert, ...]:
        symbol = trade.symbol
        st = self._state.get(symbol)
        if st is None:
            st = self._get(symbol)
            if st is None:
                self.stats["unknown_symbol"] += 1
                return _NONE
        ts = trade.ts_event
        size = trade.size
        sell = trade.side is _SELL
        win = st.window
        if win and st.first_sec is not None and ts // _NS <= win[-1][0]:
            # ``_add_volume`` when the print's second already has its bucket (nearly every print)
            b = win[-1]
            b[1] += size
            st.win_volume += size
            if sell:
                b[2] += size
                st.win_sell += size
        else:
            self._add_volume(st, ts, size, sell)
        if not (self._all or st.key in self._open):
            return _NONE
        out: list[Alert] = []
        if sell and trade.size >= st.threshold:
            self._large_seller(st, trade.symbol, ts, "print", trade.price, trade.size, out)
        self._check_burst(st, trade.symbol, ts, out)
        return tuple(out) if out else _NONE

    def on_book(self, book: BookUpdate) -> tuple[Alert, ...]:
        if not self.settings.book_large_bid:
            return _NONE
        st = self._get(book.symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return _NONE
        if not book.bid_px or book.bid_sz[0] < st.threshold or not (self._all or st.key in self._open):
            st.large_bid_px = None
            return _NONE
        px = book.bid_px[0]
        if st.large_bid_px == px:
            return _NONE
        st.large_bid_px = px
        out: list[Alert] = []
        self._large_seller(st, book.symbol, book.ts_event, "resting bid", px, book.bid_sz[0], out)
        return tuple(out)

    # -- rules ------------------------------------------------------------------------------------

    def _large_seller(self, st: _SymbolState, symbol: str, ts: int, source: str, price: int, size: int,
                      out: list[Alert]) -> None:
        out.append(Alert(AlertKind.LARGE_SELLER, symbol, ts, Severity.WARNING,
                         f"Large seller detected: {source} of {size} at {self._fmt(symbol, price)} "
                         f"(threshold {st.threshold})",
                         (("source", source), ("price", price), ("size", size), ("threshold", st.threshold))))
        self.stats["large_seller"] += 1
        self._emit(out[-1])
        if ts < st.exit_quiet_until:
            return
        q = st.seller_ts
        q.append(ts)
        floor = ts - self._window_ns
        while q and q[0] < floor:
            q.popleft()
        if len(q) >= self.settings.exit_min_alerts:
            n = len(q)
            span = (q[-1] - q[0]) / _NS
            q.clear()
            st.exit_quiet_until = ts + self._exit_cool_ns
            st.exit_signals += 1
            out.append(Alert(AlertKind.EXIT_SIGNAL, symbol, ts, Severity.CRITICAL,
                             f"Exit signal triggered: {n} large-seller alerts within {span:g}s "
                             f"(rule: {self.settings.exit_min_alerts} within {self.settings.alert_window_seconds}s)",
                             (("alerts", n), ("span_seconds", span),
                              ("window_seconds", self.settings.alert_window_seconds))))
            self.stats["exit_signal"] += 1
            self._emit(out[-1])

    def _add_volume(self, st: _SymbolState, ts: int, size: int, sell: bool) -> None:
        sec = ts // _NS
        if st.first_sec is None:
            st.first_sec = sec
        win = st.window
        if not win or sec > win[-1][0]:
            self._advance(st, sec)
            win.append([sec, 0, 0])
        b = win[-1]  # a late print (same or earlier second) joins the newest bucket
        b[1] += size
        st.win_volume += size
        if sell:
            b[2] += size
            st.win_sell += size

    def _advance(self, st: _SymbolState, sec: int) -> None:
        win, base = st.window, st.base
        edge = sec - self._w
        while win and win[0][0] <= edge:
            b = win.popleft()
            st.win_volume -= b[1]
            st.win_sell -= b[2]
            base.append(b)
            st.base_volume += b[1]
        floor = edge - self._b
        while base and base[0][0] <= floor:
            st.base_volume -= base.popleft()[1]

    def _check_burst(self, st: _SymbolState, symbol: str, ts: int, out: list[Alert]) -> None:
        assert st.first_sec is not None
        if (ts // _NS - st.first_sec < self._warm_s or st.base_volume <= 0
                or 2 * st.win_sell <= st.win_volume):
            return
        # ratio = win_volume / (base_volume * W / B), compared as integers against exact fractions
        lhs = st.win_volume * self._b
        rhs = st.base_volume * self._w
        num, den = self._spike
        if lhs * den <= num * rhs:
            return
        num, den = self._red
        severity = Severity.CRITICAL if lhs * den > num * rhs else Severity.WARNING
        if ts < st.burst_quiet_until and st.burst_severity is not None and severity <= st.burst_severity:
            return
        st.burst_quiet_until = ts + self._burst_cool_ns
        st.burst_severity = severity
        ratio = lhs / rhs
        avg = st.base_volume * self._w / self._b
        out.append(Alert(AlertKind.RED_BURST, symbol, ts, severity,
                         f"Red burst: {st.win_volume} contracts in {self._w}s = {ratio:.2f}x the average "
                         f"{avg:.1f} per {self._w}s over the previous {self._b}s, {st.win_sell} sold",
                         (("volume", st.win_volume), ("sell_volume", st.win_sell), ("ratio", ratio),
                          ("average", avg), ("window_seconds", self._w))))
        self.stats["red_burst"] += 1
        self._emit(out[-1])

    # -- helpers ----------------------------------------------------------------------------------

    def _fmt(self, symbol: str, price: int) -> str:
        try:
            return self._specs(symbol).fmt(price)
        except (UnknownContractError, KeyError, ValueError):
            return str(price)

    def _emit(self, alert: Alert) -> None:
        if self.log is not None:
            self.log.warning(alert.reason, **alert.as_dict())
