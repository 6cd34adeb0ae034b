"""Connection exhaustion and the API token against a real ``mediasrv run`` process (issue 8,
findings 4 and 5): thousands of idle TCP connections leave UDP calls and /health working,
idle connections are closed but not those a call uses, and a generated token is shown once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FAST_SIP, StartServer
from peers_plugin import needs_sipp
from sipp_calls import call_through, number_to, operator_at, start_uas

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import free_port

pytestmark = [needs_sipp, pytest.mark.e2e]

IDLE_CONNECTIONS = 3000
SERVER_NOFILE = 2048  # below IDLE_CONNECTIONS: without a cap they would exhaust the server
NOBODY = [number_to("sip:op@127.0.0.1:5999")]  # the number, routed where no operator listens


def raise_client_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the open-files hard limit ({hard}) is below the {need} this test needs")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_many(port: int, source: str, count: int, batch: int = 100) -> list[Conn]:
    """``count`` TCP connections from ``source``, ``batch`` at a time, bounded in time."""
    conns: list[Conn] = []

    async def one() -> Conn | None:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10
            )
        except (OSError, TimeoutError):
            return None

    for start in range(0, count, batch):
        got = await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
        conns.extend(c for c in got if c is not None)
    return conns


async def metrics_when(
    server: ServerProcess, ok: Callable[[dict[str, float]], bool], timeout: float = 20.0
) -> dict[str, float]:
    """/metrics once ``ok`` holds (the server accepts asynchronously), or the last seen."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    m = await asyncio.to_thread(server.metrics)
    while not ok(m) and loop.time() < end:
        await asyncio.sleep(0.2)
        m = await asyncio.to_thread(server.metrics)
    return m


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        with contextlib.suppress(Exception):
            writer.close()


async def udp_call(server: ServerProcess, tmp_path: Path, uas_port: int) -> int:
    uas = await start_uas(tmp_path, uas_port, 1, timeout_s=30)
    try:
        result = await call_through(server, tmp_path, hold_ms=200, timeout_s=20)
    finally:
        await uas.wait(20)
    assert result.stats.successful == 1, result.describe() + result.errors_tail()
    return result.stats.successful


async def test_3000_idle_tcp_connections_do_not_stop_a_udp_call(
    tmp_path: Path, start_server: StartServer
) -> None:
    """The total cap (from RLIMIT_NOFILE) holds even with the per-source cap out of the way."""
    raise_client_nofile(IDLE_CONNECTIONS + 500)
    uas_port = free_port()
    server = start_server(
        numbers=[number_to(operator_at(uas_port, "op"))],
        nofile=SERVER_NOFILE,
        sip={**FAST_SIP, "tcp_max_per_source": 100_000, "tcp_idle_timeout": 600.0},
    )
    conns = await open_many(server.sip_port, "127.0.0.2", IDLE_CONNECTIONS)
    try:
        assert len(conns) > SERVER_NOFILE  # the client did get that many handshakes through
        health = await asyncio.to_thread(server.get_json, "/health")
        assert isinstance(health, dict) and health["status"] == "ok"
        await udp_call(server, tmp_path, uas_port)
        refused = 'mediasrv_sip_tcp_refused_total{reason="total"}'
        m = await metrics_when(
            server,
            lambda m: m[refused] >= len(conns) - m["mediasrv_sip_tcp_connections_limit"],
        )
        limit = m["mediasrv_sip_tcp_connections_limit"]
        assert 0 < limit < SERVER_NOFILE
        assert m["mediasrv_sip_tcp_connections"] <= limit
        assert m[refused] >= len(conns) - limit
        rows = await asyncio.to_thread(server.calls, 10)
        assert [r["disposition"] for r in rows] == ["answered"]
    finally:
        close_all(conns)
    log = server.log_tail(200_000)
    assert log.count("SIP TCP connection cap reached") == 1, "one log line per episode"


