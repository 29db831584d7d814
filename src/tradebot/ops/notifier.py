"""The notification worker: never blocks trading, survives restarts, respects Discord.

Producers call :meth:`Notifier.notify` (a non-blocking enqueue) or write straight to the durable outbox (the
execution manager does, inside its journal transaction) and :meth:`Notifier.wake` it. The worker task moves
queued notifications into the outbox, then delivers pending ones in order. Delivery honours Discord's
``X-RateLimit-*`` headers and 429 ``retry_after``, retries 5xx and timeouts with capped backoff, and on 401/404
(a deleted or wrong webhook) disables itself and says so loudly, because retrying cannot fix that. Repeats of the
same alert within a window are collapsed into one message with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from tradebot.core.logging import get_logger
from tradebot.ops.discord import build_payload
from tradebot.ops.notifications import Notification, Outbox, Severity

_SEVERITY_LOG = {Severity.INFO: "info", Severity.SUCCESS: "info", Severity.WARNING: "warning",
                 Severity.CRITICAL: "error"}


class Notifier:
    def __init__(self, webhook_url: str | None, outbox: Outbox, *, disabled_kinds: Iterable[str] = (),
                 collapse_seconds: float = 60.0, timeout_seconds: float = 10.0, backoff_initial: float = 1.0,
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
        self._last_sent: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
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
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        try:
            self._queue.put_nowait(n)
        except asyncio.QueueFull:
            self.stats["dropped_queue_full"] += 1
            self.log.error("notification queue full, dropped", kind=n.kind, title=n.title)
            return
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
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)

    async def flush(self, within_seconds: float) -> bool:
        """Deliver everything pending within ``within_seconds`` (shutdown); True when nothing is left."""
        async with self._client() as client:
            try:
                await asyncio.wait_for(self._drain(client), within_seconds)
            except TimeoutError:
                self.stats["flush_timeout"] += 1
        return not self.outbox.pending(1) and (self._queue is None or self._queue.empty())

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self._transport)

    def _persist_queue(self) -> None:
        while self._queue is not None and not self._queue.empty():
            self.outbox.add(self._queue.get_nowait())

    async def _drain(self, client: httpx.AsyncClient) -> None:
        while True:
            self._persist_queue()
            batch = self.outbox.pending(50)
            if not batch or self.disabled:
                return
            for outbox_id, n in batch:
                if not await self._deliver(client, outbox_id, n):
                    return  # leave the rest pending for the next round

    async def _deliver(self, client: httpx.AsyncClient, outbox_id: int, n: Notification) -> bool:
        now = time.monotonic()
        key = n.dedupe_key
        if n.kind in self.disabled_kinds:
            self.outbox.mark_delivered(outbox_id, self._now_ns())
            self.stats["skipped_kind"] += 1
            return True
        last = self._last_sent.get(key)
        if last is not None and now - last < self.collapse_seconds:
            self._suppressed[key] += 1
            self.stats["collapsed"] += 1
            self.outbox.mark_delivered(outbox_id, self._now_ns())
            return True
        repeats = self._suppressed.pop(key, 0)
        if self._url is None:
            # Fields go in one mapping: a field may be called "kind" or "title" like the log call's own keys.
            getattr(self.log, _SEVERITY_LOG[n.severity])(
                "alert", kind=n.kind, title=n.title, description=n.description, repeats=repeats,
                fields={k.lower().replace(" ", "_"): v for k, v in n.fields})
            self._sent(outbox_id, key, now)
            return True
        return await self._post(client, outbox_id, n, repeats, key)

    def _sent(self, outbox_id: int, key: str, now: float) -> None:
        self.outbox.mark_delivered(outbox_id, self._now_ns())
        self._last_sent[key] = now
        self.stats["delivered"] += 1

    async def _post(self, client: httpx.AsyncClient, outbox_id: int, n: Notification, repeats: int,
                    key: str) -> bool:
        assert self._url is not None
        payload = build_payload(n, repeats)
        backoff = self.backoff_initial
        failures = 0
        while failures < self.attempts_per_round and not self.disabled:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                resp = await self._send(client, payload, n)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failures += 1
                self.stats["transport_error"] += 1
                self.outbox.mark_attempt(outbox_id, type(exc).__name__)
                self.log.warning("discord delivery failed, will retry", error=type(exc).__name__,
                                 attempt=failures)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self._note_rate_limit(resp)
            status = resp.status_code
            if 200 <= status < 300:
                self._sent(outbox_id, key, time.monotonic())
                return True
            if status == 429:
                self.stats["rate_limited"] += 1
                delay = min(self._retry_after(resp), self.max_retry_after)
                self.outbox.mark_attempt(outbox_id, f"429 retry_after={delay}")
                self.log.warning("discord rate limited", retry_after=delay)
                self._not_before = time.monotonic() + delay
                continue
            if status in (401, 403, 404):
                self.disabled = True
                self.stats["webhook_disabled"] += 1
                self.outbox.mark_attempt(outbox_id, f"HTTP {status}")
                self.log.error("DISCORD WEBHOOK REJECTED: notifications disabled until the webhook is fixed "
                               "(check DISCORD_WEBHOOK_URL); alerts stay in the outbox", status=status)
                return False
            if status >= 500:
                failures += 1
                self.stats["server_error"] += 1
                self.outbox.mark_attempt(outbox_id, f"HTTP {status}")
                self.log.warning("discord server error, will retry", status=status, attempt=failures)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self.backoff_max)
                continue
            # Other 4xx: the payload itself is refused; retrying would loop forever.
            self.stats["refused"] += 1
            self.outbox.mark_attempt(outbox_id, f"HTTP {status}: {resp.text[:200]}")
            self.outbox.mark_delivered(outbox_id, self._now_ns())
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
