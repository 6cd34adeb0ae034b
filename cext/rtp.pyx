# cython: language_level=3
"""RTP fixed header parse and per-leg rewrite (RFC 3550 §5.1); twin of kernels/rtp_py.py.

The per-packet entry points (``rtp_payload_bounds``, ``RtpRewriter.rewrite_buf``) take raw
buffers, hold no GIL and create no Python objects.
"""

RTP_VERSION = 2
RTP_SEQ_MOD = 1 << 16
RTP_TS_MOD = 1 << 32
RTP_OK = 0

ERROR_TEXT = {
    RTP_ERR_SHORT: "shorter than the 12-byte RTP fixed header",
    RTP_ERR_VERSION: "RTP version is not 2",
    RTP_ERR_CSRC: "CSRC list runs past the end of the packet",
    RTP_ERR_EXTENSION: "header extension runs past the end of the packet",
    RTP_ERR_PADDING: "padding count is zero or longer than the payload",
    RTP_ERR_PAYLOAD_TYPE: "payload type not mapped for this leg",
}
# Python-visible copies of the C enum values.
globals().update(
    RTP_HEADER_SIZE=RTP_HEADER_SIZE, PT_DROP=PT_DROP, RTP_ERR_SHORT=RTP_ERR_SHORT,
    RTP_ERR_VERSION=RTP_ERR_VERSION, RTP_ERR_CSRC=RTP_ERR_CSRC,
    RTP_ERR_EXTENSION=RTP_ERR_EXTENSION, RTP_ERR_PADDING=RTP_ERR_PADDING,
    RTP_ERR_PAYLOAD_TYPE=RTP_ERR_PAYLOAD_TYPE,
)


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet."""


cdef unsigned int rtp_get_u32(const unsigned char* p) noexcept nogil:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


cdef void rtp_put_u32(unsigned char* p, unsigned int value) noexcept nogil:
    p[0] = (value >> 24) & 0xFF
    p[1] = (value >> 16) & 0xFF
    p[2] = (value >> 8) & 0xFF
    p[3] = value & 0xFF


cdef Py_ssize_t rtp_payload_bounds(const unsigned char* p, Py_ssize_t n, Py_ssize_t* length) noexcept nogil:
    """Payload offset (and length via ``length``), or a negative RTP_ERR_* code."""
    cdef Py_ssize_t offset, end
    cdef unsigned char first, pad
    length[0] = 0
    if n < RTP_HEADER_SIZE:
        return RTP_ERR_SHORT
    first = p[0]
    if first >> 6 != 2:
        return RTP_ERR_VERSION
    offset = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if offset > n:
        return RTP_ERR_CSRC
    if first & 0x10:
        if offset + 4 > n:
            return RTP_ERR_EXTENSION
        offset += 4 + 4 * ((<Py_ssize_t>p[offset + 2] << 8) | p[offset + 3])
        if offset > n:
            return RTP_ERR_EXTENSION
    end = n
    if first & 0x20:
        pad = p[n - 1]
        if pad == 0 or offset + pad > n:
            return RTP_ERR_PADDING
        end -= pad
    length[0] = end - offset
    return offset


cdef void rtp_write_header(unsigned char* p, bint marker, int payload_type, unsigned int sequence,
                           unsigned int timestamp, unsigned int ssrc) noexcept nogil:
    p[0] = 0x80
    p[1] = (0x80 if marker else 0) | (payload_type & 0x7F)
    p[2] = (sequence >> 8) & 0xFF
    p[3] = sequence & 0xFF
    rtp_put_u32(p + 4, timestamp)
    rtp_put_u32(p + 8, ssrc)


cdef class RtpHeader:
    """Parsed RTP header fields (same names as the reference dataclass)."""
    cdef readonly int version
    cdef readonly bint padding
    cdef readonly bint extension
    cdef readonly int csrc_count
    cdef readonly bint marker
    cdef readonly int payload_type
    cdef readonly unsigned int sequence
    cdef readonly unsigned int timestamp
    cdef readonly unsigned int ssrc
    cdef readonly Py_ssize_t payload_offset
    cdef readonly Py_ssize_t payload_length

    def __repr__(self):
        return (f"RtpHeader(version={self.version}, padding={self.padding}, "
                f"extension={self.extension}, csrc_count={self.csrc_count}, "
                f"marker={self.marker}, payload_type={self.payload_type}, "
                f"sequence={self.sequence}, timestamp={self.timestamp}, ssrc={self.ssrc}, "
                f"payload_offset={self.payload_offset}, payload_length={self.payload_length})")


def payload_bounds(packet):
    """(payload offset, payload length) or (negative error code, 0)."""
    cdef const unsigned char[::1] buf = bytes(packet)
    cdef Py_ssize_t length = 0
    cdef Py_ssize_t offset = rtp_payload_bounds(&buf[0] if buf.shape[0] else NULL, buf.shape[0], &length)
    return offset, length


def parse_rtp_header(packet):
    """Parse and validate an RTP packet's header (RFC 3550 §5.1, §5.3.1)."""
    cdef const unsigned char[::1] buf = bytes(packet)
    cdef Py_ssize_t length = 0
    cdef const unsigned char* p = &buf[0] if buf.shape[0] else NULL
    cdef Py_ssize_t offset = rtp_payload_bounds(p, buf.shape[0], &length)
    cdef RtpHeader h
    if offset < 0:
        raise RtpError(ERROR_TEXT[offset])
    h = RtpHeader.__new__(RtpHeader)
    h.version = p[0] >> 6
    h.padding = (p[0] & 0x20) != 0
    h.extension = (p[0] & 0x10) != 0
    h.csrc_count = p[0] & 0x0F
    h.marker = (p[1] & 0x80) != 0
    h.payload_type = p[1] & 0x7F
    h.sequence = (p[2] << 8) | p[3]
    h.timestamp = rtp_get_u32(p + 4)
    h.ssrc = rtp_get_u32(p + 8)
    h.payload_offset = offset
    h.payload_length = length
    return h


