"""RFC 4733 telephone-events over both implementations, with SIPp's captured digits."""

from __future__ import annotations

import random
from types import ModuleType

import pytest
from kernel_twins import kernel_pair
from pcap_rtp import load

from mediasrv.media.kernels import load_kernel

DIGIT_FILES = {str(d): f"dtmf_2833_{d}.pcap" for d in range(10)} | {
    "*": "dtmf_2833_star.pcap",
    "#": "dtmf_2833_pound.pcap",
}
Packet = tuple[int, bool, bytes]  # (RTP timestamp, marker, payload)


@pytest.fixture
def k(impl_kind: str) -> ModuleType:
    return load_kernel("rfc4733", python=impl_kind == "python")


def rtp_events(name: str) -> list[Packet]:
    out = []
    for data in load(name):
        ts = int.from_bytes(data[4:8], "big")
        out.append((ts, bool(data[1] & 0x80), data[12:]))
    return out


def feed_all(
    k: ModuleType, packets: list[Packet], flush: bool = True
) -> list[tuple[int, int, int]]:
    rx = k.TelephoneEventReceiver()
    reports = []
    for ts, marker, payload in packets:
        event = rx.feed(ts, payload, marker)
        if event != k.NO_EVENT:
            reports.append((event, rx.start, rx.duration))
    if flush and (event := rx.flush()) != k.NO_EVENT:
        reports.append((event, rx.start, rx.duration))
    return reports


@pytest.mark.parametrize("digit", sorted(DIGIT_FILES))
def test_sipp_capture_gives_one_digit(k: ModuleType, digit: str) -> None:
    packets = rtp_events(DIGIT_FILES[digit])
    assert sum(1 for p in packets if k.parse_telephone_event(p[2]).end) == 3  # 3 end copies
    reports = feed_all(k, packets)
    assert len(reports) == 1
    event, start, duration = reports[0]
    assert k.DTMF_DIGITS[event] == digit
    assert start == packets[0][0]
    assert duration == k.parse_telephone_event(packets[-1][2]).duration


def test_parse_and_pack_round_trip(k: ModuleType) -> None:
    ev = k.parse_telephone_event(bytes.fromhex("0b8a08c0"))
    assert (ev.event, ev.end, ev.volume, ev.duration) == (11, True, 10, 2240)
    assert k.pack_telephone_event(11, True, 10, 2240) == bytes.fromhex("0b8a08c0")
    with pytest.raises(ValueError, match="4 bytes"):
        k.parse_telephone_event(b"\x01\x02")
    with pytest.raises(ValueError, match="out of range"):
        k.pack_telephone_event(1, False, 64, 0)


def test_generated_sequence_follows_rfc(k: ModuleType) -> None:
    packets = k.event_payloads(5, 800, volume=7)
    markers = [m for m, _ in packets]
    events = [k.parse_telephone_event(p) for _, p in packets]
    assert markers[0] and not any(markers[1:])
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.volume for e in events} == {7} and {e.event for e in events} == {5}


def test_generated_sequence_received_once(k: ModuleType) -> None:
    packets = [(4000, m, p) for m, p in k.event_payloads(9, 1200)]
    assert feed_all(k, packets) == [(9, 4000, 1200)]


def test_lost_end_packets_reported_when_next_event_starts(k: ModuleType) -> None:
    first = [(100, m, p) for m, p in k.event_payloads(1, 640) if not k.parse_telephone_event(p).end]
    second = [(2000, m, p) for m, p in k.event_payloads(2, 480)]
    assert feed_all(k, first + second) == [(1, 100, 480), (2, 2000, 480)]


def test_lost_end_packets_reported_by_flush(k: ModuleType) -> None:
    packets = [(100, m, p) for m, p in k.event_payloads(3, 640)][:3]
    assert feed_all(k, packets, flush=False) == []
    assert feed_all(k, packets) == [(3, 100, 480)]


def test_late_and_duplicate_packets_do_not_repeat(k: ModuleType) -> None:
    packets = [(100, m, p) for m, p in k.event_payloads(4, 640)]
    replay = packets + packets[:2] + packets[-1:]
    assert feed_all(k, replay) == [(4, 100, 640)]


def test_same_digit_twice_is_two_events(k: ModuleType) -> None:
    a = [(100, m, p) for m, p in k.event_payloads(7, 640)]
    b = [(1500, m, p) for m, p in k.event_payloads(7, 640)]
    assert feed_all(k, a + b) == [(7, 100, 640), (7, 1500, 640)]


def test_long_event_segments_are_one_digit(k: ModuleType) -> None:
    """§2.5.1.3: past 0xFFFF samples the event continues with a new timestamp, no marker."""
    seg1 = [
        (1000, m, p) for m, p in k.event_payloads(0, 65535) if not k.parse_telephone_event(p).end
    ]
    seg1.append((1000, False, k.pack_telephone_event(0, False, 10, 65535)))
    seg2 = [(1000 + 65535, False, p) for _, p in k.event_payloads(0, 4000)]
    assert feed_all(k, seg1 + seg2) == [(0, 1000, 65535 + 4000)]


def test_timestamp_wrap(k: ModuleType) -> None:
    a = [(2**32 - 80, m, p) for m, p in k.event_payloads(8, 320)]
    b = [(80, m, p) for m, p in k.event_payloads(6, 320)]
    assert feed_all(k, a + b) == [(8, 2**32 - 80, 320), (6, 80, 320)]


def test_short_payload_ignored(k: ModuleType) -> None:
    assert k.TelephoneEventReceiver().feed(1, b"\x01", True) == k.NO_EVENT
    assert k.TelephoneEventReceiver().feed(1, b"", True) == k.NO_EVENT


def random_event_stream(rng: random.Random) -> list[Packet]:
    ts = rng.randrange(2**32)
    out: list[Packet] = []
    for _ in range(60):
        ts = (ts + rng.randrange(800, 8000)) % 2**32
        packets = [
            (ts, m, p)
            for m, p in load_kernel("rfc4733", python=True).event_payloads(
                rng.randrange(16), rng.randrange(160, 4000), rng.randrange(64)
            )
        ]
        packets = [p for p in packets if rng.random() > 0.2]  # random loss
        if len(packets) > 2 and rng.random() < 0.3:
            i = rng.randrange(len(packets) - 1)
            packets[i], packets[i + 1] = packets[i + 1], packets[i]  # reorder
        out.extend(packets)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_receiver_parity_random_streams(seed: int) -> None:
    py, cy = kernel_pair("rfc4733")
    stream = random_event_stream(random.Random(seed))
    assert feed_all(py, stream) == feed_all(cy, stream)


def test_generator_parity() -> None:
    py, cy = kernel_pair("rfc4733")
    for duration in (1, 159, 160, 161, 800, 65535):
        assert py.event_payloads(3, duration, 12, 160) == cy.event_payloads(3, duration, 12, 160)
