"""Who may read and who may act.

One secret, ``TRADEBOT_WEB__TOKEN``:

- **Control** (halt, resume, flatten, settings changes) needs the token itself on every request, as
  ``Authorization: Bearer <token>``, compared in constant time. Browsers never send that header on their own,
  so a control action cannot be forged cross-site.
- **Reads** (the page's data, the REST views, the WebSocket) need a *session*: ``POST /api/login`` with the
  token sets an HttpOnly, SameSite=Strict cookie valid for ``TRADEBOT_WEB__SESSION_HOURS``; the bearer token
  works for reads too (scripts, curl). The cookie is ``expiry.nonce.signature`` signed with a key derived from
  the token (HMAC-SHA256), so sessions survive a restart of the web process (the page reconnects without a new
  login) and changing the token logs every browser out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

COOKIE = "tradebot_session"


class Auth:
    def __init__(self, token: str, session_hours: float) -> None:
        self._token = token.encode()
        self._key = hmac.new(self._token, b"tradebot-web-session-v1", hashlib.sha256).digest()
        self.session_seconds = int(session_hours * 3600)
        self.failures = 0

    def token_ok(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    def bearer_ok(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def new_session(self, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.session_seconds)
        body = f"{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    def session_ok(self, cookie: str | None, now: float | None = None) -> bool:
        if not cookie or cookie.count(".") != 2:
            return False
        body, _, sig = cookie.rpartition(".")
        if not hmac.compare_digest(sig, self._sign(body)):
            return False
        try:
            expires = int(body.split(".", 1)[0])
        except ValueError:
            return False
        return expires > (now if now is not None else time.time())

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
