"""A scripted broker: records every request and reports only what a test pushes (a live broker's shape)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tradebot.core.types import MarketEvent
from tradebot.execution.brokers import PreflightCheck
from tradebot.execution.model import (
    Ack,
    BracketRequest,
    BrokerEvent,
    Fill,
    FlattenRequest,
    LegState,
    OrderView,
    Reject,
    StopRequest,
)


class FakeBroker:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.events: list[BrokerEvent] = []
        self.orders: dict[str, OrderView] = {}
        self.positions: dict[str, int] = {}

    def submit_bracket(self, req: BracketRequest) -> None:
        self.calls.append(("submit", req))

    def cancel(self, client_order_id: str) -> None:
        self.calls.append(("cancel", client_order_id))

    def modify_stop(self, client_order_id: str, stop_price: int) -> None:
        self.calls.append(("modify", (client_order_id, stop_price)))

    def flatten(self, req: FlattenRequest) -> None:
        self.calls.append(("flatten", req))

    def request_status(self, client_order_id: str) -> None:
        self.calls.append(("status", client_order_id))

    def query_orders(self) -> list[OrderView]:
        return list(self.orders.values())

    def query_positions(self) -> dict[str, int]:
        return {k: v for k, v in self.positions.items() if v}

    def poll_events(self) -> list[BrokerEvent]:
        out, self.events = self.events, []
        return out

    def on_market_event(self, ev: MarketEvent) -> None:
        return None

    def push(self, *events: BrokerEvent) -> None:
        self.events.extend(events)

    def kinds(self, kind: str) -> list[Any]:
        return [arg for k, arg in self.calls if k == kind]


class ScriptedLiveBroker:
    """A live broker's shape (:class:`~tradebot.execution.brokers.LiveBroker`) over the paper broker's fills,
    with scripted faults: what a real account does, on the test's command.

    The paper broker is the "exchange" (it fills from the market events the test feeds); this wrapper is the
    network between it and us: it can lose acknowledgements, deliver events twice or in reverse order, reject
    stops, lose a stop from its book, and be "down" (events happen and are lost to us, as while the daemon is
    stopped: :meth:`query_fills` still has them, like a broker's trade history).
    """

    name = "scripted"

    def __init__(self, paper: Any | None = None) -> None:
        from tradebot.execution.paper import PaperBroker

        self.paper = paper if paper is not None else PaperBroker()
        self.calls: list[tuple[str, Any]] = []
        self.fills: list[Fill] = []
        self.lose_acks: set[str] = set()
        self.duplicate = False
        self.reverse = False
        self.reject_stops = 0
        """Bracket stops (and re-placed stops) to reject, in turn."""
        self.lose_stops = 0
        """Bracket stops that vanish from the broker's book after the entry fills (never working there)."""
        self.muted = False
        self.is_connected = False
        self.checks = [PreflightCheck("login", True, "scripted")]
        self.connect_errors: list[Exception] = []
        self._wakeup: Callable[[], None] | None = None
        self._hidden: set[str] = set()
        self.closed = False

    # -- LiveBroker ---------------------------------------------------------------------------------
    async def connect(self) -> None:
        if self.connect_errors:
            raise self.connect_errors.pop(0)
        self.is_connected = True

    def preflight(self) -> list[PreflightCheck]:
        return list(self.checks)

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        self._wakeup = callback

    def query_fills(self) -> list[Fill]:
        return list(self.fills)

    @property
    def connected(self) -> bool:
        return self.is_connected

    async def close(self) -> None:
        self.closed = True
        self.is_connected = False

    # -- Broker -------------------------------------------------------------------------------------
    def submit_bracket(self, req: BracketRequest) -> None:
        self.calls.append(("submit", req))
        self.paper.submit_bracket(req)

    def cancel(self, client_order_id: str) -> None:
        self.calls.append(("cancel", client_order_id))
        self.paper.cancel(client_order_id)

    def modify_stop(self, client_order_id: str, stop_price: int) -> None:
        self.calls.append(("modify", (client_order_id, stop_price)))
        self.paper.modify_stop(client_order_id, stop_price)

    def flatten(self, req: FlattenRequest) -> None:
        self.calls.append(("flatten", req))
        self.paper.flatten(req)

    def place_stop(self, req: StopRequest) -> None:
        self.calls.append(("place_stop", req))
        if self.reject_stops > 0:
            self.reject_stops -= 1
            self.paper._orders.pop(req.stop_id, None)
            self.paper._events.append(Reject(req.stop_id, req.ts_ns, "stop price on the wrong side of the market"))
            return
        self.paper.place_stop(req)

    def request_status(self, client_order_id: str) -> None:
        self.calls.append(("status", client_order_id))
        self.paper.request_status(client_order_id)

    def query_orders(self) -> list[OrderView]:
        return [o for o in self.paper.query_orders() if o.client_order_id not in self._hidden]

    def query_positions(self) -> dict[str, int]:
        return dict(self.paper.query_positions())

    def on_market_event(self, ev: MarketEvent) -> None:
        self.paper.on_market_event(ev)

    def poll_events(self) -> list[BrokerEvent]:
        raw = self.paper.poll_events()
        out: list[BrokerEvent] = []
        for ev in raw:
            if isinstance(ev, Ack) and ev.client_order_id in self.lose_acks:
                continue
            out.append(ev)
            if isinstance(ev, Fill):
                self.fills.append(ev)
                if ev.client_order_id.endswith("-E"):
                    self._after_entry_fill(ev.client_order_id[:-2], ev.ts_ns, out)
        if self.muted:
            return []
        if self.reverse:
            out.reverse()
        if self.duplicate:
            out = [e for ev in out for e in (ev, ev)]
        return out

    def _after_entry_fill(self, signal_id: str, ts_ns: int, out: list[BrokerEvent]) -> None:
        stop_id = f"{signal_id}-S"
        o = self.paper._orders.get(stop_id)
        if o is None or o.state in (LegState.CANCELLED, LegState.REJECTED, LegState.FILLED):
            return
        if self.reject_stops > 0:
            self.reject_stops -= 1
            self.paper._terminate(o, LegState.REJECTED, ts_ns, "stop rejected by the broker")
            out.append(Reject(stop_id, ts_ns, "stop rejected by the broker"))
        elif self.lose_stops > 0:
            self.lose_stops -= 1
            self.paper._terminate(o, LegState.CANCELLED, ts_ns, "lost")
            self._hidden.add(stop_id)

    # -- test helpers -------------------------------------------------------------------------------
    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup()

    def kinds(self, kind: str) -> list[Any]:
        return [arg for k, arg in self.calls if k == kind]
