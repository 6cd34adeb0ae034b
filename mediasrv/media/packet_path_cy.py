"""The Cython packet paths: adapters of ``cext.relay.Relay`` to
:class:`~mediasrv.media.packet_path.PacketPath`.

* :class:`CyPacketPath`: per-datagram work runs in C inside ``Relay.on_readable``,
  registered with ``loop.add_reader`` per RTP socket (drained with recvmmsg).
* :class:`CyThreadPacketPath`: the same C code runs on one engine thread of its own (epoll +
  recvmmsg over every socket, without the GIL); the event loop only makes control calls and
  drains the rare events the thread queues (an eventfd wakes it).

No Python object is created per packet. Rare events (latch, digit) reach this adapter from a
C queue; a recorder exposing a ``cext.recbuf.StereoTimeline`` as ``timeline`` is fed from C,
any other recorder gets one queued ``feed`` call per packet (see bench/RESULTS_media.md).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Sequence

from cext import playout as _playout
from cext import relay as _relay
from cext.recbuf import StereoTimeline
from mediasrv.media.api import Direction, LegStats, PlayEnd
from mediasrv.media.codec import Codec
from mediasrv.media.packet_path import LegParams, PacketEvents, RecordSink

_SENDS = (Direction.SENDRECV, Direction.SENDONLY)
TIMER_RESOLUTION = 0.001  # seconds: libuv (uvloop) timers count milliseconds
_RECEIVES = (Direction.SENDRECV, Direction.RECVONLY)


class CyPacketPath:
    """The Cython :class:`~mediasrv.media.packet_path.PacketPath` (event-loop callbacks)."""

    name = "cython"

    def __init__(self, loop: asyncio.AbstractEventLoop, events: PacketEvents) -> None:
        self._loop = loop
        self._events = events
        self._fds: dict[int, int] = {}
        self._codecs: dict[int, Codec] = {}
        self._sinks: dict[int, RecordSink] = {}
        self._relay = _relay.Relay(
            self._on_latched,
            self._on_dtmf,
            self._on_record,
            self._on_foreign_source,
            self._on_play_end,
        )
        self._pacer: asyncio.TimerHandle | None = None
        self._pacer_at = 0.0

    def _clock_offset(self) -> float:
        """loop.time() minus the C side's CLOCK_MONOTONIC seconds."""
        return self._loop.time() - time.monotonic()

    # ---- PacketPath -----------------------------------------------------------------------

    def open(self, leg: int, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._relay.open(
            leg, fd, random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        )
        self._fds[leg] = fd
        self._watch(fd, leg)

    def _watch(self, fd: int, leg: int) -> None:
        self._loop.add_reader(fd, self._relay.on_readable, leg)

    def _unwatch(self, fd: int) -> None:
        self._loop.remove_reader(fd)

    def configure(self, leg: int, params: LegParams) -> None:
        rx = {pt: int(codec) for pt, codec in params.rx_pts.items()}
        te_pt = params.te_pt if params.te_pt is not None else -1
        self._relay.configure(
            leg,
            int(params.codec),
            params.pt,
            rx,
            te_pt,
            params.remote,
            params.direction in _SENDS,
            params.direction in _RECEIVES,
            params.latch_learning,
            params.inband_dtmf,
        )
        self._codecs[leg] = params.codec

    def bridge(self, a: int, b: int) -> None:
        self._relay.bridge(a, b)

    def unbridge(self, leg: int) -> None:
        self._relay.unbridge(leg)

    def set_recorder(self, leg: int, sink: RecordSink | None, channel: int) -> None:
        """A sink exposing a ``cext.recbuf.StereoTimeline`` as ``timeline`` is fed from C with
        no Python call per packet; any other sink gets ``feed`` calls (one per packet)."""
        timeline = getattr(sink, "timeline", None)
        if isinstance(timeline, StereoTimeline):
            self._sinks.pop(leg, None)
            self._relay.set_recording(leg, False, channel)
            self._relay.set_timeline(leg, timeline, channel, self._clock_offset())
            return
        self._relay.set_timeline(leg, None, channel, 0.0)
        if sink is None:
            self._sinks.pop(leg, None)
        else:
            self._sinks[leg] = sink
        self._relay.set_recording(leg, sink is not None, channel)

    def prompt_frames(self, pcm: bytes) -> _playout.PromptFrames:
        return _playout.PromptFrames(pcm)

    def play(
        self,
        leg: int,
        playlist: Sequence[object],
        *,
        loop: bool,
        mix: bool,
        barge_in: bool,
        play_id: int,
    ) -> None:
        due = self._relay.play(leg, playlist, loop, mix, barge_in, play_id)  # type: ignore[arg-type]
        self._schedule(due)

    def stop_play(self, leg: int, play_id: int) -> bool:
        return bool(self._relay.stop_play(leg, play_id))

    def python_calls(self) -> int:
        return int(self._relay.python_calls)

    def packet_totals(self) -> tuple[int, int]:
        rx, tx = self._relay.totals()
        return int(rx), int(tx)

    def _schedule(self, due: float) -> None:
        """The callback path's one playout timer (loop clock), at the earliest due frame."""
        when = due + self._clock_offset()
        if self._pacer is not None:
            if self._pacer_at <= when:
                return
            self._pacer.cancel()
        self._pacer = self._loop.call_at(when, self._pace)
        self._pacer_at = when

    def _pace(self) -> None:
        self._pacer = None
        # uvloop's timers have millisecond resolution and may fire up to that early: frames
        # due within it go now, rather than spinning on timers that find nothing due.
        nxt = self._relay.pace(TIMER_RESOLUTION)
        if nxt:
            self._schedule(nxt)

    def last_rx(self, leg: int) -> float:
        t = float(self._relay.last_rx(leg))
        return t + self._clock_offset() if t else 0.0

    def last_rx_many(self, legs: Sequence[int]) -> list[float]:
        """One lock for every leg: a per-leg ``last_rx`` took the engine thread's mutex 2,000
        times a second with 2,000 held callers, each one a chance to delay due frames."""
        offset = self._clock_offset()
        return [t + offset if t else 0.0 for t in self._relay.last_rx_many(legs)]

    def lateness(self, reset: bool = False) -> tuple[float, float, list[int]]:
        """Prompt frames' send time minus grid time, as a histogram (cext.relay.Relay.lateness)."""
        return self._relay.lateness(reset)

    def stats(self, leg: int) -> LegStats:
        pin, pout, bin_, bout, lost, jitter_ms, latched, foreign = self._relay.stats(leg)
        codec = self._codecs.get(leg)
        return LegStats(
            packets_in=pin,
            packets_out=pout,
            bytes_in=bin_,
            bytes_out=bout,
            packets_lost=lost,
            jitter_ms=jitter_ms,
            codec=codec.name if codec is not None else "",
            remote=f"{latched[0]}:{latched[1]}" if latched else "",
            foreign_dropped=foreign,
        )

    def malformed(self, leg: int) -> int:
        return int(self._relay.malformed(leg))

    def close(self, leg: int) -> None:
        fd = self._fds.pop(leg, None)
        if fd is None:
            return
        self._unwatch(fd)
        self._relay.close(leg)
        self._sinks.pop(leg, None)
        self._codecs.pop(leg, None)
        if not self._fds and self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None

    # ---- rare events from C ---------------------------------------------------------------

    def _on_latched(self, leg: int, addr: tuple[str, int]) -> None:
        self._events.on_latched(leg, addr)

    def _on_foreign_source(self, leg: int, addr: tuple[str, int]) -> None:
        self._events.on_foreign_source(leg, addr)

    def _on_play_end(self, leg: int, play_id: int, reason: int, prompt_index: int) -> None:
        end = PlayEnd.BARGED_IN if reason == 1 else PlayEnd.COMPLETED
        self._events.on_play_end(leg, play_id, end, prompt_index)

    def _on_dtmf(self, leg: int, digit: str, start: float, duration: float, inband: bool) -> None:
        self._events.on_dtmf(leg, digit, start, duration, "inband" if inband else "rfc4733")

    def _on_record(
        self, leg: int, channel: int, ssrc: int, ts: int, codec: int, payload: bytes, now: float
    ) -> None:
        sink = self._sinks.get(leg)
        if sink is not None:
            sink.feed(channel, ssrc, ts, Codec(codec), payload, now + self._clock_offset())


class CyThreadPacketPath(CyPacketPath):
    """The Cython packet path on its own engine thread (epoll + recvmmsg, no GIL).

    The thread runs while at least one leg is open (it starts with the first and stops,
    promptly, with the last), so an idle engine holds no thread.
    """

    name = "cython-thread"
    PACE_US = 0  # > 0: sleep between rounds (fewer wake-ups, that much more latency)

    def __init__(self, loop: asyncio.AbstractEventLoop, events: PacketEvents) -> None:
        super().__init__(loop, events)
        self._wake: int | None = None

    def _watch(self, fd: int, leg: int) -> None:
        if self._wake is None:  # the engine thread's epoll watches every open leg
            self._wake = self._relay.start_thread(self.PACE_US)
            self._loop.add_reader(self._wake, self._relay.drain_events)

    def _unwatch(self, fd: int) -> None:
        pass

    def _schedule(self, due: float) -> None:
        pass  # the engine thread paces playout itself (a timerfd for the next due frame)

    def close(self, leg: int) -> None:
        super().close(leg)
        if not self._fds:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop the engine thread and deliver what it queued last."""
        if self._wake is None:
            return
        self._loop.remove_reader(self._wake)
        self._wake = None
        self._relay.stop_thread()
        self._relay.drain_events()
