# cython: language_level=3
"""ITU-T G.711 µ-law / A-law kernels; twin of mediasrv/media/kernels/g711_py.py.

Encoding follows ITU-T G.191 ulaw_compress / alaw_compress (one's complement fold of negative
samples); decoding yields the G.711 reconstruction values on a 16-bit scale; PCMU<->PCMA use
the direct code conversions of G.711 Tables 3 and 4. PCM is 16-bit signed little-endian.
"""

from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define CEXT_LE16(x) ((short)__builtin_bswap16((unsigned short)(x)))
    #else
    #define CEXT_LE16(x) (x)
    #endif
    """
    short CEXT_LE16(short x) nogil

# G.711 Tables 3 and 4 by magnitude code (1-based), Sun reference with its corrections.
cdef unsigned char U2A[128]
U2A[:] = [
    1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
    9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    25, 27, 29, 31, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96,
    97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112,
    113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128,
]
cdef unsigned char A2U[128]
A2U[:] = [
    1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64,
    65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
]

cdef short ULAW_DEC[256]
cdef short ALAW_DEC[256]
cdef unsigned char ULAW_ENC[65536]
cdef unsigned char ALAW_ENC[65536]
cdef unsigned char ULAW_TO_ALAW_T[256]
cdef unsigned char ALAW_TO_ULAW_T[256]


cdef unsigned char linear_to_ulaw(int sample) noexcept nogil:
    """G.711 Table 2a encoding (G.191 ulaw_compress)."""
    cdef int magnitude = ((~sample if sample < 0 else sample) >> 2) + 33
    cdef int segment = 1
    cdef int rest
    cdef unsigned char code
    if magnitude > 0x1FFF:
        magnitude = 0x1FFF
    rest = magnitude >> 6
    while rest:
        segment += 1
        rest >>= 1
    code = <unsigned char>(((8 - segment) << 4) | (15 - ((magnitude >> segment) & 0x0F)))
    return code | 0x80 if sample >= 0 else code


cdef short ulaw_to_linear(unsigned char code) noexcept nogil:
    """G.711 Table 2a reconstruction value on a 16-bit scale."""
    cdef int inverted = (~code) & 0xFF
    cdef int segment = (inverted >> 4) & 0x07
    cdef int step = inverted & 0x0F
    cdef int magnitude = ((2 * step + 33) << (segment + 2)) - 132
    return <short>(-magnitude if inverted & 0x80 else magnitude)


cdef unsigned char linear_to_alaw(int sample) noexcept nogil:
    """G.711 Table 1a encoding (G.191 alaw_compress)."""
    cdef int magnitude = (~sample if sample < 0 else sample) >> 4
    cdef int exponent
    if magnitude > 15:
        exponent = 1
        while magnitude > 31:
            magnitude >>= 1
            exponent += 1
        magnitude = (magnitude - 16) + (exponent << 4)
    if sample >= 0:
        magnitude |= 0x80
    return <unsigned char>(magnitude ^ 0x55)


cdef short alaw_to_linear(unsigned char code) noexcept nogil:
    """G.711 Table 1a reconstruction value on a 16-bit scale."""
    cdef int folded = code ^ 0x55
    cdef int segment = (folded >> 4) & 0x07
    cdef int step = folded & 0x0F
    cdef int magnitude
    if segment == 0:
        magnitude = (step << 4) + 8
    else:
        magnitude = ((step << 4) + 0x108) << (segment - 1)
    return <short>(magnitude if folded & 0x80 else -magnitude)


cdef unsigned char ulaw_code_to_alaw(unsigned char code) noexcept nogil:
    if code & 0x80:
        return 0xD5 ^ (U2A[0xFF ^ code] - 1)
    return 0x55 ^ (U2A[0x7F ^ code] - 1)


cdef unsigned char alaw_code_to_ulaw(unsigned char code) noexcept nogil:
    if code & 0x80:
        return 0xFF ^ A2U[code ^ 0xD5]
    return 0x7F ^ A2U[code ^ 0x55]


cdef void _build_tables() noexcept nogil:
    cdef int i
    for i in range(256):
        ULAW_DEC[i] = ulaw_to_linear(<unsigned char>i)
        ALAW_DEC[i] = alaw_to_linear(<unsigned char>i)
        ULAW_TO_ALAW_T[i] = ulaw_code_to_alaw(<unsigned char>i)
        ALAW_TO_ULAW_T[i] = alaw_code_to_ulaw(<unsigned char>i)
    for i in range(65536):
        ULAW_ENC[i] = linear_to_ulaw(i - 65536 if i >= 32768 else i)
        ALAW_ENC[i] = linear_to_alaw(i - 65536 if i >= 32768 else i)


_build_tables()


cdef void ulaw_decode_buf(const unsigned char* src, Py_ssize_t n, short* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ULAW_DEC[src[i]]


cdef void alaw_decode_buf(const unsigned char* src, Py_ssize_t n, short* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ALAW_DEC[src[i]]


cdef void ulaw_encode_buf(const short* src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ULAW_ENC[<unsigned short>src[i]]


cdef void alaw_encode_buf(const short* src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ALAW_ENC[<unsigned short>src[i]]


cdef void ulaw_to_alaw_buf(const unsigned char* src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ULAW_TO_ALAW_T[src[i]]


cdef void alaw_to_ulaw_buf(const unsigned char* src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ALAW_TO_ULAW_T[src[i]]


# ---- Python API (bytes in -> bytes out), same names as g711_py ----

cdef bytes _decode(const unsigned char[::1] data, bint alaw):
    cdef Py_ssize_t n = data.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef short* dst = <short*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t i
    if n == 0:
        return out
    if alaw:
        alaw_decode_buf(&data[0], n, dst)
    else:
        ulaw_decode_buf(&data[0], n, dst)
    for i in range(n):
        dst[i] = CEXT_LE16(dst[i])
    return out


cdef bytes _encode(const unsigned char[::1] pcm, bint alaw):
    cdef Py_ssize_t nbytes = pcm.shape[0]
    cdef Py_ssize_t n = nbytes // 2
    cdef Py_ssize_t i
    cdef short sample
    cdef bytes out
    cdef unsigned char* dst
    if nbytes % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {nbytes} bytes")
    out = PyBytes_FromStringAndSize(NULL, n)
    dst = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(n):
        memcpy(&sample, &pcm[2 * i], 2)
        sample = CEXT_LE16(sample)
        dst[i] = ALAW_ENC[<unsigned short>sample] if alaw else ULAW_ENC[<unsigned short>sample]
    return out


cdef bytes _translate(const unsigned char[::1] data, bint to_alaw):
    cdef Py_ssize_t n = data.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    if n == 0:
        return out
    if to_alaw:
        ulaw_to_alaw_buf(&data[0], n, <unsigned char*>PyBytes_AS_STRING(out))
    else:
        alaw_to_ulaw_buf(&data[0], n, <unsigned char*>PyBytes_AS_STRING(out))
    return out


def ulaw_decode(data):
    """µ-law bytes -> 16-bit little-endian PCM."""
    return _decode(bytes(data), False)


def alaw_decode(data):
    """A-law bytes -> 16-bit little-endian PCM."""
    return _decode(bytes(data), True)


def ulaw_encode(pcm):
    """16-bit little-endian PCM -> µ-law bytes."""
    return _encode(bytes(pcm), False)


def alaw_encode(pcm):
    """16-bit little-endian PCM -> A-law bytes."""
    return _encode(bytes(pcm), True)


def ulaw_to_alaw(data):
    """Transcode PCMU payload to PCMA (G.711 Table 3)."""
    return _translate(bytes(data), True)


def alaw_to_ulaw(data):
    """Transcode PCMA payload to PCMU (G.711 Table 4)."""
    return _translate(bytes(data), False)
