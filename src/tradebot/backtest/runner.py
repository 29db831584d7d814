"""Backtest tasks, in the two modes a report names.

**Chained days** (the headline, ``tradebot backtest`` by default): every day of the run, in order, through *one*
:class:`tradebot.trading.TradingCore` on one state database, fed by one feed over all the day files, exactly as
``tradebot replay --input DAY1 DAY2 ...`` runs the daemon: balance, tier (re-evaluated at each trading-day
start), indicator and order-flow state and daily limits carry from day to day as they do in the deployed
daemon, so the trades equal that replay's, trade for trade. One task per parameter combination
(:func:`run_chain`); combinations run in parallel, days of one combination cannot.

**Independent days** (``--mode independent``, a named variant): one task per trading day, which decodes and
validates the day once and runs every combination over it through a fresh core (started at the first event's
time, flat, from the configured starting balance, fresh strategy state), so a day's trades are identical to a
daemon replay of that one file. Faster (days run in parallel, and on the fast path), but not what a continuously
running daemon does.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradebot.backtest.overrides import apply_overrides
from tradebot.core.config import Settings
from tradebot.core.types import GapEvent, MarketEvent, RawBook, RawStatus, RawTrade
from tradebot.execution.journal import SessionStarted, TierChanged
from tradebot.execution.journal import read as read_journal
from tradebot.feeds.files import open_file_feed
from tradebot.feeds.validation import Validator
from tradebot.state.store import StateStore
from tradebot.trading import TradingCore


@dataclass(frozen=True)
class DayTask:
    day: str
    paths: tuple[str, ...]
    symbol: str
    settings: Settings
    combos: tuple[dict[str, str], ...] = ({},)


@dataclass
class ComboResult:
    combo: dict[str, str]
    trades: list[dict[str, Any]] = field(default_factory=list)
    decisions: int = 0
    taken: int = 0
    day_tiers: dict[str, int] = field(default_factory=dict)
    """Trading day -> the 1-based tier the execution manager traded it in (0: tiers off)."""


@dataclass
class DayResult:
    day: str
    events: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    combos: list[ComboResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


async def _load(paths: list[Path], settings: Settings, symbol: str) -> tuple[list[MarketEvent], Validator]:
    feed = open_file_feed(paths, speed=0.0, symbol=symbol)
    validator = Validator(settings.validation, [symbol])
    validator.declare_spans_of(feed)
    out: list[MarketEvent] = []
    try:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook | RawStatus):
                v = validator.validate(ev)
                if v is not None:
                    out.append(v)
    finally:
        await feed.close()
    return out, validator


def load_events(paths: list[Path], settings: Settings, symbol: str) -> tuple[list[MarketEvent], Validator]:
    return asyncio.run(_load(paths, settings, symbol))


def run_events(events: list[MarketEvent], settings: Settings, symbol: str) -> tuple[TradingCore, ComboResult]:
    """The events through a fresh trading core (exactly as the daemon replays a file)."""
    with tempfile.TemporaryDirectory(prefix="tradebot-bt-") as tmp:
        store = StateStore.open(Path(tmp) / "bt.db", mode=settings.trading_mode, synchronous="OFF")
        try:
            core = TradingCore(settings, [symbol], store, record_decisions=False)
            if events:
                core.start(events[0].ts_event)
                on_event = core.on_event
                for ev in events:
                    on_event(ev)
                core.finish()
            trades = [t.to_dict() for t in core.closed_trades()]
            result = ComboResult({}, trades, sum(s.router.stats["decisions"] for s in core.strategies.values()),
                                 core.stats["intents_taken"], day_tiers_of(store, settings))
        finally:
            store.close()
    return core, result


def run_day(task: DayTask) -> DayResult:
    """A picklable task (local processes and Dask workers alike). Errors are returned, not raised."""
    t0 = time.perf_counter()
    res = DayResult(task.day)
    try:
        events, validator = load_events([Path(p) for p in task.paths], task.settings, task.symbol)
        res.events = len(events)
        res.rejects = dict(validator.rejects)
        for combo in task.combos:
            settings = apply_overrides(task.settings, combo)
            _, cr = run_events(events, settings, task.symbol)
            cr.combo = combo
            res.combos.append(cr)
    except Exception as exc:  # one bad day must not sink a 100-day run: reported and counted
        res.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    res.seconds = time.perf_counter() - t0
    return res


def day_tiers_of(store: StateStore, settings: Settings) -> dict[str, int]:
    """The tier each trading day of a run traded in, from the run's own journal (session starts and the tier
    records the manager writes right after them): the tier the trades actually used, not one recomputed."""
    if not settings.execution.tiers_enabled:
        return {}
    out: dict[str, int] = {}
    day, tier = "", 0
    for entry in read_journal(store):
        ev = entry.event
        if isinstance(ev, SessionStarted):
            day = ev.day
        elif isinstance(ev, TierChanged):
            tier = ev.number
        else:
            continue
        if day:
            out[day] = tier
    return out


@dataclass(frozen=True)
class ChainTask:
    """Chained days: all day files of a run, one parameter combination."""

    paths: tuple[str, ...]
    symbol: str
    settings: Settings
    combo: dict[str, str] = field(default_factory=dict)
    progress: bool = False
    """Print a line to stderr as each trading day completes (a single combination run in the foreground)."""


@dataclass
class ChainResult:
    combo: ComboResult
    events: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    day_events: dict[str, int] = field(default_factory=dict)
    """Accepted events per trading day (as the execution manager dated them)."""
    seconds: float = 0.0
    error: str | None = None


async def _chain(task: ChainTask, settings: Settings, store: StateStore) -> ChainResult:
    feed = open_file_feed([Path(p) for p in task.paths], speed=0.0, symbol=task.symbol)
    validator = Validator(settings.validation, [task.symbol])
    core = TradingCore(settings, [task.symbol], store, record_decisions=False)
    res = ChainResult(ComboResult(task.combo))
    day_events: dict[str, int] = {}
    t0 = time.perf_counter()
    ledger_trading = core.manager.ledger.trading
    started = False
    try:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook | RawStatus):
                v = validator.validate(ev)
                if v is None:
                    continue
                if not started:
                    core.start(v.ts_event)
                    started = True
                    ledger_trading = core.manager.ledger.trading
                core.on_event(v)
                res.events += 1
                day = ledger_trading.trading_day or ""
                if day not in day_events:
                    ledger_trading = core.manager.ledger.trading
                    day = ledger_trading.trading_day or ""
                    if task.progress and day_events and day not in day_events:
                        _chain_progress(day_events, t0)
                day_events[day] = day_events.get(day, 0) + 1
            elif isinstance(ev, GapEvent):  # as the daemon does
                for strat in core.strategies.values():
                    strat.engine.on_gap()
    finally:
        await feed.close()
    if started:
        core.finish()
    if task.progress and day_events:
        _chain_progress(day_events, t0)
    res.rejects = dict(validator.rejects)
    res.day_events = day_events
    res.combo.trades = [t.to_dict() for t in core.closed_trades()]
    res.combo.decisions = sum(s.router.stats["decisions"] for s in core.strategies.values())
    res.combo.taken = core.stats["intents_taken"]
    res.combo.day_tiers = day_tiers_of(store, settings)
    return res


def _chain_progress(day_events: dict[str, int], t0: float) -> None:
    last = next(reversed(day_events))
    print(f"[chained] {len(day_events)} day(s), {last} done ({day_events[last]} events), "
          f"elapsed {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)


def run_chain(task: ChainTask) -> ChainResult:
    """Chained days through the daemon's trading core (picklable; errors are returned, not raised)."""
    t0 = time.perf_counter()
    try:
        settings = apply_overrides(task.settings, task.combo)
        with tempfile.TemporaryDirectory(prefix="tradebot-chain-") as tmp:
            store = StateStore.open(Path(tmp) / "bt.db", mode=settings.trading_mode, synchronous="OFF")
            try:
                res = asyncio.run(_chain(task, settings, store))
            finally:
                store.close()
    except Exception as exc:  # reported per combination, never a crash of the whole run
        res = ChainResult(ComboResult(task.combo), error=f"{type(exc).__name__}: {exc}\n"
                                                         f"{traceback.format_exc(limit=3)}")
    res.seconds = time.perf_counter() - t0
    return res
