"""A real trading session for journal tests: the real ES minute through the daemon's trading core.

The minute (``../shared/data/real``, TBBO) with the short-bar settings the fast-path parity test trades with,
plus the operator and clock inputs a day has: a halt and resume, an exit signal, the auto-flatten job, the end
of the replay. ``tests/state/fixtures/make_v3_journal.py`` runs the same session on the pre-typed code.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tradebot.backtest.overrides import apply_overrides
from tradebot.backtest.runner import load_events
from tradebot.core.calendar import ET, to_ns
from tradebot.core.config import Settings, load_settings
from tradebot.state.store import StateStore
from tradebot.trading import TradingCore

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SHORT_BARS = {  # one real minute: 2 s bars and short warm-ups so the regime and router get to trade
    "footprint.bar_seconds": "2", "regime.adx_period": "2", "regime.atr_period": "2", "regime.ema_fast": "2",
    "regime.ema_slow": "3", "regime.structure_lookback": "1", "regime.atr_min_history": "1",
    "regime.atr_history_bars": "10", "regime.volume_min_history": "1", "regime.open_buffer_minutes": "0",
    "regime.close_buffer_minutes": "0", "router.cooldown_seconds": "0", "min_confidence": "0.3",
    "router.intensity_min_history": "1", "DAILY_PROFIT_TARGET": "40", "DAILY_LOSS_LIMIT": "-40",
    "router.stop_points_by_symbol": "ES:0.5", "execution.market_slippage_ticks": "1"}


def session_settings() -> Settings:
    return apply_overrides(load_settings(_env_file=None), SHORT_BARS)


def run_session(store: StateStore, settings: Settings) -> TradingCore:
    """The session, live: returns the core (its manager's ledger is the live state)."""
    events, _ = load_events([DATA], settings, "ES")
    core = TradingCore(settings, ["ES"], store, record_decisions=False)
    core.start(events[0].ts_event)
    half = len(events) // 2
    for ev in events[:half]:
        core.on_event(ev)
    ts = events[half].ts_event
    core.manager.halt("fixture: operator halt", ts)
    core.manager.resume(ts + 1, "fixture: operator resume")
    for ev in events[half:]:
        core.on_event(ev)
    end = events[-1].ts_event
    core.manager.on_exit_signal("ES", end + 1, "fixture: large sellers", "long")
    core.on_time(to_ns(dt.datetime(2022, 1, 24, 15, 56, tzinfo=ET)))  # the auto-flatten job: exits only
    core.finish()
    return core
