"""Live broker adapters (ProjectX Gateway for TopstepX and friends, Rithmic R|Protocol) behind one interface.

Each adapter lives in its own module (``projectx.py``, ``rithmic.py``) and is imported only when chosen, so a
paper daemon never loads a vendor client. An adapter runs its network client as tasks on the daemon's asyncio
loop: the :class:`~tradebot.execution.broker.Broker` request methods stay synchronous and non-blocking (they
queue the request), answers from the wire are appended to the list :meth:`poll_events` drains, and the
callback given to :meth:`LiveBroker.set_wakeup` tells the daemon to pump the manager. ``query_orders``,
``query_positions`` and ``query_fills`` answer from the adapter's synchronized view, fetched on
:meth:`LiveBroker.connect` and kept current from the broker's push stream, so reconciliation never waits on
the network inside the trading loop.

Errors say whether retrying can help (freqtrade's hierarchy): a wrong key is fatal and stops the daemon with
exit 2, a 429/5xx/disconnect is retried with backoff; a broker reject is not an error at all but an answer (a
:class:`~tradebot.execution.model.Reject` event for the order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tradebot.core.notifications import Severity
from tradebot.execution.broker import Broker
from tradebot.execution.model import Fill, StopRequest

if TYPE_CHECKING:
    from tradebot.core.config import Settings

BROKER_NAMES = ("projectx", "rithmic")


class BrokerError(Exception):
    """Base of every adapter error; ``retryable`` tells the caller whether backing off and retrying can help."""

    retryable = False


class BrokerAuthError(BrokerError):
    """Login refused (wrong user name, key or password, expired account): restarting cannot fix it."""


class BrokerUnavailableError(BrokerError):
    """HTTP 429/5xx, a timeout or a dropped connection: back off and retry (never re-send an order: query)."""

    retryable = True


@dataclass(frozen=True, slots=True)
class PreflightCheck:
    """One line of the live start's checklist; the daemon prints them all and refuses to start on any failure."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class BrokerAlert:
    """Something about the broker connection the operator must hear (a forced logout, a fail-closed halt, fills
    recovered after an outage); the daemon's broker session turns each into a notification."""

    severity: Severity
    title: str
    detail: str
    ts_ns: int


@runtime_checkable
class AlertingBroker(Protocol):
    """An adapter with alerts of its own beyond connected/disconnected (the Rithmic adapter)."""

    def poll_alerts(self) -> list[BrokerAlert]:
        """Everything raised since the last call, oldest first."""


@runtime_checkable
class LiveBroker(Broker, Protocol):
    """A broker reached over the network; :class:`Broker` plus its connection life cycle."""

    async def connect(self) -> None:
        """Log in, find the account and contracts, fetch open orders, positions and the session's fills.

        Raises :class:`BrokerAuthError` (fatal) or :class:`BrokerUnavailableError` (retry later).
        """

    def preflight(self) -> list[PreflightCheck]:
        """After :meth:`connect`: login, account found and tradable, contracts resolved.

        Open orders and positions are for the daemon to judge: only it knows the journal (an open position after
        a kill -9 is ours, not unknown). Report them as ``ok=True`` lines saying what is there; the daemon's
        reconciliation halts on what the journal cannot explain, and ``tradebot adopt`` takes a foreign position
        over."""

    def place_stop(self, req: StopRequest) -> None:
        """A stand-alone stop order for an open position (the no-naked-position rule re-places a lost or
        rejected bracket stop with it); answers arrive as events for ``req.stop_id`` like any order's."""

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        """Called (on the loop) whenever new events are queued for :meth:`poll_events`."""

    def query_fills(self) -> list[Fill]:
        """The broker's record of this session's fills (journaled by reconciliation if we missed them)."""

    @property
    def connected(self) -> bool: ...

    async def close(self) -> None: ...


def open_live_broker(settings: Settings, name: str) -> LiveBroker:
    """The adapter for ``name``, built from its settings (imported lazily: only the chosen vendor's client)."""
    if name == "projectx":
        from tradebot.execution.brokers.projectx import ProjectXBroker  # type: ignore[import-not-found,unused-ignore]

        broker: LiveBroker = ProjectXBroker.from_settings(settings)
        return broker
    if name == "rithmic":
        from tradebot.execution.brokers.rithmic import RithmicBroker  # type: ignore[import-not-found,unused-ignore]

        broker = RithmicBroker.from_settings(settings)
        return broker
    raise ValueError(f"unknown broker {name!r}: choose one of {', '.join(BROKER_NAMES)}")
