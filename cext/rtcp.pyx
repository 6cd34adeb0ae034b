# cython: language_level=3
"""RTCP receiver statistics (RFC 3550 A.1, A.3, A.8); twin of kernels/rtcp_py.py.

The per-packet functions work on an ``rx_stats_t`` struct (see rtcp.pxd): cext.relay embeds
one per leg and calls them for every packet it receives; :class:`ReceiverStats` is the same
struct and the same functions behind a Python API, held bit-exact to the reference by the
parity tests.
"""

from libc.stdint cimport int32_t

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
LOST_MAX = 0x7FFFFF
LOST_MIN = -0x800000


cdef void rx_stats_reset(rx_stats_t* st) noexcept nogil:
    """A new source: forget everything (the next packet starts probation)."""
    st.max_seq = 0
    st.cycles = 0
    st.base_seq = 0
    st.bad_seq = 65537
    st.probation = 2
    st.received = 0
    st.expected_prior = 0
    st.received_prior = 0
    st.transit = 0
    st.jitter_q4 = 0
    st.started = False
    st.have_transit = False


cdef void init_seq(rx_stats_t* st, unsigned int seq) noexcept nogil:
    st.base_seq = seq
    st.max_seq = seq
    st.bad_seq = 65537
    st.cycles = 0
    st.received = 0
    st.received_prior = 0
    st.expected_prior = 0


cdef bint rx_stats_update(rx_stats_t* st, unsigned int seq, unsigned int rtp_ts,
                          unsigned int arrival) noexcept nogil:
    """Account one packet (A.1 update_seq, A.8 jitter); False if not (yet) valid."""
    if not rx_stats_seq(st, seq):
        return False
    rx_stats_jitter(st, rtp_ts, arrival)
    return True


cdef bint rx_stats_seq(rx_stats_t* st, unsigned int seq) noexcept nogil:
    """A.1 update_seq() with probation (MIN_SEQUENTIAL = 2); False if not (yet) valid."""
    cdef unsigned int udelta
    seq &= 0xFFFF
    if not st.started:
        st.started = True
        init_seq(st, seq)
        st.max_seq = (seq - 1) & 0xFFFF
        st.probation = 2
    udelta = (seq - st.max_seq) & 0xFFFF
    if st.probation:
        if seq == ((st.max_seq + 1) & 0xFFFF):
            st.probation -= 1
            st.max_seq = seq
            if st.probation == 0:
                init_seq(st, seq)
                st.received += 1
                return True
        else:
            st.probation = 1
            st.max_seq = seq
        return False
    if udelta < 3000:
        if seq < st.max_seq:
            st.cycles += 65536
        st.max_seq = seq
    elif udelta <= 65536 - 100:
        if seq == st.bad_seq:
            init_seq(st, seq)
        else:
            st.bad_seq = (seq + 1) & 0xFFFF
            return False
    st.received += 1
    return True


cdef void rx_stats_jitter(rx_stats_t* st, unsigned int rtp_ts, unsigned int arrival) noexcept nogil:
    """A.8 interarrival jitter, integer arithmetic scaled by 16 as in the RFC's code."""
    cdef int32_t transit = <int32_t>(arrival - rtp_ts)
    cdef long long d
    if st.have_transit:
        d = <int32_t>(<unsigned int>transit - <unsigned int>st.transit)  # RFC int math
        if d < 0:
            d = -d
        st.jitter_q4 += d - ((st.jitter_q4 + 8) >> 4)
    st.have_transit = True
    st.transit = transit


cdef long long rx_stats_expected(const rx_stats_t* st) noexcept nogil:
    if st.received == 0:
        return 0
    return st.cycles + st.max_seq - st.base_seq + 1


cdef class ReceiverStats:
    """Sequence tracking, loss and interarrival jitter of one RTP source."""

    def __init__(self):
        rx_stats_reset(&self.st)

    def update(self, seq, rtp_ts, arrival):
        """Account one packet (A.1 update_seq, A.8 jitter); False if not (yet) valid."""
        return rx_stats_update(&self.st, <unsigned int>(seq & 0xFFFF),
                               <unsigned int>(rtp_ts & 0xFFFFFFFF),
                               <unsigned int>(arrival & 0xFFFFFFFF))

    def update_seq(self, seq):
        """A.1 only (a packet that must not move the jitter estimate); False if not valid."""
        return rx_stats_seq(&self.st, <unsigned int>(seq & 0xFFFF))

    @property
    def max_seq(self):
        return self.st.max_seq

    @property
    def cycles(self):
        return self.st.cycles

    @property
    def base_seq(self):
        return self.st.base_seq

    @property
    def bad_seq(self):
        return self.st.bad_seq

    @property
    def probation(self):
        return self.st.probation

    @property
    def received(self):
        return self.st.received

    @property
    def expected_prior(self):
        return self.st.expected_prior

    @property
    def received_prior(self):
        return self.st.received_prior

    @property
    def transit(self):
        return self.st.transit

    @property
    def jitter_q4(self):
        return self.st.jitter_q4

    @property
    def extended_max_seq(self):
        return self.st.cycles + self.st.max_seq

    @property
    def expected(self):
        return rx_stats_expected(&self.st)

    @property
    def cumulative_lost(self):
        return max(LOST_MIN, min(LOST_MAX, rx_stats_expected(&self.st) - self.st.received))

    @property
    def jitter(self):
        return self.st.jitter_q4 >> 4

    def report_interval(self):
        """A.3: (fraction lost /256 since the last call, cumulative lost, ext. max seq, jitter)."""
        cdef long long expected = rx_stats_expected(&self.st)
        cdef long long expected_interval = expected - self.st.expected_prior
        cdef long long received_interval, lost_interval, fraction
        self.st.expected_prior = expected
        received_interval = self.st.received - self.st.received_prior
        self.st.received_prior = self.st.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        return fraction, self.cumulative_lost, self.extended_max_seq & 0xFFFFFFFF, self.jitter
