"""A small classic-pcap reader that returns the UDP payloads (RTP packets) of a capture."""

from __future__ import annotations

import struct
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "rtp"
PCAP_MAGIC_LE = 0xA1B2C3D4
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17


def udp_payloads(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    (magic,) = struct.unpack_from("<I", raw, 0)
    assert magic == PCAP_MAGIC_LE, f"{path} is not a little-endian classic pcap"
    offset = 24
    payloads = []
    while offset + 16 <= len(raw):
        _, _, caplen, _ = struct.unpack_from("<IIII", raw, offset)
        frame = raw[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        payload = _udp_payload(frame)
        if payload is not None:
            payloads.append(payload)
    return payloads


def _udp_payload(frame: bytes) -> bytes | None:
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_IPV4:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != IPPROTO_UDP:
        return None
    (udp_len,) = struct.unpack_from("!H", ip, ihl + 4)
    return bytes(ip[ihl + 8 : ihl + udp_len])


def load(name: str) -> list[bytes]:
    """The RTP packets of tests/data/rtp/<name>."""
    return udp_payloads(DATA / name)
