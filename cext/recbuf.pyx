# cython: language_level=3
"""The recording kernel; twin of mediasrv/media/kernels/recbuf_py.py (see its rules).

``timeline_feed`` is called by the packet path for every recorded packet: it decodes G.711
straight into a C ring of stereo frames and never touches a Python object. ``Writer`` runs
one thread of its own that commits every registered timeline, encodes each recording's
frames and writes the files with write()/pwrite(), all in C without the GIL.
"""

from libc.math cimport rint
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove, memset, memcpy, strlen
from libc.errno cimport errno, EINTR, EIO, ENOMEM
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.bytes cimport PyBytes_FromStringAndSize

from cext.g711 cimport ulaw_to_linear, alaw_to_linear, linear_to_ulaw

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_condattr_init(pthread_condattr_t* a)
    int pthread_condattr_setclock(pthread_condattr_t* a, int clock)
    int pthread_condattr_destroy(pthread_condattr_t* a)
    int pthread_cond_init(pthread_cond_t* c, pthread_condattr_t* a)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const timespec* t)
    int pthread_cond_broadcast(pthread_cond_t* c)
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()
    int pthread_setname_np(pthread_t thread, const char* name)

cdef extern from "<fcntl.h>" nogil:
    int open(const char* path, int flags, int mode)
    int O_WRONLY
    int O_CREAT
    int O_TRUNC
    int O_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    ssize_t write(int fd, const void* buf, size_t n)
    ssize_t pwrite(int fd, const void* buf, size_t n, long offset)
    int close(int fd)

cdef extern from "<sys/stat.h>" nogil:
    int mkdir(const char* path, int mode)

cdef extern from "<sys/resource.h>" nogil:
    int getpriority(int which, int who)
    int setpriority(int which, int who, int prio)
    int PRIO_PROCESS

cdef extern from "<sys/syscall.h>" nogil:
    long syscall(long number, ...)
    long SYS_gettid

RATE = 8000
CHANNELS = 2
WINDOW = 1600
CAPACITY = 6000
RESYNC = 8000
SETTLE = 800
CODEC_PCMU = 0
CODEC_PCMA = 8
LEFT = 1
RIGHT = 2
RUNNING = 0
STOPPED = 1
FINISHED = 2
WRITE_MIN = 12000
HEADER_EVERY = 1.0
INTERVAL = 0.25
OPEN = 1 << 62

cdef enum:
    C_RATE = 8000
    C_WINDOW = 1600
    C_CAPACITY = 6000
    C_RESYNC = 8000
    C_SETTLE = 800
    C_LEFT = 1
    C_RIGHT = 2
    C_RUNNING = 0
    C_STOPPED = 1
    C_FINISHED = 2
    C_WRITE_MIN = 12000

cdef long long C_OPEN = 1LL << 62
cdef unsigned short _one = 1
cdef bint LITTLE_ENDIAN = (<unsigned char*>&_one)[0] == 1
cdef double C_HEADER_EVERY = 1.0
cdef int WRITER_NICENESS = 5


cdef short ULAW_PCM[256]  # decoded once: the packet path does a table lookup per sample
cdef short ALAW_PCM[256]
cdef unsigned char PCM_ULAW[65536]  # µ-law files: 16-bit sample (as unsigned) -> code
cdef int _code
for _code in range(256):
    ULAW_PCM[_code] = ulaw_to_linear(_code)
    ALAW_PCM[_code] = alaw_to_linear(_code)
for _code in range(65536):
    PCM_ULAW[_code] = linear_to_ulaw(<short><unsigned short>_code)


cdef inline long long round_samples(double seconds) noexcept nogil:
    # Python's round() rounds half to even, as rint() does in the default rounding mode.
    return <long long>rint(seconds * C_RATE)


cdef inline double monotonic() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


# ---- the timeline ----------------------------------------------------------------------------

cdef void timeline_init(timeline_t* t) noexcept nogil:
    memset(t, 0, sizeof(timeline_t))
    pthread_mutex_init(&t.mutex, NULL)


cdef void output_free(output_t* o) noexcept nogil:
    if o.fd >= 0:
        close(o.fd)  # a writer that never finished it: do not leak the descriptor
    free(o.spans)
    free(o.out)
    free(o.path)
    free(o)


