"""Market regime on each closed bar (seed 002): TRENDING_UP/DOWN, RANGING, VOLATILE or NO_TRADE.

Evaluated at the bar's close (``bar.end_ns``, event time), so replay and live classify the same bar the same
way. The rules, first match wins (risk first):

1. **NO_TRADE** when any of these holds (every one that holds is reported):
   wrong symbol or a bar older than the last one (state untouched); the indicators are still warming up
   (ADX needs ``2n - 1`` bars, the slow EMA ``n``, structure ``2 x lookback``, and ``atr_min_history`` ATR
   values for the percentile); no session is open; with ``session_basis=rth`` the decision time is outside
   regular hours; the first ``open_buffer_minutes`` (``t < open + N``) or the last ``close_buffer_minutes``
   (``t > close - N``) of the basis session (so at exactly N minutes in, or N minutes left, trading is
   allowed); a blackout window from the file contains ``t``; ``t`` is outside every configured trading window
   (local time in a named IANA zone, ``[start, end)``, wrapping midnight when start > end); the bar's volume
   is below ``low_volume_ratio`` x the average of the previous ``volume_average_bars`` bars.
2. **VOLATILE** when the current ATR ranks at or above ``volatile_percentile`` in its recent history: rank =
   (values below + half the values equal) / count over the last ``atr_history_bars`` ATR values (mid-rank, so a
   flat ATR ranks 0.5, not 1.0). With ``session_basis=rth`` only RTH bars enter and are ranked (see
   ``_update``). VOLATILE wins over a trend: a breakout with an exploding range trades small and strong-only.
3. **TRENDING_UP / TRENDING_DOWN** when ADX > ``adx_trend_threshold`` and market structure agrees
   (BULLISH: higher high and higher low over the lookback; BEARISH mirrored).
4. **RANGING** otherwise: ADX <= threshold, or a high ADX whose structure does not confirm a direction
   (reported as an unconfirmed trend with a lower confidence).

Confidence in [0, 1] says how clearly the bar fits its regime (it is not a probability):

- NO_TRADE: 1.0 for the calendar, blackout, window and warm-up rules; for low volume alone
  ``0.5 + 0.5 x (1 - ratio / low_volume_ratio)``.
- VOLATILE: ``0.5 + 0.5 x (rank - p) / (1 - p)``.
- TRENDING: ``0.5 + 0.2 x min(1, (ADX - T) / T)`` plus 0.1 for each of: DI agrees (+DI > -DI for up), fast EMA
  on the trend's side of the slow EMA, close on the trend's side of the session VWAP.
- RANGING: ``0.5 + 0.5 x min(1, (T - ADX) / T)``; unconfirmed trend: ``0.5 - 0.2 x min(1, (ADX - T) / T)``.

Indicators run on every bar whatever the regime (a NO_TRADE bar is still a bar) and are in ticks (ATR, EMAs,
VWAP as float ticks), computed by :mod:`tradebot.regime.indicators` with TA-Lib's conventions.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from tradebot.core.blackouts import BlackoutSchedule
from tradebot.core.calendar import NS, ExchangeCalendar, Session, calendar_for, from_ns
from tradebot.core.config import RegimeSettings, Settings
from tradebot.core.contracts import ContractSpec
from tradebot.core.display import fmt_ts
from tradebot.core.logging import get_logger
from tradebot.core.signals import Regime as Regime
from tradebot.orderflow.footprint import FootprintBar
from tradebot.regime.indicators import AdxStream, AtrStream, EmaStream, VwapStream
from tradebot.regime.structure import MarketStructureStream, Structure


class RegimeCode(enum.StrEnum):
    """Machine-readable reasons of a classification (the human text is in ``RegimeState.reasons``)."""

    WRONG_SYMBOL = "WRONG_SYMBOL"
    OUT_OF_ORDER = "OUT_OF_ORDER"
    WARMUP = "WARMUP"
    MARKET_CLOSED = "MARKET_CLOSED"
    OUTSIDE_RTH = "OUTSIDE_RTH"
    SESSION_OPEN = "SESSION_OPEN"
    SESSION_CLOSE = "SESSION_CLOSE"
    BLACKOUT = "BLACKOUT"
    OUTSIDE_WINDOW = "OUTSIDE_WINDOW"
    LOW_VOLUME = "LOW_VOLUME"
    HIGH_ATR = "HIGH_ATR"
    TREND_UP = "TREND_UP"
    TREND_DOWN = "TREND_DOWN"
    LOW_ADX = "LOW_ADX"
    UNCONFIRMED_TREND = "UNCONFIRMED_TREND"


@dataclass(frozen=True, slots=True)
class RegimeState:
    symbol: str
    ts_ns: int
    """Decision time: the bar's close (``bar.end_ns``)."""
    bar_start_ns: int
    regime: Regime
    confidence: float
    codes: tuple[RegimeCode, ...]
    reasons: tuple[str, ...]
    close: int
    """Bar close, ticks."""
    adx: float | None = None
    plus_di: float | None = None
    minus_di: float | None = None
    atr: float | None = None
    """Ticks."""
    atr_rank: float | None = None
    """Mid-rank of the current ATR in its recent history, [0, 1]."""
    ema_fast: float | None = None
    """Ticks (float)."""
    ema_slow: float | None = None
    vwap: float | None = None
    """Session VWAP, ticks (float)."""
    structure: Structure | None = None
    volume_ratio: float | None = None
    """Bar volume / average of the previous bars."""
    warm: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "ts_ns": self.ts_ns, "bar_start_ns": self.bar_start_ns,
            "regime": str(self.regime), "confidence": round(self.confidence, 4),
            "codes": [str(c) for c in self.codes], "reasons": list(self.reasons), "close": self.close,
            "adx": self.adx, "plus_di": self.plus_di, "minus_di": self.minus_di, "atr": self.atr,
            "atr_rank": self.atr_rank, "ema_fast": self.ema_fast, "ema_slow": self.ema_slow, "vwap": self.vwap,
            "structure": None if self.structure is None else self.structure.name,
            "volume_ratio": self.volume_ratio, "warm": self.warm,
        }


