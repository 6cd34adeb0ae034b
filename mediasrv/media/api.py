"""The seam between call flows and the media engine (ARCHITECTURE.md, "media/api.py").

``calls/`` drives media only through :class:`MediaControl`; SDP travels as bytes so the call
flow never parses it. The in-process engines (pure-Python reference and Cython) and a later
remote media node implement the same protocol.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


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
    call_id: str
    role: LegRole
    digit: str  # one of 0-9 * # A-D
    start: float  # seconds since the leg's first RTP packet (media clock)
    duration: float  # seconds
    source: str  # "rfc4733" | "inband" | "info"


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    """No RTP arrived on a leg for ``no_rtp_timeout`` seconds."""

    call_id: str
    role: LegRole
    silent_for: float


@dataclass(frozen=True, slots=True)
class PromptFinished:
    call_id: str
    role: LegRole
    prompt: str


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
    recording: Path | None = None
    recording_bytes: int = 0
    engine: str = ""


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
        """Relay RTP (and RFC 4733 events) both ways between two legs of the same call."""
        ...

    def record(self, call_id: str, path: Path, mode: RecordMode) -> None:
        """Record the call as stereo WAV: caller left, operator right (F12)."""
        ...

    def play(self, leg: LegMedia, wav: Path, loop: bool = False) -> None:
        """Play a prompt to ``leg`` only; emits :class:`PromptFinished` when done."""
        ...

    def release(self, call_id: str) -> MediaReport:
        """Stop everything for the call, close its sockets, return its ports and a report."""
        ...

    def active_ports(self) -> int:
        """RTP ports currently allocated (a leak check after every scenario)."""
        ...

    async def close(self) -> None:
        """Release every call and stop the engine."""
        ...