cdef void timeline_free(timeline_t* t) noexcept nogil:
    cdef int i
    for i in range(t.n_outs):
        output_free(t.outs[i])
    free(t.outs)
    free(t.buf)
    t.outs = NULL
    t.n_outs = 0
    t.buf = NULL
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
    cdef const short* table
    if t.closed or n == 0 or channel < 0 or channel > 1:
        return
    if not t.have_t0:
        t.buf = <short*>malloc(C_CAPACITY * 2 * sizeof(short))
        if t.buf == NULL:
            t.oom = True
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
    buf = t.buf + 2 * (start - first) + channel
    if codec == 0:  # G.711 Tables 2a/1a, one lookup a sample
        table = &ULAW_PCM[0]
    else:
        table = &ALAW_PCM[0]
    for i in range(first, n):
        buf[2 * i] = table[payload[i]]
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
    cdef int i
    cdef output_t* o
    if t.closed:
        return
    timeline_commit(t, t.end)
    for i in range(t.n_outs):
        o = t.outs[i]
        if o.state == C_RUNNING:
            output_finish(t, o, o.next if o.next > t.base else t.base)
    t.closed = True
    free(t.buf)
    t.buf = NULL


cdef void timeline_commit(timeline_t* t, long long upto) noexcept nogil:
    cdef long long n
    cdef int i
    if t.buf == NULL:
        return
    while t.base < upto:
        n = upto - t.base
        if n > C_CAPACITY:
            n = C_CAPACITY
        for i in range(t.n_outs):
            output_emit(t, t.outs[i], t.base + n)
        memmove(t.buf, t.buf + 2 * n, (C_CAPACITY - n) * 2 * sizeof(short))
        memset(t.buf + 2 * (C_CAPACITY - n), 0, n * 2 * sizeof(short))
        t.base += n


cdef long long timeline_at(timeline_t* t, double now) noexcept nogil:
    """The timeline sample of time ``now`` (0 before the first packet)."""
    cdef long long p
    if not t.have_t0:
        return 0
    p = round_samples(now - t.t0)
    return p if p > 0 else 0


# ---- outputs -------------------------------------------------------------------------------

cdef inline int output_block(output_t* o) noexcept nogil:
    return o.channels * (1 if o.ulaw else 2)


cdef void output_finish(timeline_t* t, output_t* o, long long stop) noexcept nogil:
    o.stop = stop
    output_emit(t, o, stop)
    o.next = stop
    o.n_spans = 0
    o.state = C_STOPPED if o.path != NULL else C_FINISHED


cdef void output_emit(timeline_t* t, output_t* o, long long upto) noexcept nogil:
    """Encode the output's frames from ``o.next`` up to ``upto`` (still in the ring)."""
    cdef long long hi, lo, cur, a, b
    cdef Py_ssize_t need, cap
    cdef unsigned char* p
    cdef int i, kept
    if o.state != C_RUNNING:
        return
    hi = upto if o.stop < 0 else (upto if upto < o.stop else o.stop)
    lo = o.next if o.next > t.base else t.base
    if hi <= lo:
        return
    need = (hi - lo) * output_block(o)
    if o.out_len + need > o.out_cap:
        # A quarter of headroom, not doubling: the buffer settles just above what two
        # writer passes commit (WRITE_MIN), so a recorded call holds ~20 KB of it.
        cap = (o.out_len + need) * 5 // 4
        p = <unsigned char*>realloc(o.out, cap)
        if p == NULL:
            t.oom = True  # out of memory: drop this stretch of audio, never crash
            o.next = hi
            return
        o.out = p
        o.out_cap = cap
    cur = lo
    for i in range(o.n_spans):
        a = o.spans[i].frm if o.spans[i].frm > cur else cur
        b = o.spans[i].to if o.spans[i].to < hi else hi
        if b > a:
            encode(t, o, cur, a, False)
            encode(t, o, a, b, True)
            cur = b
    encode(t, o, cur, hi, False)
    o.next = hi
    kept = 0
    for i in range(o.n_spans):  # forget pauses written past
        if o.spans[i].to > hi:
            o.spans[kept] = o.spans[i]
            kept += 1
    o.n_spans = kept


