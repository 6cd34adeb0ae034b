# cython: language_level=3
"""Stereo recording timeline; twin of mediasrv/media/kernels/recbuf_py.py (see its rules).

``feed_c`` is called by the packet path for every recorded packet: it decodes G.711 straight
into a C ring of stereo frames and never touches a Python object.
"""

from libc.math cimport rint
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove, memset, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize

from cext.g711 cimport ulaw_to_linear, alaw_to_linear, linear_to_ulaw

cdef extern from "<pthread.h>" nogil:
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)

RATE = 8000
CHANNELS = 2
WINDOW = 1600
CAPACITY = 6000
RESYNC = 8000
SETTLE = 800
CODEC_PCMU = 0
CODEC_PCMA = 8

cdef enum:
    C_RATE = 8000
    C_WINDOW = 1600
    C_CAPACITY = 6000
    C_RESYNC = 8000
    C_SETTLE = 800


cdef inline long long round_samples(double seconds) noexcept nogil:
    # Python's round() rounds half to even, as rint() does in the default rounding mode.
    return <long long>rint(seconds * C_RATE)


cdef void timeline_init(timeline_t* t, bint left, bint right, bint ulaw) noexcept nogil:
    memset(t, 0, sizeof(timeline_t))
    pthread_mutex_init(&t.mutex, NULL)
    t.enabled[0] = left
    t.enabled[1] = right
    t.ulaw = ulaw


cdef void timeline_free(timeline_t* t) noexcept nogil:
    free(t.buf)
    free(t.out)
    t.buf = NULL
    t.out = NULL
    pthread_mutex_destroy(&t.mutex)


cdef void timeline_feed(timeline_t* t, int channel, unsigned int ssrc, unsigned int ts,
                        int codec, const unsigned char* payload, Py_ssize_t n,
                        double now) noexcept nogil:
    """Place one packet's audio by its RTP timestamp (rules: kernels/recbuf_py.py)."""
    pthread_mutex_lock(&t.mutex)
    timeline_place(t, channel, ssrc, ts, codec, payload, n, now)
    pthread_mutex_unlock(&t.mutex)


cdef void timeline_place(timeline_t* t, int channel, unsigned int ssrc, unsigned int ts,
                         int codec, const unsigned char* payload, Py_ssize_t n,
                         double now) noexcept nogil:
    cdef long long pos, skip, start
    cdef Py_ssize_t first = 0, i
    cdef short* buf
    if t.closed or not t.enabled[channel] or n == 0:
        return
    if not t.have_t0:
        t.buf = <short*>malloc(C_CAPACITY * 2 * sizeof(short))
        if t.buf == NULL:
            t.out_failed = True
            return
        memset(t.buf, 0, C_CAPACITY * 2 * sizeof(short))
        t.have_t0 = True
        t.t0 = now
    pos = timeline_position(t, channel, ssrc, ts, now)
    if pos + n > t.base + C_CAPACITY:
        timeline_commit(t, pos + n - C_CAPACITY)
    skip = t.base - pos
    if skip >= n:
        t.late[channel] += 1
        return
    if skip > 0:
        first = skip
        pos = t.base
    start = pos - t.base
    buf = t.buf
    if codec == 0:
        for i in range(first, n):
            buf[2 * (start + i - first) + channel] = ulaw_to_linear(payload[i])
    else:
        for i in range(first, n):
            buf[2 * (start + i - first) + channel] = alaw_to_linear(payload[i])
    if pos + n - first > t.end:
        t.end = pos + n - first


cdef long long timeline_position(timeline_t* t, int channel, unsigned int ssrc, unsigned int ts,
                                 double now) noexcept nogil:
    cdef long long expected = round_samples(now - t.t0)
    cdef long long rel, pos
    if not t.have_ssrc[channel] or t.ssrc[channel] != ssrc:
        t.have_ssrc[channel] = True
        t.ssrc[channel] = ssrc
        t.first_ts[channel] = ts
        t.offset[channel] = expected
        return expected
    rel = <unsigned int>(ts - t.first_ts[channel])
    if rel >= 2147483648LL:
        rel -= 4294967296LL  # a packet from before the anchor (reordered)
    pos = t.offset[channel] + rel
    if pos > expected and rel < C_SETTLE:
        # While the channel is young, a less delayed packet tells its true start better.
        timeline_shift(t, channel, pos - expected)
        t.offset[channel] -= pos - expected
        return expected
    if pos - expected > C_RESYNC or expected - pos > C_RESYNC:
        # The peer's clock jumped: trust arrival time again.
        t.first_ts[channel] = ts
        t.offset[channel] = expected
        return expected
    return pos


