"""HTTP API security (issue 8, finding 5): bearer token, Host allowlist, response headers,
slow-header timeout. A real aiohttp server on 127.0.0.1 (port 0) and real clients."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from mediasrv.api.auth import (
    TOKEN_FILE_NAME,
    TOKEN_PREFIX,
    Principal,
    Scope,
    StaticTokenStore,
    bearer_token,
    ensure_server_token,
    generate_token,
    hash_token,
    rotate_server_token,
)
from mediasrv.api.hosts import HostAllowlist, split_host
from mediasrv.api.http import SECURITY_HEADERS, HttpPolicy, HttpServer
from mediasrv.outputs.calllog import CallLogStore
from mediasrv.outputs.metrics import Metrics

TOKEN = generate_token()
Start = Callable[..., Awaitable[HttpServer]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    store = CallLogStore(tmp_path / "db.sqlite")
    await store.open()
    servers: list[HttpServer] = []

    async def start(host: str = "127.0.0.1", **policy: object) -> HttpServer:
        tokens = StaticTokenStore.server(hash_token(TOKEN))
        server = HttpServer(
            host,
            0,
            Metrics(),
            store,
            lambda: {"status": "ok"},
            policy=HttpPolicy(tokens, **policy),  # type: ignore[arg-type]
        )
        await server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()
        await store.close()


async def get(
    server: HttpServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{server.port}{path}", headers=headers or {}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ the token


@pytest.mark.parametrize(
    "path", ["/api/v1/calls", "/api/v1/calls.csv", "/api/v1/calls/x", "/api/v1/openapi.json"]
)
async def test_api_without_a_token_is_401_with_a_bearer_challenge(start: Start, path: str) -> None:
    server = await start()
    status, headers, _ = await get(server, path)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer ")


async def test_wrong_token_401_right_token_200(start: Start) -> None:
    server = await start()
    for wrong in (generate_token(), TOKEN + "x", TOKEN[:-1], "", "msrv_"):
        status, headers, _ = await get(server, "/api/v1/calls", bearer(wrong))
        assert status == 401, wrong
    status, headers, _ = await get(server, "/api/v1/calls", bearer(TOKEN[:-1]))
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]  # RFC 6750 §3.1
    status, _, _ = await get(server, "/api/v1/calls", {"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    status, _, body = await get(server, "/api/v1/calls", bearer(TOKEN))
    assert status == 200 and b'"calls"' in body
    status, _, _ = await get(server, "/api/v1/calls", {"Authorization": f"bearer  {TOKEN} "})
    assert status == 200  # the scheme is case-insensitive


async def test_unknown_api_path_without_token_is_401_not_404(start: Start) -> None:
    server = await start()
    assert (await get(server, "/api/v1/secret-route"))[0] == 401
    assert (await get(server, "/api/v1/secret-route", bearer(TOKEN)))[0] == 404


async def test_ops_endpoints_open_by_default_and_closable(start: Start) -> None:
    server = await start()
    for path in ("/health", "/ready", "/metrics"):
        assert (await get(server, path))[0] == 200, path
    closed = await start(open_endpoints=frozenset({"/health"}))
    assert (await get(closed, "/health"))[0] == 200
    for path in ("/ready", "/metrics"):
        status, headers, _ = await get(closed, path)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"], path
        assert (await get(closed, path, bearer(TOKEN)))[0] == 200, path


# ------------------------------------------------------------------ Host allowlist


async def test_foreign_host_is_refused_with_421(start: Start) -> None:
    server = await start()
    port = server.port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.2:{port}", "a b", "[::1"):
        status, _, _ = await get(server, "/api/v1/calls", {**bearer(TOKEN), "Host": host})
        assert status == 421, host
        assert (await get(server, "/health", {"Host": host}))[0] == 421, host
    # the port is not checked for these names: a port mapping may show clients another one
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", "localhost"):
        assert (await get(server, "/health", {"Host": host}))[0] == 200, host


async def test_configured_host_names_are_served(start: Start) -> None:
    server = await start(allowed_hosts=("mediasrv.example.com", "api.example.com:443"))
    assert (await get(server, "/health", {"Host": "mediasrv.example.com:8443"}))[0] == 200
    assert (await get(server, "/health", {"Host": "api.example.com:443"}))[0] == 200
    assert (await get(server, "/health", {"Host": "api.example.com:80"}))[0] == 421
    anything = await start(allowed_hosts=("*",))
    assert (await get(anything, "/health", {"Host": "whatever.example"}))[0] == 200


def test_host_allowlist_rules() -> None:
    local = HostAllowlist("127.0.0.1")
    assert local.allows("127.0.0.1:8080") and local.allows("[::1]:8081") and local.allows("[::1]")
    assert not local.allows("10.0.0.5:8080") and not local.allows(None) and not local.allows("")
    assert not local.allows("a b:8080")
    named = HostAllowlist("10.1.2.3", ("api.example:443",))
    assert named.allows("10.1.2.3:8080") and named.allows("api.example:443")
    assert not named.allows("api.example") and not named.allows("10.1.2.4:8080")
    every = HostAllowlist("0.0.0.0")
    assert every.allows("10.0.0.5:8080")  # an IP literal cannot be DNS-rebound
    assert every.allows("[2001:db8::1]:8080")
    assert not every.allows("rebind.example:8080")
    assert split_host("[::1]:99") == ("::1", 99)
    assert split_host("::1") == ("::1", None)
    assert split_host("Name.Example.:8080") == ("name.example", 8080)
    assert (
        split_host("x:0") is None and split_host("x:99999") is None and split_host("[::1") is None
    )


# ------------------------------------------------------------------ headers


async def test_security_headers_and_no_version_disclosure(start: Start) -> None:
    server = await start()
    for path, headers, expected in (
        ("/api/v1/calls", bearer(TOKEN), 200),
        ("/api/v1/calls.csv", bearer(TOKEN), 200),  # a streamed response
        ("/api/v1/calls/nope", bearer(TOKEN), 404),
        ("/api/v1/calls", {}, 401),
        ("/health", {}, 200),
        ("/metrics", {}, 200),
    ):
        status, got, _ = await get(server, path, headers)
        assert status == expected, path
        for name, value in SECURITY_HEADERS.items():
            assert got.get(name) == value, (path, name)
        server_header = got.get("Server", "")
        assert "aiohttp" not in server_header and "Python" not in server_header, (path, got)
    named = await start(server_header="mediasrv")
    assert (await get(named, "/health"))[1]["Server"] == "mediasrv"


# ------------------------------------------------------------------ slow and idle connections


async def test_slow_header_and_idle_connections_are_closed(start: Start) -> None:
    server = await start(idle_timeout=0.3)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Slow: ".encode()
    sent_all = False

    async def trickle() -> None:
        nonlocal sent_all
        for byte in head + b"a" * 200:  # one byte per 20 ms: the head never ends
            if slow_writer.is_closing():
                return
            slow_writer.write(bytes([byte]))
            await asyncio.sleep(0.02)
        sent_all = True

    trickling = asyncio.ensure_future(trickle())
    try:
        assert await asyncio.wait_for(idle_reader.read(), 10) == b""
        slow = await asyncio.wait_for(slow_reader.read(), 10)
        assert b"200" not in slow  # the request never completed
        assert not sent_all  # closed while the client was still trickling
    finally:
        trickling.cancel()
        idle_writer.close()
        slow_writer.close()


# ------------------------------------------------------------------ tokens and their store


def test_token_shape_and_store() -> None:
    token = generate_token()
    assert token.startswith(TOKEN_PREFIX) and len(token) >= 40
    assert token != generate_token()
    store = StaticTokenStore.server(hash_token(token))
    who = store.authenticate(token)
    assert who is not None and who.allows(Scope.ADMIN)
    assert store.authenticate(token + "x") is None
    assert store.authenticate("\udcff") is None  # undecodable input is just a wrong token
    assert not Principal("nobody").allows(Scope.ADMIN)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("BEARER  abc ") == "abc"
    for bad in (None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "abc"):
        assert bearer_token(bad) is None, bad


def test_generated_token_is_stored_hashed_and_shown_once(tmp_path: Path) -> None:
    digest, token = ensure_server_token(tmp_path)
    assert token is not None and digest == hash_token(token)
    path = tmp_path / TOKEN_FILE_NAME
    assert path.read_text().strip() == digest and token not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, shown = ensure_server_token(tmp_path)
    assert again == digest and shown is None  # the next start reuses it, shows nothing
    new = rotate_server_token(tmp_path)
    assert ensure_server_token(tmp_path) == (hash_token(new), None)
    path.write_text("not a digest\n")
    with pytest.raises(ValueError, match="not a sha256"):
        ensure_server_token(tmp_path)
