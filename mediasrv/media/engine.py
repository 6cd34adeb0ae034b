"""The media control plane: :class:`MediaEngine` implements :class:`~mediasrv.media.api.MediaControl`.

It owns the port pool, per-call and per-leg state (negotiated codecs, directions, remote
addresses), recorders, prompt players and the single periodic timer of the engine (recorder
commits and the no-RTP timeout). Per-packet work happens behind a
:class:`~mediasrv.media.packet_path.PacketPath` built by ``packet_path_factory``; the pure-
Python reference is the default, a Cython twin plugs in the same way.
"""

from __future__ import annotations

import asyncio
import logging
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
    RecordMode,
    RtpTimeout,
    SdpError,
)
from mediasrv.media.codec import Codec
from mediasrv.media.packet_path import LegParams, PacketEvents, PacketPath
from mediasrv.media.packet_path_py import PyPacketPath
from mediasrv.media.ports import PortPair, PortPool
from mediasrv.media.prompt import Prompt, PromptCache
from mediasrv.media.recorder import (
    RecordingFormat,
    RecordingWriter,
    StereoRecorder,
    recorder_class,
)

log = logging.getLogger(__name__)

SUPPORTED = (Codec.PCMU, Codec.PCMA)
TICK = 0.25  # seconds between recorder commits; the no-RTP check runs every 4th tick
PacketPathFactory = Callable[[asyncio.AbstractEventLoop, PacketEvents], PacketPath]
_CHANNEL = {LegRole.CALLER: 0, LegRole.OPERATOR: 1}
_RECORDED = {
    RecordMode.BOTH: (LegRole.CALLER, LegRole.OPERATOR),
    RecordMode.CALLER: (LegRole.CALLER,),
    RecordMode.OPERATOR: (LegRole.OPERATOR,),
    RecordMode.OFF: (),
}


class _Leg:
    __slots__ = (
        "bridged_at",
        "call",
        "id",
        "media",
        "negotiated",
        "origin",
        "our_offer",
        "pair",
        "play",
        "timed_out",
    )

    def __init__(self, leg_id: int, media: LegMedia, pair: PortPair, call: _Call) -> None:
        self.id = leg_id
        self.media = media
        self.pair = pair
        self.call = call
        self.origin = sdp.OriginState(_session_id(leg_id), media.local_host)
        self.our_offer: sdp.SessionDescription | None = None
        self.negotiated: sdp.Negotiated | None = None
        self.bridged_at: float | None = None
        self.timed_out = False
        self.play: _Play | None = None  # what plays to this leg (the packet path paces it)


class _Play:
    """One play() on one leg: its id and the names of its playlist's prompts."""

    __slots__ = ("id", "names")

    def __init__(self, play_id: PlayId, names: tuple[str, ...]) -> None:
        self.id = play_id
        self.names = names


class _Call:
    __slots__ = ("call_id", "legs", "record_mode", "recorder")

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.legs: list[_Leg] = []
        self.recorder: StereoRecorder | None = None
        self.record_mode = RecordMode.OFF


def _pcm(prompt: Prompt) -> bytes:
    """A prompt's samples as 16-bit little-endian PCM (what ``prompt_frames`` takes)."""
    return bytes(prompt.pcm.astype("<i2").tobytes())


