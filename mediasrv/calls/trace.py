"""What a call did (the call log learns the flow, issue 10 §6) and the domain events it emits.

:class:`CallTrace` is filled in while the plan runs: flow version, the path of steps and menu
choices, digits, every forwarding attempt (operator, ring seconds, SIP code), phase times
(received, answered, bridged, ended), who hung up and the disposition. Domain events go to a
sink passed in by the composition root (call log, notifications, metrics, the live board).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mediasrv.media.api import MediaReport

from .disposition import Disposition


class AttemptResult(enum.Enum):
    ANSWERED = "answered"  # bridged to the caller
    BUSY = "busy"  # 486/600/603, or busy on our operator board (not rung)
    NO_ANSWER = "no-answer"  # ring timeout, or the operator hung up during the whisper
    REFUSED = "refused"  # answered but did not press the accept digit (counts as no-answer)
    UNREACHABLE = "unreachable"  # the target did not resolve / not registered / failed
    CANCELLED = "cancelled"  # the caller left while it rang


@dataclass(slots=True)
class Attempt:
    """One forwarding attempt."""

    target: str  # the address rung (URI, number, AOR)
    operator: str = ""
    start: float = 0.0  # wall clock
    end: float = 0.0
    code: int = 0  # the final SIP code (200 when answered), 0 when never sent
    result: AttemptResult = AttemptResult.NO_ANSWER
    reason: str = ""

    @property
    def ring_seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def counts_as_busy(self) -> bool:
        return self.result is AttemptResult.BUSY


@dataclass(frozen=True, slots=True)
class MenuPick:
    menu: str
    digits: str
    choice: str  # the choice's name or its label
    tries: int  # 1 = chosen at the first prompt


@dataclass(frozen=True, slots=True)
class VoicemailMessage:
    mailbox: str
    path: Path
    seconds: float


class HungUpBy(enum.Enum):
    NOBODY = ""  # still up
    CALLER = "caller"
    OPERATOR = "operator"
    SYSTEM = "system"  # the flow ended it (rejection, hang-up step, voicemail end, drain)


@dataclass(slots=True)
class CallTrace:
    call_id: str
    number: str
    caller: str
    flow_version: int = 0
    inbound_call_id: str = ""  # the caller leg's SIP Call-ID
    business: str = ""
    medium: str = ""
    campaign: str = ""
    path: list[str] = field(default_factory=list)  # steps run: "menu:main", "dial", ...
    rules: list[str] = field(default_factory=list)  # "blocklist=no", "hours=closed"
    menu: list[MenuPick] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)  # the caller's keys, in order
    attempts: list[Attempt] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # prompt names played to the caller
    received: float = 0.0
    answered: float | None = None  # the caller got 200 (or our IVR answered)
    bridged: float | None = None  # an operator is connected: the talk clock starts here
    ended: float | None = None
    operator: str = ""  # who answered ("" if nobody)
    operator_target: str = ""
    hung_up_by: HungUpBy = HungUpBy.NOBODY
    disposition: Disposition = Disposition.IN_PROGRESS
    sip_code: int = 0  # the caller's final code (200 if answered)
    reason: str = ""  # why it ended: "caller-bye", "operator-bye", "blocked", ...
    consent_played: bool = False
    early_media: bool = False
    queue: str = ""
    queue_wait: float = 0.0
    queue_positions: list[int] = field(default_factory=list)
    voicemail: VoicemailMessage | None = None
    recording: Path | None = None
    failures: list[str] = field(default_factory=list)  # run-time failures, reasons
    media: MediaReport | None = None  # the engine's report at release (stats, recordings)

    @property
    def talk_seconds(self) -> float:
        """From the bridge (after the whisper), never from the caller's answer (F14)."""
        if self.bridged is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.bridged)

    @property
    def ring_seconds(self) -> float:
        end = self.bridged or self.ended or self.received
        return max(0.0, end - self.received)


# -- domain events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    call_id: str
    number: str
    caller: str
    flow_version: int
    at: float


@dataclass(frozen=True, slots=True)
class Ringing:
    call_id: str
    operator: str
    target: str
    at: float


@dataclass(frozen=True, slots=True)
class Answered:
    call_id: str
    operator: str
    target: str
    at: float


@dataclass(frozen=True, slots=True)
class MenuChoice:
    call_id: str
    menu: str
    digits: str
    choice: str
    at: float


@dataclass(frozen=True, slots=True)
class Queued:
    call_id: str
    queue: str
    position: int
    at: float


@dataclass(frozen=True, slots=True)
class QueueLeft:
    """The caller is out of the queue: an operator took the call, overflow, or a hang-up."""

    call_id: str
    queue: str
    reason: str  # "answered", "overflow", "ended"
    at: float


@dataclass(frozen=True, slots=True)
class VoicemailLeft:
    call_id: str
    mailbox: str
    path: Path
    seconds: float
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    trace: CallTrace
    at: float


DomainEvent = (
    CallStarted | Ringing | Answered | MenuChoice | Queued | QueueLeft | VoicemailLeft | CallEnded
)
EventSink = Callable[[DomainEvent], None]


def no_events(_event: DomainEvent) -> None:
    return None
