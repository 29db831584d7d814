"""The broker interface the execution manager talks to (paper now, a live adapter later).

Every call is a non-blocking *request*; every answer is an *event* the manager drains with
:meth:`Broker.poll_events`. That keeps the manager synchronous and deterministic (a replay and a live
session run the same code) and makes a lost answer a first-class case: no event within the timeout means
the order is UNKNOWN and is resolved with :meth:`Broker.request_status`, never by sending it again.

A live adapter implements the same methods over its network client: requests go to an outgoing queue,
answers from the socket are appended to the queue :meth:`poll_events` drains, and ``wakeup`` (if it has one)
tells the daemon to pump. ``query_orders``/``query_positions`` answer from the adapter's synchronized view
(fetched on connect, before the manager reconciles).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from tradebot.core.types import MarketEvent
from tradebot.execution.journal import JournalEntry
from tradebot.execution.model import BracketRequest, BrokerEvent, FlattenRequest, OrderView


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit_bracket(self, req: BracketRequest) -> None:
        """Entry plus a stop and a target that activate when the entry fills and cancel each other (OCO)."""

    def cancel(self, client_order_id: str) -> None: ...

    def modify_stop(self, client_order_id: str, stop_price: int) -> None: ...

    def flatten(self, req: FlattenRequest) -> None:
        """Cancel ``req.cancel_ids`` then close ``req.quantity`` at market with ``req.exit_id``."""

    def request_status(self, client_order_id: str) -> None:
        """Answer arrives as a :class:`~tradebot.execution.model.StatusReport` (state ``None``: unknown)."""

    def query_orders(self) -> list[OrderView]: ...

    def query_positions(self) -> dict[str, int]:
        """Signed net contracts per symbol root (non-zero only)."""

    def poll_events(self) -> list[BrokerEvent]:
        """Everything reported since the last call, in the broker's order."""

    def on_market_event(self, ev: MarketEvent) -> None:
        """Market data the engine sees (the paper broker fills from it; a live adapter ignores it)."""


@runtime_checkable
class RestorableBroker(Broker, Protocol):
    """A broker whose state lives only in our journal (the paper broker): rebuilt from it after a crash."""

    def restore(self, entries: Iterable[JournalEntry]) -> None:
        """Rebuild from the typed journal (:mod:`tradebot.execution.journal`), before any new request."""
