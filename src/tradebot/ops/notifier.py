"""The notification worker: never blocks trading, survives restarts, respects Discord.

Producers call :meth:`Notifier.notify` (a non-blocking enqueue) or write straight to the durable outbox (the
execution manager does, inside its journal transaction) and :meth:`Notifier.wake` it. The worker task moves
queued notifications into the outbox, then delivers pending ones in order. Delivery honours Discord's
``X-RateLimit-*`` headers and 429 ``retry_after``, retries 5xx and timeouts with capped backoff, and on 401/404
(a deleted or wrong webhook) disables itself and says so loudly, because retrying cannot fix that.

One event, one message: trades, limits, halts, tier changes and recovery alerts are never collapsed. Only a
condition that repeats (a flapping feed, the same component failing on every tick; see ``COLLAPSIBLE_KINDS``)
collapses, on its kind and subject, as it is notified: the first occurrence goes out at once, later ones within
the window are counted in memory (never queued or written), and when the window closes one durable summary
"(xN)" message says how many there were (N counts the first too).

Webhooks take no idempotency key, so delivery is at-least-once: a post whose answer never came (read timeout,
connection dropped after sending) may have been accepted, and its retry may duplicate it. The client timeout is
far above Discord's answer times and every post uses ``?wait=true`` so the answer states the outcome; a success
after such an ambiguous attempt is counted as a possible duplicate (``stats``, heartbeat, outbox, digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification, Severity
from tradebot.ops.discord import build_payload
from tradebot.ops.notifications import Outbox

_SEVERITY_LOG = {Severity.INFO: "info", Severity.SUCCESS: "info", Severity.WARNING: "warning",
                 Severity.CRITICAL: "error"}


# Sent but unanswered: the webhook may have accepted the post. Connect failures are not ambiguous (nothing was sent).
_AMBIGUOUS = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteTimeout, httpx.WriteError)


@dataclass
class _Window:
    opened: float
    last: Notification
    count: int = 0
    last_at: float = 0.0


class Notifier:
    def __init__(self, webhook_url: str | None, outbox: Outbox, *, disabled_kinds: Iterable[str] = (),
                 collapse_seconds: float = 60.0, timeout_seconds: float = 30.0, backoff_initial: float = 1.0,
                 backoff_max: float = 60.0, max_retry_after: float = 300.0, attempts_per_round: int = 5,
                 queue_size: int = 10_000, transport: httpx.AsyncBaseTransport | None = None,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self._url = webhook_url
        self.outbox = outbox
        self.disabled_kinds = set(disabled_kinds)
        self.collapse_seconds = collapse_seconds
        self.timeout = timeout_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.attempts_per_round = attempts_per_round
        self._queue: asyncio.Queue[Notification] | None = None
        self._queue_size = queue_size
        self._transport = transport
        self._now_ns = now_ns
        self._wake = asyncio.Event()
        self._stop = False
        self._not_before = 0.0
        self._windows: dict[str, _Window] = {}
        self._delivered_unrecorded: set[int] = set()
        self._direct: list[Notification] = []
        """Alerts that could not be written to the outbox (a full disk): delivered from memory, first."""
        self.stats: Counter[str] = Counter()
        self.disabled = False
        self.log = get_logger("tradebot.notifier")

    @property
    def mode(self) -> str:
        if self._url is None:
            return "log"
        return "disabled" if self.disabled else "discord"

    # -- producers (never block) -----------------------------------------------------------------------

    def notify(self, n: Notification) -> None:
        if n.kind in self.disabled_kinds:
            self.stats["skipped_kind"] += 1
            return
        if n.collapsible:
            # Counted here, before the queue: an exception on every tick must not become thousands of outbox
            # writes on the event loop. The first of a window goes out; the rest become its "(xN)" summary.
            key = n.dedupe_key
            w = self._windows.get(key)
            now = time.monotonic()
            if w is not None and now - w.opened < self.collapse_seconds:
                w.count += 1
                w.last = n
                w.last_at = now
                self.stats["collapsed"] += 1
                return
            self._windows[key] = _Window(now, n, last_at=now)
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        try:
            self._queue.put_nowait(n)
        except asyncio.QueueFull:
            self.stats["dropped_queue_full"] += 1
            self.log.error("notification queue full, dropped", kind=n.kind, title=n.title)
            return
        self._wake.set()

    def notify_direct(self, n: Notification) -> None:
        """Deliver from memory without touching the outbox: for an alert about the disk the outbox lives on."""
        self._direct.append(n)
        self.stats["direct"] += 1
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- worker ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with self._client() as client:
            while not self._stop:
                try:
                    await self._drain(client)
                except Exception as exc:  # the worker must outlive any one bad notification
                    self.stats["worker_errors"] += 1
                    self.log.error("notifier error; alerts stay in the outbox", error=repr(exc))
                    await asyncio.sleep(1.0)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_timeout())

    def _idle_timeout(self) -> float:
        """Sleep until the next collapse window closes (its summary is due then), at most 5 s."""
        if not self._windows:
            return 5.0
        due = min(w.opened for w in self._windows.values()) + self.collapse_seconds - time.monotonic()
        return min(5.0, max(0.01, due))

    def _close_windows(self, force: bool = False) -> int:
        """Closed windows with counted repeats become one durable summary message each (returns how many).

        Windows of the two states of one thing (connection lost / restored) close together and their summaries go
        out in the order of their latest occurrence, so the last message is the state the feed is in now."""
        now = time.monotonic()
        due = {k for k, w in self._windows.items() if force or now - w.opened >= self.collapse_seconds}
        groups = {self._windows[k].last.state_group for k in due}
        closing = [(k, w) for k, w in self._windows.items() if k in due or w.last.state_group in groups]
        added = 0
        for key, w in sorted(closing, key=lambda kw: kw[1].last_at):
            del self._windows[key]
            if w.count:
                n = w.last
                summary = replace(n, ts_ns=self._now_ns(), repeats=w.count + 1, description=(
                    f"{w.count + 1} times in {now - w.opened:.0f} s (the first was sent as it happened; "
                    f"{w.count} more collapsed into this message). Latest: {n.description}")[:4000])
                try:
                    self.outbox.add(summary)
                except Exception as exc:  # a full disk: the count still goes out, from memory
                    self.stats["outbox_write_failed"] += 1
                    self.log.error("could not write a collapse summary; delivering it from memory", error=repr(exc))
                    self._direct.append(summary)
                self.stats["collapse_summaries"] += 1
                added += 1
        return added

    async def flush(self, within_seconds: float) -> bool:
        """Deliver everything pending within ``within_seconds`` (shutdown); True when nothing is left.

        Open collapse windows close early so their counts go out before the process exits."""
        async def drain_all(client: httpx.AsyncClient) -> None:
            await self._drain(client)
            if self._close_windows(force=True):
                await self._drain(client)

        async with self._client() as client:
            try:
                await asyncio.wait_for(drain_all(client), within_seconds)
            except TimeoutError:
                self.stats["flush_timeout"] += 1
        try:
            outbox_empty = all(i in self._delivered_unrecorded
                               for i, _ in self.outbox.pending(1 + len(self._delivered_unrecorded)))
        except Exception:
            outbox_empty = False
        return outbox_empty and not self._direct and (self._queue is None or self._queue.empty())

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _client(self) -> httpx.AsyncClient:
        # Discord answers in well under a second; a read timeout far above that keeps ambiguous (possibly
        # duplicated) posts rare. Connecting is not ambiguous, so it may fail fast.
        return httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                                 transport=self._transport, verify=_tls_context())

    def _persist_queue(self) -> None:
        while self._queue is not None and not self._queue.empty():
            n = self._queue.get_nowait()
            try:
                self.outbox.add(n)
            except Exception as exc:  # a full disk or a broken database: deliver from memory instead
                self.stats["outbox_write_failed"] += 1
                self.log.error("could not write an alert to the outbox; delivering it from memory",
                               kind=n.kind, error=repr(exc))
                self._direct.append(n)

    async def _drain(self, client: httpx.AsyncClient) -> None:
        while True:
            self._persist_queue()
            while self._direct and not self.disabled:
                if not await self._deliver(client, None, self._direct[0]):
                    return
                self._direct.pop(0)
            self._close_windows()
            batch: list[tuple[int | None, Notification]] = [
                (i, n) for i, n in self.outbox.pending(50 + len(self._delivered_unrecorded))
                if i not in self._delivered_unrecorded]
            if not batch or self.disabled:
                return
            for outbox_id, n in batch:
                if not await self._deliver(client, outbox_id, n):
                    return  # leave the rest pending for the next round

    async def _deliver(self, client: httpx.AsyncClient, outbox_id: int | None, n: Notification) -> bool:
        if n.kind in self.disabled_kinds:
            self._mark_delivered(outbox_id, self._now_ns())
            self.stats["skipped_kind"] += 1
            return True
        if self._url is None:
            # Fields go in one mapping: a field may be called "kind" or "title" like the log call's own keys.
            getattr(self.log, _SEVERITY_LOG[n.severity])(
                "alert", kind=n.kind, title=n.title, description=n.description, repeats=n.repeats,
                fields={k.lower().replace(" ", "_"): v for k, v in n.fields})
            self._sent(outbox_id)
            return True
        return await self._post(client, outbox_id, n)

    # Outbox bookkeeping never stops delivery: if the database refuses the write (a full disk), the delivered id
    # is remembered in memory so the row is not posted again by this process.

    def _mark_delivered(self, outbox_id: int | None, ts_ns: int) -> None:
        if outbox_id is None:
            return
        try:
            self.outbox.mark_delivered(outbox_id, ts_ns)
        except Exception as exc:
            self._delivered_unrecorded.add(outbox_id)
            self.stats["outbox_write_failed"] += 1
            self.log.error("could not mark an alert delivered", outbox_id=outbox_id, error=repr(exc))

    def _mark_attempt(self, outbox_id: int | None, error: str) -> None:
        if outbox_id is None:
            return
        try:
            self.outbox.mark_attempt(outbox_id, error)
        except Exception as exc:
            self.stats["outbox_write_failed"] += 1
            self.log.error("could not record a delivery attempt", outbox_id=outbox_id, error=repr(exc))

    def _mark_ambiguous(self, outbox_id: int | None) -> None:
        if outbox_id is None:
            return
        try:
            self.outbox.mark_ambiguous(outbox_id)
        except Exception as exc:
            self.stats["outbox_write_failed"] += 1
            self.log.error("could not record an ambiguous attempt", outbox_id=outbox_id, error=repr(exc))

    def _sent(self, outbox_id: int | None) -> None:
        self._mark_delivered(outbox_id, self._now_ns())
        self.stats["delivered"] += 1

    async def _post(self, client: httpx.AsyncClient, outbox_id: int | None, n: Notification) -> bool:
        assert self._url is not None
        payload = build_payload(n)
        backoff = self.backoff_initial
        failures = 0
        ambiguous = False
        while failures < self.attempts_per_round and not self.disabled:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                resp = await self._send(client, payload, n)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failures += 1
                self.stats["transport_error"] += 1
                self._mark_attempt(outbox_id, type(exc).__name__)
                if isinstance(exc, _AMBIGUOUS):
                    ambiguous = True
                    self.stats["ambiguous_attempts"] += 1
                    self._mark_ambiguous(outbox_id)
                self.log.warning("discord delivery failed, will retry", error=type(exc).__name__,
                                 attempt=failures)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self._note_rate_limit(resp)
            status = resp.status_code
            if 200 <= status < 300:
                if ambiguous:  # the unanswered attempt may have been posted too
                    self.stats["possible_duplicates"] += 1
                    self.log.warning("alert delivered after an unanswered attempt: it may appear twice",
                                     kind=n.kind, title=n.title)
                self._sent(outbox_id)
                return True
            if status == 429:
                self.stats["rate_limited"] += 1
                delay = min(self._retry_after(resp), self.max_retry_after)
                self._mark_attempt(outbox_id, f"429 retry_after={delay}")
                self.log.warning("discord rate limited", retry_after=delay)
                self._not_before = time.monotonic() + delay
                continue
            if status in (401, 403, 404):
                self.disabled = True
                self.stats["webhook_disabled"] += 1
                self._mark_attempt(outbox_id, f"HTTP {status}")
                self.log.error("DISCORD WEBHOOK REJECTED: notifications disabled until the webhook is fixed "
                               "(check DISCORD_WEBHOOK_URL); alerts stay in the outbox", status=status)
                return False
            if status >= 500:
                failures += 1
                self.stats["server_error"] += 1
                self._mark_attempt(outbox_id, f"HTTP {status}")
                self.log.warning("discord server error, will retry", status=status, attempt=failures)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            # Other 4xx: the payload itself is refused; retrying would loop forever.
            self.stats["refused"] += 1
            self._mark_attempt(outbox_id, f"HTTP {status}: {resp.text[:200]}")
            self._mark_delivered(outbox_id, self._now_ns())
            self.log.error("discord refused a notification", status=status, kind=n.kind)
            return True
        return False

    async def _send(self, client: httpx.AsyncClient, payload: dict[str, Any], n: Notification) -> httpx.Response:
        assert self._url is not None
        url = self._url + ("&" if "?" in self._url else "?") + "wait=true"
        if n.attachment:
            files = {"files[0]": (n.attachment_name, n.attachment, "image/png")}
            return await client.post(url, data={"payload_json": json.dumps(payload)}, files=files)
        return await client.post(url, json=payload)

    def _note_rate_limit(self, resp: httpx.Response) -> None:
        remaining = resp.headers.get("X-RateLimit-Remaining")
        reset_after = resp.headers.get("X-RateLimit-Reset-After")
        try:
            if remaining is not None and int(remaining) <= 0 and reset_after is not None:
                self._not_before = max(self._not_before, time.monotonic() + float(reset_after))
                self.stats["bucket_waits"] += 1
        except ValueError:
            self.stats["bad_rate_headers"] += 1

    @staticmethod
    def _retry_after(resp: httpx.Response) -> float:
        try:
            body = resp.json()
            if isinstance(body, dict) and "retry_after" in body:
                return max(0.0, float(body["retry_after"]))
        except (ValueError, json.JSONDecodeError):
            pass
        try:
            return max(0.0, float(resp.headers.get("Retry-After", "1")))
        except ValueError:
            return 1.0


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~0.1 s, and every client (the worker,
    the shutdown flush, each replay run in one process) would otherwise load it again."""
    return ssl.create_default_context()

