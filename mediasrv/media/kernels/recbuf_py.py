"""The in-memory half of the stereo recorder (F12): reference twin of ``cext.recbuf``.

:class:`StereoTimeline` places two legs' G.711 audio on one timeline by RTP timestamp, with
exactly the rules of :class:`mediasrv.media.recorder.StereoRecorder` (which owns the file):
a channel's first packet is anchored at its arrival on the call timeline (starting at the
first packet of either channel) and later packets at ``anchor + (ts - first_ts)``; during a
channel's first ``SETTLE`` samples a less delayed packet moves the anchor earlier; a jump of
more than ``RESYNC`` samples re-anchors; gaps stay silent; packets older than the committed
part are dropped (counted as late). Committed audio (interleaved 16-bit LE PCM, or µ-law)
accumulates until :meth:`take` hands it to the file writer.

The Cython twin is fed straight from the packet path (no Python object per packet).
"""

from __future__ import annotations

from array import array

from .g711_py import ALAW_DECODE, ULAW_DECODE, linear_to_ulaw

RATE = 8000
CHANNELS = 2
WINDOW = RATE // 5  # 200 ms jitter window
CAPACITY = RATE * 3 // 4  # 0.75 s of stereo audio in memory
RESYNC = RATE  # a timestamp 1 s away from arrival time re-anchors the channel
SETTLE = WINDOW // 2  # a channel's first 100 ms refine its anchor
CODEC_PCMU = 0
CODEC_PCMA = 8


class StereoTimeline:
    """Caller (channel 0, left) and operator (channel 1, right) on one timeline."""

    def __init__(
        self, record_left: bool = True, record_right: bool = True, ulaw: bool = False
    ) -> None:
        self.enabled = (record_left, record_right)
        self.ulaw = ulaw
        self.closed = False
        self.base = 0  # timeline sample of buffer frame 0; everything before is committed
        self.end = 0  # one past the last sample placed
        self._t0: float | None = None
        self._buf: array[int] | None = None  # CAPACITY interleaved stereo frames
        self._ssrc: list[int | None] = [None, None]
        self._first_ts = [0, 0]
        self._offset = [0, 0]
        self._late = [0, 0]
        self._out = bytearray()

    def late(self, channel: int) -> int:
        return self._late[channel]

    def feed(
        self, channel: int, ssrc: int, ts: int, codec: int, payload: bytes, now: float
    ) -> None:
        if self.closed or not self.enabled[channel] or not payload:
            return
        if self._t0 is None:
            self._t0 = now
            self._buf = array("h", bytes(4 * CAPACITY))
        pos = self._position(channel, ssrc, ts, now)
        table = ULAW_DECODE if codec == CODEC_PCMU else ALAW_DECODE
        n = len(payload)
        if pos + n > self.base + CAPACITY:
            self._commit(pos + n - CAPACITY)
        skip = self.base - pos
        if skip >= n:
            self._late[channel] += 1
            return
        first = 0
        if skip > 0:
            first, pos = skip, self.base
        start = pos - self.base
        buf = self._buf
        assert buf is not None
        for i in range(first, n):
            buf[2 * (start + i - first) + channel] = table[payload[i]]
        self.end = max(self.end, pos + n - first)

    def _position(self, channel: int, ssrc: int, ts: int, now: float) -> int:
        assert self._t0 is not None
        expected = round((now - self._t0) * RATE)
        if self._ssrc[channel] != ssrc:
            self._ssrc[channel] = ssrc
            self._first_ts[channel] = ts
            self._offset[channel] = expected
            return expected
        rel = (ts - self._first_ts[channel]) & 0xFFFFFFFF
        if rel >= 0x80000000:
            rel -= 0x100000000  # a packet from before the anchor (reordered)
        pos = self._offset[channel] + rel
        if pos > expected and rel < SETTLE:
            self._shift(channel, pos - expected)
            self._offset[channel] -= pos - expected
            return expected
        if abs(pos - expected) > RESYNC:
            self._first_ts[channel] = ts
            self._offset[channel] = expected
            return expected
        return pos

    def _shift(self, channel: int, d: int) -> None:
        """Move the channel's uncommitted samples ``d`` samples earlier."""
        buf = self._buf
        assert buf is not None
        d = min(d, CAPACITY)
        for i in range(CAPACITY - d):
            buf[2 * i + channel] = buf[2 * (i + d) + channel]
        for i in range(CAPACITY - d, CAPACITY):
            buf[2 * i + channel] = 0

    def tick(self, now: float) -> None:
        """Commit what is older than the jitter window."""
        if self.closed or self._t0 is None:
            return
        self._commit(round((now - self._t0) * RATE) - WINDOW)

    def close(self) -> None:
        """Commit everything placed so far; later feeds are ignored."""
        if not self.closed:
            self._commit(self.end)
            self.closed = True
            self._buf = None

    def take(self) -> bytes:
        """Committed audio not taken yet (interleaved frames in the output format)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _commit(self, upto: int) -> None:
        buf = self._buf
        if buf is None:
            return
        while self.base < upto:
            n = min(upto - self.base, CAPACITY)
            self._emit(buf[: 2 * n])
            buf[: 2 * (CAPACITY - n)] = buf[2 * n :]
            buf[2 * (CAPACITY - n) :] = array("h", bytes(4 * n))
            self.base += n

    def _emit(self, frames: array[int]) -> None:
        if self.ulaw:
            self._out += bytes(linear_to_ulaw(v) for v in frames)
        else:
            chunk = array("h", frames)
            if chunk.itemsize == 2 and _BIG_ENDIAN:
                chunk.byteswap()
            self._out += chunk.tobytes()


_BIG_ENDIAN = array("h", [1]).tobytes() == b"\x00\x01"
