"""Stereo call recorder (F12), the reference implementation.

Caller on the left channel, operator on the right, 8 kHz, 16-bit PCM (or µ-law, WAVE format
tag 7). Each channel is placed by RTP timestamp: a channel's first packet is anchored at its
arrival on the call timeline (which starts when the first packet of either channel arrives)
and every later packet at ``anchor + (ts - first_ts)``. Gaps (loss, silence suppression,
hold) stay silent; late and reordered packets inside the jitter window land where they
belong. Only what a leg's peer *sent* reaches its channel, so prompts and whispers we play
can never appear on either channel.

The packet path only writes into a small in-memory window. :meth:`StereoRecorder.tick`
(from the engine's periodic timer) hands finished chunks to a :class:`RecordingWriter`,
whose single background thread appends them and rewrites the RIFF/data sizes about once a
second, after the data, so a file cut by ``kill -9`` is a valid WAV up to the last update
and :func:`repair_wav` recovers the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mediasrv.media import codec as g711
from mediasrv.media import kernels
from mediasrv.media.api import RecordMode
from mediasrv.media.codec import Codec

log = logging.getLogger(__name__)

RATE = 8000
CHANNELS = 2
LEFT, RIGHT = 0, 1  # caller, operator
WINDOW = RATE // 5  # 200 ms jitter window: later than this and a packet is dropped
CAPACITY = RATE * 3 // 4  # 0.75 s of 16-bit PCM per channel in memory (24 KB per call)
RESYNC = RATE  # a timestamp 1 s away from arrival time re-anchors the channel
SETTLE = WINDOW // 2  # a channel's first 100 ms refine its anchor (still in the window)
HEADER_EVERY = 1.0  # seconds between header updates while recording


class RecordingFormat(enum.Enum):
    PCM16 = "pcm16"
    ULAW = "ulaw"


# --------------------------------------------------------------------------------------------
# WAV header


def wav_header(fmt: RecordingFormat, data_bytes: int) -> bytes:
    """A canonical header; µ-law carries cbSize and a fact chunk as non-PCM formats should."""
    if fmt is RecordingFormat.PCM16:
        fmt_chunk = struct.pack("<HHIIHH", 1, CHANNELS, RATE, RATE * 4, 4, 16)
        extra = b""
        block = 4
    else:
        fmt_chunk = struct.pack("<HHIIHHH", 7, CHANNELS, RATE, RATE * 2, 2, 8, 0)
        block = 2
        extra = b"fact" + struct.pack("<II", 4, data_bytes // block)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + extra
    body += b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body  # RIFF size = file - 8


def _block_align(fmt: RecordingFormat) -> int:
    return 4 if fmt is RecordingFormat.PCM16 else 2


# --------------------------------------------------------------------------------------------
# Background writer


class _WavFile:
    """A file being written; touched only on the writer thread after construction."""

    __slots__ = ("data_bytes", "failed", "fd", "fmt", "path")

    def __init__(self, path: Path, fmt: RecordingFormat) -> None:
        self.path = path
        self.fmt = fmt
        self.fd = -1
        self.data_bytes = 0
        self.failed = False

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        _write_all(self.fd, wav_header(self.fmt, 0))  # one write: never a half header

    def append(self, chunk: bytes) -> None:
        _write_all(self.fd, chunk)
        self.data_bytes += len(chunk)

    def update_header(self) -> None:
        # Rewritten in place after the data it describes was written (never ahead of it).
        os.pwrite(self.fd, wav_header(self.fmt, self.data_bytes), 0)

    def close(self) -> None:
        if self.fd >= 0:
            self.update_header()
            os.close(self.fd)
            self.fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class RecordingWriter:
    """One background thread that performs every recording file operation, in order."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mediasrv-rec")
        self._last: concurrent.futures.Future[None] | None = None

    def submit(self, file: _WavFile, op: Callable[[], None]) -> concurrent.futures.Future[None]:
        self._last = self._pool.submit(_guarded, file, op)
        return self._last

    async def drain(self) -> None:
        """Wait until every operation submitted so far has run."""
        last = self._last
        if last is not None:
            await asyncio.wrap_future(last)

    async def close(self) -> None:
        await self.drain()
        self._pool.shutdown(wait=False)


def _guarded(file: _WavFile, op: Callable[[], None]) -> None:
    if file.failed:
        return
    try:
        op()
    except OSError as exc:
        # Disk full, permissions, ...: the call goes on without its recording.
        file.failed = True
        log.error("recording %s failed: %s", file.path, exc)


# --------------------------------------------------------------------------------------------
# Recorder


class _Channel:
    __slots__ = ("first_ts", "late", "offset", "ssrc")

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.first_ts = 0
        self.offset = 0
        self.late = 0