cdef void encode(timeline_t* t, output_t* o, long long lo, long long hi, bint silent) noexcept nogil:
    """Append frames [lo, hi) of the ring (zeros if ``silent``) in the output's layout."""
    cdef long long i, n = hi - lo
    cdef const short* f
    cdef unsigned char* p = o.out + o.out_len
    cdef int left, right, v
    cdef bint use_l = (o.mask & C_LEFT) != 0, use_r = (o.mask & C_RIGHT) != 0
    cdef unsigned short u
    if n <= 0:
        return
    if silent or t.buf == NULL:
        f = NULL
    else:
        f = t.buf + 2 * (lo - t.base)
        if LITTLE_ENDIAN and o.channels == 2 and not o.ulaw and o.mask == 3:
            memcpy(p, f, n * 4)  # the common case: the ring already is the file's layout
            o.out_len += n * 4
            return
    for i in range(n):
        left = f[2 * i] if f != NULL and use_l else 0
        right = f[2 * i + 1] if f != NULL and use_r else 0
        if o.channels == 2:
            if o.ulaw:
                p[2 * i] = PCM_ULAW[<unsigned short><short>left]
                p[2 * i + 1] = PCM_ULAW[<unsigned short><short>right]
            else:
                u = <unsigned short><short>left
                p[4 * i] = u & 0xFF
                p[4 * i + 1] = u >> 8
                u = <unsigned short><short>right
                p[4 * i + 2] = u & 0xFF
                p[4 * i + 3] = u >> 8
        else:
            v = left + right
            if v > 32767:
                v = 32767
            elif v < -32768:
                v = -32768
            if o.ulaw:
                p[i] = PCM_ULAW[<unsigned short><short>v]
            else:
                u = <unsigned short><short>v
                p[2 * i] = u & 0xFF
                p[2 * i + 1] = u >> 8
    o.out_len += n * output_block(o)


cdef class StereoTimeline:
    """Caller (channel 0, left) and operator (channel 1, right) on one timeline.

    The state is a C struct (``st``) so that the packet path feeds it without the GIL;
    every method takes its mutex (released GIL while waiting).
    """

    def __cinit__(self):
        timeline_init(&self.st)

    def __dealloc__(self):
        timeline_free(&self.st)

    cdef void lock(self):
        with nogil:
            pthread_mutex_lock(&self.st.mutex)

    cdef void unlock(self) noexcept:
        pthread_mutex_unlock(&self.st.mutex)

    cdef output_t* get(self, int index) except NULL:
        if index < 0 or index >= self.st.n_outs:
            raise IndexError(index)
        return self.st.outs[index]

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
        if self.st.oom:
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

    def position(self, double now):
        self.lock()
        try:
            return timeline_at(&self.st, now)
        finally:
            self.unlock()

    def add_output(self, long long ident, int channels, int mask, bint ulaw, double now,
                   path=None):
        cdef output_t* o
        cdef output_t** grown
        cdef bytes p = None
        cdef long long start
        if channels not in (1, 2) or not 0 < mask <= 3:
            raise ValueError(f"bad output layout: {channels} channels, mask {mask}")
        if path is not None:
            p = bytes(path)
        o = <output_t*>malloc(sizeof(output_t))
        if o == NULL:
            raise MemoryError()
        memset(o, 0, sizeof(output_t))
        o.fd = -1
        o.stop = -1
        o.ident = ident
        o.channels = channels
        o.mask = mask
        o.ulaw = ulaw
        if p is not None:
            o.path = <char*>malloc(len(p) + 1)
            if o.path == NULL:
                free(o)
                raise MemoryError()
            memcpy(o.path, <const char*>p, len(p))
            o.path[len(p)] = 0
        self.lock()
        try:
            if self.st.closed:
                output_free(o)
                raise ValueError("the timeline is closed")
            if self.st.n_outs == self.st.cap_outs:
                grown = <output_t**>realloc(self.st.outs,
                                            (self.st.cap_outs * 2 + 2) * sizeof(output_t*))
                if grown == NULL:
                    output_free(o)
                    raise MemoryError()
                self.st.outs = grown
                self.st.cap_outs = self.st.cap_outs * 2 + 2
            start = timeline_at(&self.st, now)
            o.start = start if start > self.st.base else self.st.base
            o.next = o.start
            self.st.outs[self.st.n_outs] = o
            self.st.n_outs += 1
            return self.st.n_outs - 1
        finally:
            self.unlock()

    def stop_output(self, int index, double now):
        cdef output_t* o
        cdef long long stop
        self.lock()
        try:
            o = self.get(index)
            if o.state == C_RUNNING:
                stop = timeline_at(&self.st, now)
                if stop < o.next:
                    stop = o.next
                if stop > self.st.base + C_CAPACITY:
                    timeline_commit(&self.st, stop - C_CAPACITY)
                output_finish(&self.st, o, stop)
            return o.start, o.stop
        finally:
            self.unlock()

    def pause_output(self, int index, double now):
        cdef output_t* o
        cdef span_t* grown
        cdef long long start
        self.lock()
        try:
            o = self.get(index)
            if o.state != C_RUNNING or (o.n_spans and o.spans[o.n_spans - 1].to == C_OPEN):
                return -1
            if o.n_spans == o.cap_spans:
                grown = <span_t*>realloc(o.spans, (o.cap_spans * 2 + 4) * sizeof(span_t))
                if grown == NULL:
                    raise MemoryError()
                o.spans = grown
                o.cap_spans = o.cap_spans * 2 + 4
            start = timeline_at(&self.st, now)
            if start < o.next:
                start = o.next
            o.spans[o.n_spans].frm = start
            o.spans[o.n_spans].to = C_OPEN
            o.n_spans += 1
            return start
        finally:
            self.unlock()

    def resume_output(self, int index, double now):
        cdef output_t* o
        cdef long long end
        self.lock()
        try:
            o = self.get(index)
            if o.state != C_RUNNING or not o.n_spans or o.spans[o.n_spans - 1].to != C_OPEN:
                return -1
            end = timeline_at(&self.st, now)
            if end < o.spans[o.n_spans - 1].frm:
                end = o.spans[o.n_spans - 1].frm
            o.spans[o.n_spans - 1].to = end
            return end
        finally:
            self.unlock()

    def output_frames(self, int index):
        cdef output_t* o
        self.lock()
        try:
            o = self.get(index)
            return o.start, o.stop
        finally:
            self.unlock()

    def output_state(self, int index):
        cdef output_t* o
        self.lock()
        try:
            o = self.get(index)
            return o.state, o.err
        finally:
            self.unlock()

    def take(self, int index):
        cdef output_t* o
        cdef bytes data
        self.lock()
        try:
            o = self.get(index)
            data = PyBytes_FromStringAndSize(<char*>o.out, o.out_len)
            o.out_len = 0
            return data
        finally:
            self.unlock()


