"""The live board over HTTP (issue 13 §1, §5) on a real aiohttp server (127.0.0.1, port 0):
the SSE stream's snapshot, pushes, Last-Event-ID replay and snapshot fallback, tenant
scoping of tokens, and the console's static files with their self-only CSP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mediasrv.api.auth import StaticTokenStore, generate_token, hash_token
from mediasrv.api.console import CONSOLE_CSP
from mediasrv.api.http import HttpPolicy, HttpServer
from mediasrv.api.live import sse_frame
from mediasrv.outputs.calllog import CallLogStore, CallRecord, Disposition
from mediasrv.outputs.live_board import LiveBoard, RosterEntry

ADMIN = generate_token()
ACME = generate_token()
OTHER = generate_token()
SATO = RosterEntry("sato", "sip:sato@127.0.0.1:5070", "佐藤")


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def record(call_id: str, business: str = "acme") -> CallRecord:
    return CallRecord(
        call_id, f"sip-{call_id}", "+81312345678", "+819012345678", business=business,
        start_time=time.time(), disposition=Disposition.IN_PROGRESS,
    )  # fmt: skip


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, LiveBoard]]:
    store = CallLogStore(tmp_path / "db.sqlite")
    await store.open()
    board = LiveBoard(time.time, asyncio.get_running_loop().call_later, ring_events=8)
    board.set_roster("acme", [SATO])
    board.set_roster("other", [RosterEntry("x", "sip:x@127.0.0.1:5080")])
    tokens = StaticTokenStore.with_business_tokens(
        hash_token(ADMIN), [(hash_token(ACME), "acme"), (hash_token(OTHER), "other")]
    )
    server = HttpServer(
        "127.0.0.1", 0, _metrics(), store, lambda: {"status": "ok"},
        policy=HttpPolicy(tokens), board=board,
    )  # fmt: skip
    await server.start()
    try:
        yield server, board
    finally:
        await server.stop()
        await store.close()


def _metrics():  # type: ignore[no-untyped-def]
    from mediasrv.outputs.metrics import Metrics

    return Metrics()


class Stream:
    """An open text/event-stream response, read event by event."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 5.0) -> tuple[str, str, dict[str, object]]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line == "":
                    if "data" in fields:
                        return fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])
                    fields.clear()
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value


