# C-level interface of cext.rtcp (RFC 3550 A.1/A.3/A.8 receiver statistics).

cdef class ReceiverStats:
    cdef public unsigned int max_seq
    cdef public long long cycles
    cdef public unsigned int base_seq
    cdef public unsigned int bad_seq
    cdef public int probation
    cdef public long long received
    cdef public long long expected_prior
    cdef public long long received_prior
    cdef public int transit
    cdef public long long jitter_q4
    cdef bint started
    cdef bint have_transit

    cdef bint update_c(self, unsigned int seq, unsigned int rtp_ts, unsigned int arrival) noexcept nogil
    cdef void init_seq(self, unsigned int seq) noexcept nogil
    cdef bint update_seq(self, unsigned int seq) noexcept nogil
    cdef void update_jitter(self, unsigned int rtp_ts, unsigned int arrival) noexcept nogil
    cdef long long expected_c(self) noexcept nogil
