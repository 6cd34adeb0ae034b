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


cdef void rtp_out_init(rtp_out_t* o, unsigned int ssrc, unsigned int last_seq,
                       unsigned int last_ts) noexcept nogil:
    """A stream that has (notionally) sent ``last_seq``/``last_ts``; no source mapped yet."""
    o.ssrc = ssrc
    o.have_source = False
    o.source_ssrc = 0
    o.seq_delta = 0
    o.ts_delta = 0
    o.last_seq = last_seq & 0xFFFF
    o.last_ts = last_ts


cdef bint rtp_out_map(rtp_out_t* o, unsigned int ssrc, unsigned int seq, unsigned int ts,
                      unsigned int gap, unsigned int* out_seq, unsigned int* out_ts) noexcept nogil:
    """Map one packet of source ``ssrc`` onto the stream; True if it starts a new source.

    A new source continues the stream: its first packet gets the next sequence number and a
    timestamp ``gap`` after the newest one sent. A late, reordered packet keeps its place
    and does not move the newest seq/ts back."""
    cdef bint adopted = not o.have_source or ssrc != o.source_ssrc
    cdef unsigned int dseq
    if adopted:
        o.have_source = True
        o.source_ssrc = ssrc
        o.seq_delta = (o.last_seq + 1 - seq) & 0xFFFF
        o.ts_delta = o.last_ts + gap - ts  # unsigned int arithmetic wraps mod 2^32
    out_seq[0] = (seq + o.seq_delta) & 0xFFFF
    out_ts[0] = ts + o.ts_delta
    dseq = (out_seq[0] - o.last_seq) & 0xFFFF
    if 0 < dseq < 0x8000:
        o.last_seq = out_seq[0]
    if <unsigned int>(out_ts[0] - o.last_ts) < 0x80000000u:
        o.last_ts = out_ts[0]
    return adopted


cdef void rtp_out_own(rtp_out_t* o, unsigned int step) noexcept nogil:
    """We send a frame of our own (a prompt): the next seq, ``step`` samples on; whatever
    is relayed after it is a new source again (it continues from here)."""
    o.last_seq = (o.last_seq + 1) & 0xFFFF
    o.last_ts = o.last_ts + step
    o.have_source = False


cdef class RtpRewriter:
    """Rewrites the packets one leg sends: SSRC, seq/ts offsets, PT map, marker."""

    def __init__(self, ssrc, first_sequence, first_timestamp, ts_step=160):
        cdef int i
        self.ts_step = <unsigned int>(ts_step % RTP_TS_MOD)
        for i in range(128):
            self.pt_map[i] = i
        # The first source's first packet gets first_sequence / first_timestamp.
        rtp_out_init(&self.out, <unsigned int>(ssrc % RTP_TS_MOD),
                     <unsigned int>((first_sequence - 1) % RTP_SEQ_MOD),
                     <unsigned int>((first_timestamp - ts_step) % RTP_TS_MOD))
        self.mark_pending = False
        self.sent = False
        self.source_changes = 0

    @property
    def ssrc(self):
        return self.out.ssrc

    def map_payload_type(self, int incoming, int outgoing):
        """Send incoming PT as outgoing (PT_DROP: drop packets with that PT)."""
        if not 0 <= incoming < 128 or not (0 <= outgoing < 128 or outgoing == PT_DROP):
            raise ValueError(f"payload types must be 0..127, got {incoming} -> {outgoing}")
        self.pt_map[incoming] = outgoing

    def mark_next(self):
        """Set the marker bit on the next packet (a discontinuity, RFC 3550 §5.1 M)."""
        self.mark_pending = True

    def rewrite(self, bytearray packet not None, gap=None):
        """Rewrite in place; returns the payload offset, or a negative RTP_ERR_* code.
        ``gap``: timestamp units from the newest packet sent to this one if it starts a new
        source (default ``ts_step``; the relay passes the elapsed time)."""
        cdef unsigned char[::1] buf = packet
        cdef unsigned int step = self.ts_step if gap is None else <unsigned int>(gap % RTP_TS_MOD)
        if buf.shape[0] == 0:
            return RTP_ERR_SHORT
        return self.rewrite_buf(&buf[0], buf.shape[0], step)

    def own_frame(self, unsigned int samples):
        """(seq, ts) of a frame of our own (a prompt), ``samples`` after the newest packet
        sent; what is relayed after it is a new source again (cext.relay's send_payload)."""
        rtp_out_own(&self.out, samples)
        self.sent = True
        return self.out.last_seq, self.out.last_ts

    cdef Py_ssize_t rewrite_buf(self, unsigned char* p, Py_ssize_t n, unsigned int gap) noexcept nogil:
        cdef Py_ssize_t length
        cdef Py_ssize_t offset = rtp_payload_bounds(p, n, &length)
        cdef unsigned char out_pt
        cdef unsigned int out_seq, out_ts
        cdef bint marker
        if offset < 0:
            return offset
        out_pt = self.pt_map[p[1] & 0x7F]
        if out_pt == PT_DROP:
            return RTP_ERR_PAYLOAD_TYPE
        if rtp_out_map(&self.out, rtp_get_u32(p + 8), (p[2] << 8) | p[3], rtp_get_u32(p + 4),
                       gap, &out_seq, &out_ts) and self.sent:
            self.source_changes += 1  # a new source: a discontinuity the receiver is told of
            self.mark_pending = True
        self.sent = True
        marker = (p[1] & 0x80) != 0 or self.mark_pending
        self.mark_pending = False
        p[1] = (0x80 if marker else 0) | out_pt  # p[0] (padding, extension, CSRCs) stays
        p[2] = out_seq >> 8
        p[3] = out_seq & 0xFF
        rtp_put_u32(p + 4, out_ts)
        rtp_put_u32(p + 8, self.out.ssrc)
        return offset
