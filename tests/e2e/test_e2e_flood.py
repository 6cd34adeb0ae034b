"""Issue 8, findings 7 and 8, against the running server over loopback.

Enumeration: unknown numbers make no call-log rows (aggregated in ``rejected_requests``);
SIPVicious ``svwar`` finds nothing from a source in no trunk, and stalls from a trunk source.
OPTIONS is answered for trunks only; the Server header is configurable and can be omitted.
Reflection: a spoofed INVITE brings back at most one datagram (``reject``) or none (``drop``);
a flood from one source is blocked before parsing while the trunk is still served.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from conftest import StartServer
from flood_support import probe, svwar, svwar_available
from peers_plugin import needs_sipp, sipp_scenario

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippOptions, SippRun, free_port

pytestmark = [needs_sipp, pytest.mark.e2e]

NUMBER = "0312340500"
TRUNK = [{"name": "carrier", "addresses": ["127.0.0.1/32"]}]
STRANGER = "127.0.0.3"


def numbers(port: int = 9) -> list[dict[str, object]]:
    return [{"number": NUMBER, "destinations": [f"sip:op@127.0.0.1:{port}"]}]


def rows_of(server: ServerProcess, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{server.data_dir / 'mediasrv.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def call_rows(server: ServerProcess) -> int:
    data = server.get_json("/api/v1/calls?limit=1")
    assert isinstance(data, dict)
    return int(data["total"])


def refused(server: ServerProcess, reason: str) -> float:
    return server.metrics().get(f'mediasrv_sip_refused_total{{reason="{reason}"}}', 0.0)


def wait_rejections(server: ServerProcess, reason: str, total: int, timeout: float = 15.0) -> int:
    """The aggregate is flushed every few seconds: wait until it holds ``total``."""
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        (row,) = rows_of(
            server, f"SELECT COALESCE(SUM(count), 0) FROM rejected_requests WHERE reason='{reason}'"
        )
        got = int(row[0])  # type: ignore[call-overload]
        if got >= total:
            break
        time.sleep(0.3)
    return got


def unknown(count: int) -> list[str]:
    return [f"0399{i:06d}" for i in range(count)]


def test_2000_invites_to_unknown_numbers_make_no_call_rows(start_server: StartServer) -> None:
    server = start_server(
        trunks=TRUNK,
        numbers=numbers(),
        extra_sections={"sip.rate_limit": {"unknown_number_rate": 0}},  # no budget: all 404
    )
    ex = probe(server.sip_port, "127.0.0.1", "INVITE", unknown(2000), rate=1000, listen_s=1.5)
    assert ex.sent == 2000
    # One 404 per INVITE: no 100 Trying, no retransmissions of the 404 (stateless refusal).
    # (A loaded loopback may drop a few datagrams either way: allow 1 % of them.)
    codes = ex.codes()
    assert set(codes) == {404} and 1980 <= len(codes) <= 2000, len(codes)
    assert call_rows(server) == 0  # today: 2,000 rows
    counted = wait_rejections(server, "unknown-number", 2000)
    assert len(codes) <= counted <= 2000
    distinct = rows_of(server, "SELECT COUNT(*), MIN(first) <= MAX(last) FROM rejected_requests")
    assert distinct[0][0] <= 2000 and distinct[0][1] == 1
    assert refused(server, "unknown-number") == counted


def test_unknown_number_budget_silences_a_source_but_serves_real_numbers(
    start_server: StartServer,
) -> None:
    server = start_server(
        trunks=TRUNK,
        numbers=numbers(),
        extra_sections={"sip.rate_limit": {"unknown_number_burst": 20}},
    )
    ex = probe(server.sip_port, "127.0.0.1", "INVITE", unknown(500), rate=500, listen_s=1.0)
    answered = ex.codes().count(404)
    assert 20 <= answered <= 22, answered  # the burst, plus at most the refill at 0.2/s
    assert len(ex.replies) == answered  # the rest got nothing at all
    # A call to the real number from the same source still gets its 100 Trying.
    real = probe(server.sip_port, "127.0.0.1", "INVITE", [NUMBER], rate=10, listen_s=1.0)
    assert 100 in real.codes()
    assert call_rows(server) <= 1
    total = wait_rejections(server, "unknown-number-silenced", 500 - answered)
    assert total == 500 - answered
    assert "too many INVITEs to unknown numbers" in server.log_tail(20000)


def test_options_from_a_source_in_no_trunk_is_not_answered_200(
    start_server: StartServer,
) -> None:
    reject = start_server(trunks=TRUNK, numbers=numbers())
    assert probe(reject.sip_port, STRANGER, "OPTIONS", ["x"], 10, 1.0).codes() == [403]
    assert probe(reject.sip_port, "127.0.0.1", "OPTIONS", ["x"], 10, 1.0).codes() == [200]
    drop = start_server(trunks=TRUNK, numbers=numbers(), sip={"untrusted_source_policy": "drop"})
    assert probe(drop.sip_port, STRANGER, "OPTIONS", ["x"], 10, 1.0).replies == []
    assert probe(drop.sip_port, "127.0.0.1", "OPTIONS", ["x"], 10, 1.0).codes() == [200]


@pytest.mark.parametrize(("value", "expected"), [("", None), ("acme-sbc/2.1", b"acme-sbc/2.1")])
def test_server_header_configurable_or_omitted(
    start_server: StartServer, value: str, expected: bytes | None
) -> None:
    server = start_server(trunks=TRUNK, numbers=numbers(), sip={"user_agent": value})
    (reply,) = probe(server.sip_port, "127.0.0.1", "OPTIONS", ["x"], 10, 1.0).replies
    headers = dict(
        line.split(b":", 1) for line in reply.split(b"\r\n")[1:] if b":" in line
    )
    server_value = headers.get(b"Server")
    assert (server_value.strip() if server_value else None) == expected
    assert b"mediasrv" not in reply.split(b"\r\n\r\n")[0].replace(b"sip:mediasrv@", b"")


@pytest.mark.parametrize("policy", ["reject", "drop"])
def test_spoofed_invites_are_not_amplified(start_server: StartServer, policy: str) -> None:
    """F8: 100 unacknowledged INVITEs from a source in no trunk. Today: 12 datagrams back per
    INVITE (100 Trying + the 403 and its Timer G retransmissions)."""
    server = start_server(
        trunks=TRUNK, numbers=numbers(), sip={"untrusted_source_policy": policy, "t1": 0.05}
    )
    # Timer H = 64*T1 = 3.2 s: listen past it, so that retransmissions would be seen.
    ex = probe(server.sip_port, STRANGER, "INVITE", [NUMBER] * 100, rate=200, listen_s=4.0)
    assert ex.sent == 100
    # reject: at most the burst (50) and its refill at 20/s until the block, once each
    max_back = 0 if policy == "drop" else int(50 + 20 * ex.send_seconds) + 1
    assert len(ex.replies) <= max_back
    assert set(ex.codes()) <= {403}
    if policy == "reject":
        assert ex.reply_bytes < ex.sent_bytes  # less out than in: no reflection gain
    assert call_rows(server) == 0


def test_a_flood_from_one_source_is_blocked_while_the_trunk_is_served(
    start_server: StartServer,
) -> None:
    server = start_server(
        trunks=TRUNK,
        numbers=numbers(),
        sip={"options_policy": "any"},  # so that every OPTIONS would be answered 200
        extra_sections={"sip.rate_limit": {"rate": 10, "burst": 30, "block_seconds": 30}},
    )
    flood = probe(server.sip_port, STRANGER, "OPTIONS", unknown(3000), rate=3000, listen_s=1.0)
    assert flood.sent == 3000
    # The burst, plus the 10/s refill until the bucket runs dry (then blocked for 30 s).
    assert 30 <= len(flood.replies) <= 30 + 10 * flood.send_seconds + 1, len(flood.replies)
    trunk = probe(server.sip_port, "127.0.0.1", "OPTIONS", ["x"] * 5, 50, 1.0)
    assert trunk.codes() == [200] * 5
    deadline = time.monotonic() + 15  # drops are counted per source and handed over every 5 s
    while refused(server, "rate-limited") < 3000 - 45 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert refused(server, "rate-limited") >= 3000 - 45
    assert wait_rejections(server, "rate-limited", 3000 - 45) >= 3000 - 45
    assert server.metrics().get("mediasrv_sip_blocked_sources") == 1.0
    log = server.log_tail(50000)
    assert log.count("SIP source over its request rate") == 1  # once per block


# --------------------------------------------------------------------------- SIPVicious svwar

needs_svwar = pytest.mark.skipif(not svwar_available(), reason="sipvicious not installed")


async def ringing_operator(tmp_path: Path) -> tuple[SippRun, int]:
    port = free_port()
    uas = await SippRun.start(
        SippOptions(
            scenario=sipp_scenario("uas_noanswer.xml"),
            name="uas",
            local_port=port,
            calls=100,
            timeout_s=90,
        ),
        tmp_path / "uas",
    )
    return uas, port


@needs_svwar
async def test_svwar_from_a_source_in_no_trunk_finds_nothing(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas, port = await ringing_operator(tmp_path)
    try:
        for policy in ("reject", "drop"):
            server = start_server(
                trunks=TRUNK, numbers=numbers(port), sip={"untrusted_source_policy": policy}
            )
            run = svwar(server.sip_port, STRANGER, 312340000, 312340999, 10, timeout=40)
            assert run.found == set(), run.output[-2000:]
            if policy == "drop":
                assert "timed out" in run.output  # nothing at all came back
            assert call_rows(server) == 0
    finally:
        await uas.stop()


@needs_svwar
async def test_svwar_from_the_trunk_is_stalled_by_the_unknown_number_budget(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Today svwar finds the number from the trunk source (4.9 s for 501 numbers here, the
    report says 0.62 s); with the default budget (20 unknown numbers, then silence) it stalls
    once 32 probes go unanswered and gives up without finding it."""
    uas, port = await ringing_operator(tmp_path)
    try:
        server = start_server(trunks=TRUNK, numbers=numbers(port))
        run = svwar(server.sip_port, "127.0.0.1", 312340000, 312340999, 10, timeout=60)
        assert run.found == set(), run.output[-2000:]
        assert run.seconds < 60
        assert call_rows(server) == 0
        assert wait_rejections(server, "unknown-number-silenced", 1) >= 1
    finally:
        await uas.stop()
