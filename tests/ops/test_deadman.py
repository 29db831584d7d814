"""The dead-man's switch: when it fires (pure rule), and what it does at a broker (a live broker's shape over the
paper broker, which holds the position the daemon left: its fills come from market data the "exchange" keeps
printing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.exec_helpers import T0, S, book, intent, settings, trade
from tradebot.core.config import Settings
from tradebot.core.types import MarketEvent, Side
from tradebot.execution.brokers import BrokerAuthError, LiveBroker, PreflightCheck
from tradebot.execution.manager import ExecutionManager
from tradebot.execution.model import (
    BracketRequest,
    BrokerEvent,
    Fill,
    FlattenRequest,
    LegState,
    OrderView,
)
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.ops import deadman
from tradebot.ops.notifications import Severity
from tradebot.state.store import StateStore


class ExchangeBroker:
    """A LiveBroker over a paper broker: the account a dead daemon left, with the market still trading."""

    name = "exchange"

    def __init__(self, paper: PaperBroker, ticks: Callable[[], list[MarketEvent]], *, stuck: bool = False) -> None:
        self.paper = paper
        self.ticks = ticks
        self.stuck = stuck
        self.calls: list[tuple[str, Any]] = []
        self.is_connected = False

    async def connect(self) -> None:
        self.calls.append(("connect", None))
        self.is_connected = True

    def preflight(self) -> list[PreflightCheck]:
        return [PreflightCheck("login", True, "")]

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        return None

    def query_fills(self) -> list[Fill]:
        return []

    @property
    def connected(self) -> bool:
        return self.is_connected

    async def close(self) -> None:
        self.calls.append(("close", None))
        self.is_connected = False

    def submit_bracket(self, req: BracketRequest) -> None:
        raise AssertionError("the dead-man's switch never opens a position")

    def cancel(self, client_order_id: str) -> None:
        self.calls.append(("cancel", client_order_id))
        self.paper.cancel(client_order_id)

    def modify_stop(self, client_order_id: str, stop_price: int) -> None:
        raise AssertionError("not used")

    def flatten(self, req: FlattenRequest) -> None:
        self.calls.append(("flatten", req))
        if not self.stuck:
            self.paper.flatten(req)

    def request_status(self, client_order_id: str) -> None:
        self.paper.request_status(client_order_id)

    def query_orders(self) -> list[OrderView]:
        return self.paper.query_orders()

    def query_positions(self) -> dict[str, int]:
        return self.paper.query_positions()

    def poll_events(self) -> list[BrokerEvent]:
        for ev in self.ticks():
            self.paper.on_market_event(ev)
        return self.paper.poll_events()

    def on_market_event(self, ev: MarketEvent) -> None:
        return None


def live_settings(tmp_path: Path, db: Path, **watchdog: Any) -> Settings:
    base = settings(db_path=str(db))
    return base.model_copy(update={"trading_mode": "live", "data_dir": tmp_path,
                                   "watchdog": base.watchdog.model_copy(update={"deadman_flat_seconds": 2.0,
                                                                                 **watchdog})})


def hb(age_s: float, **extra: Any) -> dict[str, Any]:
    return {"ts_ns": T0 - int(age_s * S), "mode": "live", "positions": {"ES": 1}, "open_brackets": 1,
            "feed_state": "live", **extra}


def test_due_only_in_live_mode_on_a_stale_heartbeat_with_something_open(tmp_path: Path) -> None:
    live = live_settings(tmp_path, tmp_path / "x.db")
    paper = settings()
    st = deadman.DeadmanState()
    assert deadman.due(hb(500), T0, paper, st) is None  # off in paper (auto)
    assert deadman.due(hb(10), T0, live, st) is None  # fresh
    assert deadman.due(hb(500), T0, live, st) == "heartbeat 500s old with ES +1 open"
    assert deadman.due(hb(500, positions={}, open_brackets=0), T0, live, deadman.DeadmanState()) is None
    assert deadman.due(hb(500, positions={}, open_brackets=1), T0, live,
                       deadman.DeadmanState()) == "heartbeat 500s old with orders working"
    assert deadman.due(hb(500, feed_state="stopped"), T0, live, deadman.DeadmanState()) is None  # clean stop
    assert deadman.due(None, T0, live, deadman.DeadmanState()) == "no readable heartbeat"  # the broker decides
    off = live.model_copy(update={"watchdog": live.watchdog.model_copy(update={"deadman": "off"})})
    assert deadman.due(hb(500), T0, off, deadman.DeadmanState()) is None
    on = paper.model_copy(update={"watchdog": paper.watchdog.model_copy(update={"deadman": "on"})})
    assert deadman.due(hb(500, mode="paper"), T0, on, deadman.DeadmanState()) is not None
    # Once an episode succeeded it is not repeated; a fresh heartbeat re-arms the switch.
    st.done = True
    assert deadman.due(hb(500), T0 + 100 * S, live, st) is None  # the same heartbeat, later: same episode
    assert deadman.due(hb(1), T0, live, st) is None and not st.done
    assert deadman.due(hb(600), T0, live, st) is not None


def open_position(tmp_path: Path) -> tuple[Path, PaperBroker, str]:
    cfg = settings().model_copy(update={"trading_mode": "live"})
    paper = PaperBroker(PaperConfig.from_settings(cfg), data_symbols=["ES"])
    store = StateStore.open(tmp_path / "live.db", mode="live")
    m = ExecutionManager(cfg, store, paper, symbols=["ES"])
    m.recover(T0)
    m.on_market_event(book(0, 20000, 20001))
    it = intent(1, Side.BUY, stop=19980, target=20040, qty=2)
    assert m.on_intent(it).taken
    m.on_market_event(book(2, 20000, 20001))
    m.on_market_event(trade(3, 20001))
    assert paper.query_positions() == {"ES": 2}
    store.close()  # the daemon dies here: the position and its stop and target stay at the "broker"
    return store.path, paper, it.signal_id


def market(start: float) -> Callable[[], list[MarketEvent]]:
    i = [start]

    def ticks() -> list[MarketEvent]:
        i[0] += 1
        return [book(i[0], 20010, 20011), trade(i[0] + 0.5, 20010, side=Side.SELL)]
    return ticks


async def test_fire_cancels_then_flattens_with_the_brackets_own_exit_id_and_alerts(tmp_path: Path) -> None:
    db, paper, sid = open_position(tmp_path)
    ex = ExchangeBroker(paper, market(100))
    cfg = live_settings(tmp_path, db)
    st = deadman.DeadmanState()
    why = deadman.due(hb(120), T0 + 60 * S, cfg, st)
    assert why is not None
    opened: list[str] = []

    def opener(settings: Settings, name: str) -> LiveBroker:
        opened.append(name)
        return ex

    notes = await deadman.fire(cfg, why, hb(120, broker="projectx"), st, T0 + 60 * S, opener=opener)
    assert opened == ["projectx"]
    assert paper.query_positions() == {}
    assert [o.client_order_id for o in paper.query_orders() if o.state == LegState.WORKING] == []
    kinds = [k for k, _ in ex.calls]
    assert kinds[0] == "connect" and kinds[-1] == "close" and "flatten" in kinds
    req = next(a for k, a in ex.calls if k == "flatten")
    assert isinstance(req, FlattenRequest)
    # The daemon's own ids: reconciliation on restart finds fills for its bracket, not a foreign order.
    assert (req.signal_id, req.exit_id, req.side, req.quantity) == (sid, f"{sid}-X1", Side.SELL, 2)
    assert set(req.cancel_ids) == {f"{sid}-S", f"{sid}-T"}
    assert st.done and len(notes) == 1
    n = notes[0]
    assert n.severity == Severity.CRITICAL and n.title == "Dead-man's switch: daemon down, account flattened"
    assert ("Closed", "ES +2") in n.fields and ("Broker", "projectx") in n.fields
    assert deadman.due(hb(120), T0 + 70 * S, cfg, st) is None  # handled: not again this episode


async def test_a_broker_that_does_not_go_flat_alerts_failed_and_retries(tmp_path: Path) -> None:
    db, paper, _ = open_position(tmp_path)
    ex = ExchangeBroker(paper, market(100), stuck=True)
    cfg = live_settings(tmp_path, db, deadman_flat_seconds=0.3)
    st = deadman.DeadmanState()
    why = deadman.due(hb(120), T0, cfg, st)
    assert why is not None
    notes = await deadman.fire(cfg, why, hb(120), st, T0, broker_override="rithmic", opener=lambda _s, _n: ex)
    assert notes[0].title == "Dead-man's switch FAILED: position may still be open"
    assert "ES +2" in notes[0].description and not st.done
    assert deadman.due(hb(120), T0 + 15 * S, cfg, st) is not None  # tried again next interval
    assert st.attempts == 1
    assert ex.calls[-1][0] == "close"  # logged out even so


async def test_login_refused_and_no_broker_configured_are_critical(tmp_path: Path) -> None:
    cfg = live_settings(tmp_path, tmp_path / "none.db")
    st = deadman.DeadmanState()

    class Refused(ExchangeBroker):
        async def connect(self) -> None:
            raise BrokerAuthError("401 invalid API key")

    bad = Refused(PaperBroker(), market(0))
    notes = await deadman.fire(cfg, "why", None, st, T0, broker_override="projectx", opener=lambda _s, _n: bad)
    assert notes[0].severity == Severity.CRITICAL and "401 invalid API key" in notes[0].description
    notes = await deadman.fire(cfg, "why", None, st, T0)
    assert notes[0].title == "Dead-man's switch cannot act: no broker configured"
    assert "TRADING_BROKER" in notes[0].description


async def test_nothing_open_at_the_broker_is_reported_not_acted_on(tmp_path: Path) -> None:
    cfg = live_settings(tmp_path, tmp_path / "none.db")
    ex = ExchangeBroker(PaperBroker(), market(0))
    st = deadman.DeadmanState()
    notes = await deadman.fire(cfg, "no readable heartbeat", None, st, T0, broker_override="projectx",
                               opener=lambda _s, _n: ex)
    assert notes[0].title == "Dead-man's switch: daemon down, nothing open at the broker" and st.done
    assert notes[0].severity == Severity.WARNING  # informational: nothing was at risk
    assert [k for k, _ in ex.calls] == ["connect", "close"]


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_enabled_by_mode(mode: str) -> None:
    cfg = settings().model_copy(update={"trading_mode": mode})
    assert deadman.enabled(cfg) is (mode == "live")
