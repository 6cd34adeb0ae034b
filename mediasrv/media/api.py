"""The seam between call flows and the media engine (ARCHITECTURE.md, "media/api.py").

``calls/`` drives media only through :class:`MediaControl`; SDP travels as bytes so the call
flow never parses it. The in-process engines (pure-Python reference and Cython) and a later
remote media node implement the same protocol.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NewType, Protocol

PlayId = NewType("PlayId", int)  # one play() command; unique per engine
RecordingId = NewType("RecordingId", int)  # one record() command; unique per engine


class LegRole(enum.Enum):
    CALLER = "caller"  # inbound leg: left channel of the recording
    OPERATOR = "operator"  # outbound leg: right channel of the recording


class RecordMode(enum.Enum):
    BOTH = "both"
    CALLER = "caller"
    OPERATOR = "operator"
    OFF = "off"


class Direction(enum.Enum):
    """SDP media direction attribute (RFC 4566 §6, RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


class MediaError(Exception):
    """Base class of media errors the call flow can act upon."""


class SdpError(MediaError):
    """The peer's SDP could not be parsed or is unusable (answer 488 / 400)."""


class NoCommonCodec(MediaError):
    """Offer/answer found no codec both sides support (answer 488)."""


class PortsExhausted(MediaError):
    """The RTP port pool is empty (answer 503)."""


@dataclass(frozen=True, slots=True)
class LegMedia:
    """A handle to one leg's RTP endpoint, returned by :meth:`MediaControl.allocate`."""

    call_id: str
    role: LegRole
    local_host: str
    local_port: int  # even RTP port; RTCP is local_port + 1 (RFC 3550 §11)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One key press on a leg, reported once whatever carried it (issue 9 §4: RFC 4733,
    in-band tones and SIP INFO merged into one digit stream per leg)."""

    call_id: str
    role: LegRole
    digit: str  # one of 0-9 * # A-D
    start: float  # seconds since the leg's first RTP packet (media clock)
    duration: float  # seconds
    source: str  # "rfc4733" | "inband" | "info"


Digit = DtmfEvent  # the name the call flows use


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    """No RTP arrived on a leg for ``no_rtp_timeout`` seconds."""

    call_id: str
    role: LegRole
    silent_for: float


class PlayEnd(enum.Enum):
    COMPLETED = "completed"  # the playlist played to its end (never for a looping play)
    BARGED_IN = "barged-in"  # a digit stopped it (play(..., barge_in=True))


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A play() ended by itself; :meth:`MediaControl.stop_play` emits nothing."""

    call_id: str
    role: LegRole
    prompt: str  # name of the playlist's last prompt that played
    play_id: PlayId = PlayId(0)
    reason: PlayEnd = PlayEnd.COMPLETED


