# C-level interface of cext.dtmf (in-band DTMF, ITU-T Q.23/Q.24, Goertzel).

cdef enum:
    DTMF_BLOCK = 102
    DTMF_WINDOW = 306
    DTMF_MAX_EVENTS = 32

cdef struct dtmf_event_t:
    char digit
    long long start
    long long duration


cdef class DtmfDetector:
    cdef double s1[8]
    cdef double s2[8]
    cdef double energy
    cdef int fill
    cdef long long position
    cdef double history[306]
    cdef int ring
    cdef int digit
    cdef int hits
    cdef int misses
    cdef bint verified
    cdef long long start
    cdef long long end
    cdef dtmf_event_t events[32]
    cdef int n_events
    cdef public long long events_dropped

    cdef list _drain(self)
    cdef void feed_buf(self, const short* samples, Py_ssize_t n) noexcept nogil
    cdef void feed_ulaw_buf(self, const unsigned char* data, Py_ssize_t n) noexcept nogil
    cdef void feed_alaw_buf(self, const unsigned char* data, Py_ssize_t n) noexcept nogil
    cdef void feed_one(self, double x) noexcept nogil
    cdef void block_done(self) noexcept nogil
    cdef int block_digit(self) noexcept nogil
    cdef void track(self, int digit) noexcept nogil
    cdef void end_run(self) noexcept nogil
