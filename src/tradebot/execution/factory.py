"""One call for the daemon: open the mode's state database, pick the broker, build and recover the manager."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tradebot.core.calendar import ExchangeCalendar
from tradebot.core.config import ConfigError, Settings
from tradebot.execution.broker import Broker
from tradebot.execution.manager import ExecutionManager, NotificationSink
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.execution.risk import MarginProvider
from tradebot.execution.status import db_path
from tradebot.state.store import StateStore


def open_execution(settings: Settings, *, symbols: Sequence[str] | None = None, broker: Broker | None = None,
                   now_ns: int | None = None, on_notification: NotificationSink | None = None,
                   margin_provider: MarginProvider | None = None,
                   calendar: ExchangeCalendar | None = None) -> ExecutionManager:
    """Ready-to-trade manager (already recovered: see ``manager.last_recovery``).

    Paper mode builds the paper broker (driven by the market data of ``symbols``); live mode needs the live
    adapter passed in. A bad database raises :class:`~tradebot.state.store.StateError` and is left untouched.
    """
    syms = list(symbols) if symbols else settings.symbol_list
    if broker is None:
        if settings.trading_mode == "live":
            raise ConfigError("config error: TRADING_MODE='live' needs the live broker passed in (open_live_broker)")
        broker = PaperBroker(PaperConfig.from_settings(settings), data_symbols=syms)
    store = StateStore.open(db_path(settings), mode=settings.trading_mode)
    manager = ExecutionManager(settings, store, broker, on_notification=on_notification,
                               margin_provider=margin_provider, calendar=calendar, symbols=syms)
    manager.recover(time.time_ns() if now_ns is None else now_ns)
    return manager