# ---- WAV files -------------------------------------------------------------------------------

cdef inline void put_u16(unsigned char* p, unsigned int v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void put_u32(unsigned char* p, unsigned long long v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef int header_bytes(unsigned char* h, int channels, bint ulaw, long long data) noexcept nogil:
    """The canonical header of recbuf_py.wav_header into ``h`` (58 bytes room); its length."""
    cdef int block = channels * (1 if ulaw else 2)
    cdef int fmt_len = 18 if ulaw else 16
    cdef int extra = 12 if ulaw else 0
    cdef int body = 4 + 8 + fmt_len + extra + 8
    cdef int p
    memcpy(h, b"RIFF", 4)
    put_u32(h + 4, body + data)
    memcpy(h + 8, b"WAVEfmt ", 8)
    put_u32(h + 16, fmt_len)
    put_u16(h + 20, 7 if ulaw else 1)
    put_u16(h + 22, channels)
    put_u32(h + 24, C_RATE)
    put_u32(h + 28, C_RATE * block)
    put_u16(h + 32, block)
    put_u16(h + 34, 8 if ulaw else 16)
    p = 36
    if ulaw:
        put_u16(h + 36, 0)
        memcpy(h + 38, b"fact", 4)
        put_u32(h + 42, 4)
        put_u32(h + 46, data // block)
        p = 50
    memcpy(h + p, b"data", 4)
    put_u32(h + p + 4, data)
    return p + 8


def wav_header(int channels, bint ulaw, long long data_bytes):
    cdef unsigned char h[64]
    cdef int n = header_bytes(h, channels, ulaw, data_bytes)
    return PyBytes_FromStringAndSize(<char*>h, n)


cdef int write_all(int fd, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    """0, or the errno of a failed write."""
    cdef ssize_t k
    while n > 0:
        k = write(fd, data, n)
        if k < 0:
            if errno == EINTR:
                continue
            return errno or EIO
        data += k
        n -= k
    return 0


cdef int open_file(output_t* o) noexcept nogil:
    """Create the file (and its missing directories) with an empty header; 0 or errno."""
    cdef unsigned char h[64]
    cdef Py_ssize_t i, n = strlen(o.path)
    cdef int fd, err
    for i in range(1, n):
        if o.path[i] == c'/':
            o.path[i] = 0
            mkdir(o.path, 0o755)  # EEXIST and the like: open() below says what matters
            o.path[i] = c'/'
    fd = open(o.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if fd < 0:
        return errno or EIO
    err = write_all(fd, h, header_bytes(h, o.channels, o.ulaw, 0))  # never a half header
    if err:
        close(fd)
        return err
    o.fd = fd
    return 0


cdef struct job_t:
    output_t* o
    Py_ssize_t offset  # of its bytes in the writer's scratch buffer
    Py_ssize_t n
    bint complete
    bint header


cdef class Writer:
    """One thread that commits every registered timeline and writes its file outputs, in C
    without the GIL (see recbuf_py.Writer for the contract)."""

    cdef pthread_mutex_t reg  # registry, dead list, failures, counters
    cdef pthread_cond_t cond
    cdef pthread_mutex_t pass_mutex  # one pass at a time (the thread or run_pass)
    cdef timeline_t** tls
    cdef double* offs
    cdef int n
    cdef int cap
    cdef timeline_t** dead
    cdef int n_dead
    cdef int cap_dead
    cdef long long* fail_ident
    cdef int* fail_err
    cdef int n_fail
    cdef int cap_fail
    cdef timeline_t** snap
    cdef double* snap_offs
    cdef bint* snap_done
    cdef int snap_cap
    cdef job_t* jobs
    cdef int jobs_cap
    cdef unsigned char* scratch  # one timeline's pending bytes, written outside its lock
    cdef public Py_ssize_t write_min  # bytes of a recording worth one write()
    cdef public double header_every  # seconds between header rewrites of a file
    cdef Py_ssize_t scratch_cap
    cdef long long started
    cdef long long done
    cdef long long wanted
    cdef bint is_running
    cdef double interval
    cdef dict refs
    cdef object thread

    def __cinit__(self):
        cdef pthread_condattr_t attr
        pthread_mutex_init(&self.reg, NULL)
        pthread_mutex_init(&self.pass_mutex, NULL)
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.cond, &attr)
        pthread_condattr_destroy(&attr)
        self.refs = {}
        self.interval = INTERVAL
        self.write_min = C_WRITE_MIN
        self.header_every = C_HEADER_EVERY

    def __dealloc__(self):
        free(self.tls)
        free(self.offs)
        free(self.dead)
        free(self.fail_ident)
        free(self.fail_err)
        free(self.snap)
        free(self.snap_offs)
        free(self.snap_done)
        free(self.jobs)
        free(self.scratch)
        pthread_cond_destroy(&self.cond)
        pthread_mutex_destroy(&self.reg)
        pthread_mutex_destroy(&self.pass_mutex)

    cdef void lock(self):
        with nogil:
            pthread_mutex_lock(&self.reg)

    cdef void unlock(self) noexcept:
        pthread_mutex_unlock(&self.reg)

    def register(self, StereoTimeline timeline, double clock_offset=0.0):
        cdef timeline_t** tls
        cdef double* offs
        self.refs[<size_t>&timeline.st] = timeline  # alive until reaped
        self.lock()
        try:
            if self.n == self.cap:
                tls = <timeline_t**>realloc(self.tls, (self.cap * 2 + 16) * sizeof(timeline_t*))
                if tls == NULL:
                    raise MemoryError()
                self.tls = tls
                offs = <double*>realloc(self.offs, (self.cap * 2 + 16) * sizeof(double))
                if offs == NULL:
                    raise MemoryError()
                self.offs = offs
                self.cap = self.cap * 2 + 16
            self.tls[self.n] = &timeline.st
            self.offs[self.n] = clock_offset
            self.n += 1
        finally:
            self.unlock()

    @property
    def running(self):
        return self.is_running

    def start(self, double interval=INTERVAL):
        import threading

        if self.thread is not None:
            return
        self.interval = interval
        self.is_running = True
        self.thread = threading.Thread(target=self._main, name="mediasrv-rec", daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread is None:
            return
        self.lock()
        self.is_running = False
        pthread_cond_broadcast(&self.cond)
        self.unlock()
        self.thread.join()
        self.thread = None
        self.run_pass()

    def _main(self):
        with nogil:
            self.thread_loop()

    cdef void thread_loop(self) noexcept nogil:
        cdef timespec deadline
        cdef double t
        cdef int tid = <int>syscall(SYS_gettid)
        pthread_setname_np(pthread_self(), b"mediasrv-rec")  # for top -H and the bench
        # Files can wait (the ring holds 0.75 s): on a shared core the engine thread's
        # packets come first, so this thread runs a little nicer than the process.
        errno = 0
        t = getpriority(PRIO_PROCESS, tid)
        if errno == 0:
            setpriority(PRIO_PROCESS, tid, <int>t + WRITER_NICENESS)
        while True:
            pthread_mutex_lock(&self.reg)
            if self.is_running and self.wanted <= self.started:
                t = monotonic() + self.interval
                deadline.tv_sec = <long>t
                deadline.tv_nsec = <long>((t - <long>t) * 1e9)
                pthread_cond_timedwait(&self.cond, &self.reg, &deadline)
            if not self.is_running:
                pthread_mutex_unlock(&self.reg)
                return
            pthread_mutex_unlock(&self.reg)
            self.one_pass(monotonic())

    def sync(self):
        cdef long long target
        cdef timespec deadline
        cdef double t
        cdef bint passed = False
        with nogil:
            pthread_mutex_lock(&self.reg)
            if self.is_running:
                target = self.started + 1
                if self.wanted < target:
                    self.wanted = target
                pthread_cond_broadcast(&self.cond)
                while self.done < target and self.is_running:
                    t = monotonic() + 0.5
                    deadline.tv_sec = <long>t
                    deadline.tv_nsec = <long>((t - <long>t) * 1e9)
                    pthread_cond_timedwait(&self.cond, &self.reg, &deadline)
                passed = self.done >= target
            pthread_mutex_unlock(&self.reg)
        if not passed:
            self.run_pass()

    def run_pass(self, now=None):
        cdef double t = monotonic() if now is None else now
        with nogil:
            self.one_pass(t)

    cdef void one_pass(self, double now) noexcept nogil:
        cdef int i, k, ns, nj
        pthread_mutex_lock(&self.pass_mutex)
        pthread_mutex_lock(&self.reg)
        self.started += 1
        if self.n > self.snap_cap:
            free(self.snap)
            free(self.snap_offs)
            free(self.snap_done)
            self.snap_cap = self.n
            self.snap = <timeline_t**>malloc(self.snap_cap * sizeof(timeline_t*))
            self.snap_offs = <double*>malloc(self.snap_cap * sizeof(double))
            self.snap_done = <bint*>malloc(self.snap_cap * sizeof(bint))
            if self.snap == NULL or self.snap_offs == NULL or self.snap_done == NULL:
                self.snap_cap = 0  # out of memory: skip this pass, try the next
        ns = self.n if self.n <= self.snap_cap else 0
        if ns:
            memcpy(self.snap, self.tls, ns * sizeof(timeline_t*))
            memcpy(self.snap_offs, self.offs, ns * sizeof(double))
        pthread_mutex_unlock(&self.reg)
        for i in range(ns):
            self.snap_done[i] = self.serve(self.snap[i], now + self.snap_offs[i], now)
        pthread_mutex_lock(&self.reg)
        for i in range(ns):
            if self.snap_done[i]:
                self.retire(self.snap[i])
        self.done += 1
        pthread_cond_broadcast(&self.cond)
        pthread_mutex_unlock(&self.reg)
        pthread_mutex_unlock(&self.pass_mutex)

    cdef void retire(self, timeline_t* t) noexcept nogil:
        """Registry lock held: move ``t`` to the dead list (reap() lets Python drop it)."""
        cdef int i
        cdef timeline_t** grown
        for i in range(self.n):
            if self.tls[i] == t:
                self.tls[i] = self.tls[self.n - 1]
                self.offs[i] = self.offs[self.n - 1]
                self.n -= 1
                break
        if self.n_dead == self.cap_dead:
            grown = <timeline_t**>realloc(self.dead, (self.cap_dead * 2 + 16) * sizeof(timeline_t*))
            if grown == NULL:
                return  # stays referenced by Python: a leak, never a use after free
            self.dead = grown
            self.cap_dead = self.cap_dead * 2 + 16
        self.dead[self.n_dead] = t
        self.n_dead += 1

    cdef bint serve(self, timeline_t* t, double now, double clock) noexcept nogil:
        """Commit one timeline and write what its files need; True once it is all done."""
        cdef int i, nj = 0
        cdef output_t* o
        cdef job_t* jobs
        cdef bint complete, header, all_done
        cdef unsigned char* grown
        cdef Py_ssize_t used = 0
        pthread_mutex_lock(&t.mutex)
        timeline_tick(t, now)
        if t.n_outs > self.jobs_cap:
            jobs = <job_t*>realloc(self.jobs, t.n_outs * sizeof(job_t))
            if jobs == NULL:
                pthread_mutex_unlock(&t.mutex)
                return False
            self.jobs = jobs
            self.jobs_cap = t.n_outs
        for i in range(t.n_outs):
            o = t.outs[i]
            if o.path == NULL or o.state == C_FINISHED:
                continue
            complete = o.state == C_STOPPED
            header = clock - o.last_header >= self.header_every
            if complete or header or o.out_len >= self.write_min or o.fd < 0:
                # Copy out under the lock (a memcpy), write after it: the engine thread
                # never waits for the disk, and a call keeps one buffer, not two.
                if used + o.out_len > self.scratch_cap:
                    grown = <unsigned char*>realloc(self.scratch, (used + o.out_len) * 5 // 4)
                    if grown == NULL:
                        continue  # out of memory: try again next pass
                    self.scratch = grown
                    self.scratch_cap = (used + o.out_len) * 5 // 4
                if o.out_len:
                    memcpy(self.scratch + used, o.out, o.out_len)
                self.jobs[nj].o = o
                self.jobs[nj].offset = used
                self.jobs[nj].n = o.out_len
                self.jobs[nj].complete = complete
                self.jobs[nj].header = header
                used += o.out_len
                o.out_len = 0
                nj += 1
        pthread_mutex_unlock(&t.mutex)
        for i in range(nj):
            self.io(&self.jobs[i], clock)
        pthread_mutex_lock(&t.mutex)
        for i in range(nj):
            if self.jobs[i].complete:
                self.jobs[i].o.state = C_FINISHED
        all_done = t.closed
        for i in range(t.n_outs):
            if t.outs[i].state != C_FINISHED:
                all_done = False
        pthread_mutex_unlock(&t.mutex)
        return all_done

    cdef void io(self, job_t* job, double now) noexcept nogil:
        cdef output_t* o = job.o
        cdef unsigned char h[64]
        cdef int err = 0, n
        if o.err == 0:
            if o.fd < 0:
                err = open_file(o)
                o.last_header = now
            if err == 0 and job.n:
                err = write_all(o.fd, self.scratch + job.offset, job.n)
                if err == 0:
                    o.written += job.n
            if err == 0 and (job.header or job.complete):
                # Rewritten in place after the data it describes (never ahead of it).
                n = header_bytes(h, o.channels, o.ulaw, o.written)
                if pwrite(o.fd, h, n, 0) != n:
                    err = errno or EIO
                o.last_header = now
            if err:
                o.err = err  # disk full, permissions, ...: the call goes on without it
                self.fail(o.ident, err)
        if job.complete and o.fd >= 0:
            close(o.fd)
            o.fd = -1

    cdef void fail(self, long long ident, int err) noexcept nogil:
        cdef long long* idents
        cdef int* errs
        pthread_mutex_lock(&self.reg)
        if self.n_fail == self.cap_fail:
            idents = <long long*>realloc(self.fail_ident, (self.cap_fail * 2 + 8) * sizeof(long long))
            if idents != NULL:
                self.fail_ident = idents
            errs = <int*>realloc(self.fail_err, (self.cap_fail * 2 + 8) * sizeof(int))
            if errs != NULL:
                self.fail_err = errs
            if idents != NULL and errs != NULL:
                self.cap_fail = self.cap_fail * 2 + 8
        if self.n_fail < self.cap_fail:
            self.fail_ident[self.n_fail] = ident
            self.fail_err[self.n_fail] = err
            self.n_fail += 1
        pthread_mutex_unlock(&self.reg)

    def reap(self):
        cdef list gone = []
        cdef int i
        self.lock()
        try:
            for i in range(self.n_dead):
                gone.append(<size_t>self.dead[i])
            self.n_dead = 0
        finally:
            self.unlock()
        for key in gone:
            self.refs.pop(key, None)
        return len(gone)

    def failures(self):
        cdef list out = []
        cdef int i
        self.lock()
        try:
            for i in range(self.n_fail):
                out.append((self.fail_ident[i], self.fail_err[i]))
            self.n_fail = 0
        finally:
            self.unlock()
        return out

    def registered(self):
        self.lock()
        try:
            return self.n
        finally:
            self.unlock()
