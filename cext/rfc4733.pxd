# C-level interface of cext.rfc4733 (RFC 4733 telephone-events).

cdef enum:
    EVENT_PAYLOAD_SIZE = 4
    NO_EVENT = -1

cdef void pack_event(unsigned char* p, int event, bint end, int volume, int duration) noexcept nogil


cdef class TelephoneEventReceiver:
    cdef public unsigned int start
    cdef public unsigned int duration
    cdef public int volume
    cdef bint active
    cdef int event
    cdef unsigned int segment_ts
    cdef unsigned int first_ts
    cdef unsigned int segment_base
    cdef unsigned int cur_duration
    cdef int cur_volume
    cdef unsigned int reported_ts
    cdef bint have_reported

    cdef int feed_buf(self, unsigned int timestamp, const unsigned char* p, Py_ssize_t n,
                      bint marker) noexcept nogil
    cdef int flush_c(self) noexcept nogil
    cdef bint is_next_segment(self, unsigned int timestamp) noexcept nogil
    cdef void begin(self, int event, unsigned int timestamp) noexcept nogil
    cdef int report(self) noexcept nogil
