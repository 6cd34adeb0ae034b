"""The server as carriers and ops meet it: digest auth, source ACL, TCP, OPTIONS keepalives,
malformed input, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import needs_sipp, sipp_scenario

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippOptions, SippRun, free_port, run_sipp

pytestmark = [needs_sipp, pytest.mark.e2e]

NUMBER = "0312345678"
DATA = Path(__file__).parent.parent / "data" / "sip"


def number_to(uri: str) -> list[dict[str, object]]:
    return [{"number": NUMBER, "destinations": [uri]}]


async def start_uas(tmp_path: Path, port: int, calls: int, transport: str = "u1") -> SippRun:
    opts = SippOptions(
        scenario="uas", name="uas", local_port=port, calls=calls, timeout_s=60, transport=transport
    )
    return await SippRun.start(opts, tmp_path / "uas")


def uac(server: ServerProcess, scenario: str, **kw: object) -> SippOptions:
    base: dict[str, object] = {
        "scenario": sipp_scenario(scenario) if scenario.endswith(".xml") else scenario,
        "name": "uac",
        "remote": server.sip_uri_host,
        "service": NUMBER,
        "calls": 1,
        "timeout_s": 30,
    }
    base.update(kw)
    return SippOptions(**base)  # type: ignore[arg-type]


def udp_exchange(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


async def test_trunk_digest_auth_md5_and_bad_password(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    trunk = {
        "name": "carrier",
        "addresses": ["127.0.0.1/32"],
        "inbound_auth": True,
        "username": "carrier1",
        "password": "s3cret",
        "realm": "mediasrv",
        "algorithm": "MD5",  # SIPp's [authentication] speaks MD5
    }
    server = start_server(trunks=[trunk], numbers=number_to(f"sip:op@127.0.0.1:{uas_port}"))
    # SIPp's digest uri is "sip:remote_ip:remote_port" unless -auth_uri says otherwise; the
    # server takes only credentials made for the Request-URI (RFC 7616 §3.4.6), as real UAs
    # (pjsip, for one) make them
    auth_uri = ("-auth_uri", f"{NUMBER}@{server.sip_uri_host}")
    uas = await start_uas(tmp_path, uas_port, 1)
    try:
        good = await run_sipp(
            uac(server, "uac_auth.xml", extra=("-au", "carrier1", "-ap", "s3cret", *auth_uri)),
            tmp_path / "good",
        )
    finally:
        await uas.stop()
    assert good.stats.successful == 1, good.describe() + good.errors_tail()
    bad = await run_sipp(
        uac(server, "uac_auth.xml", extra=("-au", "carrier1", "-ap", "wrong", *auth_uri)),
        tmp_path / "bad",
    )
    assert bad.stats.successful == 0
    assert "403" in bad.errors_tail(20000), bad.errors_tail()
    assert not any(server.wait_idle(20).values())


async def test_source_acl_rejects_other_addresses_with_403(
    tmp_path: Path, start_server: StartServer
) -> None:
    trunk = {"name": "carrier", "addresses": ["192.0.2.0/24"]}
    server = start_server(trunks=[trunk], numbers=number_to("sip:op@127.0.0.1:5999"))
    result = await run_sipp(uac(server, "uac_expect_failure.xml", trace_logs=True), tmp_path / "u")
    assert result.final_codes() == [403], result.describe()


async def test_tcp_both_legs(tmp_path: Path, start_server: StartServer) -> None:
    """SIPp over TCP to mediasrv, and mediasrv over TCP to the operator (transport=tcp)."""
    uas_port = free_port()
    server = start_server(numbers=number_to(f"sip:op@127.0.0.1:{uas_port};transport=tcp"))
    uas = await start_uas(tmp_path, uas_port, 50, transport="t1")
    try:
        result = await run_sipp(
            uac(server, "uac", calls=50, rate=25, hold_ms=100, transport="t1"), tmp_path / "uac"
        )
    finally:
        uas_result = await uas.wait(20)
    assert result.stats.successful == 50, result.describe() + result.errors_tail()
    assert uas_result.stats.successful == 50, uas_result.describe()
    assert not any(server.wait_idle(20).values())


def test_options_keepalive_and_crlf_ping(start_server: StartServer) -> None:
    server = start_server(numbers=number_to("sip:op@127.0.0.1:5999"))
    options = (
        f"OPTIONS sip:127.0.0.1:{server.sip_port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKka1;rport\r\n"
        "From: <sip:carrier@127.0.0.1>;tag=ka\r\nTo: <sip:mediasrv@127.0.0.1>\r\n"
        "Call-ID: keepalive-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    reply = udp_exchange(server.sip_port, options)
    assert reply is not None and reply.startswith(b"SIP/2.0 200")
    assert udp_exchange(server.sip_port, b"\r\n\r\n", timeout=0.5) is None  # ping: no answer


async def test_malformed_input_gets_400_or_is_dropped_and_never_hurts(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    server = start_server(numbers=number_to(f"sip:op@127.0.0.1:{uas_port}"))
    answered = 0
    for path in sorted(DATA.glob("*.sip")):
        reply = udp_exchange(server.sip_port, path.read_bytes(), timeout=0.3)
        if reply is not None and reply.startswith(b"SIP/2.0 400"):
            answered += 1
    for junk in (b"\x00" * 50, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n", bytes(range(256)) * 4):
        udp_exchange(server.sip_port, junk, timeout=0.2)
    # TCP: a broken stream is closed; the listener keeps serving.
    for blob in (b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", b"GARBAGE" * 2000):
        with socket.create_connection(("127.0.0.1", server.sip_port), timeout=2) as conn:
            conn.sendall(blob)
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    assert answered >= 3
    metrics = server.metrics()
    malformed = sum(v for k, v in metrics.items() if k.startswith("mediasrv_sip_malformed_total"))
    assert malformed >= 5
    # ... and a real call still goes through.
    uas = await start_uas(tmp_path, uas_port, 1)
    try:
        result = await run_sipp(uac(server, "uac", hold_ms=100), tmp_path / "uac")
    finally:
        await uas.stop()
    assert result.stats.successful == 1, result.describe()
    assert not any(server.wait_idle(20).values())


async def test_sigterm_drains_calls_and_refuses_new_ones(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    server = start_server(
        numbers=number_to(f"sip:op@127.0.0.1:{uas_port}"), server={"drain_timeout": 15.0}
    )
    uas = await start_uas(tmp_path, uas_port, 1)
    long_call = await SippRun.start(uac(server, "uac", hold_ms=3000), tmp_path / "long")
    try:
        deadline = time.monotonic() + 10
        while server.metrics().get("mediasrv_active_calls", 0) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert server.proc is not None
        server.proc.terminate()  # SIGTERM
        await asyncio.sleep(0.3)
        refused = await run_sipp(
            uac(server, "uac_expect_failure.xml", trace_logs=True), tmp_path / "refused"
        )
        assert refused.final_codes() == [503], refused.describe()
        done = await long_call.wait(20)
        assert done.stats.successful == 1, done.describe()
    finally:
        await long_call.stop()
        await uas.stop()
    code = await asyncio.to_thread(server.proc.wait, 20)
    assert code == 0
    assert '"draining"' in server.log_tail(20000) or "draining" in server.log_tail(20000)
