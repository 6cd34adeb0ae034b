"""How a call flow sees its legs: small protocols and a vocabulary of leg signals.

``calls/`` never imports ``sip/``: the composition root wraps each SIP leg in an adapter that
speaks these protocols and turns the SIP leg events into the signals below (STYLE.md habit 4:
legs speak events, calls speak flows). Tests drive the flow with fakes of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LegRinging:
    """180/183 on an operator leg; ``sdp`` is early media (RFC 3960)."""

    code: int = 180
    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """The operator leg got its 2xx (and ACKed it)."""

    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class LegFailed:
    """The operator leg ended before an answer with this final code (408 on a timeout)."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LegHungUp:
    """The peer ended the leg: BYE, CANCEL (caller), or a transaction timeout."""

    reason: str = "bye"


@dataclass(frozen=True, slots=True)
class LegInfoDigit:
    """A digit signalled in SIP INFO; the flow hands it to MediaControl.signalled_digit so it is
    merged into the leg's one digit stream."""

    digit: str
    duration_ms: int = 160


@dataclass(slots=True)
class LegReOffer:
    """The peer sent a re-INVITE (hold, resume, codec change): call ``respond`` exactly once
    with (200, our answer) or (code, None). ``sdp`` None: the peer wants our offer."""

    sdp: bytes | None
    respond: Callable[[int, bytes | None], None] = field(repr=False)


ReInviteDone = Callable[[int, bytes | None], None]  # (final code, the peer's answer SDP)

LegSignal = LegRinging | LegAnswered | LegFailed | LegHungUp | LegInfoDigit | LegReOffer
LegSignalSink = Callable[[LegSignal], None]


class CallerLeg(Protocol):
    """The inbound leg of a call (the caller): ring, early media, answer, reject, hang up."""

    @property
    def call_id(self) -> str: ...

    @property
    def called(self) -> str:
        """The dialled tracking number, as received."""
        ...

    @property
    def caller(self) -> str:
        """The caller's number ("" when withheld)."""
        ...

    @property
    def withheld(self) -> str:
        """Why there is no number ("anonymous", "payphone", "unavailable"), else ""."""
        ...

    @property
    def offer(self) -> bytes | None:
        """The caller's SDP offer (None: a delayed offer, not supported)."""
        ...

    @property
    def terminated(self) -> bool: ...

    def listen(self, sink: LegSignalSink) -> None:
        """Deliver this leg's signals (LegHungUp, LegInfoDigit) to ``sink`` from now on."""
        ...

    def ring(self, code: int = 180, sdp: bytes | None = None) -> None:
        """A provisional response: 180, or 183 with SDP (early media)."""
        ...

    def answer(self, sdp: bytes) -> None: ...

    def reject(self, code: int) -> None: ...

    def end(self) -> None:
        """BYE an answered caller (or reject an unanswered one with 480)."""
        ...

    def reinvite(self, sdp: bytes, on_done: ReInviteDone) -> None:
        """Send a re-INVITE with a new offer (RFC 3261 §14.1)."""
        ...


class OperatorLeg(Protocol):
    """One forwarding attempt's outbound leg."""

    def cancel(self) -> None:
        """Give up before the answer (CANCEL; a 200 racing it is ACKed and BYEd)."""
        ...

    def end(self) -> None:
        """BYE the answered leg."""
        ...

    def reinvite(self, sdp: bytes, on_done: ReInviteDone) -> None:
        """Send a re-INVITE with a new offer (RFC 3261 §14.1)."""
        ...


class TargetUnresolved(Exception):
    """The target cannot be reached: a bad URI, a name that does not resolve, no trunk."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    """What the dialler needs to place one operator leg (no SIP types)."""

    uri: str  # a SIP URI, or "tel:+81..." for a PHONE target through ``trunk``
    sdp: bytes  # our offer for the operator's media leg
    caller: str  # the caller's number, shown to the operator
    caller_display: str = ""
    trunk: str = ""
    on_behalf_of: object = None  # the CallerLeg this attempt serves (hop count, identity)


class Dialer(Protocol):
    """Places outbound legs (the composition root resolves peers, credentials, Max-Forwards)."""

    async def dial(self, request: DialRequest, sink: LegSignalSink) -> OperatorLeg:
        """Start ringing; signals arrive on ``sink``. Raises :class:`TargetUnresolved`."""
        ...
