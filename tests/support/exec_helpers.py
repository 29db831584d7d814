"""Shared builders for the execution and state tests (a real SQLite file, the real paper broker)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tradebot.core.calendar import to_ns
from tradebot.core.config import Settings
from tradebot.core.notifications import Notification
from tradebot.core.orders import EntryType, OrderIntent, make_signal_id
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.execution.broker import Broker
from tradebot.execution.manager import ExecutionManager
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.state.store import StateStore

T0 = to_ns(dt.datetime(2025, 3, 10, 14, 30, tzinfo=dt.UTC))
"""Monday 2025-03-10 10:30 ET, inside the regular session."""
S = 1_000_000_000


def settings(**execution: Any) -> Settings:
    """ES traded as ES (tiers off) unless the test asks otherwise; no .env, no environment surprises."""
    ex: dict[str, Any] = {"tiers_enabled": False, "commission_cents": 50, "fees_cents": "ES:140,MES:37",
                          "max_position_size": 4}
    ex.update(execution)
    top = {k: ex.pop(k) for k in list(ex) if k.isupper()}
    return Settings(_env_file=None, TRADING_SYMBOL="ES", execution=ex, **top)  # type: ignore[call-arg]


class System:
    """Store + broker + manager on one database file; ``reopen`` simulates a restart after a crash."""

    def __init__(self, path: Path, cfg: Settings, broker: Broker | None = None, *, now_ns: int = T0,
                 synchronous: str = "FULL", symbols: Sequence[str] = ("ES",)) -> None:
        self.path = path
        self.cfg = cfg
        self.synchronous = synchronous
        self.symbols = list(symbols)
        self.notes: list[Notification] = []
        self.store = StateStore.open(path, synchronous=synchronous)
        self.broker: Broker = broker if broker is not None else PaperBroker(PaperConfig.from_settings(cfg),
                                                                            data_symbols=self.symbols)
        self.manager = ExecutionManager(cfg, self.store, self.broker, on_notification=self.notes.append,
                                        symbols=self.symbols)
        self.report = self.manager.recover(now_ns)

    def reopen(self, now_ns: int, broker: Broker | None = None) -> System:
        return System(self.path, self.cfg, broker, now_ns=now_ns, synchronous=self.synchronous,
                      symbols=self.symbols)

    def close(self) -> None:
        self.store.close()


def trade(i: float, price: int, size: int = 1, symbol: str = "ES", side: Side = Side.BUY) -> Trade:
    ts = T0 + int(i * S)
    return Trade(symbol, ts, ts, price, size, side, SideRule.EXCHANGE)


def book(i: float, bid: int, ask: int, symbol: str = "ES", size: int = 10) -> BookUpdate:
    ts = T0 + int(i * S)
    return BookUpdate(symbol, ts, ts, (bid,), (size,), (ask,), (size,))


def intent(i: float, side: Side = Side.BUY, *, stop: int, target: int, qty: int = 1, symbol: str = "ES",
           entry_type: EntryType = EntryType.MARKET, entry: int | None = None, pattern: str = "SELLING_EXHAUSTION",
           tag: str = "") -> OrderIntent:
    ts = T0 + int(i * S)
    return OrderIntent(make_signal_id(symbol, ts, pattern, tag), symbol, side, qty, entry_type, entry, stop, target,
                       ts, 0.8, pattern, "RANGING", ("test",))


# ---------------------------------------------------------------------------------------------------
# A scripted two-day session touching every execution path the journal must reproduce.

DAY2_T0 = to_ns(dt.datetime(2025, 3, 11, 14, 30, tzinfo=dt.UTC))
DAY2_FLATTEN = to_ns(dt.datetime(2025, 3, 11, 19, 55, tzinfo=dt.UTC))  # 15:55 ET (EDT)


def scenario_settings() -> Settings:
    return settings(DAILY_LOSS_LIMIT=-200, ORDER_FLOW_EXIT_MODE="auto", stop_slippage_ticks=1)


def _at(ts: int, price: int, side: Side = Side.BUY) -> Trade:
    return Trade("ES", ts, ts, price, 1, side, SideRule.EXCHANGE)


def _intent_at(ts: int, side: Side, qty: int, entry_type: EntryType, entry: int | None, stop: int,
               target: int) -> OrderIntent:
    return OrderIntent(make_signal_id("ES", ts, "SCRIPT"), "ES", side, qty, entry_type, entry, stop, target, ts, 0.7,
                       "SCRIPT", "RANGING", ("scripted",))


def _sid(i: float) -> str:
    return make_signal_id("ES", T0 + int(i * S), "SCRIPT")


Step = tuple[str, int, Callable[[ExecutionManager], object]]


def scenario() -> list[Step]:
    """(label, event time, action) steps; every action is safe to run again after a crash mid-step."""
    m = EntryType.MARKET
    steps: list[Step] = []

    def ev(i: float, px: int, side: Side = Side.BUY) -> None:
        ts = T0 + int(i * S)
        steps.append((f"trade {i} @{px}", ts, lambda mgr: mgr.on_market_event(_at(ts, px, side))))

    def it(i: float, side: Side, qty: int, et: EntryType, entry: int | None, stop: int, target: int) -> None:
        ts = T0 + int(i * S)
        steps.append((f"intent {i}", ts,
                      lambda mgr: mgr.on_intent(_intent_at(ts, side, qty, et, entry, stop, target))))

    def act(label: str, i: float, fn: Callable[[ExecutionManager, int], object]) -> None:
        ts = T0 + int(i * S)
        steps.append((label, ts, lambda mgr: fn(mgr, ts)))

    ev(1, 1000)
    it(2, Side.BUY, 2, m, None, 990, 1010)                       # A: long 2 at market
    ev(3, 1001)                                                  # A fills 2 @ 1001
    ev(4, 1005)
    act("modify A", 5, lambda mgr, ts: mgr.modify_stop(_sid(2), 1000, ts))
    ev(6, 1011)                                                  # A target through: +9 ticks x 2
    it(7, Side.SELL, 3, EntryType.LIMIT, 1012, 1020, 1000)       # B: short 3, limit 1012
    ev(8, 1012)                                                  # at the limit: no fill (through rule)
    ev(9, 1013)                                                  # B fills 3 @ 1012
    ev(10, 1021)                                                 # B stop 1020 + 1 tick slippage
    it(11, Side.BUY, 1, EntryType.STOP, 1025, 1015, 1045)        # C: stop entry 1025
    ev(12, 1024)
    ev(13, 1026)                                                 # C fills 1027 (slippage)
    act("exit signal", 14, lambda mgr, ts: mgr.on_exit_signal("ES", ts, "large sellers"))
    ev(15, 1030, Side.SELL)                                      # C exit at market (a print at the bid)
    it(16, Side.BUY, 1, m, None, 1019, 1060)                     # D
    ev(17, 1030)
    act("halt", 18, lambda mgr, ts: mgr.halt("operator check", ts))
    it(19, Side.BUY, 1, m, None, 1019, 1060)                     # rejected: halted
    act("resume", 20, lambda mgr, ts: mgr.resume(ts))
    ev(21, 1021)                                                 # open loss breaches the daily limit -> flatten D
    ev(22, 1020, Side.SELL)                                      # D's closing order fills (at the bid)
    it(23, Side.BUY, 1, m, None, 1000, 1040)                     # rejected: limit halt
    day2 = DAY2_T0
    steps.append(("day 2 open", day2, lambda mgr: mgr.on_market_event(_at(day2, 1000))))
    steps.append(("intent G", day2 + S, lambda mgr: mgr.on_intent(
        _intent_at(day2 + S, Side.BUY, 1, EntryType.LIMIT, 998, 990, 1010))))
    steps.append(("trade 997", day2 + 2 * S, lambda mgr: mgr.on_market_event(_at(day2 + 2 * S, 997))))
    steps.append(("auto-flatten", DAY2_FLATTEN, lambda mgr: mgr.auto_flatten(DAY2_FLATTEN)))
    steps.append(("trade 1003", DAY2_FLATTEN + S,
                  lambda mgr: mgr.on_market_event(_at(DAY2_FLATTEN + S, 1003, Side.SELL))))
    steps.append(("intent H", DAY2_FLATTEN + 2 * S, lambda mgr: mgr.on_intent(
        _intent_at(DAY2_FLATTEN + 2 * S, Side.BUY, 1, m, None, 990, 1040))))
    steps.append(("auto-flatten again", DAY2_FLATTEN + 3 * S, lambda mgr: mgr.auto_flatten(DAY2_FLATTEN + 3 * S)))
    return steps
