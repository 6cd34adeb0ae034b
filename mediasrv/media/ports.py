"""RTP port pool: even RTP ports with RTCP on port + 1 (RFC 3550 §11)."""

from __future__ import annotations

import collections
import errno
import socket
from dataclasses import dataclass

from mediasrv.media.api import PortsExhausted

RTCP_RCVBUF = 4096
# Errors that mean "this port is not ours to take right now", not "the host is wrong".
_BUSY = (errno.EADDRINUSE, errno.EACCES)


@dataclass(slots=True)
class PortPair:
    """A bound, non-blocking RTP socket and its RTCP sibling."""

    port: int
    rtp: socket.socket
    rtcp: socket.socket

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


class PortPool:
    """Even ports in [port_min, port_max]; O(1) allocate/free; ports the OS refuses are skipped.

    Freed ports go to the back of the queue so that a just-closed port is reused last
    (late packets of the previous call then rarely reach the next one).
    """

    __slots__ = ("_family", "_free", "_host", "_in_use")

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        first = port_min + (port_min & 1)
        if not 0 < first < port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        self._host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # The RTCP port (p + 1) must also be in range.
        self._free: collections.deque[int] = collections.deque(range(first, port_max, 2))
        self._in_use: set[int] = set()

    def allocate(self) -> PortPair:
        """Bind the next free pair; raise :class:`PortsExhausted` when none can be bound."""
        for _ in range(len(self._free)):
            port = self._free.popleft()
            pair = self._bind(port)
            if pair is not None:
                self._in_use.add(port)
                return pair
            self._free.append(port)  # taken by someone else now; try again later
        raise PortsExhausted(f"no free RTP port pair on {self._host} ({len(self._in_use)} in use)")

    def free(self, pair: PortPair) -> None:
        pair.close()
        if pair.port in self._in_use:
            self._in_use.discard(pair.port)
            self._free.append(pair.port)

    def in_use(self) -> int:
        return len(self._in_use)

    def capacity(self) -> int:
        return len(self._in_use) + len(self._free)

    def _bind(self, port: int) -> PortPair | None:
        rtp = self._socket(port)
        if rtp is None:
            return None
        rtcp = self._socket(port + 1)
        if rtcp is None:
            rtp.close()
            return None
        # Nobody reads RTCP yet (receiver stats come from RTP): a tiny receive buffer keeps a
        # long call's unread reports from pinning ~200 KB of kernel memory per leg.
        rtcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RTCP_RCVBUF)
        return PortPair(port, rtp, rtcp)

    def _socket(self, port: int) -> socket.socket | None:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self._host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in _BUSY:
                return None
            raise
        return sock
