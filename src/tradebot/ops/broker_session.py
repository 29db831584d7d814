"""The daemon's live broker: build, connect (with backoff), preflight, pump, reconcile, protect, close.

Start-up order in live mode: the adapter is built from its settings (a missing key is a configuration error,
exit 2), connected (a refused login is fatal, exit 2 with one line; a 429/5xx/timeout is retried with doubling
waits up to ``connect_backoff_max_seconds``, alerting on the first failure and on success), and its preflight
printed check by check; any failed check refuses the start (exit 2) saying exactly what failed. Only then does
the trading core start, and its recovery reconciles the journal with the broker.

While running: the adapter's wake-up callback schedules one pump of the manager on the loop (broker events are
applied within a loop iteration, not on the next market event); a one-second task runs the no-naked-position
check, the submit timeouts (a quiet market must still resolve a lost acknowledgement), and every
``reconcile_seconds`` the reconciliation; a dropped broker connection is alerted and blocks new entries until it
is back, then reconciles at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tradebot.core.config import ConfigError, Settings
from tradebot.core.notifications import NotificationKind, Severity
from tradebot.execution.brokers import (
    AlertingBroker,
    BrokerAuthError,
    BrokerError,
    LiveBroker,
    PreflightCheck,
    open_live_broker,
)
from tradebot.execution.reconcile import Reconciler

if TYPE_CHECKING:
    from tradebot.execution.manager import ExecutionManager

NS = 1_000_000_000
Notify = Callable[[NotificationKind, Severity, str, str], None]


class LiveStartError(Exception):
    """Live mode refused at start (exit 2): the message says exactly why, in one line."""


class BrokerSession:
    def __init__(self, settings: Settings, name: str, broker: LiveBroker, notify: Notify, log: Any) -> None:
        self.settings = settings
        self.name = name
        self.broker = broker
        self.notify = notify
        self.log = log
        self.manager: ExecutionManager | None = None
        self.reconciler: Reconciler | None = None
        self.market_now: Callable[[], int] = time.time_ns
        self.on_error: Callable[[str, Exception], None] | None = None
        self._pump_scheduled = False
        self._was_connected = True
        self.connect_attempts = 0
        self.pumps = 0

    @classmethod
    def open(cls, settings: Settings, name: str | None, notify: Notify, log: Any,
             symbols: list[str] | None = None) -> BrokerSession:
        """``symbols``: the daemon's roots; the adapter resolves them and their micro/mini twins (the tier may trade
        MES on an ES signal), so orders and positions of those contracts are recognised as ours after a restart."""
        if not name:
            raise LiveStartError("live mode needs a broker: --broker projectx|rithmic (or TRADING_BROKER)")
        if symbols:
            from tradebot.execution.risk import MICRO_OF, MINI_OF

            roots = list(dict.fromkeys(r for s in symbols for r in (s, MICRO_OF.get(s), MINI_OF.get(s)) if r))
            settings = settings.model_copy(update={"symbols": ",".join(roots)})
        try:
            broker = open_live_broker(settings, name)
        except ImportError as exc:
            raise LiveStartError(f"the {name} adapter is not available in this installation ({exc})") from None
        except (ConfigError, ValueError, BrokerError) as exc:
            raise LiveStartError(f"{name}: {exc}") from None
        return cls(settings, name, broker, notify, log)

    # -- start -------------------------------------------------------------------------------------------

    async def connect(self, stop: asyncio.Event) -> bool:
        """Connect, retrying what is retryable; False when stopped while waiting. Auth errors: LiveStartError."""
        wait = 1.0
        cap = self.settings.execution.connect_backoff_max_seconds
        failed_since: float | None = None
        while not stop.is_set():
            self.connect_attempts += 1
            try:
                await self.broker.connect()
            except BrokerAuthError as exc:
                raise LiveStartError(f"{self.name} login refused: {exc}") from None
            except BrokerError as exc:
                if not exc.retryable:
                    raise LiveStartError(f"{self.name}: {exc}") from None
                self.log.warning("broker connection failed; retrying", broker=self.name, error=str(exc),
                                 retry_in_s=wait)
                if failed_since is None:
                    failed_since = time.monotonic()
                    self.notify(NotificationKind.BROKER_UNAVAILABLE, Severity.WARNING, f"Cannot reach {self.name}",
                                f"{exc}; retrying with backoff (no orders until connected)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                wait = min(wait * 2, cap)
                continue
            if failed_since is not None:
                self.notify(NotificationKind.BROKER_CONNECTED, Severity.SUCCESS, f"{self.name} connected",
                            f"after {time.monotonic() - failed_since:.0f} s and {self.connect_attempts} attempts")
            self.log.info("broker connected", broker=self.name, attempts=self.connect_attempts)
            return True
        return False

    def preflight(self) -> list[PreflightCheck]:
        """The adapter's checklist, printed line by line to stderr; raises LiveStartError naming each failure."""
        try:
            checks = list(self.broker.preflight())
        except Exception as exc:
            checks = [PreflightCheck("preflight", False, f"{type(exc).__name__}: {exc}")]
        if not checks:
            checks = [PreflightCheck("preflight", False, "the adapter reported no checks")]
        for c in checks:
            print(f"preflight {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}", file=sys.stderr)
            self.log.info("preflight", broker=self.name, check=c.name, ok=c.ok, detail=c.detail)
        failed = [c for c in checks if not c.ok]
        if failed:
            raise LiveStartError(f"live preflight failed ({self.name}): "
                                 + "; ".join(f"{c.name}: {c.detail}" for c in failed))
        return checks

    def attach(self, manager: ExecutionManager, market_now: Callable[[], int],
               on_error: Callable[[str, Exception], None]) -> None:
        """Wire the started trading core: wake-ups pump it, the periodic task reconciles it."""
        self.manager = manager
        self.reconciler = Reconciler(manager)
        self.market_now = market_now
        self.on_error = on_error
        self.broker.set_wakeup(self.wakeup)

    # -- running -----------------------------------------------------------------------------------------

    def wakeup(self) -> None:
        """Called by the adapter (on the loop) when it queued events: one pump soon, however many wake-ups."""
        if self._pump_scheduled:
            return
        self._pump_scheduled = True
        asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        if self.manager is None:
            return
        try:
            self.pumps += 1
            self.manager.pump()
            self.manager.protection.check(time.monotonic_ns())
        except Exception as exc:
            if self.on_error is not None:
                self.on_error("broker events", exc)

    async def run(self) -> None:
        """Protection every second, timeouts, reconciliation every ``reconcile_seconds``, connection edges."""
        every = self.settings.execution.reconcile_seconds
        next_reconcile = time.monotonic() + every
        while True:
            await asyncio.sleep(min(1.0, every))
            m = self.manager
            if m is None:
                continue
            try:
                self._forward_alerts()
                self._connection_edge(m)
                now = self.market_now()
                m.check_timeouts(now)
                m.protection.check(time.monotonic_ns())
                if time.monotonic() >= next_reconcile and self.broker.connected and self.reconciler is not None:
                    next_reconcile = time.monotonic() + every
                    self.reconciler.check(now)
            except Exception as exc:
                if self.on_error is not None:
                    self.on_error("broker session", exc)

    def _forward_alerts(self) -> None:
        """An adapter's own alerts (Rithmic: forced logout, fail-closed halt, fills recovered) as notifications."""
        if isinstance(self.broker, AlertingBroker):
            for a in self.broker.poll_alerts():
                self.notify(NotificationKind.BROKER_ALERT, a.severity, a.title, a.detail)

    def _connection_edge(self, m: ExecutionManager) -> None:
        up = self.broker.connected
        if up == self._was_connected:
            return
        self._was_connected = up
        if not up:
            m.entry_block = f"{self.name} connection lost"
            self.log.warning("broker connection lost", broker=self.name)
            self.notify(NotificationKind.BROKER_DISCONNECTED, Severity.WARNING, f"{self.name} connection lost",
                        "no new entries until it is back; working stops and targets stay at the broker")
            return
        m.entry_block = ""
        self.log.info("broker connection restored", broker=self.name)
        self.notify(NotificationKind.BROKER_CONNECTED, Severity.SUCCESS, f"{self.name} connection restored",
                    "reconciling with the broker now")
        if self.reconciler is not None:
            self.reconciler.check(self.market_now())
        m.protection.check(time.monotonic_ns())

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.broker.close(), timeout=5)
        except Exception as exc:
            self.log.warning("broker close failed", broker=self.name, error=repr(exc))
