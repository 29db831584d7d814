"""A local stand-in for Databento's live subscription gateway (LSG), for tests only.

It speaks the real wire protocol well enough for the real ``databento.Live`` client (0.87.0):
newline-delimited ``key=value|...`` control lines for the greeting, the CRAM challenge, the
authentication request/response, subscriptions and ``start_session``; then a binary DBN stream (a
``Metadata`` header followed by records built with ``databento_dbn`` classes). Authentication is
checked with the same CRAM hashing the client uses, so a wrong key really fails.

Each accepted connection follows a :class:`ConnPlan` (the n-th connection uses ``plans[n]``, the last
plan repeats), which is how tests script "stream, then drop, then accept the reconnect" or "accept and
never say a word". Everything the client sent is kept in :attr:`DbnGateway.connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import databento_dbn as dbn
from databento.common.cram import get_challenge_response

RecordSpec = Any | Callable[[int], Any]
"""A ``databento_dbn`` record, or a factory called with the send time (UTC ns) that returns one."""

After = Literal["hold", "close", "abort", "error"]


@dataclass
class ConnPlan:
    greet: bool = True
    """False: accept the TCP connection and never send anything (a hung gateway)."""
    records: list[RecordSpec] = field(default_factory=list)
    interval_s: float = 0.0
    """Pause between records."""
    after: After = "hold"
    """Once the records are sent: ``hold`` the connection (heartbeats if enabled), ``close`` it cleanly,
    ``abort`` it (TCP reset), or send an ``ErrorMsg`` (``error_text``) and close."""
    heartbeats: bool = True
    """Send heartbeat ``SystemMsg`` records every ``heartbeat_s`` while holding."""
    heartbeat_s: float | None = None
    """Default: the interval the client asked for in its auth request."""
    send_metadata: bool = True
    """False: go silent right after ``start_session`` (authenticated, then nothing)."""
    error_text: str = "Internal error"
    error_code: Any = None


@dataclass
class ConnLog:
    index: int
    auth: dict[str, str] = field(default_factory=dict)
    auth_ok: bool | None = None
    subscriptions: list[dict[str, str]] = field(default_factory=list)
    started: bool = False
    records_sent: int = 0
    heartbeats_sent: int = 0
    closed: bool = False


def _parse(line: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in line.decode().strip().split("|"):
        k, _, v = token.partition("=")
        out[k] = v
    return out


class DbnGateway:
    """``async with DbnGateway(key, plans) as gw: ... gw.port ...``"""

    def __init__(self, api_key: str, plans: list[ConnPlan] | None = None, dataset: str = "GLBX.MDP3") -> None:
        self.api_key = api_key
        self.plans = plans or [ConnPlan()]
        self.dataset = dataset
        self.connections: list[ConnLog] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connected = asyncio.Condition()

    async def __aenter__(self) -> DbnGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        if self._handlers:
            _, pending = await asyncio.wait(list(self._handlers), timeout=1.0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def wait_connections(self, n: int, within_s: float = 10.0) -> None:
        async with self.connected:
            await asyncio.wait_for(self.connected.wait_for(lambda: len(self.connections) >= n), within_s)

    # -- per connection ---------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        log = ConnLog(len(self.connections))
        plan = self.plans[min(log.index, len(self.plans) - 1)]
        async with self.connected:
            self.connections.append(log)
            self.connected.notify_all()
        try:
            await self._session(reader, writer, plan, log)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the gateway is shutting down (close() cancels stragglers)
        finally:
            log.closed = True
            self._writers.discard(writer)
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, plan: ConnPlan,
                       log: ConnLog) -> None:
        if not plan.greet:
            await reader.read()  # until the client gives up
            return
        cram = secrets.token_urlsafe(24)
        writer.write(b"lsg_version=0.4.2\n" + f"cram={cram}\n".encode())
        await writer.drain()
        log.auth = _parse(await reader.readline())
        expected = get_challenge_response(cram, self.api_key)
        if log.auth.get("auth") != expected:
            log.auth_ok = False
            writer.write(b"success=0|error=Authentication failed.\n")
            await writer.drain()
            await reader.read()  # the client closes
            return
        log.auth_ok = True
        writer.write(f"success=1|session_id={1000 + log.index}\n".encode())
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            msg = _parse(line)
            if "start_session" in msg:
                log.started = True
                break
            log.subscriptions.append(msg)
        eof = asyncio.ensure_future(reader.read())  # notices the client leaving
        try:
            await self._stream(writer, plan, log, eof)
        finally:
            eof.cancel()

    async def _stream(self, writer: asyncio.StreamWriter, plan: ConnPlan, log: ConnLog,
                      eof: asyncio.Future[bytes]) -> None:
        if not plan.send_metadata:
            await eof
            return
        stype = {"parent": dbn.SType.PARENT, "continuous": dbn.SType.CONTINUOUS}.get(
            log.subscriptions[0].get("stype_in", "") if log.subscriptions else "", dbn.SType.RAW_SYMBOL)
        meta = dbn.Metadata(dataset=log.auth.get("dataset", self.dataset), start=time.time_ns(), stype_in=stype,
                            stype_out=dbn.SType.INSTRUMENT_ID, schema=None)
        writer.write(meta.encode())
        for spec in plan.records:
            if eof.done():
                return
            rec = spec(time.time_ns()) if callable(spec) else spec
            writer.write(bytes(rec))
            log.records_sent += 1
            await writer.drain()
            if plan.interval_s:
                await asyncio.sleep(plan.interval_s)
        if plan.after == "close":
            await writer.drain()
            writer.close()
            return
        if plan.after == "abort":
            writer.transport.abort()
            return
        if plan.after == "error":
            code = plan.error_code if plan.error_code is not None else dbn.ErrorCode.INTERNAL_ERROR
            writer.write(bytes(dbn.ErrorMsg(ts_event=time.time_ns(), err=plan.error_text, code=code)))
            await writer.drain()
            writer.close()
            return
        hb = plan.heartbeat_s or float(log.auth.get("heartbeat_interval_s") or 30)
        while not eof.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(eof), hb)
            if plan.heartbeats and not eof.done():
                writer.write(bytes(dbn.SystemMsg(ts_event=time.time_ns(), msg="Heartbeat",
                                                 code=dbn.SystemCode.HEARTBEAT)))
                log.heartbeats_sent += 1
                await writer.drain()


# -- record factories (timestamps at send time, like a real gateway) ---------------------------------


def mapping(instrument_id: int, symbol: str, parent: str = "ES.FUT") -> Callable[[int], Any]:
    def make(now: int) -> Any:
        return dbn.SymbolMappingMsg(publisher_id=0, instrument_id=instrument_id, ts_event=now,
                                    stype_in=dbn.SType.PARENT, stype_in_symbol=parent,
                                    stype_out=dbn.SType.RAW_SYMBOL, stype_out_symbol=symbol,
                                    start_ts=now, end_ts=dbn.UNDEF_TIMESTAMP)
    return make


def trade(instrument_id: int, price_fp: int, size: int, side: str = "B", sequence: int = 0) -> Callable[[int], Any]:
    dside = {"B": dbn.Side.BID, "A": dbn.Side.ASK}.get(side, dbn.Side.NONE)

    def make(now: int) -> Any:
        return dbn.TradeMsg(publisher_id=1, instrument_id=instrument_id, ts_event=now - 1000, price=price_fp,
                            size=size, action=dbn.Action.TRADE, side=dside, depth=0, ts_recv=now,
                            sequence=sequence)
    return make


def mbp1(instrument_id: int, bid_fp: int, ask_fp: int, bid_sz: int = 10, ask_sz: int = 10,
         sequence: int = 0) -> Callable[[int], Any]:
    def make(now: int) -> Any:
        lv = dbn.BidAskPair(bid_px=bid_fp, ask_px=ask_fp, bid_sz=bid_sz, ask_sz=ask_sz, bid_ct=1, ask_ct=1)
        return dbn.MBP1Msg(publisher_id=1, instrument_id=instrument_id, ts_event=now - 1000, price=bid_fp,
                           size=bid_sz, action=dbn.Action.ADD, side=dbn.Side.BID, depth=0, ts_recv=now,
                           sequence=sequence, levels=lv)
    return make


def system(msg: str, code: Any) -> Callable[[int], Any]:
    return lambda now: dbn.SystemMsg(ts_event=now, msg=msg, code=code)


def error(text: str, code: Any = None) -> Callable[[int], Any]:
    return lambda now: dbn.ErrorMsg(ts_event=now, err=text, code=code)