_HARD_NO_TRADE = frozenset({
    RegimeCode.WRONG_SYMBOL, RegimeCode.OUT_OF_ORDER, RegimeCode.WARMUP, RegimeCode.MARKET_CLOSED,
    RegimeCode.OUTSIDE_RTH, RegimeCode.SESSION_OPEN, RegimeCode.SESSION_CLOSE, RegimeCode.BLACKOUT,
    RegimeCode.OUTSIDE_WINDOW,
})


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def bar_vwap(bar: FootprintBar) -> float | None:
    """Volume-weighted mean price of the bar's trades (ticks); the session VWAP accumulates these exactly.
    A bar without per-price levels (bar data) uses its typical price ``(high + low + close) / 3``, the usual
    VWAP approximation on bars."""
    if bar.volume <= 0:
        return None
    if not bar.levels:
        return (bar.high + bar.low + bar.close) / 3
    return sum(lv.price * lv.volume for lv in bar.levels) / bar.volume


class RegimeDetector:
    """Regime of one contract root; call ``on_bar`` with every closed bar, in order."""

    def __init__(self, spec: ContractSpec, settings: RegimeSettings | Settings | None = None,
                 calendar: ExchangeCalendar | None = None, blackouts: BlackoutSchedule | None = None,
                 logger: Any = None) -> None:
        if isinstance(settings, Settings):
            settings = settings.regime
        self.spec = spec
        self.symbol = spec.root
        self.settings = s = settings or RegimeSettings()
        self._cal = calendar or calendar_for(spec.session)
        self._log = logger if logger is not None else get_logger("tradebot.regime.detector")
        if blackouts is None:
            blackouts = s.blackout_file if s.blackout_file is not None else BlackoutSchedule.of(())
        self.blackouts = blackouts
        self._windows = s.trading_windows
        self._window_tz = ZoneInfo(s.trading_windows_tz)
        self._adx = AdxStream(s.adx_period)
        self._atr = AtrStream(s.atr_period)
        self._ema_fast = EmaStream(s.ema_fast)
        self._ema_slow = EmaStream(s.ema_slow)
        self._vwap = VwapStream()
        self._structure = MarketStructureStream(s.structure_lookback)
        self._atr_hist: deque[float] = deque(maxlen=s.atr_history_bars)
        self._vol_hist: deque[int] = deque(maxlen=s.volume_average_bars)
        self._last_end: int | None = None
        self.stats: Counter[str] = Counter()
        self.last: RegimeState | None = None

    # -- public ------------------------------------------------------------------------------------

    def on_bar(self, bar: FootprintBar) -> RegimeState:
        if bar.symbol != self.symbol:
            self.stats["wrong_symbol"] += 1
            self._log.warning("regime: bar of another symbol ignored", expected=self.symbol, got=bar.symbol)
            return self._reject(bar, RegimeCode.WRONG_SYMBOL, f"bar of {bar.symbol}, detector is for {self.symbol}")
        if self._last_end is not None and bar.end_ns <= self._last_end:
            self.stats["out_of_order"] += 1
            self._log.warning("regime: out-of-order bar ignored", end_ns=bar.end_ns, last_end_ns=self._last_end)
            return self._reject(bar, RegimeCode.OUT_OF_ORDER, "bar ends before the previous one: ignored")
        self._last_end = bar.end_ns
        self.stats["bars"] += 1
        state = self._classify(bar)
        self.stats[f"regime:{state.regime}"] += 1
        self.last = state
        return state

    # -- internals ---------------------------------------------------------------------------------

    def _reject(self, bar: FootprintBar, code: RegimeCode, reason: str) -> RegimeState:
        return RegimeState(bar.symbol, bar.end_ns, bar.start_ns, Regime.NO_TRADE, 1.0, (code,), (reason,),
                           bar.close)

    def _in_basis(self, bar: FootprintBar, session: Session | None) -> bool:
        """Whether the bar belongs to the hours the histories describe (RTH bars only with the rth basis)."""
        if session is None:
            return False
        if self.settings.session_basis == "full":
            return True
        return session.rth_open_ns <= bar.end_ns <= session.rth_close_ns

    def _update(self, bar: FootprintBar, in_basis: bool) -> tuple[float | None, float | None, float | None]:
        """Feed every indicator; returns (ATR rank, volume ratio, VWAP).

        The ATR percentile and the volume average compare a bar with bars of the same hours only: with the
        rth basis an overnight bar neither enters nor is judged by them (ES overnight ranges and volumes are a
        fraction of the day session's, so a mixed history would call every morning VOLATILE and every
        overnight bar LOW_VOLUME). The Wilder indicators themselves run on every bar, like TA-Lib on a chart.
        """
        h, lo, c = float(bar.high), float(bar.low), float(bar.close)
        self._adx.update(h, lo, c)
        atr = self._atr.update(h, lo, c)
        self._ema_fast.update(c)
        self._ema_slow.update(c)
        self._structure.update(h, lo)
        vw = None
        p = bar_vwap(bar)
        if p is not None:
            point = self._vwap.update(p, float(bar.volume), bar.trading_date.toordinal())
            vw = point.vwap if point is not None else None
        elif self._vwap.value is not None:
            vw = self._vwap.value.vwap
        rank = None
        if atr is not None and in_basis:
            hist = self._atr_hist
            if len(hist) >= self.settings.atr_min_history:
                below = sum(1 for x in hist if x < atr)
                ties = sum(1 for x in hist if x == atr)
                rank = (below + 0.5 * ties) / len(hist)
            hist.append(atr)
        ratio = None
        vh = self._vol_hist
        if in_basis:
            if len(vh) >= self.settings.volume_min_history:
                avg = sum(vh) / len(vh)
                ratio = bar.volume / avg if avg > 0 else None
            vh.append(bar.volume)
        return rank, ratio, vw

    def _session_of(self, bar: FootprintBar) -> Session | None:
        return self._cal.session_at(bar.first_ts) or self._cal.session_at(bar.start_ns)

    def _no_trade(self, bar: FootprintBar, session: Session | None, ratio: float | None, warm: bool,
                  codes: list[RegimeCode], reasons: list[str]) -> float:
        """Collect every NO_TRADE rule that holds; returns the low-volume confidence (0 when it does not hold)."""
        s = self.settings
        t = bar.end_ns
        if not warm:
            codes.append(RegimeCode.WARMUP)
            reasons.append("indicators warming up: " + self._warmup_detail())
        if session is None:
            codes.append(RegimeCode.MARKET_CLOSED)
            reasons.append("no session open")
        else:
            if s.session_basis == "rth":
                start, end, name = session.rth_open_ns, session.rth_close_ns, "RTH"
            else:
                start, end, name = session.open_ns, session.close_ns, "session"
            if t < start or t > end:
                codes.append(RegimeCode.OUTSIDE_RTH if name == "RTH" else RegimeCode.MARKET_CLOSED)
                reasons.append(f"{_et(t)} is outside the {name} ({_et(start)}-{_et(end)})")
            else:
                if t < start + s.open_buffer_minutes * 60 * NS:
                    codes.append(RegimeCode.SESSION_OPEN)
                    reasons.append(f"first {s.open_buffer_minutes} min of the {name} (opened {_et(start)})")
                if t > end - s.close_buffer_minutes * 60 * NS:
                    codes.append(RegimeCode.SESSION_CLOSE)
                    reasons.append(f"last {s.close_buffer_minutes} min of the {name} (closes {_et(end)})")
        for b in self.blackouts.active(t):
            codes.append(RegimeCode.BLACKOUT)
            reasons.append(f"blackout {b.label} {_et(b.start_ns)}-{_et(b.end_ns)}")
        if self._windows and not self._in_window(t):
            codes.append(RegimeCode.OUTSIDE_WINDOW)
            shown = ",".join(str(w) for w in self._windows)
            local = from_ns(t, self._window_tz)
            reasons.append(f"{local:%H:%M} {self.settings.trading_windows_tz} outside trading windows {shown}")
        low_conf = 0.0
        if s.low_volume_ratio > 0 and ratio is not None and ratio < s.low_volume_ratio:
            codes.append(RegimeCode.LOW_VOLUME)
            reasons.append(f"low volume: {bar.volume} is {ratio:.2f} x the {len(self._vol_hist) - 1}-bar average "
                           f"(< {s.low_volume_ratio})")
            low_conf = 0.5 + 0.5 * (1.0 - ratio / s.low_volume_ratio)
        return low_conf

    def _warmup_detail(self) -> str:
        s = self.settings
        parts = []
        if not self._adx.ready:
            parts.append(f"ADX({s.adx_period})")
        if not self._ema_slow.ready:
            parts.append(f"EMA({s.ema_slow})")
        if self._structure.value is None:
            parts.append(f"structure({s.structure_lookback})")
        if len(self._atr_hist) <= s.atr_min_history:
            parts.append(f"ATR history {max(0, len(self._atr_hist) - 1)}/{s.atr_min_history}")
        return ", ".join(parts) or "ready"

    def _in_window(self, t: int) -> bool:
        local = from_ns(t, self._window_tz).time()
        return any(w.contains(local) for w in self._windows)

    def _classify(self, bar: FootprintBar) -> RegimeState:
        s = self.settings
        session = self._session_of(bar)
        in_basis = self._in_basis(bar, session)
        rank, ratio, vwap = self._update(bar, in_basis)
        adx, pdi, mdi = self._adx.adx, self._adx.plus_di, self._adx.minus_di
        atr = self._atr.value
        ef, es = self._ema_fast.value, self._ema_slow.value
        structure = self._structure.value
        warm = (adx is not None and pdi is not None and mdi is not None and atr is not None and ef is not None
                and es is not None and structure is not None and len(self._atr_hist) > s.atr_min_history)
        codes: list[RegimeCode] = []
        reasons: list[str] = []
        low_conf = self._no_trade(bar, session, ratio, warm, codes, reasons)

        def state(regime: Regime, confidence: float) -> RegimeState:
            return RegimeState(bar.symbol, bar.end_ns, bar.start_ns, regime, _clamp01(confidence), tuple(codes),
                               tuple(reasons), bar.close, adx, pdi, mdi, atr, rank, ef, es, vwap, structure, ratio,
                               warm)

        if codes:
            hard = any(c in _HARD_NO_TRADE for c in codes)
            return state(Regime.NO_TRADE, 1.0 if hard else low_conf)
        assert adx is not None and pdi is not None and mdi is not None
        assert ef is not None and es is not None and structure is not None and atr is not None
        p = s.volatile_percentile
        if rank is not None and rank >= p:
            codes.append(RegimeCode.HIGH_ATR)
            reasons.append(f"ATR {self.spec.fmt(round(atr))} ({atr:.1f} ticks) ranks {rank:.2f} >= {p} "
                           f"of the last {len(self._atr_hist) - 1} values")
            return state(Regime.VOLATILE, 0.5 + 0.5 * (rank - p) / (1.0 - p))
        t_adx = s.adx_trend_threshold
        if adx > t_adx:
            strength = min(1.0, (adx - t_adx) / t_adx)
            if structure is Structure.NEUTRAL:
                codes.append(RegimeCode.UNCONFIRMED_TREND)
                reasons.append(f"ADX {adx:.1f} > {t_adx:g} but structure NEUTRAL: no confirmed direction")
                return state(Regime.RANGING, 0.5 - 0.2 * strength)
            up = structure is Structure.BULLISH
            sign = 1.0 if up else -1.0
            agree = [
                ((pdi - mdi) * sign > 0, f"+DI {pdi:.1f} / -DI {mdi:.1f}"),
                ((ef - es) * sign > 0, f"EMA{s.ema_fast} {'>' if ef > es else '<='} EMA{s.ema_slow}"),
                (vwap is not None and (bar.close - vwap) * sign > 0,
                 "close vs VWAP " + ("n/a" if vwap is None else f"{bar.close - vwap:+.1f} ticks")),
            ]
            codes.append(RegimeCode.TREND_UP if up else RegimeCode.TREND_DOWN)
            reasons.append(f"ADX {adx:.1f} > {t_adx:g} with {structure.name} structure "
                           f"({'higher highs and lows' if up else 'lower highs and lows'})")
            reasons.append("confirmations: " + ", ".join(f"{txt} {'yes' if ok else 'no'}" for ok, txt in agree))
            conf = 0.5 + 0.2 * strength + 0.1 * sum(1 for ok, _ in agree if ok)
            return state(Regime.TRENDING_UP if up else Regime.TRENDING_DOWN, conf)
        codes.append(RegimeCode.LOW_ADX)
        reasons.append(f"ADX {adx:.1f} <= {t_adx:g}: no trend")
        return state(Regime.RANGING, 0.5 + 0.5 * min(1.0, (t_adx - adx) / t_adx))


def _et(ts_ns: int) -> str:
    return fmt_ts(ts_ns, "%H:%M")
