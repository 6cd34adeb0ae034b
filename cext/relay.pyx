# cython: language_level=3
"""The Cython RTP packet path: per-datagram work in C, without the GIL.

Two ways to drive it (bench/RESULTS_media.md compares them):

* **callbacks**: ``Relay.on_readable(leg)`` is registered with ``loop.add_reader`` for each
  RTP socket and drains it with ``recvmmsg`` (at most ``BATCH`` datagrams per readiness, so
  one busy leg cannot starve the others);
* **engine thread**: ``Relay.start_thread()`` runs one C loop (epoll + recvmmsg) over every
  socket on its own thread, without the GIL; control calls from the event loop take a lock.

Either way every datagram is handled in C: RFC 3550 §5.1 validation,
symmetric-RTP latching (RFC 4961) locked to the latched source, receiver statistics (RFC 3550 A.1, A.8), RFC 4733 digit
reporting (once per event), and relay to the bridged leg with our own SSRC and continuous
sequence numbers/timestamps, payload-type mapping and PCMU<->PCMA transcoding (G.711 Tables
3/4), in-band DTMF (cext.dtmf) and recording into a stereo timeline (cext.recbuf). No Python
object is created per packet: rare events (a latch, a digit; and, for a recorder that is a
plain Python object, the payload) go into a C queue that the event-loop thread drains and
turns into Python calls.

Semantics mirror mediasrv/media/packet_path_py.py (the pure-Python reference).
"""

from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset, memcmp
from libc.stdint cimport uint16_t, uint32_t
from libc.math cimport ceil, floor
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.bytes cimport PyBytes_FromStringAndSize

import array

from cext.g711 cimport ulaw_to_alaw_buf, alaw_to_ulaw_buf
# The tested kernels (tests/kernels: bit-exact against their pure-Python twins) do the
# per-packet protocol work here, so the parity tests guard the code that ships.
from cext.rtp cimport (rtp_payload_bounds, rtp_get_u32, rtp_write_header, rtp_out_t,
                       rtp_out_init, rtp_out_map, rtp_out_own)
from cext.rtcp cimport rx_stats_t, rx_stats_reset, rx_stats_seq, rx_stats_jitter, rx_stats_expected
from cext.rfc4733 cimport te_rx_t, te_rx_reset, te_rx_feed, NO_EVENT
from cext.dtmf cimport DtmfDetector, dtmf_t, dtmf_feed_ulaw, dtmf_feed_alaw
from cext.recbuf cimport StereoTimeline, timeline_t, timeline_feed
from cext.playout cimport player_t, player_new, player_free, player_next, player_feed, PLAY_FRAME

DTMF_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 events 0-15

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr, socklen_t* addrlen)
    ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr, socklen_t addrlen)
    int MSG_DONTWAIT
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        in6_addr sin6_addr
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t ntohl(uint32_t)

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t:
        int fd
        unsigned int u32
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLL_CTL_ADD
    int EPOLL_CTL_DEL
    int EPOLLIN

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    int usleep(unsigned int usec)
    ssize_t read(int fd, void* buf, size_t n)
    ssize_t write(int fd, const void* buf, size_t n)

cdef extern from *:
    """
    static inline int relay_atomic_load(int* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void relay_atomic_add(int* p, int v) { __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
    """
    int atomic_load "relay_atomic_load" (int* p) noexcept nogil
    void atomic_add "relay_atomic_add" (int* p, int v) noexcept nogil

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "<sys/timerfd.h>" nogil:
    struct itimerspec:
        timespec it_interval
        timespec it_value
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new_value, itimerspec* old_value)
    int TFD_NONBLOCK
    int TFD_CLOEXEC
    int TFD_TIMER_ABSTIME

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)

cdef extern from "<sys/socket.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr* msgs, unsigned int vlen, int flags, void* timeout)

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

BATCH = 64  # datagrams per readiness callback at most

cdef enum:
    MAX_DATAGRAM = 2048
    CLOCK = 8000
    RX_BATCH = 16  # datagrams per recvmmsg
    EV_NONE = 0  # a queued event of a leg closed since (dropped)
    EV_LATCH = 1
    EV_DTMF = 2
    EV_RECORD = 3
    EV_FOREIGN = 4  # the first packet from a foreign source since the leg latched
    EV_PLAY_END = 5  # a play ended by itself (its playlist ended, or a digit barged in)
    QUEUE_CAP = 8192  # rare events (and Python-recorder payloads) waiting for the loop
    DRAIN_CHUNK = 256
    REC_MAX = 480  # largest payload queued for a Python recorder (60 ms of G.711)
    PACE_BINS = 512  # send lateness histogram (Relay.lateness)
    PACE_BIN_US = 50
    PACE_EARLY_BINS = 8  # frames go up to PACE_SLACK (0.2 ms) early
    CODEC_NONE = -1
    CODEC_PCMU = 0
    CODEC_PCMA = 8


cdef struct event_t:
    int kind
    int leg
    sockaddr_storage addr
    char digit
    bint inband
    double start
    double duration
    int channel
    uint32_t ssrc
    uint32_t ts
    int codec
    double now
    int plen
    unsigned char payload[480]
    # EV_PLAY_END
    long long play_id
    int play_reason  # PLAY_COMPLETED | PLAY_BARGED_IN
    int play_index  # the playlist's prompt playing last


cdef struct leg_t:
    bint used
    bint configured
    int fd
    int partner
    # negotiated parameters
    int send_codec
    int send_pt
    int te_pt
    signed char rx_codec[128]
    bint sends
    bint receives
    bint have_remote
    sockaddr_storage remote
    socklen_t remote_len
    bint is_latched
    sockaddr_storage latched
    socklen_t latched_len
    double latched_at  # CLOCK_MONOTONIC of the first latch: the learning window starts
    double learning  # seconds after the first latch in which another source may take over
    bint have_sdp_src  # the SDP address is routable: a packet from it may (re-)latch
    sockaddr_storage sdp_src
    bint recording
    bint has_timeline
    bint inband_on
    dtmf_t* inband_st  # owned by the DtmfDetector kept in Relay.inband
    timeline_t* timeline  # owned by the StereoTimeline kept in Relay.timelines
    int channel
    double last_rx
    # incoming stream: RFC 3550 A.1 / A.3 / A.8 (cext.rtcp) of the current source
    bint have_ssrc_in
    uint32_t ssrc_in
    bint have_first_ts
    uint32_t first_ts
    rx_stats_t rx
    long long lost_before  # loss of the leg's earlier sources
    te_rx_t te  # RFC 4733 report-once state (cext.rfc4733)
    # outgoing stream: our SSRC, each relayed source continuing it (cext.rtp)
    rtp_out_t out
    bint have_out_time
    double last_out_time
    # counters
    long long packets_in
    long long packets_out
    long long bytes_in
    long long bytes_out
    long long malformed
    long long dropped
    long long foreign_dropped  # valid RTP from a source other than the latched one
    bint foreign_reported  # EV_FOREIGN queued since the leg latched (once per latch)
    # ---- playout (prompts played from C, paced by sample count; cext.playout) ----
    player_t* player  # NULL: relaying; else the play whose frames this leg hears
    long long play_id
    bint play_barge  # a digit detected on this leg stops the play
    int play_phase  # its frames are due at this millisecond of every 20 ms (Relay.slot_*)
    int play_next  # the other legs of that phase: a doubly linked list, -1 ends it
    int play_prev
    double play_t0  # CLOCK_MONOTONIC of frame 0: frame k is due at play_t0 + k * 20 ms
    double play_due  # when the next frame (or, past the end, the PromptFinished) is due


