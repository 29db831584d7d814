"""A scripted broker: records every request and reports only what a test pushes (a live broker's shape)."""

from __future__ import annotations

from typing import Any

from tradebot.core.types import MarketEvent
from tradebot.execution.model import BracketRequest, BrokerEvent, FlattenRequest, OrderView


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