async def test_default_per_source_cap_stops_one_source(
    tmp_path: Path, start_server: StartServer
) -> None:
    raise_client_nofile(1000)
    server = start_server(numbers=NOBODY, nofile=SERVER_NOFILE)
    conns = await open_many(server.sip_port, "127.0.0.4", 200)
    other = await open_many(server.sip_port, "127.0.0.5", 1)
    refused = 'mediasrv_sip_tcp_refused_total{reason="per_source"}'
    try:
        assert len(conns) == 200 and len(other) == 1
        m = await metrics_when(server, lambda m: m[refused] >= len(conns) - 64)
        assert m["mediasrv_sip_tcp_connections"] == 64 + 1  # the default cap, plus the other
        assert m[refused] == len(conns) - 64
        other[0][1].write(b"\r\n\r\n")  # RFC 5626 ping from the other source: answered
        assert await asyncio.wait_for(other[0][0].readexactly(2), 5) == b"\r\n"
    finally:
        close_all(conns + other)


async def test_idle_tcp_connections_are_closed_but_not_a_held_tcp_call(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    server = start_server(
        numbers=[number_to(operator_at(uas_port, "op", transport="tcp"))],
        sip={**FAST_SIP, "tcp_idle_timeout": 0.5},
    )
    idle = await open_many(server.sip_port, "127.0.0.3", 20)
    assert len(idle) == 20
    for reader, _ in idle:
        assert await asyncio.wait_for(reader.read(), 15) == b""  # closed by the server
    uas = await start_uas(tmp_path, uas_port, 2, timeout_s=40, transport="t1")
    try:
        # Both legs over TCP, each silent for 2.5 s (5 idle timeouts) while the call is held.
        result = await call_through(server, tmp_path, 2, hold_ms=2500, transport="t1")
    finally:
        uas_result = await uas.wait(20)
    close_all(idle)
    assert result.stats.successful == 2, result.describe() + result.errors_tail()
    assert uas_result.stats.successful == 2, uas_result.describe()
    m = await metrics_when(server, lambda m: m["mediasrv_sip_tcp_idle_closed_total"] >= 20)
    assert m["mediasrv_sip_tcp_idle_closed_total"] >= 20


def _status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


_SHOWN = re.compile(r"generated the HTTP API token \(shown only now\): (msrv_[A-Za-z0-9_-]+)")


def test_generated_token_is_shown_once_and_survives_a_restart(
    tmp_path: Path, start_server: StartServer
) -> None:
    workdir = tmp_path / "tok"
    first = start_server(numbers=NOBODY, api_token=None, workdir=workdir)
    shown = _SHOWN.findall(first.log_tail(100_000))
    assert len(shown) == 1, first.log_tail()
    token = shown[0]
    api = f"http://127.0.0.1:{first.http_port}/api/v1/calls"
    assert _status(api, None) == 401
    assert _status(api, token) == 200
    assert token not in (first.data_dir / "api_token.sha256").read_text()
    assert first.stop() == 0
    second = start_server(numbers=NOBODY, api_token=None, workdir=workdir)
    assert len(_SHOWN.findall(second.log_tail(100_000))) == 1  # the same line, not a new one
    assert _status(f"http://127.0.0.1:{second.http_port}/api/v1/calls", token) == 200


async def test_running_server_applies_the_http_policy(start_server: StartServer) -> None:
    """The [http] keys reach the real process: slow headers closed, foreign Host 421, headers."""
    server = start_server(
        numbers=NOBODY,
        http={"idle_timeout": 0.5, "open_endpoints": ["/health"]},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # never finished
    try:
        assert await asyncio.wait_for(reader.read(), 15) == b""
    finally:
        writer.close()
    base = f"http://127.0.0.1:{server.http_port}"
    assert await asyncio.to_thread(_status, f"{base}/metrics", None) == 401
    assert await asyncio.to_thread(_status, f"{base}/metrics", server.spec.api_token) == 200
    foreign = urllib.request.Request(f"{base}/health", headers={"Host": "rebound.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, foreign, timeout=5)
    refused.value.close()
    assert refused.value.code == 421
    with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "aiohttp" not in (r.headers.get("Server") or "")
