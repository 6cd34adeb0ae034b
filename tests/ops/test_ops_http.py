"""The HTTP endpoints on a real aiohttp server (127.0.0.1, port 0) with a real client."""

from __future__ import annotations

import csv
import io
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mediasrv.api import http as http_module
from mediasrv.api.auth import StaticTokenStore, generate_token, hash_token
from mediasrv.api.http import HttpPolicy, HttpServer
from mediasrv.outputs.calllog import CallLogStore, CallRecord, Disposition
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.recordings import recording_path

T0 = 1_700_000_000.0
TOKEN = generate_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLICY = HttpPolicy(StaticTokenStore.server(hash_token(TOKEN)))


@dataclass
class Env:
    server: HttpServer
    store: CallLogStore
    metrics: Metrics
    client: aiohttp.ClientSession
    tmp: Path
    state: dict[str, object] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def get(self, path: str, **params: str) -> tuple[int, object]:
        async with self.client.get(self.url(path), params=params) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = CallLogStore(tmp_path / "var" / "mediasrv.db")
    await store.open()
    metrics = Metrics()
    state: dict[str, object] = {"status": "ok", "active_calls": 0, "engine": "python"}
    server = HttpServer(
        "127.0.0.1",
        0,
        metrics,
        store,
        lambda: dict(state),
        recordings_dir=tmp_path / "var" / "recordings",
        policy=POLICY,
    )
    await server.start()
    client = aiohttp.ClientSession(headers=AUTH)
    try:
        yield Env(server, store, metrics, client, tmp_path, state)
    finally:
        await client.close()
        await server.stop()
        await store.close()


def call(n: int, **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": f"call{n:04d}",
        "inbound_call_id": f"sip{n}@192.0.2.1",
        "tracking_number": "0311111111" if n % 2 else "0322222222",
        "caller_number": "+819012345678",
        "start_time": T0 + n,
        "disposition": Disposition.ANSWERED if n % 3 else Disposition.BUSY,
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


async def test_bound_port_is_real(env: Env) -> None:
    assert env.server.port > 0


async def test_health_ok_then_draining(env: Env) -> None:
    env.state["active_calls"] = 2
    status, body = await env.get("/health")
    assert status == 200 and body == {"status": "ok", "active_calls": 2, "engine": "python"}
    status, body = await env.get("/ready")
    assert status == 200 and body == {"ready": True, "status": "ok"}
    env.state["status"] = "draining"
    status, body = await env.get("/health")
    assert status == 503 and body["status"] == "draining"  # type: ignore[index]
    status, body = await env.get("/ready")
    assert status == 503 and body["ready"] is False  # type: ignore[index]


async def test_ready_reports_a_closed_store(env: Env) -> None:
    await env.store.close()
    status, body = await env.get("/ready")
    assert status == 503
    assert "call log unavailable" in body["reasons"][0]  # type: ignore[index]
    await env.store.open()


async def test_metrics_are_scrapable(env: Env) -> None:
    env.metrics.active_calls.set(3)
    env.metrics.call_finished("answered", 1.0, 10.0)
    async with env.client.get(env.url("/metrics")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert values[("mediasrv_active_calls", ())] == 3
    assert values[("mediasrv_calls_total", (("disposition", "answered"),))] == 1


async def test_list_calls_with_filters(env: Env) -> None:
    for n in range(10):
        await env.store.record_call(call(n))
    status, body = await env.get("/api/v1/calls")
    assert status == 200 and isinstance(body, dict)
    assert body["total"] == 10 and body["limit"] == 100 and body["offset"] == 0
    ids = [c["call_id"] for c in body["calls"]]
    assert ids == [f"call{n:04d}" for n in range(9, -1, -1)]  # newest first
    first = body["calls"][0]
    assert first["disposition"] == "busy" and first["start_time"] == T0 + 9

    _, body = await env.get("/api/v1/calls", limit="3", offset="2")
    assert [c["call_id"] for c in body["calls"]] == ["call0007", "call0006", "call0005"]  # type: ignore[index]
    _, body = await env.get("/api/v1/calls", tracking_number="0311111111", disposition="busy")
    assert [c["call_id"] for c in body["calls"]] == ["call0009", "call0003"]  # type: ignore[index]
    assert body["total"] == 2  # type: ignore[index]
    _, body = await env.get("/api/v1/calls", since=str(T0 + 2), until=str(T0 + 4))
    assert [c["call_id"] for c in body["calls"]] == ["call0003", "call0002"]  # type: ignore[index]
    # ISO 8601 with an offset (T0 + 5 = 2023-11-15 07:13:25 +09:00), '+' sent unescaped
    async with env.client.get(
        env.url("/api/v1/calls?since=2023-11-15T07:13:25+09:00&limit=100")
    ) as resp:
        body = await resp.json()
    assert [c["call_id"] for c in body["calls"]][-1] == "call0005"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": "abc"}, "limit: expected an integer"),
        ({"limit": "0"}, "limit: must be from 1 to 1000"),
        ({"limit": "5000"}, "limit: must be from 1 to 1000"),
        ({"offset": "-1"}, "offset: must be from 0"),
        ({"since": "yesterday"}, "since: expected unix seconds or ISO 8601"),
        ({"until": "2026-13-40"}, "until: expected"),
        ({"disposition": "happy"}, "disposition: unknown value 'happy'"),
    ],
)
async def test_bad_query_params_are_400(env: Env, params: dict[str, str], fragment: str) -> None:
    status, body = await env.get("/api/v1/calls", **params)
    assert status == 400
    assert isinstance(body, dict) and fragment in str(body["error"])


