# C-level interface of cext.recbuf (the recording kernel: one call's stereo timeline, the
# recordings that read it, and the file writer thread).
# The state is plain structs so that C code (the packet path, the writer thread) works on it
# without the GIL; StereoTimeline is the Python-facing owner of one timeline.

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass

cdef struct span_t:
    long long frm  # first silent timeline sample of a pause
    long long to  # one past its last (OPEN while paused)

cdef struct output_t:
    long long ident
    int channels
    int mask
    bint ulaw
    long long start
    long long next
    long long stop  # -1 while running
    int state
    span_t* spans
    int n_spans
    int cap_spans
    unsigned char* out  # encoded, not yet handed out
    Py_ssize_t out_len
    Py_ssize_t out_cap
    char* path  # NULL: a buffer output (take())
    # owned by the writer thread
    int fd
    long long written
    double last_header
    int err

cdef struct timeline_t:
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
    output_t** outs
    int n_outs
    int cap_outs
    bint oom
    pthread_mutex_t mutex  # feed from the engine thread, commits from the writer thread

cdef void timeline_init(timeline_t* t) noexcept nogil
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
cdef void timeline_commit(timeline_t* t, long long upto) noexcept nogil


cdef class StereoTimeline:
    cdef timeline_t st
    cdef void lock(self)
    cdef void unlock(self) noexcept
    cdef output_t* get(self, int index) except NULL
