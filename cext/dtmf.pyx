# cython: language_level=3
"""In-band DTMF detection (Goertzel, ITU-T Q.23/Q.24); twin of kernels/dtmf_py.py.

See the reference twin for the algorithm and thresholds. Floating-point operations are
written in the same order as the reference so both give identical results.
"""

from libc.math cimport cos, M_PI, fabs
from libc.string cimport memset

from cext.g711 cimport ulaw_to_linear, alaw_to_linear

SAMPLE_RATE = 8000
BLOCK = DTMF_BLOCK
WINDOW = DTMF_WINDOW

cdef double ROWS[4]
cdef double COLS[4]
ROWS[:] = [697.0, 770.0, 852.0, 941.0]
COLS[:] = [1209.0, 1336.0, 1477.0, 1633.0]
cdef const char* KEYPAD = b"123A456B789C*0#D"

cdef double MIN_TONE_POWER = 3.1862025e8
cdef double GROUP_DOMINANCE = 2.0
cdef double BLOCK_TWIST_LIMIT = 15.848931924611133
cdef double BLOCK_FRACTION = 0.5
cdef double VERIFY_STEP = 0.005
cdef int VERIFY_SPAN = 8
cdef double MAX_DEVIATION = 0.025
cdef double TWIST_FORWARD = 3.9810717055349722
cdef double TWIST_REVERSE = 10.0
cdef double VERIFY_FRACTION = 0.7
cdef int VERIFY_BLOCKS = 3
cdef int MAX_VERIFY_HIT = 5
cdef int MISSES_TO_END = 2

cdef double ROW_COEFFS[4]
cdef double COL_COEFFS[4]
cdef double COEFFS[8]  # ROW_COEFFS then COL_COEFFS: the 8 filters in one loop per sample
cdef short ULAW_LINEAR[256]  # cext.g711's decoders as tables: no cross-module call per sample
cdef short ALAW_LINEAR[256]
cdef double HANN[DTMF_WINDOW]
cdef double HANN_GAIN


cdef double goertzel_coefficient(double freq) noexcept nogil:
    return 2.0 * cos(2.0 * M_PI * freq / 8000.0)


cdef void _init_tables() noexcept nogil:
    global HANN_GAIN
    cdef int i
    cdef double sum_w = 0.0, sum_w2 = 0.0
    for i in range(4):
        ROW_COEFFS[i] = goertzel_coefficient(ROWS[i])
        COL_COEFFS[i] = goertzel_coefficient(COLS[i])
        COEFFS[i] = ROW_COEFFS[i]
        COEFFS[i + 4] = COL_COEFFS[i]
    for i in range(256):
        ULAW_LINEAR[i] = ulaw_to_linear(<unsigned char>i)
        ALAW_LINEAR[i] = alaw_to_linear(<unsigned char>i)
    for i in range(DTMF_WINDOW):
        HANN[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / (DTMF_WINDOW - 1))
    for i in range(DTMF_WINDOW):
        sum_w += HANN[i]
        sum_w2 += HANN[i] * HANN[i]
    HANN_GAIN = 2.0 * sum_w2 / (sum_w * sum_w)


_init_tables()


cdef double windowed_power(const double* x, double coeff) noexcept nogil:
    cdef double s1 = 0.0, s2 = 0.0, s
    cdef int n
    for n in range(DTMF_WINDOW):
        s = x[n] + coeff * s1 - s2
        s2 = s1
        s1 = s
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


cdef double measure_tone(const double* x, double nominal, double* peak) noexcept nogil:
    """Relative frequency deviation of the tone near ``nominal`` (1.0: no peak in grid)."""
    cdef double powers[17]
    cdef int k, best = 0, i
    cdef double left, mid, right, denom, shift
    for k in range(-VERIFY_SPAN, VERIFY_SPAN + 1):
        powers[k + VERIFY_SPAN] = windowed_power(
            x, goertzel_coefficient(nominal * (1.0 + k * VERIFY_STEP)))
    for i in range(1, 2 * VERIFY_SPAN + 1):
        if powers[i] > powers[best]:
            best = i
    peak[0] = powers[best]
    if best == 0 or best == 2 * VERIFY_SPAN:
        return 1.0
    left = powers[best - 1]
    mid = powers[best]
    right = powers[best + 1]
    denom = left - 2.0 * mid + right
    shift = 0.5 * (left - right) / denom if denom != 0.0 else 0.0
    return fabs((best - VERIFY_SPAN + shift) * VERIFY_STEP)