cdef inline double monotonic() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


cdef bint same_addr(const sockaddr_storage* a, const sockaddr_storage* b) noexcept nogil:
    cdef const sockaddr_in* a4
    cdef const sockaddr_in* b4
    cdef const sockaddr_in6* a6
    cdef const sockaddr_in6* b6
    if a.ss_family != b.ss_family:
        return False
    if a.ss_family == AF_INET:
        a4 = <const sockaddr_in*>a
        b4 = <const sockaddr_in*>b
        return a4.sin_port == b4.sin_port and a4.sin_addr.s_addr == b4.sin_addr.s_addr
    a6 = <const sockaddr_in6*>a
    b6 = <const sockaddr_in6*>b
    return a6.sin6_port == b6.sin6_port and memcmp(&a6.sin6_addr, &b6.sin6_addr, 16) == 0


cdef object addr_tuple(const sockaddr_storage* a):
    cdef char text[64]
    if a.ss_family == AF_INET:
        inet_ntop(AF_INET, &(<const sockaddr_in*>a).sin_addr, text, 64)
        return (text.decode(), ntohs((<const sockaddr_in*>a).sin_port))
    inet_ntop(AF_INET6, &(<const sockaddr_in6*>a).sin6_addr, text, 64)
    return (text.decode(), ntohs((<const sockaddr_in6*>a).sin6_port))


cdef int fill_addr(sockaddr_storage* out, socklen_t* out_len, str host, int port) except -1:
    cdef bytes h = host.encode()
    memset(out, 0, sizeof(sockaddr_storage))
    if ":" in host:
        (<sockaddr_in6*>out).sin6_family = AF_INET6
        (<sockaddr_in6*>out).sin6_port = htons(port)
        if inet_pton(AF_INET6, h, &(<sockaddr_in6*>out).sin6_addr) != 1:
            raise ValueError(f"not an IPv6 address: {host!r}")
        out_len[0] = sizeof(sockaddr_in6)
    else:
        (<sockaddr_in*>out).sin_family = AF_INET
        (<sockaddr_in*>out).sin_port = htons(port)
        if inet_pton(AF_INET, h, &(<sockaddr_in*>out).sin_addr) != 1:
            raise ValueError(f"not an IPv4 address: {host!r}")
        out_len[0] = sizeof(sockaddr_in)
    return 0


