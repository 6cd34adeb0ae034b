# C-level interface of cext.rtp (RFC 3550 §5.1 fixed header), for other cext modules.

cdef enum:
    RTP_HEADER_SIZE = 12
    PT_DROP = 0xFF
    RTP_ERR_SHORT = -1
    RTP_ERR_VERSION = -2
    RTP_ERR_CSRC = -3
    RTP_ERR_EXTENSION = -4
    RTP_ERR_PADDING = -5
    RTP_ERR_PAYLOAD_TYPE = -6

cdef Py_ssize_t rtp_payload_bounds(const unsigned char* p, Py_ssize_t n, Py_ssize_t* length) noexcept nogil
cdef void rtp_write_header(unsigned char* p, bint marker, int payload_type, unsigned int sequence,
                           unsigned int timestamp, unsigned int ssrc) noexcept nogil
cdef unsigned int rtp_get_u32(const unsigned char* p) noexcept nogil
cdef void rtp_put_u32(unsigned char* p, unsigned int value) noexcept nogil


# One outgoing stream (our SSRC) onto which relayed sources are mapped: each new source
# continues our sequence numbers and timestamps (RFC 3550 §5.1). cext.relay embeds one per
# leg; RtpRewriter wraps one, so the parity tests hold exactly what the relay runs.
ctypedef struct rtp_out_t:
    unsigned int ssrc
    bint have_source
    unsigned int source_ssrc
    unsigned int seq_delta
    unsigned int ts_delta
    unsigned int last_seq  # newest sequence number sent
    unsigned int last_ts  # newest timestamp sent

cdef void rtp_out_init(rtp_out_t* o, unsigned int ssrc, unsigned int last_seq,
                       unsigned int last_ts) noexcept nogil
cdef bint rtp_out_map(rtp_out_t* o, unsigned int ssrc, unsigned int seq, unsigned int ts,
                      unsigned int gap, unsigned int* out_seq, unsigned int* out_ts) noexcept nogil
cdef void rtp_out_own(rtp_out_t* o, unsigned int step) noexcept nogil


cdef class RtpRewriter:
    cdef public unsigned int ts_step
    cdef public unsigned int source_changes
    cdef unsigned char pt_map[128]
    cdef rtp_out_t out
    cdef bint mark_pending
    cdef bint sent

    cdef Py_ssize_t rewrite_buf(self, unsigned char* p, Py_ssize_t n, unsigned int gap) noexcept nogil
