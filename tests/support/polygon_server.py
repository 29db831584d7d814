"""A local stand-in for the Polygon/Massive REST API that serves the real recorded bodies.

Why a real HTTP server rather than a mocked client: the adapter's retry policy, timeouts, header handling and
``next_url`` pagination live in the real ``polygon`` client + urllib3 path, and only a socket exercises that.
Bodies come from ``/work/shared/data/polygon`` unchanged, except that ``next_url`` points at this server
(the vendor's host would otherwise leave 127.0.0.1). Faults (429 with Retry-After, 5xx, 403, slow answers)
are queued per path prefix and consumed by the first matching requests; every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "polygon"


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class _Fault:
    prefix: str
    status: int
    remaining: int
    retry_after: str | None
    delay: float
    body: bytes


def load_body(name: str, data_dir: Path = DATA_DIR) -> dict[str, Any]:
    """A recorded body as a dict (tests compute their expectations from it)."""
    obj = json.loads((data_dir / name).read_text())
    assert isinstance(obj, dict)
    return obj


class PolygonStandIn:
    """``with PolygonStandIn() as srv: feed = PolygonHistoryFeed(key, "AAPL", day, base_url=srv.base_url)``."""

    def __init__(self, data_dir: Path = DATA_DIR) -> None:
        self.data_dir = data_dir
        self.requests: list[Request] = []
        self._faults: deque[_Fault] = deque()
        self._overrides: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> PolygonStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def do_GET(self) -> None:
                standin._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="polygon-standin",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> PolygonStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ------------------------------------------------------------------------------

    def fail(self, status: int, times: int = 1, *, path_prefix: str = "/", retry_after: str | None = None,
             body: bytes | None = None) -> None:
        """The next ``times`` requests under ``path_prefix`` get ``status`` (queued after earlier faults)."""
        payload = body if body is not None else json.dumps(
            {"status": "ERROR", "request_id": "standin", "error": f"injected {status}"}).encode()
        with self._lock:
            self._faults.append(_Fault(path_prefix, status, times, retry_after, 0.0, payload))

    def delay(self, seconds: float, times: int = 1, *, path_prefix: str = "/") -> None:
        """The next ``times`` requests under ``path_prefix`` are answered normally but ``seconds`` late."""
        with self._lock:
            self._faults.append(_Fault(path_prefix, 200, times, None, seconds, b""))

    def set_body(self, path: str, body: bytes | dict[str, Any], status: int = 200) -> None:
        """Serve this body for ``path`` (any query) instead of the recorded one."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        with self._lock:
            self._overrides[path] = (status, raw)

    def count(self, path_prefix: str = "/") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    # -- serving ------------------------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and path.startswith(f.prefix):
                    f.remaining -= 1
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = dict(parse_qsl(url.query))
        auth = h.headers.get("Authorization")
        with self._lock:
            self.requests.append(Request(url.path, query, auth))
        fault = self._take_fault(url.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
            fault = None
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(h, fault.status, fault.body, headers)
            return
        if not auth or not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            self._send(h, 401, b'{"status":"ERROR","error":"API Key was not provided"}')
            return
        with self._lock:
            override = self._overrides.get(url.path)
        if override is not None:
            self._send(h, override[0], override[1])
            return
        status, body = self._route(url.path, query)
        self._send(h, status, body)

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        name: str | None = None
        if parts[:2] == ["v3", "trades"] and len(parts) == 3:
            name = f"v3_trades_{parts[2]}_limit=2.json"
        elif parts[:2] == ["v3", "quotes"] and len(parts) == 3:
            name = self._quotes_page(parts[2], query.get("cursor"))
            if name is None:
                return 400, b'{"status":"ERROR","error":"invalid cursor"}'
        elif parts[:3] == ["v2", "aggs", "ticker"] and len(parts) >= 5:
            found = sorted(self.data_dir.glob(f"v2_aggs_ticker_{parts[3]}_range_*.json"))
            name = found[0].name if found else None
        elif parts[:3] == ["v2", "last", "trade"] and len(parts) == 4:
            name = f"v2_last_trade_{parts[3]}.json"
        elif parts[:3] == ["v2", "last", "nbbo"] and len(parts) == 4:
            name = f"v2_last_nbbo_{parts[3]}.json"
        elif parts == ["v1", "marketstatus", "now"]:
            name = "v1_marketstatus_now.json"
        if name is None or not (self.data_dir / name).is_file():
            return 404, b'{"status":"NOT_FOUND","message":"no stand-in body for this path"}'
        return 200, self._rewrite_next_url((self.data_dir / name).read_bytes())

    def _quotes_page(self, ticker: str, cursor: str | None) -> str | None:
        first = f"v3_quotes_{ticker}.json"
        if cursor is None:
            return first
        page1 = self.data_dir / first
        if not page1.is_file():
            return None
        nxt = json.loads(page1.read_text()).get("next_url", "")
        expected = dict(parse_qsl(urlparse(nxt).query)).get("cursor")
        return f"v3_quotes_{ticker}_page2.json" if cursor == expected else None

    def _rewrite_next_url(self, raw: bytes) -> bytes:
        obj = json.loads(raw)
        nxt = obj.get("next_url") if isinstance(obj, dict) else None
        if not isinstance(nxt, str):
            return raw
        u = urlparse(nxt)
        obj["next_url"] = self.base_url + u.path + (f"?{u.query}" if u.query else "")
        return json.dumps(obj).encode()

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a read timeout under test): nothing to answer