@dataclass(frozen=True, slots=True)
class PauseSpan:
    """A paused span of a recording (PCI): seconds from the recording's start."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """What :meth:`MediaControl.stop_record` (or the call's release) reports for one file."""

    recording_id: RecordingId
    path: Path | None  # None if the file failed (never point the call log at a bad file)
    bytes: int
    seconds: float
    pauses: tuple[PauseSpan, ...] = ()


MediaEvent = DtmfEvent | RtpTimeout | PromptFinished
MediaEventSink = Callable[[MediaEvent], None]


@dataclass(slots=True)
class LegStats:
    """Per-leg counters and RTCP-style receiver statistics (RFC 3550 §6.4.1, A.3, A.8)."""

    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    packets_lost: int = 0
    jitter_ms: float = 0.0
    codec: str = ""
    remote: str = ""  # latched "host:port" of the peer, "" if nothing arrived
    foreign_dropped: int = 0  # RTP packets from sources other than the latched one, dropped


@dataclass(slots=True)
class MediaReport:
    """What :meth:`MediaControl.release` returns once a call's media is torn down."""

    call_id: str
    legs: dict[LegRole, LegStats] = field(default_factory=dict)
    recording: Path | None = None  # the whole-call recording, if any
    recording_bytes: int = 0
    engine: str = ""
    recordings: list[RecordingResult] = field(default_factory=list)  # every file of the call


class MediaControl(Protocol):
    """Commands a call flow gives the media engine. One instance serves every call."""

    engine_name: str

    def allocate(self, call_id: str, role: LegRole) -> LegMedia:
        """Reserve an even RTP port (and its RTCP port) and start receiving on it."""
        ...

    def offer(
        self, leg: LegMedia, like: bytes | None = None, direction: Direction | None = None
    ) -> bytes:
        """Build our SDP offer for ``leg``.

        Codecs (and, when ``direction`` is None, the direction attribute) mirror those of
        ``like``, another leg's SDP, when given: a re-INVITE that puts one leg on hold becomes
        an offer with the same direction on the other leg. Without ``like``: all our codecs,
        sendrecv. Raises :class:`SdpError` if ``like`` is unusable.
        """
        ...

    def codec_of(self, leg: LegMedia) -> str | None:
        """The encoding name ("PCMU", "PCMA") negotiated on ``leg``, None before negotiation."""
        ...

    def answer(self, leg: LegMedia, offer: bytes, prefer: list[str] | None = None) -> bytes:
        """Take the peer's SDP offer for ``leg`` and return our answer (RFC 3264 §6).

        ``prefer`` lists encoding names ("PCMU", "PCMA") to choose first, e.g. the codec the
        other leg negotiated, so that no transcoding is needed.
        Raises :class:`SdpError` or :class:`NoCommonCodec`.
        """
        ...

    def accept_answer(self, leg: LegMedia, answer: bytes) -> None:
        """Apply the peer's SDP answer to our offer on ``leg`` (RFC 3264 §7)."""
        ...

    def bridge(self, a: LegMedia, b: LegMedia) -> None:
        """Relay RTP (and RFC 4733 events) both ways between two legs of the same call.

        A leg already bridged to another is unbridged from it first (queue -> operator,
        first operator -> second operator)."""
        ...

    def unbridge(self, leg: LegMedia) -> None:
        """Stop relaying between ``leg`` and its partner; both keep receiving (digits,
        recording) and may be played to or bridged again."""
        ...

    def release_leg(self, leg: LegMedia) -> LegStats:
        """Close one leg (a failed or finished forwarding attempt) and keep the call.

        Its port goes back to the pool; RTP still arriving for it is dropped, never latched
        by another leg."""
        ...

    def record(
        self, call_id: str, path: Path, mode: RecordMode, *, stereo: bool = True
    ) -> RecordingId:
        """Start a recording of the call (F12): stereo WAV, caller left, operator right, or
        (``stereo=False``) mono of the one channel ``mode`` names (a voicemail). Several
        recordings of one call run at once and independently."""
        ...

    def stop_record(self, recording: RecordingId) -> RecordingResult:
        """Close one recording; the rest of the call's recordings go on."""
        ...

    def pause_record(self, recording: RecordingId) -> None:
        """Write silence from now on (PCI: the caller reads a card number)."""
        ...

    def resume_record(self, recording: RecordingId) -> None:
        """End a pause; the result lists every paused span."""
        ...

    def play(
        self,
        leg: LegMedia,
        playlist: Sequence[Path],
        *,
        loop: bool = False,
        mix: bool = False,
        barge_in: bool = False,
    ) -> PlayId:
        """Play prompts back to back, gap-free, to ``leg`` only.

        ``mix``: on a bridged leg, mix the prompt into what the partner says (a whisper);
        otherwise the prompt replaces the relayed audio while it plays. ``loop``: start
        again at the end until stopped (hold music). ``barge_in``: a digit on the leg stops
        the play. A new play on a leg replaces the one playing. Emits
        :class:`PromptFinished` when the play ends by itself."""
        ...

    def stop_play(self, play: PlayId) -> None:
        """Stop a play (no event); the leg goes back to relaying. Unknown ids are ignored."""
        ...

    def signalled_digit(self, leg: LegMedia, digit: str, duration: float) -> None:
        """A digit that arrived by signalling (SIP INFO) on ``leg``: merged into the leg's
        one digit stream, so the same key also sent as RFC 4733 or as a tone is reported
        once."""
        ...

    def release(self, call_id: str) -> MediaReport:
        """Stop everything for the call, close its sockets, return its ports and a report
        (every recording still running is stopped and listed)."""
        ...

    async def flush(self) -> None:
        """Wait until every stopped recording is completely on disk (drain, analysis)."""
        ...

    def active_ports(self) -> int:
        """RTP ports currently allocated (a leak check after every scenario)."""
        ...

    async def close(self) -> None:
        """Release every call and stop the engine."""
        ...
