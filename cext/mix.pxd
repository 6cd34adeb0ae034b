# C-level interface of cext.mix (saturating add with Q12 gain).

cdef enum:
    UNITY_Q12 = 4096

cdef short saturate16(int value) noexcept nogil
cdef void mix_into_buf(short* dst, const short* src, Py_ssize_t n, int gain) noexcept nogil
cdef void mix_into_g711_buf(unsigned char* payload, const short* src, Py_ssize_t n, int gain,
                            bint alaw) noexcept nogil
