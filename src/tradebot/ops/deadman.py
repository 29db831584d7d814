"""The dead-man's switch: when the daemon dies with a live position, the watchdog closes it at the broker.

A live position left behind by a dead daemon keeps its broker-side stop and target, but nothing moves the stop,
honours the flat-by time or the daily limits, or notices a stop the broker dropped. So when the heartbeat has
been stale for ``deadman_stale_seconds`` (default 90 s, on by default in live mode, off in paper), the watchdog
opens *its own* broker session (:func:`~tradebot.execution.brokers.open_live_broker`), cancels every working
order, closes every position at market, waits until the broker reports the account flat, logs out, and alerts.

The broker is the truth: the heartbeat only says whether anything was open (and is not trusted to say that
nothing is: a missing or unreadable heartbeat is checked at the broker too). A heartbeat the daemon wrote on a
clean stop (feed ``stopped``) is a deliberate stop by the operator and does not trip the switch.

Closing orders carry the client order ids the daemon itself would use (``<signal>-X<n>`` of the open bracket,
read from the state database read-only), so when the daemon comes back its reconciliation finds fills for its
own brackets, not foreign orders to halt on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification, NotificationKind, Severity
from tradebot.core.types import Side
from tradebot.execution.brokers import BrokerError, LiveBroker, open_live_broker
from tradebot.execution.model import TERMINAL_LEG, FlattenRequest, LegRole, client_order_id
from tradebot.ops.heartbeat import heartbeat_age_seconds

_DEADMAN = NotificationKind.DEADMAN
log = get_logger("tradebot.deadman")
NS = 1_000_000_000


@dataclass
class DeadmanState:
    """The current stale episode: handled once when it succeeds, retried every interval while it fails."""

    episode: int | None = None
    """``ts_ns`` of the last heartbeat before the daemon went quiet (``-1``: no readable heartbeat)."""
    done: bool = False
    attempts: int = 0
    last_result: str = ""


@dataclass
class DeadmanResult:
    ok: bool
    detail: str
    cancelled: list[str] = field(default_factory=list)
    closed: dict[str, int] = field(default_factory=dict)
    """Signed quantity closed per symbol (the position it had)."""
    remaining: dict[str, int] = field(default_factory=dict)


def enabled(settings: Settings) -> bool:
    mode = settings.watchdog.deadman
    return mode == "on" or (mode == "auto" and settings.trading_mode == "live")


def broker_name(settings: Settings, heartbeat: dict[str, Any] | None, override: str | None = None) -> str | None:
    """``--broker``, else ``TRADING_BROKER``, else the broker the daemon's heartbeat names."""
    for name in (override, getattr(settings, "trading_broker", None), (heartbeat or {}).get("broker")):
        if isinstance(name, str) and name:
            return name
    return None


def due(heartbeat: dict[str, Any] | None, now_ns: int, settings: Settings, st: DeadmanState) -> str | None:
    """Why the switch must fire now (``None``: it must not). Pure, so the rule is tested without processes."""
    if not enabled(settings):
        return None
    age = heartbeat_age_seconds(heartbeat, now_ns)
    stale = heartbeat is None or age is None or age > settings.watchdog.deadman_stale_seconds
    episode = int(heartbeat["ts_ns"]) if heartbeat and isinstance(heartbeat.get("ts_ns"), int) else -1
    if not stale:
        st.episode, st.done, st.attempts = None, False, 0
        return None
    if st.episode != episode:
        st.episode, st.done, st.attempts = episode, False, 0
    if st.done:
        return None
    if heartbeat is not None:
        if heartbeat.get("feed_state") == "stopped":
            return None  # the operator stopped the daemon (a clean shutdown wrote this heartbeat)
        mode = heartbeat.get("mode")
        if settings.watchdog.deadman == "auto" and mode not in (None, "live"):
            return None
        positions = heartbeat.get("positions")
        brackets = heartbeat.get("open_brackets")
        if isinstance(positions, dict) and not any(positions.values()) and brackets in (0, [], None) \
                and "open_brackets" in heartbeat:
            return None  # flat and nothing working when it died
        what = ", ".join(f"{s} {q:+d}" for s, q in positions.items() if q) if isinstance(positions, dict) else ""
        return f"heartbeat {age:.0f}s old" + (f" with {what} open" if what else " with orders working")
    return "no readable heartbeat"


def _exit_ids(settings: Settings) -> dict[str, tuple[str, str]]:
    """Per traded symbol, ``(signal_id, exit id)`` of its open bracket, from the state database (read-only)."""
    from tradebot.execution.ledger import rebuild_from_journal
    from tradebot.execution.risk import usd_to_cents
    from tradebot.execution.status import db_path
    from tradebot.state.store import StateStore

    path = db_path(settings)
    if not path.exists():
        return {}
    store = StateStore.open(path, mode=settings.trading_mode, readonly=True)
    try:
        ledger = rebuild_from_journal(store, usd_to_cents(settings.execution.starting_balance), write=False)
    finally:
        store.close()
    out: dict[str, tuple[str, str]] = {}
    for b in ledger.open_brackets():
        if b.position > 0 and b.symbol not in out:
            out[b.symbol] = (b.signal_id, client_order_id(b.signal_id, LegRole.EXIT, b.exits + 1))
    return out


