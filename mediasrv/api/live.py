"""The live board over HTTP (F25, issue 13 §1): a snapshot and a Server-Sent Events stream.

Routes (a bearer token with the ``board`` scope, or the server token):
    GET /api/v1/live/businesses   the businesses the token may watch
    GET /api/v1/live/board        ?business= (server token only): the board now, as JSON
    GET /api/v1/live/events       ?business= (server token only): text/event-stream

The stream (WHATWG HTML, "Server-sent events") sends ``id:``, ``event:`` and one ``data:``
line of JSON per change. A request with ``Last-Event-ID`` (the header, §9.2.4) gets the
changes after that id from the board's ring buffer, or a ``snapshot`` first when the id is
too old or from another run. A comment line every ``KEEPALIVE_S`` keeps idle proxies from
closing the connection and lets the server notice a client that went away.

A tenant token (``Principal.business``) sees its own business only; naming another one is a
403 and nothing of it is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from mediasrv.api.auth import Principal
from mediasrv.outputs.live_board import BoardEvent, LiveBoard

__all__ = ["KEEPALIVE_S", "LIVE_PREFIX", "LiveRoutes", "live_openapi_paths", "sse_frame"]

log = logging.getLogger(__name__)

LIVE_PREFIX = "/api/v1/live"
KEEPALIVE_S = 15.0
RETRY_MS = 1000  # the client's reconnection delay (the "retry:" field)


def live_openapi_paths() -> dict[str, Any]:
    """The OpenAPI description of these routes (merged into ``/api/v1/openapi.json``)."""
    business = {
        "name": "business",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "server token only: which business (a tenant token sees its own)",
    }
    errors = {
        "400": {"description": "server token without ?business= (several businesses)"},
        "403": {"description": "the token is for another business"},
    }
    json_ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        f"{LIVE_PREFIX}/businesses": {
            "get": {"summary": "The businesses this token may watch", "responses": {"200": json_ok}}
        },
        f"{LIVE_PREFIX}/board": {
            "get": {
                "summary": "The live board now: operators, calls in progress, queue",
                "parameters": [business],
                "responses": {"200": json_ok, **errors},
            }
        },
        f"{LIVE_PREFIX}/events": {
            "get": {
                "summary": "The live board's changes as Server-Sent Events (snapshot first; "
                "Last-Event-ID resumes)",
                "parameters": [
                    business,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {"description": "OK", "content": {"text/event-stream": {}}},
                    **errors,
                },
            }
        },
    }


def sse_frame(event: BoardEvent) -> bytes:
    """One event in the text/event-stream format (data is one line of JSON)."""
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


class LiveRoutes:
    """The board's routes on the API's aiohttp application."""

    def __init__(self, board: LiveBoard, principal_key: web.RequestKey[Principal]) -> None:
        self._board = board
        self._principal = principal_key
        self._streams: set[asyncio.Task[object]] = set()

    def add_to(self, app: web.Application) -> None:
        app.on_shutdown.append(self._close_streams)
        app.router.add_get(f"{LIVE_PREFIX}/businesses", self._businesses)
        app.router.add_get(f"{LIVE_PREFIX}/board", self._get_board)
        app.router.add_get(f"{LIVE_PREFIX}/events", self._events)

    def _business_of(self, request: web.Request) -> str:
        """The business a request may watch: its token's, or (server token) ``?business=``."""
        who = request[self._principal]
        asked = request.query.get("business", "")
        if who.business is not None:
            if asked and asked != who.business:
                raise web.HTTPForbidden(reason="this token is for another business")
            return who.business
        if not asked:
            known = self._board.businesses()
            if len(known) == 1:
                return known[0]
            raise web.HTTPBadRequest(reason="business: required with the server token")
        return asked

    async def _businesses(self, request: web.Request) -> web.Response:
        who = request[self._principal]
        names = [who.business] if who.business is not None else self._board.businesses()
        return web.json_response({"businesses": names})

    async def _get_board(self, request: web.Request) -> web.Response:
        snapshot = self._board.snapshot(self._business_of(request))
        return web.json_response({"id": snapshot.id, **snapshot.data})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        business = self._business_of(request)
        last_id = request.headers.get("Last-Event-ID")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            await self._stream(response, business, last_id)
        except ConnectionError:
            pass  # the client went away: nothing to clean up but this task
        finally:
            if task is not None:
                self._streams.discard(task)
        return response

    async def _close_streams(self, app: web.Application) -> None:
        """At shutdown the streams end at once (they never finish by themselves); clients
        reconnect to the next server with their Last-Event-ID."""
        for task in list(self._streams):
            task.cancel()

    async def _stream(
        self, response: web.StreamResponse, business: str, last_id: str | None
    ) -> None:
        pending = self._board.since(business, last_id)
        if pending is None:
            snapshot = self._board.snapshot(business)
            await response.write(sse_frame(snapshot))
            last_id = snapshot.id
        else:
            for event in pending:
                await response.write(sse_frame(event))
                last_id = event.id
        while True:
            # Read what changed since the last id sent: the same path as a resumed stream,
            # so a burst of changes between two wake-ups is never skipped.
            caught_up = self._board.last_id(business) == last_id
            if caught_up and not await self._board.wait_change(business, KEEPALIVE_S):
                await response.write(b": keepalive\n\n")
                continue
            events = self._board.since(business, last_id)
            if events is None:  # this client fell further behind than the buffer holds
                snapshot = self._board.snapshot(business)
                events = [snapshot]
            for event in events:
                await response.write(sse_frame(event))
                last_id = event.id
