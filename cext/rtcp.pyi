"""Type stub of cext.rtcp; mirrors mediasrv.media.kernels.rtcp_py."""

RTP_SEQ_MOD: int
MAX_DROPOUT: int
MAX_MISORDER: int
MIN_SEQUENTIAL: int
LOST_MAX: int
LOST_MIN: int

class ReceiverStats:
    max_seq: int
    cycles: int
    base_seq: int
    bad_seq: int
    probation: int
    received: int
    expected_prior: int
    received_prior: int
    transit: int
    jitter_q4: int
    def __init__(self) -> None: ...
    def update(self, seq: int, rtp_ts: int, arrival: int) -> bool: ...
    def update_seq(self, seq: int) -> bool: ...
    @property
    def extended_max_seq(self) -> int: ...
    @property
    def expected(self) -> int: ...
    @property
    def cumulative_lost(self) -> int: ...
    @property
    def jitter(self) -> int: ...
    def report_interval(self) -> tuple[int, int, int, int]: ...
