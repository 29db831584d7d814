"""A local HTTP server playing a Discord webhook, with scripted answers per request."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web


@dataclass
class Answer:
    status: int = 204
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    content_type: str
    payload: dict[str, Any]
    files: dict[str, bytes]
    at: float


class DiscordStandIn:
    """Answers from ``script`` in order, then ``default``; records every request it accepted."""

    def __init__(self, script: list[Answer] | None = None, default: Answer | None = None) -> None:
        self.script = list(script or [])
        self.default = default or Answer()
        self.received: list[Received] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        answer = self.script.pop(0) if self.script else self.default
        files: dict[str, bytes] = {}
        if request.content_type.startswith("multipart/"):
            payload: dict[str, Any] = {}
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    files[part.filename or part.name or "?"] = bytes(await part.read())
        else:
            payload = await request.json()
        # Discord accepts (posts) the message before it answers: a slow answer that the client gives up on has
        # still been posted, which is how a retry after a timeout duplicates an alert.
        if 200 <= answer.status < 300:
            self.received.append(Received(request.content_type, payload, files, asyncio.get_running_loop().time()))
        if answer.delay:
            await asyncio.sleep(answer.delay)
        text = json.dumps(answer.body) if answer.body is not None else ""
        return web.Response(status=answer.status, text=text, headers=answer.headers,
                            content_type="application/json" if text else None)

    def titles(self) -> list[str]:
        return [str(r.payload["embeds"][0]["title"]) for r in self.received]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/webhooks/{id}/{token}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/webhooks/123/secrettoken"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
