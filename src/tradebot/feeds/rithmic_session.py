"""The Rithmic R|Protocol session: async-rithmic (which has no type hints) behind a small typed surface.

The broker adapter (:mod:`tradebot.execution.brokers.rithmic`) and the market data feed
(:mod:`tradebot.feeds.rithmic_feed`) both talk to Rithmic through this one class, so the library's quirks are
handled in one place:

* **Trust.** The library trusts only the certificate it bundles (Rithmic's own CA). ``ca_file`` replaces that
  trust store (a test stand-in's CA, or a newer Rithmic certificate shipped before the library updates).
* **Orders are automated.** The client is built with ``OrderPlacement.AUTO``: Rithmic and the exchanges require
  algorithmic orders to say so (a ``MANUAL`` flag on a bot's order breaks CME Rule 536.B tagging).
* **What the library swallows.** A refused login, a ``Reject`` (template 75), a ``ForcedLogout`` (77) and a
  response whose ``rp_code`` is an error are only logged by the library (a refused login surfaces as an
  ``AttributeError`` on ``None``). A thin hook on each plant's response dispatch reports them to our callbacks
  before the library sees them; nothing of the protocol is re-implemented.
* **Logs.** The library logs to *stdout* (which carries the daemon's JSON lines) and its error messages quote
  the request, password included. Its logger is re-routed through structlog, whose processor redacts secrets.
* **Reconnection** is the library's (per plant: reconnect, log in again, re-subscribe market data, order and
  bracket updates); the session bounds it (``max_reconnects``) and reports each plant's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tradebot.core.logging import get_logger, register_secret

log = get_logger("tradebot.rithmic")

PLANTS = ("ticker", "order", "pnl", "history")
Message = Any
"""A protobuf message of async-rithmic's (typed by the library's generated classes, which carry no hints)."""

_TAGGED_RESPONSES = {313: "new order", 315: "modify", 317: "cancel", 331: "bracket order", 335: "stop level",
                     3505: "exit position"}


class RithmicAuthError(Exception):
    """Login refused or the system name is not offered by the gateway: retrying cannot fix it."""


class RithmicRequestError(Exception):
    """Rithmic answered a request with an error (an ``rp_code``, no front-month contract): an answer, not a fault."""


class RithmicDownError(Exception):
    """No connection, a timeout, or the gateway closed the socket: retry later (never re-send an order)."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    user: str
    password: str
    system_name: str
    url: str
    app_name: str = "tradebot"
    app_version: str = "1.0"
    ca_file: Path | None = None
    request_timeout_s: float = 10.0
    reconnect_interval_s: float = 2.0
    reconnect_max_delay_s: float = 30.0
    max_reconnects: int | None = None
    """Attempts per outage before the library gives up (``None``: forever)."""


@dataclass(frozen=True, slots=True)
class RpError:
    """An error answer: the template it came in, the request's ``user_tag`` or ``basket_id``, code and text."""

    plant: str
    template_id: int
    what: str
    user_tag: str
    basket_id: str
    code: str
    text: str


