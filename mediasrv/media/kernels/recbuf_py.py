"""The recording kernel (F12): reference twin of ``cext.recbuf``.

:class:`StereoTimeline` places one call's two legs' G.711 audio on one timeline by RTP
timestamp: a channel's first packet is anchored at its arrival on the call timeline
(starting at the first packet of either channel) and later packets at
``anchor + (ts - first_ts)``; during a channel's first ``SETTLE`` samples a less delayed
packet moves the anchor earlier; a jump of more than ``RESYNC`` samples re-anchors; gaps
stay silent; packets older than the committed part are dropped (counted as late).

Several *outputs* (recordings) read the one timeline, each from the moment it started, and
each with its own layout: stereo (caller left, operator right, either channel possibly
muted) or mono (one channel, or both summed with saturation), 16-bit PCM or µ-law. A
paused span of an output is written as silence. Committed audio accumulates per output;
:meth:`StereoTimeline.take` hands it out (tests), or :class:`Writer`, one thread of its own,
commits every registered timeline each ``interval`` and writes each file output with plain
``write``/``pwrite`` calls: the Cython twin does this in C without the GIL, so recording
costs the event loop nothing per call.

Positions are timeline samples (8 kHz); ``now`` is in the timeline's clock (the engine's
``loop.time()``). Rules shared with the Cython twin, which must give the same bytes.
"""

from __future__ import annotations

import errno as errno_codes
import os
import struct
import threading
import time
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
LEFT = 1  # output channel masks: the caller
RIGHT = 2  # the operator
RUNNING = 0  # output states
STOPPED = 1  # every byte is emitted; the writer has yet to close the file
FINISHED = 2  # closed (or a buffer output, done)
WRITE_MIN = 12000  # bytes of an output worth one write() (every 2nd pass for stereo PCM)
HEADER_EVERY = 1.0  # seconds between header rewrites of a file being written
INTERVAL = 0.25  # seconds between the writer's passes
OPEN = 1 << 62  # the end of a pause that has not ended


