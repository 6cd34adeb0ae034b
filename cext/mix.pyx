# cython: language_level=3
"""Mixing with Q12 gain and saturation; twin of mediasrv/media/kernels/mix_py.py."""

import math

from cext.g711 cimport alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear

UNITY = UNITY_Q12
MAX_GAIN = 16 * UNITY_Q12


def gain_from_db(db):
    """A Q12 gain for ``db`` decibels (0 dB -> 4096)."""
    return round(UNITY * math.pow(10.0, db / 20.0))


cdef short saturate16(int value) noexcept nogil:
    if value < -32768:
        return -32768
    if value > 32767:
        return 32767
    return <short>value


cdef inline int load16(const unsigned char* p) noexcept nogil:
    return <short>(p[0] | (p[1] << 8))


cdef inline void store16(unsigned char* p, short v) noexcept nogil:
    p[0] = (<unsigned short>v) & 0xFF
    p[1] = (<unsigned short>v) >> 8


cdef void mix_into_buf(short* dst, const short* src, Py_ssize_t n, int gain) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = saturate16(dst[i] + ((src[i] * gain) >> 12))


cdef void mix_into_g711_buf(unsigned char* payload, const short* src, Py_ssize_t n, int gain,
                            bint alaw) noexcept nogil:
    cdef Py_ssize_t i
    cdef int v
    for i in range(n):
        if alaw:
            v = alaw_to_linear(payload[i]) + ((src[i] * gain) >> 12)
            payload[i] = linear_to_alaw(saturate16(v))
        else:
            v = ulaw_to_linear(payload[i]) + ((src[i] * gain) >> 12)
            payload[i] = linear_to_ulaw(saturate16(v))


cdef _check_gain(int gain):
    if not 0 <= gain <= MAX_GAIN:
        raise ValueError(f"gain must be 0..{MAX_GAIN} (Q12), got {gain}")


cdef _check(Py_ssize_t nbytes):
    if nbytes % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {nbytes} bytes")


def scale(pcm, int gain):
    """Every sample times ``gain``/4096 (floor), saturated to 16 bits."""
    cdef const unsigned char[::1] data = bytes(pcm)
    cdef Py_ssize_t i, n = data.shape[0] // 2
    _check_gain(gain)
    _check(data.shape[0])
    out = bytearray(data.shape[0])
    cdef unsigned char[::1] o = out
    for i in range(n):
        store16(&o[2 * i], saturate16((load16(&data[2 * i]) * gain) >> 12))
    return bytes(out)


def mix_into(bytearray dst not None, src, int gain=UNITY_Q12):
    """dst[i] = sat(dst[i] + src[i]·gain/4096) over the common length; returns samples mixed."""
    cdef const unsigned char[::1] data = bytes(src)
    cdef unsigned char[::1] d = dst
    cdef Py_ssize_t i, n
    _check_gain(gain)
    _check(d.shape[0])
    _check(data.shape[0])
    n = min(d.shape[0], data.shape[0]) // 2
    for i in range(n):
        store16(&d[2 * i], saturate16(load16(&d[2 * i]) + ((load16(&data[2 * i]) * gain) >> 12)))
    return n


def mix_into_g711(bytearray payload not None, src, int gain=UNITY_Q12, bint alaw=False):
    """Mix 16-bit PCM into a G.711 payload in place; returns samples mixed."""
    cdef const unsigned char[::1] data = bytes(src)
    cdef unsigned char[::1] p = payload
    cdef Py_ssize_t i, n
    cdef int v
    _check_gain(gain)
    _check(data.shape[0])
    n = min(p.shape[0], data.shape[0] // 2)
    for i in range(n):
        v = (alaw_to_linear(p[i]) if alaw else ulaw_to_linear(p[i])) + ((load16(&data[2 * i]) * gain) >> 12)
        p[i] = linear_to_alaw(saturate16(v)) if alaw else linear_to_ulaw(saturate16(v))
    return n
