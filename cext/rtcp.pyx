# cython: language_level=3
"""RTCP receiver statistics (RFC 3550 A.1, A.3, A.8); twin of kernels/rtcp_py.py."""

from libc.stdint cimport int32_t

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
LOST_MAX = 0x7FFFFF
LOST_MIN = -0x800000


cdef class ReceiverStats:
    """Sequence tracking, loss and interarrival jitter of one RTP source."""

    def __init__(self):
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = 65537
        self.probation = 2
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.transit = 0
        self.jitter_q4 = 0
        self.started = False
        self.have_transit = False

    def update(self, seq, rtp_ts, arrival):
        """Account one packet (A.1 update_seq, A.8 jitter); False if not (yet) valid."""
        return self.update_c(<unsigned int>(seq & 0xFFFF), <unsigned int>(rtp_ts & 0xFFFFFFFF),
                             <unsigned int>(arrival & 0xFFFFFFFF))

    cdef bint update_c(self, unsigned int seq, unsigned int rtp_ts, unsigned int arrival) noexcept nogil:
        seq &= 0xFFFF
        if not self.started:
            self.started = True
            self.init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = 2
        if not self.update_seq(seq):
            return False
        self.update_jitter(rtp_ts, arrival)
        return True

    cdef void init_seq(self, unsigned int seq) noexcept nogil:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = 65537
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    cdef bint update_seq(self, unsigned int seq) noexcept nogil:
        cdef unsigned int udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == ((self.max_seq + 1) & 0xFFFF):
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self.init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = 1
                self.max_seq = seq
            return False
        if udelta < 3000:
            if seq < self.max_seq:
                self.cycles += 65536
            self.max_seq = seq
        elif udelta <= 65536 - 100:
            if seq == self.bad_seq:
                self.init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        self.received += 1
        return True

    cdef void update_jitter(self, unsigned int rtp_ts, unsigned int arrival) noexcept nogil:
        cdef int32_t transit = <int32_t>(arrival - rtp_ts)
        cdef long long d
        if self.have_transit:
            d = <int32_t>(<unsigned int>transit - <unsigned int>self.transit)  # RFC int math
            if d < 0:
                d = -d
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4)
        self.have_transit = True
        self.transit = transit

    cdef long long expected_c(self) noexcept nogil:
        if self.received == 0:
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    @property
    def extended_max_seq(self):
        return self.cycles + self.max_seq

    @property
    def expected(self):
        return self.expected_c()

    @property
    def cumulative_lost(self):
        return max(LOST_MIN, min(LOST_MAX, self.expected_c() - self.received))

    @property
    def jitter(self):
        return self.jitter_q4 >> 4

    def report_interval(self):
        """A.3: (fraction lost /256 since the last call, cumulative lost, ext. max seq, jitter)."""
        cdef long long expected = self.expected_c()
        cdef long long expected_interval = expected - self.expected_prior
        cdef long long received_interval, lost_interval, fraction
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        return fraction, self.cumulative_lost, self.extended_max_seq & 0xFFFFFFFF, self.jitter
