# C-level interface of cext.g711 (ITU-T G.711), for other cext modules to cimport.
# Every function works on raw buffers and creates no Python objects.

cdef unsigned char linear_to_ulaw(int sample) noexcept nogil
cdef unsigned char linear_to_alaw(int sample) noexcept nogil
cdef short ulaw_to_linear(unsigned char code) noexcept nogil
cdef short alaw_to_linear(unsigned char code) noexcept nogil

cdef void ulaw_decode_buf(const unsigned char* src, Py_ssize_t n, short* dst) noexcept nogil
cdef void alaw_decode_buf(const unsigned char* src, Py_ssize_t n, short* dst) noexcept nogil
cdef void ulaw_encode_buf(const short* src, Py_ssize_t n, unsigned char* dst) noexcept nogil
cdef void alaw_encode_buf(const short* src, Py_ssize_t n, unsigned char* dst) noexcept nogil
cdef void ulaw_to_alaw_buf(const unsigned char* src, Py_ssize_t n, unsigned char* dst) noexcept nogil
cdef void alaw_to_ulaw_buf(const unsigned char* src, Py_ssize_t n, unsigned char* dst) noexcept nogil
