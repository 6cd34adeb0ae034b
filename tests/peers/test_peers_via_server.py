"""The SIPp scenarios through a real ``mediasrv run``: the flows the harness exists for.

(The e2e folder covers load, failure-code mapping and ops; these prove the remaining
scenarios against the server: CANCEL, BYE from the operator side, lower-case Contact, and
RTP relayed through anchored media.)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from peers_plugin import StartSipp, needs_sipp

from mediasrv.demo.server import ServerProcess, ServerSpec
from mediasrv.demo.sipp import SippResult, free_port, free_port_block

pytestmark = [pytest.mark.e2e, needs_sipp]

NUMBER = "0312345678"
PCAP = "/usr/share/sip-tester/g711a.pcap"
StartServer = Callable[[int], Awaitable[ServerProcess]]


@pytest.fixture
async def server_to(tmp_path: Path) -> AsyncIterator[StartServer]:
    """``await server_to(uas_port)``: mediasrv routing NUMBER to a uas on that port."""
    servers: list[ServerProcess] = []

    async def start(uas_port: int) -> ServerProcess:
        spec = ServerSpec(workdir=tmp_path / f"server{len(servers)}", numbers=[{
            "number": NUMBER, "business": "peers",
            "destinations": [f"sip:uas@127.0.0.1:{uas_port}"]}])
        server = ServerProcess(spec)
        servers.append(server)
        await asyncio.to_thread(server.start)
        return server

    try:
        yield start
    finally:
        for server in servers:
            assert await server.astop() == 0, server.log_tail()


async def _through(start_sipp: StartSipp, server_to: StartServer, uac: str, uas: str,
                   calls: int = 1, hold_ms: int = 300, uas_keys: dict[str, str] | None = None,
                   **uac_opts: Any) -> tuple[SippResult, SippResult]:
    uas_port = free_port()
    server = await server_to(uas_port)
    far = await start_sipp(uas, name="uas", local_port=uas_port, calls=calls, hold_ms=hold_ms,
                           keys=uas_keys or {}, timeout_s=30)
    near = await start_sipp(uac, name="uac", remote=server.sip_uri_host, service=NUMBER,
                            calls=calls, rate=10, hold_ms=hold_ms, timeout_s=30, **uac_opts)
    return await near.wait(), await far.wait(15)


async def test_lower_case_contact_calls(start_sipp: StartSipp, server_to: StartServer) -> None:
    done, served = await _through(start_sipp, server_to, "uac.xml", "uas_lc.xml", calls=20)
    assert done.ok, done.describe() + done.errors_tail()
    assert served.stats.successful == 20


async def test_cancel_reaches_the_operator(start_sipp: StartSipp,
                                           server_to: StartServer) -> None:
    done, served = await _through(start_sipp, server_to, "uac_cancel.xml", "uas_noanswer.xml",
                                  calls=3)
    assert done.ok, done.errors_tail()
    assert served.ok, served.errors_tail()


async def test_operator_hangs_up(start_sipp: StartSipp, server_to: StartServer) -> None:
    done, served = await _through(start_sipp, server_to, "uac_wait_bye.xml", "uas_bye.xml",
                                  calls=3)
    assert done.ok, done.errors_tail()
    assert served.ok, served.errors_tail()


async def test_rtp_is_relayed_through_anchored_media(start_sipp: StartSipp,
                                                     server_to: StartServer) -> None:
    sink_port = free_port_block(2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", sink_port))
        sink.setblocking(False)
        done, served = await _through(
            start_sipp, server_to, "uac_media.xml", "uas_sink.xml", trace_msg=True,
            keys={"pcap": PCAP}, uas_keys={"sink_port": str(sink_port)}, hold_ms=1000)
        packets = []
        while True:
            try:
                packets.append(sink.recvfrom(2048))
            except BlockingIOError:
                break
    assert done.ok, done.errors_tail()
    assert served.ok, served.errors_tail()
    ack = [line for line in done.files.messages.read_text().splitlines()
           if line.startswith("X-Answered-Media:")]
    answered_port = int(ack[0].split(":")[2].split()[0])
    assert answered_port != sink_port  # the caller talks to the server, not to the operator
    assert len(packets) >= 25
    sources = {addr for _, addr in packets}
    assert len(sources) == 1 and next(iter(sources))[1] % 2 == 0  # from one anchored RTP port
    assert {data[1] & 0x7F for data, _ in packets} == {8}
