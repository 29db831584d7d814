"""Polygon.io / Massive REST history: one day of trades and quotes for a ticker, replayed as a Feed.

Why the design looks the way it does:

* **Transport.** The official ``polygon-api-client`` builds the URLs, query parameters and auth header, but its
  own page iterator cannot be used: it silently returns an empty list on a body that is not JSON (a day cut
  short without a trace), and after a failed page it can only start again from page 1. So pages are fetched
  one at a time with ``raw=True`` and ``next_url`` is followed here. The client's urllib3 ``Retry`` (3 tries,
  0.1 s backoff, honouring Retry-After by itself) is replaced by a pool with ``retries=False`` that raises
  every non-200 with its status and Retry-After, so the retry policy in force is *this* module's, bounded
  and counted. The client also never passes its ``connect_timeout``/``read_timeout`` to urllib3 (v1.16), so
  a stalled server would hang a worker thread forever; the pool carries the timeouts instead.
* **Off the loop.** The client is synchronous; each page (request, JSON decode, conversion to raw records)
  runs in ``asyncio.to_thread`` and the next page is prefetched while the current one is replayed.
* **Time.** ``ts_event`` = ``ts_recv`` = ``sip_timestamp``: the SIP stamps trades and quotes of every venue on
  one clock, and the vendor sorts by it, so it is the only timestamp that orders the two streams against
  each other. ``participant_timestamp`` is each venue's own clock and is not used.
* **Aggressor side.** Equity trades carry no aggressor flag, so the feed emits them unsided and the validation
  layer infers the side like every other unsided source (:mod:`tradebot.feeds.sides`: quote rule against the
  prevailing quote, tick rule at the mid or without one). The merge puts the trade first at equal timestamps
  (a quote with the same timestamp may be the trade's own consequence), so the quote a trade is compared with
  is the last one strictly before it. A stored day (``data fetch``) keeps the sides unknown too, so a replay
  infers them with the rule recorded on each event instead of passing a guess off as the exchange's word.
* **Order.** Pages are asked for ascending and merged as they stream (memory: one page per stream). A stream
  whose first page comes newest-first (e.g. a body recorded with ``order=desc``) is buffered whole and
  sorted rather than replayed backwards.
* **Aggregates fallback** (``aggregates_fallback=True``, or trades answered 403 "not entitled"): see
  :func:`bars_to_prints`. It is approximate by construction and labelled ``source="polygon-aggs-approx"``.

Size: one vendor's REST history end to end: transport, paging, the bounded retry policy and conversion to feed
events, each of which this docstring explains against the official client's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from operator import attrgetter, itemgetter
from typing import Any, Literal, TypeGuard
from urllib.parse import parse_qsl, urlparse

import certifi
import urllib3
from polygon import RESTClient
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from tradebot.core.logging import get_logger, register_secret
from tradebot.core.prices import decimal_to_fp, float_to_fp
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.base import Pacer

DEFAULT_BASE_URL = "https://api.polygon.io"
SOURCE_TRADES = "polygon-trades"
SOURCE_QUOTES = "polygon-quotes"
SOURCE_AGGS = "polygon-aggs-approx"
PAGE_LIMIT = 10_000
"""Records per page (vendor max 50,000). ``json.loads`` holds the GIL for a whole body even in the worker
thread, so the page size bounds how long the event loop can stall: measured ~32 ms per 10,000-record page
of trades + quotes, ~230 ms at 50,000."""
RETRY_STATUSES = frozenset({500, 502, 503, 504})
UNAVAILABLE_STATUSES = frozenset({403})
"""Polygon answers 403 NOT_AUTHORIZED when the plan does not include the data (e.g. trades)."""
BAR_NS = 60_000_000_000
_LOG_FIRST = 5

Kind = Literal["trades", "quotes", "aggs"]
TradeTuple = tuple[int, int | None, int, int]
"""(ts_event, price_fp, size, sequence): a trade as parsed from a page (no side: equities carry none)."""

log = get_logger("tradebot.feeds.polygon_rest")


class PolygonConfigError(ValueError):
    """Raised at construction: the feed cannot work at all (no key)."""


class PolygonFeedError(Exception):
    """A fetch failed for good; the feed turns it into a FAILED status instead of raising into the loop."""


class PolygonUnavailableError(PolygonFeedError):
    """The vendor says this data is not in the plan (403): callers may fall back to something else."""


class PolygonHTTPError(Exception):
    """A non-200 answer with what the retry policy needs (status, Retry-After in seconds)."""

    def __init__(self, status: int, retry_after: float | None, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.retry_after = retry_after
        self.body = body


class MalformedPageError(Exception):
    """The body was not the JSON shape of a results page (truncated, HTML error page, ...)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); ``None`` if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _StatusPool(urllib3.PoolManager):
    """A pool whose non-200 answers raise with status and Retry-After (the client would keep only the body)."""

    def urlopen(  # type: ignore[override]  # same signature and ignore as urllib3's own PoolManager
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        resp = super().urlopen(method, url, redirect=redirect, **kw)
        if resp.status != 200:
            body = resp.data.decode("utf-8", "replace")
            raise PolygonHTTPError(resp.status, parse_retry_after(resp.headers.get("Retry-After")), body)
        return resp


# ---------------------------------------------------------------------------------------------------
# Page parsing (runs in the worker thread)


@dataclass(slots=True)
class _Page:
    records: list[Any]
    next_params: dict[str, str] | None
    counts: Counter[str] = field(default_factory=Counter)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _price_fp(v: object) -> tuple[bool, int | None]:
    """(ok, fixed point): not ok when the value is not a JSON number at all; fp ``None`` when not finite."""
    if _is_int(v):
        return True, decimal_to_fp(v)
    if isinstance(v, float):
        return True, float_to_fp(v)
    return False, None


def _size(v: object) -> int | None:
    """An integer size; ``None`` when missing, not a number or fractional (fractional shares)."""
    if _is_int(v):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _decode(data: bytes) -> tuple[list[Any], dict[str, str] | None]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPageError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedPageError(f"expected a JSON object, got {type(obj).__name__}")
    results = obj.get("results", [])  # no key = no data (the aggs endpoint omits it on an empty range)
    if not isinstance(results, list):
        raise MalformedPageError(f"'results' is {type(results).__name__}, not a list")
    nxt = obj.get("next_url")
    next_params: dict[str, str] | None = None
    if isinstance(nxt, str) and nxt:
        next_params = dict(parse_qsl(urlparse(nxt).query))
        if not next_params:
            raise MalformedPageError(f"next_url without a cursor: {nxt[:120]}")
    return results, next_params


def parse_trades(data: bytes) -> _Page:
    results, next_params = _decode(data)
    page = _Page([], next_params)
    out = page.records
    for r in results:
        if not isinstance(r, dict):
            page.counts["malformed_record"] += 1
            continue
        ts = r.get("sip_timestamp")
        ok, fp = _price_fp(r.get("price"))
        size = _size(r.get("size"))
        if not _is_int(ts) or ts <= 0 or not ok:
            page.counts["malformed_record"] += 1
            continue
        if size is None:
            page.counts["fractional_size" if isinstance(r.get("size"), float) else "malformed_record"] += 1
            continue
        seq = r.get("sequence_number", 0)
        out.append((ts, fp, size, seq if _is_int(seq) else 0))
    return page


def _side(r: dict[str, Any], px_key: str, sz_key: str) -> tuple[bool, int | None, int]:
    px = r.get(px_key)
    if px is None:
        return True, None, 0  # an empty side, not an error
    ok, fp = _price_fp(px)
    sz = _size(r.get(sz_key, 0))
    if not ok or sz is None:
        return False, None, 0
    return True, fp, sz


def parse_quotes(data: bytes, symbol: str) -> _Page:
    results, next_params = _decode(data)
    page = _Page([], next_params)
    out = page.records
    for r in results:
        if not isinstance(r, dict):
            page.counts["malformed_record"] += 1
            continue
        ts = r.get("sip_timestamp")
        bok, bpx, bsz = _side(r, "bid_price", "bid_size")
        aok, apx, asz = _side(r, "ask_price", "ask_size")
        if not _is_int(ts) or ts <= 0 or not (bok and aok) or ("bid_price" not in r and "ask_price" not in r):
            page.counts["malformed_record"] += 1
            continue
        seq = r.get("sequence_number", 0)
        out.append(RawBook(symbol, ts, ts, (bpx,), (bsz,), (apx,), (asz,),
                           sequence=seq if _is_int(seq) else 0, source=SOURCE_QUOTES))
    return page


def bars_to_prints(o: int, h: int, low: int, c: int, volume: int, t_ns: int,
                   bar_ns: int = BAR_NS) -> list[TradeTuple]:
    """Synthesize trades from one OHLCV bar: an approximation, never the real tape.

    Four prints at quarters of the bar: open, then the extreme nearer in the usual path (an up bar, close >=
    open, is assumed to have visited the low first; a down bar the high first), the other extreme, close.
    Volume is split into four equal integer parts, the remainder on the close, so the bar's volume and
    OHLC are exact while timing inside the bar and the volume at each price are invented. Prints with no
    volume (bars of fewer than four units) are dropped.
    """
    path = (o, low, h, c) if c >= o else (o, h, low, c)
    base, rem = divmod(volume, 4)
    sizes = (base, base, base, base + rem)
    step = bar_ns // 4
    return [(t_ns + i * step, px, sz, 0) for i, (px, sz) in enumerate(zip(path, sizes, strict=True)) if sz > 0]


def _volume(v: object) -> int | None:
    if _is_int(v):
        return v
    if isinstance(v, float):
        try:
            return int(Decimal(repr(v)))  # floor towards zero without binary maths
        except (InvalidOperation, ValueError, OverflowError):
            return None
    return None


def parse_aggs(data: bytes) -> _Page:
    results, next_params = _decode(data)
    page = _Page([], next_params)
    out = page.records
    for r in results:
        if not isinstance(r, dict):
            page.counts["malformed_record"] += 1
            continue
        t = r.get("t")
        pxs = [_price_fp(r.get(k)) for k in ("o", "h", "l", "c")]
        vol = _volume(r.get("v"))
        if not _is_int(t) or t <= 0 or vol is None or vol < 0 or not all(ok and fp for ok, fp in pxs):
            page.counts["malformed_record"] += 1
            continue
        o, h, low, c = (fp for _, fp in pxs)
        assert o is not None and h is not None and low is not None and c is not None
        page.counts["bars"] += 1
        out.extend(bars_to_prints(o, h, low, c, vol, t * 1_000_000))
    return page


# ---------------------------------------------------------------------------------------------------
# The feed


class PolygonHistoryFeed:
    """One day of a ticker's trades (+ quotes) from the Polygon/Massive REST API, as a paced Feed.

    Every failure ends as counted ``stats`` and, when the day cannot be completed, a ``FeedStatus(FAILED)``
    as the last event; iteration itself never raises.
    """

    def __init__(self, api_key: str | None, ticker: str, day: dt.date, *, symbol: str | None = None,
                 base_url: str | None = None, speed: float = 0.0, use_quotes: bool = True,
                 aggregates_fallback: bool = False, max_retries: int = 5, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0, retry_after_max: float = 120.0, connect_timeout: float = 10.0,
                 read_timeout: float = 30.0, page_limit: int = PAGE_LIMIT) -> None:
        if api_key is None or not api_key.strip():
            raise PolygonConfigError("POLYGON_API_KEY is not set: the Polygon/Massive history feed needs an API key")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        register_secret(api_key)
        self.ticker = ticker
        self.day = day
        self.symbol = symbol or ticker
        self.use_quotes = use_quotes
        self.aggregates_fallback = aggregates_fallback
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.page_limit = page_limit
        self.name = f"polygon:{ticker}:{day.isoformat()}"
        self.state = FeedState.CONNECTING
        self.stats: Counter[str] = Counter()
        self._speed = speed
        self._closed = False
        self._rest = RESTClient(api_key=api_key, base=(base_url or DEFAULT_BASE_URL).rstrip("/"), retries=0,
                                pagination=False)
        self._rest.client.clear()
        self._rest.client = _StatusPool(
            num_pools=4, headers=self._rest.headers, ca_certs=certifi.where(), cert_reqs="CERT_REQUIRED",
            retries=False, timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout))

    # -- Feed protocol -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self._run()

    async def close(self) -> None:
        self._closed = True
        if self.state not in (FeedState.FAILED, FeedState.STOPPED):
            self.state = FeedState.STOPPED
        self._rest.client.clear()

    # -- fetching -----------------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_initial * 2 ** attempt))

    def _first_params(self, kind: Kind) -> dict[str, str]:
        if kind == "aggs":
            return {"adjusted": "false", "sort": "asc", "limit": str(self.page_limit)}
        return {"timestamp": self.day.isoformat(), "order": "asc", "sort": "timestamp",
                "limit": str(self.page_limit)}

    def _fetch_sync(self, kind: Kind, params: dict[str, str]) -> _Page:
        # ``params`` is copied: the client writes its own keyword arguments into the dict it is given.
        if kind == "trades":
            resp = self._rest.list_trades(self.ticker, params=dict(params), raw=True)
            return parse_trades(resp.data)
        if kind == "quotes":
            resp = self._rest.list_quotes(self.ticker, params=dict(params), raw=True)
            return parse_quotes(resp.data, self.symbol)
        day = self.day.isoformat()
        resp = self._rest.get_aggs(self.ticker, 1, "minute", day, day, params=dict(params), raw=True)
        return parse_aggs(resp.data)

    async def _get_page(self, kind: Kind, params: dict[str, str]) -> _Page:
        """One page under the retry policy: bounded, counted, and the only one in force."""
        attempt = 0
        while True:
            self.stats["requests"] += 1
            try:
                page = await asyncio.to_thread(self._fetch_sync, kind, params)
            except PolygonHTTPError as exc:
                reason = f"http_{exc.status}"
                self.stats[reason] += 1
                if exc.status == 429:
                    wait = exc.retry_after if exc.retry_after is not None else self.backoff(attempt)
                    delay = min(wait, self.retry_after_max)
                elif exc.status in RETRY_STATUSES:
                    delay = self.backoff(attempt)
                elif exc.status in UNAVAILABLE_STATUSES:
                    raise PolygonUnavailableError(
                        f"{kind}: HTTP {exc.status} (not in the plan?): {exc.body[:200]}") from None
                else:
                    hint = " (check POLYGON_API_KEY)" if exc.status == 401 else ""
                    raise PolygonFeedError(f"{kind}: HTTP {exc.status}{hint}: {exc.body[:200]}") from None
                detail = str(exc)
            except MalformedPageError as exc:
                # A 200 with a broken body is usually a truncated transfer: retried under the same bound.
                reason, detail, delay = "malformed_page", str(exc), self.backoff(attempt)
                self.stats[reason] += 1
            except Urllib3Timeout as exc:
                # urllib3 2 makes NewConnectionError (refused, DNS) a ConnectTimeoutError; keep them apart.
                reason = "http_connection_error" if isinstance(exc, NewConnectionError) else "http_timeout"
                detail, delay = repr(exc), self.backoff(attempt)
                self.stats[reason] += 1
            except (Urllib3Error, OSError) as exc:
                reason, detail, delay = "http_connection_error", repr(exc), self.backoff(attempt)
                self.stats[reason] += 1
            else:
                self.stats["pages"] += 1
                self.stats.update(page.counts)
                if page.counts["malformed_record"]:
                    log.warning("polygon records rejected", feed=self.name, kind=kind,
                                malformed=page.counts["malformed_record"], total=self.stats["malformed_record"])
                return page
            if attempt >= self.max_retries:
                raise PolygonFeedError(f"{kind}: gave up after {attempt + 1} attempts; last: {reason}: {detail[:200]}")
            attempt += 1
            self.stats["retries"] += 1
            log.warning("polygon request failed, retrying", feed=self.name, kind=kind, reason=reason,
                        attempt=attempt, max_retries=self.max_retries, delay_s=round(delay, 3), detail=detail[:200])
            await asyncio.sleep(delay)

    async def _pages(self, kind: Kind, first: _Page | None = None,
                     optional: bool = False) -> AsyncGenerator[list[Any], None]:
        """Pages of one stream in ascending time, the next page prefetched while this one is replayed."""
        key: Callable[[Any], int] = attrgetter("ts_event") if kind == "quotes" else itemgetter(0)
        nxt: asyncio.Task[_Page] | None = None
        try:
            if first is None:
                try:
                    first = await self._get_page(kind, self._first_params(kind))
                except PolygonUnavailableError as exc:
                    if not optional:
                        raise
                    self.stats[f"{kind}_unavailable"] += 1
                    log.warning("polygon data unavailable, continuing without it", feed=self.name, kind=kind,
                                detail=str(exc))
                    return
            page = first
            recs = page.records
            if len(recs) > 1 and key(recs[0]) > key(recs[-1]):
                self.stats[f"{kind}_buffered_desc"] += 1
                log.info("polygon pages arrive newest-first; buffering the stream to sort it", feed=self.name,
                         kind=kind)
                everything = list(recs)
                while page.next_params is not None:
                    page = await self._get_page(kind, page.next_params)
                    everything.extend(page.records)
                everything.sort(key=key)
                yield everything
                return
            last_ts = -1
            while True:
                if page.next_params is not None:
                    nxt = asyncio.create_task(self._get_page(kind, page.next_params))
                recs.sort(key=key)  # stable; linear when already ascending
                if recs:
                    if key(recs[0]) < last_ts:
                        self.stats["out_of_order_page"] += 1
                        log.warning("polygon page starts before the previous one ended", feed=self.name, kind=kind)
                    last_ts = key(recs[-1])
                    yield recs
                if nxt is None:
                    return
                page = await nxt
                nxt = None
                recs = page.records
        finally:
            if nxt is not None:
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await nxt

    # -- replay -------------------------------------------------------------------------------------

    def _status(self, state: FeedState, detail: str = "") -> FeedStatus:
        self.state = state
        return FeedStatus(time.time_ns(), state, source=self.name, detail=detail, extra=dict(self.stats))

    async def _run(self) -> AsyncGenerator[FeedEvent, None]:
        self.state = FeedState.CONNECTING
        pacer = Pacer(self._speed)
        try:
            first: _Page | None = None
            if not self.aggregates_fallback:
                try:
                    first = await self._get_page("trades", self._first_params("trades"))
                except PolygonUnavailableError as exc:
                    self.stats["trades_unavailable"] += 1
                    log.warning("polygon trades unavailable; falling back to minute aggregates", feed=self.name,
                                detail=str(exc))
            if first is not None:
                yield self._status(FeedState.STREAMING, "trades" + (" + quotes" if self.use_quotes else ""))
                quotes = self._pages("quotes", optional=True) if self.use_quotes else None
                merged = self._merge(self._pages("trades", first), quotes, SOURCE_TRADES, pacer)
                async with contextlib.aclosing(merged) as events:
                    async for ev in events:
                        yield ev
            else:
                log.warning("polygon trades synthesized from minute aggregates: APPROXIMATE (4 prints per bar, "
                            "volume split evenly, side by tick rule)", feed=self.name, source=SOURCE_AGGS)
                self.stats["approximate"] = 1
                yield self._status(FeedState.STREAMING, f"approximate: {SOURCE_AGGS}")
                async with contextlib.aclosing(self._merge(self._pages("aggs"), None, SOURCE_AGGS, pacer)) as events:
                    async for ev in events:
                        yield ev
        except PolygonFeedError as exc:
            self.stats["failed"] += 1
            log.error("polygon history feed failed", feed=self.name, error=str(exc), stats=dict(self.stats))
            yield self._status(FeedState.FAILED, str(exc))
            return
        except Exception as exc:  # a vendor-client surprise must end the feed, not the daemon's loop
            self.stats["failed"] += 1
            self.stats["unexpected_error"] += 1
            log.exception("polygon history feed failed unexpectedly", feed=self.name, error=repr(exc))
            yield self._status(FeedState.FAILED, f"unexpected: {exc!r}"[:300])
            return
        if self.state is not FeedState.FAILED:
            yield self._status(FeedState.STOPPED, "closed" if self._closed else "end of day")

    async def _merge(self, trades: AsyncGenerator[list[TradeTuple], None],
                     quotes: AsyncGenerator[list[RawBook], None] | None, source: str,
                     pacer: Pacer) -> AsyncGenerator[FeedEvent, None]:
        """Two ascending page streams merged by timestamp (trade first on a tie); trades unsided (see above)."""
        unsided = Side.UNKNOWN, SideRule.NONE
        symbol = self.symbol
        tp: Sequence[TradeTuple] = ()
        qp: Sequence[RawBook] = ()
        ti = qi = 0
        t_live, q_live = True, quotes is not None
        n_trades = n_quotes = 0
        try:
            while not self._closed:
                while t_live and ti >= len(tp):
                    got_t = await anext(trades, None)
                    t_live, tp, ti = got_t is not None, got_t or (), 0
                while q_live and qi >= len(qp):
                    assert quotes is not None
                    got_q = await anext(quotes, None)
                    q_live, qp, qi = got_q is not None, got_q or (), 0
                have_t, have_q = ti < len(tp), qi < len(qp)
                if not have_t and not have_q:
                    break
                if have_q and (not have_t or qp[qi].ts_event < tp[ti][0]):
                    book = qp[qi]
                    qi += 1
                    n_quotes += 1
                    await pacer.wait(book.ts_event)
                    yield book
                else:
                    ts, px, size, seq = tp[ti]
                    ti += 1
                    n_trades += 1
                    await pacer.wait(ts)
                    yield RawTrade(symbol, ts, ts, px, size, *unsided, seq, 0, source)
        finally:
            self.stats["trades"] += n_trades
            self.stats["quotes"] += n_quotes
            await trades.aclose()
            if quotes is not None:
                await quotes.aclose()
