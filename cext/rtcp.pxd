# C-level interface of cext.rtcp (RFC 3550 A.1/A.3/A.8 receiver statistics).
#
# The state is a plain struct so that cext.relay embeds one per leg (no Python object per
# leg or packet); ReceiverStats wraps one for Python and for the parity tests, so the
# functions below are exactly what the relay runs.

ctypedef struct rx_stats_t:
    unsigned int max_seq
    long long cycles
    unsigned int base_seq
    unsigned int bad_seq
    int probation
    long long received
    long long expected_prior
    long long received_prior
    int transit
    long long jitter_q4
    bint started
    bint have_transit

cdef void rx_stats_reset(rx_stats_t* st) noexcept nogil
cdef bint rx_stats_update(rx_stats_t* st, unsigned int seq, unsigned int rtp_ts,
                          unsigned int arrival) noexcept nogil
cdef bint rx_stats_seq(rx_stats_t* st, unsigned int seq) noexcept nogil
cdef void rx_stats_jitter(rx_stats_t* st, unsigned int rtp_ts, unsigned int arrival) noexcept nogil
cdef long long rx_stats_expected(const rx_stats_t* st) noexcept nogil


cdef class ReceiverStats:
    cdef rx_stats_t st
