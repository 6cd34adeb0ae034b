"""RTP header parse and per-leg rewrite (RFC 3550 §5.1) over both implementations, with the
captured SIPp packets in tests/data/rtp as fixtures."""

from __future__ import annotations

import itertools
import random
import struct
from types import ModuleType
from typing import Any

import pytest
from kernel_twins import kernel_pair
from pcap_rtp import load

from mediasrv.media.kernels import load_kernel

FIELDS = (
    "version", "padding", "extension", "csrc_count", "marker", "payload_type", "sequence",
    "timestamp", "ssrc", "payload_offset", "payload_length",
)  # fmt: skip
FIXTURES = ["g711a.pcap", "dtmf_2833_1.pcap", "dtmf_2833_pound.pcap"]


@pytest.fixture
def rtp(impl_kind: str) -> ModuleType:
    return load_kernel("rtp", python=impl_kind == "python")


def fields(header: Any) -> tuple[Any, ...]:
    return tuple(getattr(header, f) for f in FIELDS)


def packet(
    seq: int, ts: int, ssrc: int, pt: int = 0, marker: bool = False, size: int = 160
) -> bytearray:
    head = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    return bytearray(head + bytes(range(size % 256)) + bytes(max(0, size - 256)))


def seq_ts_ssrc(data: bytes | bytearray) -> tuple[int, int, int]:
    _, _, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    return seq, ts, ssrc


def test_parse_captured_pcma(rtp: ModuleType) -> None:
    packets = load("g711a.pcap")
    headers = [rtp.parse_rtp_header(p) for p in packets]
    assert {h.payload_type for h in headers} == {8}
    assert len({h.ssrc for h in headers}) == 1
    assert all(h.payload_offset == 12 and h.payload_length == 240 for h in headers)
    seqs = [h.sequence for h in headers]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    stamps = [h.timestamp for h in headers]
    assert all((b - a) % 2**32 == 240 for a, b in itertools.pairwise(stamps))


def test_parse_captured_telephone_event(rtp: ModuleType) -> None:
    first = rtp.parse_rtp_header(load("dtmf_2833_1.pcap")[0])
    assert (first.marker, first.payload_type, first.sequence, first.timestamp) == (
        True,
        101,
        7984,
        13280,
    )
    assert (first.payload_offset, first.payload_length) == (12, 4)


@pytest.mark.parametrize("name", FIXTURES)
def test_parse_parity_on_fixtures(name: str) -> None:
    py, cy = kernel_pair("rtp")
    for data in load(name):
        assert fields(py.parse_rtp_header(data)) == fields(cy.parse_rtp_header(data))


def test_csrc_extension_and_padding(rtp: ModuleType) -> None:
    # V=2 P=1 X=1 CC=2; 2 CSRCs, extension of 1 word, 3 payload bytes, 2 padding bytes.
    head = struct.pack("!BBHII", 0xB2, 0x00, 1, 2, 3) + b"\0" * 8
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\0" * 4
    data = head + ext + b"abc" + b"\0\x02"
    h = rtp.parse_rtp_header(data)
    assert (h.padding, h.extension, h.csrc_count) == (True, True, 2)
    assert (h.payload_offset, h.payload_length) == (12 + 8 + 8, 3)


