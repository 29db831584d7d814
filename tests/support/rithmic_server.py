"""A local stand-in for a Rithmic R|Protocol gateway (TLS websocket), for tests only.

It speaks exactly what async-rithmic speaks: every websocket frame is a 4-byte big-endian length followed by
one protobuf message from the library's own generated classes, dispatched by ``template_id`` (the library's
``TEMPLATES_MAP``). It serves the plants the library logs into (ticker, order, PnL, history) on one URL, as
the real gateway does: system info (16/17), login (10/11) with the heartbeat interval, heartbeats (18/19),
logout, login info, accounts, trade routes, order/bracket update subscriptions, bracket (330) and plain
(312) orders, cancel (316), modify (314), show orders (320), order history (324), fill history (3512), PnL
snapshots and updates (402/400), front month (113), reference data (14) and market data (100: last trade,
best bid/offer, order book).

Orders fill by the paper broker's rules (:class:`tradebot.execution.paper.PaperBroker` runs inside, fed with
the same market data the stand-in streams from a real recorded file), so results are repeatable and equal to
paper mode's. The account's state lives in the server, not in a connection: fills made while no client is
connected are in the order and fill history when it comes back.

Scripted faults (:class:`Faults`): a lost answer to an order, duplicate and reversed (out-of-order)
notifications, a disconnect right after an order is accepted, a forced logout (77), logins refused,
``rp_code`` rejects of orders, and a bracket stop the exchange rejects.

Run as a process (``PYTHONPATH=tests python -m support.rithmic_server --data FILE ...``): it prints one JSON
line with ``url`` and ``ca_file`` and streams the file at ``--speed`` x its recorded pace, stamped with the
send time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from async_rithmic import protocol_buffers as pb
from async_rithmic.plants.base import TEMPLATES_MAP
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tradebot.core.config import Settings
from tradebot.core.contracts import root_of, spec_for
from tradebot.core.types import BookUpdate, MarketEvent, Side, Trade
from tradebot.execution.model import (
    Ack,
    BracketRequest,
    Cancelled,
    Fill,
    FlattenRequest,
    LegRole,
    LegState,
    Modified,
    OrderType,
    Reject,
    StopRequest,
    client_order_id,
    split_client_order_id,
)
from tradebot.execution.paper import PaperBroker, PaperConfig

BY_NAME = {cls.__name__: tid for tid, cls in TEMPLATES_MAP.items()}
NS = 1_000_000_000
LIMIT, MARKET, STOP_LIMIT, STOP_MARKET = 1, 2, 3, 4
BUY, SELL = 1, 2
AUTO = 2


def frame(msg: Any) -> bytes:
    """Exactly the library's framing: 4-byte big-endian length, then the serialized message."""
    body = msg.SerializeToString()
    return len(body).to_bytes(4, "big", signed=True) + body


def make(name: str, **fields: Any) -> Any:
    cls = TEMPLATES_MAP[BY_NAME[name]]
    msg = cls()
    msg.template_id = BY_NAME[name]
    for k, v in fields.items():
        if v is None:
            continue
        target = getattr(msg, k)
        if isinstance(v, list):
            target.extend(v)
        else:
            setattr(msg, k, v)
    return msg


def make_tls(directory: Path) -> tuple[Path, Any]:
    """A CA and a server certificate for 127.0.0.1/localhost (the test's own trust chain, not Rithmic's)."""
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tradebot test Rithmic CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    ca_file = directory / "rithmic-test-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "rithmic-test-server.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_file))
    return ca_file, ctx


@dataclass
class Faults:
    lost_ack: int = 0
    """The next N order answers (331/313) and their ``open`` notifications are never sent (the order is placed)."""
    duplicate: int = 0
    """The next N notification bursts are sent twice."""
    out_of_order: int = 0
    """The next N notification bursts are sent in reverse order."""
    reject_orders: list[tuple[str, str]] = field(default_factory=list)
    """The next orders are answered with these ``(rp_code, text)`` errors instead of being placed."""
    reject_stop: int = 0
    """The next N bracket stops are rejected by the exchange when the entry fills (the target works)."""
    disconnect_after_order: int = 0
    """The next N accepted orders close the order plant's connections instead of answering."""
    refuse_login: bool = False
    """Every login is refused (rp_code 13)."""


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    plant: str = ""
    order_updates: bool = False
    pnl_updates: bool = False
    market: dict[str, int] = field(default_factory=dict)
    """contract -> update bits subscribed."""
    heartbeats: int = 0
    book_sent: set[str] = field(default_factory=set)


@dataclass
class _SOrder:
    basket_id: str
    user_tag: str
    paper_coid: str
    root: str
    contract: str
    side: int
    price_type: int
    quantity: int
    price: float
    trigger_price: float
    manual_or_auto: int
    original_basket_id: str = ""
    linked: str = ""
    status: str = "open"
    report: str = "status"
    text: str = ""
    filled: int = 0
    avg_price: float = 0.0
    ts_ns: int = 0
    silent: bool = False
    rejected: bool = False
    stop_ticks: int = 0
    target_ticks: int = 0


