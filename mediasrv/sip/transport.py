"""The thin asyncio adapter under the sans-IO SIP core: UDP and TCP on the same port.

RFC 3261 §18: UDP datagrams are whole messages; TCP is a byte stream framed by Content-Length
(:class:`~mediasrv.sip.parser.StreamFramer`). Responses go back over the connection the
request came in on (§18.2.2); requests to a TCP peer reuse an open connection or open one.

TCP connections are a resource a peer can hoard (issue 8, finding 4), so the transport bounds
them: an idle timeout (:class:`TcpLimits.idle_timeout`), a cap per source and a total cap on
accepted connections (:class:`ConnectionLimiter`), each refusal counted through
:class:`TcpObserver` and logged once per episode.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from .dialog import Peer
from .parser import SipParseError, StreamFramer

log = logging.getLogger("mediasrv.sip.transport")

Receive = Callable[[bytes, Peer], None]
OnMalformed = Callable[[str], None]
PeersInUse = Callable[[], Iterable[Peer]]

# RFC 5626 §4.4.1: a double-CRLF ping is answered with a single CRLF pong.
_PONG = b"\r\n"
# The pre-parse source gate (issue 8): False drops what a source sent, unparsed and unanswered
# (mediasrv.sip.ratelimit.SourceGuard.admit). It sees only the address: no parse, no copy.
AdmitSource = Callable[[str], bool]


_BLANK_BYTES = b"\r\n\x00 "
_BLANK = frozenset(_BLANK_BYTES)  # checked on the first byte only: no copy of every datagram


def _addr(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    return sockaddr[0], sockaddr[1]


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """How many TCP connections the transport keeps, and for how long when idle.

    ``idle_timeout``: RFC 3261 §18.3 leaves it to the implementation how long a connection
    stays open after its last message; RFC 5626 §4.4.1 keep-alive pings keep a flow alive.
    ``max_per_source`` and ``max_total`` bound the connections peers open to us (accepted
    ones); connections we open ourselves (to operators) are bounded by the calls.
    """

    idle_timeout: float = 60.0
    max_per_source: int = 64
    max_total: int = 10_000  # MAX_TOTAL_CEILING


MAX_TOTAL_CEILING = 10_000  # beyond this, idle connections cost more memory than they are worth


class TcpObserver(Protocol):
    """What the transport reports about its connections (metrics live above sip/)."""

    def tcp_refused(self, reason: str) -> None: ...

    def tcp_idle_closed(self) -> None: ...


class NullTcpObserver:
    def tcp_refused(self, reason: str) -> None:
        return None

    def tcp_idle_closed(self) -> None:
        return None


class Refusal(enum.StrEnum):
    PER_SOURCE = "per_source"
    TOTAL = "total"


def source_key(host: str) -> str:
    """The unit a per-source cap counts: an IPv4 address, or an IPv6 /64 (one subscriber's
    prefix, RFC 6177), so that one host cannot dodge the cap by cycling addresses."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def derive_max_total(nofile: int, reserve: int, ceiling: int = MAX_TOTAL_CEILING) -> int:
    """The total TCP cap that leaves ``reserve`` file descriptors to everything else.

    When the open-files limit cannot hold the reserve, TCP gets a quarter of it, so that the
    rest (RTP sockets, the store, HTTP) still has three quarters.
    """
    budget = nofile - reserve
    return max(1, min(ceiling, max(budget, nofile // 4)))


class ConnectionLimiter:
    """Counts accepted connections per source and in total; says which one to refuse.

    Sans-IO. An *episode* starts at the first refusal of a kind (total, or one source) and
    ends when the count is back under 90 % of its cap; the transport logs both ends, so a
    flood gives two log lines, not one per connection.
    """

    def __init__(self, max_per_source: int, max_total: int) -> None:
        self.max_per_source = max_per_source
        self.max_total = max_total
        self.total = 0
        self._per_source: dict[str, int] = {}
        self._episodes: dict[str, int] = {}  # "" (total) or a source -> refusals so far

    def count(self, source: str) -> int:
        return self._per_source.get(source, 0)

    def admit(self, source: str) -> tuple[Refusal | None, bool]:
        """(None, False) when admitted (and counted); else (why, whether an episode began)."""
        if self.total >= self.max_total:
            return Refusal.TOTAL, self._refused("")
        if self._per_source.get(source, 0) >= self.max_per_source:
            return Refusal.PER_SOURCE, self._refused(source)
        self.total += 1
        self._per_source[source] = self._per_source.get(source, 0) + 1
        return None, False

    def release(self, source: str) -> list[tuple[str, int]]:
        """Count a connection gone; return the episodes that ended: (key, refusals)."""
        self.total -= 1
        left = self._per_source.get(source, 0) - 1
        if left > 0:
            self._per_source[source] = left
        else:
            self._per_source.pop(source, None)
        ended: list[tuple[str, int]] = []
        if "" in self._episodes and self.total < 0.9 * self.max_total:
            ended.append(("", self._episodes.pop("")))
        if source in self._episodes and left < 0.9 * self.max_per_source:
            ended.append((source, self._episodes.pop(source)))
        return ended

    def _refused(self, key: str) -> bool:
        began = key not in self._episodes
        self._episodes[key] = self._episodes.get(key, 0) + 1
        return began


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
    def __init__(self, owner: SipTransport, conn_id: int, outbound: bool = False) -> None:
        self.owner = owner
        self.conn_id = conn_id
        self.outbound = outbound
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.source = ""  # the per-source cap's key (accepted connections only)
        self.admitted = False
        self.pending: list[bytes] = []
        # Activity: a whole message or a keep-alive ping in, or anything out. Bytes that never
        # complete a message are no activity, so a slow trickle is closed as idle too.
        self.last_active = owner.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, but has its methods.
        self.transport = cast(asyncio.Transport, transport)
        host, port = _addr(transport.get_extra_info("peername"))
        self.peer = Peer("TCP", host, port, self.conn_id)
        if not self.outbound:
            # The source gate first (a blocked source costs no connection slot), then the caps.
            admit = self.owner.admit_source
            if admit is not None and not admit(host):
                self.transport.close()  # a blocked or refused source: closed unread
                return
            if not self.owner.admit(self, host):
                self.transport.abort()
                return
        self.last_active = self.owner.loop.time()
        self.owner.register_connection(self)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.peer is None or not (self.admitted or self.outbound):
            return
        framer = self.framer
        pings = framer.pings
        try:
            messages = framer.feed(data)
        except SipParseError as exc:
            # A broken stream cannot be re-synchronised: count it and close (§18.3).
            log.info("closing TCP connection with unframeable data", extra={"error": exc.reason})
            self.owner.malformed("TCP")
            if self.transport is not None:
                self.transport.close()
            return
        if framer.pings != pings:
            self.write(_PONG * (framer.pings - pings))
        if messages:
            self.last_active = self.owner.loop.time()
        admit = self.owner.admit_source
        for raw in messages:
            if admit is None or admit(self.peer.host):
                self.owner.receive(raw, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.unregister_connection(self)

    def write(self, data: bytes) -> None:
        self.last_active = self.owner.loop.time()
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
        limits: TcpLimits | None = None,
        observer: TcpObserver | None = None,
        peers_in_use: PeersInUse = lambda: (),
        admit_source: AdmitSource | None = None,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.receive = receive
        self.malformed = malformed
        self.limits = limits or TcpLimits()
        self.observer: TcpObserver = observer or NullTcpObserver()
        # Connections whose peer a dialog or an unanswered INVITE uses are never idle.
        self.peers_in_use = peers_in_use
        self.limiter = ConnectionLimiter(self.limits.max_per_source, self.limits.max_total)
        self.admit_source = admit_source
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._ids = itertools.count(1)
        self._by_id: dict[int, _TcpConnection] = {}
        self._by_addr: dict[tuple[str, int], _TcpConnection] = {}
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None

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
        self._schedule_sweep()

    async def stop(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
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
    def admit(self, conn: _TcpConnection, host: str) -> bool:
        """Count an accepted connection against the caps; False: refuse it."""
        source = source_key(host)
        refusal, began = self.limiter.admit(source)
        if refusal is None:
            conn.source = source
            conn.admitted = True
            return True
        self.observer.tcp_refused(refusal.value)
        if began:
            self._log_cap_reached(refusal, source)
        return False

    def _log_cap_reached(self, refusal: Refusal, source: str) -> None:
        if refusal is Refusal.TOTAL:
            log.warning(
                "SIP TCP connection cap reached: refusing new connections",
                extra={"cap": self.limiter.max_total, "open": self.limiter.total},
            )
        else:
            log.warning(
                "SIP TCP per-source connection cap reached: refusing that source",
                extra={"source": source, "cap": self.limiter.max_per_source},
            )

    def register_connection(self, conn: _TcpConnection) -> None:
        self._by_id[conn.conn_id] = conn
        if conn.peer is not None:
            self._by_addr[(conn.peer.host, conn.peer.port)] = conn

    def unregister_connection(self, conn: _TcpConnection) -> None:
        self._by_id.pop(conn.conn_id, None)
        if conn.peer is not None and self._by_addr.get((conn.peer.host, conn.peer.port)) is conn:
            del self._by_addr[(conn.peer.host, conn.peer.port)]
        if conn.admitted:
            conn.admitted = False
            for key, refused in self.limiter.release(conn.source):
                log.info(
                    "SIP TCP connection cap episode over",
                    extra={"source": key or "all", "refused": refused},
                )

    def tcp_connections(self) -> int:
        return len(self._by_id)

    # -- idle connections -------------------------------------------------------------------------
    def _schedule_sweep(self) -> None:
        # Closed between idle_timeout and 1.25 x idle_timeout (at most 5 s late).
        interval = min(max(self.limits.idle_timeout / 4, 0.01), 5.0)
        self._sweep_handle = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        try:
            self.close_idle(self.loop.time())
        except Exception:
            log.exception("idle TCP sweep failed")  # a bug here must not stop future sweeps
        finally:
            self._schedule_sweep()

    def close_idle(self, now: float) -> int:
        """Close connections without activity for ``idle_timeout`` that no dialog and no
        unanswered INVITE uses (RFC 3261 §18.3). Returns how many were closed."""
        deadline = now - self.limits.idle_timeout
        idle = [c for c in self._by_id.values() if c.last_active <= deadline]
        if not idle:
            return 0
        ids: set[int] = set()
        addrs: set[tuple[str, int]] = set()
        for peer in self.peers_in_use():
            if peer.transport == "TCP":
                ids.add(peer.conn)
                addrs.add((peer.host, peer.port))
        closed = 0
        for conn in idle:
            mine = conn.peer
            if mine is None or conn.conn_id in ids or (mine.host, mine.port) in addrs:
                continue
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.close()
                self.observer.tcp_idle_closed()
                closed += 1
        if closed:
            log.debug("closed idle SIP TCP connections", extra={"connections": closed})
        return closed

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
        conn = _TcpConnection(self, next(self._ids), outbound=True)
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