cdef class Relay:
    """All legs of one engine, in a C array indexed by the engine's small leg ids."""

    cdef leg_t* legs
    cdef int capacity
    cdef unsigned char tx_buf[MAX_DATAGRAM]
    cdef unsigned char* rx_scratch  # RX_BATCH datagrams, for on_readable (loop thread)
    cdef unsigned char* thread_scratch  # the same for the engine thread
    cdef event_t* queue
    cdef int q_head
    cdef int q_len
    cdef event_t* drained
    cdef public long long events_dropped
    cdef pthread_mutex_t mutex
    cdef int epfd
    cdef int wake_fd
    cdef int stop_fd
    cdef bint running
    cdef int pace_us
    cdef object thread
    cdef object on_latched
    cdef object on_dtmf
    cdef object on_record
    cdef object on_foreign
    cdef list inband  # per leg: a cext.dtmf.DtmfDetector on legs without telephone-event
    cdef list timelines  # per leg: the call's cext.recbuf.StereoTimeline while recorded
    cdef double clock_offset  # recorder clock (loop.time()) minus CLOCK_MONOTONIC
    cdef public long long callbacks
    # ---- playout (cplay) ----
    # Playing legs by phase (the millisecond of each 20 ms their frames are due at): a play
    # starts on the least loaded phase of the next 20 ms, so the frames of many callers are
    # spread evenly in time and a wake-up only visits the legs that are due.
    cdef int slot_head[20]
    cdef int slot_count[20]
    cdef double slot_due[20]  # earliest play_due in the slot (may be stale: early only)
    cdef int n_playing
    cdef double min_due  # earliest play_due over the playing legs (may be stale: early only)
    cdef int timer_fd  # the engine thread's timerfd, armed for min_due (CLOCK_MONOTONIC)
    cdef double armed  # absolute time the timerfd is armed for, 0 = not armed
    cdef list playlists  # per leg: the PromptFrames its player points into (kept alive)
    cdef object on_play_end
    cdef public long long python_calls  # Python-level calls into the per-packet machinery
    cdef int control_waiting  # control calls waiting for the mutex (atomic)
    cdef public long long frames_played  # prompt frames produced
    cdef long long closed_in  # packets of closed legs (for totals())
    # Each prompt frame's send time minus its grid time (play_t0 + k * 20 ms), as the engine
    # itself saw it: bins of PACE_BIN_US, from -PACE_EARLY_BINS bins early; the last bin
    # holds everything later. A figure of the scheduling that machine load cannot fake.
    cdef long long pace_hist[PACE_BINS]
    cdef long long closed_out

    def __cinit__(self):
        cdef int i
        self.legs = NULL
        self.capacity = 0
        self.rx_scratch = <unsigned char*>malloc(RX_BATCH * MAX_DATAGRAM)
        self.thread_scratch = <unsigned char*>malloc(RX_BATCH * MAX_DATAGRAM)
        self.queue = <event_t*>malloc(QUEUE_CAP * sizeof(event_t))
        self.drained = <event_t*>malloc(DRAIN_CHUNK * sizeof(event_t))
        if not (self.rx_scratch and self.thread_scratch and self.queue and self.drained):
            raise MemoryError()
        self.q_head = 0
        self.q_len = 0
        self.epfd = -1
        self.wake_fd = -1
        self.stop_fd = -1
        self.running = False
        self.n_playing = 0
        for i in range(PHASES):
            self.slot_head[i] = -1
            self.slot_count[i] = 0
            self.slot_due[i] = 0.0
        self.min_due = 0.0
        self.timer_fd = -1
        self.armed = 0.0
        self.control_waiting = 0
        memset(self.pace_hist, 0, sizeof(self.pace_hist))
        pthread_mutex_init(&self.mutex, NULL)

    def __init__(self, on_latched, on_dtmf, on_record, on_foreign=None, on_play_end=None):
        """Callbacks: on_latched(leg, (host, port));
        on_foreign(leg, (host, port)) for the first packet from a source the locked leg drops
        (once per latch; every such packet is counted in stats);
        on_dtmf(leg, digit, start_s, duration_s, inband) once per digit;
        on_record(leg, channel, ssrc, ts, codec, payload, now) for a leg recorded into a
        Python object (see set_recording; set_timeline needs no callback);
        on_play_end(leg, play_id, reason, prompt_index) when a play ends by itself (reason 0:
        its playlist ended, 1: a digit barged in)."""
        self.inband = []
        self.timelines = []
        self.clock_offset = 0.0
        self.on_latched = on_latched
        self.on_dtmf = on_dtmf
        self.on_record = on_record
        self.on_foreign = on_foreign
        self.callbacks = 0
        self.events_dropped = 0
        self.thread = None
        self.playlists = []
        self.on_play_end = on_play_end
        self.python_calls = 0
        self.frames_played = 0
        self.closed_in = 0
        self.closed_out = 0

    def __dealloc__(self):
        cdef int i
        self.running = False
        if self.timer_fd >= 0:
            close(self.timer_fd)
        for i in range(self.capacity):
            if self.legs[i].used:
                player_free(self.legs[i].player)
        if self.epfd >= 0:
            close(self.epfd)
        if self.wake_fd >= 0:
            close(self.wake_fd)
        if self.stop_fd >= 0:
            close(self.stop_fd)
        free(self.legs)
        free(self.rx_scratch)
        free(self.thread_scratch)
        free(self.queue)
        free(self.drained)
        pthread_mutex_destroy(&self.mutex)

    cdef void lock(self):
        atomic_add(&self.control_waiting, 1)  # the engine thread lets us in (see engine_loop)
        with nogil:  # never wait for the engine thread while holding the GIL
            pthread_mutex_lock(&self.mutex)
        atomic_add(&self.control_waiting, -1)

    cdef void unlock(self) noexcept:
        pthread_mutex_unlock(&self.mutex)

    cdef leg_t* get(self, int leg) except NULL:
        if leg < 0 or leg >= self.capacity or not self.legs[leg].used:
            raise KeyError(leg)
        return &self.legs[leg]

    cdef void grow(self, int leg) except *:
        cdef int cap = self.capacity or 64
        cdef leg_t* p
        # Grow by a quarter, not double: the new slots are zeroed (touched), so a doubling
        # left up to one unused leg_t per leg resident (2,000 held callers: 4,096 slots).
        while cap <= leg:
            cap += (cap // 4 + 63) // 64 * 64
        if cap == self.capacity:
            return
        p = <leg_t*>realloc(self.legs, cap * sizeof(leg_t))
        if p == NULL:
            raise MemoryError()
        memset(p + self.capacity, 0, (cap - self.capacity) * sizeof(leg_t))
        self.inband.extend([None] * (cap - self.capacity))
        self.timelines.extend([None] * (cap - self.capacity))
        self.playlists.extend([None] * (cap - self.capacity))
        self.legs = p
        self.capacity = cap

    # ---- control (rare, Python objects are fine here; each holds the lock) ---------------

    def open(self, int leg, int fd, unsigned int ssrc_out, unsigned int seq_out, unsigned int ts_out):
        cdef leg_t* s
        cdef int i
        cdef epoll_event ev
        self.lock()
        try:
            self.grow(leg)
            s = &self.legs[leg]
            memset(s, 0, sizeof(leg_t))
            s.used = True
            s.fd = fd
            s.partner = -1
            s.te_pt = -1
            for i in range(128):
                s.rx_codec[i] = CODEC_NONE
            rtp_out_init(&s.out, ssrc_out, seq_out, ts_out)
            rx_stats_reset(&s.rx)
            te_rx_reset(&s.te)
            self.inband[leg] = None  # a reused leg id starts clean
            self.timelines[leg] = None
            s.play_phase = -1
            self.playlists[leg] = None
            if self.epfd >= 0:
                ev.events = EPOLLIN
                ev.data.u32 = leg
                epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
        finally:
            self.unlock()

    def configure(self, int leg, int send_codec, int send_pt, dict rx_pts, int te_pt,
                  object remote, bint sends, bint receives, double learning=0.0,
                  bint inband=True):
        """rx_pts: {payload type: codec (0 PCMU, 8 PCMA)}; remote: (host, port) or None;
        learning: seconds after the first latch during which another source may re-latch;
        inband: run the Goertzel detector on the leg's audio."""
        cdef leg_t* s
        cdef sockaddr_storage addr
        cdef socklen_t addr_len = 0
        cdef int i
        cdef bint have_remote = remote is not None
        if have_remote:
            fill_addr(&addr, &addr_len, remote[0], remote[1])
        detector = DtmfDetector() if inband else None
        self.lock()
        try:
            s = self.get(leg)
            if s.configured and (have_remote != s.have_remote or
                                 (have_remote and not same_addr(&addr, &s.remote))):
                s.is_latched = False  # a re-INVITE moved the peer: latch again (RFC 4961 §4)
            s.have_remote = have_remote
            if have_remote:
                s.remote = addr
                s.remote_len = addr_len
            s.have_sdp_src = have_remote and routable(&addr)
            if s.have_sdp_src:
                s.sdp_src = addr
            s.learning = learning
            for i in range(128):
                s.rx_codec[i] = CODEC_NONE
            for pt, codec in rx_pts.items():
                if 0 <= pt < 128:
                    s.rx_codec[pt] = codec
            s.send_codec = send_codec
            s.send_pt = send_pt
            s.te_pt = te_pt
            # In-band Goertzel detection where the engine's InbandPolicy says, telephone-event
            # or not: a gateway may send a key both ways; the engine's digit stream
            # (media/digits.py) reports each press once (cost: bench/dtmf_inband.py).
            if not inband:
                self.inband[leg] = None
                s.inband_st = NULL
            elif self.inband[leg] is None:
                self.inband[leg] = detector
                s.inband_st = &(<DtmfDetector>detector).st
            s.inband_on = inband
            s.sends = sends
            s.receives = receives
            s.configured = True
        finally:
            self.unlock()

    def bridge(self, int a, int b):
        cdef leg_t* la
        cdef leg_t* lb
        self.lock()
        try:
            la = self.get(a)
            lb = self.get(b)
            if la.partner >= 0:
                self.legs[la.partner].partner = -1
            if lb.partner >= 0:
                self.legs[lb.partner].partner = -1
            la.partner = b
            lb.partner = a
            la.out.have_source = False  # resync both outgoing streams
            lb.out.have_source = False
        finally:
            self.unlock()

    def unbridge(self, int leg):
        self.lock()
        try:
            self.unbridge_locked(self.get(leg))
        finally:
            self.unlock()

    cdef void forget_events(self, int leg) noexcept:
        """Events still queued for a closed leg are dropped (its id may be reused later)."""
        cdef int i
        for i in range(self.q_len):
            if self.queue[(self.q_head + i) % QUEUE_CAP].leg == leg:
                self.queue[(self.q_head + i) % QUEUE_CAP].kind = EV_NONE

    cdef void unbridge_locked(self, leg_t* s) noexcept:
        if s.partner >= 0:
            self.legs[s.partner].partner = -1
            s.partner = -1

    def set_recording(self, int leg, bint on, int channel):
        """Hand what ``leg`` receives to ``on_record`` (queued, called on the loop thread)."""
        cdef leg_t* s
        self.lock()
        try:
            s = self.get(leg)
            s.recording = on
            s.channel = channel
        finally:
            self.unlock()

    def set_timeline(self, int leg, StereoTimeline timeline, int channel, double clock_offset):
        """Record what ``leg`` receives straight into ``timeline`` (C, no callback per packet);
        None stops. ``clock_offset`` maps CLOCK_MONOTONIC to the timeline's clock. In thread
        mode the timeline's owner must call ``tick``/``take``/``close`` through ``locked``."""
        cdef leg_t* s
        self.lock()
        try:
            s = self.get(leg)
            self.timelines[leg] = timeline
            s.has_timeline = timeline is not None
            s.timeline = &timeline.st if timeline is not None else NULL
            s.channel = channel
            self.clock_offset = clock_offset
        finally:
            self.unlock()

    def locked(self, fn, *args):
        """Call ``fn(*args)`` while the engine thread cannot touch any leg or timeline."""
        self.lock()
        try:
            return fn(*args)
        finally:
            self.unlock()

    # ---- playout: prompts played from C, paced by sample count (issue 9 §2, §3) ---------
    # A play is a cext.playout player_t on the leg; its frame k is due at play_t0 + k * 20 ms.
    # The engine thread sleeps in epoll_wait until a timerfd armed for the earliest due frame
    # (no Python, no asyncio timer per frame); the callback path calls ``pace`` from one loop
    # timer instead. A leg hearing a prompt sends it on its own outgoing stream: the same SSRC,
    # sequence numbers +1, timestamps +160 per frame; the first frame of a play has the marker
    # bit and a timestamp that moved on by the real time elapsed (RFC 3550 §5.1: never back).

    def play(self, int leg, playlist, bint loop, bint mix, bint barge_in, long long play_id):
        """Play ``playlist`` (cext.playout.PromptFrames, shared) to ``leg``, replacing what
        plays there. Returns the CLOCK_MONOTONIC time its first frame is due."""
        cdef list prompts = list(playlist)
        cdef player_t* p = player_new(prompts, loop, mix)  # may raise: before the lock
        cdef leg_t* s
        cdef double t0
        cdef long long base_ms
        cdef int phase, j
        self.lock()
        try:
            if leg < 0 or leg >= self.capacity or not self.legs[leg].used:
                player_free(p)
                raise KeyError(leg)
            s = &self.legs[leg]
            self.stop_play_locked(leg)
            self.playlists[leg] = prompts  # the old player is gone: its prompts may go too
            # The first frame goes at the next whole millisecond of the least loaded phase
            # within 20 ms (so at most 20 ms after this call).
            base_ms = <long long>ceil(monotonic() * 1000.0)
            phase = base_ms % PHASES
            for j in range(1, PHASES):
                if self.slot_count[(base_ms + j) % PHASES] < self.slot_count[phase]:
                    phase = (base_ms + j) % PHASES
            t0 = (base_ms + (phase - base_ms % PHASES + PHASES) % PHASES) / 1000.0
            s.player = p
            s.play_id = play_id
            s.play_barge = barge_in
            s.play_t0 = t0
            s.play_due = t0
            self.link(leg, phase)
            return t0
        finally:
            self.unlock()

    def stop_play(self, int leg, long long play_id=-1):
        """Stop the play on ``leg`` (only if it is ``play_id``, when given): no event; the
        relay resumes. Returns whether a play stopped."""
        cdef leg_t* s
        self.lock()
        try:
            if leg < 0 or leg >= self.capacity or not self.legs[leg].used:
                return False
            s = &self.legs[leg]
            if s.player == NULL or (play_id >= 0 and s.play_id != play_id):
                return False
            self.stop_play_locked(leg)
            return True
        finally:
            self.unlock()

    def playing_id(self, int leg):
        """The id of the play on ``leg``, -1 if none."""
        self.lock()
        try:
            if leg < 0 or leg >= self.capacity or not self.legs[leg].used:
                return -1
            return self.legs[leg].play_id if self.legs[leg].player != NULL else -1
        finally:
            self.unlock()

    def pace(self, double early=0.0):
        """Send every prompt frame due now, or within ``early`` seconds (the resolution of
        the caller's timer: the callback path's one playout timer); returns the
        CLOCK_MONOTONIC time of the next due frame, 0.0 if nothing plays."""
        cdef double nxt
        self.python_calls += 1
        self.lock()
        try:
            nxt = self.run_playout(monotonic() + early) if self.n_playing else 0.0
        finally:
            self.unlock()
        if self.q_len:
            self.drain_events()
        return nxt

    def totals(self):
        """(packets received, packets sent) over every leg, open or closed."""
        cdef long long rx = self.closed_in, tx = self.closed_out
        cdef int i
        self.lock()
        try:
            for i in range(self.capacity):
                if self.legs[i].used:
                    rx += self.legs[i].packets_in
                    tx += self.legs[i].packets_out
            return rx, tx
        finally:
            self.unlock()

    cdef void arm_timer(self, double due) noexcept nogil:
        cdef itimerspec spec
        memset(&spec, 0, sizeof(itimerspec))
        if due > 0:
            spec.it_value.tv_sec = <long>due
            spec.it_value.tv_nsec = <long>((due - <long>due) * 1e9)
            if spec.it_value.tv_sec == 0 and spec.it_value.tv_nsec == 0:
                spec.it_value.tv_nsec = 1  # 0 would disarm; any past time fires at once
        timerfd_settime(self.timer_fd, TFD_TIMER_ABSTIME, &spec, NULL)
        self.armed = due

    cdef void stop_play_locked(self, int leg) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        if s.player == NULL:
            return
        player_free(s.player)
        s.player = NULL
        self.unlink(leg)
        s.out.have_source = False  # the relay resumes continuing our stream (RFC 3550 §5.1)

    cdef void end_play(self, int leg, int reason) noexcept nogil:
        """The play ended by itself: queue EV_PLAY_END, then relay again."""
        cdef leg_t* s = &self.legs[leg]
        cdef event_t* e = self.push(EV_PLAY_END, leg)
        if e != NULL:
            e.play_id = s.play_id
            e.play_reason = reason
            e.play_index = s.player.last_index
        self.stop_play_locked(leg)

    cdef void barge(self, int leg) noexcept nogil:
        """A digit was detected on ``leg``: a play with barge-in stops here, in C."""
        cdef leg_t* s = &self.legs[leg]
        if s.player != NULL and s.play_barge:
            self.end_play(leg, PLAY_BARGED_IN)

    cdef void link(self, int leg, int phase) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        s.play_phase = phase
        s.play_prev = -1
        s.play_next = self.slot_head[phase]
        if s.play_next >= 0:
            self.legs[s.play_next].play_prev = leg
        self.slot_head[phase] = leg
        if self.slot_count[phase] == 0 or s.play_due < self.slot_due[phase]:
            self.slot_due[phase] = s.play_due
        self.slot_count[phase] += 1
        self.n_playing += 1
        if self.n_playing == 1 or s.play_due < self.min_due:
            self.min_due = s.play_due
            if self.timer_fd >= 0:
                self.arm_timer(self.min_due)

    cdef void unlink(self, int leg) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        if s.play_prev >= 0:
            self.legs[s.play_prev].play_next = s.play_next
        else:
            self.slot_head[s.play_phase] = s.play_next
        if s.play_next >= 0:
            self.legs[s.play_next].play_prev = s.play_prev
        self.slot_count[s.play_phase] -= 1
        self.n_playing -= 1
        s.play_phase = s.play_next = s.play_prev = -1

    cdef double run_playout(self, double now) noexcept nogil:
        """Send what is due on the playing legs; sets and returns min_due (0.0: none)."""
        cdef int phase, leg, nxt_leg, j
        cdef double nxt = 0.0, due
        # Oldest phase first: the one due next millisecond was last due 19 ms ago. After a
        # stall (a preempted thread) the frames waiting longest go first, not phase 0's.
        cdef int first = <int>((<long long>(now * 1000.0) + 1) % PHASES)
        for j in range(PHASES):
            phase = (first + j) % PHASES
            if self.slot_head[phase] < 0:
                continue
            if self.slot_due[phase] <= now + PACE_SLACK:
                due = 0.0
                leg = self.slot_head[phase]
                while leg >= 0:
                    nxt_leg = self.legs[leg].play_next  # before the play may end (unlink)
                    self.play_due_frames(leg, now)
                    if self.legs[leg].player != NULL and (due == 0.0 or self.legs[leg].play_due < due):
                        due = self.legs[leg].play_due
                    leg = nxt_leg
                if self.slot_head[phase] < 0:
                    continue
                self.slot_due[phase] = due
            if nxt == 0.0 or self.slot_due[phase] < nxt:
                nxt = self.slot_due[phase]
        self.min_due = nxt
        return nxt

    cdef void play_due_frames(self, int leg, double now) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        cdef player_t* p = s.player
        cdef long long due
        if s.play_due > now + PACE_SLACK:
            return
        due = <long long>((now - s.play_t0) / FRAME_S) + 1  # frames due by now
        if due - p.sent > MAX_CATCH_UP:
            # The thread (or loop) stalled: skip what is hopelessly late rather than burst it.
            s.play_t0 += (due - p.sent - MAX_CATCH_UP) * FRAME_S
        while s.play_due <= now + PACE_SLACK:
            if not player_next(p, s.send_codec, self.tx_buf + 12):
                self.end_play(leg, PLAY_COMPLETED)  # the last frame has played out
                return
            self.frames_played += 1
            self.send_own(s, p.sent == 1, now)
            self.note_lateness(monotonic() - s.play_due)
            s.play_due = s.play_t0 + p.sent * FRAME_S

    cdef inline void note_lateness(self, double late) noexcept nogil:
        cdef long long b = <long long>floor(late * (1e6 / PACE_BIN_US)) + PACE_EARLY_BINS
        if b < 0:
            b = 0
        elif b >= PACE_BINS:
            b = PACE_BINS - 1
        self.pace_hist[b] += 1

    cdef void send_own(self, leg_t* s, bint marker, double now) noexcept nogil:
        """Send the PLAY_FRAME bytes at tx_buf + 12 on the leg's own outgoing stream (the
        cext.rtp kernel: next sequence number, ``step`` samples on, the relay resyncs)."""
        cdef long long step = PLAY_FRAME
        if not can_send(s):
            return
        if marker and s.have_out_time:
            step = <long long>((now - s.last_out_time) * CLOCK + 0.5)
            if step < PLAY_FRAME:
                step = PLAY_FRAME
        rtp_out_own(&s.out, <uint32_t>step)
        s.last_out_time = now
        s.have_out_time = True
        rtp_write_header(self.tx_buf, marker, s.send_pt, s.out.last_seq, s.out.last_ts,
                         s.out.ssrc)
        send_packet(s, self.tx_buf, PLAY_FRAME + 12)

    def last_rx(self, int leg):
        self.lock()
        try:
            return self.get(leg).last_rx
        finally:
            self.unlock()

    def last_rx_many(self, legs):
        """``last_rx`` of each leg id in ``legs`` (0.0 for an unknown one), under one lock:
        the no-RTP check of thousands of legs takes the engine's mutex once, not per leg."""
        cdef list ids = list(legs)
        cdef Py_ssize_t n = len(ids), i
        cdef int leg
        cdef double[::1] view
        out = array.array("d", bytes(8 * n))
        view = out
        self.lock()
        try:
            for i in range(n):
                leg = ids[i]
                if 0 <= leg < self.capacity and self.legs[leg].used:
                    view[i] = self.legs[leg].last_rx
        finally:
            self.unlock()
        return out

    def lateness(self, bint reset=False):
        """The send-lateness histogram of prompt frames: (bin width in seconds, first bin's
        lower edge in seconds, counts); the last bin is open-ended."""
        cdef list counts
        self.lock()
        try:
            counts = [self.pace_hist[i] for i in range(PACE_BINS)]
            if reset:
                memset(self.pace_hist, 0, sizeof(self.pace_hist))
        finally:
            self.unlock()
        return PACE_BIN_US * 1e-6, -PACE_EARLY_BINS * PACE_BIN_US * 1e-6, counts

    def stats(self, int leg):
        """(packets_in, packets_out, bytes_in, bytes_out, lost, jitter_ms, latched addr|None,
        foreign_dropped)."""
        cdef leg_t* s
        cdef long long lost
        self.lock()
        try:
            s = self.get(leg)
            lost = s.lost_before + max(0, rx_stats_expected(&s.rx) - s.rx.received)
            latched = addr_tuple(&s.latched) if s.is_latched else None
            return (s.packets_in, s.packets_out, s.bytes_in, s.bytes_out, lost,
                    s.rx.jitter_q4 / 16.0 * 1000.0 / CLOCK, latched, s.foreign_dropped)
        finally:
            self.unlock()

    def malformed(self, int leg):
        self.lock()
        try:
            return self.get(leg).malformed
        finally:
            self.unlock()

    def dropped(self, int leg):
        self.lock()
        try:
            return self.get(leg).dropped
        finally:
            self.unlock()

    def close(self, int leg):
        cdef leg_t* s
        self.lock()
        try:
            if leg < 0 or leg >= self.capacity or not self.legs[leg].used:
                return
            s = &self.legs[leg]
            if self.epfd >= 0:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, s.fd, NULL)
            self.unbridge_locked(s)
            self.stop_play_locked(leg)
            self.closed_in += s.packets_in
            self.closed_out += s.packets_out
            s.used = False
            self.forget_events(leg)
            s.inband_st = NULL
            s.timeline = NULL
            self.inband[leg] = None
            self.timelines[leg] = None
            self.playlists[leg] = None
        finally:
            self.unlock()

    # ---- driving it from the event loop ---------------------------------------------------

    def on_readable(self, int leg):
        """Drain one RTP socket: the ``loop.add_reader`` callback.

        recvmmsg takes up to RX_BATCH datagrams per system call; a short batch means the
        socket was empty a moment ago, so we return without the extra call that would only
        say EAGAIN (the loop's readiness is level-triggered and reports anything newer).
        """
        cdef int rounds, got
        self.python_calls += 1
        self.lock()
        for rounds in range(BATCH_ROUNDS):
            if leg < 0 or leg >= self.capacity or not self.legs[leg].used:
                break
            got = self.receive(leg, self.rx_scratch)
            if got < RX_BATCH:
                break
        self.unlock()
        if self.q_len:
            self.drain_events()

    def drain_events(self):
        """Turn queued rare events into Python calls (on the event-loop thread)."""
        cdef unsigned long long counter
        cdef int n, i
        self.python_calls += 1
        if self.wake_fd >= 0:
            read(self.wake_fd, &counter, 8)
        while True:
            self.lock()
            n = min(self.q_len, DRAIN_CHUNK)
            for i in range(n):
                self.drained[i] = self.queue[(self.q_head + i) % QUEUE_CAP]
            self.q_head = (self.q_head + n) % QUEUE_CAP
            self.q_len -= n
            self.unlock()
            if n == 0:
                return
            for i in range(n):
                self.deliver(&self.drained[i])

    cdef void deliver(self, event_t* e) except *:
        self.callbacks += 1
        self.python_calls += 1
        if e.kind == EV_LATCH:
            self.on_latched(e.leg, addr_tuple(&e.addr))
        elif e.kind == EV_DTMF:
            self.on_dtmf(e.leg, chr(e.digit), e.start, e.duration, e.inband)
        elif e.kind == EV_FOREIGN:
            if self.on_foreign is not None:
                self.on_foreign(e.leg, addr_tuple(&e.addr))
        elif e.kind == EV_PLAY_END:
            if self.on_play_end is not None:
                self.on_play_end(e.leg, e.play_id, e.play_reason, e.play_index)
        elif e.kind == EV_RECORD:
            self.on_record(e.leg, e.channel, e.ssrc, e.ts, e.codec,
                           PyBytes_FromStringAndSize(<char*>e.payload, e.plen), e.now)

    # ---- driving it from its own thread ---------------------------------------------------

    def start_thread(self, int pace_us=0):
        """Run the engine thread; returns an eventfd to watch with ``loop.add_reader`` and
        ``drain_events``. ``pace_us`` > 0 sleeps after each round of events so that one
        wake-up serves many sockets (fewer wake-ups, at most ``pace_us`` more latency)."""
        import threading

        cdef epoll_event ev
        cdef int leg
        if self.thread is not None:
            return self.wake_fd
        self.lock()
        try:
            self.epfd = epoll_create1(0)
            self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            self.stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            if self.epfd < 0 or self.wake_fd < 0 or self.stop_fd < 0:
                self.close_thread_fds()
                raise OSError("cannot create the engine thread's epoll/eventfds")
            ev.events = EPOLLIN
            ev.data.u32 = STOP_TAG  # stop_thread() wakes the thread at once through this
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.stop_fd, &ev)
            # Prompt pacing: a timerfd armed for the next due frame (sample counts, not sleeps).
            self.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            if self.timer_fd < 0:
                self.close_thread_fds()
                raise OSError("cannot create the engine thread's timerfd")
            ev.events = EPOLLIN
            ev.data.u32 = TIMER_TAG
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.timer_fd, &ev)
            self.armed = 0.0
            if self.n_playing:
                self.arm_timer(self.min_due)
            for leg in range(self.capacity):
                if self.legs[leg].used:
                    ev.events = EPOLLIN
                    ev.data.u32 = leg
                    epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.legs[leg].fd, &ev)
            self.pace_us = pace_us
            self.running = True
        finally:
            self.unlock()
        self.thread = threading.Thread(target=self._thread_main, name="mediasrv-rtp", daemon=True)
        self.thread.start()
        return self.wake_fd

    def stop_thread(self, double timeout=1.0):
        """Stop and join the engine thread; events it queued stay for ``drain_events``."""
        cdef unsigned long long one = 1
        if self.thread is None:
            return
        self.running = False
        write(self.stop_fd, &one, 8)
        self.thread.join(timeout)
        self.thread = None
        self.lock()
        try:
            self.close_thread_fds()
        finally:
            self.unlock()

    cdef void close_thread_fds(self) noexcept:
        if self.epfd >= 0:
            close(self.epfd)
        if self.wake_fd >= 0:
            close(self.wake_fd)
        if self.stop_fd >= 0:
            close(self.stop_fd)
        if self.timer_fd >= 0:
            close(self.timer_fd)
        self.epfd = self.wake_fd = self.stop_fd = self.timer_fd = -1
        self.armed = 0.0

    def _thread_main(self):
        with nogil:
            self.engine_loop()

    cdef void engine_loop(self) noexcept nogil:
        cdef epoll_event events[256]
        cdef int n, i, leg
        cdef unsigned long long one = 1, expirations
        cdef double now
        while self.running:
            n = epoll_wait(self.epfd, events, 256, 50)
            pthread_mutex_lock(&self.mutex)
            for i in range(n):
                leg = events[i].data.u32
                if leg == TIMER_TAG:
                    read(self.timer_fd, &expirations, 8)
                    self.armed = 0.0
                elif leg >= 0 and leg < self.capacity and self.legs[leg].used:
                    self.receive(leg, self.thread_scratch)
            if self.n_playing:
                now = monotonic()
                if self.min_due <= now + PACE_SLACK:
                    self.run_playout(now)
                if self.n_playing and self.min_due != self.armed:
                    self.arm_timer(self.min_due)
            n = self.q_len
            pthread_mutex_unlock(&self.mutex)
            # A mutex is not fair: a busy engine thread (hundreds of prompt frames due every
            # millisecond) would take it back before a waiting control call wakes up, and
            # starve the event loop. Let waiting control calls in first.
            while atomic_load(&self.control_waiting) > 0 and self.running:
                sched_yield()
            if n:
                write(self.wake_fd, &one, 8)
            if self.pace_us > 0:
                usleep(self.pace_us)

    # ---- per datagram: C only, lock held, no GIL needed ------------------------------------

    cdef int receive(self, int leg, unsigned char* bufs) noexcept nogil:
        """One recvmmsg on ``leg``'s socket; returns how many datagrams it handled."""
        cdef mmsghdr msgs[RX_BATCH]
        cdef iovec iovs[RX_BATCH]
        cdef sockaddr_storage addrs[RX_BATCH]
        cdef int got, j
        for j in range(RX_BATCH):
            iovs[j].iov_base = bufs + j * MAX_DATAGRAM
            iovs[j].iov_len = MAX_DATAGRAM
            memset(&msgs[j].msg_hdr, 0, sizeof(msghdr))
            msgs[j].msg_hdr.msg_iov = &iovs[j]
            msgs[j].msg_hdr.msg_iovlen = 1
            msgs[j].msg_hdr.msg_name = &addrs[j]
            msgs[j].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        got = recvmmsg(self.legs[leg].fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL)
        if got <= 0:
            return 0  # EAGAIN: drained; other errors (ICMP) leave nothing to read either
        for j in range(got):
            self.datagram(leg, bufs + j * MAX_DATAGRAM, msgs[j].msg_len, &addrs[j])
        return got

    cdef event_t* push(self, int kind, int leg) noexcept nogil:
        cdef event_t* e
        if self.q_len == QUEUE_CAP:
            self.events_dropped += 1
            return NULL
        e = &self.queue[(self.q_head + self.q_len) % QUEUE_CAP]
        self.q_len += 1
        e.kind = kind
        e.leg = leg
        return e

    cdef void datagram(self, int leg, unsigned char* data, Py_ssize_t n,
                       const sockaddr_storage* src) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        cdef Py_ssize_t plen
        cdef Py_ssize_t hlen = rtp_payload_bounds(data, n, &plen)
        cdef int pt, codec
        cdef bint negotiated
        cdef uint32_t seq, ts, ssrc
        cdef double now
        if hlen < 0:
            s.malformed += 1
            return
        pt = data[1] & 0x7F
        if 72 <= pt <= 76:
            s.malformed += 1  # RTCP multiplexed on the RTP port (RFC 5761 §4)
            return
        seq = (data[2] << 8) | data[3]
        ts = rtp_get_u32(data + 4)
        ssrc = rtp_get_u32(data + 8)
        if not s.configured:
            s.dropped += 1  # nothing negotiated yet: no latching either
            return
        now = monotonic()
        codec = s.rx_codec[pt]
        negotiated = codec != CODEC_NONE or pt == s.te_pt
        if not self.latch(leg, src, ssrc, seq, ts, negotiated, now):
            s.dropped += 1
            return
        s.last_rx = now
        s.packets_in += 1
        s.bytes_in += n
        # RFC 3550 A.1 on every packet of the source; A.8 jitter on audio only (the packets of
        # one RFC 4733 event all carry the event's start timestamp).
        if rx_stats_seq(&s.rx, seq) and codec != CODEC_NONE:
            rx_stats_jitter(&s.rx, ts, <uint32_t>(<long long>(now * CLOCK)))
        if codec != CODEC_NONE:
            self.audio(leg, data, hlen, plen, seq, ts, ssrc, codec, data[1] & 0x80, now)
        elif pt == s.te_pt:
            self.event(leg, data, hlen, plen, seq, ts, ssrc, now)
        else:
            s.dropped += 1

    cdef bint latch(self, int leg, const sockaddr_storage* src, uint32_t ssrc, uint32_t seq,
                    uint32_t ts, bint negotiated, double now) noexcept nogil:
        """Symmetric RTP (RFC 4961): latch once, then lock; False drops the packet.

        As mediasrv/media/packet_path_py.py ``_latch`` (which says why): locked like
        rtpengine's ``strict source``, not its ``media handover``. Re-latching only to the
        routable SDP address (then for good) or within the learning window."""
        cdef leg_t* s = &self.legs[leg]
        cdef bint new_ssrc = not s.have_ssrc_in or ssrc != s.ssrc_in
        cdef event_t* e
        if s.is_latched and same_addr(src, &s.latched):
            if new_ssrc:
                self.new_source(s, ssrc, seq, ts)  # the peer restarted its stream
            return True
        if s.is_latched and not may_relatch(s, src, now):
            s.foreign_dropped += 1
            if not s.foreign_reported:
                s.foreign_reported = True
                e = self.push(EV_FOREIGN, leg)
                if e != NULL:
                    e.addr = src[0]
            return False
        if not negotiated:
            return False  # an unknown payload type never claims the leg
        if not s.is_latched:
            s.latched_at = now
            s.foreign_reported = False
        s.latched = src[0]
        s.is_latched = True
        if new_ssrc:
            self.new_source(s, ssrc, seq, ts)
        e = self.push(EV_LATCH, leg)
        if e != NULL:
            e.addr = src[0]
        return True

    cdef void new_source(self, leg_t* s, uint32_t ssrc, uint32_t seq, uint32_t ts) noexcept nogil:
        if s.have_ssrc_in:
            s.lost_before += max(0, rx_stats_expected(&s.rx) - s.rx.received)
        s.have_ssrc_in = True
        s.ssrc_in = ssrc
        if not s.have_first_ts:
            s.have_first_ts = True
            s.first_ts = ts
        rx_stats_reset(&s.rx)
        te_rx_reset(&s.te)
        if s.partner >= 0:
            self.legs[s.partner].out.have_source = False

    cdef void audio(self, int leg, unsigned char* data, Py_ssize_t hlen, Py_ssize_t plen,
                    uint32_t seq, uint32_t ts, uint32_t ssrc, int codec, int marker,
                    double now) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        cdef leg_t* out
        cdef event_t* e
        if s.inband_on and s.inband_st != NULL:
            self.detect_inband(leg, data + hlen, plen, codec)
        if s.has_timeline and s.timeline != NULL:
            timeline_feed(s.timeline, s.channel, ssrc, ts, codec, data + hlen, plen,
                          now + self.clock_offset)
        elif s.recording and plen <= REC_MAX:
            e = self.push(EV_RECORD, leg)
            if e != NULL:
                e.channel = s.channel
                e.ssrc = ssrc
                e.ts = ts
                e.codec = codec
                e.now = now + self.clock_offset
                e.plen = <int>plen
                memcpy(e.payload, data + hlen, plen)
        if s.partner < 0 or not s.receives:
            return
        out = &self.legs[s.partner]
        if not out.configured:
            return
        if out.player != NULL:  # a prompt plays to ``out``: it replaces the relay, or mixes
            if out.player.mix:
                player_feed(out.player, data + hlen, plen, codec)
            return
        self.relay(out, out.send_pt, marker, seq, ts, ssrc, data + hlen, plen, codec, now)

    cdef void detect_inband(self, int leg, const unsigned char* payload, Py_ssize_t plen,
                            int codec) noexcept nogil:
        """Goertzel detection (ITU-T Q.24) on the leg's audio; a digit is reported at its end."""
        cdef dtmf_t* d = self.legs[leg].inband_st
        cdef event_t* e
        cdef int i
        if codec == CODEC_PCMU:
            dtmf_feed_ulaw(d, payload, plen)
        else:
            dtmf_feed_alaw(d, payload, plen)
        for i in range(d.n_events):
            e = self.push(EV_DTMF, leg)
            if e != NULL:
                e.digit = d.events[i].digit
                e.start = d.events[i].start / <double>CLOCK
                e.duration = d.events[i].duration / <double>CLOCK
                e.inband = True
        if d.n_events:
            self.barge(leg)
        d.n_events = 0

    cdef void event(self, int leg, unsigned char* data, Py_ssize_t hlen, Py_ssize_t plen,
                    uint32_t seq, uint32_t ts, uint32_t ssrc, double now) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        cdef leg_t* out
        cdef int ev
        if plen < 4:
            s.malformed += 1
            return
        # RFC 4733 §2.5.1.4: the end packet comes three times; report each event once.
        ev = te_rx_feed(&s.te, ts, data + hlen, plen, (data[1] & 0x80) != 0)
        if ev != NO_EVENT:
            self.report(leg, ev, s.te.start, s.te.duration)
        if s.partner < 0 or not s.receives:
            return
        out = &self.legs[s.partner]
        if not out.configured or out.te_pt < 0:
            return
        self.relay(out, out.te_pt, data[1] & 0x80, seq, ts, ssrc, data + hlen, plen, -1, now)

    cdef void report(self, int leg, int ev, uint32_t ts, uint32_t duration) noexcept nogil:
        cdef leg_t* s = &self.legs[leg]
        cdef uint32_t first
        cdef event_t* e
        if ev >= 16:
            return  # flash (16) and other non-digit events are relayed, not reported
        first = s.first_ts if s.have_first_ts else ts
        e = self.push(EV_DTMF, leg)
        if e != NULL:
            e.digit = DIGIT_CHARS[ev]
            e.start = <uint32_t>(ts - first) / <double>CLOCK
            e.duration = duration / <double>CLOCK
            e.inband = False
        self.barge(leg)

    cdef void relay(self, leg_t* out, int pt, int marker, uint32_t seq, uint32_t ts,
                    uint32_t ssrc, const unsigned char* payload, Py_ssize_t plen, int codec,
                    double now) noexcept nogil:
        cdef long long elapsed = CLOCK // 50
        cdef unsigned int seq_out, ts_out
        if not can_send(out) or plen + 12 > MAX_DATAGRAM:
            return  # the leg is on hold or inactive: keep receiving, send nothing
        # A new source on this outgoing stream continues our seq/ts (RFC 3550 §5.1), its
        # timestamp advanced by the real time since our last packet (at least one frame).
        if out.have_out_time and (not out.out.have_source or out.out.source_ssrc != ssrc):
            elapsed = max(elapsed, <long long>((now - out.last_out_time) * CLOCK + 0.5))
        if rtp_out_map(&out.out, ssrc, seq, ts, <uint32_t>elapsed, &seq_out, &ts_out):
            marker = 0x80  # a new talkspurt for the receiver
        out.last_out_time = now
        out.have_out_time = True
        rtp_write_header(self.tx_buf, marker != 0, pt, seq_out, ts_out, out.out.ssrc)
        if codec == CODEC_PCMU and out.send_codec == CODEC_PCMA:
            ulaw_to_alaw_buf(payload, plen, self.tx_buf + 12)
        elif codec == CODEC_PCMA and out.send_codec == CODEC_PCMU:
            alaw_to_ulaw_buf(payload, plen, self.tx_buf + 12)
        elif plen:
            memcpy(self.tx_buf + 12, payload, plen)
        send_packet(out, self.tx_buf, plen + 12)


