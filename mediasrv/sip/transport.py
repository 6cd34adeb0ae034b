"""The thin asyncio adapter under the sans-IO SIP core: UDP and TCP on the same port.

RFC 3261 §18: UDP datagrams are whole messages; TCP is a byte stream framed by Content-Length
(:class:`~mediasrv.sip.parser.StreamFramer`). Responses go back over the connection the
request came in on (§18.2.2); requests to a TCP peer reuse an open connection or open one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Callable
from typing import cast

from .dialog import Peer
from .parser import SipParseError, StreamFramer

log = logging.getLogger("mediasrv.sip.transport")

Receive = Callable[[bytes, Peer], None]
OnMalformed = Callable[[str], None]
# The pre-parse source gate (issue 8): False drops what a source sent, unparsed and unanswered
# (mediasrv.sip.ratelimit.SourceGuard.admit). It sees only the address: no parse, no copy.
AdmitSource = Callable[[str], bool]


_BLANK_BYTES = b"\r\n\x00 "
_BLANK = frozenset(_BLANK_BYTES)  # checked on the first byte only: no copy of every datagram


def _addr(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    return sockaddr[0], sockaddr[1]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(data) < 4 or (data[0] in _BLANK and not data.strip(_BLANK_BYTES)):
            return  # RFC 5626 §3.5.1 CRLF keep-alive (or empty): nothing to parse
        host = str(addr[0])
        admit = self.owner.admit_source
        if admit is not None and not admit(host):
            return
        self.owner.receive(data, Peer("UDP", host, int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a peer that went away: not our failure.
        log.debug("udp error", extra={"error": str(exc)})


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport, conn_id: int) -> None:
        self.owner = owner
        self.conn_id = conn_id
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, but has its methods.
        self.transport = cast(asyncio.Transport, transport)
        host, port = _addr(transport.get_extra_info("peername"))
        self.peer = Peer("TCP", host, port, self.conn_id)
        admit = self.owner.admit_source
        if not self.pending and admit is not None and not admit(host):
            # An accepted connection from a blocked or refused source: closed unread.
            self.transport.close()
            return
        self.owner.register_connection(self)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            # A broken stream cannot be re-synchronised: count it and close (§18.3).
            log.info("closing TCP connection with unframeable data", extra={"error": exc.reason})
            self.owner.malformed("TCP")
            if self.transport is not None:
                self.transport.close()
            return
        admit = self.owner.admit_source
        for raw in messages:
            if admit is None or admit(self.peer.host):
                self.owner.receive(raw, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.unregister_connection(self)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.write(data)


class SipTransport:
    """Owns the UDP endpoint, the TCP listener and TCP connections (both directions)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        receive: Receive,
        malformed: OnMalformed = lambda _t: None,
        admit_source: AdmitSource | None = None,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.receive = receive
        self.malformed = malformed
        self.admit_source = admit_source
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._ids = itertools.count(1)
        self._by_id: dict[int, _TcpConnection] = {}
        self._by_addr: dict[tuple[str, int], _TcpConnection] = {}
        self._connect_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        udp, _ = await self.loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port), family=family
        )
        self._udp = udp
        if self.port == 0:
            self.port = _addr(udp.get_extra_info("sockname"))[1]
        sock = udp.get_extra_info("socket")
        if sock is not None:
            # Big buffers absorb bursts at high call rates instead of dropping datagrams.
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                except OSError:
                    pass
        self._tcp_server = await self.loop.create_server(
            lambda: _TcpConnection(self, next(self._ids)),
            host=self.host,
            port=self.port,
            family=family,
            reuse_address=True,
        )

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp_server is not None:
            self._tcp_server.close()
            for conn in list(self._by_id.values()):
                if conn.transport is not None:
                    conn.transport.close()
            await self._tcp_server.wait_closed()
            self._tcp_server = None

    # -- connection registry -----------------------------------------------------------------------
    def register_connection(self, conn: _TcpConnection) -> None:
        self._by_id[conn.conn_id] = conn
        if conn.peer is not None:
            self._by_addr[(conn.peer.host, conn.peer.port)] = conn

    def unregister_connection(self, conn: _TcpConnection) -> None:
        self._by_id.pop(conn.conn_id, None)
        if conn.peer is not None and self._by_addr.get((conn.peer.host, conn.peer.port)) is conn:
            del self._by_addr[(conn.peer.host, conn.peer.port)]

    def tcp_connections(self) -> int:
        return len(self._by_id)

    # -- output ---------------------------------------------------------------------------------
    def send_to(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "UDP":
            if self._udp is not None:
                self._udp.sendto(data, (peer.host, peer.port))
            return
        conn = self._by_id.get(peer.conn) if peer.conn else None
        if conn is None:
            conn = self._by_addr.get((peer.host, peer.port))
        if conn is None:
            conn = self._connect(peer)
        conn.write(data)

    def _connect(self, peer: Peer) -> _TcpConnection:
        conn = _TcpConnection(self, next(self._ids))
        self._by_addr[(peer.host, peer.port)] = conn

        async def connect() -> None:
            try:
                await self.loop.create_connection(lambda: conn, peer.host, peer.port)
            except OSError as exc:
                log.warning(
                    "TCP connect failed",
                    extra={"peer": f"{peer.host}:{peer.port}", "error": str(exc)},
                )
                self.unregister_connection(conn)
                self._by_addr.pop((peer.host, peer.port), None)

        task = self.loop.create_task(connect())
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)
        return conn