async def open_stream(
    client: aiohttp.ClientSession, server: HttpServer, token: str, query: str = "", **headers: str
) -> Stream:
    resp = await client.get(
        f"http://127.0.0.1:{server.port}/api/v1/live/events{query}", headers=bearer(token, **headers)
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return Stream(resp)


async def test_stream_sends_a_snapshot_then_changes_fast(served: tuple[HttpServer, LiveBoard]) -> None:
    server, board = served
    async with aiohttp.ClientSession() as client:
        stream = await open_stream(client, server, ACME)
        sid, kind, data = await stream.next()
        assert kind == "snapshot" and data["business"] == "acme"
        assert [op["name"] for op in data["operators"]] == ["sato"]  # type: ignore[union-attr]
        assert sid == board.last_id("acme")

        t0 = time.monotonic()
        board.call_ringing(record("c1"), [SATO.target])
        eid, kind, data = await stream.next()
        assert time.monotonic() - t0 < 1.0  # pushed, not polled
        assert kind == "call" and data["call"]["call_id"] == "c1"  # type: ignore[index]
        eid2, kind, data = await stream.next()
        assert kind == "operator" and data["operator"]["state"] == "ringing"  # type: ignore[index]
        assert eid2 == board.last_id("acme") != eid
        stream.resp.close()


async def test_the_snapshot_and_the_stream_carry_the_queue(
    served: tuple[HttpServer, LiveBoard],
) -> None:
    """Issue 10 §6 / issue 13: a caller queued with a position is in the SSE snapshot and
    its changes are pushed as ``queue`` events."""
    server, board = served
    board.call_ringing(record("q1"))
    board.call_queued("acme", "q1", "sales", 1, 1000.0)
    async with aiohttp.ClientSession() as client:
        stream = await open_stream(client, server, ACME)
        _sid, kind, data = await stream.next()
        assert kind == "snapshot" and data["queue_available"] is True
        assert data["queue"] == [  # type: ignore[comparison-overlap]
            {
                "call_id": "q1", "queue": "sales", "position": 1, "since": 1000.0,
                "caller_number": "+819012345678", "caller_display": "",
                "tracking_number": "+81312345678", "medium": "",
            }
        ]  # fmt: skip
        board.call_unqueued("acme", "q1")
        _eid, kind, data = await stream.next()
        assert (kind, data) == ("queue", {"queue": []})
        stream.resp.close()


async def test_last_event_id_replays_or_falls_back_to_a_snapshot(
    served: tuple[HttpServer, LiveBoard],
) -> None:
    server, board = served
    mark = board.last_id("acme")
    board.call_ringing(record("c1"), [SATO.target])  # a call and an operator event
    async with aiohttp.ClientSession() as client:
        stream = await open_stream(client, server, ACME, **{"Last-Event-ID": mark})
        kinds = [(await stream.next())[1], (await stream.next())[1]]
        assert kinds == ["call", "operator"]  # exactly what was missed, no snapshot
        stream.resp.close()

        for n in range(10):  # more than the 8 events the buffer keeps
            board.call_ringing(record(f"x{n}"), [])
        stream = await open_stream(client, server, ACME, **{"Last-Event-ID": mark})
        _, kind, data = await stream.next()
        assert kind == "snapshot" and len(data["calls"]) == 11  # type: ignore[arg-type]
        stream.resp.close()


async def test_a_business_token_sees_its_business_only(served: tuple[HttpServer, LiveBoard]) -> None:
    server, board = served
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{base}/api/v1/live/businesses", headers=bearer(OTHER)) as r:
            assert (r.status, await r.json()) == (200, {"businesses": ["other"]})
        async with client.get(f"{base}/api/v1/live/board?business=acme", headers=bearer(OTHER)) as r:
            assert r.status == 403
        async with client.get(f"{base}/api/v1/calls", headers=bearer(OTHER)) as r:
            assert r.status == 403  # the call log is not (yet) open to tenant tokens
        async with client.get(f"{base}/api/v1/live/board", headers=bearer("msrv_" + "x" * 43)) as r:
            assert r.status == 401
        async with client.get(f"{base}/api/v1/live/businesses", headers=bearer(ADMIN)) as r:
            assert (await r.json()) == {"businesses": ["acme", "other"]}

        other = await open_stream(client, server, OTHER)
        _, kind, data = await other.next()
        assert kind == "snapshot" and data["calls"] == []
        board.call_ringing(record("secret-call"), [SATO.target])
        board.call_ringing(record("theirs", business="other"), [])
        _, kind, data = await other.next()
        assert data["call"]["call_id"] == "theirs"  # type: ignore[index]
        async with client.get(f"{base}/api/v1/live/board", headers=bearer(OTHER)) as r:
            body = await r.text()
        assert "secret-call" not in body and "sato" not in body
        other.resp.close()


async def test_console_files_are_served_with_a_self_only_csp(
    served: tuple[HttpServer, LiveBoard],
) -> None:
    server, _ = served
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as client:
        for path, kind in (("/console/", "text/html"), ("/console/console.js", "text/javascript")):
            async with client.get(base + path) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(kind)
                assert r.headers["Content-Security-Policy"] == CONSOLE_CSP
                assert "'unsafe-inline'" not in CONSOLE_CSP and "http" not in CONSOLE_CSP
        async with client.get(base + "/console/..%2Fhttp.py") as r:
            assert r.status == 404
        async with client.get(base + "/console/nothing.js") as r:
            assert r.status == 404
        async with client.get(base + "/api/v1/live/board") as r:
            assert r.status == 401  # the data needs a token, the files do not


def test_sse_frame_is_one_event() -> None:
    from mediasrv.outputs.live_board import BoardEvent

    frame = sse_frame(BoardEvent("ab-3", "call_gone", {"call_id": "改行\nなし"}))
    assert frame.decode() == 'id: ab-3\nevent: call_gone\ndata: {"call_id":"改行\\nなし"}\n\n'


async def test_openapi_describes_the_live_routes(served: tuple[HttpServer, LiveBoard]) -> None:
    server, _ = served
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{server.port}/api/v1/openapi.json", headers=bearer(ADMIN)) as r,
    ):
        doc = await r.json()
    routed = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
        and route.resource.canonical.startswith("/api/")
    }  # fmt: skip
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert routed == {d for d in described if d[1].startswith("/api/")}
    assert {"/api/v1/live/board", "/api/v1/live/events"} <= set(doc["paths"])