cdef const char* DIGIT_CHARS = b"0123456789*#ABCD"
cdef int STOP_TAG = -1  # epoll tag of the stop eventfd (data.u32 0xFFFFFFFF as int)
cdef int TIMER_TAG = -2  # epoll tag of the playout timerfd
cdef double FRAME_S = PLAY_FRAME / <double>CLOCK  # 20 ms
cdef double PACE_SLACK = 0.0002  # frames due this soon go in the same wake-up
cdef int MAX_CATCH_UP = 5  # frames sent at once after a stall; beyond that playout skips ahead
cdef int PHASES = 20  # milliseconds per frame: the phases a play's frames can be due at
cdef int PLAY_COMPLETED = 0
cdef int PLAY_BARGED_IN = 1
cdef int BATCH_ROUNDS = 4  # on_readable: at most 4 x RX_BATCH = 64 datagrams per readiness


cdef bint may_relatch(leg_t* s, const sockaddr_storage* src, double now) noexcept nogil:
    if s.have_sdp_src and same_addr(&s.latched, &s.sdp_src):
        return False  # latched to the address the peer itself advertised: final
    if s.have_sdp_src and same_addr(src, &s.sdp_src):
        return True
    return now - s.latched_at < s.learning


cdef bint routable(const sockaddr_storage* a) noexcept nogil:
    """Whether a packet can come from this SDP address: not unspecified (hold, c=0.0.0.0),
    multicast or broadcast, and not port 0 (mirrors packet_path_py._routable)."""
    cdef const sockaddr_in* a4
    cdef const sockaddr_in6* a6
    cdef uint32_t ip
    cdef int i
    if a.ss_family == AF_INET:
        a4 = <const sockaddr_in*>a
        ip = ntohl(a4.sin_addr.s_addr)
        return a4.sin_port != 0 and ip != 0 and (ip >> 28) != 14 and ip != 0xFFFFFFFFu
    a6 = <const sockaddr_in6*>a
    if a6.sin6_port == 0 or a6.sin6_addr.s6_addr[0] == 0xFF:
        return False
    for i in range(16):
        if a6.sin6_addr.s6_addr[i] != 0:
            return True
    return False


cdef bint can_send(leg_t* out) noexcept nogil:
    return out.configured and out.sends and (out.is_latched or out.have_remote)


cdef bint send_packet(leg_t* out, const unsigned char* packet, Py_ssize_t n) noexcept nogil:
    cdef const sockaddr_storage* dest
    cdef socklen_t dest_len
    if out.is_latched:
        dest = &out.latched
        dest_len = sizeof(sockaddr_in) if out.latched.ss_family == AF_INET else sizeof(sockaddr_in6)
    elif out.have_remote:
        dest = &out.remote
        dest_len = out.remote_len
    else:
        return False
    if not out.sends:
        return False
    if sendto(out.fd, packet, n, MSG_DONTWAIT, <const sockaddr*>dest, dest_len) < 0:
        out.dropped += 1  # socket buffer full or unreachable: drop, as a router would
        return False
    out.packets_out += 1
    out.bytes_out += n
    return True
