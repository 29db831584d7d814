"""Polygon.io / Massive stocks websocket (trades ``T.*``, quotes ``Q.*``) as a live :class:`Feed`.

The protocol (``wss://socket.polygon.io/stocks``, ``wss://socket.massive.com/stocks``): the server greets with
``[{"ev":"status","status":"connected"}]``; the client sends ``{"action":"auth","params":KEY}`` and waits for
``auth_success`` (``auth_failed`` = a wrong key); then ``{"action":"subscribe","params":"T.AAPL,Q.AAPL"}``
(``unsubscribe`` the same way). Every frame is a JSON array of events: ``T`` trades (``sym``, ``p`` price,
``s`` size in shares, ``t`` SIP time in ms, ``q`` sequence, ``c`` conditions, ``x`` exchange), ``Q`` NBBO
quotes (``bp``/``bs``/``ap``/``as``), ``status`` messages (subscription answers, errors, ``max_connections``).

Why it looks the way it does:

* **Aggressor side** is not in the tape, so trades leave here unsided and quotes as one-level books; the
  validation layer (:mod:`tradebot.feeds.sides`, the one place every unsided source is classified) applies the
  quote rule against the NBBO it accepted last, the tick rule at the mid or without a quote.
* **Reconnects** back off exponentially with jitter up to a cap; after each one a :class:`GapEvent` covers
  the time the socket was down (the daemon's validator forgets the prevailing NBBO and last price on a gap:
  a stale quote misclassifies).
* **Fatal vs. transient.** ``auth_failed`` and ``max_connections`` (one connection per key and cluster: another
  process is using it) are fatal: retrying cannot fix them, so the feed fails once, loudly. A socket the
  server *refuses* (HTTP 401/403/404 on the upgrade, or a status saying the plan has no websocket access) is
  not fatal: the feed degrades to REST polling (``/v3/trades`` after the last seen SIP time and
  ``/v2/last/nbbo``) within the configured request budget and tries the socket again now and then.
* **Monitoring scope** (seed 000): the traded symbols are always streamed (the daemon cannot trade blind);
  ``ORDER_FLOW_MONITORING_MODE=positions_only`` adds a symbol only while it has an open position (e.g. one
  recovered from yesterday that is no longer in ``--symbols``) and unsubscribes it when the position closes;
  ``all`` also streams the watch list (``TRADEBOT_STOCKS__WATCHLIST``) all the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeGuard

from tradebot.core.config import Settings
from tradebot.core.logging import get_logger, register_secret
from tradebot.core.prices import PRICE_SCALE, float_to_fp
from tradebot.core.types import (
    FeedEvent,
    FeedState,
    FeedStatus,
    GapEvent,
    RawBook,
    RawStatus,
    RawTrade,
    Side,
    SideRule,
)
from tradebot.feeds.base import GeneratorFeed, jittered_backoff
from tradebot.feeds.polygon_rest import parse_retry_after

log = get_logger("tradebot.feeds.polygon_ws")

SOURCE = "polygon-ws"
SOURCE_POLL = "polygon-poll"
_MS = 1_000_000
_NS = 1_000_000_000
_REFUSED_HTTP = frozenset({401, 403, 404})
_PLAN_WORDS = ("plan", "not authorized", "not entitled", "upgrade", "access")


class PolygonAuthError(Exception):
    pass


class SocketRefusedError(Exception):
    """The server will not give us a websocket (plan without streaming): poll REST instead."""


class _DroppedError(Exception):
    pass


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _num_fp(v: object) -> tuple[bool, int | None]:
    if _is_int(v):
        return True, v * PRICE_SCALE
    if isinstance(v, float):
        return True, float_to_fp(v)
    return False, None


def _shares(v: object) -> int | None:
    if _is_int(v):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


class PolygonParser:
    """Frames -> raw records, with per-symbol NBBO state for the quote rule (pure, testable without a socket)."""

    def __init__(self, symbols: Iterable[str], stats: Counter[str],
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.symbols = {s.upper() for s in symbols}
        self.stats = stats
        self.now = clock_ns

    def frame(self, text: str | bytes) -> tuple[list[RawTrade | RawBook | RawStatus], list[dict[str, Any]]]:
        """Market records and status messages of one frame; anything malformed is counted, never raised."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            self.stats["bad_frame"] += 1
            return [], []
        items = obj if isinstance(obj, list) else [obj]
        out: list[RawTrade | RawBook | RawStatus] = []
        statuses: list[dict[str, Any]] = []
        recv = self.now()
        for m in items:
            if not isinstance(m, dict):
                self.stats["bad_message"] += 1
                continue
            ev = m.get("ev")
            if ev == "status":
                statuses.append(m)
                continue
            sym = m.get("sym")
            if not isinstance(sym, str) or sym.upper() not in self.symbols:
                self.stats["unexpected_symbol" if isinstance(sym, str) else "bad_message"] += 1
                continue
            sym = sym.upper()
            rec: RawTrade | RawBook | None
            if ev == "T":
                rec = self._trade(sym, m, recv)
            elif ev == "Q":
                rec = self._quote(sym, m, recv)
            else:
                self.stats["unknown_event"] += 1
                continue
            if rec is not None:
                out.append(rec)
        return out, statuses

    def _trade(self, sym: str, m: dict[str, Any], recv: int) -> RawTrade | None:
        t, size = m.get("t"), _shares(m.get("s"))
        ok, fp = _num_fp(m.get("p"))
        if not _is_int(t) or t <= 0 or not ok or size is None:
            self.stats["bad_message"] += 1
            return None
        seq = m.get("q", 0)
        self.stats["trades"] += 1
        # Unsided, as the tape is: the validation layer infers the aggressor against the NBBO it has accepted.
        return RawTrade(sym, t * _MS, recv, fp, size, Side.UNKNOWN, SideRule.NONE, seq if _is_int(seq) else 0,
                        source=SOURCE)

    def _quote(self, sym: str, m: dict[str, Any], recv: int) -> RawBook | None:
        t = m.get("t")
        bok, bp = _num_fp(m.get("bp"))
        aok, ap = _num_fp(m.get("ap"))
        bs, as_ = _shares(m.get("bs", 0)), _shares(m.get("as", 0))
        if not _is_int(t) or t <= 0 or not (bok and aok) or bs is None or as_ is None:
            self.stats["bad_message"] += 1
            return None
        self.stats["quotes"] += 1
        seq = m.get("q", 0)
        return RawBook(sym, t * _MS, recv, (bp,), (bs,), (ap,), (as_,), seq if _is_int(seq) else 0, source=SOURCE)


