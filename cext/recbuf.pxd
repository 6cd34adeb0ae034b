# C-level interface of cext.recbuf (stereo recording timeline).

cdef class StereoTimeline:
    cdef bint enabled[2]
    cdef public bint ulaw
    cdef public bint closed
    cdef public long long base
    cdef public long long end
    cdef bint have_t0
    cdef double t0
    cdef short* buf
    cdef bint have_ssrc[2]
    cdef unsigned int ssrc[2]
    cdef unsigned int first_ts[2]
    cdef long long offset[2]
    cdef long long late_count[2]
    cdef unsigned char* out
    cdef Py_ssize_t out_len
    cdef Py_ssize_t out_cap
    cdef bint out_failed

    cdef void feed_c(self, int channel, unsigned int ssrc, unsigned int ts, int codec,
                     const unsigned char* payload, Py_ssize_t n, double now) noexcept nogil
    cdef long long position(self, int channel, unsigned int ssrc, unsigned int ts, double now) noexcept nogil
    cdef void shift(self, int channel, long long d) noexcept nogil
    cdef void commit(self, long long upto) noexcept nogil
    cdef void emit(self, const short* frames, Py_ssize_t nframes) noexcept nogil