_INFRA = {1: "ticker", 2: "order", 3: "history", 4: "pnl", 5: "repository"}


class RithmicStandIn:
    def __init__(self, directory: Path, data: list[Path], *, user: str = "trader", password: str = "secret-pw",
                 account_id: str = "ACC-1", system_name: str = "Rithmic Test", symbol: str = "ES",
                 contracts: dict[str, str] | None = None, heartbeat_interval: int = 60,
                 paper: PaperConfig | None = None, settings: Settings | None = None, restamp: bool = True) -> None:
        self.directory = directory
        self.restamp = restamp
        """Move the recorded day to end just before now (False: keep its own times, as a replayed day's daemon
        decides in them; ``now_ns`` is then the exchange clock orders are armed at)."""
        self.user, self.password, self.account_id, self.system_name = user, password, account_id, system_name
        self.symbol = symbol
        self.contracts = contracts or {"ES": "ESH2", "MES": "MESH2"}
        self.heartbeat_interval = heartbeat_interval
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.requests: list[tuple[str, int]] = []
        self.orders_seen: list[Any] = []
        """Every order/bracket request as received (tests check ``manual_or_auto``)."""
        self._data = data
        self._settings = settings or Settings()
        self.offset_ns = 0
        self.events: list[MarketEvent] = []
        self.pos = 0
        self.now_ns = 0
        self.paper = PaperBroker(paper or PaperConfig(), data_symbols={symbol})
        self.baskets: dict[str, _SOrder] = {}
        self.by_paper: dict[str, str] = {}
        self.fills: list[dict[str, Any]] = []
        self.seq = 0
        self._basket_n = 0
        self._sig_n = 0
        self.conns: set[_Conn] = set()
        self.ca_file, self._ssl = make_tls(directory)
        self._server: Server | None = None
        self.port = 0
        self._stream: asyncio.Task[None] | None = None
        self._book: dict[str, tuple[dict[float, int], dict[float, int]]] = {}
        self.subscribed = asyncio.Event()
        """Set when a ticker connection first subscribes to market data."""

    # -- life cycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    async def start(self) -> RithmicStandIn:
        from tradebot.backtest.runner import load_events

        events, _ = await asyncio.to_thread(load_events, self._data, self._settings, self.symbol)
        if not events:
            raise ValueError(f"no market events in {self._data}")
        # The recorded day moved so that it ends a second before now: every time the stand-in sends is in the
        # past (a live validator rejects future timestamps) and the spacing of the events is the recorded one.
        self.offset_ns = time.time_ns() - NS - events[-1].ts_event if self.restamp else 0
        self.events = [dataclasses.replace(e, ts_event=e.ts_event + self.offset_ns,
                                           ts_recv=e.ts_recv + self.offset_ns) for e in events]
        self.now_ns = self.events[0].ts_event - 1
        self._server = await serve(self._handler, "127.0.0.1", 0, ssl=self._ssl, max_size=2**22)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def stream(self, speed: float = 1.0) -> None:
        """Play the rest of the file in the background, ``speed`` x the recorded pace, each event stamped with the
        wall time it is sent at (``now`` at the first one, then the recorded spacing / ``speed``): a live daemon
        sees fresh, never future, data, and the paper broker inside fills on those same times."""
        async def run() -> None:
            if self.pos >= len(self.events):
                return
            base_wall = time.time_ns()
            base_ts = self.events[self.pos].ts_event
            while self.pos < len(self.events):
                ev = self.events[self.pos]
                due = base_wall + int((ev.ts_event - base_ts) / speed)
                delay = (due - time.time_ns()) / NS
                if delay > 0:
                    await asyncio.sleep(delay)
                self.events[self.pos] = dataclasses.replace(ev, ts_event=due, ts_recv=due)
                await self.advance(1)
                if self.pos % 256 == 0:
                    await asyncio.sleep(0)
        self._stream = asyncio.get_running_loop().create_task(run())

    async def advance(self, n: int = 1) -> int:
        """The next ``n`` market events: to the paper broker (fills) and to subscribed ticker connections."""
        done = 0
        while done < n and self.pos < len(self.events):
            ev = self.events[self.pos]
            self.pos += 1
            done += 1
            await self.serve(ev)
        return done

    async def serve(self, ev: MarketEvent) -> None:
        """One market event of the caller's (a test scripting the market): the exchange clock moves to its time,
        the paper broker fills on it, subscribed ticker connections receive it, notifications go out."""
        self.now_ns = max(self.now_ns, ev.ts_event)
        self.paper.on_market_event(ev)
        await self._market(ev)
        await self._drain()

    async def advance_until(self, predicate: Any, limit: int = 5000) -> bool:
        for _ in range(limit):
            if predicate():
                return True
            if not await self.advance(1):
                return bool(predicate())
        return bool(predicate())

    # -- scripted events ----------------------------------------------------------------------------

    async def force_logout(self, plant: str = "order") -> int:
        """Template 77 to every connection of ``plant``, then close them (what Rithmic does)."""
        n = 0
        for c in list(self.conns):
            if c.plant == plant:
                await self._send(c, make("ForcedLogout"))
                await c.ws.close(1000, "forced logout")
                n += 1
        self.stats["forced_logouts"] += n
        return n

    async def drop(self, plant: str | None = None) -> int:
        """Close connections abruptly (all, or one plant's): a network cut."""
        n = 0
        for c in list(self.conns):
            if plant is None or c.plant == plant:
                c.ws.transport.abort()
                n += 1
        return n

    def connected_plants(self) -> list[str]:
        return sorted(c.plant for c in self.conns if c.plant)

    # -- views for tests ----------------------------------------------------------------------------

    def order(self, basket_id: str) -> tuple[LegState, int, int]:
        o = self.baskets[basket_id]
        p = {v.client_order_id: v for v in self.paper.query_orders()}[o.paper_coid]
        state = LegState.REJECTED if o.rejected else p.state
        return state, p.filled_qty, p.quantity

    def positions(self) -> dict[str, int]:
        return self.paper.query_positions()

    def client_id(self, o: _SOrder) -> str:
        """The order's id in tradebot's terms: its ``user_tag``, or for a bracket's stop/target (which carry the
        parent's tag) the bracket's ``-S``/``-T`` id."""
        parsed = split_client_order_id(o.user_tag)
        if o.original_basket_id and parsed is not None:
            return client_order_id(parsed[0], LegRole.STOP if o.price_type in (STOP_MARKET, STOP_LIMIT)
                                   else LegRole.TARGET)
        return o.user_tag

    def trades(self) -> list[tuple[str, str, int, int, str]]:
        """Every fill as (client id, BUY/SELL, quantity, price in ticks, fill id), in the order they happened."""
        out = []
        for f in self.fills:
            o = self.baskets[f["basket_id"]]
            out.append((self.client_id(o), "BUY" if o.side == BUY else "SELL", f["size"],
                        self._ticks(o.root, f["price"]), f["fill_id"]))
        return out

    def working(self) -> list[_SOrder]:
        return [o for o in self.baskets.values() if o.status == "open"]

    # -- the wire -----------------------------------------------------------------------------------

    async def _send(self, c: _Conn, msg: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            await c.ws.send(frame(msg))

    async def _handler(self, ws: ServerConnection) -> None:
        c = _Conn(ws)
        self.conns.add(c)
        try:
            async for data in ws:
                if not isinstance(data, bytes) or len(data) < 4:
                    self.stats["bad_frames"] += 1
                    continue
                n = int.from_bytes(data[:4], "big", signed=True)
                body = data[4:]
                if n != len(body):
                    self.stats["bad_length"] += 1
                    continue
                base = pb.base_pb2.Base()
                base.ParseFromString(body)
                cls = TEMPLATES_MAP.get(base.template_id)
                if cls is None:
                    self.stats["unknown_template"] += 1
                    await self._send(c, make("Reject", rp_code=["1", "unknown template"]))
                    continue
                msg = cls()
                msg.ParseFromString(body)
                self.requests.append((c.plant, base.template_id))
                await self._dispatch(c, base.template_id, msg)
        except ConnectionClosed:
            pass
        finally:
            self.conns.discard(c)

    def _rid(self, msg: Any) -> list[str]:
        return list(msg.user_msg)

    async def _ok(self, c: _Conn, name: str, msg: Any, **fields: Any) -> None:
        await self._send(c, make(name, user_msg=self._rid(msg), rp_code=["0"], **fields))

    async def _dispatch(self, c: _Conn, tid: int, m: Any) -> None:
        if tid == 16:
            await self._ok(c, "ResponseRithmicSystemInfo", m, system_name=[self.system_name, "Rithmic Paper Trading"])
        elif tid == 10:
            await self._login(c, m)
        elif tid == 18:
            c.heartbeats += 1
            self.stats["heartbeats"] += 1
            await self._ok(c, "ResponseHeartbeat", m)
        elif tid == 12:
            await self._ok(c, "ResponseLogout", m)
        elif not c.plant:
            await self._send(c, make("Reject", user_msg=self._rid(m), rp_code=["3", "not logged in"]))
        elif tid == 300:
            await self._ok(c, "ResponseLoginInfo", m, fcm_id="TestFCM", ib_id="TestIB", user=self.user, user_type=3)
        elif tid == 302:
            await self._send(c, make("ResponseAccountList", user_msg=self._rid(m), rq_handler_rp_code=["0"],
                                     fcm_id="TestFCM", ib_id="TestIB", account_id=self.account_id,
                                     account_name="Test account", account_currency="USD"))
            await self._ok(c, "ResponseAccountList", m)
        elif tid == 310:
            await self._send(c, make("ResponseTradeRoutes", user_msg=self._rid(m), rq_handler_rp_code=["0"],
                                     fcm_id="TestFCM", ib_id="TestIB", exchange="CME", trade_route="simulator",
                                     status="UP", is_default=True))
            await self._ok(c, "ResponseTradeRoutes", m)
        elif tid == 308:
            c.order_updates = True
            await self._ok(c, "ResponseSubscribeForOrderUpdates", m)
        elif tid == 336:
            await self._ok(c, "ResponseSubscribeToBracketUpdates", m)
        elif tid in (330, 312):
            await self._new_order(c, tid, m)
        elif tid == 316:
            await self._cancel(c, m)
        elif tid == 314:
            await self._modify(c, m)
        elif tid == 320:
            for o in self.working():
                await self._send(c, self._exchange_note(o, "STATUS", snapshot=True))
            await self._ok(c, "ResponseShowOrders", m)
        elif tid == 324:
            for o in self.baskets.values():
                await self._send(c, self._exchange_note(o, "STATUS", snapshot=True))
            await self._ok(c, "ResponseShowOrderHistorySummary", m)
        elif tid == 3512:
            lo, hi = int(m.start_index) * NS, (int(m.finish_index) + 1) * NS
            for f in self.fills:
                if lo <= f["ts_ns"] < hi:
                    await self._send(c, self._fill_row(m, f))
            await self._ok(c, "ResponseShowFillHistory", m)
        elif tid == 402:
            for msg in self._pnl_rows(snapshot=True):
                await self._send(c, msg)
            await self._ok(c, "ResponsePnLPositionSnapshot", m)
        elif tid == 400:
            c.pnl_updates = int(m.request) == 1
            await self._ok(c, "ResponsePnLPositionUpdates", m)
        elif tid == 113:
            contract = self.contracts.get(m.symbol)
            if contract is None:
                await self._send(c, make("ResponseFrontMonthContract", user_msg=self._rid(m), rp_code=["7", "no data"]))
            else:
                await self._ok(c, "ResponseFrontMonthContract", m, symbol=m.symbol, exchange=m.exchange,
                               is_front_month_symbol=True, symbol_name=contract, trading_symbol=contract,
                               trading_exchange=m.exchange)
        elif tid == 14:
            root = root_of(m.symbol) or ""
            tick = float(spec_for(root).tick_size) if root else 0.0
            await self._ok(c, "ResponseReferenceData", m, symbol=m.symbol, exchange=m.exchange,
                           product_code=root, is_tradable="true", min_fprice_change=tick)
        elif tid == 100:
            if int(m.request) == 1:
                c.market[m.symbol] = c.market.get(m.symbol, 0) | int(m.update_bits)
                self.subscribed.set()
                c.book_sent.discard(m.symbol)
            else:
                c.market.pop(m.symbol, None)
            await self._ok(c, "ResponseMarketDataUpdate", m)
        else:
            self.stats["unsupported"] += 1
            await self._send(c, make("Reject", user_msg=self._rid(m), rp_code=["1", f"template {tid} unsupported"]))

    async def _login(self, c: _Conn, m: Any) -> None:
        ok = (m.user == self.user and m.password == self.password and m.system_name == self.system_name
              and not self.faults.refuse_login)
        if not ok:
            self.stats["logins_refused"] += 1
            await self._send(c, make("ResponseLogin", user_msg=self._rid(m), rp_code=["13", "permission denied"]))
            return
        c.plant = _INFRA.get(int(m.infra_type), "?")
        self.stats[f"logins_{c.plant}"] += 1
        await self._ok(c, "ResponseLogin", m, template_version="3.9", fcm_id="TestFCM", ib_id="TestIB",
                       unique_user_id=f"u-{self.user}", heartbeat_interval=float(self.heartbeat_interval))

    # -- orders -------------------------------------------------------------------------------------

    def _basket(self) -> str:
        self._basket_n += 1
        return f"{100000 + self._basket_n}"

    def _px(self, root: str, ticks: int | None) -> float:
        return float(ticks * spec_for(root).tick_size) if ticks is not None else 0.0

    def _ticks(self, root: str, price: float) -> int:
        return round(price / float(spec_for(root).tick_size))

    async def _new_order(self, c: _Conn, tid: int, m: Any) -> None:
        self.orders_seen.append(m)
        self._placement(m)
        resp = "ResponseBracketOrder" if tid == 330 else "ResponseNewOrder"
        if self.faults.reject_orders:
            code, text = self.faults.reject_orders.pop(0)
            self.stats["rp_rejects"] += 1
            await self._send(c, make(resp, user_msg=self._rid(m), user_tag=m.user_tag, rp_code=[code, text]))
            return
        root = root_of(m.symbol)
        if m.account_id != self.account_id or root is None or m.exchange != "CME" or m.trade_route != "simulator":
            await self._send(c, make(resp, user_msg=self._rid(m), user_tag=m.user_tag,
                                     rp_code=["1", "bad account, symbol, exchange or trade route"]))
            return
        side = Side.BUY if int(m.transaction_type) == BUY else Side.SELL
        ptype = int(m.price_type)
        self._sig_n += 1
        sid = f"P{self._sig_n}"
        basket = self._basket()
        lost = self.faults.lost_ack > 0
        if lost:
            self.faults.lost_ack -= 1
            self.stats["lost_acks"] += 1
        if tid == 330:
            if ptype == LIMIT:
                ref, etype, eprice = self._ticks(root, m.price), OrderType.LIMIT, self._ticks(root, m.price)
            elif ptype == STOP_MARKET:
                ref, etype, eprice = (self._ticks(root, m.trigger_price), OrderType.STOP,
                                      self._ticks(root, m.trigger_price))
            else:
                ref, etype, eprice = self._market_ref(side), OrderType.MARKET, None
            sign = 1 if side == Side.BUY else -1
            req = BracketRequest(sid, root, side, int(m.quantity), etype, eprice, ref - sign * int(m.stop_ticks),
                                 ref + sign * int(m.target_ticks), self.now_ns, self.now_ns)
            o = _SOrder(basket, m.user_tag, req.entry_id, root, m.symbol, int(m.transaction_type), ptype,
                        int(m.quantity), float(m.price), float(m.trigger_price), int(m.manual_or_auto),
                        ts_ns=self.now_ns, silent=lost, stop_ticks=int(m.stop_ticks), target_ticks=int(m.target_ticks))
            self.baskets[basket] = o
            self.by_paper[req.entry_id] = basket
            self.paper.submit_bracket(req)
        elif ptype == MARKET:
            exit_id = f"{sid}-X"
            o = _SOrder(basket, m.user_tag, exit_id, root, m.symbol, int(m.transaction_type), ptype,
                        int(m.quantity), 0.0, 0.0, int(m.manual_or_auto), ts_ns=self.now_ns, silent=lost)
            self.baskets[basket] = o
            self.by_paper[exit_id] = basket
            self.paper.flatten(FlattenRequest(sid, root, exit_id, side, int(m.quantity), (), "order", self.now_ns))
        else:
            # A stop/limit of its own. A stop protecting one of our brackets' positions (its user_tag names the
            # bracket's signal) is the paper broker's place_stop on that bracket: it closes the position and
            # shrinks the target, exactly as paper mode's re-placed stop does. Anything else: place_order.
            price = m.trigger_price if ptype in (STOP_MARKET, STOP_LIMIT) else m.price
            ticks = self._ticks(root, price)
            parent = self._bracket_of(m.user_tag)
            otype = OrderType.STOP if ptype in (STOP_MARKET, STOP_LIMIT) else OrderType.LIMIT
            if parent is not None and otype == OrderType.STOP:
                psid = parent.paper_coid[:-2]
                pcoid = f"{psid}-S{self._sig_n}"
                self.paper.place_stop(StopRequest(psid, root, pcoid, side, int(m.quantity), ticks, self.now_ns))
            else:
                pcoid = f"{sid}-O"
                self.paper.place_order(pcoid, root, side, otype, int(m.quantity), ticks, self.now_ns)
            o = _SOrder(basket, m.user_tag, pcoid, root, m.symbol, int(m.transaction_type), ptype, int(m.quantity),
                        float(m.price), float(m.trigger_price), int(m.manual_or_auto), ts_ns=self.now_ns, silent=lost)
            self.baskets[basket] = o
            self.by_paper[pcoid] = basket
        if self.faults.disconnect_after_order > 0:
            self.faults.disconnect_after_order -= 1
            o.silent = True
            await self._drain()
            for oc in list(self.conns):
                if oc.plant == "order":
                    oc.ws.transport.abort()
            return
        if not lost:
            s, us = divmod(self.now_ns // 1000, 1_000_000)
            await self._send(c, make(resp, user_msg=self._rid(m), user_tag=m.user_tag, rp_code=["0"],
                                     basket_id=basket, ssboe=s, usecs=us))
        await self._drain()

    def _bracket_of(self, user_tag: str) -> _SOrder | None:
        parsed = split_client_order_id(user_tag)
        if parsed is None:
            return None
        entry_tag = client_order_id(parsed[0], LegRole.ENTRY)
        return next((o for o in self.baskets.values() if o.user_tag == entry_tag and o.stop_ticks), None)

    def _market_ref(self, side: Side) -> int:
        q = self.paper._quotes.get(self.symbol)  # the prevailing quote the paper broker fills against
        if q is not None:
            book = q.ask_px if side == Side.BUY else q.bid_px
            if book:
                return book[0]
        for ev in reversed(self.events[:self.pos]):
            if isinstance(ev, Trade):
                return ev.price
        return 0

    def _placement(self, m: Any) -> None:
        if int(m.manual_or_auto) != AUTO:
            self.stats["manual_requests"] += 1

    async def _cancel(self, c: _Conn, m: Any) -> None:
        self._placement(m)
        o = self.baskets.get(m.basket_id)
        if o is None or o.status != "open":
            await self._send(c, make("ResponseCancelOrder", user_msg=self._rid(m), basket_id=m.basket_id,
                                     rp_code=["5", "order not open"]))
            return
        if o.original_basket_id == "" and o.price_type != MARKET:
            # cancelling a bracket's parent also cancels its not-yet-released children (paper does the same)
            pass
        self.paper.cancel(o.paper_coid, self.now_ns, "cancelled by client")
        await self._ok(c, "ResponseCancelOrder", m, basket_id=m.basket_id)
        await self._drain()

    async def _modify(self, c: _Conn, m: Any) -> None:
        self._placement(m)
        o = self.baskets.get(m.basket_id)
        if o is None or o.status != "open" or o.price_type not in (STOP_MARKET, STOP_LIMIT):
            await self._send(c, make("ResponseModifyOrder", user_msg=self._rid(m), basket_id=m.basket_id,
                                     rp_code=["5", "order not open or not a stop"]))
            return
        self.paper.modify_stop(o.paper_coid, self._ticks(o.root, m.trigger_price), self.now_ns)
        await self._ok(c, "ResponseModifyOrder", m, basket_id=m.basket_id)
        await self._drain()

    # -- paper events -> notifications ---------------------------------------------------------------

    def _stamp(self, ts_ns: int) -> dict[str, int]:
        self.seq += 1
        s, us = divmod(max(ts_ns, 0) // 1000, 1_000_000)
        return {"ssboe": s, "usecs": us}

    def _common(self, o: _SOrder) -> dict[str, Any]:
        return {"user_tag": o.user_tag, "basket_id": o.basket_id, "fcm_id": "TestFCM", "ib_id": "TestIB",
                "user_id": self.user, "account_id": self.account_id, "symbol": o.contract, "exchange": "CME",
                "trade_route": "simulator", "quantity": o.quantity, "price": o.price, "trigger_price": o.trigger_price,
                "transaction_type": o.side, "duration": 1, "price_type": o.price_type,
                "manual_or_auto": o.manual_or_auto, "original_basket_id": o.original_basket_id or None,
                "linked_basket_ids": o.linked or None}

    def _order_note(self, o: _SOrder, notify: str, status: str, reason: str = "", text: str = "") -> Any:
        enum = pb.rithmic_order_notification_pb2.RithmicOrderNotification.NotifyType
        return make("RithmicOrderNotification", notify_type=enum.Value(notify), status=status,
                    completion_reason=reason or None, text=text or None, total_fill_size=o.filled,
                    total_unfilled_size=max(o.quantity - o.filled, 0), avg_fill_price=o.avg_price or None,
                    sequence_number=str(self.seq + 1), **self._stamp(o.ts_ns), **self._common(o))

    def _exchange_note(self, o: _SOrder, notify: str, *, snapshot: bool = False, fill: Fill | None = None) -> Any:
        enum = pb.exchange_order_notification_pb2.ExchangeOrderNotification.NotifyType
        extra: dict[str, Any] = {}
        if fill is not None:
            extra = {"fill_id": fill.fill_id, "fill_price": self._px(o.root, fill.price), "fill_size": fill.quantity}
        return make("ExchangeOrderNotification", notify_type=enum.Value(notify), is_snapshot=snapshot,
                    status=o.status, report_type=o.report if snapshot else notify.lower(), text=o.text or None,
                    total_fill_size=o.filled, total_unfilled_size=max(o.quantity - o.filled, 0),
                    avg_fill_price=o.avg_price or None, sequence_number=str(self.seq + 1),
                    **self._stamp(fill.ts_ns if fill else o.ts_ns), **extra, **self._common(o))

    def _fill_row(self, m: Any, f: dict[str, Any]) -> Any:
        o = self.baskets[f["basket_id"]]
        s, us = divmod(f["ts_ns"] // 1000, 1_000_000)
        return make("ResponseShowFillHistory", user_msg=self._rid(m), rq_handler_rp_code=["0"],
                    basket_id=o.basket_id, fcm_id="TestFCM", ib_id="TestIB", account_id=self.account_id,
                    symbol=o.contract, exchange="CME", trade_route="simulator",
                    transaction_type="BUY" if o.side == BUY else "SELL",
                    price_type={LIMIT: "LIMIT", MARKET: "MARKET", STOP_MARKET: "STOP_MARKET"}.get(o.price_type, ""),
                    fill_id=f["fill_id"], fill_price=f["price"], fill_size=f["size"], ssboe=s, usecs=us,
                    total_fill_size=f["total"], total_unfilled_size=max(o.quantity - f["total"], 0))

    def _pnl_rows(self, *, snapshot: bool) -> list[Any]:
        pos = self.paper.query_positions()
        traded = {self.baskets[f["basket_id"]].root for f in self.fills}
        out = []
        s, us = divmod(self.now_ns // 1000, 1_000_000)
        for root in sorted(traded | set(pos)):
            net = pos.get(root, 0)
            out.append(make("InstrumentPnLPositionUpdate", is_snapshot=snapshot, fcm_id="TestFCM", ib_id="TestIB",
                            account_id=self.account_id, symbol=self.contracts.get(root, root), exchange="CME",
                            product_code=root, net_quantity=net, buy_qty=max(net, 0), sell_qty=max(-net, 0),
                            open_position_quantity=abs(net), ssboe=s, usecs=us))
        return out

    async def _drain(self) -> None:
        """The paper broker's events as Rithmic notifications, sent to subscribed order-plant connections."""
        notes: list[Any] = []
        positions_changed = False
        for ev in self.paper.poll_events():
            basket = self.by_paper.get(ev.client_order_id)
            if basket is None:
                basket = self._child(ev.client_order_id)
                if basket is None:
                    continue
            o = self.baskets[basket]
            o.ts_ns = ev.ts_ns
            if isinstance(ev, Ack):
                if not o.silent:
                    notes += [self._order_note(o, "OPEN_PENDING", "open pending"), self._order_note(o, "OPEN", "open")]
            elif isinstance(ev, Fill):
                o.avg_price = ((o.avg_price * o.filled + self._px(o.root, ev.price) * ev.quantity)
                               / (o.filled + ev.quantity))
                o.filled += ev.quantity
                self.fills.append({"basket_id": basket, "fill_id": ev.fill_id, "price": self._px(o.root, ev.price),
                                   "size": ev.quantity, "ts_ns": ev.ts_ns, "total": o.filled})
                notes.append(self._exchange_note(o, "FILL", fill=ev))
                if o.filled >= o.quantity:
                    o.status, o.report = "complete", "fill"
                    notes.append(self._order_note(o, "COMPLETE", "complete", "Fill"))
                positions_changed = True
                notes += self._release_children(o)
            elif isinstance(ev, Cancelled):
                if o.rejected:
                    continue
                o.status, o.report, o.text = "complete", "cancel", ev.reason
                notes += [self._exchange_note(o, "CANCEL"), self._order_note(o, "COMPLETE", "complete", "Cancel")]
            elif isinstance(ev, Modified):
                o.trigger_price = self._px(o.root, ev.stop_price)
                notes += [self._exchange_note(o, "MODIFY"), self._order_note(o, "MODIFIED", "open")]
            elif isinstance(ev, Reject):
                o.status, o.report, o.text, o.rejected = "complete", "reject", ev.reason, True
                notes += [self._exchange_note(o, "REJECT"),
                          self._order_note(o, "COMPLETE", "complete", "Reject", ev.reason)]
        if not notes and not positions_changed:
            return
        if self.faults.out_of_order > 0 and len(notes) > 1:
            self.faults.out_of_order -= 1
            self.stats["reversed_bursts"] += 1
            notes.reverse()
        times = 1
        if self.faults.duplicate > 0 and notes:
            self.faults.duplicate -= 1
            self.stats["duplicated_bursts"] += 1
            times = 2
        for c in list(self.conns):
            if c.plant == "order" and c.order_updates:
                for _ in range(times):
                    for n in notes:
                        await self._send(c, n)
            elif c.plant == "pnl" and c.pnl_updates and positions_changed:
                for row in self._pnl_rows(snapshot=False):
                    await self._send(c, row)

    def _child(self, paper_coid: str) -> str | None:
        """A bracket child's basket (created when the paper broker releases it)."""
        return self.by_paper.get(paper_coid)

    def _release_children(self, entry: _SOrder) -> list[Any]:
        """Rithmic creates a bracket's stop and target as orders of their own when the entry fills."""
        if entry.original_basket_id or entry.stop_ticks == 0 or not entry.paper_coid.endswith("-E"):
            return []
        sid = entry.paper_coid[:-2]
        views = {v.client_order_id: v for v in self.paper.query_orders()}
        out: list[Any] = []
        made: list[_SOrder] = []
        for role, ptype in (("S", STOP_MARKET), ("T", LIMIT)):
            pcoid = f"{sid}-{role}"
            v = views.get(pcoid)
            if v is None or v.state in (LegState.HELD,):
                continue
            if pcoid in self.by_paper:
                child = self.baskets[self.by_paper[pcoid]]
                if child.status == "open" and child.quantity != v.quantity:
                    child.quantity = v.quantity  # the bracket grows with the entry's fills
                    out.append(self._order_note(child, "MODIFIED", "open"))
                continue
            price = self._px(entry.root, v.price)
            child = _SOrder(self._basket(), entry.user_tag, pcoid, entry.root, entry.contract,
                            SELL if entry.side == BUY else BUY, ptype, v.quantity,
                            price if ptype == LIMIT else 0.0, price if ptype == STOP_MARKET else 0.0,
                            entry.manual_or_auto, original_basket_id=entry.basket_id, ts_ns=entry.ts_ns)
            self.baskets[child.basket_id] = child
            self.by_paper[pcoid] = child.basket_id
            made.append(child)
        if len(made) == 2:
            made[0].linked, made[1].linked = made[1].basket_id, made[0].basket_id
        for child in made:
            if child.price_type == STOP_MARKET and self.faults.reject_stop > 0:
                self.faults.reject_stop -= 1
                self.stats["stops_rejected"] += 1
                child.rejected, child.status, child.report = True, "complete", "reject"
                child.text = "stop price is on the wrong side of the market"
                self.paper.cancel(child.paper_coid, self.now_ns, "rejected")
                out += [self._order_note(child, "OPEN_PENDING", "open pending"),
                        self._exchange_note(child, "REJECT"),
                        self._order_note(child, "COMPLETE", "complete", "Reject", child.text)]
                continue
            out += [self._order_note(child, "OPEN_PENDING", "open pending"), self._order_note(child, "OPEN", "open")]
        return out

    # -- market data --------------------------------------------------------------------------------

    async def _market(self, ev: MarketEvent) -> None:
        contract = self.contracts.get(ev.symbol, ev.symbol)
        subs = [c for c in self.conns if c.plant == "ticker" and contract in c.market]
        if not subs:
            if isinstance(ev, BookUpdate):
                self._book[contract] = ({self._px(ev.symbol, p): s for p, s in zip(ev.bid_px, ev.bid_sz, strict=False)},
                                        {self._px(ev.symbol, p): s for p, s in zip(ev.ask_px, ev.ask_sz, strict=False)})
            return
        s, us = divmod(ev.ts_event // 1000, 1_000_000)
        src_s, src_ns = divmod(ev.ts_event, NS)
        if isinstance(ev, Trade):
            msg = make("LastTrade", symbol=contract, exchange="CME", presence_bits=1, trade_price=self._px(
                ev.symbol, ev.price), trade_size=ev.size, aggressor=BUY if ev.side == Side.BUY else SELL
                if ev.side == Side.SELL else 0, ssboe=s, usecs=us, source_ssboe=src_s, source_usecs=src_ns // 1000,
                source_nsecs=src_ns)
            for c in subs:
                if c.market[contract] & 1:
                    await self._send(c, msg)
            return
        if not isinstance(ev, BookUpdate):
            return
        bbo = make("BestBidOffer", symbol=contract, exchange="CME", presence_bits=3,
                   bid_price=self._px(ev.symbol, ev.bid_px[0]) if ev.bid_px else None,
                   bid_size=ev.bid_sz[0] if ev.bid_sz else None,
                   ask_price=self._px(ev.symbol, ev.ask_px[0]) if ev.ask_px else None,
                   ask_size=ev.ask_sz[0] if ev.ask_sz else None, ssboe=s, usecs=us)
        new = ({self._px(ev.symbol, p): sz for p, sz in zip(ev.bid_px, ev.bid_sz, strict=False)},
               {self._px(ev.symbol, p): sz for p, sz in zip(ev.ask_px, ev.ask_sz, strict=False)})
        old = self._book.get(contract, ({}, {}))
        self._book[contract] = new
        for c in subs:
            bits = c.market[contract]
            if bits & 2:
                await self._send(c, bbo)
            if bits & 4:
                if contract not in c.book_sent:
                    c.book_sent.add(contract)
                    await self._send(c, self._book_msg(contract, new, ({}, {}), 3, s, us))
                else:
                    await self._send(c, self._book_msg(contract, new, old, 7, s, us))

    def _book_msg(self, contract: str, new: tuple[dict[float, int], dict[float, int]],
                  old: tuple[dict[float, int], dict[float, int]], update_type: int, s: int, us: int) -> Any:
        """Changed levels (size 0 = level gone); a snapshot image (3) carries every level."""
        sides = []
        for n, o in zip(new, old, strict=True):
            changed = {p: sz for p, sz in n.items() if o.get(p) != sz}
            changed.update({p: 0 for p in o if p not in n})
            sides.append(sorted(changed.items()))
        return make("OrderBook", symbol=contract, exchange="CME", presence_bits=3, update_type=update_type,
                    bid_price=[p for p, _ in sides[0]], bid_size=[z for _, z in sides[0]],
                    ask_price=[p for p, _ in sides[1]], ask_size=[z for _, z in sides[1]], ssboe=s, usecs=us)


async def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Rithmic R|Protocol stand-in (tests only)")
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--dir", required=True, help="where the test CA and server certificate are written")
    ap.add_argument("--user", default="trader")
    ap.add_argument("--password", default="secret-pw")
    ap.add_argument("--account", default="ACC-1")
    ap.add_argument("--system-name", default="Rithmic Test")
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--speed", type=float, default=1.0, help="x the recorded pace (events stamped when sent)")
    ap.add_argument("--wait-for-ticker", action="store_true", help="stream only once a ticker plant subscribed")
    a = ap.parse_args(argv)
    server = RithmicStandIn(Path(a.dir), [Path(p) for p in a.data], user=a.user, password=a.password,
                            account_id=a.account, system_name=a.system_name, symbol=a.symbol)
    await server.start()
    print(json.dumps({"url": server.url, "ca_file": str(server.ca_file), "pid": __import__("os").getpid()}),
          flush=True)
    if a.wait_for_ticker:
        await server.subscribed.wait()
    server.stream(a.speed)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
