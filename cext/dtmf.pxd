# C-level interface of cext.dtmf (in-band DTMF, ITU-T Q.23/Q.24, Goertzel).
# The detector state is a plain struct so that C code (the packet path) can run it without
# the GIL; DtmfDetector is the Python-facing owner of one.

cdef enum:
    DTMF_BLOCK = 102
    DTMF_WINDOW = 306
    DTMF_MAX_EVENTS = 32

cdef struct dtmf_event_t:
    char digit
    long long start
    long long duration

cdef struct dtmf_t:
    double s1[8]
    double s2[8]
    double energy
    int fill
    long long position
    short history[306]  # the last DTMF_WINDOW samples: 16-bit PCM, exact (every feed is int16)
    int ring
    int digit
    int hits
    int misses
    bint verified
    long long start
    long long end
    dtmf_event_t events[32]
    int n_events
    long long events_dropped

cdef void dtmf_reset(dtmf_t* d) noexcept nogil
cdef void dtmf_feed_pcm16(dtmf_t* d, const short* samples, Py_ssize_t n) noexcept nogil
cdef void dtmf_feed_ulaw(dtmf_t* d, const unsigned char* data, Py_ssize_t n) noexcept nogil
cdef void dtmf_feed_alaw(dtmf_t* d, const unsigned char* data, Py_ssize_t n) noexcept nogil
cdef void dtmf_feed_one(dtmf_t* d, double x) noexcept nogil
cdef void dtmf_block_done(dtmf_t* d) noexcept nogil
cdef int dtmf_block_digit(dtmf_t* d) noexcept nogil
cdef void dtmf_track(dtmf_t* d, int digit) noexcept nogil
cdef void dtmf_end_run(dtmf_t* d) noexcept nogil


cdef class DtmfDetector:
    cdef dtmf_t st
    cdef list _drain(self)
