"""RTP fixed header parse and per-leg rewrite (RFC 3550 §5.1): reference twin of ``cext.rtp``.

``parse_rtp_header`` validates a datagram and returns its header fields. ``RtpRewriter`` owns
one outgoing leg's RTP identity: it rewrites packets in place with the leg's SSRC, sequence
numbers and timestamps shifted by per-source deltas (mod 2^16 / 2^32), maps payload types
between the legs' negotiated numbers, and keeps outgoing sequence and timestamp continuous
when the incoming source changes its SSRC mid-call (RFC 3550 §8.2: a new SSRC is a new
source, so the leg must not expose the jump to its peer).
"""

from __future__ import annotations

from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12  # RFC 3550 §5.1 fixed header
RTP_SEQ_MOD = 1 << 16
RTP_TS_MOD = 1 << 32
PT_DROP = 0xFF  # payload-type map entry: the leg did not negotiate this payload type

# Result codes of RtpRewriter.rewrite (negative: the packet must be dropped).
RTP_OK = 0
RTP_ERR_SHORT = -1
RTP_ERR_VERSION = -2
RTP_ERR_CSRC = -3
RTP_ERR_EXTENSION = -4
RTP_ERR_PADDING = -5
RTP_ERR_PAYLOAD_TYPE = -6

ERROR_TEXT = {
    RTP_ERR_SHORT: "shorter than the 12-byte RTP fixed header",
    RTP_ERR_VERSION: "RTP version is not 2",
    RTP_ERR_CSRC: "CSRC list runs past the end of the packet",
    RTP_ERR_EXTENSION: "header extension runs past the end of the packet",
    RTP_ERR_PADDING: "padding count is zero or longer than the payload",
    RTP_ERR_PAYLOAD_TYPE: "payload type not mapped for this leg",
}


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload_offset: int  # first payload byte: after CSRCs and the header extension (§5.3.1)
    payload_length: int  # payload bytes, padding excluded (§5.1 P bit)


