"""Seed 000's protective alerts: large seller (and its mirror, large buyer), red burst, exit signal.

Rules (all on event time, so a replay raises exactly what live would have):

* **Large seller** - someone who wants to sell size: a SELL-aggressor print of at least
  ``large_order_size`` contracts (a large print *at the bid*: the seed's "orders > 10,000 shares at
  bid"), or a resting size at the best *offer* of at least that many. A large resting *bid* is a
  buyer, never a seller. **Large buyer** is the mirror: a BUY-aggressor print at the offer, or large
  resting size on the bid. The threshold is inclusive (``>=``); the per-contract default is
  ``ContractSpec.large_order_size`` (10,000 is a share count). Resting size alerts once when it
  appears (or moves to a new best price), not on every book update it survives
  (``book_resting_size`` turns resting size off, prints only).
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
* **Exit signal** - follows the position: at least ``exit_min_alerts`` (3) large-seller alerts within
  ``alert_window_seconds`` (inclusive: first and last at most that far apart) threaten a *long*;
  as many large-buyer alerts threaten a *short*. The signal says which (``threatens`` = ``long`` or
  ``short``) and the execution manager acts only on positions of that side. One episode raises one
  signal: the signal clears its count and starts ``exit_cooldown_seconds`` during which alerts of
  that side are still raised but not counted, so a new signal needs a fresh cluster after the cooldown.

Monitoring scope: ``positions_only`` raises alerts only for symbols with an open position
(:meth:`AlertEngine.open_position`), and only the side that threatens it (sellers for a long, buyers
for a short; both when the side is not known); ``all`` raises both sides for every symbol. Volume
statistics are kept for every symbol either way (cheap) so a red burst can be judged from the moment
a position opens. (The red burst is a selling burst: it is raised for longs and unknown sides.)
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
from tradebot.core.notifications import Severity
from tradebot.core.types import BookUpdate, Side, Trade

_NS = 1_000_000_000


class AlertKind(enum.StrEnum):
    LARGE_SELLER = "large_seller"
    LARGE_BUYER = "large_buyer"
    RED_BURST = "red_burst"
    EXIT_SIGNAL = "exit_signal"


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
    book_resting_size: bool = True
    """Count large resting size too: on the best offer as a seller, on the best bid as a buyer."""

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
            "book_resting_size": s.order_flow_book_resting_size,
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
    large_ask_px: int | None = None
    seller_ts: deque[int] = field(default_factory=deque)
    buyer_ts: deque[int] = field(default_factory=deque)
    exit_quiet_until: int = -1
    """Large sellers (threatening a long) are not counted before this."""
    buyer_quiet_until: int = -1
    """Large buyers (threatening a short) are not counted before this."""
    exit_signals: int = 0


_NONE: tuple[Alert, ...] = ()
_SELL = Side.SELL
_BUY = Side.BUY


class AlertEngine:
    """Seed 000's detector for many symbols. ``on_trade`` / ``on_book`` return the alerts they raise."""

    def __init__(self, settings: AlertSettings | None = None,
                 specs: Callable[[str], ContractSpec] = spec_for, logger: Any = None) -> None:
        self.settings = s = settings or AlertSettings()
        self._specs = specs
        self.log = logger
        self.stats: Counter[str] = Counter()
        self._state: dict[str, _SymbolState | None] = {}
        self._open: dict[str, int] = {}
        """Monitored roots -> position side (+1 long, -1 short, 0 unknown: watch both)."""
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
        self._open = {self._key(x): 0 for x in symbols}

    def open_position(self, symbol: str, side: int = 0) -> None:
        """``side``: +1 long (watch sellers), -1 short (watch buyers), 0 unknown (watch both)."""
        self._open[self._key(symbol)] = 1 if side > 0 else -1 if side < 0 else 0

    def close_position(self, symbol: str) -> None:
        self._open.pop(self._key(symbol), None)

    def _watch(self, st: _SymbolState, seller: bool) -> bool:
        """Is this side a threat worth raising: sellers to a long, buyers to a short (all mode: both)."""
        if self._all:
            return True
        side = self._open.get(st.key)
        if side is None:
            return False
        return side == 0 or (side > 0) == seller

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
        if size >= st.threshold:
            if sell:
                if self._watch(st, True):
                    self._large_order(st, trade.symbol, ts, True, "print at the bid", trade.price, size, out)
            elif trade.side is _BUY and self._watch(st, False):
                self._large_order(st, trade.symbol, ts, False, "print at the offer", trade.price, size, out)
        if self._watch(st, True):
            self._check_burst(st, trade.symbol, ts, out)
        return tuple(out) if out else _NONE

    def on_book(self, book: BookUpdate) -> tuple[Alert, ...]:
        if not self.settings.book_resting_size:
            return _NONE
        st = self._get(book.symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return _NONE
        if not (self._all or st.key in self._open):
            st.large_bid_px = st.large_ask_px = None
            return _NONE
        out: list[Alert] = []
        # Resting size on the offer wants to sell: a seller. On the bid it wants to buy: a buyer.
        if not book.ask_px or book.ask_sz[0] < st.threshold or not self._watch(st, True):
            st.large_ask_px = None
        elif st.large_ask_px != book.ask_px[0]:
            st.large_ask_px = px = book.ask_px[0]
            self._large_order(st, book.symbol, book.ts_event, True, "resting offer", px, book.ask_sz[0], out)
        if not book.bid_px or book.bid_sz[0] < st.threshold or not self._watch(st, False):
            st.large_bid_px = None
        elif st.large_bid_px != book.bid_px[0]:
            st.large_bid_px = px = book.bid_px[0]
            self._large_order(st, book.symbol, book.ts_event, False, "resting bid", px, book.bid_sz[0], out)
        return tuple(out) if out else _NONE

    # -- rules ------------------------------------------------------------------------------------

    def _large_order(self, st: _SymbolState, symbol: str, ts: int, seller: bool, source: str, price: int,
                     size: int, out: list[Alert]) -> None:
        who = "seller" if seller else "buyer"
        out.append(Alert(AlertKind.LARGE_SELLER if seller else AlertKind.LARGE_BUYER, symbol, ts, Severity.WARNING,
                         f"Large {who} detected: {source} of {size} at {self._fmt(symbol, price)} "
                         f"(threshold {st.threshold})",
                         (("source", source), ("price", price), ("size", size), ("threshold", st.threshold))))
        self.stats[f"large_{who}"] += 1
        self._emit(out[-1])
        quiet = st.exit_quiet_until if seller else st.buyer_quiet_until
        if ts < quiet:
            return
        q = st.seller_ts if seller else st.buyer_ts
        q.append(ts)
        floor = ts - self._window_ns
        while q and q[0] < floor:
            q.popleft()
        if len(q) >= self.settings.exit_min_alerts:
            n = len(q)
            span = (q[-1] - q[0]) / _NS
            q.clear()
            if seller:
                st.exit_quiet_until = ts + self._exit_cool_ns
            else:
                st.buyer_quiet_until = ts + self._exit_cool_ns
            st.exit_signals += 1
            threatens = "long" if seller else "short"
            out.append(Alert(AlertKind.EXIT_SIGNAL, symbol, ts, Severity.CRITICAL,
                             f"Exit signal for a {threatens}: {n} large-{who} alerts within {span:g}s "
                             f"(rule: {self.settings.exit_min_alerts} within {self.settings.alert_window_seconds}s)",
                             (("alerts", n), ("span_seconds", span),
                              ("window_seconds", self.settings.alert_window_seconds), ("threatens", threatens))))
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
        if ts < st.burst_quiet_until and st.burst_severity is not None and severity.rank <= st.burst_severity.rank:
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