async def flatten_account(broker: LiveBroker, exit_ids: dict[str, tuple[str, str]], now_ns: int, *,
                          timeout_s: float, poll_s: float = 0.2,
                          clock: Callable[[], float] = time.monotonic) -> DeadmanResult:
    """Cancel every working order and close every position; wait until the broker reports the account flat."""
    orders = [o for o in broker.query_orders() if o.state not in TERMINAL_LEG]
    positions = {s: q for s, q in broker.query_positions().items() if q}
    cancelled: list[str] = []
    for o in orders:
        if o.symbol not in positions:
            broker.cancel(o.client_order_id)
            cancelled.append(o.client_order_id)
    for symbol, qty in sorted(positions.items()):
        sid, exit_id = exit_ids.get(symbol) or (f"deadman-{symbol}-{now_ns}",
                                                client_order_id(f"deadman-{symbol}-{now_ns}", LegRole.EXIT, 1))
        cancel_ids = tuple(o.client_order_id for o in orders if o.symbol == symbol)
        cancelled += cancel_ids
        broker.flatten(FlattenRequest(sid, symbol, exit_id, Side.SELL if qty > 0 else Side.BUY, abs(qty),
                                      cancel_ids, "dead-man's switch", now_ns))
    deadline = clock() + timeout_s
    remaining = dict(positions)
    while True:
        broker.poll_events()  # the adapter's answers (acks, fills): drained, the manager is not here
        remaining = {s: q for s, q in broker.query_positions().items() if q}
        working = [o.client_order_id for o in broker.query_orders() if o.state not in TERMINAL_LEG]
        if not remaining and not working:
            return DeadmanResult(True, "flat", cancelled, positions)
        if clock() >= deadline:
            detail = (f"still open after {timeout_s:.0f}s: "
                      + ", ".join([f"{s} {q:+d}" for s, q in remaining.items()] + working))
            return DeadmanResult(False, detail, cancelled, positions, remaining)
        await asyncio.sleep(poll_s)


async def fire(settings: Settings, reason: str, heartbeat: dict[str, Any] | None, st: DeadmanState, now_ns: int, *,
               broker_override: str | None = None,
               opener: Callable[[Settings, str], LiveBroker] = open_live_broker) -> list[Notification]:
    """Open a broker session, flatten, log out; the notifications to send (always at least one)."""
    st.attempts += 1
    name = broker_name(settings, heartbeat, broker_override)
    if name is None:
        st.last_result = "no broker configured"
        return [Notification(_DEADMAN, Severity.CRITICAL, "Dead-man's switch cannot act: no broker configured",
                             now_ns, f"{reason}; set TRADING_BROKER (or watchdog --broker) so the watchdog can "
                             "close the position", (("check", "deadman"),))]
    log.warning("dead-man's switch firing", reason=reason, broker=name, attempt=st.attempts)
    try:
        exit_ids = await asyncio.to_thread(_exit_ids, settings)
    except Exception as exc:  # a damaged database must not stop the flatten: foreign ids are still better
        log.error("state database unreadable; closing with the switch's own order ids", error=repr(exc))
        exit_ids = {}
    broker: LiveBroker | None = None
    try:
        broker = opener(settings, name)
        await broker.connect()
        result = await flatten_account(broker, exit_ids, now_ns, timeout_s=settings.watchdog.deadman_flat_seconds)
    except (BrokerError, OSError, ValueError, ImportError) as exc:
        result = DeadmanResult(False, f"broker session failed: {exc}")
    finally:
        if broker is not None:
            try:
                await broker.close()
            except Exception as exc:
                log.error("broker logout failed", error=repr(exc))
    st.last_result = result.detail
    fields = (("Broker", name), ("Why", reason),
              ("Closed", ", ".join(f"{s} {q:+d}" for s, q in result.closed.items()) or "nothing open"),
              ("Orders cancelled", str(len(result.cancelled))), ("Attempt", str(st.attempts)))
    if result.ok:
        st.done = True
        title = ("Dead-man's switch: daemon down, account flattened" if result.closed or result.cancelled
                 else "Dead-man's switch: daemon down, nothing open at the broker")
        log.warning(title, closed=result.closed, cancelled=len(result.cancelled))
        acted = bool(result.closed or result.cancelled)
        return [Notification(_DEADMAN, Severity.CRITICAL if acted else Severity.WARNING, title, now_ns,
                             "the daemon's heartbeat went stale; restart it and check the journal against the broker",
                             fields)]
    log.error("dead-man's switch failed", detail=result.detail)
    return [Notification(_DEADMAN, Severity.CRITICAL, "Dead-man's switch FAILED: position may still be open",
                         now_ns, f"{result.detail}; retrying every watchdog interval. Close it at the broker now.",
                         fields)]
