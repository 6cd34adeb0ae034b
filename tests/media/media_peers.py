"""Test helpers: fake RTP peers on plain loopback UDP sockets, and SDP for them."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

from mediasrv.media import sdp
from mediasrv.media.codec import Codec

HOST = "127.0.0.1"


@dataclass
class Rtp:
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        second = (0x80 if self.marker else 0) | self.pt
        return struct.pack("!BBHII", 0x80, second, self.seq, self.ts, self.ssrc) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> Rtp:
        b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
        assert b0 >> 6 == 2
        hlen = 12 + 4 * (b0 & 0x0F)
        return cls(b1 & 0x7F, seq, ts, ssrc, data[hlen:], bool(b1 & 0x80))


class Peer:
    """One fake phone: a UDP socket that sends RTP to the engine and collects what arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def send(self, packet: Rtp | bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(packet if isinstance(packet, bytes) else packet.to_bytes(), to)

    async def recv(self, timeout: float = 1.0) -> Rtp:
        # add_reader rather than loop.sock_recvfrom, which uvloop does not implement.
        try:
            return Rtp.parse(self.sock.recv(2048))
        except BlockingIOError:
            pass
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            if fut.done():
                return  # leave further datagrams in the socket for the next recv()
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            fut.set_result(data)

        loop.add_reader(self.sock.fileno(), readable)
        try:
            return Rtp.parse(await asyncio.wait_for(fut, timeout))
        finally:
            loop.remove_reader(self.sock.fileno())

    async def recv_all(self, quiet: float = 0.15) -> list[Rtp]:
        """Everything that arrives until the line is quiet for ``quiet`` seconds."""
        out: list[Rtp] = []
        while True:
            try:
                out.append(await self.recv(quiet))
            except TimeoutError:
                return out

    def close(self) -> None:
        self.sock.close()


def offer_sdp(
    port: int,
    codecs: list[Codec] | None = None,
    te_pt: int | None = 101,
    direction: sdp.Direction = sdp.Direction.SENDRECV,
) -> bytes:
    return sdp.build_offer(HOST, port, codecs or [Codec.PCMU], te_pt, direction).to_bytes()


def answer_sdp(offer: bytes, port: int, codecs: list[Codec] | None = None) -> bytes:
    answer, _ = sdp.answer_offer(sdp.parse(offer), HOST, port, codecs or [Codec.PCMU, Codec.PCMA])
    return answer.to_bytes()
