# cython: language_level=3
"""RFC 4733 telephone-events; twin of mediasrv/media/kernels/rfc4733_py.py (see its docs)."""

DTMF_DIGITS = "0123456789*#ABCD"
END_RETRANSMISSIONS = 3
MAX_DURATION = 0xFFFF
globals().update(EVENT_PAYLOAD_SIZE=EVENT_PAYLOAD_SIZE, NO_EVENT=NO_EVENT)


class TelephoneEventError(ValueError):
    """A telephone-event payload that is too short."""


cdef class TelephoneEvent:
    cdef readonly int event
    cdef readonly bint end
    cdef readonly int volume
    cdef readonly int duration

    def __repr__(self):
        return (f"TelephoneEvent(event={self.event}, end={self.end}, volume={self.volume}, "
                f"duration={self.duration})")


cdef void pack_event(unsigned char* p, int event, bint end, int volume, int duration) noexcept nogil:
    p[0] = event & 0xFF
    p[1] = (0x80 if end else 0) | (volume & 0x3F)
    p[2] = (duration >> 8) & 0xFF
    p[3] = duration & 0xFF


def parse_telephone_event(payload):
    cdef const unsigned char[::1] buf = bytes(payload)
    cdef TelephoneEvent ev
    if buf.shape[0] < EVENT_PAYLOAD_SIZE:
        raise TelephoneEventError(f"telephone-event payload needs 4 bytes, got {buf.shape[0]}")
    ev = TelephoneEvent.__new__(TelephoneEvent)
    ev.event = buf[0]
    ev.end = (buf[1] & 0x80) != 0
    ev.volume = buf[1] & 0x3F
    ev.duration = (buf[2] << 8) | buf[3]
    return ev


def pack_telephone_event(int event, bint end, int volume, int duration):
    cdef unsigned char out[4]
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= MAX_DURATION:
        raise ValueError(f"event {event}, volume {volume}, duration {duration} out of range")
    pack_event(out, event, end, volume, duration)
    return out[:4]


def event_payloads(int event, int duration, int volume=10, int packet_samples=160):
    """(marker, payload) of every packet a sender emits for one event, in order."""
    if not 0 < duration <= MAX_DURATION or packet_samples <= 0:
        raise ValueError(f"duration {duration} must be 1..65535 samples")
    out = []
    cdef int elapsed = packet_samples
    cdef int i
    while elapsed < duration:
        out.append((not out, pack_telephone_event(event, False, volume, elapsed)))
        elapsed += packet_samples
    final = pack_telephone_event(event, True, volume, duration)
    first = not out
    for i in range(END_RETRANSMISSIONS):
        out.append((first and i == 0, final))
    return out


cdef void te_rx_reset(te_rx_t* rx) noexcept nogil:
    rx.start = 0
    rx.duration = 0
    rx.volume = 0
    rx.active = False
    rx.event = 0
    rx.segment_ts = 0
    rx.first_ts = 0
    rx.segment_base = 0
    rx.cur_duration = 0
    rx.cur_volume = 0
    rx.reported_ts = 0
    rx.have_reported = False


cdef int te_rx_feed(te_rx_t* rx, unsigned int timestamp, const unsigned char* p, Py_ssize_t n,
                    bint marker) noexcept nogil:
    """One telephone-event packet; the event code once per event, else NO_EVENT (see the
    reference twin for the rules: RFC 4733 §2.5.1.3 segments, §2.5.1.4 retransmitted end)."""
    cdef int event, volume, result = NO_EVENT
    cdef unsigned int duration
    cdef bint end
    if n < EVENT_PAYLOAD_SIZE:
        return NO_EVENT
    event = p[0]
    end = (p[1] & 0x80) != 0
    volume = p[1] & 0x3F
    duration = (p[2] << 8) | p[3]
    if rx.have_reported and timestamp == rx.reported_ts:
        return NO_EVENT
    if rx.active and timestamp != rx.segment_ts:
        if event == rx.event and not marker and is_next_segment(rx, timestamp):
            rx.segment_base += rx.cur_duration
            rx.segment_ts = timestamp
            rx.cur_duration = 0
        else:
            result = report(rx)
    if not rx.active:
        begin(rx, event, timestamp)
    if duration > rx.cur_duration:
        rx.cur_duration = duration
    rx.cur_volume = volume
    if end:
        if result != NO_EVENT:
            return result
        return report(rx)
    return result


cdef int te_rx_flush(te_rx_t* rx) noexcept nogil:
    return report(rx) if rx.active else NO_EVENT


cdef bint is_next_segment(te_rx_t* rx, unsigned int timestamp) noexcept nogil:
    cdef unsigned int gap = timestamp - rx.segment_ts
    return 0 < gap <= 0x10000 and rx.cur_duration >= 0xFFFF - 8000


cdef void begin(te_rx_t* rx, int event, unsigned int timestamp) noexcept nogil:
    rx.active = True
    rx.event = event
    rx.segment_ts = timestamp
    rx.first_ts = timestamp
    rx.segment_base = 0
    rx.cur_duration = 0


cdef int report(te_rx_t* rx) noexcept nogil:
    rx.active = False
    rx.have_reported = True
    rx.reported_ts = rx.segment_ts
    rx.start = rx.first_ts
    rx.duration = rx.segment_base + rx.cur_duration
    rx.volume = rx.cur_volume
    return rx.event


cdef class TelephoneEventReceiver:
    """One report per telephone event (see the reference twin for the rules)."""

    def __init__(self):
        te_rx_reset(&self.st)

    @property
    def start(self):
        return self.st.start

    @property
    def duration(self):
        return self.st.duration

    @property
    def volume(self):
        return self.st.volume

    def feed(self, timestamp, payload, bint marker):
        cdef const unsigned char[::1] buf = bytes(payload)
        cdef unsigned int ts = <unsigned int>(timestamp % (1 << 32))
        if buf.shape[0] == 0:
            return NO_EVENT
        return te_rx_feed(&self.st, ts, &buf[0], buf.shape[0], marker)

    def flush(self):
        return te_rx_flush(&self.st)
