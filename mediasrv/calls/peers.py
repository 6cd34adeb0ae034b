"""Turn a destination URI into the transport address to send to (RFC 3263, simplified).

IP literals are used as they are; host names are resolved with the loop's resolver (A/AAAA,
no NAPTR/SRV yet). The ``transport`` URI parameter picks UDP or TCP (compared
case-insensitively, RFC 3261 §19.1.4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from mediasrv.sip.dialog import Peer
from mediasrv.sip.uri import parse_uri


async def resolve_peer(uri: str) -> Peer:
    try:
        parsed = parse_uri(uri)
    except ValueError as exc:
        raise ValueError(f"bad destination URI {uri!r}: {exc}") from exc
    host, port = parsed.host_port()
    transport = (parsed.transport or "udp").upper()
    if transport not in ("UDP", "TCP"):
        raise ValueError(f"unsupported transport {transport} in {uri!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise ValueError(f"cannot resolve {host!r}") from None
        host = str(infos[0][4][0])
    return Peer(transport, host, port)
