"""Dialog state, RFC 3261 §12, and building requests inside a dialog (§12.2.1.1)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .message import Headers, Request, new_branch


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to. ``conn`` identifies a TCP connection."""

    transport: str  # "UDP" | "TCP"
    host: str
    port: int
    conn: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


@dataclass(frozen=True, slots=True)
class LocalContact:
    """How we name ourselves in Via and Contact, and the Max-Forwards of the requests we
    originate (``[sip] max_forwards``, RFC 3261 §8.1.1.6)."""

    host: str
    port: int
    user_agent: str = "mediasrv"
    max_forwards: int = 70

    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    def via(self, transport: str, branch: str) -> str:
        # RFC 3581: ask for symmetric response routing.
        return f"SIP/2.0/{transport} {self.hostport()};branch={branch};rport"

    def contact(self, transport: str, user: str = "mediasrv") -> str:
        suffix = ";transport=tcp" if transport == "TCP" else ""
        return f"<sip:{user}@{self.hostport()}{suffix}>"


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(slots=True)
class Dialog:
    """§12: the identifiers and sequence numbers of one dialog, from our point of view."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # From (UAC) or To (UAS) value without the tag
    remote_uri: str
    remote_target: str  # the peer's Contact URI
    peer: Peer
    local_seq: int
    remote_seq: int = 0
    route_set: list[str] = field(default_factory=list)
    state: DialogState = DialogState.EARLY

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def next_seq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    def request(
        self,
        method: str,
        local: LocalContact,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> Request:
        """§12.2.1.1: Request-URI is the remote target, the route set gives Route headers."""
        seq = self.next_seq() if cseq is None else cseq
        headers = Headers()
        headers.add("Via", local.via(self.peer.transport, new_branch()))
        headers.add("Max-Forwards", str(local.max_forwards))
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("From", f"{self.local_uri};tag={self.local_tag}")
        headers.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if method in ("INVITE", "ACK") or method == "UPDATE":
            headers.add("Contact", local.contact(self.peer.transport))
        if local.user_agent:  # empty: the header is omitted
            headers.add("User-Agent", local.user_agent)
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return Request(method, self.remote_target, headers, body)