cdef void timeline_shift(timeline_t* t, int channel, long long d) noexcept nogil:
    """Move the channel's uncommitted samples ``d`` samples earlier."""
    cdef long long i
    if d > C_CAPACITY:
        d = C_CAPACITY
    for i in range(C_CAPACITY - d):
        t.buf[2 * i + channel] = t.buf[2 * (i + d) + channel]
    for i in range(C_CAPACITY - d, C_CAPACITY):
        t.buf[2 * i + channel] = 0


cdef void timeline_tick(timeline_t* t, double now) noexcept nogil:
    """Commit what is older than the jitter window."""
    if t.closed or not t.have_t0:
        return
    timeline_commit(t, round_samples(now - t.t0) - C_WINDOW)


cdef void timeline_close(timeline_t* t) noexcept nogil:
    if not t.closed:
        timeline_commit(t, t.end)
        t.closed = True
        free(t.buf)
        t.buf = NULL


cdef void timeline_commit(timeline_t* t, long long upto) noexcept nogil:
    cdef long long n
    if t.buf == NULL:
        return
    while t.base < upto:
        n = upto - t.base
        if n > C_CAPACITY:
            n = C_CAPACITY
        timeline_emit(t, t.buf, n)
        memmove(t.buf, t.buf + 2 * n, (C_CAPACITY - n) * 2 * sizeof(short))
        memset(t.buf + 2 * (C_CAPACITY - n), 0, n * 2 * sizeof(short))
        t.base += n


cdef void timeline_emit(timeline_t* t, const short* frames, Py_ssize_t nframes) noexcept nogil:
    cdef Py_ssize_t need = nframes * 2 * (1 if t.ulaw else 2)
    cdef Py_ssize_t cap, i
    cdef unsigned char* p
    cdef unsigned short v
    if t.out_len + need > t.out_cap:
        cap = max(t.out_cap * 2, t.out_len + need, 65536)
        p = <unsigned char*>realloc(t.out, cap)
        if p == NULL:
            t.out_failed = True
            return
        t.out = p
        t.out_cap = cap
    p = t.out + t.out_len
    if t.ulaw:
        for i in range(2 * nframes):
            p[i] = linear_to_ulaw(frames[i])
    else:
        for i in range(2 * nframes):
            v = <unsigned short>frames[i]
            p[2 * i] = v & 0xFF
            p[2 * i + 1] = v >> 8
    t.out_len += need


cdef class StereoTimeline:
    """Caller (channel 0, left) and operator (channel 1, right) on one timeline.

    The state is a C struct (``st``) so that the packet path can feed it without the GIL.
    Whoever feeds it from another thread must serialise with ``tick``/``take``/``close``
    (the packet path does, with its lock).
    """

    def __cinit__(self):
        timeline_init(&self.st, True, True, False)

    def __init__(self, bint record_left=True, bint record_right=True, bint ulaw=False):
        timeline_free(&self.st)
        timeline_init(&self.st, record_left, record_right, ulaw)  # before any other thread

    def __dealloc__(self):
        timeline_free(&self.st)

    @property
    def ulaw(self):
        return self.st.ulaw

    @property
    def closed(self):
        return self.st.closed

    @property
    def base(self):
        return self.st.base

    @property
    def end(self):
        return self.st.end

    def late(self, int channel):
        return self.st.late[channel]

    def feed(self, int channel, ssrc, ts, int codec, payload, double now):
        cdef const unsigned char[::1] data = bytes(payload)
        if data.shape[0] == 0:
            return
        timeline_feed(&self.st, channel, <unsigned int>(ssrc & 0xFFFFFFFF),
                      <unsigned int>(ts & 0xFFFFFFFF), codec, &data[0], data.shape[0], now)
        if self.st.out_failed:
            raise MemoryError("recording buffer")

    def tick(self, double now):
        with nogil:
            pthread_mutex_lock(&self.st.mutex)
            timeline_tick(&self.st, now)
            pthread_mutex_unlock(&self.st.mutex)

    def close(self):
        with nogil:
            pthread_mutex_lock(&self.st.mutex)
            timeline_close(&self.st)
            pthread_mutex_unlock(&self.st.mutex)

    def take(self):
        cdef bytes out
        with nogil:
            pthread_mutex_lock(&self.st.mutex)
        try:
            out = PyBytes_FromStringAndSize(<char*>self.st.out, self.st.out_len)
            self.st.out_len = 0
        finally:
            pthread_mutex_unlock(&self.st.mutex)
        return out
