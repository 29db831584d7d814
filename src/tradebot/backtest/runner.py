"""One backtest task = one trading day: decode and validate the day once, run every parameter combination.

Each combination runs the same :class:`tradebot.trading.TradingCore` the daemon runs, over the same validated
events, started the same way (at the first event's time, on a fresh state database), so a day's trades are
identical to a daemon replay of that file. Days are independent: every day starts flat (auto-flatten closes the
previous one) from the configured starting balance; the account's path across days is computed afterwards by
:mod:`tradebot.backtest.stats`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradebot.backtest.overrides import apply_overrides
from tradebot.core.config import Settings
from tradebot.core.types import MarketEvent, RawBook, RawStatus, RawTrade
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
                                 core.stats["intents_taken"])
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
