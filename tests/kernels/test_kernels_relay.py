"""The Cython packet path (cext.relay) on real loopback sockets: relay, rewrite, transcode,
and the proof that per-packet work creates no Python objects and makes no Python calls."""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from cext.recbuf import StereoTimeline
from cext.relay import Relay
from mediasrv.media.kernels import load_kernel

HOST = "127.0.0.1"
PCMU, PCMA = 0, 8


@dataclass
class Bridge:
    relay: Relay
    legs: tuple[socket.socket, socket.socket]  # the relay's sockets
    phones: tuple[socket.socket, socket.socket]
    events: list[tuple[object, ...]] = field(default_factory=list)
    threaded: bool = False
    sent: list[int] = field(default_factory=lambda: [0, 0])

    def send(self, side: int, packet: bytes) -> None:
        self.phones[side].sendto(packet, self.legs[side].getsockname())
        self.sent[side] += 1

    def pump(self, side: int) -> None:
        """Let the relay handle what was sent to ``side`` and deliver its events."""
        if not self.threaded:
            self.relay.on_readable(side)
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the engine thread works on its own
            handled = (
                self.relay.stats(side)[0] + self.relay.malformed(side) + self.relay.dropped(side)
            )
            if handled >= self.sent[side]:
                break
            time.sleep(0.001)
        self.relay.drain_events()

    def receive(self, side: int) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.phones[side].recv(2048))
            except BlockingIOError:
                return out


def receive_n(b: Bridge, side: int, n: int) -> list[bytes]:
    """What phone ``side`` received, waiting (briefly) for ``n`` datagrams."""
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(got) < n and time.monotonic() < deadline:
        got += b.receive(side)
        time.sleep(0.001)
    return got + b.receive(side)


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return s


