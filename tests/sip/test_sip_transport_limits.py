"""SIP TCP connection limits (issue 8, finding 4): idle timeout, per-source and total caps.

The caps' bookkeeping is tested sans-IO; the transport itself on real loopback sockets
(127.0.0.x sources), with short timeouts and awaited closes, never a wall-clock assertion.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mediasrv.sip.dialog import Peer
from mediasrv.sip.transport import (
    ConnectionLimiter,
    Refusal,
    SipTransport,
    TcpLimits,
    derive_max_total,
    source_key,
)

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKlim1\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
    b"Call-ID: lim-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


class Counting:
    """A TcpObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.idle_closed = 0

    def tcp_refused(self, reason: str) -> None:
        self.refused.append(reason)

    def tcp_idle_closed(self) -> None:
        self.idle_closed += 1


# ------------------------------------------------------------------ sans-IO bookkeeping


def test_limiter_refuses_per_source_then_total_with_one_episode_each() -> None:
    lim = ConnectionLimiter(max_per_source=2, max_total=3)
    assert lim.admit("a") == (None, False)
    assert lim.admit("a") == (None, False)
    assert lim.admit("a") == (Refusal.PER_SOURCE, True)  # the episode begins: log it
    assert lim.admit("a") == (Refusal.PER_SOURCE, False)  # same episode: no new log line
    assert lim.admit("b") == (None, False)  # another source still gets in
    assert lim.admit("c") == (Refusal.TOTAL, True)
    assert lim.admit("c") == (Refusal.TOTAL, False)
    assert lim.total == 3
    ended = lim.release("a")
    assert ("", 2) in ended and ("a", 2) in ended  # both episodes over, with their counts
    assert lim.admit("c") == (None, False)
    assert lim.count("a") == 1 and lim.count("c") == 1


def test_source_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert (
        source_key("2001:db8:1:2::5") == source_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    )
    assert source_key("2001:db8:1:3::5") != source_key("2001:db8:1:2::5")
    assert source_key("fe80::1%eth0") == "fe80::/64"


def test_total_cap_leaves_the_reserve_or_a_quarter() -> None:
    assert derive_max_total(20_000, 12_564) == 7_436
    assert derive_max_total(2_048, 12_564) == 512  # limit too small: TCP gets a quarter
    assert derive_max_total(1_048_576, 12_564) == 10_000  # the memory ceiling


# ------------------------------------------------------------------ the transport on loopback


MakeTransport = Callable[..., Awaitable[SipTransport]]


@pytest.fixture
async def make_transport() -> AsyncIterator[MakeTransport]:
    made: list[SipTransport] = []

    async def make(
        limits: TcpLimits, observer: Counting, in_use: Callable[[], list[Peer]] = list
    ) -> SipTransport:
        t = SipTransport(
            asyncio.get_running_loop(),
            "127.0.0.1",
            0,
            lambda _d, _p: None,
            limits=limits,
            observer=observer,
            peers_in_use=in_use,
        )
        await t.start()
        made.append(t)
        return t

    yield make
    for t in made:
        await t.stop()


async def connect(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True when the server closes (EOF or reset) within ``timeout``."""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(4096), timeout)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def still_open(reader: asyncio.StreamReader, for_s: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(4096), for_s)
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False
    return bool(data)


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_idle_connection_is_closed_and_counted(make_transport: MakeTransport) -> None:
    seen = Counting()
    t = await make_transport(TcpLimits(idle_timeout=0.2), seen)
    reader, writer = await connect(t.port)
    assert await wait_for(lambda: t.tcp_connections() == 1)
    assert await closed_by_server(reader)
    assert seen.idle_closed == 1
    assert await wait_for(lambda: t.tcp_connections() == 0)
    writer.close()


async def test_a_trickle_that_never_completes_a_message_is_idle(
    make_transport: MakeTransport,
) -> None:
    seen = Counting()
    t = await make_transport(TcpLimits(idle_timeout=0.3), seen)
    reader, writer = await connect(t.port)
    closed = asyncio.ensure_future(closed_by_server(reader))
    for byte in OPTIONS[:40]:  # a slow header, one byte every 50 ms, never finished
        if closed.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
    assert await closed
    assert seen.idle_closed == 1
    writer.close()


async def test_keepalive_pings_get_pongs_and_keep_the_connection(
    make_transport: MakeTransport,
) -> None:
    """RFC 5626 §4.4.1: a double-CRLF ping is answered by a CRLF pong, and is activity."""
    seen = Counting()
    # pings every 0.15 s against a 0.6 s timeout: a 4x margin for a loaded machine's loop
    t = await make_transport(TcpLimits(idle_timeout=0.6), seen)
    reader, writer = await connect(t.port)
    for _ in range(12):  # 12 x 0.15 s = 3 idle timeouts
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        await asyncio.sleep(0.15)
    assert seen.idle_closed == 0
    assert await closed_by_server(reader)  # pings stop: idle, closed
    writer.close()


async def test_connection_a_dialog_uses_is_never_idle(make_transport: MakeTransport) -> None:
    seen = Counting()
    in_use: list[Peer] = []
    t = await make_transport(TcpLimits(idle_timeout=0.1), seen, lambda: list(in_use))
    reader, writer = await connect(t.port)
    assert await wait_for(lambda: t.tcp_connections() == 1)
    conn = next(iter(t._by_id.values()))
    assert conn.peer is not None
    in_use.append(conn.peer)  # e.g. a confirmed dialog whose BYE must come back this way
    assert await still_open(reader, 0.6)  # six idle timeouts
    assert seen.idle_closed == 0
    in_use.clear()  # the dialog ended
    assert await closed_by_server(reader)
    writer.close()


async def test_per_source_cap_refuses_the_next_while_another_source_connects(
    make_transport: MakeTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Counting()
    cap = 5
    t = await make_transport(TcpLimits(idle_timeout=60, max_per_source=cap), seen)
    caplog.set_level(logging.INFO, "mediasrv.sip.transport")
    kept = [await connect(t.port, "127.0.0.2") for _ in range(cap)]
    assert await wait_for(lambda: t.tcp_connections() == cap)
    refused = [await connect(t.port, "127.0.0.2") for _ in range(4)]  # cap+1 .. cap+4
    for reader, _ in refused:
        assert await closed_by_server(reader)
    assert seen.refused == ["per_source"] * 4
    other_reader, other_writer = await connect(t.port, "127.0.0.3")
    other_writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(other_reader.readexactly(2), 5) == b"\r\n"  # served
    for reader, _ in kept:
        assert await still_open(reader, 0.01)
    began = [r for r in caplog.records if "per-source connection cap reached" in r.getMessage()]
    assert len(began) == 1  # once per episode, not per connection
    assert began[0].__dict__["source"] == "127.0.0.2"
    for _, writer in kept[:2]:  # the source drops under 90 % of its cap: the episode ends
        writer.close()
    assert await wait_for(lambda: any("episode over" in r.getMessage() for r in caplog.records))
    for _, writer in [*kept[2:], *refused, (None, other_writer)]:
        writer.close()


async def test_total_cap_refuses_every_source(make_transport: MakeTransport) -> None:
    seen = Counting()
    t = await make_transport(TcpLimits(idle_timeout=60, max_per_source=10, max_total=4), seen)
    kept = [await connect(t.port, f"127.0.0.{2 + i}") for i in range(4)]
    assert await wait_for(lambda: t.tcp_connections() == 4)
    reader, writer = await connect(t.port, "127.0.0.9")
    assert await closed_by_server(reader)
    assert seen.refused == ["total"]
    kept[0][1].close()
    assert await wait_for(lambda: t.tcp_connections() == 3)
    reader2, writer2 = await connect(t.port, "127.0.0.9")
    writer2.write(b"\r\n\r\n")
    assert await asyncio.wait_for(reader2.readexactly(2), 5) == b"\r\n"
    for _, w in [*kept[1:], (None, writer), (None, writer2)]:
        w.close()


def test_loopback_aliases_exist() -> None:
    """127.0.0.2.. are usable as sources on this machine (the tests above rely on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.3", 0))
