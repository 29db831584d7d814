"""A day through the fast path: columns -> bars -> patterns, regime, router per bar -> brackets per signal.

The per-bar chain is the event path's own objects (``PatternEngine``, ``RegimeDetector``, ``Router``) fed the
same bars and contexts in the same order as ``SymbolStrategy`` feeds them; only what happens *between* bar
closes (footprint accumulation, book and flow tracking, the profile, validation, fills) is replaced by array
code. Bars, patterns, regimes and contexts depend on the data and the engine settings only, so a parameter
sweep over router or execution settings computes them once per day (:class:`FastDay` caches them by those
settings) and replays only the router and the brackets per combination.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from tradebot.backtest.fast.bars import BarSeries, Trades, build_bars
from tradebot.backtest.fast.context import ContextBuilder
from tradebot.backtest.fast.execution import ExecutionModel
from tradebot.backtest.fast.load import DayColumns, UnsupportedError, load_day
from tradebot.backtest.fast.support import fast_supported
from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import ContractSpec, spec_for
from tradebot.execution.trades import TradeRecord
from tradebot.orderflow.events import PatternEvent
from tradebot.orderflow.footprint import FootprintBar
from tradebot.orderflow.patterns import PatternEngine
from tradebot.regime.decisions import Confirmation, Decision
from tradebot.regime.detector import RegimeDetector, RegimeState
from tradebot.regime.router import Router, RouterContext, RouteRule


def read_depths(settings: Settings) -> tuple[int, ...]:
    """The book depths anything downstream reads: the microstructure's first depth (its ``depth_imbalance``)
    and the tradeability filter's depth if the tracker reports it. Others are never computed."""
    ms = settings.microstructure.depth_levels
    return tuple(sorted({ms[0], *(d for d in (settings.filters.depth_levels,) if d in ms)}))


def _key(settings: Settings, *parts: str) -> str:
    return json.dumps({p: getattr(settings, p).model_dump(mode="json") for p in parts}, sort_keys=True)


_NOT_SCORING = frozenset({"risk_reward", "stop_mode", "stop_points_by_symbol", "atr_stop_multiple", "min_stop_ticks",
                          "base_size", "cooldown_seconds", "entry_type", "min_confirmations", "table", "table_file"})
"""Router settings that only act after the confluence score (gates, brackets, size): a sweep over them reuses
the scores. Every other router setting, and every filter setting, is part of the score cache's key."""


def _scoring_key(settings: Settings) -> str:
    router = {k: v for k, v in settings.router.model_dump(mode="json").items() if k not in _NOT_SCORING}
    return json.dumps([router, settings.filters.model_dump(mode="json")], sort_keys=True)


Score = tuple[Fraction, tuple[Confirmation, ...]]


class _SharedScoreRouter(Router):
    """The router, with its confluence scores shared by the runs of one day.

    A score depends on the pattern event, the bar, the context (cached objects of the day's analysis, so their
    identity names them), the rule's style, the ``near`` distance, the intensity rate and baseline, and the
    scoring settings (the cache's key, :func:`_scoring_key`); not on stops, targets, sizes, cooldown or
    ``MIN_CONFIDENCE``, which is what a sweep varies. On a miss it is the router's own computation.
    """

    def __init__(self, spec: ContractSpec, settings: Settings, calendar: ExchangeCalendar,
                 scores: dict[tuple[object, ...], Score]) -> None:
        super().__init__(spec, settings, calendar)
        self._scores = scores

    def _confluence(self, ev: PatternEvent, rule: RouteRule, bar: FootprintBar, ctx: RouterContext, near: int,
                    rate: float | None, baseline: float | None) -> Score:
        key = (id(ev), id(bar), id(ctx), rule.style, near, rate, baseline)
        hit = self._scores.get(key)
        if hit is None:
            hit = self._scores[key] = super()._confluence(ev, rule, bar, ctx, near, rate, baseline)
        return hit


@dataclass
class Analysis:
    """Everything per bar that does not depend on the router or execution settings."""

    series: BarSeries
    patterns: list[tuple[PatternEvent, ...]]
    regimes: list[RegimeState]
    contexts: list[RouterContext | None]
    key: str = ""


@dataclass
class FastRun:
    trades: list[TradeRecord]
    decisions: int
    """Router decisions (one per pattern event), as ``router.stats['decisions']``."""
    taken: int
    """Intents the execution manager took."""
    router_stats: Counter[str] = field(default_factory=Counter)
    decision_log: list[Decision] = field(default_factory=list)
    day_tiers: dict[str, int] = field(default_factory=dict)
    """The day's tier as the manager chose it at the session start (empty: tiers off)."""