cdef bint verify_digit(const double* samples, int row, int col) noexcept nogil:
    cdef double x[DTMF_WINDOW]
    cdef double energy = 0.0, row_power, col_power, row_dev, col_dev
    cdef int n
    for n in range(DTMF_WINDOW):
        x[n] = samples[n] * HANN[n]
    for n in range(DTMF_WINDOW):
        energy += x[n] * x[n]
    if energy <= 0.0:
        return False
    row_dev = measure_tone(x, ROWS[row], &row_power)
    col_dev = measure_tone(x, COLS[col], &col_power)
    if row_dev > MAX_DEVIATION or col_dev > MAX_DEVIATION:
        return False
    if col_power > row_power * TWIST_FORWARD or row_power > col_power * TWIST_REVERSE:
        return False
    return (row_power + col_power) * HANN_GAIN >= VERIFY_FRACTION * energy


cdef inline int strongest(const double* powers) noexcept nogil:
    cdef int best = 0, i
    for i in range(1, 4):
        if powers[i] > powers[best]:
            best = i
    return best


cdef void dtmf_reset(dtmf_t* d) noexcept nogil:
    memset(d, 0, sizeof(dtmf_t))
    d.digit = -1


cdef void dtmf_feed_pcm16(dtmf_t* d, const short* samples, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        feed_one(d, <double>samples[i])


cdef void dtmf_feed_ulaw(dtmf_t* d, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    feed_g711(d, data, n, ULAW_LINEAR)


cdef void dtmf_feed_alaw(dtmf_t* d, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    feed_g711(d, data, n, ALAW_LINEAR)


cdef void feed_g711(dtmf_t* d, const unsigned char* data, Py_ssize_t n,
                    const short* table) noexcept nogil:
    """What the relay runs per packet: the samples of one block at a time with the filter
    state in locals (registers), not in ``d`` through a pointer the compiler must assume
    aliased; per sample exactly the operations of ``feed_one``, so the results are identical."""
    cdef double s1[8]
    cdef double s2[8]
    cdef double energy, x, s
    cdef Py_ssize_t take, k
    cdef int i, ring
    while n > 0:
        take = DTMF_BLOCK - d.fill
        if take > n:
            take = n
        for i in range(8):
            s1[i] = d.s1[i]
            s2[i] = d.s2[i]
        energy = d.energy
        ring = d.ring
        for k in range(take):
            x = <double>table[data[k]]
            d.history[ring] = <short>x
            ring += 1
            if ring == DTMF_WINDOW:
                ring = 0
            energy += x * x
            for i in range(8):
                s = x + COEFFS[i] * s1[i] - s2[i]
                s2[i] = s1[i]
                s1[i] = s
        for i in range(8):
            d.s1[i] = s1[i]
            d.s2[i] = s2[i]
        d.energy = energy
        d.ring = ring
        d.fill += <int>take
        d.position += take
        data += take
        n -= take
        if d.fill == DTMF_BLOCK:
            dtmf_block_done(d)


cdef void dtmf_feed_one(dtmf_t* d, double x) noexcept nogil:
    feed_one(d, x)


cdef inline void feed_one(dtmf_t* d, double x) noexcept nogil:
    """One sample through the 8 Goertzel filters (the relay runs this 8,000 times a second
    per caller leg: inlined into the feed loops, one loop over the filters, no modulo). The
    same operations per filter as the reference, so the results are identical."""
    cdef int i
    cdef double s
    d.history[d.ring] = <short>x  # x is a 16-bit sample (every feed_* passes one): exact
    d.ring += 1
    if d.ring == DTMF_WINDOW:
        d.ring = 0
    d.energy += x * x
    for i in range(8):
        s = x + COEFFS[i] * d.s1[i] - d.s2[i]
        d.s2[i] = d.s1[i]
        d.s1[i] = s
    d.fill += 1
    d.position += 1
    if d.fill == DTMF_BLOCK:
        dtmf_block_done(d)


cdef void dtmf_block_done(dtmf_t* d) noexcept nogil:
    cdef int digit = dtmf_block_digit(d)
    cdef int i
    for i in range(8):
        d.s1[i] = 0.0
        d.s2[i] = 0.0
    d.energy = 0.0
    d.fill = 0
    dtmf_track(d, digit)


cdef int dtmf_block_digit(dtmf_t* d) noexcept nogil:
    """The Q.23 digit (row*4+col) this block hits, or -1."""
    cdef double rows[4]
    cdef double cols[4]
    cdef double pr, pc, a, b
    cdef int i, r, c
    for i in range(4):
        a = d.s1[i]
        b = d.s2[i]
        rows[i] = a * a + b * b - ROW_COEFFS[i] * a * b
        a = d.s1[i + 4]
        b = d.s2[i + 4]
        cols[i] = a * a + b * b - COL_COEFFS[i] * a * b
    r = strongest(rows)
    c = strongest(cols)
    pr = rows[r]
    pc = cols[c]
    if pr < MIN_TONE_POWER or pc < MIN_TONE_POWER:
        return -1
    if pc > pr * BLOCK_TWIST_LIMIT or pr > pc * BLOCK_TWIST_LIMIT:
        return -1
    for i in range(4):
        if i != r and rows[i] * GROUP_DOMINANCE > pr:
            return -1
        if i != c and cols[i] * GROUP_DOMINANCE > pc:
            return -1
    if (pr + pc) * 2.0 < BLOCK_FRACTION * d.energy * DTMF_BLOCK:
        return -1
    return r * 4 + c


cdef void dtmf_track(dtmf_t* d, int digit) noexcept nogil:
    cdef double window[DTMF_WINDOW]
    cdef int n
    if digit >= 0 and digit == d.digit:
        d.hits += 1
        d.misses = 0
        d.end = d.position
    elif digit >= 0:
        dtmf_end_run(d)
        d.digit = digit
        d.hits = 1
        d.misses = 0
        d.verified = False
        d.start = d.position - DTMF_BLOCK
        d.end = d.position
    elif d.digit >= 0:
        d.misses += 1
        if d.misses >= MISSES_TO_END:
            dtmf_end_run(d)
        return
    else:
        return
    if not d.verified and VERIFY_BLOCKS <= d.hits <= MAX_VERIFY_HIT:
        for n in range(DTMF_WINDOW):
            window[n] = <double>d.history[(d.ring + n) % DTMF_WINDOW]
        d.verified = verify_digit(window, d.digit // 4, d.digit % 4)


cdef void dtmf_end_run(dtmf_t* d) noexcept nogil:
    """Report the current run if it was verified (the digit ended)."""
    if d.digit >= 0 and d.verified:
        if d.n_events < DTMF_MAX_EVENTS:
            d.events[d.n_events].digit = KEYPAD[d.digit]
            d.events[d.n_events].start = d.start
            d.events[d.n_events].duration = d.end - d.start
            d.n_events += 1
        else:
            d.events_dropped += 1
    d.digit = -1
    d.hits = 0
    d.misses = 0
    d.verified = False


cdef class DtmfDetector:
    """Streaming in-band DTMF detector over 8 kHz 16-bit PCM (see the reference twin).

    The state is a C struct (``st``) so that the packet path can feed it without the GIL.
    """

    def __init__(self):
        dtmf_reset(&self.st)

    @property
    def events_dropped(self):
        return self.st.events_dropped

    def feed_pcm(self, pcm):
        cdef const unsigned char[::1] buf = bytes(pcm)
        cdef Py_ssize_t nbytes = buf.shape[0], i
        cdef short sample
        if nbytes % 2:
            raise ValueError(f"16-bit PCM must have an even length, got {nbytes} bytes")
        for i in range(nbytes // 2):
            sample = <short>(buf[2 * i] | (buf[2 * i + 1] << 8))
            dtmf_feed_one(&self.st, <double>sample)
        return self._drain()

    def feed_ulaw(self, data):
        cdef const unsigned char[::1] buf = bytes(data)
        if buf.shape[0]:
            dtmf_feed_ulaw(&self.st, &buf[0], buf.shape[0])
        return self._drain()

    def feed_alaw(self, data):
        cdef const unsigned char[::1] buf = bytes(data)
        if buf.shape[0]:
            dtmf_feed_alaw(&self.st, &buf[0], buf.shape[0])
        return self._drain()

    def feed_samples(self, samples):
        for sample in samples:
            dtmf_feed_one(&self.st, <double><short>sample)
        return self._drain()

    def flush(self):
        dtmf_end_run(&self.st)
        return self._drain()

    cdef list _drain(self):
        cdef int i
        out = []
        for i in range(self.st.n_events):
            out.append((chr(self.st.events[i].digit), self.st.events[i].start,
                        self.st.events[i].duration))
        self.st.n_events = 0
        return out
