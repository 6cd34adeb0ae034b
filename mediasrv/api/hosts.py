"""Which ``Host`` header values the HTTP server answers: the DNS-rebinding defence.

A page on ``http://attacker.example:8080`` whose name is re-pointed at 127.0.0.1 reaches our
port from the victim's browser, but its requests still say ``Host: attacker.example:8080``.
So we answer only names we know (RFC 9110 §7.4: 421 Misdirected Request otherwise): the
listen address, ``localhost``, ``127.0.0.1`` and ``[::1]``, plus any configured name. When
listening on every address (``0.0.0.0`` / ``::``), any IP literal is accepted too: an IP
literal names no DNS record, so it cannot be rebound.

The port of these built-in names is not checked: the name is what a rebinding attack cannot
fake, and behind a port mapping (``docker run -p 8081:8080``) clients rightly send another
port than the one we bound. A configured ``name:port`` entry matches that port only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["HostAllowlist", "split_host"]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"Example.com:8080"`` -> ``("example.com", 8080)``; ``"[::1]"`` -> ``("::1", None)``.

    None when the value is not a host[:port] at all.
    """
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_s = rest[1:] if rest else None
    else:
        name, sep, port_s_ = text.rpartition(":")
        if not sep:
            name, port_s = text, None
        elif ":" in name:  # an unbracketed IPv6 address: no port
            name, port_s = text, None
        else:
            port_s = port_s_
    name = name.rstrip(".")
    if not name:
        return None
    if port_s is None:
        return name, None
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        return None
    return name, int(port_s)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostAllowlist:
    """Decides whether a request's ``Host`` is one of ours."""

    def __init__(self, listen_host: str, extra: Iterable[str] = ()) -> None:
        self.listen_host = listen_host.strip("[]").lower()
        self.any_host = False
        self._names = set(_LOOPBACK_NAMES)
        if self.listen_host not in _WILDCARDS:
            self._names.add(self.listen_host)
        self._any_port: set[str] = set()
        self._exact: set[tuple[str, int]] = set()
        for entry in extra:
            if entry.strip() == "*":
                self.any_host = True
                continue
            parsed = split_host(entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not a host or host:port")
            name, port = parsed
            if port is None:
                self._any_port.add(name)
            else:
                self._exact.add((name, port))

    def allows(self, host_header: str | None) -> bool:
        if self.any_host:
            return True
        if not host_header:
            return False
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name, port = parsed
        if name in self._names or name in self._any_port:
            return True
        if (name, 80 if port is None else port) in self._exact:  # RFC 9110 §4.2.1: 80
            return True
        return self.listen_host in _WILDCARDS and _is_ip(name)
