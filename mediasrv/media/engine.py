"""The media control plane: :class:`MediaEngine` implements :class:`~mediasrv.media.api.MediaControl`.

It owns the port pool, per-call and per-leg state (negotiated codecs, directions, remote
addresses), each call's recordings (:mod:`mediasrv.media.recorder`; their files are written
by the kernel's own thread), prompt players and the single periodic timer of the engine
(failed recordings, the no-RTP timeout). Per-packet work happens behind a
:class:`~mediasrv.media.packet_path.PacketPath` built by ``packet_path_factory``; the pure-
Python reference is the default, a Cython twin plugs in the same way.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mediasrv.media import kernels, sdp
from mediasrv.media.api import (
    Direction,
    DtmfEvent,
    LegMedia,
    LegRole,
    LegStats,
    MediaError,
    MediaEvent,
    MediaEventSink,
    MediaReport,
    NoCommonCodec,
    PlayEnd,
    PlayId,
    PromptFinished,
    RecordingId,
    RecordingResult,
    RecordMode,
    RtpTimeout,
    SdpError,
)
from mediasrv.media.codec import Codec
from mediasrv.media.digits import DEFAULT_WINDOW, DigitSource, DigitStream, InbandPolicy
from mediasrv.media.packet_path import LegParams, PacketEvents, PacketPath
from mediasrv.media.packet_path_py import PyPacketPath
from mediasrv.media.ports import PortPair, PortPool
from mediasrv.media.prompt import Prompt, PromptCache
from mediasrv.media.recorder import CallRecorder, RecordingFormat, RecordingWriter

log = logging.getLogger(__name__)

SUPPORTED = (Codec.PCMU, Codec.PCMA)
LEG_ID_QUARANTINE = 1024  # freed leg ids that wait before one is reused
TICK = 0.25  # seconds between writer polls (failed files); the no-RTP check runs every 4th
PacketPathFactory = Callable[[asyncio.AbstractEventLoop, PacketEvents], PacketPath]
_CHANNEL = {LegRole.CALLER: 0, LegRole.OPERATOR: 1}


class _Leg:
    __slots__ = (
        "allocated_at",
        "barge_in",
        "call",
        "digits",
        "id",
        "media",
        "negotiated",
        "origin",
        "our_offer",
        "pair",
        "partner",
        "play",
        "recorded",
        "timed_out",
        "watched_since",
    )

    def __init__(
        self, leg_id: int, media: LegMedia, pair: PortPair, call: _Call, session: int
    ) -> None:
        self.id = leg_id
        self.media = media
        self.pair = pair
        self.call = call
        self.origin = sdp.OriginState(_session_id(session), media.local_host)
        self.our_offer: sdp.SessionDescription | None = None
        self.negotiated: sdp.Negotiated | None = None
        # Loop time the no-RTP clock starts from: the (re-)negotiation or the bridge; None
        # before the leg is negotiated (an offered operator leg is not yet expected to send).
        self.watched_since: float | None = None
        self.timed_out = False
        self.play: _Play | None = None  # what plays to this leg (the packet path paces it)
        self.partner: _Leg | None = None  # the leg RTP is relayed to and from
        self.allocated_at = 0.0  # loop time (signalled digits are stamped from it)
        self.digits: DigitStream | None = None  # set by the engine: the leg's one digit stream
        self.recorded = False  # feeding the call's recording timeline


class _Play:
    """One play() on one leg: its id, the names of its playlist's prompts, and whether a
    digit stops it (the packet path stops it in C for RTP digits; SIP INFO digits here)."""

    __slots__ = ("barge_in", "id", "names")

    def __init__(self, play_id: PlayId, names: tuple[str, ...], barge_in: bool) -> None:
        self.id = play_id
        self.names = names
        self.barge_in = barge_in


class _Call:
    __slots__ = ("call_id", "legs", "recorder", "recordings", "whole_call")

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.legs: list[_Leg] = []
        self.recorder: CallRecorder | None = None  # from the first record() on
        # Every recording of the call in start order; None while it runs.
        self.recordings: dict[RecordingId, RecordingResult | None] = {}
        self.whole_call: RecordingId | None = None  # the first stereo one: MediaReport.recording


def _pcm(prompt: Prompt) -> bytes:
    """A prompt's samples as 16-bit little-endian PCM (what ``prompt_frames`` takes)."""
    return bytes(prompt.pcm.astype("<i2").tobytes())