def payload_bounds(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(payload offset, payload length) or (negative error code, 0)."""
    n = len(packet)
    if n < RTP_HEADER_SIZE:
        return RTP_ERR_SHORT, 0
    first = packet[0]
    if first >> 6 != RTP_VERSION:
        return RTP_ERR_VERSION, 0
    offset = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if offset > n:
        return RTP_ERR_CSRC, 0
    if first & 0x10:
        if offset + 4 > n:
            return RTP_ERR_EXTENSION, 0
        offset += 4 + 4 * ((packet[offset + 2] << 8) | packet[offset + 3])
        if offset > n:
            return RTP_ERR_EXTENSION, 0
    end = n
    if first & 0x20:
        pad = packet[n - 1]
        if pad == 0 or offset + pad > n:
            return RTP_ERR_PADDING, 0
        end -= pad
    return offset, end - offset


def parse_rtp_header(packet: bytes | bytearray | memoryview) -> RtpHeader:
    """Parse and validate an RTP packet's header (RFC 3550 §5.1, §5.3.1)."""
    offset, length = payload_bounds(packet)
    if offset < 0:
        raise RtpError(ERROR_TEXT[offset])
    first, second = packet[0], packet[1]
    return RtpHeader(
        version=first >> 6,
        padding=bool(first & 0x20),
        extension=bool(first & 0x10),
        csrc_count=first & 0x0F,
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence=int.from_bytes(packet[2:4], "big"),
        timestamp=int.from_bytes(packet[4:8], "big"),
        ssrc=int.from_bytes(packet[8:12], "big"),
        payload_offset=offset,
        payload_length=length,
    )


def pack_rtp_header(
    marker: bool, payload_type: int, sequence: int, timestamp: int, ssrc: int
) -> bytes:
    """A 12-byte RTP fixed header (no padding, extension or CSRCs)."""
    return (
        bytes(
            (
                RTP_VERSION << 6,
                (0x80 if marker else 0) | (payload_type & 0x7F),
                (sequence >> 8) & 0xFF,
                sequence & 0xFF,
            )
        )
        + (timestamp % RTP_TS_MOD).to_bytes(4, "big")
        + (ssrc % RTP_TS_MOD).to_bytes(4, "big")
    )


class RtpRewriter:
    """Rewrites the packets one leg sends: SSRC, seq/ts offsets, PT map, marker.

    One outgoing stream (our SSRC): each new source continues it (RFC 3550 §5.1), its first
    packet one sequence number and ``gap`` timestamp units after the newest packet sent
    (``ts_step`` unless the caller knows the real gap: the relay passes the elapsed time),
    with the marker bit. :meth:`own_frame` puts a frame of our own (a prompt) on the stream.
    The Cython twin keeps this state in the ``rtp_out_t`` struct that cext.relay embeds.
    """

    def __init__(
        self, ssrc: int, first_sequence: int, first_timestamp: int, ts_step: int = 160
    ) -> None:
        self.ssrc = ssrc % RTP_TS_MOD
        self.ts_step = ts_step % RTP_TS_MOD  # timestamp gap assumed across a source change
        self._pt_map = list(range(128))
        # As if the packet before first_sequence / first_timestamp had been sent.
        self._last_seq = (first_sequence - 1) % RTP_SEQ_MOD
        self._last_ts = (first_timestamp - ts_step) % RTP_TS_MOD
        self._have_source = False
        self._source_ssrc = 0
        self._seq_delta = 0
        self._ts_delta = 0
        self._sent = False  # anything on the stream yet (a later new source is marked)
        self._mark_next = False
        self.source_changes = 0

    def map_payload_type(self, incoming: int, outgoing: int) -> None:
        """Send incoming PT as outgoing (PT_DROP: drop packets with that PT)."""
        if not 0 <= incoming < 128 or not (0 <= outgoing < 128 or outgoing == PT_DROP):
            raise ValueError(f"payload types must be 0..127, got {incoming} -> {outgoing}")
        self._pt_map[incoming] = outgoing

    def mark_next(self) -> None:
        """Set the marker bit on the next packet (a discontinuity, RFC 3550 §5.1 M)."""
        self._mark_next = True

    def rewrite(self, packet: bytearray, gap: int | None = None) -> int:
        """Rewrite in place; returns the payload offset, or a negative RTP_ERR_* code.
        ``gap``: timestamp units between the newest packet sent and this one if it starts
        a new source (default ``ts_step``)."""
        offset, _ = payload_bounds(packet)
        if offset < 0:
            return offset
        out_pt = self._pt_map[packet[1] & 0x7F]
        if out_pt == PT_DROP:
            return RTP_ERR_PAYLOAD_TYPE
        seq = (packet[2] << 8) | packet[3]
        ts = int.from_bytes(packet[4:8], "big")
        ssrc = int.from_bytes(packet[8:12], "big")
        step = self.ts_step if gap is None else gap % RTP_TS_MOD
        if self._map(ssrc, seq, ts, step) and self._sent:
            self.source_changes += 1  # a discontinuity the receiver is told of
            self._mark_next = True
        self._sent = True
        out_seq = (seq + self._seq_delta) % RTP_SEQ_MOD
        out_ts = (ts + self._ts_delta) % RTP_TS_MOD
        self._advance(out_seq, out_ts)
        marker = (packet[1] & 0x80) or self._mark_next
        self._mark_next = False
        packet[1] = (0x80 if marker else 0) | out_pt
        packet[2] = out_seq >> 8
        packet[3] = out_seq & 0xFF
        packet[4:8] = out_ts.to_bytes(4, "big")
        packet[8:12] = self.ssrc.to_bytes(4, "big")
        return offset

    def own_frame(self, samples: int) -> tuple[int, int]:
        """(seq, ts) of a frame of our own, ``samples`` after the newest packet sent; what is
        relayed after it is a new source again (it continues from here)."""
        self._last_seq = (self._last_seq + 1) % RTP_SEQ_MOD
        self._last_ts = (self._last_ts + samples) % RTP_TS_MOD
        self._have_source = False
        self._sent = True
        return self._last_seq, self._last_ts

    def _map(self, ssrc: int, seq: int, ts: int, gap: int) -> bool:
        """Map a (new) source so its first packet continues the stream; True if new."""
        if self._have_source and ssrc == self._source_ssrc:
            return False
        self._have_source = True
        self._source_ssrc = ssrc
        self._seq_delta = (self._last_seq + 1 - seq) % RTP_SEQ_MOD
        self._ts_delta = (self._last_ts + gap - ts) % RTP_TS_MOD
        return True

    def _advance(self, out_seq: int, out_ts: int) -> None:
        """Remember the newest outgoing seq/ts (a late, reordered packet does not go back)."""
        if 0 < (out_seq - self._last_seq) % RTP_SEQ_MOD < RTP_SEQ_MOD // 2:
            self._last_seq = out_seq
        if (out_ts - self._last_ts) % RTP_TS_MOD < RTP_TS_MOD // 2:
            self._last_ts = out_ts