class StereoRecorder:
    """Places two legs' audio on a common timeline and streams it to a WAV file."""

    __slots__ = (
        "_base",
        "_bufs",
        "_channels",
        "_closed",
        "_enabled",
        "_end",
        "_file",
        "_last_header",
        "_t0",
        "_writer",
        "closed_future",
        "path",
    )

    def __init__(
        self,
        path: Path,
        writer: RecordingWriter,
        mode: RecordMode = RecordMode.BOTH,
        fmt: RecordingFormat = RecordingFormat.PCM16,
    ) -> None:
        self.path = path
        self._writer = writer
        self._file = _WavFile(path, fmt)
        self._enabled = (
            mode in (RecordMode.BOTH, RecordMode.CALLER),
            mode in (RecordMode.BOTH, RecordMode.OPERATOR),
        )
        self._channels = (_Channel(), _Channel())
        # One 16-bit PCM window per channel, allocated at the first packet.
        self._bufs: tuple[bytearray, bytearray] = (bytearray(), bytearray())
        self._t0: float | None = None
        self._base = 0  # timeline sample of _buf[0]; everything before is on its way to disk
        self._end = 0  # one past the last sample placed
        self._last_header = 0.0
        self._closed = False
        self.closed_future: concurrent.futures.Future[None] | None = None
        writer.submit(self._file, self._file.open)

    @property
    def failed(self) -> bool:
        """The file could not be created or written (logged); the call goes on without it."""
        return self._file.failed

    @property
    def data_bytes(self) -> int:
        """Bytes of audio committed so far (what the file holds once written)."""
        return self._base * _block_align(self._file.fmt)

    def feed(
        self, channel: int, ssrc: int, ts: int, codec: Codec, payload: bytes, now: float
    ) -> None:
        if self._closed or not self._enabled[channel] or not payload:
            return
        if self._t0 is None:
            self._t0 = now
            self._bufs = (bytearray(2 * CAPACITY), bytearray(2 * CAPACITY))
        pos = self._position(channel, ssrc, ts, now)
        pcm = g711.decode_pcm(codec, payload)
        n = len(pcm) // 2
        if pos + n > self._base + CAPACITY:
            self._commit(pos + n - CAPACITY)
        skip = self._base - pos
        if skip >= n:
            self._channels[channel].late += 1
            return
        if skip > 0:
            pcm, pos = pcm[2 * skip :], self._base
        start = 2 * (pos - self._base)
        # Same-size slice assignment: the bytearray never resizes here (per-packet cost is
        # a memcpy, no numpy object per packet).
        self._bufs[channel][start : start + len(pcm)] = pcm
        self._end = max(self._end, pos + len(pcm) // 2)

    def _position(self, channel: int, ssrc: int, ts: int, now: float) -> int:
        assert self._t0 is not None
        ch = self._channels[channel]
        expected = round((now - self._t0) * RATE)
        if ch.ssrc != ssrc:
            ch.ssrc, ch.first_ts, ch.offset = ssrc, ts, expected
            return expected
        rel = (ts - ch.first_ts) & 0xFFFFFFFF
        if rel >= 0x80000000:
            rel -= 0x100000000  # a packet from before the anchor (reordered)
        pos = ch.offset + rel
        if pos > expected and rel < SETTLE:
            # While the channel is young, a packet less delayed than the one we anchored on
            # tells its true start better: both channels converge on the network's minimum
            # delay, so their relative alignment does not carry the first packets' jitter.
            # What the channel already has in the window moves with its anchor, so the
            # audio stays sample-continuous.
            self._shift(channel, pos - expected)
            ch.offset -= pos - expected
            return expected
        if abs(pos - expected) > RESYNC:
            # The peer's clock jumped (restart after hold, a new stream with the same SSRC):
            # trust arrival time again rather than leave a huge gap or overlap.
            ch.first_ts, ch.offset = ts, expected
            return expected
        return pos

    def _shift(self, channel: int, d: int) -> None:
        """Move the channel's uncommitted samples ``d`` samples earlier."""
        buf = self._bufs[channel]
        d = min(d, CAPACITY)
        del buf[: 2 * d]
        buf.extend(bytes(2 * d))

    def tick(self, now: float) -> None:
        """Commit what is older than the jitter window; refresh the header once a second."""
        if self._closed or self._t0 is None:
            return
        self._commit(round((now - self._t0) * RATE) - WINDOW)
        if now - self._last_header >= HEADER_EVERY:
            self._last_header = now
            self._writer.submit(self._file, self._file.update_header)

    def close(self) -> int:
        """Commit everything, finalize the file; return its final size in bytes."""
        if not self._closed:
            self._commit(self._end)
            self._closed = True
            self._bufs = (bytearray(), bytearray())
            self.closed_future = self._writer.submit(self._file, self._file.close)
        return len(wav_header(self._file.fmt, 0)) + self.data_bytes

    def _commit(self, upto: int) -> None:
        left, right = self._bufs
        if not left:
            return
        while self._base < upto:
            n = min(upto - self._base, CAPACITY)
            frames = np.empty((n, CHANNELS), dtype="<i2")
            frames[:, LEFT] = np.frombuffer(bytes(left[: 2 * n]), dtype="<i2")
            frames[:, RIGHT] = np.frombuffer(bytes(right[: 2 * n]), dtype="<i2")
            for buf in (left, right):
                del buf[: 2 * n]  # cheap at the front of a bytearray
                buf.extend(bytes(2 * n))
            self._base += n
            chunk = frames.tobytes()
            if self._file.fmt is RecordingFormat.ULAW:
                chunk = g711.encode_pcm(Codec.PCMU, chunk)
            self._writer.submit(self._file, functools.partial(self._file.append, chunk))


# --------------------------------------------------------------------------------------------
# Repair after a crash


class KernelStereoRecorder(StereoRecorder):
    """:class:`StereoRecorder` with its in-memory timeline in the ``recbuf`` kernel.

    The output is byte-identical to the reference recorder's (tests/kernels/
    test_kernels_recbuf.py). Because it exposes the kernel object as ``timeline``, the
    Cython packet path feeds it from C with no Python call per packet; what remains in
    Python is the 4 Hz tick and the hand-off of finished chunks to the writer thread.
    Measured in bench/RESULTS_media.md: recording overhead +100 % with the reference
    recorder on the Cython path, +27 % with this one.
    """

    __slots__ = ("timeline",)

    def __init__(
        self,
        path: Path,
        writer: RecordingWriter,
        mode: RecordMode = RecordMode.BOTH,
        fmt: RecordingFormat = RecordingFormat.PCM16,
    ) -> None:
        super().__init__(path, writer, mode, fmt)
        self.timeline = kernels.recbuf.StereoTimeline(
            mode in (RecordMode.BOTH, RecordMode.CALLER),
            mode in (RecordMode.BOTH, RecordMode.OPERATOR),
            fmt is RecordingFormat.ULAW,
        )

    def feed(
        self, channel: int, ssrc: int, ts: int, codec: Codec, payload: bytes, now: float
    ) -> None:
        # Only used by packet paths that call Python per packet (the reference path).
        self.timeline.feed(channel, ssrc, ts, int(codec), payload, now)

    def tick(self, now: float) -> None:
        if self._closed:
            return
        self.timeline.tick(now)
        self._flush_timeline()
        if now - self._last_header >= HEADER_EVERY:
            self._last_header = now
            self._writer.submit(self._file, self._file.update_header)

    def close(self) -> int:
        if not self._closed:
            self.timeline.close()
            self._flush_timeline()
            self._closed = True
            self.closed_future = self._writer.submit(self._file, self._file.close)
        return len(wav_header(self._file.fmt, 0)) + self.data_bytes

    def _flush_timeline(self) -> None:
        chunk = self.timeline.take()
        if chunk:
            self._base += len(chunk) // _block_align(self._file.fmt)
            self._writer.submit(self._file, functools.partial(self._file.append, chunk))


def recorder_class() -> type[StereoRecorder]:
    """The recorder for this process's kernels: fed from C with the Cython ones."""
    return KernelStereoRecorder if kernels.ENGINE == "cython" else StereoRecorder


def repair_wav(path: Path) -> bool:
    """Fix the RIFF/data/fact sizes of a WAV cut short by a crash (e.g. ``kill -9``).

    Returns True if the file was changed, False if it was already consistent or is not a
    RIFF/WAVE file with a data chunk (left untouched, and logged).
    """
    try:
        with open(path, "r+b") as f:
            head = f.read(4096)
            layout = _layout(head)
            if layout is None:
                log.warning("repair_wav: %s is not a RIFF/WAVE file with a data chunk", path)
                return False
            data_off, block, fact_off = layout
            size = f.seek(0, os.SEEK_END)
            data_len = max(0, size - data_off)
            data_len -= data_len % block  # drop a frame cut in half
            want = [(4, data_off + data_len - 8), (data_off - 4, data_len)]
            if fact_off is not None:
                want.append((fact_off + 8, data_len // block))
            changed = data_off + data_len != size
            for offset, value in want:
                f.seek(offset)
                if struct.unpack("<I", f.read(4))[0] != value:
                    f.seek(offset)
                    f.write(struct.pack("<I", value))
                    changed = True
            if data_off + data_len != size:
                f.truncate(data_off + data_len)
            return changed
    except OSError as exc:
        log.warning("repair_wav: cannot repair %s: %s", path, exc)
        return False


def _layout(head: bytes) -> tuple[int, int, int | None] | None:
    """(data offset, block align, fact chunk offset) from a WAV header, or None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block, fact = 12, 0, None
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"data":
            return (pos + 8, block, fact) if block > 0 else None
        if cid == b"fmt " and pos + 22 <= len(head):
            block = struct.unpack_from("<H", head, pos + 20)[0]
        elif cid == b"fact":
            fact = pos
        pos += 8 + size + (size & 1)
    return None


def repair_dir(directory: Path) -> list[Path]:
    """Run :func:`repair_wav` over every ``*.wav`` below ``directory``; return those fixed."""
    return [p for p in sorted(directory.rglob("*.wav")) if repair_wav(p)]