class _LogBridge(logging.Handler):
    """async-rithmic's stdlib logger into structlog (stderr/JSON as configured, secrets redacted)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                msg = f"{msg}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            level = record.levelname.lower()
            fn = getattr(log, level if level in ("debug", "info", "warning", "error", "critical") else "info")
            fn("async-rithmic", message=msg[:2000], source=record.name)
        except Exception:
            pass


def _route_library_logs() -> None:
    lib = logging.getLogger("rithmic")
    for h in list(lib.handlers):
        if not isinstance(h, _LogBridge):
            lib.removeHandler(h)
    if not any(isinstance(h, _LogBridge) for h in lib.handlers):
        lib.addHandler(_LogBridge())
    lib.propagate = False
    lib.setLevel(logging.INFO)  # DEBUG would print every request (the login's password included)


def ssl_context_for(ca_file: Path | None) -> ssl.SSLContext | None:
    """A client context trusting only ``ca_file`` (``None``: keep the library's bundled Rithmic certificate)."""
    if ca_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


class RithmicSession:
    """One ``RithmicClient`` with typed calls and callbacks; everything async runs on the caller's loop."""

    def __init__(self, cfg: SessionConfig) -> None:
        from async_rithmic import (  # type: ignore[import-untyped]
            OrderPlacement,
            ReconnectionSettings,
            RetrySettings,
            RithmicClient,
        )

        _route_library_logs()
        register_secret(cfg.password)
        self.cfg = cfg
        self.client: Any = RithmicClient(
            user=cfg.user, password=cfg.password, system_name=cfg.system_name, app_name=cfg.app_name,
            app_version=cfg.app_version, url=cfg.url, manual_or_auto=OrderPlacement.AUTO,
            reconnection_settings=ReconnectionSettings(
                max_retries=cfg.max_reconnects, backoff_type="linear", interval=cfg.reconnect_interval_s,
                max_delay=cfg.reconnect_max_delay_s, jitter_range=(0.0, min(1.0, cfg.reconnect_interval_s))),
            retry_settings=RetrySettings(max_retries=1, timeout=cfg.request_timeout_s, jitter_range=None),
        )
        ctx = ssl_context_for(cfg.ca_file)
        if ctx is not None:
            self.client.ssl_context = ctx
        self.login_refused: dict[str, str] = {}
        self.on_forced_logout: Callable[[str], None] = lambda plant: None
        self.on_reject: Callable[[str, list[str]], None] = lambda plant, codes: None
        self.on_rp_error: Callable[[RpError], None] = lambda err: None
        self.on_login_refused: Callable[[str, str], None] = lambda plant, text: None
        self.on_plant_connected: Callable[[str], None] = lambda plant: None
        for plant in self.client.plants.values():
            self._hook(plant)
        self.client.on_connected += self._connected

    # -- hooks ---------------------------------------------------------------------------------------

    async def _connected(self, plant_type: str) -> None:
        self.login_refused.pop(str(plant_type), None)
        self.on_plant_connected(str(plant_type))

    def _hook(self, plant: Any) -> None:
        original: Callable[[Message], Awaitable[Any]] = plant._process_response
        name = str(plant.plant_type)

        async def process(response: Message) -> Any:
            try:
                self._inspect(name, response)
            except Exception as exc:
                log.error("rithmic hook failed", plant=name, error=repr(exc)[:200])
            return await original(response)

        plant._process_response = process

    def _inspect(self, plant: str, r: Message) -> None:
        tid = int(r.template_id)
        if tid == 77:
            self.on_forced_logout(plant)
        elif tid == 75:
            self.on_reject(plant, [str(c) for c in r.rp_code])
        elif tid == 11 and len(r.rp_code) and r.rp_code[0] != "0":
            text = " ".join(str(c) for c in r.rp_code)
            self.login_refused[plant] = text
            self.on_login_refused(plant, text)
        elif tid in _TAGGED_RESPONSES and len(r.rp_code) and r.rp_code[0] not in ("0", "7"):
            codes = [str(c) for c in r.rp_code]
            self.on_rp_error(RpError(plant, tid, _TAGGED_RESPONSES[tid], str(getattr(r, "user_tag", "") or ""),
                                     str(getattr(r, "basket_id", "") or ""), codes[0], " ".join(codes[1:])))

    # -- connection ----------------------------------------------------------------------------------

    async def connect(self, plants: Sequence[str]) -> None:
        from async_rithmic import SysInfraType

        infra = {"ticker": SysInfraType.TICKER_PLANT, "order": SysInfraType.ORDER_PLANT,
                 "pnl": SysInfraType.PNL_PLANT, "history": SysInfraType.HISTORY_PLANT}
        try:
            await self.client.connect(plants=[infra[p] for p in plants], plant_connect_delay=0.0)
        except Exception as exc:
            await self._stop_quietly()
            refused = {p: t for p, t in self.login_refused.items() if p in plants}
            if refused:
                raise RithmicAuthError("; ".join(f"{p} plant login refused (rp_code {t})"
                                                 for p, t in refused.items())) from None
            text = str(exc)
            if "SYSTEM_NAME" in text:
                raise RithmicAuthError(f"system name {self.cfg.system_name!r} is not offered by the gateway: "
                                       f"{text.split(':', 1)[-1].strip()}") from None
            raise RithmicDownError(f"cannot connect to {self.cfg.url}: {type(exc).__name__}: {exc}"[:300]) from None

    async def _stop_tasks(self, plant: Any) -> None:
        """Cancel a plant's background tasks until they are really gone: the reconnect loop can swallow one
        cancellation (``asyncio.wait_for`` in Python 3.11 returns a result that completed at the same moment) and
        go on logging in."""
        for _ in range(50):
            tasks = [t for t in plant._bg_tasks if not t.done()]
            if not tasks:
                break
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=0.1)
        plant._bg_tasks.clear()

    async def _stop_quietly(self) -> None:
        for plant in self.client.plants.values():
            with contextlib.suppress(Exception):
                await self._stop_tasks(plant)
                if plant.ws is not None:
                    await plant.ws.close()

    async def close(self) -> None:
        """Stop every plant's background tasks (the library's ``disconnect`` skips a plant that is down, whose
        reconnect loop would otherwise keep logging in), then log out of the plants still connected."""
        for plant in self.client.plants.values():
            with contextlib.suppress(Exception):
                await self._stop_tasks(plant)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(timeout=2.0), 10)
        await self._stop_quietly()

    def plant_connected(self, plant: str) -> bool:
        return bool(self.client.plants[plant].is_connected)

    def plant_ready(self, plant: str) -> bool:
        """Connected and done logging in again: the order plant has re-subscribed to order and bracket updates
        (the library's ``on_connected`` fires before it does, so a resync then could miss notifications)."""
        p = self.client.plants[plant]
        return bool(p.is_connected) and bool(p._reconnected_event.is_set())

    def plant_gave_up(self, plant: str) -> bool:
        """The library's reconnect loop for ``plant`` ended without a connection (retries exhausted)."""
        p = self.client.plants[plant]
        tasks = [t for t in p._bg_tasks if t.get_name() == "reconnect_loop"]
        return bool(tasks) and all(t.done() for t in tasks) and not p.is_connected

    def kick(self, plant: str) -> None:
        """Make the library reconnect ``plant`` now (its socket is dead but it has not noticed yet)."""
        self.client.plants[plant]._disconnect_event.set()

    # -- account -------------------------------------------------------------------------------------

    @property
    def account_ids(self) -> list[str]:
        accounts = self.client.plants["order"].accounts or []
        return [str(a.account_id) for a in accounts]

    @property
    def exchanges(self) -> list[str]:
        routes = self.client.plants["order"].trade_routes or []
        return sorted({str(r.exchange) for r in routes})

    # -- requests (every one bounded by the request timeout; errors become our two exceptions) ----------

    async def _call(self, what: str, coro: Awaitable[Any], limit: float | None = None) -> Any:
        """``limit`` bounds the whole call: the library holds a send on a dead socket until it has reconnected
        (up to 60 s) and then sends it; an entry must rather not go out at all than go out that late."""
        try:
            if limit is not None:
                return await asyncio.wait_for(coro, limit)
            return await coro
        except TimeoutError:
            raise RithmicDownError(f"{what}: no answer within {self.cfg.request_timeout_s:g} s") from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise RithmicDownError(f"{what}: {type(exc).__name__}: {exc}"[:300]) from None
        except Exception as exc:
            if type(exc).__name__.startswith("ConnectionClosed"):
                raise RithmicDownError(f"{what}: connection closed") from None
            if type(exc).__name__ == "RithmicErrorResponse":
                raise RithmicRequestError(f"{what}: {exc}"[:300]) from None
            raise

    async def front_month(self, root: str, exchange: str) -> str:
        return str(await self._call("front month", self.client.get_front_month_contract(root, exchange)))

    async def reference_data(self, symbol: str, exchange: str) -> Message | None:
        return await self._call("reference data", self.client.get_reference_data(symbol, exchange))

    async def submit(self, *, user_tag: str, symbol: str, exchange: str, qty: int, buy: bool, price_type: str,
                     account_id: str, price: float | None = None, trigger_price: float | None = None,
                     stop_ticks: int | None = None, target_ticks: int | None = None) -> list[Message]:
        """A new order (312) or, with stop/target ticks, a bracket (330); ``user_tag`` carries our order id.

        A bracket (an entry) is bounded by the request timeout as a whole: never sent late after a reconnect.
        Exits and stops are not: late is better than never for them."""
        from async_rithmic import OrderType, TransactionType

        kw: dict[str, Any] = {"account_id": account_id}
        if price is not None:
            kw["price"] = price
        if trigger_price is not None:
            kw["trigger_price"] = trigger_price
        if stop_ticks is not None:
            kw["stop_ticks"] = stop_ticks
        if target_ticks is not None:
            kw["target_ticks"] = target_ticks
        otype = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP_MARKET}[price_type]
        side = TransactionType.BUY if buy else TransactionType.SELL
        limit = self.cfg.request_timeout_s + 1.0 if stop_ticks is not None else None
        out = await self._call("order", self.client.submit_order(user_tag, symbol, exchange, qty, side, otype, **kw),
                               limit)
        return list(out or [])

    async def cancel(self, basket_id: str, account_id: str) -> list[Message]:
        out = await self._call("cancel", self.client.cancel_order(basket_id=basket_id, account_id=account_id))
        return list(out or [])

    async def modify_stop(self, *, basket_id: str, account_id: str, symbol: str, exchange: str, qty: int,
                          trigger_price: float) -> list[Message]:
        from async_rithmic import OrderType

        order = SimpleNamespace(account_id=account_id, basket_id=basket_id, symbol=symbol, exchange=exchange,
                                quantity=qty, price_type=OrderType.STOP_MARKET, price=trigger_price)
        out = await self._call("modify", self.client.modify_order(order=order, trigger_price=trigger_price))
        return list(out or [])

    async def list_orders(self, account_id: str) -> list[Message]:
        return list(await self._call("show orders", self.client.list_orders(account_id=account_id)) or [])

    async def order_history(self, account_id: str, date: str) -> list[Message]:
        return list(await self._call("order history", self.client.show_order_history_summary(
            date=date, account_id=account_id)) or [])

    async def fill_history(self, account_id: str, start: datetime, end: datetime) -> list[Message]:
        return list(await self._call("fill history", self.client.get_fill_history(
            start, end, account_id=account_id)) or [])

    async def positions(self, account_id: str) -> list[Message]:
        return list(await self._call("pnl positions", self.client.list_positions(account_id=account_id)) or [])

    async def subscribe_pnl(self) -> None:
        await self._call("pnl subscribe", self.client.subscribe_to_pnl_updates())

    async def subscribe_market(self, symbol: str, exchange: str, update_bits: int) -> None:
        await self._call("market data", self.client.subscribe_to_market_data(symbol, exchange, update_bits))

    def add_listener(self, event: str, callback: Callable[[Message], Awaitable[None]]) -> None:
        """``event``: one of the client's events (on_exchange_order_notification, on_tick, on_order_book...)."""
        ev = getattr(self.client, event)
        ev += callback


def ssboe_ns(ssboe: object, usecs: object) -> int:
    """Rithmic's seconds-since-epoch plus microseconds as UTC nanoseconds."""
    try:
        return int(str(ssboe or 0)) * 1_000_000_000 + int(str(usecs or 0)) * 1_000
    except ValueError:
        return 0