async def test_get_one_call_and_404s(env: Env) -> None:
    rec = call(1, attempts=[{"uri": "sip:op1@127.0.0.1:5090", "code": 200}], flags=["valid"])
    await env.store.record_call(rec)
    status, body = await env.get("/api/v1/calls/call0001")
    assert status == 200 and body == rec.to_dict()
    status, body = await env.get("/api/v1/calls/nope")
    assert status == 404 and body == {"error": "call 'nope' not found"}
    status, body = await env.get("/api/v1/nothing-here")
    assert status == 404 and isinstance(body, dict) and "error" in body


async def test_recording_download(env: Env) -> None:
    wav_path = recording_path(env.tmp / "var" / "recordings", "call0001", T0 + 1)
    wav_path.parent.mkdir(parents=True)
    frames = bytes(range(256)) * 32
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    await env.store.record_call(call(1, recording_path=str(wav_path)))
    await env.store.record_call(call(2))  # no recording
    outside = env.tmp / "secret.wav"
    outside.write_bytes(b"RIFF")
    await env.store.record_call(call(3, recording_path=str(outside)))
    await env.store.record_call(call(4, recording_path=str(wav_path.with_name("gone.wav"))))

    async with env.client.get(env.url("/api/v1/calls/call0001/recording")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/wav"
        data = await resp.read()
    assert data == wav_path.read_bytes()
    for cid, fragment in [
        ("call0002", "has no recording"),
        ("call0003", "outside the recordings directory"),
        ("call0004", "missing"),
        ("call9999", "not found"),
    ]:
        status, body = await env.get(f"/api/v1/calls/{cid}/recording")
        assert status == 404 and fragment in str(body["error"]), cid  # type: ignore[index]


async def test_health_callback_failure_is_a_json_500(tmp_path: Path) -> None:
    store = CallLogStore(tmp_path / "db.sqlite")
    await store.open()

    def broken() -> dict[str, object]:
        raise RuntimeError("boom")

    server = HttpServer("127.0.0.1", 0, Metrics(), store, broken, policy=POLICY)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{server.port}/health") as resp,
        ):
            assert resp.status == 500
            assert await resp.json() == {"error": "internal error"}
    finally:
        await server.stop()
        await store.close()


async def test_ipv6_loopback(tmp_path: Path) -> None:
    store = CallLogStore(tmp_path / "db.sqlite")
    await store.open()
    server = HttpServer("::1", 0, Metrics(), store, lambda: {"status": "ok"}, policy=POLICY)
    try:
        await server.start()
    except OSError:
        await store.close()
        pytest.skip("no IPv6 loopback on this machine")
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://[::1]:{server.port}/health") as resp,
        ):
            assert resp.status == 200
    finally:
        await server.stop()
        await store.close()


async def test_openapi_describes_exactly_the_routes(env: Env) -> None:
    status, doc = await env.get("/api/v1/openapi.json")
    assert status == 200 and isinstance(doc, dict)
    assert doc["openapi"].startswith("3.")
    routed = {
        (r.method, r.resource.canonical)
        for r in env.server.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert routed == described
    props = set(doc["components"]["schemas"]["Call"]["properties"])
    assert props == set(CallRecord.__dataclass_fields__)


async def test_csv_export(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_module, "EXPORT_PAGE", 3)  # force several pages
    for n in range(8):
        await env.store.record_call(call(n))
    await env.store.record_call(
        call(
            20,
            caller_display='=HYPERLINK("http://x")',
            caller_number="+81312345678",
            attempts=[{"uri": "sip:a@b", "code": 486}],
            answer_time=None,
        )
    )
    async with env.client.get(env.url("/api/v1/calls.csv")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        text = (await resp.read()).decode("utf-8-sig")  # a BOM by default (issue 11)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["call_id"] for r in rows] == ["call0020"] + [f"call{n:04d}" for n in range(7, -1, -1)]
    top = rows[0]
    assert top["caller_display"] == '\'=HYPERLINK("http://x")'  # formula neutralised
    assert top["caller_number"] == "+81312345678"  # a phone number is left alone
    assert json.loads(top["attempts"]) == [{"uri": "sip:a@b", "code": 486}]
    assert top["answer_time"] == "" and float(top["start_time"]) == T0 + 20
    assert top["disposition"] == "answered"

    async with env.client.get(
        env.url("/api/v1/calls.csv"), params={"disposition": "busy", "limit": "2", "bom": "1"}
    ) as resp:
        raw = await resp.read()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r["call_id"] for r in rows] == ["call0006", "call0003"]
    status, body = await env.get("/api/v1/calls.csv", since="nope")
    assert status == 400 and "since" in str(body["error"])  # type: ignore[index]


async def test_requests_are_counted_by_route_pattern(env: Env) -> None:
    await env.get("/health")
    await env.get("/api/v1/calls/abc")
    await env.get("/api/v1/calls/def")
    await env.get("/no/such/thing")

    def count(route: str, code: str) -> float | None:
        return env.metrics.registry.get_sample_value(
            "mediasrv_http_requests_total", {"route": route, "code": code}
        )

    assert count("/health", "200") == 1
    assert count("/api/v1/calls/{call_id}", "404") == 2
    assert count("unmatched", "404") == 1
