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


cdef class StereoTimeline:
    """Caller (channel 0, left) and operator (channel 1, right) on one timeline."""

    def __cinit__(self):
        self.buf = NULL
        self.out = NULL
        self.out_len = 0
        self.out_cap = 0

    def __init__(self, bint record_left=True, bint record_right=True, bint ulaw=False):
        self.enabled[0] = record_left
        self.enabled[1] = record_right
        self.ulaw = ulaw
        self.closed = False
        self.base = 0
        self.end = 0
        self.have_t0 = False
        self.t0 = 0.0
        self.have_ssrc[0] = self.have_ssrc[1] = False
        self.first_ts[0] = self.first_ts[1] = 0
        self.offset[0] = self.offset[1] = 0
        self.late_count[0] = self.late_count[1] = 0
        self.out_failed = False

    def __dealloc__(self):
        free(self.buf)
        free(self.out)

    def late(self, int channel):
        return self.late_count[channel]

    def feed(self, int channel, ssrc, ts, int codec, payload, double now):
        cdef const unsigned char[::1] data = bytes(payload)
        if data.shape[0] == 0:
            return
        self.feed_c(channel, <unsigned int>(ssrc & 0xFFFFFFFF), <unsigned int>(ts & 0xFFFFFFFF),
                    codec, &data[0], data.shape[0], now)
        if self.out_failed:
            raise MemoryError("recording buffer")

    def tick(self, double now):
        if self.closed or not self.have_t0:
            return
        self.commit(round_samples(now - self.t0) - C_WINDOW)

    def close(self):
        if not self.closed:
            self.commit(self.end)
            self.closed = True
            free(self.buf)
            self.buf = NULL

    def take(self):
        cdef bytes out = PyBytes_FromStringAndSize(<char*>self.out, self.out_len)
        self.out_len = 0
        return out

    cdef void feed_c(self, int channel, unsigned int ssrc, unsigned int ts, int codec,
                     const unsigned char* payload, Py_ssize_t n, double now) noexcept nogil:
        cdef long long pos, skip, start
        cdef Py_ssize_t first = 0, i
        cdef short* buf
        if self.closed or not self.enabled[channel] or n == 0:
            return
        if not self.have_t0:
            self.buf = <short*>malloc(C_CAPACITY * 2 * sizeof(short))
            if self.buf == NULL:
                self.out_failed = True
                return
            memset(self.buf, 0, C_CAPACITY * 2 * sizeof(short))
            self.have_t0 = True
            self.t0 = now
        pos = self.position(channel, ssrc, ts, now)
        if pos + n > self.base + C_CAPACITY:
            self.commit(pos + n - C_CAPACITY)
        skip = self.base - pos
        if skip >= n:
            self.late_count[channel] += 1
            return
        if skip > 0:
            first = skip
            pos = self.base
        start = pos - self.base
        buf = self.buf
        if codec == 0:
            for i in range(first, n):
                buf[2 * (start + i - first) + channel] = ulaw_to_linear(payload[i])
        else:
            for i in range(first, n):
                buf[2 * (start + i - first) + channel] = alaw_to_linear(payload[i])
        if pos + n - first > self.end:
            self.end = pos + n - first

    cdef long long position(self, int channel, unsigned int ssrc, unsigned int ts, double now) noexcept nogil:
        cdef long long expected = round_samples(now - self.t0)
        cdef long long rel, pos
        if not self.have_ssrc[channel] or self.ssrc[channel] != ssrc:
            self.have_ssrc[channel] = True
            self.ssrc[channel] = ssrc
            self.first_ts[channel] = ts
            self.offset[channel] = expected
            return expected
        rel = <unsigned int>(ts - self.first_ts[channel])
        if rel >= 2147483648LL:
            rel -= 4294967296LL  # a packet from before the anchor (reordered)
        pos = self.offset[channel] + rel
        if pos > expected and rel < C_SETTLE:
            self.shift(channel, pos - expected)
            self.offset[channel] -= pos - expected
            return expected
        if pos - expected > C_RESYNC or expected - pos > C_RESYNC:
            self.first_ts[channel] = ts
            self.offset[channel] = expected
            return expected
        return pos

    cdef void shift(self, int channel, long long d) noexcept nogil:
        cdef long long i
        if d > C_CAPACITY:
            d = C_CAPACITY
        for i in range(C_CAPACITY - d):
            self.buf[2 * i + channel] = self.buf[2 * (i + d) + channel]
        for i in range(C_CAPACITY - d, C_CAPACITY):
            self.buf[2 * i + channel] = 0

    cdef void commit(self, long long upto) noexcept nogil:
        cdef long long n
        if self.buf == NULL:
            return
        while self.base < upto:
            n = upto - self.base
            if n > C_CAPACITY:
                n = C_CAPACITY
            self.emit(self.buf, n)
            memmove(self.buf, self.buf + 2 * n, (C_CAPACITY - n) * 2 * sizeof(short))
            memset(self.buf + 2 * (C_CAPACITY - n), 0, n * 2 * sizeof(short))
            self.base += n

    cdef void emit(self, const short* frames, Py_ssize_t nframes) noexcept nogil:
        cdef Py_ssize_t need = nframes * 2 * (1 if self.ulaw else 2)
        cdef Py_ssize_t cap, i
        cdef unsigned char* p
        cdef unsigned short v
        if self.out_len + need > self.out_cap:
            cap = max(self.out_cap * 2, self.out_len + need, 65536)
            p = <unsigned char*>realloc(self.out, cap)
            if p == NULL:
                self.out_failed = True
                return
            self.out = p
            self.out_cap = cap
        p = self.out + self.out_len
        if self.ulaw:
            for i in range(2 * nframes):
                p[i] = linear_to_ulaw(frames[i])
        else:
            for i in range(2 * nframes):
                v = <unsigned short>frames[i]
                p[2 * i] = v & 0xFF
                p[2 * i + 1] = v >> 8
        self.out_len += need