class RateLimiter:
    """At most ``per_minute`` requests in any 60 s (sliding window); ``wait`` sleeps until one is allowed."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.sent: deque[float] = deque()

    def delay(self) -> float:
        now = self.clock()
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()
        if len(self.sent) < self.per_minute:
            return 0.0
        return 60.0 - (now - self.sent[0])

    async def wait(self) -> None:
        d = self.delay()
        while d > 0:
            await asyncio.sleep(d)
            d = self.delay()
        self.sent.append(self.clock())


class PolygonLiveFeed(GeneratorFeed):
    """The stocks websocket with reconnects, gap events, dynamic subscriptions and a REST-polling fallback."""

    name = "polygon"

    def __init__(self, settings: Settings, symbols: Sequence[str], *, ws_url: str | None = None,
                 rest_url: str | None = None) -> None:
        self.settings = settings
        self.cfg = settings.polygon
        key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else ""
        if not key:
            raise ValueError("--feed polygon needs POLYGON_API_KEY")
        register_secret(key)
        self.key = key
        self.ws_url = ws_url or self.cfg.ws_url
        self.rest_url = (rest_url or self.cfg.rest_url).rstrip("/")
        self.traded = [s.upper() for s in symbols]
        watch = list(settings.stocks.watchlist)
        self.mode = settings.order_flow_monitoring_mode
        self.watchlist = watch if self.mode == "all" else []
        self.positions: set[str] = set()
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self.parser = PolygonParser(self.wanted() | set(watch), self.stats)
        self.subscribed: set[str] = set()
        self._ws: Any = None
        self._resubscribe = asyncio.Event()
        self.polling = False
        self.limiter = RateLimiter(self.cfg.rest_requests_per_minute)
        self._last_trade_ns: dict[str, int] = {}

    # -- scope ---------------------------------------------------------------------------------------

    def wanted(self) -> set[str]:
        return set(self.traded) | set(self.watchlist) | (self.positions if self.mode == "positions_only" else set())

    def set_positions(self, symbols: Iterable[str]) -> None:
        """Open-position symbols changed (the daemon calls this): subscribe/unsubscribe to match."""
        new = {s.upper() for s in symbols}
        if new != self.positions:
            self.positions = new
            self.parser.symbols |= new
            self._resubscribe.set()

    def _channels(self, syms: Iterable[str]) -> str:
        chans = ("T", "Q") if self.cfg.quotes else ("T",)
        return ",".join(f"{c}.{s}" for s in sorted(syms) for c in chans)

    # -- the loop ------------------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt, self.cfg.reconnect_initial_seconds, self.cfg.reconnect_max_seconds)

    def _status(self, state: FeedState, detail: str = "") -> FeedStatus:
        self.state = state
        return FeedStatus(time.time_ns(), state, self.name, detail)

    async def _events(self) -> AsyncIterator[FeedEvent]:
        attempt = 0
        lost_at: int | None = None
        yield self._status(FeedState.CONNECTING, f"connecting to {self.ws_url}")
        while not self._closed:
            try:
                async for ev in self._session(lost_at):
                    attempt = 0
                    lost_at = None
                    yield ev
                reason = "server closed the connection"
            except PolygonAuthError as exc:
                self.stats["auth_failed"] += 1
                yield self._status(FeedState.FAILED, str(exc))
                return
            except SocketRefusedError as exc:
                self.stats["socket_refused"] += 1
                if not self.cfg.rest_fallback:
                    yield self._status(FeedState.FAILED, f"{exc}; REST fallback is off")
                    return
                log.warning("polygon websocket refused, polling REST instead", detail=str(exc))
                async for ev in self._poll(str(exc)):
                    yield ev
                continue
            except (TimeoutError, OSError, _DroppedError) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
            except Exception as exc:  # websockets' ConnectionClosed and friends
                reason = f"{type(exc).__name__}: {exc}"[:200]
            if self._closed:
                return
            self.stats["disconnects"] += 1
            if lost_at is None:
                lost_at = time.time_ns()
            yield self._status(FeedState.RECONNECTING, reason)
            delay = self.backoff(attempt)
            attempt += 1
            log.warning("polygon websocket lost, reconnecting", reason=reason, delay_s=round(delay, 2),
                        attempt=attempt)
            await asyncio.sleep(delay)

    async def _session(self, lost_at: int | None) -> AsyncIterator[FeedEvent]:
        import websockets
        from websockets.exceptions import InvalidStatus

        try:
            ws = await asyncio.wait_for(websockets.connect(self.ws_url, max_size=2**24, ping_interval=20,
                                                           open_timeout=10), 15)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _REFUSED_HTTP:
                raise SocketRefusedError(f"websocket refused with HTTP {status}") from None
            raise _DroppedError(f"websocket upgrade answered HTTP {status}") from None
        self._ws = ws
        self.subscribed = set()
        try:
            await self._handshake(ws)
            want = self.wanted()
            await self._send(ws, "subscribe", want)
            self.stats["connections"] += 1
            yield self._status(FeedState.STREAMING, f"subscribed {self._channels(want)}")
            if lost_at is not None:
                self.stats["gaps"] += 1
                yield GapEvent(lost_at, time.time_ns(), self.name, "websocket reconnect")
            flag: asyncio.Future[Any] = asyncio.ensure_future(self._resubscribe.wait())
            recv: asyncio.Future[Any] | None = None
            try:
                while not self._closed:
                    if recv is None:
                        recv = asyncio.ensure_future(ws.recv())
                    done, _ = await asyncio.wait({recv, flag}, return_when=asyncio.FIRST_COMPLETED)
                    if flag in done:
                        self._resubscribe.clear()
                        flag = asyncio.ensure_future(self._resubscribe.wait())
                        await self._sync_subscriptions(ws)
                    if recv not in done:
                        continue
                    raw, recv = recv.result(), None
                    for ev in self._frame_events(raw):
                        yield ev
            finally:
                flag.cancel()
                if recv is not None:
                    recv.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await recv
        finally:
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()

    def _frame_events(self, raw: str | bytes) -> list[RawTrade | RawBook | RawStatus]:
        records, statuses = self.parser.frame(raw)
        for st in statuses:
            self._on_status(st)
        for rec in records:
            if isinstance(rec, RawTrade):
                self._last_trade_ns[rec.symbol] = max(self._last_trade_ns.get(rec.symbol, 0), rec.ts_event)
        return records

    async def _handshake(self, ws: Any) -> None:
        await self._send_raw(ws, {"action": "auth", "params": self.key})
        while True:
            raw = await asyncio.wait_for(ws.recv(), 10)
            _, statuses = self.parser.frame(raw)
            for st in statuses:
                status = str(st.get("status", ""))
                msg = str(st.get("message", ""))
                if status == "connected":
                    self.stats["status_connected"] += 1
                elif status == "auth_success":
                    return
                elif status == "auth_failed":
                    if any(w in msg.lower() for w in _PLAN_WORDS):
                        raise SocketRefusedError(f"websocket refused: {msg}")
                    raise PolygonAuthError(f"authentication failed: {msg or 'no reason'} (check POLYGON_API_KEY); "
                                           "the feed will not retry")
                elif status == "max_connections":
                    raise PolygonAuthError(f"{msg or 'maximum websocket connections exceeded'} (another process "
                                           "streams with this key); the feed will not retry")
                else:
                    self._on_status(st)

    def _on_status(self, st: dict[str, Any]) -> None:
        status, msg = str(st.get("status", "")), str(st.get("message", ""))
        self.stats[f"status_{status or 'unknown'}"] += 1
        if status == "error":
            log.warning("polygon status error", message=msg[:200])
        elif status == "max_connections":
            raise PolygonAuthError(f"{msg}; the feed will not retry")
        elif status not in ("success", "connected"):
            log.info("polygon status", status=status, message=msg[:200])

    async def _send_raw(self, ws: Any, obj: dict[str, Any]) -> None:
        await ws.send(json.dumps(obj))

    async def _send(self, ws: Any, action: str, syms: Iterable[str]) -> None:
        syms = set(syms)
        if not syms:
            return
        await self._send_raw(ws, {"action": action, "params": self._channels(syms)})
        self.stats[action] += 1
        if action == "subscribe":
            self.subscribed |= syms
        else:
            self.subscribed -= syms
        log.info(f"polygon {action}", symbols=sorted(syms))

    async def _sync_subscriptions(self, ws: Any) -> None:
        want = self.wanted()
        await self._send(ws, "unsubscribe", self.subscribed - want)
        await self._send(ws, "subscribe", want - self.subscribed)

    # -- REST polling fallback -----------------------------------------------------------------------

    async def _poll(self, why: str) -> AsyncIterator[FeedEvent]:
        self.polling = True
        started = time.monotonic()
        n = self.cfg.rest_requests_per_minute
        yield self._status(FeedState.STREAMING, f"degraded: {why}; polling REST at <= {n} requests/min")
        try:
            while not self._closed:
                for sym in sorted(self.wanted()):
                    async for rec in self._poll_symbol(sym):
                        yield rec
                if time.monotonic() - started >= self.cfg.retry_socket_seconds:
                    self.stats["socket_retries"] += 1
                    return  # back to the socket; refused again = back here
        finally:
            self.polling = False

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        """One REST GET inside the budget; 429 honours Retry-After. Returns the JSON body or ``None``."""
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.rest_url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"})
        for attempt in range(4):
            await self.limiter.wait()
            self.stats["rest_requests"] += 1
            try:
                body = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).read())
                return json.loads(body)
            except urllib.error.HTTPError as exc:
                self.stats[f"rest_http_{exc.code}"] += 1
                if exc.code == 429:
                    wait = parse_retry_after(exc.headers.get("Retry-After")) or 2.0 ** attempt
                    await asyncio.sleep(min(wait, 60.0))
                    continue
                if exc.code in (401, 403):
                    raise PolygonAuthError(f"REST polling refused with HTTP {exc.code} (check POLYGON_API_KEY)") \
                        from None
                return None
            except (OSError, ValueError) as exc:
                self.stats["rest_errors"] += 1
                log.warning("polygon poll failed", path=path, error=repr(exc)[:200])
                await asyncio.sleep(min(2.0 ** attempt, 30.0))
        return None

    async def _poll_symbol(self, sym: str) -> AsyncIterator[FeedEvent]:
        nbbo = await self._get(f"/v2/last/nbbo/{sym}", {})
        res = nbbo.get("results") if isinstance(nbbo, dict) else None
        if isinstance(res, dict):
            frame = json.dumps([{"ev": "Q", "sym": sym, "bp": res.get("p"), "bs": res.get("s", 0),
                                 "ap": res.get("P"), "as": res.get("S", 0), "t": (res.get("t") or 0) // _MS,
                                 "q": res.get("q", 0)}])
            recs, _ = self.parser.frame(frame)
            for r in recs:
                yield dataclasses.replace(r, source=SOURCE_POLL)
        since = self._last_trade_ns.get(sym)
        params = {"order": "asc", "sort": "timestamp", "limit": "50000"}
        if since:
            params["timestamp.gt"] = str(since)
        else:
            params["timestamp.gte"] = str(time.time_ns() - 60 * _NS)
        body = await self._get(f"/v3/trades/{sym}", params)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            return
        for r in results:
            if not isinstance(r, dict):
                self.stats["bad_message"] += 1
                continue
            ts = r.get("sip_timestamp")
            ok, fp = _num_fp(r.get("price"))
            size = _shares(r.get("size"))
            if not _is_int(ts) or ts <= 0 or not ok or size is None:
                self.stats["bad_message"] += 1
                continue
            seq = r.get("sequence_number", 0)
            self._last_trade_ns[sym] = max(self._last_trade_ns.get(sym, 0), ts)
            self.stats["polled_trades"] += 1
            yield RawTrade(sym, ts, time.time_ns(), fp, size, Side.UNKNOWN, SideRule.NONE,
                           seq if _is_int(seq) else 0, source=SOURCE_POLL)

    async def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        await super().close()
