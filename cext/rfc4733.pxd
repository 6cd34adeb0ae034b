# C-level interface of cext.rfc4733 (RFC 4733 telephone-events).
#
# The receiver's state is a plain struct so that cext.relay embeds one per leg;
# TelephoneEventReceiver wraps one, so the parity tests hold exactly what the relay runs.

cdef enum:
    EVENT_PAYLOAD_SIZE = 4
    NO_EVENT = -1

ctypedef struct te_rx_t:
    unsigned int start  # of the last reported event (its first segment's timestamp)
    unsigned int duration  # of the last reported event, all segments
    int volume
    bint active
    int event
    unsigned int segment_ts
    unsigned int first_ts
    unsigned int segment_base
    unsigned int cur_duration
    int cur_volume
    unsigned int reported_ts
    bint have_reported

cdef void pack_event(unsigned char* p, int event, bint end, int volume, int duration) noexcept nogil
cdef void te_rx_reset(te_rx_t* rx) noexcept nogil
cdef int te_rx_feed(te_rx_t* rx, unsigned int timestamp, const unsigned char* p, Py_ssize_t n,
                    bint marker) noexcept nogil
cdef int te_rx_flush(te_rx_t* rx) noexcept nogil


cdef class TelephoneEventReceiver:
    cdef te_rx_t st
