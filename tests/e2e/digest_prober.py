"""A small, blocking SIP UAC over UDP for probing the server's digest authentication.

It builds INVITEs by hand (so a test can replay, tamper with or reuse credentials exactly as
an attacker would), answers the server's challenges with the real ``DigestClient``, and ACKs
every non-2xx final response (RFC 3261 §17.1.1.3) so the server's transactions end at once.
Every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass

from mediasrv.sip.digest import DigestClient, DigestCredentials, parse_digest_params
from mediasrv.sip.message import Response
from mediasrv.sip.parser import SipParseError, parse_message


@dataclass
class Exchange:
    """One INVITE transaction: what we sent and the final (or last provisional) response."""

    request: bytes
    final: Response | None

    @property
    def code(self) -> int:
        return self.final.status if self.final is not None else 0

    def challenges(self) -> list[str]:
        if self.final is None:
            return []
        return self.final.headers.get_all("WWW-Authenticate") + self.final.headers.get_all(
            "Proxy-Authenticate"
        )

    def algorithms(self) -> list[str]:
        return [parse_digest_params(c).get("algorithm", "MD5").upper() for c in self.challenges()]


class Prober:
    def __init__(self, server_port: int, local_host: str = "127.0.0.1", timeout: float = 3.0):
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_host, 0))
        self.sock.settimeout(timeout)
        self.host, self.port = self.sock.getsockname()[:2]
        self.client = DigestClient()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_uri(self, user: str) -> str:
        return f"sip:{user}@{self.server[0]}:{self.server[1]}"

    def invite_bytes(
        self, user: str, authorization: str | None = None, call_id: str | None = None
    ) -> bytes:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        lines = [
            f"INVITE {self.request_uri(user)} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:0901234567@{self.host}>;tag={uuid.uuid4().hex[:8]}",
            f"To: <{self.request_uri(user)}>",
            f"Call-ID: {call_id or uuid.uuid4().hex}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:prober@{self.host}:{self.port}>",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        lines.append("Content-Length: 0")  # no SDP: an admitted INVITE is answered 488
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def send(self, data: bytes, wait: float = 3.0) -> Exchange:
        """Send one INVITE; return its final response (None if none came within ``wait``)."""
        self.sock.sendto(data, self.server)
        deadline = time.monotonic() + wait
        branch = _branch_of(data)
        while time.monotonic() < deadline:
            try:
                raw = self.sock.recv(65535)
            except TimeoutError:
                break
            try:
                msg = parse_message(raw)
            except SipParseError:
                continue
            if not isinstance(msg, Response) or msg.branch != branch:
                continue  # a retransmission for an earlier transaction
            if msg.status >= 200:
                if msg.status >= 300:
                    self._ack(data, msg)
                return Exchange(data, msg)
        return Exchange(data, None)

    def invite(self, user: str, authorization: str | None = None) -> Exchange:
        return self.send(self.invite_bytes(user, authorization))

    def challenge(self, user: str) -> Exchange:
        return self.invite(user)

    def answer(self, challenge: str, user: str, creds: DigestCredentials) -> str:
        """The Authorization value for an INVITE to ``user`` (our Request-URI)."""
        return self.client.authorization(challenge, "INVITE", self.request_uri(user), creds)

    def _ack(self, invite: bytes, response: Response) -> None:
        text = invite.decode()
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        keep = [h for h in head[1:] if h.split(":", 1)[0] in ("Via", "From", "Call-ID")]
        to = response.headers.get("To") or ""
        ack = [head[0].replace("INVITE", "ACK", 1), *keep, f"To: {to}", "CSeq: 1 ACK"]
        ack += ["Max-Forwards: 70", "Content-Length: 0"]
        self.sock.sendto(("\r\n".join(ack) + "\r\n\r\n").encode(), self.server)


def _branch_of(data: bytes) -> str:
    for line in data.decode().split("\r\n"):
        if line.startswith("Via:"):
            return line.split("branch=", 1)[1].split(";", 1)[0]
    raise ValueError("no Via branch")