def _session_id(leg_id: int) -> int:
    # o= sess-id only needs to be unique per session (RFC 4566 §5.2); NTP-like magnitude.
    return 3_900_000_000 + leg_id


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
    ) -> None:
        self._loop = loop
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
        self._plays: dict[PlayId, _Leg] = {}
        self._next_play = 1
        self._calls: dict[str, _Call] = {}
        self._legs: dict[LegMedia, _Leg] = {}
        self._by_id: dict[int, _Leg] = {}
        self._next_id = 1
        self._timer: asyncio.TimerHandle | None = None
        self._ticks = 0

    # ---- MediaControl ---------------------------------------------------------------------

    def allocate(self, call_id: str, role: LegRole) -> LegMedia:
        pair = self._ports.allocate()
        leg_id = self._next_id
        self._next_id += 1
        media = LegMedia(call_id, role, self._host, pair.port)
        try:
            self._path.open(leg_id, pair.rtp)
        except Exception:
            self._ports.free(pair)
            raise
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(call_id)
        leg = _Leg(leg_id, media, pair, call)
        call.legs.append(leg)
        self._legs[media] = leg
        self._by_id[leg_id] = leg
        if call.recorder is not None and role is LegRole.CALLER:
            self._attach_recorder(call, leg)
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
        la, lb = self._leg(a), self._leg(b)
        if la.call is not lb.call or la is lb:
            raise MediaError(
                f"cannot bridge {a.call_id}/{a.role.value} with {b.call_id}/{b.role.value}"
            )
        self._path.bridge(la.id, lb.id)
        now = self._loop.time()
        for leg in (la, lb):
            leg.bridged_at, leg.timed_out = now, False
        call = la.call
        for other in call.legs:
            if other not in (la, lb):
                other.bridged_at = None
                if other.media.role is LegRole.OPERATOR:
                    # An earlier operator leg must not keep feeding the right channel.
                    self._path.set_recorder(other.id, None, 0)
        if call.recorder is not None:
            for leg in (la, lb):
                self._attach_recorder(call, leg)

    def record(self, call_id: str, path: Path, mode: RecordMode) -> None:
        call = self._calls.get(call_id)
        if call is None:
            raise MediaError(f"record: no media allocated for call {call_id}")
        self._stop_recording(call)
        if mode is RecordMode.OFF:
            return
        call.recorder = recorder_class()(path, self._writer, mode, self._format)
        call.record_mode = mode
        for leg in call.legs:
            if leg.media.role is LegRole.CALLER or leg.bridged_at is not None:
                self._attach_recorder(call, leg)

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
        play_id = PlayId(self._next_play)
        self._next_play += 1
        self._stop_play(state)
        self._path.play(
            state.id, frames, loop=loop, mix=mix, barge_in=barge_in, play_id=play_id
        )
        state.play = _Play(play_id, tuple(prompt.name for prompt in prompts))
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
        recorder = call.recorder
        if recorder is not None:
            # Detach the recorder while the legs still exist, then close the legs.
            size = self._stop_recording(call)
            if not recorder.failed:  # never point the call log at a file that failed
                report.recording, report.recording_bytes = recorder.path, size
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
        """Free one leg early (a failed forwarding attempt), keeping the rest of the call."""
        state = self._leg(leg)
        state.call.legs.remove(state)
        return self._close_leg(state)

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

    async def flush_recordings(self) -> None:
        """Wait until every released call's recording is completely on disk."""
        await self._writer.drain()

    # ---- internals ------------------------------------------------------------------------

    def _leg(self, leg: LegMedia) -> _Leg:
        state = self._legs.get(leg)
        if state is None:
            raise MediaError(f"unknown or released media leg {leg.call_id}/{leg.role.value}")
        return state

    def _apply(self, leg: _Leg, negotiated: sdp.Negotiated) -> None:
        leg.negotiated = negotiated
        if leg.bridged_at is not None:
            # A re-INVITE (hold, resume) restarts the no-RTP clock: the peer may have been
            # silent on purpose until now.
            leg.bridged_at, leg.timed_out = self._loop.time(), False
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
            ),
        )

    def _attach_recorder(self, call: _Call, leg: _Leg) -> None:
        if call.recorder is not None and leg.media.role in _RECORDED[call.record_mode]:
            self._path.set_recorder(leg.id, call.recorder, _CHANNEL[leg.media.role])

    def _stop_recording(self, call: _Call) -> int:
        recorder = call.recorder
        if recorder is None:
            return 0
        for leg in call.legs:
            self._path.set_recorder(leg.id, None, 0)
        size = recorder.close()
        call.recorder = None
        return size

    def _close_leg(self, leg: _Leg) -> LegStats:
        self._stop_play(leg)
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
        return stats

    @staticmethod
    def _better(current: LegStats | None, candidate: LegStats, leg: _Leg) -> bool:
        """Which of several legs of one role goes into the report: the bridged one."""
        if current is None or leg.bridged_at is not None:
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

    def _dtmf(self, leg_id: int, digit: str, start: float, duration: float, source: str) -> None:
        leg = self._by_id.get(leg_id)
        if leg is not None:
            m = leg.media
            self._emit(DtmfEvent(m.call_id, m.role, digit, start, duration, source))

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
        for call in self._calls.values():
            if call.recorder is not None:
                call.recorder.tick(now)
        self._ticks += 1
        if self._ticks % 4 == 0 or self._timeout < 4 * TICK:
            self._check_rtp(now)

    def _check_rtp(self, now: float) -> None:
        """Emit RtpTimeout once for a bridged leg silent for ``no_rtp_timeout`` seconds."""
        for leg in list(self._by_id.values()):
            if leg.bridged_at is None or not _expects_rtp(leg):
                continue
            last = max(self._path.last_rx(leg.id), leg.bridged_at)
            silent = now - last
            if silent < self._timeout:
                leg.timed_out = False
            elif not leg.timed_out:
                leg.timed_out = True
                self._emit(RtpTimeout(leg.media.call_id, leg.media.role, silent))
