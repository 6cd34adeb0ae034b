"""Type stub of cext.recbuf; mirrors mediasrv.media.kernels.recbuf_py."""

RATE: int
CHANNELS: int
WINDOW: int
CAPACITY: int
RESYNC: int
SETTLE: int
CODEC_PCMU: int
CODEC_PCMA: int

class StereoTimeline:
    ulaw: bool
    closed: bool
    base: int
    end: int
    def __init__(
        self, record_left: bool = True, record_right: bool = True, ulaw: bool = False
    ) -> None: ...
    def late(self, channel: int) -> int: ...
    def feed(
        self, channel: int, ssrc: int, ts: int, codec: int, payload: bytes, now: float
    ) -> None: ...
    def tick(self, now: float) -> None: ...
    def close(self) -> None: ...
    def take(self) -> bytes: ...
