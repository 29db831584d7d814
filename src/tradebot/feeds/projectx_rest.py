"""ProjectX Gateway REST client and wire vocabulary (TopstepX and the other firms on ProjectX).

Shared by the broker adapter (:mod:`tradebot.execution.brokers.projectx`), the market feed
(:mod:`tradebot.feeds.projectx_market`) and the test stand-in, so the enums and field names live in one place.
Facts from the Gateway's documentation (gateway.docs.projectx.com):

* Every endpoint is a ``POST`` with a JSON body, answered ``{..., "success": bool, "errorCode": int,
  "errorMessage": str|null}``. ``success: false`` is an *answer* (a reject), not a transport failure.
* ``/api/Auth/loginKey`` ``{userName, apiKey}`` -> ``{token}`` (a JWT, valid 24 hours, sent as ``Authorization:
  Bearer``); ``/api/Auth/validate`` -> ``{newToken}`` refreshes it.
* Order ``type``: 1 Limit, 2 Market, 3 StopLimit, 4 Stop, 5 TrailingStop, 6 JoinBid, 7 JoinAsk. ``side``: 0 Bid
  (buy), 1 Ask (sell). Order ``status``: 0 None, 1 Open, 2 Filled, 3 Cancelled, 4 Expired, 5 Rejected, 6 Pending.
  Position ``type``: 1 Long, 2 Short. Prices are decimals in points; timestamps ISO 8601 with an offset.
* ``customTag`` on ``/api/Order/place`` must be unique across the account: our client order id, so a lost answer
  is found again by searching for it (``/api/Order/searchOpen``, ``/api/Order/search``), never by re-sending.

Transport rules: HTTP 401 on login is a wrong user name or key (:class:`ProjectXAuthError`, fatal); a 401 later
means the session expired: log in again once and repeat the call. 429 (honouring ``Retry-After``), 5xx and
timeouts are :class:`ProjectXUnavailableError`; reads are retried with bounded jittered backoff, an order
placement never is (the caller resolves it by its tag).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import math
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import httpx

from tradebot.core.logging import get_logger, register_secret
from tradebot.feeds.base import jittered_backoff

log = get_logger("tradebot.feeds.projectx_rest")


class PxOrderType(enum.IntEnum):
    LIMIT = 1
    MARKET = 2
    STOP_LIMIT = 3
    STOP = 4
    TRAILING_STOP = 5
    JOIN_BID = 6
    JOIN_ASK = 7


class PxSide(enum.IntEnum):
    BID = 0
    """Buy."""
    ASK = 1
    """Sell."""


class PxOrderStatus(enum.IntEnum):
    NONE = 0
    OPEN = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4
    REJECTED = 5
    PENDING = 6


class PxPositionType(enum.IntEnum):
    UNDEFINED = 0
    LONG = 1
    SHORT = 2


class PxDomType(enum.IntEnum):
    """``GatewayDepth`` entry types."""

    UNKNOWN = 0
    ASK = 1
    BID = 2
    BEST_ASK = 3
    BEST_BID = 4
    TRADE = 5
    RESET = 6
    LOW = 7
    HIGH = 8
    NEW_BEST_BID = 9
    NEW_BEST_ASK = 10
    FILL = 11


PX_SYMBOL_CODES: dict[str, str] = {
    "ES": "EP", "MES": "MES", "NQ": "ENQ", "MNQ": "MNQ", "RTY": "RTY", "M2K": "M2K", "YM": "YM", "MYM": "MYM",
    "CL": "CLE", "MCL": "MCLE", "GC": "GCE", "MGC": "MGC", "SI": "SIE", "PL": "PLE", "HG": "CPE",
}
"""Our contract root -> ProjectX's symbol code (the ``F.US.<code>`` in ``CON.F.US.EP.H25``). ProjectX names
some products after their CME Globex codes (E-mini S&P 500: ``EP``, E-mini Nasdaq: ``ENQ``); a root missing
here is looked up under its own name."""


def px_code(root: str) -> str:
    return PX_SYMBOL_CODES.get(root, root)


def root_for_contract(contract_id: str, roots: dict[str, str] | None = None) -> str | None:
    """Our root for a ProjectX contract id (``CON.F.US.EP.H25`` -> ``ES``), ``None`` when unknown."""
    parts = contract_id.split(".")
    if len(parts) < 5:
        return None
    code = parts[3]
    for root, c in (roots or PX_SYMBOL_CODES).items():
        if c == code:
            return root
    return code


class ProjectXError(Exception):
    """Base of the client's errors."""


class ProjectXAuthError(ProjectXError):
    """Login refused (wrong user name or API key, API access not enabled): retrying cannot fix it."""


