"""RTP port pool: even RTP ports with RTCP on port + 1 (RFC 3550 §11)."""

from __future__ import annotations

import collections
import errno
import secrets
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
    """Even ports in [port_min, port_max], handed out at random; O(1) allocate/free.

    Sequential ports are easy to guess (issue 8: the first call got 40000/40002), so
    :meth:`allocate` picks uniformly among the free ports (swap-remove from an array, O(1)),
    with an unpredictable choice (:mod:`secrets`). A freed port is not reused at once: it
    waits in a FIFO quarantine until ``quarantine`` later ports have been freed (so late
    packets of the previous call rarely reach the next one), and is only taken from there
    early when no other port is free. Ports the OS refuses are skipped and retried later.
    """

    __slots__ = ("_family", "_free", "_host", "_in_use", "_quarantine", "_quarantine_len")

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        first = port_min + (port_min & 1)
        if not 0 < first < port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        self._host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # The RTCP port (p + 1) must also be in range.
        self._free: list[int] = list(range(first, port_max, 2))
        self._quarantine: collections.deque[int] = collections.deque()
        self._quarantine_len = len(self._free) // 4
        self._in_use: set[int] = set()

    def allocate(self) -> PortPair:
        """Bind a random free pair; raise :class:`PortsExhausted` when none can be bound."""
        for _ in range(len(self._free) + len(self._quarantine)):
            port = self._take()
            pair = self._bind(port)
            if pair is not None:
                self._in_use.add(port)
                return pair
            self._quarantine.append(port)  # taken by someone else now; try again later
        raise PortsExhausted(f"no free RTP port pair on {self._host} ({len(self._in_use)} in use)")

    def free(self, pair: PortPair) -> None:
        pair.close()
        if pair.port in self._in_use:
            self._in_use.discard(pair.port)
            self._quarantine.append(pair.port)
            if len(self._quarantine) > self._quarantine_len:
                self._free.append(self._quarantine.popleft())

    def _take(self) -> int:
        """A uniformly random free port (swap-remove), else the longest-quarantined one."""
        free = self._free
        if not free:
            return self._quarantine.popleft()
        i = secrets.randbelow(len(free))
        free[i], free[-1] = free[-1], free[i]
        return free.pop()

    def in_use(self) -> int:
        return len(self._in_use)

    def capacity(self) -> int:
        return len(self._in_use) + len(self._free) + len(self._quarantine)

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
