"""The small vocabulary of call events that legs speak to call flows (STYLE.md habit 4).

``calls/`` sees these and never a SIP message. Each leg delivers its events to one sink
(a callable), which the call flow usually points at its own queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Ringing:
    """A provisional response (180/183) on an outbound leg; ``sdp`` is early media."""

    code: int
    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class Answered:
    """The outbound leg got its 2xx (and has ACKed it)."""

    sdp: bytes | None
    contact: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    """The outbound attempt ended before an answer with this final code (or a timeout)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer ended the leg: BYE, CANCEL (inbound), or a transaction timeout."""

    reason: str  # "bye" | "cancel" | "timeout" | "ack-timeout" | "transport"


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A digit signalled in SIP (INFO application/dtmf-relay)."""

    digit: str
    duration_ms: int = 160


@dataclass(slots=True)
class ReOffer:
    """The peer sent a re-INVITE with an SDP offer (hold, resume, codec change).

    The flow must call ``respond`` exactly once: (200, answer_sdp) or (code, None).
    """

    sdp: bytes | None
    respond: Callable[[int, bytes | None], None] = field(repr=False)


LegEvent = Ringing | Answered | Failed | Hangup | Dtmf | ReOffer
LegEventSink = Callable[[LegEvent], None]
