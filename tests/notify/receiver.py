"""A webhook receiver for the tests: a real aiohttp server on loopback that verifies every
request with the ``standardwebhooks`` library and answers as the test scripts it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks import Webhook

Answer = tuple[int, dict[str, str]]  # status, extra headers


@dataclass
class Received:
    webhook_id: str
    type: str
    subject_seq: int
    data: dict[str, object]
    at: float


@dataclass
class Receiver:
    secrets: list[str]
    script: Callable[[int, str], Answer] = lambda _n, _id: (200, {})
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # signature failures: must stay empty
    url: str = ""
    _runner: web.AppRunner | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        payload = None
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                break
            except Exception:
                continue
        if payload is None:
            self.rejected.append(headers.get("webhook-id", "?"))
            return web.Response(status=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        n = len(self.requests)
        self.requests.append(
            Received(
                headers["webhook-id"],
                payload["type"],
                int(payload["data"]["sequence"]),
                payload["data"],
                time.time(),
            )
        )
        self.arrived.set()
        status, extra = self.script(n, headers["webhook-id"])
        return web.Response(status=status, headers=extra, text=json.dumps({"n": n}))

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.requests)} of {count} webhooks arrived")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.2))
            except TimeoutError:
                pass