class ProjectXUnavailableError(ProjectXError):
    """429, 5xx, a timeout or a refused connection: back off and retry (never re-send an order: search)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProjectXRejectedError(ProjectXError):
    """``success: false``: the Gateway answered and said no."""

    def __init__(self, path: str, code: int, message: str) -> None:
        super().__init__(f"{path}: error {code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------------
# Wire values


def parse_ts(value: object) -> int | None:
    """ISO 8601 with an offset (``2025-02-25T14:40:04.2256702+00:00``, .NET's seven digits) -> UTC ns."""
    if not isinstance(value, str) or len(value) < 19 or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00")
    frac_ns = 0
    head, tail = text[:19], text[19:]
    if tail.startswith("."):
        digits = ""
        i = 1
        while i < len(tail) and tail[i].isdigit():
            digits += tail[i]
            i += 1
        tail = tail[i:]
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
    try:
        base = dt.datetime.fromisoformat(head + (tail or "+00:00"))
    except ValueError:
        return None
    if base.tzinfo is None:
        base = base.replace(tzinfo=dt.UTC)
    return int(base.timestamp()) * 1_000_000_000 + frac_ns


def format_ts(ns: int, digits: int = 7) -> str:
    """UTC ns -> ISO 8601 with ``digits`` fractional digits (the Gateway's own style: 7, .NET's 100 ns ticks)."""
    sec, rem = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{f'{rem:09d}'[:digits]}+00:00"


def decimal_of(value: object) -> Decimal | None:
    """A JSON number as an exact decimal (floats via their shortest repr, never via binary maths)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            return Decimal(repr(value))
        if isinstance(value, int | str | Decimal):
            d = Decimal(value)
            return d if d.is_finite() else None
    except (InvalidOperation, ValueError):
        return None
    return None


def price_to_ticks(value: object, tick_size: Decimal) -> int | None:
    """Integer ticks of a Gateway price; ``None`` when missing or off the tick grid."""
    d = decimal_of(value)
    if d is None:
        return None
    q = d / tick_size
    if q != q.to_integral_value():
        return None
    return int(q)


def ticks_to_price(ticks: int, tick_size: Decimal) -> float:
    """The JSON number the Gateway expects for ``ticks`` (exact for every real tick size: 0.25, 0.1, 0.005)."""
    return float(ticks * tick_size)


def fees_to_cents(value: object) -> int:
    """Dollar fees -> whole cents, rounded up (never in the trader's favour)."""
    d = decimal_of(value)
    if d is None or d <= 0:
        return 0
    return math.ceil(Fraction(d) * 100)


# ---------------------------------------------------------------------------------------------------
# The client


class ProjectXClient:
    """Async REST client with the session token, re-login and the retry policy of the module docstring."""

    def __init__(
        self,
        base_url: str,
        username: str,
        api_key: str,
        *,
        timeout_seconds: float = 10.0,
        retries: int = 4,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        token_refresh_seconds: float = 6 * 3600.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._api_key = api_key
        self.retries = retries
        self.backoff_initial = backoff_initial_seconds
        self.backoff_max = backoff_max_seconds
        self.token_refresh_seconds = token_refresh_seconds
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_seconds, transport=transport,
                                       headers={"accept": "text/plain", "content-type": "application/json"})
        self._token: str | None = None
        self._token_at = 0.0
        self._login_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- session ------------------------------------------------------------------------------------

    async def login(self) -> str:
        """``/api/Auth/loginKey``; :class:`ProjectXAuthError` on a refused key (HTTP 401 or ``success: false``)."""
        body = {"userName": self.username, "apiKey": self._api_key}
        resp = await self._send("/api/Auth/loginKey", body, token=None)
        if resp.status_code in (401, 403):
            raise ProjectXAuthError(f"login refused for user {self.username!r} (HTTP {resp.status_code})")
        data = self._json(resp, "/api/Auth/loginKey")
        token = data.get("token")
        if not data.get("success") or not isinstance(token, str) or not token:
            raise ProjectXAuthError(f"login refused for user {self.username!r}: error {data.get('errorCode')}: "
                                    f"{data.get('errorMessage') or 'no token'}")
        register_secret(token)
        self._token, self._token_at = token, self.clock()
        self.stats["logins"] += 1
        return token

    async def token(self, force: bool = False) -> str:
        """A valid session token: logs in the first time (or when ``force``), re-validates when it is old."""
        async with self._login_lock:
            if force or self._token is None:
                return await self.login()
            if self.clock() - self._token_at >= self.token_refresh_seconds:
                await self._refresh()
            assert self._token is not None
            return self._token

    async def _refresh(self) -> None:
        """``/api/Auth/validate``: a new token before the old one expires; a refusal means log in again."""
        try:
            resp = await self._send("/api/Auth/validate", {}, token=self._token)
            data = self._json(resp, "/api/Auth/validate") if resp.status_code == 200 else {}
        except ProjectXUnavailableError:
            return  # keep the current token (still valid for hours); try again on the next call
        new = data.get("newToken")
        if data.get("success") and isinstance(new, str) and new:
            register_secret(new)
            self._token, self._token_at = new, self.clock()
            self.stats["refreshes"] += 1
        else:
            await self.login()

    # -- calls --------------------------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        """POST ``body`` to ``path``; the answer's JSON (``success`` may be false: :meth:`ok` checks it).

        ``retry=False`` (order placement): one attempt; a timeout/429/5xx raises :class:`ProjectXUnavailableError`
        at once, because the request may have been executed.
        """
        attempt = 0
        relogged = False
        while True:
            token = await self.token()
            try:
                resp = await self._send(path, body, token=token)
                if resp.status_code == 401 and not relogged:
                    relogged = True
                    self.stats["relogin"] += 1
                    await self.token(force=True)
                    continue
                if resp.status_code == 401:
                    raise ProjectXAuthError(f"{path}: HTTP 401 after a fresh login")
                return self._json(resp, path)
            except ProjectXUnavailableError as exc:
                if not retry or attempt >= self.retries:
                    raise
                delay = jittered_backoff(attempt, self.backoff_initial, self.backoff_max)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.backoff_max))
                attempt += 1
                self.stats["retries"] += 1
                log.warning("projectx_retry", path=path, attempt=attempt, delay_s=round(delay, 2), error=str(exc))
                await asyncio.sleep(delay)

    async def ok(self, path: str, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        """:meth:`call`, raising :class:`ProjectXRejectedError` on ``success: false``."""
        data = await self.call(path, body, retry=retry)
        if not data.get("success"):
            raise ProjectXRejectedError(path, int(data.get("errorCode") or -1), str(data.get("errorMessage") or ""))
        return data

    async def _send(self, path: str, body: dict[str, Any], *, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.stats["requests"] += 1
        try:
            resp = await self._http.post(path, json=body, headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            self.stats["transport_errors"] += 1
            raise ProjectXUnavailableError(f"{path}: {type(exc).__name__}") from None
        if resp.status_code == 429:
            self.stats["http_429"] += 1
            raise ProjectXUnavailableError(f"{path}: HTTP 429 (rate limited)", _retry_after(resp))
        if resp.status_code >= 500:
            self.stats["http_5xx"] += 1
            raise ProjectXUnavailableError(f"{path}: HTTP {resp.status_code}")
        return resp

    def _json(self, resp: httpx.Response, path: str) -> dict[str, Any]:
        if resp.status_code != 200:
            raise ProjectXRejectedError(path, resp.status_code, f"HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            self.stats["bad_json"] += 1
            raise ProjectXUnavailableError(f"{path}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise ProjectXUnavailableError(f"{path}: answer is not a JSON object")
        return data

    # -- endpoints ----------------------------------------------------------------------------------

    async def accounts(self) -> list[dict[str, Any]]:
        data = await self.ok("/api/Account/search", {"onlyActiveAccounts": True})
        return _dicts(data.get("accounts"))

    async def contracts(self, text: str, live: bool = False) -> list[dict[str, Any]]:
        data = await self.ok("/api/Contract/search", {"live": live, "searchText": text})
        return _dicts(data.get("contracts"))

    async def open_orders(self, account_id: int) -> list[dict[str, Any]]:
        data = await self.ok("/api/Order/searchOpen", {"accountId": account_id})
        return _dicts(data.get("orders"))

    async def orders(self, account_id: int, start_ns: int, end_ns: int | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"accountId": account_id, "startTimestamp": format_ts(start_ns)}
        if end_ns is not None:
            body["endTimestamp"] = format_ts(end_ns)
        data = await self.ok("/api/Order/search", body)
        return _dicts(data.get("orders"))

    async def open_positions(self, account_id: int) -> list[dict[str, Any]]:
        data = await self.ok("/api/Position/searchOpen", {"accountId": account_id})
        return _dicts(data.get("positions"))

    async def trades(self, account_id: int, start_ns: int, end_ns: int | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"accountId": account_id, "startTimestamp": format_ts(start_ns)}
        if end_ns is not None:
            body["endTimestamp"] = format_ts(end_ns)
        data = await self.ok("/api/Trade/search", body)
        return _dicts(data.get("trades"))

    async def place(self, body: dict[str, Any]) -> dict[str, Any]:
        """One attempt, never retried (the caller resolves a lost answer by searching for ``customTag``)."""
        return await self.call("/api/Order/place", body, retry=False)

    async def cancel(self, account_id: int, order_id: int) -> dict[str, Any]:
        return await self.call("/api/Order/cancel", {"accountId": account_id, "orderId": order_id})

    async def modify(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("/api/Order/modify", body)

    async def close_contract(self, account_id: int, contract_id: str) -> dict[str, Any]:
        return await self.call("/api/Position/closeContract", {"accountId": account_id, "contractId": contract_id},
                               retry=False)


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def choose_contract(contracts: list[dict[str, Any]], root: str) -> dict[str, Any] | None:
    """The active (front) contract of ``root`` among a ``/api/Contract/search`` answer."""
    code = px_code(root)
    mine = [c for c in contracts if isinstance(c.get("id"), str) and str(c["id"]).split(".")[3:4] == [code]]
    active = [c for c in mine if c.get("activeContract")]
    best = active or mine
    return best[0] if best else None
