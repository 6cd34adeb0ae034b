"""The server as carriers and ops meet it: digest auth, source ACL, TCP, OPTIONS keepalives,
malformed input, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import StartServer
from peers_plugin import needs_sipp
from sipp_calls import NUMBER, number_to, operator_at, start_uas, uac_options

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippRun, free_port, run_sipp

pytestmark = [needs_sipp, pytest.mark.e2e]

DATA = Path(__file__).parent.parent / "data" / "sip"
TCP_NUMBER = "0312340006"


@dataclass
class Plain:
    """One server with no trunk and no config of its own, for the scenarios that need none:
    NUMBER to a UDP operator, TCP_NUMBER to a TCP one."""

    server: ServerProcess
    udp_port: int
    tcp_port: int


@pytest.fixture(scope="module")
def plain(start_module_server: StartServer) -> Plain:
    udp_port, tcp_port = free_port(), free_port()
    numbers = [
        number_to(operator_at(udp_port, "op")),
        number_to(operator_at(tcp_port, "op", transport="tcp"), number=TCP_NUMBER),
    ]
    return Plain(start_module_server(numbers=numbers), udp_port, tcp_port)


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
    server = start_server(trunks=[trunk], numbers=[number_to(operator_at(uas_port, "op"))])
    # SIPp's digest uri is "sip:remote_ip:remote_port" unless -auth_uri says otherwise; the
    # server takes only credentials made for the Request-URI (RFC 7616 §3.4.6), as real UAs
    # (pjsip, for one) make them
    auth_uri = ("-auth_uri", f"{NUMBER}@{server.sip_uri_host}")
    uas = await start_uas(tmp_path, uas_port, 1)
    try:
        good = await run_sipp(
            uac_options(
                server,
                scenario="uac_auth.xml",
                extra=("-au", "carrier1", "-ap", "s3cret", *auth_uri),
            ),
            tmp_path / "good",
        )
    finally:
        await uas.stop()
    assert good.stats.successful == 1, good.describe() + good.errors_tail()
    bad = await run_sipp(
        uac_options(
            server, scenario="uac_auth.xml", extra=("-au", "carrier1", "-ap", "wrong", *auth_uri)
        ),
        tmp_path / "bad",
    )
    assert bad.stats.successful == 0
    assert "403" in bad.errors_tail(20000), bad.errors_tail()
    assert not any(server.wait_idle(20).values())


async def test_source_acl_rejects_other_addresses_with_403(
    tmp_path: Path, start_server: StartServer
) -> None:
    trunk = {"name": "carrier", "addresses": ["192.0.2.0/24"]}
    server = start_server(trunks=[trunk], numbers=[number_to("sip:op@127.0.0.1:5999")])
    result = await run_sipp(
        uac_options(server, scenario="uac_expect_failure.xml", trace_logs=True), tmp_path / "u"
    )
    assert result.final_codes() == [403], result.describe()


async def test_tcp_both_legs(tmp_path: Path, plain: Plain) -> None:
    """SIPp over TCP to mediasrv, and mediasrv over TCP to the operator (transport=tcp)."""
    server = plain.server
    uas = await start_uas(tmp_path, plain.tcp_port, 50, transport="t1")
    try:
        opts = uac_options(server, 50, service=TCP_NUMBER, rate=25, hold_ms=100, transport="t1")
        result = await run_sipp(opts, tmp_path / "uac")
    finally:
        uas_result = await uas.wait(20)
    assert result.stats.successful == 50, result.describe() + result.errors_tail()
    assert uas_result.stats.successful == 50, uas_result.describe()
    assert not any(server.wait_idle(20).values())


def test_options_keepalive_and_crlf_ping(plain: Plain) -> None:
    server = plain.server
    options = (
        f"OPTIONS sip:127.0.0.1:{server.sip_port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKka1;rport\r\n"
        "From: <sip:carrier@127.0.0.1>;tag=ka\r\nTo: <sip:mediasrv@127.0.0.1>\r\n"
        "Call-ID: keepalive-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    reply = udp_exchange(server.sip_port, options)
    assert reply is not None and reply.startswith(b"SIP/2.0 200")
    assert udp_exchange(server.sip_port, b"\r\n\r\n", timeout=0.5) is None  # ping: no answer


# ==== EXPECTED OUTCOMES of tests/data/sip/*.sip sent to the server over UDP ==================
# (reconcile at merge: the "sipconf" work changes how RFC 4475 torture messages are answered)
# replies: the distinct status codes that come back to the sending socket, in order (100
#          Trying first for an INVITE; () = no reply: dropped);
# malformed: counted in mediasrv_sip_malformed_total (it did not parse, or parsed but was
#          unusable).
class Outcome(NamedTuple):
    replies: tuple[int, ...]
    malformed: bool = False


DROPPED = Outcome(())
FIXTURE_OUTCOMES: dict[str, Outcome] = {
    # malformed requests: 400 when a response can be formed (RFC 3261 §21.4.1), else dropped
    "bad_start_line.sip": Outcome((), malformed=True),  # no SIP-Version: not even a request
    "bad_version.sip": Outcome((505,), malformed=True),  # SIP/3.0: 505 (RFC 3261 §21.5.7)
    "missing_call_id.sip": Outcome((400,), malformed=True),  # Via usable: 400 copies the rest
    "binary_junk.sip": Outcome((), malformed=True),
    "content_length_too_big.sip": Outcome((400,), malformed=True),
    "cseq_mismatch.sip": Outcome((400,), malformed=True),
    "header_without_colon.sip": Outcome((400,), malformed=True),
    "non_utf8_header.sip": Outcome((400,), malformed=True),
    # malformed responses: never answered (§17.1.3 / §21)
    "bad_status.sip": Outcome((), malformed=True),
    # well-formed requests
    "compact_form.sip": Outcome((100, 480)),  # to the tracking number; no operator listens
    "pjsua2_invite.sip": Outcome((100, 480)),  # the same
    # unknown numbers are refused at admission, once and statelessly (no 100 first: issue 8)
    "sipp_invite.sip": Outcome((404,)),  # "service" is no tracking number
    "sipp_invite_transport_upper.sip": Outcome((404,)),  # sent with a branch of its own
    "ipv6_invite.sip": Outcome((404,)),  # "bob" is no tracking number
    "folded_headers.sip": Outcome((200,)),  # OPTIONS
    "multi_via_one_line.sip": Outcome((481,)),  # BYE outside any dialog (§12.2.2)
    "unknown_method_mixed_case.sip": Outcome((501,)),
    "bare_lf.sip": DROPPED,  # an ACK matching nothing is never answered (§17.2.3)
    # stray responses: dropped (§17.1.3)
    "ok_401_challenge.sip": DROPPED,
    "pjsua2_100_trying.sip": DROPPED,
    "pjsua2_180_ringing.sip": DROPPED,
    "pjsua2_200_ok_sdp.sip": DROPPED,
    "pjsua2_bye_200_ok.sip": DROPPED,
    "sipp_180_ringing.sip": DROPPED,
    "sipp_200_ok_sdp.sip": DROPPED,
}
# ==== end of EXPECTED OUTCOMES ===============================================================

# Wire bytes changed before sending, so that each fixture is its own transaction: this one is
# sipp_invite.sip with another Contact, branch included (it would be taken as a retransmission).
REWRITE = {"sipp_invite_transport_upper.sip": (b"z9hG4bK-6210-1-0", b"z9hG4bK-6210-1-upper")}


def status_code(datagram: bytes) -> int | None:
    first = datagram.split(b"\r\n", 1)[0].split(b" ")
    if len(first) >= 2 and first[0] == b"SIP/2.0" and first[1].isdigit():
        return int(first[1])
    return None


def exchange_fixtures(port: int, timeout: float = 20.0) -> dict[str, tuple[int, ...]]:
    """Send every fixture from its own socket; return the distinct codes each got back.

    The fixtures expected to be dropped go first: the server reads its socket in order and
    answers synchronously, so once every answered fixture has its last expected code, any
    reply to the dropped ones would have come too (plus a short grace for the socket queue).
    """
    names = sorted(FIXTURE_OUTCOMES, key=lambda n: (bool(FIXTURE_OUTCOMES[n].replies), n))
    sockets: dict[str, socket.socket] = {}
    got: dict[str, list[int]] = {n: [] for n in names}
    with selectors.DefaultSelector() as sel:
        try:
            for name in names:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                sockets[name] = sock
                sel.register(sock, selectors.EVENT_READ, name)
                payload = (DATA / name).read_bytes()
                if name in REWRITE:
                    payload = payload.replace(*REWRITE[name])
                sock.sendto(payload, ("127.0.0.1", port))

            def complete() -> bool:
                return all(
                    not o.replies or o.replies[-1] in got[n] for n, o in FIXTURE_OUTCOMES.items()
                )

            deadline = time.monotonic() + timeout
            grace_until: float | None = None
            while time.monotonic() < (grace_until or deadline):
                for key, _ in sel.select(0.05):
                    code = status_code(key.fileobj.recv(65535))  # type: ignore[union-attr]
                    codes = got[key.data]
                    if code is not None and code not in codes:
                        codes.append(code)
                if grace_until is None and complete():
                    grace_until = time.monotonic() + 0.3
        finally:
            for sock in sockets.values():
                sock.close()
    return {n: tuple(c) for n, c in got.items()}


async def test_each_wire_fixture_gets_its_expected_outcome_and_never_hurts(
    tmp_path: Path, plain: Plain
) -> None:
    """The fixtures' INVITEs to NUMBER get 480: no operator listens on its port until the
    call at the end."""
    assert set(FIXTURE_OUTCOMES) == {p.name for p in DATA.glob("*.sip")}, "a fixture has no row"
    server = plain.server
    malformed_udp = 'mediasrv_sip_malformed_total{transport="UDP"}'
    malformed_before = server.metrics().get(malformed_udp, 0.0)
    got = await asyncio.to_thread(exchange_fixtures, server.sip_port)
    assert got == {n: o.replies for n, o in FIXTURE_OUTCOMES.items()}
    malformed = server.metrics().get(malformed_udp, 0.0) - malformed_before
    assert malformed == sum(o.malformed for o in FIXTURE_OUTCOMES.values())
    for junk in (b"\x00" * 50, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n", bytes(range(256)) * 4):
        assert udp_exchange(server.sip_port, junk, timeout=0.2) is None
    # TCP: a broken stream is closed; the listener keeps serving.
    for blob in (b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", b"GARBAGE" * 2000):
        with socket.create_connection(("127.0.0.1", server.sip_port), timeout=2) as conn:
            conn.sendall(blob)
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    # ... and a real call still goes through.
    uas = await start_uas(tmp_path, plain.udp_port, 1)
    try:
        result = await run_sipp(uac_options(server, scenario="uac", hold_ms=100), tmp_path / "uac")
    finally:
        await uas.stop()
    assert result.stats.successful == 1, result.describe()
    assert not any(server.wait_idle(20).values())


async def wait_for_health_status(server: ServerProcess, status: str, timeout: float = 10.0) -> None:
    """Poll /health until it reports ``status`` (503 with it while draining)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: object = None
    while loop.time() < deadline:
        try:
            seen = await asyncio.to_thread(server.get_json, "/health")
        except urllib.error.HTTPError as exc:
            seen = (exc.code, json.loads(exc.read() or b"null"))
            if exc.code == 503 and isinstance(seen[1], dict) and seen[1].get("status") == status:
                return
        except OSError as exc:
            seen = exc
        if isinstance(seen, dict) and seen.get("status") == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"/health never said {status!r} within {timeout} s; last: {seen!r}")


async def test_sigterm_drains_calls_and_refuses_new_ones(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    server = start_server(
        numbers=[number_to(operator_at(uas_port, "op"))], server={"drain_timeout": 15.0}
    )
    uas = await start_uas(tmp_path, uas_port, 1)
    long_call = await SippRun.start(
        uac_options(server, scenario="uac", hold_ms=3000), tmp_path / "long"
    )
    try:
        deadline = time.monotonic() + 10
        while server.metrics().get("mediasrv_active_calls", 0) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert server.proc is not None
        server.proc.terminate()  # SIGTERM
        await wait_for_health_status(server, "draining")
        refused = await run_sipp(
            uac_options(server, scenario="uac_expect_failure.xml", trace_logs=True),
            tmp_path / "refused",
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
