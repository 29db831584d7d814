"""Databento live feed: ``databento.Live`` (0.87.0) wrapped in the project's :class:`Feed` contract.

Why it looks the way it does:

* **Our own reconnect loop.** The client's ``ReconnectPolicy.RECONNECT`` retries immediately and
  forever, cannot tell a bad key from a network blip, and reports gaps only through a callback on its
  own thread. We run one ``Live`` client per connection with ``reconnect_policy="none"`` and decide
  ourselves: capped exponential backoff with jitter, a :class:`GapEvent` after every reconnect, and a
  rejected key is fatal (state ``FAILED``), never retried.
* **Blocking calls off the loop.** ``Live.subscribe`` connects and authenticates synchronously (it
  blocks on a future from the client's private event-loop thread for up to 10 s + 30 s). It runs in a
  short-lived daemon thread so the daemon's loop never stalls, under our own ``connect_timeout``; a
  hung gateway is abandoned (and its client terminated when the thread eventually returns).
* **Thread crossing via the client's own async iterator.** Records are decoded on the client's thread
  and handed over through its ``DBNQueue``, a thread-safe queue whose consumer side is awaitable
  (``async for`` on the client). We use it rather than a callback + ``call_soon_threadsafe`` because it
  gives real back-pressure: when we fall behind, the client pauses reading the socket (TCP
  back-pressure) instead of us dropping records, and the gateway's slow-reader policy then tells us
  (a counted ``SystemMsg``/``ErrorMsg``; records it skipped become a :class:`GapEvent`). No record is
  ever dropped silently on our side, and there is no per-record wake-up syscall.
* **Our own silence watchdog.** The client's monitor fires only after ``heartbeat + 10 s``; ours treats
  ``~2.5 x heartbeat`` without any record (heartbeats included) as a dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import databento_dbn as dbn

from tradebot.core.clock import Clock, SystemClock
from tradebot.core.config import Settings
from tradebot.core.contracts import front_month, root_of
from tradebot.core.logging import get_logger, register_secret
from tradebot.core.types import FeedEvent, FeedState, FeedStatus, GapEvent, RawBook, RawStatus, RawTrade
from tradebot.feeds.base import jittered_backoff
from tradebot.feeds.dbn_convert import SOURCE, DbnConverter

_FATAL_ERROR_CODES = frozenset(int(c) for c in (dbn.ErrorCode.AUTH_FAILED, dbn.ErrorCode.API_KEY_DEACTIVATED))
_SKIPPED = int(dbn.ErrorCode.SKIPPED_RECORDS_AFTER_SLOW_READING)
_TRANSIENT_REJECTION = re.compile(r"limit|internal|unavailable|try again|timeout|timed out|busy", re.I)
_TRANSPORT_ERROR = re.compile(r"^(Connection to \S+ (timed out|failed)|Authentication with \S+ timed out)")

KEY_HELP = ("check DATABENTO_API_KEY (wrong, expired or deactivated key, or no live-data access for the "
            "dataset); the feed will not retry")


class DatabentoConfigError(ValueError):
    """A configuration problem (missing key, bad symbol) found before connecting."""


class _AuthRejectedError(Exception):
    """The gateway refused our credentials: retrying would only hammer it."""


class _ConnectFailedError(Exception):
    """Could not get a streaming session this time; worth another try after a backoff."""


def _today(clock: Clock) -> dt.date:
    return dt.datetime.fromtimestamp(clock.now_ns() / 1e9, dt.UTC).date()


def _subscription_symbols(roots: list[str], stype_in: str, on: dt.date) -> list[str]:
    if stype_in == "parent":
        return [f"{r}.FUT" for r in roots]
    if stype_in == "continuous":
        return [f"{r}.c.0" for r in roots]
    return [front_month(r, on) for r in roots]


class DatabentoLiveFeed:
    """Live CME data from Databento as raw records, gap events and feed status.

    ``silence_timeout_s`` / ``connect_timeout_s`` override the defaults (2.5 x heartbeat, 15 s); the
    settings cannot express sub-5-second heartbeats (the gateway's minimum), tests need shorter ones.
    """

    name = "databento"

    def __init__(self, settings: Settings, symbols: list[str], *, clock: Clock | None = None,
                 silence_timeout_s: float | None = None, connect_timeout_s: float | None = None,
                 logger: Any = None) -> None:
        key = settings.databento_api_key
        if key is None or not key.get_secret_value().strip():
            raise DatabentoConfigError("DATABENTO_API_KEY is not set: the databento live feed needs an API key "
                                       "(export DATABENTO_API_KEY=db-... or put it in .env)")
        self._key = key.get_secret_value().strip()
        register_secret(self._key)
        roots: list[str] = []
        for s in symbols:
            root = root_of(s)
            if root is None:
                raise DatabentoConfigError(f"unknown contract {s!r} for the databento feed")
            if root not in roots:
                roots.append(root)
        if not roots:
            raise DatabentoConfigError("the databento feed needs at least one symbol")
        self.cfg = settings.databento
        self.roots = roots
        self.clock = clock or SystemClock()
        self.log = logger if logger is not None else get_logger("tradebot.feeds.databento")
        hb = float(self.cfg.heartbeat_interval_seconds)
        self.silence_timeout = silence_timeout_s if silence_timeout_s is not None else 2.5 * hb
        self.connect_timeout = connect_timeout_s if connect_timeout_s is not None else 15.0
        book = self.cfg.book_schema
        # TBBO carries every trade with the quote before it: alone it is the trades stream.
        self.schemas = ["tbbo"] if book == "tbbo" else ["trades"] + ([] if book == "none" else [book])
        self.converter = DbnConverter(trades_from_book=book == "tbbo", source=SOURCE, logger=self.log)
        self.stats: Counter[str] = self.converter.stats
        """One counter for record kinds (converter) and connection events (here)."""
        self.state = FeedState.CONNECTING
        self.gateway = self.cfg.gateway
        self._closing = False
        self._wake = asyncio.Event()
        self._client: Any = None
        self._last_ts: int | None = None
        self._rx = 0
        self._want: dict[str, bool] = {}
        self._want_day: dt.date | None = None
        self._fatal: str | None = None

    # -- Feed protocol -----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self._run()

    async def close(self) -> None:
        """Stop promptly: terminate the session and wake any backoff sleep; iteration then ends."""
        self._closing = True
        self._wake.set()
        self._terminate()
        if self.state is not FeedState.FAILED:
            self.state = FeedState.STOPPED

    # -- main loop ---------------------------------------------------------------------------------

    def _status(self, state: FeedState, detail: str, **extra: int) -> FeedStatus:
        self.state = state
        return FeedStatus(self.clock.now_ns(), state, SOURCE, detail, dict(extra))

    async def _run(self) -> AsyncIterator[FeedEvent]:
        attempt = 0
        gap_start: int | None = None
        gap_reason = ""
        down_since = 0.0
        where = f"{self.gateway or self.cfg.dataset.lower().replace('.', '-') + '.lsg.databento.com'}:{self.cfg.port}"
        yield self._status(FeedState.CONNECTING, f"connecting to {where}: {self.cfg.dataset} {'+'.join(self.schemas)}"
                                                 f" {','.join(self.roots)} ({self.cfg.stype_in})")
        while not self._closing:
            try:
                client = await self._connect()
            except _AuthRejectedError as exc:
                self.stats["auth_failures"] += 1
                msg = f"authentication failed: {exc}; {KEY_HELP}"
                self.log.error("databento live feed failed", detail=msg)
                yield self._status(FeedState.FAILED, msg)
                return
            except DatabentoConfigError as exc:
                self.log.error("databento live feed failed", detail=str(exc))
                yield self._status(FeedState.FAILED, str(exc))
                return
            except _ConnectFailedError as exc:
                if self._closing:
                    break
                self.stats["connect_failures"] += 1
                attempt += 1
                if gap_start is None and self._last_ts is not None:
                    gap_start, gap_reason, down_since = self._last_ts, str(exc), time.monotonic()
                delay = self._backoff(attempt)
                self.log.warning("databento connect failed", error=str(exc), attempt=attempt, retry_in=delay)
                yield self._status(FeedState.RECONNECTING, f"connect failed ({exc}); attempt {attempt}, "
                                                           f"retry in {delay:.2f}s", attempt=attempt)
                await self._sleep(delay)
                continue

            self.stats["connects"] += 1
            if attempt or gap_start is not None:
                self.stats["reconnects"] += 1
                detail = (f"reconnected after {attempt} attempt(s), down {time.monotonic() - down_since:.1f}s"
                          if gap_start is not None else f"connected after {attempt} attempt(s)")
            else:
                detail = "connected"
            session_id = getattr(client, "session_id", None)
            self.log.info("databento streaming", detail=detail, session_id=session_id)
            yield self._status(FeedState.STREAMING, f"{detail} (session {session_id})", attempt=attempt)
            started = time.monotonic()
            first = True
            reason = "connection closed by the gateway"
            silent = _Watchdog(self)
            try:
                async for rec in client:
                    self._rx += 1
                    ts = rec.ts_event
                    if first:
                        first = False
                        if gap_start is not None:
                            end = ts if ts > gap_start else max(self.clock.now_ns(), gap_start + 1)
                            self.stats["gaps"] += 1
                            yield GapEvent(gap_start, end, SOURCE, gap_reason)
                            gap_start = None
                    if type(rec) is dbn.ErrorMsg:
                        skipped = self._on_error(rec, self._last_ts)
                        if skipped is not None:
                            yield skipped
                    self._last_ts = ts
                    for out in self.converter.convert(rec):
                        if self._wanted(out):
                            yield out
            except Exception as exc:  # BentoError / OSError from the client when the session dies
                reason = str(exc) or type(exc).__name__
            finally:
                silent.stop()
                self._terminate()
            if silent.fired:
                reason = f"no data or heartbeat for {self.silence_timeout:.1f}s"
                self.stats["silent_timeouts"] += 1
            elif "Gateway timeout" in reason:
                self.stats["silent_timeouts"] += 1
            if self._closing:
                break
            if self._fatal is not None:
                msg = f"gateway rejected the session: {self._fatal}; {KEY_HELP}"
                self.log.error("databento live feed failed", detail=msg)
                yield self._status(FeedState.FAILED, msg)
                return
            if time.monotonic() - started > max(self.cfg.reconnect_max_seconds, 5.0):
                attempt = 0  # a healthy session: start the backoff over (a flapping one keeps backing off)
            attempt += 1
            if gap_start is None:
                gap_start = self._last_ts if self._last_ts is not None else self.clock.now_ns()
                gap_reason, down_since = reason, time.monotonic()
            self.stats["disconnects"] += 1
            delay = self._backoff(attempt)
            self.log.warning("databento connection lost", reason=reason, attempt=attempt, retry_in=delay)
            yield self._status(FeedState.RECONNECTING, f"connection lost ({reason}); attempt {attempt}, "
                                                       f"retry in {delay:.2f}s", attempt=attempt)
            await self._sleep(delay)
        if self.state is not FeedState.FAILED:
            yield self._status(FeedState.STOPPED, "closed")

    # -- helpers -----------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt - 1, self.cfg.reconnect_initial_seconds, self.cfg.reconnect_max_seconds)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        if self._closing:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _terminate(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.terminate()

    def _on_error(self, rec: Any, last_ts: int | None) -> GapEvent | None:
        """Key errors end the feed once the session closes; records skipped for a slow reader are a gap."""
        code = rec.code
        if code is None:
            return None
        if int(code) in _FATAL_ERROR_CODES:
            self._fatal = str(rec.err)
        elif int(code) == _SKIPPED and last_ts is not None and rec.ts_event > last_ts:
            self.stats["gaps"] += 1
            self.stats["slow_reader_skips"] += 1
            return GapEvent(last_ts, rec.ts_event, SOURCE, f"gateway skipped records: {rec.err}")
        return None

    def _wanted(self, out: RawTrade | RawBook | RawStatus) -> bool:
        """Parent symbology (``ES.FUT``) streams every ES expiry and spread; keep the front month only.

        Unmapped records (empty symbol) pass: the validator counts them as ``unknown_instrument``.
        """
        sym = out.symbol
        ok = self._want.get(sym)
        if ok is None:
            today = _today(self.clock)
            if today != self._want_day:
                self._want.clear()
                self._want_day = today
            root = root_of(sym) if sym else None
            if not sym:
                ok = True
            elif root is None or root not in self.roots:
                ok = False
            elif self.cfg.stype_in == "parent":
                ok = sym == front_month(root, today)
            else:
                ok = True
            self._want[sym] = ok
        if not ok:
            self.stats["filtered_other_contract"] += 1
        return ok

    async def _connect(self) -> Any:
        """A subscribed, authenticated ``Live`` client (or _AuthRejectedError / _ConnectFailedError)."""
        import databento as db

        today = _today(self.clock)
        symbols = _subscription_symbols(self.roots, self.cfg.stype_in, today)
        self._want.clear()

        def connect() -> Any:
            client = db.Live(key=self._key, gateway=self.gateway, port=self.cfg.port,
                             heartbeat_interval_s=self.cfg.heartbeat_interval_seconds, reconnect_policy="none")
            try:
                for schema in self.schemas:
                    client.subscribe(dataset=self.cfg.dataset, schema=schema, symbols=symbols,
                                     stype_in=self.cfg.stype_in)
            except BaseException:
                with contextlib.suppress(Exception):
                    client.terminate()
                raise
            return client

        attempt = asyncio.ensure_future(_in_daemon_thread(connect, self.connect_timeout, _terminate_client))
        closing = asyncio.ensure_future(self._wake.wait())  # only close() sets it outside a backoff sleep
        try:
            await asyncio.wait({attempt, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if not attempt.done():
            attempt.cancel()  # abandons the thread; a late client is terminated when it returns
            with contextlib.suppress(BaseException):
                await attempt
            raise _ConnectFailedError("closing")
        try:
            client = attempt.result()
        except TimeoutError:
            raise _ConnectFailedError(f"no answer from the gateway within {self.connect_timeout:.1f}s") from None
        except ValueError as exc:  # invalid dataset/schema/stype: a configuration error, not transient
            raise DatabentoConfigError(f"databento subscription rejected locally: {exc}") from None
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            if type(exc).__name__ == "BentoError" and not _TRANSPORT_ERROR.match(text) \
                    and not _TRANSIENT_REJECTION.search(text):
                raise _AuthRejectedError(text) from None
            raise _ConnectFailedError(text) from None
        if self._closing:
            _terminate_client(client)
            raise _ConnectFailedError("closing")
        self._client = client
        self._fatal = None
        return client


def _terminate_client(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.terminate()


async def _in_daemon_thread(fn: Callable[[], Any], limit_s: float, discard: Callable[[Any], None]) -> Any:
    """Run a blocking call in a daemon thread; on timeout abandon it and ``discard`` any late result.

    Not ``asyncio.to_thread``: the default executor is joined at shutdown, and a call blocked on a hung
    gateway would hold the process up to the client's own 30 s timeout.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    abandoned = threading.Event()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            if ok:
                discard(value)
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def work() -> None:
        try:
            value, ok = fn(), True
        except BaseException as exc:
            value, ok = exc, False
        if abandoned.is_set():
            if ok:
                discard(value)
            return
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is gone
            if ok:
                discard(value)

    threading.Thread(target=work, name="databento-connect", daemon=True).start()
    try:
        return await asyncio.wait_for(fut, limit_s)
    except BaseException:
        abandoned.set()
        raise


class _Watchdog:
    """Terminates the session when nothing (not even a heartbeat) arrived for ``silence_timeout``.

    Polls a record counter instead of timing each record, so the hot path pays one increment.
    """

    def __init__(self, feed: DatabentoLiveFeed) -> None:
        self.feed = feed
        self.fired = False
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        feed = self.feed
        step = max(0.05, min(1.0, feed.silence_timeout / 5))
        seen = feed._rx
        quiet_since = time.monotonic()
        while True:
            await asyncio.sleep(step)
            if feed._want_day is not None and feed._want_day != _today(feed.clock):
                feed._want.clear()  # a new day may have a new front month
            if feed._rx != seen:
                seen = feed._rx
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= feed.silence_timeout:
                self.fired = True
                feed.log.warning("databento gateway silent", seconds=round(time.monotonic() - quiet_since, 1))
                feed._terminate()
                return

    def stop(self) -> None:
        self._task.cancel()