@pytest.fixture(params=["callbacks", "thread"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bridge(mode: str) -> Iterator[Bridge]:
    yield from make_bridge(PCMU, PCMU, mode == "thread")


def make_bridge(codec_a: int, codec_b: int, threaded: bool = False) -> Iterator[Bridge]:
    legs, phones = (udp(), udp()), (udp(), udp())
    events: list[tuple[object, ...]] = []
    relay = Relay(
        lambda *a: events.append(("latch", *a)),
        lambda *a: events.append(("dtmf", *a)),
        lambda *a: events.append(("record", *a)),
    )
    for leg, codec in ((0, codec_a), (1, codec_b)):
        relay.open(leg, legs[leg].fileno(), 0x1000 + leg, 100 * leg, 1000 * leg)
        relay.configure(
            leg, codec, codec, {codec: codec}, 101, phones[leg].getsockname(), True, True
        )
    relay.bridge(0, 1)
    if threaded:
        relay.start_thread()
    yield Bridge(relay, legs, phones, events, threaded)
    relay.stop_thread()
    for s in (*legs, *phones):
        s.close()


def rtp(seq: int, ts: int, ssrc: int, pt: int = PCMU, payload: bytes = b"\x80" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


def test_relays_with_our_ssrc_and_continuous_numbers(bridge: Bridge) -> None:
    for i in range(5):
        bridge.send(0, rtp(500 + i, 9000 + 160 * i, 0xAAAA))
    bridge.pump(0)
    got = receive_n(bridge, 1, 5)
    assert len(got) == 5
    heads = [struct.unpack_from("!BBHII", p) for p in got]
    assert {h[4] for h in heads} == {0x1001}  # leg 1's own SSRC
    assert [(h[2] - heads[0][2]) % 65536 for h in heads] == [0, 1, 2, 3, 4]
    assert [(h[3] - heads[0][3]) % 2**32 for h in heads] == [0, 160, 320, 480, 640]
    assert heads[0][1] & 0x80  # new source on the outgoing stream: marker
    assert all(p[12:] == b"\x80" * 160 for p in got)
    assert bridge.relay.stats(0)[:2] == (5, 0) and bridge.relay.stats(1)[:2] == (0, 5)


def test_transcodes_pcmu_to_pcma(mode: str) -> None:
    for b in make_bridge(PCMU, PCMA, mode == "thread"):
        payload = bytes(range(160))
        b.send(0, rtp(1, 0, 7, PCMU, payload))
        b.pump(0)
        (out,) = receive_n(b, 1, 1)
        assert out[1] & 0x7F == PCMA
        assert out[12:] == load_kernel("g711", python=True).ulaw_to_alaw(payload)


def test_malformed_and_foreign_packets_are_dropped(bridge: Bridge) -> None:
    bridge.send(0, b"\x00" * 20)  # version 0
    bridge.send(0, b"\x80\x00")  # short
    bridge.send(0, rtp(1, 0, 5, pt=18))  # payload type not negotiated
    bridge.pump(0)
    assert bridge.relay.malformed(0) == 2
    assert bridge.relay.dropped(0) == 1
    assert bridge.receive(1) == []


def test_rfc4733_digit_reported_once(bridge: Bridge) -> None:
    k = load_kernel("rfc4733", python=True)
    for i, (marker, payload) in enumerate(k.event_payloads(5, 800)):
        head = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 101, 10 + i, 4000, 9)
        bridge.send(0, head + payload)
    bridge.pump(0)
    digits = [e for e in bridge.events if e[0] == "dtmf"]
    assert digits == [("dtmf", 0, "5", 0.0, 0.1, False)]
    assert len(receive_n(bridge, 1, 7)) == 7  # every event packet relayed


def test_inband_digit_on_a_leg_without_telephone_event(mode: str) -> None:
    import math

    for b in make_bridge(PCMU, PCMU, mode == "thread"):
        b.relay.configure(0, PCMU, PCMU, {PCMU: PCMU}, -1, b.phones[0].getsockname(), True, True)
        g711 = load_kernel("g711", python=True)
        tone = [
            round(
                6000
                * (math.sin(2 * math.pi * 852 * n / 8000) + math.sin(2 * math.pi * 1477 * n / 8000))
            )
            for n in range(800)
        ]
        audio = g711.ulaw_encode(struct.pack(f"<{len(tone)}h", *tone)) + b"\xff" * 1600
        for i in range(len(audio) // 160):
            b.send(0, rtp(i, 160 * i, 3, PCMU, audio[160 * i : 160 * (i + 1)]))
            b.pump(0)
        digits = [e[2] for e in b.events if e[0] == "dtmf"]
        assert digits == ["9"]


def test_thread_mode_relays_both_ways_and_reports_latches() -> None:
    for b in make_bridge(PCMU, PCMA, threaded=True):
        for i in range(20):
            b.send(0, rtp(i, 160 * i, 1))
            b.send(1, rtp(100 + i, 160 * i, 2, PCMA, b"\xd5" * 160))
        b.pump(0)
        b.pump(1)
        assert len(receive_n(b, 1, 20)) == 20 and len(receive_n(b, 0, 20)) == 20
        latched = [e[1] for e in b.events if e[0] == "latch"]
        assert len(latched) == 2 and set(latched) == {0, 1}


def test_no_python_calls_or_objects_per_packet(bridge: Bridge) -> None:
    """After the latch, 2,000 relayed packets make no Python callback and leave no objects."""
    timeline = StereoTimeline()
    bridge.relay.set_timeline(0, timeline, 0, 0.0)
    bridge.send(0, rtp(0, 0, 1))
    bridge.pump(0)
    callbacks = bridge.relay.callbacks
    before = sys.getallocatedblocks()
    for burst in range(40):
        for i in range(50):
            n = 1 + burst * 50 + i
            bridge.send(0, rtp(n, 160 * n, 1))
        bridge.pump(0)
    after = sys.getallocatedblocks()
    assert bridge.relay.callbacks == callbacks  # the latch was the only call into Python
    assert after - before < 50  # a few blocks of interpreter noise, not 2,000 packets' worth
    assert bridge.relay.stats(0)[0] == 2001
    timeline.close()
    assert len(timeline.take()) > 0  # recorded from C
    assert [e[0] for e in bridge.events] == ["latch"]


async def test_engine_thread_runs_only_while_legs_are_open() -> None:
    import asyncio
    import threading

    from mediasrv.media.packet_path_cy import CyThreadPacketPath

    class Events:
        def on_dtmf(
            self, leg: int, digit: str, start: float, duration: float, source: str = "rfc4733"
        ) -> None:
            raise AssertionError("no digit expected")

        def on_latched(self, leg: int, addr: tuple[str, int]) -> None:
            pass

    path = CyThreadPacketPath(asyncio.get_running_loop(), Events())
    for _ in range(20):
        socks = [udp(), udp()]
        for i, s in enumerate(socks):
            path.open(i, s)
        assert any(t.name == "mediasrv-rtp" for t in threading.enumerate())
        for i, s in enumerate(socks):
            path.close(i)
            s.close()
        assert not any(t.name == "mediasrv-rtp" for t in threading.enumerate())