def _session_id(session: int) -> int:
    # o= sess-id only needs to be unique per session (RFC 4566 §5.2); NTP-like magnitude.
    # One per leg ever allocated (leg ids are reused, sessions are not).
    return 3_900_000_000 + session


def default_packet_path() -> PacketPathFactory:
    """The packet path used when the caller names none, chosen in this one place.

    With the Cython kernels (the default) it is the Cython relay on its own GIL-free engine
    thread (epoll + recvmmsg; measured in bench/RESULTS.md: less CPU than per-datagram
    callbacks, and no loss while the event loop is busy). ``MEDIASRV_NO_EXTENSIONS=1``
    selects the pure-Python reference on the event loop.
    """
    if kernels.ENGINE == "cython":
        from mediasrv.media.packet_path_cy import CyThreadPacketPath

        return CyThreadPacketPath
    return PyPacketPath


def _expects_rtp(leg: _Leg) -> bool:
    """Whether the peer should be sending: not while it holds us (RFC 3264 §8.4)."""
    n = leg.negotiated
    return n is None or n.direction in (Direction.SENDRECV, Direction.RECVONLY)


class _Events:
    """Adapter from packet-path callbacks to the engine (keeps them off its public API)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: MediaEngine) -> None:
        self._engine = engine

    def on_dtmf(
        self, leg: int, digit: str, start: float, duration: float, source: str = "rfc4733"
    ) -> None:
        self._engine._dtmf(leg, digit, start, duration, source)

    def on_latched(self, leg: int, addr: tuple[str, int]) -> None:
        log.debug("leg %d latched to %s:%d", leg, addr[0], addr[1])

    def on_foreign_source(self, leg: int, addr: tuple[str, int]) -> None:
        self._engine._foreign_source(leg, addr)

    def on_play_end(self, leg: int, play_id: int, reason: PlayEnd, prompt_index: int) -> None:
        self._engine._play_end(leg, PlayId(play_id), reason, prompt_index)


class MediaEngine:
    """In-process media engine for every call of the server."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port_min: int,
        port_max: int,
        on_event: MediaEventSink,
        no_rtp_timeout: float = 60.0,
        packet_path_factory: PacketPathFactory | None = None,
        recording_format: str = "pcm16",
        latch_learning: float = 0.0,
        digit_window: float = DEFAULT_WINDOW,
        inband_dtmf: InbandPolicy = InbandPolicy.CALLER,
    ) -> None:
        self._loop = loop
        self._digit_window = digit_window  # RFC 4733 wins over tones / INFO within it
        self._inband = inband_dtmf  # which legs run the Goertzel detector
        # Seconds after a leg's first RTP packet during which another source may take the
        # leg over (NAT at call start); 0 locks every leg to its first source.
        self._latch_learning = latch_learning
        self._host = host
        self._on_event = on_event
        self._timeout = no_rtp_timeout
        self._ports = PortPool(host, port_min, port_max)
        factory = packet_path_factory or default_packet_path()
        self._path = factory(loop, _Events(self))
        self.engine_name: str = self._path.name
        self._format = RecordingFormat(recording_format)
        self._writer = RecordingWriter()
        self._prompts = PromptCache()
        self._calls: dict[str, _Call] = {}
        self._legs: dict[LegMedia, _Leg] = {}
        self._by_id: dict[int, _Leg] = {}
        self._next_id = 1
        # Freed leg ids, reused oldest first once LEG_ID_QUARANTINE later ones wait: the
        # packet paths keep legs in arrays indexed by id (bounded by the peak number of
        # legs, not by every leg ever opened), and an event still queued for a closed leg
        # can never reach the leg that reuses its id.
        self._free_ids: collections.deque[int] = collections.deque()
        self._sessions = itertools.count(1)
        self._play_ids = itertools.count(1)
        self._plays: dict[PlayId, _Leg] = {}
        self._recording_calls: dict[RecordingId, _Call] = {}  # running recordings
        self._next_recording = 1
        self._timer: asyncio.TimerHandle | None = None
        self._ticks = 0

    # ---- MediaControl ---------------------------------------------------------------------

    def allocate(self, call_id: str, role: LegRole) -> LegMedia:
        pair = self._ports.allocate()
        leg_id = self._take_leg_id()
        media = LegMedia(call_id, role, self._host, pair.port)
        try:
            self._path.open(leg_id, pair.rtp)
        except Exception:
            self._ports.free(pair)
            raise
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(call_id)
        leg = _Leg(leg_id, media, pair, call, next(self._sessions))
        leg.allocated_at = self._loop.time()
        leg.digits = self._digit_stream(leg)
        call.legs.append(leg)
        self._legs[media] = leg
        self._by_id[leg_id] = leg
        if call.recorder is not None:
            self._feed_recording(call)
        self._start_timer()
        return media

    def offer(
        self, leg: LegMedia, like: bytes | None = None, direction: Direction | None = None
    ) -> bytes:
        state = self._leg(leg)
        codecs: list[Codec] = list(SUPPORTED)
        te_pt: int | None = sdp.DEFAULT_TE_PT
        if like is not None:
            model = sdp.parse(like)
            mirrored, like_te = sdp.offered_codecs(model)
            if not mirrored:
                raise NoCommonCodec("the SDP to mirror has no PCMU/PCMA audio stream")
            # The other leg's codecs first (no transcoding if the peer takes one), then the
            # rest of ours: we transcode PCMU<->PCMA rather than fail the call.
            codecs = mirrored + [c for c in SUPPORTED if c not in mirrored]
            te_pt = like_te if like_te is not None else te_pt
            if direction is None:
                # A hold re-INVITE on one leg becomes the same hold on the other (RFC 3264 §8.4).
                direction = sdp.offered_direction(model)
        offer = sdp.build_offer(
            leg.local_host, leg.local_port, codecs, te_pt, direction or Direction.SENDRECV
        )
        state.our_offer = offer
        return state.origin.stamp(offer)

    def answer(self, leg: LegMedia, offer: bytes, prefer: list[str] | None = None) -> bytes:
        state = self._leg(leg)
        answer, negotiated = sdp.answer_offer(
            sdp.parse(offer), leg.local_host, leg.local_port, SUPPORTED, prefer
        )
        self._apply(state, negotiated)
        return state.origin.stamp(answer)

    def accept_answer(self, leg: LegMedia, answer: bytes) -> None:
        state = self._leg(leg)
        if state.our_offer is None:
            raise SdpError("an SDP answer arrived but we made no offer on this leg")
        self._apply(state, sdp.accept_answer(state.our_offer, sdp.parse(answer)))

    def bridge(self, a: LegMedia, b: LegMedia) -> None:
        """Relay both ways between ``a`` and ``b``; a leg bridged elsewhere leaves its old
        partner first (queue -> operator, first operator -> second operator). Each outgoing
        stream keeps our SSRC and continues its sequence numbers and timestamps, with the
        marker bit on the first relayed packet (RFC 3550 §5.1)."""
        la, lb = self._leg(a), self._leg(b)
        if la.call is not lb.call or la is lb:
            raise MediaError(
                f"cannot bridge {a.call_id}/{a.role.value} with {b.call_id}/{b.role.value}"
            )
        if la.partner is lb:
            return  # already bridged to each other (early media, then the answer)
        for leg in (la, lb):
            if leg.partner is not None:
                self._unbridge(leg)
        self._path.bridge(la.id, lb.id)
        la.partner, lb.partner = lb, la
        now = self._loop.time()
        for leg in (la, lb):
            leg.watched_since, leg.timed_out = now, False
        call = la.call
        # The right channel follows the operator leg that is bridged now.
        self._feed_recording(call)

    def unbridge(self, leg: LegMedia) -> None:
        """Stop relaying between ``leg`` and its partner; both keep receiving (digits, the
        caller's recording channel) and may be played to or bridged again."""
        state = self._leg(leg)
        if state.partner is not None:
            self._unbridge(state)

    # ---- recordings (F12) -----------------------------------------------------------------

    def record(
        self, call_id: str, path: Path, mode: RecordMode, *, stereo: bool = True
    ) -> RecordingId:
        call = self._calls.get(call_id)
        if call is None:
            raise MediaError(f"record: no media allocated for call {call_id}")
        if mode is RecordMode.OFF:
            raise MediaError("record: RecordMode.OFF records nothing (do not call record)")
        if call.recorder is None:
            call.recorder = CallRecorder(self._writer, self._loop.time() - time.monotonic())
        ident = RecordingId(self._next_recording)
        self._next_recording += 1
        call.recorder.start(ident, path, mode, stereo, self._format, self._loop.time())
        call.recordings[ident] = None
        if stereo and call.whole_call is None:
            call.whole_call = ident
        self._recording_calls[ident] = call
        self._feed_recording(call)
        return ident

    def stop_record(self, recording: RecordingId) -> RecordingResult:
        call = self._recording_calls.pop(recording, None)
        if call is None:
            raise MediaError(f"stop_record: no running recording {recording}")
        assert call.recorder is not None
        result = call.recorder.stop(recording, self._loop.time())
        call.recordings[recording] = result
        self._feed_recording(call)
        return result

    def pause_record(self, recording: RecordingId) -> None:
        """PCI: silence from now on (a second pause while paused changes nothing)."""
        call = self._recording_calls.get(recording)
        if call is None:
            raise MediaError(f"pause_record: no running recording {recording}")
        assert call.recorder is not None
        call.recorder.pause(recording, self._loop.time())

    def resume_record(self, recording: RecordingId) -> None:
        call = self._recording_calls.get(recording)
        if call is None:
            raise MediaError(f"resume_record: no running recording {recording}")
        assert call.recorder is not None
        call.recorder.resume(recording, self._loop.time())

    def play(
        self,
        leg: LegMedia,
        playlist: Sequence[Path],
        *,
        loop: bool = False,
        mix: bool = False,
        barge_in: bool = False,
    ) -> PlayId:
        """Play prompts back to back to ``leg`` only (see :meth:`MediaControl.play`).

        The packet path paces the frames from sample counts (on the Cython engine thread: in
        C, with no Python per frame) and shares each prompt's prepared G.711 frames between
        every leg that plays it. ``mix`` on a bridged leg is a whisper: the prompt is added to
        what the partner says, so the operator hears both and the caller neither the prompt
        nor a gap; the recording keeps it off both channels (it records what the legs send).
        """
        state = self._leg(leg)
        if state.negotiated is None:
            raise MediaError(f"play: leg {leg.call_id}/{leg.role.value} has no negotiated media")
        if isinstance(playlist, (str, Path)):
            raise TypeError("play() takes a playlist: a sequence of prompt paths")
        if not playlist:
            raise MediaError("play: the playlist is empty")
        prompts = [self._prompts.load(Path(path)) for path in playlist]
        frames = [self._shared_frames(prompt) for prompt in prompts]
        play_id = PlayId(next(self._play_ids))
        self._stop_play(state)
        self._path.play(
            state.id, frames, loop=loop, mix=mix, barge_in=barge_in, play_id=play_id
        )
        state.play = _Play(play_id, tuple(prompt.name for prompt in prompts), barge_in)
        self._plays[play_id] = state
        return play_id

    def stop_play(self, play: PlayId) -> None:
        """Stop a play without a PromptFinished event (relay resumes); unknown ids are
        ignored (the play may have ended a moment ago)."""
        state = self._plays.get(play)
        if state is not None and state.play is not None and state.play.id == play:
            self._stop_play(state)

    async def preload(self, wav: Path) -> None:
        """Read, check and prepare a prompt in a thread, so that :meth:`play` never touches
        the disk nor encodes."""
        prompt = await self._loop.run_in_executor(None, self._prompts.load, wav)
        if prompt.shared is None:
            shared = await self._loop.run_in_executor(None, self._path.prompt_frames, _pcm(prompt))
            if prompt.shared is None:
                prompt.shared = shared

    def release(self, call_id: str) -> MediaReport:
        report = MediaReport(call_id, engine=self.engine_name)
        call = self._calls.pop(call_id, None)
        if call is None:
            return report  # idempotent: a second release (BYE and timeout racing) is harmless
        if call.recorder is not None:
            # Detach the recorder while the legs still exist, then close the legs.
            self._close_recordings(call, report)
        for leg in call.legs:
            stats = self._close_leg(leg)
            if self._better(report.legs.get(leg.media.role), stats, leg):
                report.legs[leg.media.role] = stats
        # _Call <-> _Leg is a reference cycle: break it so the call's objects (sockets, SDP)
        # go with reference counting now, not in a long cyclic-GC pass under load.
        call.legs.clear()
        if not self._calls:
            self._stop_timer()
        return report

    def release_leg(self, leg: LegMedia) -> LegStats:
        """Close one leg (a failed or finished forwarding attempt), keeping the rest of the
        call. Its socket is closed at once, so RTP still arriving for it is dropped by the
        kernel, and its port is quarantined (:class:`PortPool`) so that the next legs do
        not get it: late packets of the attempt can latch nothing."""
        state = self._leg(leg)
        state.call.legs.remove(state)
        stats = self._close_leg(state)
        self._feed_recording(state.call)
        return stats

    def active_ports(self) -> int:
        return self._ports.in_use()

    async def close(self) -> None:
        for call_id in list(self._calls):
            self.release(call_id)
        self._stop_timer()
        await self._writer.close()

    # ---- extras for the call flow and tests -----------------------------------------------

    def codec_of(self, leg: LegMedia) -> str | None:
        """The codec negotiated on ``leg`` ("PCMU"/"PCMA"), to ``prefer`` it on the other leg."""
        negotiated = self._leg(leg).negotiated
        return negotiated.codec.name if negotiated is not None else None

    def stats(self, leg: LegMedia) -> LegStats:
        return self._path.stats(self._leg(leg).id)

    async def flush(self) -> None:
        """Wait until every stopped recording is completely on disk (drain, analysis)."""
        await self._writer.drain()

    async def flush_recordings(self) -> None:
        await self.flush()

    # ---- internals ------------------------------------------------------------------------

    def _take_leg_id(self) -> int:
        if len(self._free_ids) > LEG_ID_QUARANTINE:
            return self._free_ids.popleft()
        leg_id = self._next_id
        self._next_id += 1
        return leg_id

    def _leg(self, leg: LegMedia) -> _Leg:
        state = self._legs.get(leg)
        if state is None:
            raise MediaError(f"unknown or released media leg {leg.call_id}/{leg.role.value}")
        return state

    def _apply(self, leg: _Leg, negotiated: sdp.Negotiated) -> None:
        leg.negotiated = negotiated
        if leg.digits is not None:
            # With telephone-event negotiated, tones and INFO wait for a possible event.
            leg.digits.expects_rfc4733 = negotiated.te_pt is not None
        # Negotiated media starts the no-RTP clock, and a re-INVITE (hold, resume) restarts
        # it: the peer may have been silent on purpose until now.
        leg.watched_since, leg.timed_out = self._loop.time(), False
        self._path.configure(
            leg.id,
            LegParams(
                codec=negotiated.codec,
                pt=negotiated.pt,
                rx_pts=dict(negotiated.rx_pts),
                te_pt=negotiated.te_pt,
                remote=negotiated.remote,
                direction=negotiated.direction,
                latch_learning=self._latch_learning,
                inband_dtmf=self._inband.detects(
                    leg.media.role is LegRole.CALLER, negotiated.te_pt is not None
                ),
            ),
        )

    def _feed_recording(self, call: _Call) -> None:
        """Which legs feed the call's timeline: the caller leg, and the operator leg that is
        bridged, each while a running recording wants its channel (F12)."""
        recorder = call.recorder
        wanted = recorder.channels() if recorder is not None else frozenset()
        for leg in call.legs:
            channel = _CHANNEL[leg.media.role]
            feeds = channel in wanted and (
                leg.media.role is LegRole.CALLER or leg.partner is not None
            )
            if feeds != leg.recorded:
                self._path.set_recorder(leg.id, recorder if feeds else None, channel)
                leg.recorded = feeds

    def _close_recordings(self, call: _Call, report: MediaReport) -> None:
        """The call ends: stop its running recordings at its last audio and list them all."""
        recorder = call.recorder
        assert recorder is not None
        for leg in call.legs:
            if leg.recorded:
                self._path.set_recorder(leg.id, None, 0)
                leg.recorded = False
        for result in recorder.close():
            call.recordings[result.recording_id] = result
            self._recording_calls.pop(result.recording_id, None)
        call.recorder = None
        report.recordings = [r for r in call.recordings.values() if r is not None]
        whole = call.recordings.get(call.whole_call) if call.whole_call is not None else None
        if whole is not None and whole.path is not None:
            # Never point the call log at a file that failed.
            report.recording, report.recording_bytes = whole.path, whole.bytes

    def _poll_recordings(self) -> None:
        for ident, err in self._writer.poll():
            call = self._recording_calls.get(RecordingId(ident))
            where = f" of call {call.call_id}" if call is not None else ""
            log.error("recording %d%s failed: %s", ident, where, os.strerror(err))

    def _unbridge(self, leg: _Leg) -> None:
        """Part ``leg`` from its partner; an operator leg stops feeding the recording (the
        right channel belongs to whichever operator is bridged now)."""
        partner = leg.partner
        if partner is None:
            return
        self._path.unbridge(leg.id)
        for one in (leg, partner):
            one.partner = None
        self._feed_recording(leg.call)

    def _close_leg(self, leg: _Leg) -> LegStats:
        self._stop_play(leg)
        self._unbridge(leg)
        if leg.digits is not None:
            leg.digits.close()
            leg.digits = None  # leg -> stream -> callbacks -> leg: break the cycle (see release)
        stats = self._path.stats(leg.id)
        if stats.foreign_dropped:
            m = leg.media
            log.warning(
                "call %s %s leg: dropped %d RTP packets from sources other than the latched %s",
                m.call_id,
                m.role.value,
                stats.foreign_dropped,
                stats.remote or "(none)",
            )
        self._path.close(leg.id)
        self._ports.free(leg.pair)
        del self._legs[leg.media]
        del self._by_id[leg.id]
        self._free_ids.append(leg.id)
        return stats

    @staticmethod
    def _better(current: LegStats | None, candidate: LegStats, leg: _Leg) -> bool:
        """Which of several legs of one role goes into the report: the bridged one."""
        if current is None or leg.partner is not None:
            return True
        return candidate.packets_in > current.packets_in

    def _shared_frames(self, prompt: Prompt) -> object:
        """The prompt prepared once for the packet path (shared by every leg playing it)."""
        if prompt.shared is None:
            prompt.shared = self._path.prompt_frames(_pcm(prompt))
        return prompt.shared

    def _stop_play(self, leg: _Leg) -> None:
        play = leg.play
        if play is not None:
            leg.play = None
            self._plays.pop(play.id, None)
            self._path.stop_play(leg.id, play.id)

    def _play_end(self, leg_id: int, play_id: PlayId, reason: PlayEnd, index: int) -> None:
        """The packet path reports a play that ended by itself (played out or barged in)."""
        leg = self._by_id.get(leg_id)
        if leg is None or leg.play is None or leg.play.id != play_id:
            return  # stopped or replaced meanwhile: stop_play emits nothing
        names = leg.play.names
        leg.play = None
        self._plays.pop(play_id, None)
        m = leg.media
        # Played out: the last prompt played (even if its few samples began no frame).
        complete = reason is PlayEnd.COMPLETED or not 0 <= index < len(names)
        name = names[-1] if complete else names[index]
        self._emit(PromptFinished(m.call_id, m.role, name, play_id, reason))

    # ---- the digit stream of each leg (issue 9 §4; media/digits.py) -------------------------

    def signalled_digit(self, leg: LegMedia, digit: str, duration: float) -> None:
        """A digit from SIP INFO on ``leg``: into the leg's one digit stream. Its ``start``
        is seconds since the leg was allocated (signalling has no media clock)."""
        state = self._leg(leg)
        if state.digits is not None:
            start = self._loop.time() - state.allocated_at
            state.digits.feed(digit.upper(), start, duration, DigitSource.INFO)

    def _digit_stream(self, leg: _Leg) -> DigitStream:
        leg.allocated_at = self._loop.time()

        def emit(digit: str, start: float, duration: float, source: DigitSource) -> None:
            self._digit(leg, digit, start, duration, source)

        def merged(kept: DigitSource, dropped: DigitSource, offset: float) -> None:
            # One line per merged press (not per packet): the offsets the window must cover.
            log.info(
                "dtmf duplicate merged",
                extra={
                    "call_id": leg.media.call_id,
                    "leg": leg.media.role.value,
                    "kept": kept.value,
                    "dropped": dropped.value,
                    "offset_ms": round(offset * 1000, 1),
                },
            )

        return DigitStream(
            emit, self._loop.time, self._loop.call_later, self._digit_window, merged
        )

    def _dtmf(self, leg_id: int, digit: str, start: float, duration: float, source: str) -> None:
        """A raw detection from the packet path (RFC 4733 event or in-band tone)."""
        leg = self._by_id.get(leg_id)
        if leg is not None and leg.digits is not None:
            leg.digits.feed(digit, start, duration, DigitSource(source))

    def _digit(
        self, leg: _Leg, digit: str, start: float, duration: float, source: DigitSource
    ) -> None:
        """One merged key press of ``leg``: the only place a DtmfEvent is emitted."""
        m = leg.media
        self._emit(DtmfEvent(m.call_id, m.role, digit, start, duration, source.value))
        play = leg.play
        if source is DigitSource.INFO and play is not None and play.barge_in:
            # RTP digits stop a play in the packet path (in C); a SIP INFO digit does here.
            self._stop_play(leg)
            name = play.names[0] if play.names else ""
            self._emit(PromptFinished(m.call_id, m.role, name, play.id, PlayEnd.BARGED_IN))

    def _foreign_source(self, leg_id: int, addr: tuple[str, int]) -> None:
        """One line per latch, not per packet: a flood cannot flood the log (all counted)."""
        leg = self._by_id.get(leg_id)
        if leg is None:
            return
        m = leg.media
        log.warning(
            "call %s %s leg: dropping RTP from %s:%d, not the latched source %s",
            m.call_id,
            m.role.value,
            addr[0],
            addr[1],
            self._path.stats(leg_id).remote or "(none)",
        )

    def _emit(self, event: MediaEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("media event sink failed on %r", event)

    # ---- the one periodic timer -----------------------------------------------------------

    def _start_timer(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(TICK, self._tick)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        now = self._loop.time()
        self._timer = self._loop.call_later(TICK, self._tick)
        self._poll_recordings()
        self._ticks += 1
        if self._ticks % 4 == 0 or self._timeout < 4 * TICK:
            self._check_rtp(now)

    def _check_rtp(self, now: float) -> None:
        """Emit RtpTimeout once for a negotiated leg silent for ``no_rtp_timeout`` seconds,
        bridged or not (a caller who vanished during an IVR menu or in the queue)."""
        watched = [
            (leg, leg.watched_since)
            for leg in self._by_id.values()
            if leg.watched_since is not None and _expects_rtp(leg)
        ]
        last_rx = self._path.last_rx_many([leg.id for leg, _ in watched])  # one engine lock
        for (leg, since), rx in zip(watched, last_rx, strict=True):
            last = max(rx, since)
            silent = now - last
            if silent < self._timeout:
                leg.timed_out = False
            elif not leg.timed_out:
                leg.timed_out = True
                self._emit(RtpTimeout(leg.media.call_id, leg.media.role, silent))