MALFORMED = [
    (b"", "shorter"),
    (b"\x80" * 11, "shorter"),
    (b"\x40" + b"\0" * 11, "version"),
    (b"\x81" + b"\0" * 11, "CSRC"),
    (b"\x90" + b"\0" * 11, "extension"),
    (b"\x90" + b"\0" * 11 + b"\xbe\xde\x00\x02" + b"\0" * 4, "extension"),
    (b"\xa0" + b"\0" * 11, "padding"),
    (b"\xa0" + b"\0" * 11 + b"\x05", "padding"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_is_a_clear_error(rtp: ModuleType, data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        rtp.parse_rtp_header(data)
    assert rtp.payload_bounds(data)[0] < 0


def test_payload_bounds_parity_random_bytes() -> None:
    py, cy = kernel_pair("rtp")
    rng = random.Random(3550)
    for _ in range(3000):
        data = bytearray(rng.randbytes(rng.randrange(0, 40)))
        if data and rng.random() < 0.7:
            data[0] = 0x80 | (data[0] & 0x3F)
        assert py.payload_bounds(data) == cy.payload_bounds(data), data.hex()


def test_pack_header_round_trip(rtp: ModuleType) -> None:
    data = rtp.pack_rtp_header(True, 101, 65535, 2**32 - 1, 0xDEADBEEF)
    h = rtp.parse_rtp_header(data)
    assert fields(h)[4:9] == (True, 101, 65535, 2**32 - 1, 0xDEADBEEF)


def test_rewrite_applies_leg_identity(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(0x11223344, 1000, 50000)
    out = []
    for i in range(3):
        p = packet(7 + i, 160 * i + 99, 0xAAAA)
        assert w.rewrite(p) == 12
        out.append(seq_ts_ssrc(p))
    assert out == [(1000, 50000, 0x11223344), (1001, 50160, 0x11223344), (1002, 50320, 0x11223344)]


def test_rewrite_wraps_sequence_and_timestamp(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(1, 65534, 2**32 - 160)
    got = []
    for i in range(4):
        p = packet(100 + i, 8000 + 160 * i, 5)
        w.rewrite(p)
        got.append(seq_ts_ssrc(p)[:2])
    assert got == [(65534, 2**32 - 160), (65535, 0), (0, 160), (1, 320)]


def test_incoming_wrap_is_continuous(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(1, 10, 0)
    got = []
    for seq, ts in ((65535, 2**32 - 160), (0, 0), (1, 160)):
        p = packet(seq, ts, 5)
        w.rewrite(p)
        got.append(seq_ts_ssrc(p)[:2])
    assert got == [(10, 0), (11, 160), (12, 320)]


def test_ssrc_change_keeps_outgoing_continuous_and_marks(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(42, 500, 8000, ts_step=160)
    for i in range(3):
        w.rewrite(packet(10 + i, 1000 + 160 * i, 0xA))
    p = packet(40000, 777777, 0xB)  # the source restarts with a new SSRC (RFC 3550 §8.2)
    w.rewrite(p)
    assert seq_ts_ssrc(p) == (503, 8000 + 3 * 160, 42)
    assert p[1] & 0x80
    q = packet(40001, 777777 + 160, 0xB)
    w.rewrite(q)
    assert seq_ts_ssrc(q) == (504, 8000 + 4 * 160, 42)
    assert not q[1] & 0x80
    assert w.source_changes == 1


def test_reordered_packet_keeps_its_place(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(1, 0, 0)
    order = [0, 2, 1, 3]
    got = []
    for i in order:
        p = packet(100 + i, 160 * i, 9)
        w.rewrite(p)
        got.append(seq_ts_ssrc(p)[0])
    assert got == order
    p = packet(5000, 0, 10)  # new source continues after the newest, not the late one
    w.rewrite(p)
    assert seq_ts_ssrc(p)[0] == 4


def test_payload_type_map_and_drop(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(1, 0, 0)
    w.map_payload_type(101, 96)
    w.map_payload_type(18, rtp.PT_DROP)
    p = packet(1, 0, 2, pt=101, marker=True, size=4)
    assert w.rewrite(p) == 12
    assert p[1] == 0x80 | 96
    assert w.rewrite(packet(2, 0, 2, pt=18)) == rtp.RTP_ERR_PAYLOAD_TYPE
    with pytest.raises(ValueError, match=r"0\.\.127"):
        w.map_payload_type(128, 0)


def test_mark_next(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(1, 0, 0)
    w.mark_next()
    a, b = packet(1, 0, 2), packet(2, 160, 2)
    w.rewrite(a)
    w.rewrite(b)
    assert a[1] & 0x80 and not b[1] & 0x80


def test_rewrite_rejects_malformed_without_touching_it(rtp: ModuleType) -> None:
    w = rtp.RtpRewriter(1, 0, 0)
    for data, _ in MALFORMED:
        buf = bytearray(data)
        assert w.rewrite(buf) < 0
        assert buf == data


def random_stream(rng: random.Random, count: int) -> list[bytearray]:
    """Packets with jumps, reordering, SSRC changes, wraps, PT changes and garbage."""
    seq, ts, ssrc = rng.randrange(65536), rng.randrange(2**32), rng.randrange(2**32)
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.03:
            ssrc = rng.randrange(2**32)
            seq, ts = rng.randrange(65536), rng.randrange(2**32)
        elif roll < 0.06:
            out.append(bytearray(rng.randbytes(rng.randrange(30))))
            continue
        step = rng.choice((1, 1, 1, 2, -1, 3))
        seq = (seq + step) % 65536
        ts = (ts + 160 * step) % 2**32
        out.append(
            packet(
                seq,
                ts,
                ssrc,
                pt=rng.choice((0, 8, 101, 18)),
                marker=rng.random() < 0.1,
                size=rng.choice((4, 160)),
            )
        )
    return out


@pytest.mark.parametrize("seed", range(5))
def test_rewrite_parity_random_streams(seed: int) -> None:
    py, cy = kernel_pair("rtp")
    rng = random.Random(seed)
    first = (
        rng.randrange(2**32),
        rng.randrange(65536),
        rng.randrange(2**32),
        rng.choice((160, 240)),
    )
    wp, wc = py.RtpRewriter(*first), cy.RtpRewriter(*first)
    for w in (wp, wc):
        w.map_payload_type(101, 96)
        w.map_payload_type(18, py.PT_DROP)
    for i, pkt in enumerate(random_stream(rng, 2000)):
        if i % 97 == 0:
            wp.mark_next()
            wc.mark_next()
        a, b = bytearray(pkt), bytearray(pkt)
        assert wp.rewrite(a) == wc.rewrite(b)
        assert a == b
    assert wp.source_changes == wc.source_changes


def test_rewrite_parity_on_captured_packets() -> None:
    py, cy = kernel_pair("rtp")
    wp, wc = py.RtpRewriter(7, 65500, 2**32 - 1000), cy.RtpRewriter(7, 65500, 2**32 - 1000)
    for data in load("g711a.pcap") + load("dtmf_2833_5.pcap"):
        a, b = bytearray(data), bytearray(data)
        assert wp.rewrite(a) == wc.rewrite(b) == 12
        assert a == b


@pytest.mark.parametrize("seed", range(5))
def test_parity_with_elapsed_gaps_and_own_frames(seed: int) -> None:
    """What cext.relay does with the stream: relayed packets whose new sources continue
    after the real elapsed time (``gap``), mixed with frames of our own (prompts)."""
    py, cy = kernel_pair("rtp")
    rng = random.Random(1000 + seed)
    first = (rng.randrange(2**32), rng.randrange(65536), rng.randrange(2**32))
    wp, wc = py.RtpRewriter(*first), cy.RtpRewriter(*first)
    for pkt in random_stream(rng, 2000):
        if rng.random() < 0.05:
            samples = rng.choice((160, 240, 80))
            assert wp.own_frame(samples) == wc.own_frame(samples)
            continue
        gap = rng.choice((None, 160, 161, 8000, rng.randrange(2**32)))
        a, b = bytearray(pkt), bytearray(pkt)
        assert wp.rewrite(a, gap) == wc.rewrite(b, gap)
        assert a == b
    assert wp.source_changes == wc.source_changes


def test_a_source_after_our_own_frames_continues_them_marked(rtp: ModuleType) -> None:
    """Prompt, then relay (RFC 3550 §5.1): the relayed packet follows our last frame by one
    sequence number and by the gap, with the marker bit; then the prompt follows it."""
    w = rtp.RtpRewriter(9, 100, 16000)
    assert w.own_frame(160) == (100, 16000)  # as if seq 99 / ts 15840 had been sent
    assert w.own_frame(160) == (101, 16160)
    buf = packet(7, 777, 0xAB, marker=False)
    w.rewrite(buf, 480)
    assert seq_ts_ssrc(buf) == (102, 16640, 9) and buf[1] & 0x80
    buf = packet(8, 777 + 160, 0xAB)
    w.rewrite(buf, 480)  # same source: the gap does not apply
    assert seq_ts_ssrc(buf) == (103, 16800, 9) and not buf[1] & 0x80
    assert w.own_frame(160) == (104, 16960)