def wav_header(channels: int, ulaw: bool, data_bytes: int) -> bytes:
    """A canonical header; µ-law carries cbSize and a fact chunk as non-PCM formats should."""
    block = channels * (1 if ulaw else 2)
    if not ulaw:
        fmt_chunk = struct.pack("<HHIIHH", 1, channels, RATE, RATE * block, block, 16)
        extra = b""
    else:
        fmt_chunk = struct.pack("<HHIIHHH", 7, channels, RATE, RATE * block, block, 8, 0)
        extra = b"fact" + struct.pack("<II", 4, data_bytes // block)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + extra
    body += b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body  # RIFF size = file - 8


class _Output:
    """One recording reading the timeline; the I/O fields belong to the writer thread."""

    __slots__ = (
        "channels",
        "err",
        "fd",
        "ident",
        "last_header",
        "mask",
        "next",
        "out",
        "path",
        "spans",
        "start",
        "state",
        "stop",
        "ulaw",
        "written",
    )

    def __init__(
        self, ident: int, channels: int, mask: int, ulaw: bool, start: int, path: bytes | None
    ) -> None:
        self.ident = ident
        self.channels = channels
        self.mask = mask
        self.ulaw = ulaw
        self.start = start
        self.next = start  # the next timeline sample this output writes
        self.stop = -1  # -1: still running
        self.spans: list[list[int]] = []  # paused [from, to) spans not yet written past
        self.out = bytearray()
        self.path = path
        self.state = RUNNING
        self.err = 0
        self.fd = -1
        self.written = 0
        self.last_header = 0.0

    def block(self) -> int:
        return self.channels * (1 if self.ulaw else 2)


class StereoTimeline:
    """Caller (channel 0, left) and operator (channel 1, right) on one timeline."""

    def __init__(self) -> None:
        self.closed = False
        self.base = 0  # timeline sample of buffer frame 0; everything before is committed
        self.end = 0  # one past the last sample placed
        self._t0: float | None = None
        self._buf: array[int] | None = None  # CAPACITY interleaved stereo frames
        self._ssrc: list[int | None] = [None, None]
        self._first_ts = [0, 0]
        self._offset = [0, 0]
        self._late = [0, 0]
        self._outputs: list[_Output] = []
        self.lock = threading.Lock()  # the writer thread commits while the loop feeds

    def late(self, channel: int) -> int:
        return self._late[channel]

    # ---- the packet path -------------------------------------------------------------------

    def feed(
        self, channel: int, ssrc: int, ts: int, codec: int, payload: bytes, now: float
    ) -> None:
        with self.lock:
            self._place(channel, ssrc, ts, codec, payload, now)

    def _place(
        self, channel: int, ssrc: int, ts: int, codec: int, payload: bytes, now: float
    ) -> None:
        if self.closed or not payload:
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
            # While the channel is young, a less delayed packet tells its true start better.
            self._shift(channel, pos - expected)
            self._offset[channel] -= pos - expected
            return expected
        if abs(pos - expected) > RESYNC:
            # The peer's clock jumped: trust arrival time again.
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

    # ---- committing ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Commit what is older than the jitter window."""
        with self.lock:
            self._tick(now)

    def _tick(self, now: float) -> None:
        if not self.closed and self._t0 is not None:
            self._commit(round((now - self._t0) * RATE) - WINDOW)

    def close(self) -> None:
        """Commit everything placed so far and stop every output there (the call ended)."""
        with self.lock:
            if self.closed:
                return
            self._commit(self.end)
            for out in self._outputs:
                if out.state == RUNNING:
                    self._finish(out, max(out.next, self.base))
            self.closed = True
            self._buf = None

    def _commit(self, upto: int) -> None:
        buf = self._buf
        if buf is None:
            return
        while self.base < upto:
            n = min(upto - self.base, CAPACITY)
            for out in self._outputs:
                self._emit(out, self.base + n)
            buf[: 2 * (CAPACITY - n)] = buf[2 * n :]
            buf[2 * (CAPACITY - n) :] = array("h", bytes(4 * n))
            self.base += n

    def _emit(self, out: _Output, upto: int) -> None:
        """Encode the output's frames from ``out.next`` up to ``upto`` (still in the ring)."""
        if out.state != RUNNING:
            return
        hi = upto if out.stop < 0 else min(upto, out.stop)
        lo = max(out.next, self.base)
        if hi <= lo:
            return
        buf = self._buf
        frames = array("h", buf[2 * (lo - self.base) : 2 * (hi - self.base)]) if buf else None
        if frames is None:
            frames = array("h", bytes(4 * (hi - lo)))
        for span in out.spans:
            a, b = max(span[0], lo), min(span[1], hi)
            if b > a:
                frames[2 * (a - lo) : 2 * (b - lo)] = array("h", bytes(4 * (b - a)))
        out.out += _encode(frames, out.channels, out.mask, out.ulaw)
        out.next = hi
        out.spans = [s for s in out.spans if s[1] > hi]

    # ---- outputs ---------------------------------------------------------------------------

    def position(self, now: float) -> int:
        """The timeline sample of time ``now`` (0 before the first packet)."""
        if self._t0 is None:
            return 0
        return max(0, round((now - self._t0) * RATE))

    def add_output(
        self,
        ident: int,
        channels: int,
        mask: int,
        ulaw: bool,
        now: float,
        path: bytes | None = None,
    ) -> int:
        """Start a recording at ``now``; ``path`` None keeps its bytes for :meth:`take`."""
        if channels not in (1, 2) or not 0 < mask <= LEFT | RIGHT:
            raise ValueError(f"bad output layout: {channels} channels, mask {mask}")
        with self.lock:
            if self.closed:
                raise ValueError("the timeline is closed")
            start = max(self.position(now), self.base)
            self._outputs.append(_Output(ident, channels, mask, ulaw, start, path))
            return len(self._outputs) - 1

    def stop_output(self, index: int, now: float) -> tuple[int, int]:
        """Stop one output at ``now``: its frames are emitted at once; (start, stop)."""
        with self.lock:
            out = self._outputs[index]
            if out.state == RUNNING:
                stop = max(self.position(now), out.next)
                if stop > self.base + CAPACITY:
                    self._commit(stop - CAPACITY)
                self._finish(out, stop)
            return out.start, out.stop

    def _finish(self, out: _Output, stop: int) -> None:
        out.stop = stop
        self._emit(out, stop)
        out.next = stop
        out.spans = []
        out.state = STOPPED if out.path is not None else FINISHED

    def pause_output(self, index: int, now: float) -> int:
        """Silence from ``now`` on; the sample it starts at, -1 if stopped or paused."""
        with self.lock:
            out = self._outputs[index]
            if out.state != RUNNING or (out.spans and out.spans[-1][1] == OPEN):
                return -1
            start = max(self.position(now), out.next)
            out.spans.append([start, OPEN])
            return start

    def resume_output(self, index: int, now: float) -> int:
        """End the pause at ``now``; the sample it ends at, -1 if not paused."""
        with self.lock:
            out = self._outputs[index]
            if out.state != RUNNING or not out.spans or out.spans[-1][1] != OPEN:
                return -1
            end = max(self.position(now), out.spans[-1][0])
            out.spans[-1][1] = end
            return end

    def output_frames(self, index: int) -> tuple[int, int]:
        """(start, stop) of an output; stop is -1 while it runs."""
        with self.lock:
            out = self._outputs[index]
            return out.start, out.stop

    def output_state(self, index: int) -> tuple[int, int]:
        """(state, errno of a failed file or 0)."""
        with self.lock:
            out = self._outputs[index]
            return out.state, out.err

    def take(self, index: int) -> bytes:
        """The output's bytes not taken yet (a buffer output)."""
        with self.lock:
            out = self._outputs[index]
            data = bytes(out.out)
            out.out.clear()
            return data

    # ---- the writer's side -----------------------------------------------------------------

    def _collect(
        self, now: float, clock: float, write_min: int, header_every: float
    ) -> list[tuple[_Output, bytes, bool, bool]]:
        """Under the lock: commit, then hand out what each file output has to write."""
        jobs = []
        with self.lock:
            self._tick(now)
            for out in self._outputs:
                if out.path is None or out.state == FINISHED:
                    continue
                complete = out.state == STOPPED
                header = clock - out.last_header >= header_every
                if complete or header or len(out.out) >= write_min or out.fd < 0:
                    jobs.append((out, bytes(out.out), complete, header))
                    out.out.clear()
        return jobs

    def _done(self, jobs: list[tuple[_Output, bytes, bool, bool]]) -> bool:
        """Under the lock: mark closed files; True once the timeline needs no more work."""
        with self.lock:
            for out, _data, complete, _header in jobs:
                if complete:
                    out.state = FINISHED
            return self.closed and all(o.state == FINISHED for o in self._outputs)


def _encode(frames: array[int], channels: int, mask: int, ulaw: bool) -> bytes:
    """Interleaved stereo frames to one output's layout (LE 16-bit PCM or µ-law)."""
    left = frames[0::2] if mask & LEFT else array("h", bytes(len(frames)))
    right = frames[1::2] if mask & RIGHT else array("h", bytes(len(frames)))
    if channels == 2:
        samples = array("h", bytes(2 * len(frames)))
        samples[0::2] = left
        samples[1::2] = right
    else:
        samples = array(
            "h", (max(-32768, min(32767, a + b)) for a, b in zip(left, right, strict=True))
        )
    if ulaw:
        return bytes(linear_to_ulaw(v) for v in samples)
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples.tobytes()


_BIG_ENDIAN = array("h", [1]).tobytes() == b"\x00\x01"


class Writer:
    """One thread that commits every registered timeline and writes its file outputs.

    Nothing here runs on the event loop: :meth:`register`, :meth:`reap` and
    :meth:`failures` take a lock held only for list operations, :meth:`sync` blocks (run it
    in an executor). Without :meth:`start`, :meth:`run_pass` does the same work on demand
    (tests drive it with their own clock).
    """

    def __init__(self) -> None:
        self._reg = threading.Condition()
        self._timelines: list[tuple[StereoTimeline, float]] = []
        self._dead: list[StereoTimeline] = []
        self._failures: list[tuple[int, int]] = []
        self._pass = threading.Lock()
        self._started = 0
        self._done = 0
        self._wanted = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._interval = INTERVAL
        self.write_min = WRITE_MIN  # bytes of a recording worth one write()
        self.header_every = HEADER_EVERY  # seconds between header rewrites of a file

    def register(self, timeline: StereoTimeline, clock_offset: float = 0.0) -> None:
        """Commit and write ``timeline`` from now on; its clock is CLOCK_MONOTONIC + offset."""
        with self._reg:
            self._timelines.append((timeline, clock_offset))

    def start(self, interval: float = INTERVAL) -> None:
        with self._reg:
            if self._running:
                return
            self._running = True
            self._interval = interval
        self._thread = threading.Thread(target=self._main, name="mediasrv-rec", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last pass (everything stopped so far is then on disk)."""
        with self._reg:
            if not self._running:
                return
            self._running = False
            self._reg.notify_all()
        assert self._thread is not None
        self._thread.join()
        self._thread = None
        self.run_pass()

    @property
    def running(self) -> bool:
        return self._running

    def _main(self) -> None:
        while True:
            with self._reg:
                if self._wanted <= self._started:
                    self._reg.wait(self._interval)
                if not self._running:
                    return
            self.run_pass()

    def sync(self) -> None:
        """Block until a whole pass that started after this call has ended."""
        with self._reg:
            if self._running:
                target = self._started + 1
                self._wanted = max(self._wanted, target)
                self._reg.notify_all()
                while self._done < target and self._running:
                    self._reg.wait(0.5)
                if self._done >= target:
                    return
        self.run_pass()

    def run_pass(self, now: float | None = None) -> None:
        """Commit every timeline at ``now`` (monotonic clock; the timeline's clock if its
        offset is 0) and do the file work due."""
        with self._pass:
            if now is None:
                now = time.monotonic()
            with self._reg:
                self._started += 1
                snapshot = list(self._timelines)
            finished: list[StereoTimeline] = []
            for timeline, offset in snapshot:
                jobs = timeline._collect(now + offset, now, self.write_min, self.header_every)
                for out, data, complete, header in jobs:
                    self._io(out, data, complete, header, now)
                if timeline._done(jobs):
                    finished.append(timeline)
            with self._reg:
                if finished:
                    self._timelines = [e for e in self._timelines if e[0] not in finished]
                    self._dead.extend(finished)
                self._done += 1
                self._reg.notify_all()

    def _io(self, out: _Output, data: bytes, complete: bool, header: bool, now: float) -> None:
        assert out.path is not None
        if out.err == 0:
            try:
                if out.fd < 0:
                    out.fd = _open(out.path, wav_header(out.channels, out.ulaw, 0))
                    out.last_header = now
                if data:
                    _write_all(out.fd, data)
                    out.written += len(data)
                if header or complete:
                    # Rewritten in place after the data it describes (never ahead of it).
                    os.pwrite(out.fd, wav_header(out.channels, out.ulaw, out.written), 0)
                    out.last_header = now
            except OSError as exc:
                # Disk full, permissions, ...: the call goes on without this recording.
                out.err = exc.errno or errno_codes.EIO
                with self._reg:
                    self._failures.append((out.ident, out.err))
        if complete and out.fd >= 0:
            os.close(out.fd)
            out.fd = -1

    def reap(self) -> int:
        """Forget timelines whose every output is closed; returns how many."""
        with self._reg:
            n = len(self._dead)
            self._dead.clear()
            return n

    def failures(self) -> list[tuple[int, int]]:
        """(output ident, errno) of files that failed since the last call."""
        with self._reg:
            out, self._failures = self._failures, []
            return out

    def registered(self) -> int:
        with self._reg:
            return len(self._timelines)


def _open(path: bytes, header: bytes) -> int:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, header)  # one write: never a half header
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
