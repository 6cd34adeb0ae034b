# cython: language_level=3
"""Prompt playout and whisper mixing in C; twin of mediasrv/media/kernels/playout_py.py.

``PromptFrames``: one prompt prepared once (PCM, µ-law, A-law) in C buffers that every leg
playing it shares (the Python object's reference count keeps them alive). ``player_t``: one
play on one leg, walked sample by sample so a playlist is gap-free; with ``mix`` it adds the
bridged partner's audio (a FIFO fed by the relay) to the prompt with saturation, then
encodes (cext.mix / cext.g711). ``Player`` wraps a ``player_t`` for the parity tests; the
engine (cext.relay) drives the same C functions.
"""

from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memmove, memset

from cext.g711 cimport (alaw_decode_buf, alaw_encode_buf, ulaw_decode_buf, ulaw_encode_buf,
                        linear_to_alaw, linear_to_ulaw)
from cext.mix cimport mix_into_buf, UNITY_Q12

FRAME = PLAY_FRAME
MIX_CAP = PLAY_MIX_CAP
MIX_PRIME = PLAY_MIX_PRIME
PCMU = 0
PCMA = 8


cdef class PromptFrames:
    """One prompt, 8 kHz 16-bit little-endian PCM, prepared for every codec once."""

    def __cinit__(self, pcm):
        cdef const unsigned char[::1] data = bytes(pcm)
        cdef Py_ssize_t n = data.shape[0]
        cdef Py_ssize_t i
        self.pcm = NULL
        self.ulaw = NULL
        self.alaw = NULL
        if n % 2:
            raise ValueError(f"16-bit PCM must have an even length, got {n} bytes")
        if n == 0:
            raise ValueError("a prompt needs at least one sample")
        self.length = n // 2
        self.pcm = <short*>malloc(n)
        self.ulaw = <unsigned char*>malloc(self.length)
        self.alaw = <unsigned char*>malloc(self.length)
        if self.pcm == NULL or self.ulaw == NULL or self.alaw == NULL:
            raise MemoryError()
        for i in range(self.length):
            self.pcm[i] = <short>(data[2 * i] | (data[2 * i + 1] << 8))
        ulaw_encode_buf(self.pcm, self.length, self.ulaw)
        alaw_encode_buf(self.pcm, self.length, self.alaw)

    def __dealloc__(self):
        free(self.pcm)
        free(self.ulaw)
        free(self.alaw)

    @property
    def ulaw_bytes(self):
        return (<char*>self.ulaw)[:self.length]

    @property
    def alaw_bytes(self):
        return (<char*>self.alaw)[:self.length]


cdef player_t* player_new(list playlist, bint loop, bint mix) except NULL:
    cdef int n = len(playlist)
    cdef int i
    cdef PromptFrames f
    cdef player_t* p
    if n == 0:
        raise ValueError("a playlist needs at least one prompt")
    for item in playlist:
        if not isinstance(item, PromptFrames):
            raise TypeError(f"a playlist holds cext.playout.PromptFrames, not {type(item)!r}")
    p = <player_t*>calloc(1, sizeof(player_t))
    if p == NULL:
        raise MemoryError()
    p.pcm = <const short**>malloc(n * sizeof(short*))
    p.ulaw = <const unsigned char**>malloc(n * sizeof(unsigned char*))
    p.alaw = <const unsigned char**>malloc(n * sizeof(unsigned char*))
    p.length = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    if mix:  # the partner's audio waits here; a plain play (hold music) needs no FIFO
        p.fifo = <short*>malloc(PLAY_MIX_CAP * sizeof(short))
    if p.pcm == NULL or p.ulaw == NULL or p.alaw == NULL or p.length == NULL or (
            mix and p.fifo == NULL):
        player_free(p)
        raise MemoryError()
    for i in range(n):
        f = <PromptFrames>playlist[i]
        p.pcm[i] = f.pcm
        p.ulaw[i] = f.ulaw
        p.alaw[i] = f.alaw
        p.length[i] = f.length
    p.n = n
    p.loop = loop
    p.mix = mix
    return p


cdef void player_free(player_t* p) noexcept nogil:
    if p == NULL:
        return
    free(p.pcm)
    free(p.ulaw)
    free(p.alaw)
    free(p.length)
    free(p.fifo)
    free(p)


cdef inline Py_ssize_t span(player_t* p, Py_ssize_t want, int* index,
                            Py_ssize_t* start) noexcept nogil:
    """The next run of at most ``want`` samples inside one prompt; 0 at the playlist's end.
    Advances the position (wrapping a looping playlist)."""
    cdef Py_ssize_t take
    if p.index >= p.n or want <= 0:
        return 0
    index[0] = p.index
    start[0] = p.offset
    take = p.length[p.index] - p.offset
    if take > want:
        take = want
    p.offset += take
    if p.offset == p.length[p.index]:
        p.index += 1
        p.offset = 0
        if p.index == p.n and p.loop:
            p.index = 0
    return take


cdef void take_partner(player_t* p, short* out) noexcept nogil:
    """PLAY_FRAME samples of the partner's audio (zeros where there is none)."""
    cdef int take
    if not p.primed:
        if p.fifo_len < PLAY_MIX_PRIME:
            memset(out, 0, PLAY_FRAME * sizeof(short))
            return
        p.primed = True
    take = p.fifo_len if p.fifo_len < PLAY_FRAME else PLAY_FRAME
    memcpy(out, p.fifo, take * sizeof(short))
    if take < PLAY_FRAME:
        memset(out + take, 0, (PLAY_FRAME - take) * sizeof(short))
    p.fifo_len -= take
    if p.fifo_len:
        memmove(p.fifo, p.fifo + take, p.fifo_len * sizeof(short))
    else:
        p.primed = False


cdef bint player_next(player_t* p, int codec, unsigned char* out) noexcept nogil:
    """Write the next 20 ms (PLAY_FRAME bytes of ``codec``) to ``out``; False at the end."""
    cdef short pcm[PLAY_FRAME]
    cdef Py_ssize_t got = 0, take, start
    cdef int index
    cdef bint alaw = codec == 8
    if p.index >= p.n:
        return False
    p.last_index = p.index
    p.sent += 1
    if not p.mix:
        while True:
            take = span(p, PLAY_FRAME - got, &index, &start)
            if take == 0:
                break
            memcpy(out + got, (p.alaw[index] if alaw else p.ulaw[index]) + start, take)
            got += take
        if got < PLAY_FRAME:
            memset(out + got, linear_to_alaw(0) if alaw else linear_to_ulaw(0), PLAY_FRAME - got)
        return True
    take_partner(p, pcm)
    while True:
        take = span(p, PLAY_FRAME - got, &index, &start)
        if take == 0:
            break
        mix_into_buf(pcm + got, p.pcm[index] + start, take, UNITY_Q12)
        got += take
    if alaw:
        alaw_encode_buf(pcm, PLAY_FRAME, out)
    else:
        ulaw_encode_buf(pcm, PLAY_FRAME, out)
    return True


cdef void player_feed(player_t* p, const unsigned char* payload, Py_ssize_t n,
                      int codec) noexcept nogil:
    """Keep what the bridged partner says (G.711) for the next frames of a mix."""
    cdef Py_ssize_t drop
    if n <= 0 or p.fifo == NULL:  # not a mix: nothing to keep (next frames ignore it)
        return
    if n > PLAY_MIX_CAP:
        payload += n - PLAY_MIX_CAP
        n = PLAY_MIX_CAP
    drop = p.fifo_len + n - PLAY_MIX_CAP
    if drop > 0:  # a fast sender cannot grow it without end: the oldest samples go
        p.fifo_len -= <int>drop
        memmove(p.fifo, p.fifo + drop, p.fifo_len * sizeof(short))
    if codec == 8:
        alaw_decode_buf(payload, n, p.fifo + p.fifo_len)
    else:
        ulaw_decode_buf(payload, n, p.fifo + p.fifo_len)
    p.fifo_len += <int>n


cdef class Player:
    """One play of a playlist (a ``player_t``), for tests and the reference packet path."""

    cdef player_t* p
    cdef list playlist  # keeps the shared PromptFrames alive

    def __cinit__(self, playlist, bint loop, bint mix):
        self.playlist = list(playlist)
        self.p = player_new(self.playlist, loop, mix)

    def __dealloc__(self):
        player_free(self.p)

    @property
    def done(self):
        return self.p.index >= self.p.n

    @property
    def loop(self):
        return self.p.loop

    @property
    def mix(self):
        return self.p.mix

    @property
    def index(self):
        return self.p.index

    @property
    def offset(self):
        return self.p.offset

    @property
    def last_index(self):
        return self.p.last_index

    @property
    def sent(self):
        return self.p.sent

    @property
    def primed(self):
        return self.p.primed

    def next_frame(self, int codec):
        cdef unsigned char out[PLAY_FRAME]
        if not player_next(self.p, codec, out):
            return None
        return (<char*>out)[:PLAY_FRAME]

    def feed(self, payload, int codec):
        cdef const unsigned char[::1] data = bytes(payload)
        if data.shape[0]:
            player_feed(self.p, &data[0], data.shape[0], codec)