class FastDay:
    """One day file of one symbol, loaded once and replayable under many settings (raises ``UnsupportedError``)."""

    def __init__(self, paths: Sequence[Path | str], symbol: str, settings: Settings, *,
                 full_profile: bool = False) -> None:
        if len(paths) != 1:
            raise UnsupportedError(f"{len(paths)} files for one day (the fast path reads exactly one)")
        self.path = Path(paths[0])
        self.spec = spec_for(symbol)
        if self.spec.kind != "future":  # lots, percent filters and fractional tick values live in the event path
            raise UnsupportedError(f"{symbol} is a {self.spec.kind}: the fast path covers futures only")
        self.symbol = symbol
        self.calendar = calendar_for(self.spec.session)
        self.full_profile = full_profile
        self._cols: dict[str, DayColumns] = {}
        self._analysis: dict[str, Analysis] = {}
        self._scores: dict[tuple[str, str], dict[tuple[object, ...], Score]] = {}
        self.columns(settings)

    # -- cached stages ---------------------------------------------------------------------------------

    def columns(self, settings: Settings) -> DayColumns:
        v = settings.validation
        depths = read_depths(settings)
        key = json.dumps([v.out_of_order_ms, v.max_jump_ticks, v.jump_confirm_prints, depths, v.max_size,
                          v.future_seconds, v.range_slack_seconds])
        cols = self._cols.get(key)
        if cols is None:
            cols = load_day(self.path, self.symbol, depth_levels=depths, tolerance_ns=int(v.out_of_order_ms * 1e6),
                            max_jump_ticks=v.max_jump_ticks, jump_confirm_prints=v.jump_confirm_prints,
                            max_size=v.max_size, future_ns=int(v.future_seconds * 1e9),
                            slack_ns=int(v.range_slack_seconds * 1e9))
            self._check_span(cols)
            self._cols[key] = cols
        return cols

    def _check_span(self, cols: DayColumns) -> None:
        """One trading day for the manager: the first and the last accepted event in the same session."""
        ends = [int(cols.rts[recs[i]]) for recs in (cols.trade_records, cols.book_records) if recs.size
                for i in (0, -1)]  # each accepted stream is in time order
        if not ends:
            return
        try:
            a, b = self.calendar.session_for(min(ends)), self.calendar.session_for(max(ends))
        except ValueError as exc:
            raise UnsupportedError(f"timestamps outside the exchange calendar ({exc})") from exc
        if a.trading_date != b.trading_date:
            raise UnsupportedError(f"events span trading days {a.trading_date} to {b.trading_date}")

    def analysis(self, settings: Settings) -> Analysis:
        cols = self.columns(settings)
        key = _key(settings, "footprint", "patterns", "regime", "profile", "microstructure", "validation") + str(
            settings.filters.depth_levels)
        an = self._analysis.get(key)
        if an is not None:
            return an
        trades = Trades.of(cols)
        series = build_bars(cols, trades, settings.footprint)
        spec = self.spec
        pe = PatternEngine(spec, settings.patterns)
        rd = RegimeDetector(spec, settings, self.calendar)
        ctxb = ContextBuilder(cols, trades, settings, full_profile=self.full_profile)
        patterns: list[tuple[PatternEvent, ...]] = []
        regimes: list[RegimeState] = []
        contexts: list[RouterContext | None] = []
        for bar, pos in zip(series.bars, series.close_pos, strict=True):
            pats = tuple(pe.on_bar(bar))
            patterns.append(pats)
            regimes.append(rd.on_bar(bar))
            contexts.append(ctxb.at(bar, pos) if pats else None)
        an = self._analysis[key] = Analysis(series, patterns, regimes, contexts, key)
        return an

    # -- a run -----------------------------------------------------------------------------------------

    def run(self, settings: Settings, *, collect: bool = False) -> FastRun:
        """The trades (and router counts) of one settings combination; ``UnsupportedError`` if not reproducible."""
        why = fast_supported(settings)
        if why:
            raise UnsupportedError(why)
        cols = self.columns(settings)
        if not (cols.book_ok.any() or cols.trade_ok.any()):
            return FastRun([], 0, 0)
        an = self.analysis(settings)
        scores = self._scores.setdefault((an.key, _scoring_key(settings)), {})
        router = _SharedScoreRouter(self.spec, settings, self.calendar, scores)
        model = ExecutionModel(settings, cols, self.calendar)
        log: list[Decision] = []
        bars = an.series.bars
        for i, bar in enumerate(bars):
            pos = an.series.close_pos[i]
            ctx = an.contexts[i]
            end = bar.end_ns
            decisions = router.on_bar(bar, an.patterns[i], an.regimes[i], ctx, end,
                                      _HasPosition(model, pos, end))
            if collect:
                log.extend(decisions)
            for d in decisions:
                if d.taken and d.intent is not None:
                    model.on_intent(d.intent, pos)
        tiers = {model.day.isoformat(): model.tier.number} if model.tier is not None else {}
        return FastRun(model.trades(), router.stats["decisions"], model.taken, Counter(router.stats), log, tiers)


class _HasPosition:
    """``has_position(symbol)`` as the router asks it at one bar's close (the decision time ``end``)."""

    __slots__ = ("end", "model", "pos")

    def __init__(self, model: ExecutionModel, pos: int, end: int) -> None:
        self.model, self.pos, self.end = model, pos, end

    def __call__(self, _symbol: str) -> bool:
        return self.model.has_position(self.pos, self.end)


def run_day_fast(paths: Sequence[Path | str], settings: Settings, symbol: str) -> list[TradeRecord]:
    """A day's trades, exactly as the event path (:func:`tradebot.backtest.runner.run_events`) makes them.

    The fast path when it can reproduce the day and the settings exactly, else the event path itself.
    """
    if fast_supported(settings) is None:
        try:
            return FastDay(paths, symbol, settings).run(settings).trades
        except UnsupportedError:
            pass
    return event_trades(paths, settings, symbol)


def event_trades(paths: Sequence[Path | str], settings: Settings, symbol: str) -> list[TradeRecord]:
    from tradebot.backtest.runner import load_events, run_events

    events, _ = load_events([Path(p) for p in paths], settings, symbol)
    _, cr = run_events(events, settings, symbol)
    return [TradeRecord.from_dict(t) for t in cr.trades]


__all__ = ["Analysis", "FastDay", "FastRun", "event_trades", "fast_supported", "run_day_fast"]
