"""ProjectX Gateway broker adapter (TopstepX and the other ProjectX firms): :class:`LiveBroker` over REST + SignalR.

How a bracket trades here (the paper broker's shape, so the manager cannot tell them apart):

* The **entry** goes out as one ``/api/Order/place`` (market, limit or stop) with our client order id in
  ``customTag``. Success is an :class:`Ack`, ``success: false`` a :class:`Reject` carrying the Gateway's
  ``errorCode``/``errorMessage``. A placement that timed out or got a 5xx is **never re-sent**: the order is
  searched for by its tag (``/api/Order/searchOpen`` and ``/api/Order/search``) until it turns up or the
  manager's status query settles it as unknown.
* **Stop and target are our own OCO** (the default): held here until the entry fills, then placed as a stop
  (type 4) and a limit (type 1) for the filled quantity at the model's exact prices; a partial fill resizes
  them, a fill of one resizes or cancels the other, a flat bracket cancels what is left. Children are not
  acknowledged as events (the paper broker does not either); their fills, cancels and rejects are.
* **Events** come from the user hub (``GatewayUserOrder``/``GatewayUserTrade``/``GatewayUserPosition``/
  ``GatewayUserAccount``) and, after every (re)connect, from a REST resynchronisation of open orders, the
  session's orders, trades and positions, so nothing that happened while the socket was down is missed.
  Fills are de-duplicated by the Gateway's trade id; order states by their ``updateTimestamp`` (an older update
  arriving late is dropped); a trade for an order not yet mapped to its tag waits until the order is known.
* Requests from the manager are synchronous and never block: they queue a job the adapter's worker runs in
  order on the loop; answers are appended to the event list and ``set_wakeup``'s callback pumps the manager.

Orders whose ``customTag`` is not one of our client order ids are **foreign** (placed by hand or another tool):
they are reported by :meth:`query_orders` under ``px:<orderId>`` and fail the preflight, never touched.

Size: one adapter class for one venue: REST requests, the user hub's events, our own OCO and the lost-
acknowledgement search all act on the same per-order state under one worker; the transports are already apart
(feeds/projectx_rest.py, feeds/signalr.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, root_of, spec_for
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Severity
from tradebot.core.types import MarketEvent, Side
from tradebot.execution.brokers import (
    BrokerAlert,
    BrokerAuthError,
    BrokerUnavailableError,
    PreflightCheck,
)
from tradebot.execution.journal import JournalEntry, ModifyRequested, SignalDecided
from tradebot.execution.model import (
    TERMINAL_LEG,
    Ack,
    BracketRequest,
    BrokerEvent,
    Cancelled,
    Fill,
    FlattenRequest,
    LegRole,
    LegState,
    Modified,
    OrderType,
    OrderView,
    Reject,
    StatusReport,
    StopRequest,
    split_client_order_id,
)
from tradebot.feeds.projectx_rest import (
    ProjectXAuthError,
    ProjectXClient,
    ProjectXError,
    ProjectXRejectedError,
    ProjectXUnavailableError,
    PxOrderStatus,
    PxOrderType,
    PxPositionType,
    PxSide,
    choose_contract,
    decimal_of,
    fees_to_cents,
    parse_ts,
    price_to_ticks,
    px_code,
    root_for_contract,
    ticks_to_price,
)
from tradebot.feeds.signalr import HubConnection, HubError

log = get_logger("tradebot.execution.brokers.projectx")

_NS = 1_000_000_000
SESSION_LOOKBACK_NS = 24 * 3600 * _NS
"""How far back connect/resync looks for the session's orders and trades (the Gateway's trade search needs a
start time; a CME session is under 24 hours)."""

_PX_TYPE = {OrderType.MARKET: PxOrderType.MARKET, OrderType.LIMIT: PxOrderType.LIMIT,
            OrderType.STOP: PxOrderType.STOP}
_OUR_TYPE = {int(v): k for k, v in _PX_TYPE.items()}
_LOST_ACK_RETRIES = (0.5, 1.0, 2.0, 4.0)
"""Seconds between searches for an order whose placement answer was lost (then the manager's status query)."""


@dataclass(slots=True)
class _Leg:
    coid: str
    signal_id: str
    role: LegRole
    symbol: str
    side: Side
    order_type: OrderType
    quantity: int
    price: int | None
    state: LegState
    updated_ns: int
    filled: int = 0
    order_id: int | None = None
    reason: str = ""
    acked: bool = False
    broker_ts: int = 0
    """``updateTimestamp`` of the last order event applied (older ones arriving late are dropped)."""
    cancel_wanted: bool = False
    """Cancelled while its placement was in doubt: cancel it the moment it turns up."""
    announce: bool = False
    """Acknowledged as an event (entries, exits and re-placed stops; a bracket's own children are not, as in
    the paper broker)."""

    def view(self) -> OrderView:
        return OrderView(self.coid, self.symbol, self.side, self.order_type, self.quantity, self.filled,
                         self.price, self.state, self.updated_ns, self.reason)


@dataclass(slots=True)
class _Bracket:
    signal_id: str
    entry: _Leg
    stop: _Leg
    target: _Leg
    exit_filled: int = 0
    exits: list[_Leg] = field(default_factory=list)
    stops: list[_Leg] = field(default_factory=list)
    """Stand-alone stops re-placed for this bracket (:meth:`ProjectXBroker.place_stop`)."""
    native: bool = False
    """Stop and target are the Gateway's own bracket orders (``stopLossBracket``/``takeProfitBracket``): they are
    recognised when they appear, never placed by us."""

    @property
    def position(self) -> int:
        return self.entry.filled - self.exit_filled


@dataclass(slots=True)
class _Contract:
    root: str
    contract_id: str
    tick_size: Decimal
    name: str = ""


def _exit_side(side: Side) -> Side:
    return Side.SELL if side == Side.BUY else Side.BUY


def _px_side(side: Side) -> int:
    return int(PxSide.BID if side == Side.BUY else PxSide.ASK)


def _our_side(v: object) -> Side | None:
    if v == PxSide.BID:
        return Side.BUY
    if v == PxSide.ASK:
        return Side.SELL
    return None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class ProjectXBroker:
    """:class:`~tradebot.execution.brokers.LiveBroker` for the ProjectX Gateway (module docstring)."""

    name = "projectx"

    def __init__(self, client: ProjectXClient, *, user_hub_url: str, symbols: list[str],
                 account_id: int | None = None, ping_seconds: float = 15.0, server_timeout_seconds: float = 60.0,
                 backoff_initial_seconds: float = 0.5, backoff_max_seconds: float = 30.0,
                 native_brackets: bool = False, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.client = client
        self.user_hub_url = user_hub_url
        self.symbols = list(dict.fromkeys(symbols))
        self.wanted_account_id = account_id
        self.native_brackets = native_brackets
        self.now = clock_ns
        self.stats: Counter[str] = Counter()
        self.account: dict[str, Any] | None = None
        self.account_problem = ""
        self.contracts: dict[str, _Contract] = {}
        self.contract_problems: dict[str, str] = {}
        self._legs: dict[str, _Leg] = {}
        self._by_order_id: dict[int, _Leg] = {}
        self._brackets: dict[str, _Bracket] = {}
        self._foreign: dict[int, dict[str, Any]] = {}
        self._positions: dict[str, int] = {}
        self._fills: list[Fill] = []
        self._seen_trades: set[int] = set()
        self._pending_trades: dict[int, list[dict[str, Any]]] = {}
        self._events: deque[BrokerEvent] = deque()
        self._alerts: deque[BrokerAlert] = deque()
        self._wakeup: Callable[[], None] | None = None
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] | None = None
        self._backlog: list[Callable[[], Awaitable[None]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._running_job = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._logged_in = False
        self.hub = HubConnection(user_hub_url, self.client.token, self._on_hub_event, name="user",
                                 on_connected=self._on_hub_connected, on_disconnected=self._on_hub_disconnected,
                                 ping_seconds=ping_seconds, server_timeout_seconds=server_timeout_seconds,
                                 backoff_initial_seconds=backoff_initial_seconds,
                                 backoff_max_seconds=backoff_max_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProjectXBroker:
        key = settings.projectx_api_key.get_secret_value() if settings.projectx_api_key else ""
        if not settings.projectx_username or not key:
            raise BrokerAuthError("ProjectX needs PROJECTX_USERNAME and PROJECTX_API_KEY (the API key from your "
                                  "firm's dashboard)")
        px = settings.projectx
        client = ProjectXClient(settings.projectx_api_url, settings.projectx_username, key,
                                timeout_seconds=px.request_timeout_seconds, retries=px.retries,
                                backoff_initial_seconds=px.backoff_initial_seconds,
                                backoff_max_seconds=px.backoff_max_seconds,
                                token_refresh_seconds=px.token_refresh_seconds)
        symbols = list(settings.symbol_list)
        if settings.trading_symbol not in symbols:
            symbols.append(settings.trading_symbol)
        return cls(client, user_hub_url=settings.projectx_user_hub_url, symbols=symbols,
                   account_id=settings.projectx_account_id, ping_seconds=px.ping_seconds,
                   server_timeout_seconds=px.server_timeout_seconds,
                   backoff_initial_seconds=px.backoff_initial_seconds, backoff_max_seconds=px.backoff_max_seconds,
                   native_brackets=px.native_brackets)

    # ==============================================================================================
    # Life cycle

    @property
    def connected(self) -> bool:
        return self._logged_in and self.hub.connected

    @property
    def account_id(self) -> int:
        if self.account is None:
            raise BrokerUnavailableError("ProjectX: not connected (no account)")
        return int(self.account["id"])

    async def connect(self) -> None:
        try:
            await self.client.token(force=True)
            self._logged_in = True
            await self._find_account()
            for root in self.symbols:
                await self._resolve(root)
            if self.account is not None:
                await self._resync()
                await self.hub.start()
        except ProjectXAuthError as exc:
            raise BrokerAuthError(str(exc)) from None
        except (ProjectXUnavailableError, HubError, OSError, TimeoutError) as exc:
            raise BrokerUnavailableError(f"ProjectX: {exc}") from None
        except ProjectXRejectedError as exc:
            raise BrokerUnavailableError(f"ProjectX: {exc}") from None
        self._start_worker()

    async def close(self) -> None:
        await self.hub.stop()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.client.aclose()
        self._logged_in = False

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        self._wakeup = callback

    def preflight(self) -> list[PreflightCheck]:
        checks = [PreflightCheck("login", self._logged_in, f"user {self.client.username!r}" if self._logged_in
                                 else "not logged in")]
        if self.account is None:
            checks.append(PreflightCheck("account", False, self.account_problem or "no account"))
        else:
            can = bool(self.account.get("canTrade"))
            checks.append(PreflightCheck(
                "account", can, f"{self.account.get('name')} (id {self.account.get('id')})"
                + ("" if can else ": canTrade is false (account locked, failed or not yet active)")))
        for root in self.symbols:
            c = self.contracts.get(root)
            if c is None:
                checks.append(PreflightCheck(f"contract {root}", False, self.contract_problems.get(root, "not found")))
            else:
                checks.append(PreflightCheck(f"contract {root}", True, f"{c.contract_id} {c.name} tick {c.tick_size}"))
        # Orders and positions are reported, not judged: only the daemon knows its journal (reconciliation halts
        # on what it cannot explain; `tradebot adopt` takes a foreign position over).
        foreign = [o for o in self._foreign.values() if o.get("status") in (PxOrderStatus.OPEN, PxOrderStatus.PENDING)]
        ours = [lg for lg in self._legs.values() if lg.state in (LegState.WORKING, LegState.PARTIALLY_FILLED)]
        checks.append(PreflightCheck(
            "open orders", True, f"{len(ours)} tradebot working" + ("" if not foreign else
            "; foreign (not placed by tradebot): " + ", ".join(
                f"#{o.get('id')} {o.get('contractId')} size {o.get('size')}" for o in foreign))))
        unexplained = self._unexplained_positions()
        held = self.query_positions()
        checks.append(PreflightCheck(
            "positions", True, ("flat" if not held else ", ".join(f"{s} {q:+d}" for s, q in sorted(held.items())))
            + ("" if not unexplained else "; not from this session's tradebot fills: " + ", ".join(
                f"{s} {q:+d}" for s, q in sorted(unexplained.items())))))
        hub_ok = self.hub.connected
        checks.append(PreflightCheck("user hub", hub_ok, "connected" if hub_ok else
                                     f"not connected ({self.hub.last_error or 'never connected'})"))
        return checks

    def _unexplained_positions(self) -> dict[str, int]:
        ours: dict[str, int] = {}
        for f in self._fills:
            if split_client_order_id(f.client_order_id) is None:
                continue
            ours[f.symbol] = ours.get(f.symbol, 0) + (f.quantity if f.side == Side.BUY else -f.quantity)
        return {s: q for s, q in self._positions.items() if q and ours.get(s, 0) != q}

    async def _find_account(self) -> None:
        accounts = await self.client.accounts()
        if self.wanted_account_id is not None:
            found = [a for a in accounts if a.get("id") == self.wanted_account_id]
            if not found:
                self.account_problem = (f"account id {self.wanted_account_id} not among the active accounts "
                                        f"({', '.join(str(a.get('id')) for a in accounts) or 'none'})")
                return
            self.account = found[0]
            return
        tradable = [a for a in accounts if a.get("canTrade")]
        if len(tradable) == 1:
            self.account = tradable[0]
        elif not tradable:
            self.account_problem = "no active account can trade"
        else:
            self.account_problem = ("several accounts can trade; set PROJECTX_ACCOUNT_ID to one of "
                                    + ", ".join(f"{a.get('id')} ({a.get('name')})" for a in tradable))

    async def _resolve(self, root: str) -> _Contract | None:
        c = self.contracts.get(root)
        if c is not None:
            return c
        try:
            found = choose_contract(await self.client.contracts(px_code(root)), root)
        except ProjectXRejectedError as exc:
            self.contract_problems[root] = str(exc)
            return None
        if found is None:
            self.contract_problems[root] = f"no contract for symbol code {px_code(root)!r} in /api/Contract/search"
            return None
        tick = decimal_of(found.get("tickSize"))
        if tick is None or tick <= 0:
            self.contract_problems[root] = f"{found.get('id')}: bad tickSize {found.get('tickSize')!r}"
            return None
        try:
            ours = spec_for(root).tick_size
        except UnknownContractError:
            ours = tick
        if ours != tick:
            self.contract_problems[root] = f"{found.get('id')}: tick size {tick} differs from ours ({ours})"
            return None
        c = _Contract(root, str(found["id"]), tick, str(found.get("name") or ""))
        self.contracts[root] = c
        self.contract_problems.pop(root, None)
        return c

    def _contract_root(self, contract_id: object) -> _Contract | None:
        for c in self.contracts.values():
            if c.contract_id == contract_id:
                return c
        return None

    # ==============================================================================================
    # Broker interface (synchronous requests: queued for the worker)

    def submit_bracket(self, req: BracketRequest) -> None:
        if req.entry_id in self._legs:
            self._enqueue(lambda: self._status_job(req.entry_id))
            return
        ts = self.now()
        xs = _exit_side(req.side)
        entry = _Leg(req.entry_id, req.signal_id, LegRole.ENTRY, req.symbol, req.side, req.entry_type,
                     req.quantity, req.entry_price, LegState.PENDING, ts, announce=True)
        stop = _Leg(req.stop_id, req.signal_id, LegRole.STOP, req.symbol, xs, OrderType.STOP, 0, req.stop_price,
                    LegState.HELD, ts)
        target = _Leg(req.target_id, req.signal_id, LegRole.TARGET, req.symbol, xs, OrderType.LIMIT, 0,
                      req.target_price, LegState.HELD, ts)
        for leg in (entry, stop, target):
            self._legs[leg.coid] = leg
        # Native brackets only for a limit entry: it fills at its price, so the Gateway's "ticks from the fill"
        # land exactly on the model's stop and target (a market or stop entry fills elsewhere: our own OCO).
        native = self.native_brackets and req.entry_type == OrderType.LIMIT and req.entry_price is not None
        self._brackets[req.signal_id] = _Bracket(req.signal_id, entry, stop, target, native=native)
        self._enqueue(lambda: self._place(entry))

    def restore_bracket(self, req: BracketRequest) -> None:
        """Re-attach a bracket the journal says is open after a restart, so its OCO is managed again.

        Legs the Gateway knows (found by tag on connect) keep their state; a filled entry whose stop/target are
        not at the broker gets them placed (the no-naked-position rule)."""
        b = self._brackets.get(req.signal_id)
        if b is None:
            ts = self.now()
            xs = _exit_side(req.side)

            def leg(coid: str, role: LegRole, side: Side, ot: OrderType, qty: int, price: int | None,
                    state: LegState) -> _Leg:
                found = self._legs.get(coid)
                if found is not None:
                    found.signal_id, found.role = req.signal_id, role
                    if found.price is None:
                        found.price = price
                    return found
                new = _Leg(coid, req.signal_id, role, req.symbol, side, ot, qty, price, state, ts)
                self._legs[coid] = new
                return new

            entry = leg(req.entry_id, LegRole.ENTRY, req.side, req.entry_type, req.quantity, req.entry_price,
                        LegState.UNKNOWN)
            b = _Bracket(req.signal_id, entry,
                         leg(req.stop_id, LegRole.STOP, xs, OrderType.STOP, 0, req.stop_price, LegState.HELD),
                         leg(req.target_id, LegRole.TARGET, xs, OrderType.LIMIT, 0, req.target_price, LegState.HELD))
            mine = [lg for lg in self._legs.values() if lg.signal_id == req.signal_id]
            b.exits = [lg for lg in mine if lg.role == LegRole.EXIT]
            b.stops = [lg for lg in mine if lg.role == LegRole.STOP and lg.coid != req.stop_id]
            b.exit_filled = sum(lg.filled for lg in (*b.exits, *b.stops, b.stop, b.target))
            self._brackets[req.signal_id] = b
        bracket = b
        if b.position > 0:
            self._enqueue(lambda: self._sync_children(bracket))

    def restore(self, entries: Iterable[JournalEntry]) -> None:
        """After a restart (the manager's recovery calls this with the journal): re-attach the brackets whose
        entry the Gateway knows from this session, so their OCO is managed again (:meth:`restore_bracket`).
        The broker's own record stays the truth for orders, fills and positions."""
        reqs: dict[str, BracketRequest] = {}
        for rec in entries:
            ev = rec.event
            if isinstance(ev, SignalDecided) and ev.taken:
                reqs[ev.signal_id] = BracketRequest(
                    ev.signal_id, ev.traded_symbol, ev.side, ev.traded_qty, ev.entry_type, ev.entry_price,
                    ev.stop_price, ev.target_price, rec.ts_ns, ev.armed_ns)
            elif isinstance(ev, ModifyRequested):
                parsed = split_client_order_id(ev.client_order_id)
                old = reqs.get(parsed[0]) if parsed else None
                if old is not None and ev.client_order_id == old.stop_id:
                    reqs[old.signal_id] = dataclasses.replace(old, stop_price=ev.stop_price)
        for req in reqs.values():
            entry = self._legs.get(req.entry_id)
            if entry is not None and req.signal_id not in self._brackets:
                self.restore_bracket(req)

    def cancel(self, client_order_id: str) -> None:
        leg = self._legs.get(client_order_id)
        if leg is None:
            foreign = self._foreign_by_view_id(client_order_id)
            if foreign is not None:  # an explicit request (the operator, the dead-man's switch): by order id
                self._enqueue(lambda: self._cancel_foreign(foreign))
            return
        if leg.state in TERMINAL_LEG:
            return
        self._enqueue(lambda: self._cancel(leg, "requested"))

    def _foreign_by_view_id(self, view_id: str) -> int | None:
        if not view_id.startswith("px:"):
            return None
        oid = _int(int(view_id[3:])) if view_id[3:].isdigit() else None
        return oid if oid is not None and oid in self._foreign else None

    async def _cancel_foreign(self, oid: int) -> None:
        try:
            data = await self.client.cancel(self.account_id, oid)
        except ProjectXError as exc:
            self.stats["cancel_failed"] += 1
            log.error("projectx_cancel_failed", order_id=oid, error=str(exc))
            return
        if data.get("success"):
            o = self._foreign[oid]
            self._foreign[oid] = {**o, "status": int(PxOrderStatus.CANCELLED)}
        else:
            self.stats["cancel_refused"] += 1
            log.warning("projectx_cancel_refused", order_id=oid, message=data.get("errorMessage"))

    def modify_stop(self, client_order_id: str, stop_price: int) -> None:
        leg = self._legs.get(client_order_id)
        if leg is None or leg.state in TERMINAL_LEG or leg.role != LegRole.STOP:
            return
        self._enqueue(lambda: self._modify(leg, stop_price))

    def flatten(self, req: FlattenRequest) -> None:
        cancel_legs = [lg for coid in req.cancel_ids if (lg := self._legs.get(coid)) is not None]
        cancel_foreign = [oid for coid in req.cancel_ids if (oid := self._foreign_by_view_id(coid)) is not None]
        exit_leg: _Leg | None = None
        if req.quantity > 0 and req.exit_id not in self._legs:
            exit_leg = _Leg(req.exit_id, req.signal_id, LegRole.EXIT, req.symbol, req.side, OrderType.MARKET,
                            req.quantity, None, LegState.PENDING, self.now(), announce=True)
            self._legs[exit_leg.coid] = exit_leg
            b = self._brackets.get(req.signal_id)
            if b is not None:
                b.exits.append(exit_leg)

        async def job() -> None:
            for lg in cancel_legs:
                if lg.state not in TERMINAL_LEG:
                    await self._cancel(lg, req.reason)
            for oid in cancel_foreign:
                await self._cancel_foreign(oid)
            if exit_leg is not None:
                await self._place(exit_leg)

        self._enqueue(job)

    def place_stop(self, req: StopRequest) -> None:
        if req.stop_id in self._legs:
            self._enqueue(lambda: self._status_job(req.stop_id))
            return
        leg = _Leg(req.stop_id, req.signal_id, LegRole.STOP, req.symbol, req.side, OrderType.STOP, req.quantity,
                   req.stop_price, LegState.PENDING, self.now(), announce=True)
        self._legs[leg.coid] = leg
        if req.quantity <= 0:  # (no bracket of ours is fine: an adopted position's stop)
            self._reject(leg, "no open position to protect")
            return
        b = self._brackets.get(req.signal_id)
        if b is not None:
            b.stops.append(leg)
        self._enqueue(lambda: self._place(leg))

    def request_status(self, client_order_id: str) -> None:
        self._enqueue(lambda: self._status_job(client_order_id))

    def query_orders(self) -> list[OrderView]:
        views = [leg.view() for leg in self._legs.values()]
        for o in self._foreign.values():
            v = self._foreign_view(o)
            if v is not None:
                views.append(v)
        return views

    def query_positions(self) -> dict[str, int]:
        return {s: q for s, q in self._positions.items() if q}

    def query_fills(self) -> list[Fill]:
        return list(self._fills)

    def poll_events(self) -> list[BrokerEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    def poll_alerts(self) -> list[BrokerAlert]:
        """What the operator must hear beyond connected/disconnected (the daemon turns each into a notification):
        the account locked by the firm, a placement answer lost and not found, a stop the Gateway would not move,
        fills recovered after a reconnect."""
        out = list(self._alerts)
        self._alerts.clear()
        return out

    def _alert(self, severity: Severity, title: str, detail: str) -> None:
        self._alerts.append(BrokerAlert(severity, title, detail, self.now()))
        (log.error if severity == Severity.CRITICAL else log.warning)("projectx_alert", title=title,
                                                                        detail=detail[:300])
        if self._wakeup is not None:
            self._wakeup()

    def on_market_event(self, ev: MarketEvent) -> None:
        """The Gateway fills orders itself; market data is not needed here."""

    def stats_snapshot(self) -> dict[str, int]:
        """Every counter of the adapter, its REST client and its user hub (the daemon's heartbeat shows them:
        duplicates dropped, stale states, lost acks, retries, reconnects are visible in ``tradebot status``)."""
        out = {k: int(v) for k, v in self.stats.items()}
        out.update({f"rest_{k}": int(v) for k, v in self.client.stats.items()})
        out.update({f"hub_{k}": int(v) for k, v in self.hub.stats.items()})
        return out

    # ==============================================================================================
    # Worker

    def _enqueue(self, job: Callable[[], Awaitable[None]]) -> None:
        if self._jobs is None:
            self._backlog.append(job)
        else:
            self._jobs.put_nowait(job)

    def _start_worker(self) -> None:
        if self._worker is not None:
            return
        self._jobs = asyncio.Queue()
        for job in self._backlog:
            self._jobs.put_nowait(job)
        self._backlog.clear()
        self._worker = asyncio.create_task(self._work(), name="projectx-worker")

    async def _work(self) -> None:
        assert self._jobs is not None
        while True:
            job = await self._jobs.get()
            self._running_job = True
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failed request must not stop the others: logged, counted
                self.stats["job_error"] += 1
                log.exception("projectx_job_failed", error=str(exc))
            finally:
                self._running_job = False

    async def drain(self, wait_seconds: float = 10.0) -> bool:
        """Wait until every queued request has been sent and answered (tests; a clean shutdown)."""
        deadline = time.monotonic() + wait_seconds
        while self._jobs is not None and (not self._jobs.empty() or self._running_job):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["task_error"] += 1
                log.exception("projectx_task_failed", error=str(exc))

        t = asyncio.create_task(run())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _emit(self, ev: BrokerEvent) -> None:
        self._events.append(ev)
        if self._wakeup is not None:
            self._wakeup()

    # ==============================================================================================
    # Requests on the wire

    async def _place(self, leg: _Leg) -> None:
        if leg.state in TERMINAL_LEG or leg.order_id is not None:
            return
        c = await self._resolve(leg.symbol)
        if c is None:
            self._reject(leg, f"contract {leg.symbol} not resolved: {self.contract_problems.get(leg.symbol, '?')}")
            return
        body: dict[str, Any] = {
            "accountId": self.account_id, "contractId": c.contract_id, "type": int(_PX_TYPE[leg.order_type]),
            "side": _px_side(leg.side), "size": leg.quantity, "limitPrice": None, "stopPrice": None,
            "trailPrice": None, "customTag": leg.coid, "linkedOrderId": None}
        if leg.order_type == OrderType.LIMIT and leg.price is not None:
            body["limitPrice"] = ticks_to_price(leg.price, c.tick_size)
        elif leg.order_type == OrderType.STOP and leg.price is not None:
            body["stopPrice"] = ticks_to_price(leg.price, c.tick_size)
        b = self._brackets.get(leg.signal_id)
        if b is not None and b.native and leg is b.entry and leg.price is not None:
            body["stopLossBracket"] = {"ticks": abs(leg.price - (b.stop.price or leg.price)),
                                       "type": int(PxOrderType.STOP)}
            body["takeProfitBracket"] = {"ticks": abs((b.target.price or leg.price) - leg.price),
                                         "type": int(PxOrderType.LIMIT)}
        leg.state = LegState.PENDING
        try:
            data = await self.client.place(body)
        except (ProjectXUnavailableError, ProjectXAuthError) as exc:
            # The order may or may not exist: never re-send; find it by its tag.
            self.stats["lost_ack"] += 1
            log.warning("projectx_place_in_doubt", client_order_id=leg.coid, error=str(exc))
            self._spawn(self._find_lost(leg))
            return
        except ProjectXRejectedError as exc:
            self._reject(leg, f"HTTP {exc.code}")
            return
        if not data.get("success"):
            self.stats["rejects"] += 1
            self._reject(leg, f"broker error {data.get('errorCode')}: {data.get('errorMessage') or 'rejected'}")
            return
        oid = _int(data.get("orderId"))
        if oid is None:
            self.stats["lost_ack"] += 1
            self._spawn(self._find_lost(leg))
            return
        self._map(leg, oid)
        if leg.state == LegState.PENDING:
            leg.state = LegState.WORKING
            leg.updated_ns = self.now()
        self._ack(leg, self.now())
        self._flush_trades(oid)

    async def _find_lost(self, leg: _Leg) -> None:
        for delay in _LOST_ACK_RETRIES:
            await asyncio.sleep(delay)
            if leg.order_id is not None:
                return  # the user hub told us meanwhile
            with contextlib.suppress(ProjectXError):
                if await self._search_tag(leg.coid) is not None:
                    return
        self._alert(Severity.WARNING, f"ProjectX: order {leg.coid} not found after a lost answer",
                    "the placement answer was lost and the Gateway shows no order with this tag; it was not sent "
                    "again (the manager's status query settles it)")

    async def _search_tag(self, coid: str) -> dict[str, Any] | None:
        """Find our order by ``customTag`` (open orders first, then the session's), applying what is found."""
        acct = self.account_id
        for o in await self.client.open_orders(acct):
            if o.get("customTag") == coid:
                self._apply_order(o)
                return o
        for o in await self.client.orders(acct, self._lookback()):
            if o.get("customTag") == coid:
                self._apply_order(o)
                await self._fetch_trades()
                return o
        return None

    async def _cancel(self, leg: _Leg, reason: str) -> None:
        if leg.state in TERMINAL_LEG:
            return
        if leg.state == LegState.HELD:
            self._terminate(leg, LegState.CANCELLED, self.now(), reason)
            self._emit(Cancelled(leg.coid, leg.updated_ns, reason))
            self._after_entry_cancel(leg)
            return
        if leg.order_id is None:
            with contextlib.suppress(ProjectXError):
                await self._search_tag(leg.coid)
            if leg.order_id is None:
                # Not at the broker (as far as it says now): remember to cancel it if it ever turns up.
                leg.cancel_wanted = True
                self._terminate(leg, LegState.CANCELLED, self.now(), reason)
                self._emit(Cancelled(leg.coid, leg.updated_ns, reason))
                self._after_entry_cancel(leg)
                return
            if leg.state in TERMINAL_LEG:
                return
        assert leg.order_id is not None
        try:
            data = await self.client.cancel(self.account_id, leg.order_id)
        except ProjectXError as exc:
            self.stats["cancel_failed"] += 1
            log.error("projectx_cancel_failed", client_order_id=leg.coid, error=str(exc))
            return
        if data.get("success"):
            if leg.state not in TERMINAL_LEG:
                self._terminate(leg, LegState.CANCELLED, self.now(), reason)
                self._emit(Cancelled(leg.coid, leg.updated_ns, reason))
                self._after_entry_cancel(leg)
        else:
            # Typically already filled or cancelled: the broker's record decides.
            self.stats["cancel_refused"] += 1
            log.warning("projectx_cancel_refused", client_order_id=leg.coid, error_code=data.get("errorCode"),
                        message=data.get("errorMessage"))
            with contextlib.suppress(ProjectXError):
                await self._search_tag(leg.coid)

    async def _modify(self, leg: _Leg, stop_price: int) -> None:
        if leg.state in TERMINAL_LEG:
            return
        if leg.state == LegState.HELD or leg.order_id is None:
            leg.price = stop_price
            leg.updated_ns = self.now()
            self._emit(Modified(leg.coid, leg.updated_ns, stop_price))
            return
        c = await self._resolve(leg.symbol)
        if c is None:
            return
        body = {"accountId": self.account_id, "orderId": leg.order_id, "size": None, "limitPrice": None,
                "stopPrice": ticks_to_price(stop_price, c.tick_size), "trailPrice": None}
        try:
            data = await self.client.modify(body)
        except ProjectXError as exc:
            self.stats["modify_failed"] += 1
            log.error("projectx_modify_failed", client_order_id=leg.coid, error=str(exc))
            return
        if data.get("success"):
            leg.price = stop_price
            leg.updated_ns = self.now()
            self._emit(Modified(leg.coid, leg.updated_ns, stop_price))
        else:
            self.stats["modify_refused"] += 1
            self._alert(Severity.WARNING, f"ProjectX refused to move stop {leg.coid}",
                        f"error {data.get('errorCode')}: {data.get('errorMessage') or 'refused'}; the stop stays at "
                        "its previous price")

    async def _resize(self, leg: _Leg, size: int) -> None:
        if leg.order_id is None or leg.state in TERMINAL_LEG or size == leg.quantity:
            return
        body = {"accountId": self.account_id, "orderId": leg.order_id, "size": size - leg.filled,
                "limitPrice": None, "stopPrice": None, "trailPrice": None}
        try:
            data = await self.client.modify(body)
        except ProjectXError as exc:
            self.stats["resize_failed"] += 1
            log.error("projectx_resize_failed", client_order_id=leg.coid, error=str(exc))
            return
        if data.get("success"):
            leg.quantity = size
        else:
            self.stats["resize_refused"] += 1
            log.error("projectx_resize_refused", client_order_id=leg.coid, message=data.get("errorMessage"))

    async def _status_job(self, coid: str) -> None:
        leg = self._legs.get(coid)
        if leg is not None and leg.state in (LegState.HELD, *TERMINAL_LEG):
            self._emit(StatusReport(coid, self.now(), leg.state, leg.filled))
            return
        try:
            found = await self._search_tag(coid)
        except ProjectXError as exc:
            log.warning("projectx_status_failed", client_order_id=coid, error=str(exc))
            return  # no answer: the manager asks again after its timeout
        if found is None:
            if leg is not None and leg.order_id is None and leg.state in (LegState.PENDING, LegState.UNKNOWN):
                leg.state = LegState.UNKNOWN
            self._emit(StatusReport(coid, self.now(), None, 0))
            return
        leg = self._legs.get(coid)
        state = leg.state if leg is not None else _status_state(found)
        self._emit(StatusReport(coid, self.now(), state, leg.filled if leg else _int(found.get("fillVolume")) or 0))

    # ==============================================================================================
    # Bracket logic (our own OCO)

    async def _sync_children(self, b: _Bracket) -> None:
        pos = b.position
        replaced = any(lg.state not in TERMINAL_LEG for lg in b.stops)
        for child in (b.stop, b.target):
            if child.state in TERMINAL_LEG:
                continue
            if child is b.stop and replaced and child.order_id is None:
                # A re-placed stop (-S2...) protects the position: the original, never sent, is superseded (two
                # stops for one position could both fill).
                self._terminate(child, LegState.CANCELLED, self.now(), "superseded by a re-placed stop")
                continue
            want = child.filled + max(pos, 0)
            if child.state == LegState.HELD or (child.order_id is None and child.state == LegState.UNKNOWN):
                if pos <= 0 or b.entry.filled == 0 or b.native:
                    continue  # (native: the Gateway places them; the no-naked-position rule watches that it does)
                child.quantity = want
                child.state = LegState.PENDING
                await self._place(child)
            elif want != child.quantity and want > child.filled and not b.native:
                await self._resize(child, want)
        if pos <= 0 and b.entry.state in TERMINAL_LEG and b.entry.filled > 0:
            for child in (b.stop, b.target, *b.stops):
                if child.state == LegState.HELD:  # never sent: closed quietly, as the paper broker does
                    self._terminate(child, LegState.CANCELLED, self.now(), "oco")
                elif child.state not in TERMINAL_LEG:
                    await self._cancel(child, "oco")

    def _after_fill(self, leg: _Leg, qty: int) -> None:
        b = self._brackets.get(leg.signal_id)
        if b is None:
            return
        if leg.role != LegRole.ENTRY:
            b.exit_filled += qty
        bracket = b
        self._enqueue(lambda: self._sync_children(bracket))

    def _after_entry_cancel(self, leg: _Leg) -> None:
        b = self._brackets.get(leg.signal_id)
        if b is None or leg.role != LegRole.ENTRY or b.position != 0:
            return
        reason = "entry cancelled, flat" if leg.filled else ""
        for child in (b.stop, b.target):
            if child.state == LegState.HELD:
                self._terminate(child, LegState.CANCELLED, leg.updated_ns, reason)
                if child.filled:
                    self._emit(Cancelled(child.coid, leg.updated_ns, reason))
            elif child.state not in TERMINAL_LEG:
                self._enqueue(lambda c=child: self._cancel(c, reason or "entry cancelled"))  # type: ignore[misc]

    # ==============================================================================================
    # Events from the Gateway (user hub and REST resync share these)

    def _on_hub_event(self, target: str, args: list[Any]) -> None:
        payload = args[0] if args else None
        if isinstance(payload, dict) and "data" in payload and isinstance(payload.get("data"), dict):
            payload = payload["data"]  # some deployments wrap events as {"action": n, "data": {...}}
        if not isinstance(payload, dict):
            self.stats["bad_hub_event"] += 1
            return
        if target == "GatewayUserOrder":
            self._apply_order(payload)
        elif target == "GatewayUserTrade":
            self._apply_trade(payload)
        elif target == "GatewayUserPosition":
            self._apply_position(payload)
        elif target == "GatewayUserAccount":
            if self.account is not None and payload.get("id") == self.account.get("id"):
                was = bool(self.account.get("canTrade"))
                self.account = {**self.account, **payload}
                now = bool(self.account.get("canTrade"))
                if was and not now:
                    self.stats["account_locked"] += 1
                    self._alert(Severity.CRITICAL, f"ProjectX account {self.account.get('name')} cannot trade",
                                "the firm disabled trading on it (a loss limit, the flat-by time, an ended "
                                "evaluation): new orders will be refused; check the firm's dashboard")
                elif now and not was:
                    self._alert(Severity.SUCCESS, f"ProjectX account {self.account.get('name')} can trade again", "")
        else:
            self.stats["unknown_hub_event"] += 1

    async def _on_hub_connected(self, reconnect: bool) -> None:
        acct = self.account_id
        await self.hub.invoke("SubscribeAccounts")
        await self.hub.invoke("SubscribeOrders", acct)
        await self.hub.invoke("SubscribePositions", acct)
        await self.hub.invoke("SubscribeTrades", acct)
        if reconnect:
            self.stats["reconnects"] += 1
            log.info("projectx_user_hub_reconnected")
            before = len(self._fills)
            await self._resync()
            if len(self._fills) > before:
                self._alert(Severity.INFO, f"ProjectX: {len(self._fills) - before} fill(s) recovered after a "
                            "reconnect", "found in the Gateway's trade history; journaled from it")
            if self._wakeup is not None:
                self._wakeup()

    def _on_hub_disconnected(self, reason: str) -> None:
        self.stats["hub_disconnects"] += 1

    async def _resync(self) -> None:
        """Everything the push stream may have missed: orders (open and the session's), trades, positions."""
        acct = self.account_id
        orders = await self.client.orders(acct, self._lookback())
        open_orders = await self.client.open_orders(acct)
        held = await self.client.open_positions(acct)
        # Contracts our own orders or the positions use that were not resolved yet (an MES order placed on an ES
        # signal before a restart): resolve them first, so they are recognised as ours, not foreign.
        for cid in {str(x.get("contractId")) for x in (*orders, *open_orders, *held)}:
            root = root_for_contract(cid)
            if root is not None and self._contract_root(cid) is None and root_of(root) is not None:
                with contextlib.suppress(ProjectXError):
                    await self._resolve(root_of(root) or root)
        for o in orders:
            self._apply_order(o)
        for o in open_orders:
            self._apply_order(o)
        await self._fetch_trades()
        positions: dict[str, int] = {}
        for p in held:
            root, signed = self._position_of(p)
            if root is not None and signed:
                positions[root] = positions.get(root, 0) + signed
        self._positions = positions
        for b in list(self._brackets.values()):
            self._enqueue(lambda b=b: self._sync_children(b))  # type: ignore[misc]

    async def _fetch_trades(self) -> None:
        for t in sorted(await self.client.trades(self.account_id, self._lookback()),
                        key=lambda t: (parse_ts(t.get("creationTimestamp")) or 0, _int(t.get("id")) or 0)):
            self._apply_trade(t)

    def _lookback(self) -> int:
        """Start of the searches for the session's orders and trades: a rolling window (a daemon that runs for
        weeks does not re-read weeks of history on every reconnect)."""
        return self.now() - SESSION_LOOKBACK_NS

    def _map(self, leg: _Leg, oid: int) -> None:
        if leg.order_id is None:
            leg.order_id = oid
            self._by_order_id[oid] = leg

    def _ack(self, leg: _Leg, ts: int) -> None:
        if leg.acked:
            return
        leg.acked = True
        if leg.announce:
            self._emit(Ack(leg.coid, ts))

    def _reject(self, leg: _Leg, reason: str) -> None:
        if leg.state in TERMINAL_LEG:
            return
        ts = self.now()
        self._terminate(leg, LegState.REJECTED, ts, reason)
        self._emit(Reject(leg.coid, ts, reason))
        b = self._brackets.get(leg.signal_id)
        if b is not None and leg.role == LegRole.ENTRY:
            for child in (b.stop, b.target):
                if child.state == LegState.HELD:
                    self._terminate(child, LegState.REJECTED, ts, reason)

    def _terminate(self, leg: _Leg, state: LegState, ts: int, reason: str = "") -> None:
        leg.state = state
        leg.updated_ns = ts
        leg.reason = reason or leg.reason

    def _apply_order(self, o: dict[str, Any]) -> None:
        oid = _int(o.get("id"))
        if oid is None:
            self.stats["bad_order_event"] += 1
            return
        leg = self._by_order_id.get(oid)
        tag = o.get("customTag")
        if leg is None and isinstance(tag, str):
            leg = self._legs.get(tag)
            if leg is None and split_client_order_id(tag) is not None and tag not in self._legs:
                leg = self._adopt(o, tag)
        if leg is None:
            leg = self._native_child(o)
        if leg is None:
            self._foreign[oid] = o
            self._flush_trades(oid)  # its fills that came first: recorded as foreign fills now
            return
        if leg.order_id is None:
            self._map(leg, oid)
        elif leg.order_id != oid:
            self.stats["tag_reused"] += 1
            log.error("projectx_tag_on_two_orders", client_order_id=leg.coid, order_ids=[leg.order_id, oid])
            return
        ts = parse_ts(o.get("updateTimestamp")) or parse_ts(o.get("creationTimestamp")) or self.now()
        if ts < leg.broker_ts:
            self.stats["stale_order_event"] += 1
            return
        leg.broker_ts = ts
        if leg.cancel_wanted and o.get("status") in (PxOrderStatus.OPEN, PxOrderStatus.PENDING):
            leg.cancel_wanted = False
            c = leg
            self._enqueue(lambda: self._cancel_at_broker(c))
        status = o.get("status")
        if status in (PxOrderStatus.OPEN, PxOrderStatus.PENDING, PxOrderStatus.FILLED):
            if leg.state in (LegState.PENDING, LegState.UNKNOWN):
                leg.state = LegState.WORKING if leg.filled == 0 else LegState.PARTIALLY_FILLED
                leg.updated_ns = ts
            self._ack(leg, ts)
        elif status in (PxOrderStatus.CANCELLED, PxOrderStatus.EXPIRED):
            if leg.state not in TERMINAL_LEG:
                reason = "expired" if status == PxOrderStatus.EXPIRED else leg.reason or "cancelled at broker"
                self._terminate(leg, LegState.CANCELLED, ts, reason)
                self._emit(Cancelled(leg.coid, ts, reason))
                self._after_entry_cancel(leg)
        elif status == PxOrderStatus.REJECTED and leg.state not in TERMINAL_LEG:
            self._reject(leg, "rejected by broker")
        self._flush_trades(oid)

    def _native_child(self, o: dict[str, Any]) -> _Leg | None:
        """The held stop or target of a native bracket, when ``o`` is the order the Gateway placed for it: same
        contract, the exit side, the child's type, at the model's price (ticks from the entry's limit)."""
        c = self._contract_root(o.get("contractId"))
        side, ot = _our_side(o.get("side")), _OUR_TYPE.get(_int(o.get("type")) or 0)
        if c is None or side is None or ot not in (OrderType.STOP, OrderType.LIMIT):
            return None
        price = price_to_ticks(o.get("stopPrice") if ot == OrderType.STOP else o.get("limitPrice"), c.tick_size)
        for b in self._brackets.values():
            if not b.native or b.entry.filled == 0 or b.entry.symbol != c.root:
                continue
            child = b.stop if ot == OrderType.STOP else b.target
            if child.state == LegState.HELD and child.side == side and child.price == price:
                child.quantity = _int(o.get("size")) or b.position
                child.state = LegState.WORKING
                child.acked = True
                self.stats["native_children"] += 1
                return child
        return None

    async def _cancel_at_broker(self, leg: _Leg) -> None:
        if leg.order_id is not None:
            with contextlib.suppress(ProjectXError):
                await self.client.cancel(self.account_id, leg.order_id)

    def _adopt(self, o: dict[str, Any], tag: str) -> _Leg | None:
        """One of our orders the Gateway knows but this process does not (placed before a restart)."""
        parsed = split_client_order_id(tag)
        c = self._contract_root(o.get("contractId"))
        side = _our_side(o.get("side"))
        ot = _OUR_TYPE.get(_int(o.get("type")) or 0)
        if parsed is None or c is None or side is None or ot is None:
            return None
        sid, role = parsed
        price = o.get("stopPrice") if ot == OrderType.STOP else o.get("limitPrice")
        leg = _Leg(tag, sid, role, c.root, side, ot, _int(o.get("size")) or 0,
                   price_to_ticks(price, c.tick_size) if price is not None else None, _status_state(o),
                   parse_ts(o.get("updateTimestamp")) or parse_ts(o.get("creationTimestamp")) or self.now(),
                   acked=True)
        self._legs[tag] = leg
        self.stats["adopted_orders"] += 1
        return leg

    def _flush_trades(self, oid: int) -> None:
        for t in self._pending_trades.pop(oid, []):
            self._apply_trade(t)

    def _apply_trade(self, t: dict[str, Any]) -> None:
        tid, oid = _int(t.get("id")), _int(t.get("orderId"))
        if tid is None or oid is None:
            self.stats["bad_trade_event"] += 1
            return
        if tid in self._seen_trades:
            self.stats["duplicate_trade"] += 1
            return
        if t.get("voided"):
            self.stats["voided_trade"] += 1
            return
        leg = self._by_order_id.get(oid)
        if leg is None:
            foreign = self._foreign.get(oid)
            if foreign is None:
                # The order event has not arrived yet (out of order): keep it until the order is known.
                self._pending_trades.setdefault(oid, []).append(t)
                return
            self._record_foreign_fill(t, foreign)
            return
        c = self._contracts_for(leg.symbol)
        side = _our_side(t.get("side"))
        size = _int(t.get("size"))
        price = price_to_ticks(t.get("price"), c.tick_size) if c else None
        if side is None or size is None or size <= 0 or price is None:
            self.stats["bad_trade_event"] += 1
            log.error("projectx_bad_trade", trade=str(t)[:300])
            return
        self._seen_trades.add(tid)
        ts = parse_ts(t.get("creationTimestamp")) or self.now()
        if not leg.acked:
            self._ack(leg, ts)
        fill = Fill(str(tid), leg.coid, leg.symbol, side, size, price, ts, fees_to_cents(t.get("fees")))
        self._fills.append(fill)
        leg.filled += size
        leg.updated_ns = ts
        if leg.filled >= leg.quantity > 0:
            leg.state = LegState.FILLED
        elif leg.state not in TERMINAL_LEG:
            leg.state = LegState.PARTIALLY_FILLED
        self._emit(fill)
        self._after_fill(leg, size)

    def _contracts_for(self, root: str) -> _Contract | None:
        return self.contracts.get(root)

    def _record_foreign_fill(self, t: dict[str, Any], order: dict[str, Any]) -> None:
        tid = _int(t.get("id"))
        c = self._contract_root(t.get("contractId") or order.get("contractId"))
        side, size = _our_side(t.get("side")), _int(t.get("size"))
        price = price_to_ticks(t.get("price"), c.tick_size) if c else None
        if tid is None or c is None or side is None or size is None or price is None:
            self.stats["foreign_trade_unreadable"] += 1
            return
        self._seen_trades.add(tid)
        self.stats["foreign_fills"] += 1
        self._fills.append(Fill(str(tid), f"px:{order.get('id')}", c.root, side, size, price,
                                parse_ts(t.get("creationTimestamp")) or self.now(), fees_to_cents(t.get("fees"))))

    def _position_of(self, p: dict[str, Any]) -> tuple[str | None, int]:
        c = self._contract_root(p.get("contractId"))
        size = _int(p.get("size")) or 0
        ptype = p.get("type")
        signed = size if ptype == PxPositionType.LONG else -size if ptype == PxPositionType.SHORT else 0
        if c is None:
            cid = p.get("contractId")
            return (f"px:{cid}" if isinstance(cid, str) else None), signed
        return c.root, signed

    def _apply_position(self, p: dict[str, Any]) -> None:
        root, signed = self._position_of(p)
        if root is None:
            self.stats["bad_position_event"] += 1
            return
        if signed:
            self._positions[root] = signed
        else:
            self._positions.pop(root, None)

    def _foreign_view(self, o: dict[str, Any]) -> OrderView | None:
        c = self._contract_root(o.get("contractId"))
        side = _our_side(o.get("side"))
        ot = _OUR_TYPE.get(_int(o.get("type")) or 0, OrderType.MARKET)
        if side is None:
            return None
        symbol = c.root if c else str(o.get("contractId"))
        price_raw = o.get("stopPrice") if ot == OrderType.STOP else o.get("limitPrice")
        price = price_to_ticks(price_raw, c.tick_size) if c and price_raw is not None else None
        return OrderView(f"px:{o.get('id')}", symbol, side, ot, _int(o.get("size")) or 0,
                         _int(o.get("fillVolume")) or 0, price, _status_state(o),
                         parse_ts(o.get("updateTimestamp")) or parse_ts(o.get("creationTimestamp")) or 0,
                         "foreign order")


def _status_state(o: dict[str, Any]) -> LegState:
    status = o.get("status")
    filled = _int(o.get("fillVolume")) or 0
    if status == PxOrderStatus.OPEN:
        return LegState.PARTIALLY_FILLED if filled else LegState.WORKING
    if status == PxOrderStatus.FILLED:
        return LegState.FILLED
    if status in (PxOrderStatus.CANCELLED, PxOrderStatus.EXPIRED):
        return LegState.CANCELLED
    if status == PxOrderStatus.REJECTED:
        return LegState.REJECTED
    if status == PxOrderStatus.PENDING:
        return LegState.PENDING
    return LegState.UNKNOWN


__all__ = ["ProjectXBroker"]
