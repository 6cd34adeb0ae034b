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
        lambda *a: events.append(("foreign", *a)),
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


def test_inband_digit_on_a_leg_with_telephone_event_too(mode: str) -> None:
    """Tones are detected whatever was negotiated (a gateway may send a key both ways; the
    engine's digit stream merges the two reports)."""
    import math

    for b in make_bridge(PCMU, PCMU, mode == "thread"):
        b.relay.configure(0, PCMU, PCMU, {PCMU: PCMU}, 101, b.phones[0].getsockname(), True, True)
        g711 = load_kernel("g711", python=True)
        tone = [
            round(
                6000
                * (math.sin(2 * math.pi * 770 * n / 8000) + math.sin(2 * math.pi * 1336 * n / 8000))
            )
            for n in range(800)
        ]
        audio = g711.ulaw_encode(struct.pack(f"<{len(tone)}h", *tone)) + b"\xff" * 1600
        for i in range(len(audio) // 160):
            b.send(0, rtp(i, 160 * i, 3, PCMU, audio[160 * i : 160 * (i + 1)]))
            b.pump(0)
        assert [(e[2], e[5]) for e in b.events if e[0] == "dtmf"] == [("5", True)]


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
    recording = timeline.add_output(1, 2, 3, False, 0.0)
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
    assert len(timeline.take(recording)) > 0  # recorded from C
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

        def on_foreign_source(self, leg: int, addr: tuple[str, int]) -> None:
            raise AssertionError("no foreign source expected")

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


# ---- latching: once, then locked (issue 8 finding 1; semantics in packet_path_py._latch) ----


def stranger(host: str = "127.0.0.2") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def send_from(b: Bridge, sock: socket.socket, side: int, packet: bytes) -> None:
    sock.sendto(packet, b.legs[side].getsockname())
    b.sent[side] += 1


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


def latches(b: Bridge, side: int) -> list[tuple[str, int]]:
    return [e[2] for e in b.events if e[0] == "latch" and e[1] == side]


def test_a_stranger_with_a_new_ssrc_is_dropped_counted_and_gets_nothing(bridge: Bridge) -> None:
    hijacker = stranger()
    try:
        bridge.send(0, rtp(1, 160, 0xA, payload=b"\x11" * 160))
        bridge.pump(0)
        for i in range(10):  # valid RTP, a new SSRC each time, from a third host
            send_from(bridge, hijacker, 0, rtp(100 + i, 999 + i, 0xBAD0 + i, payload=b"\x22" * 160))
        bridge.pump(0)
        for i in range(5):  # the operator talks while the caller is silent
            bridge.send(1, rtp(10 + i, 160 * i, 0xB))
        bridge.pump(1)
        relayed = receive_n(bridge, 1, 1)
        assert [p[12:] for p in relayed] == [b"\x11" * 160]  # only the caller's packet
        assert len(receive_n(bridge, 0, 5)) == 5  # the caller still gets the operator
        assert drain(hijacker) == []
        stats = bridge.relay.stats(0)
        assert stats[0] == 1 and stats[6] == bridge.phones[0].getsockname()
        assert stats[7] == 10  # foreign_dropped
        assert bridge.relay.dropped(0) == 10
        assert latches(bridge, 0) == [bridge.phones[0].getsockname()]
        foreign = [e for e in bridge.events if e[0] == "foreign"]
        assert foreign == [("foreign", 0, hijacker.getsockname())]  # once, not 10 times
    finally:
        hijacker.close()


def test_the_sdp_address_takes_the_leg_back_and_keeps_it(bridge: Bridge) -> None:
    """A NAT'd first source latches; the peer's own SDP address wins for good."""
    nat, third = stranger("127.0.0.1"), stranger()
    try:
        send_from(bridge, nat, 0, rtp(1, 160, 0xA))  # not the SDP address: latches (NAT)
        bridge.pump(0)
        bridge.send(0, rtp(2, 320, 0xA))  # from the SDP address: re-latches
        bridge.pump(0)
        send_from(bridge, nat, 0, rtp(3, 480, 0xA))
        send_from(bridge, third, 0, rtp(9, 9, 0xC))
        bridge.pump(0)
        assert latches(bridge, 0) == [nat.getsockname(), bridge.phones[0].getsockname()]
        assert bridge.relay.stats(0)[7] == 2
        assert len(receive_n(bridge, 1, 2)) == 2
    finally:
        nat.close()
        third.close()


def test_learning_window_allows_a_move_then_locks(mode: str) -> None:
    for b in make_bridge(PCMU, PCMU, mode == "thread"):
        first, second, late = stranger("127.0.0.1"), stranger("127.0.0.1"), stranger()
        try:
            b.relay.configure(0, PCMU, PCMU, {PCMU: PCMU}, 101, ("192.0.2.1", 4000),
                              True, True, 0.4)
            send_from(b, first, 0, rtp(1, 160, 0xA))
            b.pump(0)
            send_from(b, second, 0, rtp(2, 320, 0xA))  # NAT rebinding inside the window
            b.pump(0)
            assert latches(b, 0) == [first.getsockname(), second.getsockname()]
            time.sleep(0.6)  # the window (0.4 s after the first packet) is over
            send_from(b, late, 0, rtp(3, 480, 0xA))
            b.pump(0)
            assert latches(b, 0) == [first.getsockname(), second.getsockname()]
            assert b.relay.stats(0)[7] == 1
        finally:
            for s in (first, second, late):
                s.close()


def test_a_new_remote_address_reopens_latching(bridge: Bridge) -> None:
    moved = stranger()
    try:
        bridge.send(0, rtp(1, 160, 0xA))
        bridge.pump(0)
        send_from(bridge, moved, 0, rtp(1, 160, 0xD))
        bridge.pump(0)
        assert bridge.relay.stats(0)[7] == 1
        # A re-INVITE moves the caller to ``moved``: its next packet latches.
        bridge.relay.configure(0, PCMU, PCMU, {PCMU: PCMU}, 101, moved.getsockname(), True, True)
        send_from(bridge, moved, 0, rtp(2, 320, 0xD))
        bridge.send(0, rtp(2, 320, 0xA))  # the old address is a stranger now
        bridge.pump(0)
        assert latches(bridge, 0) == [bridge.phones[0].getsockname(), moved.getsockname()]
        assert bridge.relay.stats(0)[7] == 2
        bridge.send(1, rtp(1, 160, 0xB))
        bridge.pump(1)
        deadline = time.monotonic() + 5
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            got = drain(moved)
            time.sleep(0.001)
        assert len(got) == 1  # the operator's audio follows the move
    finally:
        moved.close()


def test_unknown_payload_types_and_unconfigured_legs_never_latch(bridge: Bridge) -> None:
    probe = stranger()
    try:
        send_from(bridge, probe, 0, rtp(1, 160, 0xE, pt=18))  # PT not negotiated
        bridge.pump(0)
        assert latches(bridge, 0) == [] and bridge.relay.stats(0)[6] is None
        bridge.send(0, rtp(1, 160, 0xA))
        bridge.pump(0)
        assert latches(bridge, 0) == [bridge.phones[0].getsockname()]
    finally:
        probe.close()


def test_no_latch_before_the_leg_is_configured() -> None:
    leg, peer, probe = udp(), udp(), stranger()
    events: list[tuple[object, ...]] = []
    relay = Relay(lambda *a: events.append(a), lambda *a: None, lambda *a: None)
    try:
        relay.open(0, leg.fileno(), 1, 2, 3)
        probe.sendto(rtp(1, 160, 0xE), leg.getsockname())
        deadline = time.monotonic() + 5
        while relay.dropped(0) < 1 and time.monotonic() < deadline:
            relay.on_readable(0)
        relay.configure(0, PCMU, PCMU, {PCMU: PCMU}, 101, peer.getsockname(), True, True)
        peer.sendto(rtp(1, 160, 0xA), leg.getsockname())
        while relay.stats(0)[0] < 1 and time.monotonic() < deadline:
            relay.on_readable(0)
        relay.drain_events()
        assert relay.dropped(0) == 1
        assert events == [(0, peer.getsockname())]
    finally:
        for s in (leg, peer, probe):
            s.close()


def test_events_still_queued_for_a_closed_leg_are_dropped() -> None:
    """The engine thread queued a latch (and a digit) for leg 0; the leg is closed before
    the loop drains: nothing is delivered for it (its id may already serve another leg)."""
    for b in make_bridge(PCMU, PCMU, threaded=True):
        b.send(0, rtp(1, 0, 0xA))
        b.send(1, rtp(1, 0, 0xB))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (b.relay.stats(0)[0], b.relay.stats(1)[0]) != (1, 1):
            time.sleep(0.001)  # handled by the engine thread; its events wait in the queue
        b.relay.close(0)
        b.relay.drain_events()
        assert [e[:2] for e in b.events] == [("latch", 1)]


def test_last_rx_many_reads_every_leg_as_last_rx_does(bridge: Bridge) -> None:
    """The no-RTP check's one-lock read: the same times as per-leg ``last_rx``, 0.0 for a
    silent leg and for an id that is not open (a leg released meanwhile)."""
    bridge.send(0, rtp(1, 160, 0xA))
    bridge.pump(0)
    many = list(bridge.relay.last_rx_many([0, 1, 7, -1]))
    assert many == [bridge.relay.last_rx(0), bridge.relay.last_rx(1), 0.0, 0.0]
    assert many[0] > 0.0 and many[1] == 0.0


def test_engine_records_each_prompt_frames_send_lateness(mode: str) -> None:
    """Relay.lateness: one count per prompt frame sent, in 50 µs bins of send time minus
    the frame's grid time; reset empties it. Frames are never sent before PACE_SLACK."""
    from cext.playout import PromptFrames

    for b in make_bridge(PCMU, PCMU, mode == "thread"):
        frames = PromptFrames(bytes(2 * 160 * 3))  # three frames of silence, no loop
        b.relay.lateness(reset=True)
        b.relay.play(1, [frames], False, False, False, 7)
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            if not b.threaded:
                b.relay.pace()
            got += b.receive(1)
            time.sleep(0.002)
        width, low, counts = b.relay.lateness()
        assert len(got) == 3
        assert sum(counts) == 3
        assert width == pytest.approx(50e-6) and low == pytest.approx(-400e-6)
        first = min(i for i, c in enumerate(counts) if c)
        assert low + first * width >= -0.0002 - width  # never earlier than the slack
        assert sum(b.relay.lateness(reset=True)[2]) == 3
        assert sum(b.relay.lateness()[2]) == 0