def pack_rtp_header(bint marker, int payload_type, sequence, timestamp, ssrc):
    """A 12-byte RTP fixed header (no padding, extension or CSRCs)."""
    cdef unsigned char out[12]
    rtp_write_header(out, marker, payload_type, <unsigned int>(sequence % RTP_SEQ_MOD),
                     <unsigned int>(timestamp % RTP_TS_MOD), <unsigned int>(ssrc % RTP_TS_MOD))
    return out[:12]


cdef class RtpRewriter:
    """Rewrites the packets one leg sends: SSRC, seq/ts offsets, PT map, marker."""

    def __init__(self, ssrc, first_sequence, first_timestamp, ts_step=160):
        cdef int i
        self.ssrc = <unsigned int>(ssrc % RTP_TS_MOD)
        self.ts_step = <unsigned int>(ts_step % RTP_TS_MOD)
        for i in range(128):
            self.pt_map[i] = i
        self.next_seq = <unsigned int>(first_sequence % RTP_SEQ_MOD)
        self.next_ts = <unsigned int>(first_timestamp % RTP_TS_MOD)
        self.have_source = False
        self.source_ssrc = 0
        self.seq_delta = 0
        self.ts_delta = 0
        self.last_seq = 0
        self.last_ts = 0
        self.mark_pending = False
        self.source_changes = 0

    def map_payload_type(self, int incoming, int outgoing):
        """Send incoming PT as outgoing (PT_DROP: drop packets with that PT)."""
        if not 0 <= incoming < 128 or not (0 <= outgoing < 128 or outgoing == PT_DROP):
            raise ValueError(f"payload types must be 0..127, got {incoming} -> {outgoing}")
        self.pt_map[incoming] = outgoing

    def mark_next(self):
        """Set the marker bit on the next packet (a discontinuity, RFC 3550 §5.1 M)."""
        self.mark_pending = True

    def rewrite(self, bytearray packet not None):
        """Rewrite in place; returns the payload offset, or a negative RTP_ERR_* code."""
        cdef unsigned char[::1] buf = packet
        if buf.shape[0] == 0:
            return RTP_ERR_SHORT
        return self.rewrite_buf(&buf[0], buf.shape[0])

    cdef Py_ssize_t rewrite_buf(self, unsigned char* p, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t length
        cdef Py_ssize_t offset = rtp_payload_bounds(p, n, &length)
        cdef unsigned char out_pt
        cdef unsigned int seq, ts, ssrc, out_seq, out_ts
        cdef bint marker
        if offset < 0:
            return offset
        out_pt = self.pt_map[p[1] & 0x7F]
        if out_pt == PT_DROP:
            return RTP_ERR_PAYLOAD_TYPE
        seq = (p[2] << 8) | p[3]
        ts = rtp_get_u32(p + 4)
        ssrc = rtp_get_u32(p + 8)
        if not self.have_source or ssrc != self.source_ssrc:
            self.adopt_source(ssrc, seq, ts)
        out_seq = (seq + self.seq_delta) & 0xFFFF
        out_ts = ts + self.ts_delta  # unsigned int arithmetic wraps mod 2^32
        self.advance(out_seq, out_ts)
        marker = (p[1] & 0x80) != 0 or self.mark_pending
        self.mark_pending = False
        p[1] = (0x80 if marker else 0) | out_pt
        p[2] = out_seq >> 8
        p[3] = out_seq & 0xFF
        rtp_put_u32(p + 4, out_ts)
        rtp_put_u32(p + 8, self.ssrc)
        return offset

    cdef void adopt_source(self, unsigned int ssrc, unsigned int seq, unsigned int ts) noexcept nogil:
        """Map a (new) source so its first packet continues the outgoing stream."""
        if self.have_source:
            self.source_changes += 1
            self.mark_pending = True
            self.next_seq = (self.last_seq + 1) & 0xFFFF
            self.next_ts = self.last_ts + self.ts_step
        self.have_source = True
        self.source_ssrc = ssrc
        self.seq_delta = (self.next_seq - seq) & 0xFFFF
        self.ts_delta = self.next_ts - ts
        self.last_seq = (self.next_seq - 1) & 0xFFFF
        self.last_ts = self.next_ts

    cdef void advance(self, unsigned int out_seq, unsigned int out_ts) noexcept nogil:
        """Remember the newest outgoing seq/ts (a late, reordered packet does not go back)."""
        cdef unsigned int dseq = (out_seq - self.last_seq) & 0xFFFF
        if 0 < dseq < 0x8000:
            self.last_seq = out_seq
        if <unsigned int>(out_ts - self.last_ts) < 0x80000000u:
            self.last_ts = out_ts
