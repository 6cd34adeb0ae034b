"""A pcap of a gateway that sends each key both ways, for SIPp's ``play_pcap_audio``.

PCMA audio every 20 ms carrying the DTMF tone (the gateway does not mute it) and, for the
same press, RFC 4733 events with the tone's start timestamp: a start packet with the marker
bit, an update every 20 ms, and the end packet three times (RFC 4733 §2.5.1.4), each
datagram stamped with the time a real sender would send it. Written with the standard
library and the project's G.711 kernel (pcap, Ethernet, IPv4, UDP, RTP headers), as SIPp's own
``/usr/share/sip-tester/dtmf_2833_*.pcap`` are laid out.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from mediasrv.media.kernels import g711

RATE = 8000
FRAME = 160  # 20 ms
TE_PT = 101  # SIPp's uac_pcap SDP offers telephone-event as 101
PCMA_PT = 8
KEYS = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
    "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336),
    "9": (852, 1477), "*": (941, 1209), "0": (941, 1336), "#": (941, 1477),
}  # fmt: skip
EVENT = {k: i for i, k in enumerate("0123456789*#")}


def _frames(plan: list[tuple[str | None, int]]) -> list[tuple[str | None, bytes]]:
    """(key or None for silence, ms) -> 20 ms PCMA payloads, each tagged with its key."""
    out: list[tuple[str | None, bytes]] = []
    n = 0
    for key, ms in plan:
        for _ in range(ms // 20):
            samples = []
            for i in range(FRAME):
                if key is None:
                    samples.append(0)
                else:
                    lo, hi = KEYS[key]
                    t = (n + i) / RATE
                    samples.append(round(7000 * (math.sin(2 * math.pi * lo * t)
                                                 + math.sin(2 * math.pi * hi * t))))
            pcm = struct.pack(f"<{FRAME}h", *samples)
            out.append((key, g711.alaw_encode(pcm)))
            n += FRAME
    return out


def _udp(payload: bytes) -> bytes:
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    eth = b"\x00" * 12 + b"\x08\x00"
    return eth + ip + udp


def write_pcap(path: Path, plan: list[tuple[str | None, int]]) -> list[str]:
    """Write the pcap; returns the keys pressed, in order."""
    packets: list[tuple[float, bytes]] = []
    seq, ssrc = 1000, 0x5EED
    frames = _frames(plan)
    pressed: list[str] = []
    k = 0
    while k < len(frames):
        key, _ = frames[k]
        if key is None:
            packets.append((k * 0.02, _rtp(PCMA_PT, seq, k * FRAME, ssrc, frames[k][1])))
            seq += 1
            k += 1
            continue
        start, length = k, 0
        while start + length < len(frames) and frames[start + length][0] == key:
            length += 1
        pressed.append(key)
        for j in range(length):  # tone frames and the event updates, side by side
            at = (start + j) * 0.02
            packets.append((at, _rtp(PCMA_PT, seq, (start + j) * FRAME, ssrc, frames[start + j][1])))
            seq += 1
            duration = (j + 1) * FRAME
            body = struct.pack("!BBH", EVENT[key], 10, duration)
            packets.append((at + 0.001, _rtp(TE_PT, seq, start * FRAME, ssrc, body, j == 0)))
            seq += 1
        end = struct.pack("!BBH", EVENT[key], 0x80 | 10, length * FRAME)
        at = (start + length) * 0.02 + 0.001
        for r in range(3):
            packets.append((at + r * 0.0005, _rtp(TE_PT, seq, start * FRAME, ssrc, end)))
            seq += 1
        k = start + length
    packets.sort(key=lambda p: p[0])
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        base = 1_700_000_000
        for at, data in packets:
            frame = _udp(data)
            sec, usec = base + int(at), round((at % 1) * 1e6) % 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return pressed


def _rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    second = (0x80 if marker else 0) | pt
    return struct.pack("!BBHII", 0x80, second, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload
