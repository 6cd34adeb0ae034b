# C-level interface of cext.playout (prompt playout and whisper mixing), for cext.relay.

cdef enum:
    PLAY_FRAME = 160  # samples per 20 ms frame
    PLAY_MIX_CAP = 480  # partner samples kept for a whisper (60 ms)
    PLAY_MIX_PRIME = 320  # partner samples buffered before the first take

cdef struct player_t:
    int n  # prompts in the playlist
    const short** pcm  # per prompt: borrowed from its PromptFrames
    const unsigned char** ulaw
    const unsigned char** alaw
    Py_ssize_t* length  # samples per prompt
    int index  # prompt being played
    Py_ssize_t offset  # next sample in it
    int last_index  # the prompt the last frame began in
    bint loop
    bint mix
    long long sent  # frames produced
    int fifo_len
    bint primed
    short* fifo  # PLAY_MIX_CAP samples, allocated for a mix only (a held caller's play has none)

cdef class PromptFrames:
    cdef short* pcm
    cdef unsigned char* ulaw
    cdef unsigned char* alaw
    cdef readonly Py_ssize_t length

# Needs the GIL (reads the PromptFrames list); the caller keeps the list alive while the
# player exists and frees it with player_free.
cdef player_t* player_new(list playlist, bint loop, bint mix) except NULL
cdef void player_free(player_t* p) noexcept nogil
cdef bint player_next(player_t* p, int codec, unsigned char* out) noexcept nogil
cdef void player_feed(player_t* p, const unsigned char* payload, Py_ssize_t n,
                      int codec) noexcept nogil
