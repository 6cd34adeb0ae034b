# C-level interface of cext.recbuf (stereo recording timeline).
# The state is a plain struct so that C code (the packet path) can feed it without the GIL;
# StereoTimeline is the Python-facing owner of one.

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass

cdef struct timeline_t:
    bint enabled[2]
    bint ulaw
    bint closed
    long long base
    long long end
    bint have_t0
    double t0
    short* buf
    bint have_ssrc[2]
    unsigned int ssrc[2]
    unsigned int first_ts[2]
    long long offset[2]
    long long late[2]
    unsigned char* out
    Py_ssize_t out_len
    Py_ssize_t out_cap
    bint out_failed
    pthread_mutex_t mutex  # feed may come from the engine thread, tick/take from the loop

cdef void timeline_init(timeline_t* t, bint left, bint right, bint ulaw) noexcept nogil
cdef void timeline_free(timeline_t* t) noexcept nogil
cdef void timeline_feed(timeline_t* t, int channel, unsigned int ssrc, unsigned int ts,
                        int codec, const unsigned char* payload, Py_ssize_t n,
                        double now) noexcept nogil
cdef void timeline_place(timeline_t* t, int channel, unsigned int ssrc, unsigned int ts,
                         int codec, const unsigned char* payload, Py_ssize_t n,
                         double now) noexcept nogil
cdef long long timeline_position(timeline_t* t, int channel, unsigned int ssrc, unsigned int ts,
                                 double now) noexcept nogil
cdef void timeline_shift(timeline_t* t, int channel, long long d) noexcept nogil
cdef void timeline_tick(timeline_t* t, double now) noexcept nogil
cdef void timeline_close(timeline_t* t) noexcept nogil
cdef void timeline_commit(timeline_t* t, long long upto) noexcept nogil
cdef void timeline_emit(timeline_t* t, const short* frames, Py_ssize_t nframes) noexcept nogil


cdef class StereoTimeline:
    cdef timeline_t st
