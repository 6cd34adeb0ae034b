"""How a call ended: the one disposition taxonomy of F13, used across the code.

The call flow, the call log, the HTTP API, metrics and reports all use this enum (it replaces
the parallel ``calls.call.Outcome`` and ``outputs.calllog.Disposition`` of before issue 10).
"""

from __future__ import annotations

import enum


class Disposition(enum.Enum):
    ANSWERED = "answered"  # an operator answered and was bridged to the caller
    BUSY = "busy"  # every operator tried was busy (486/600/603, or busy on our board)
    NO_ANSWER = "no-answer"  # ring timeouts, refusals of "press 1 to accept"
    AFTER_HOURS = "after-hours"  # the business was closed and no message was left
    BLOCKED = "blocked"  # the caller matched a blocklist rule (left out of answer rates)
    ABANDONED = "abandoned"  # the caller hung up before anyone answered
    VOICEMAIL = "voicemail"  # the caller left a message (at least the minimum length)
    FAILED = "failed"  # our fault or the network's: no port, bad SDP, store down, drain
    # A row state, not an ending: written when a call starts and replaced by its final row;
    # a row still in progress at startup was cut off by a crash (CallLogStore.mark_unfinished).
    IN_PROGRESS = "in-progress"

    @classmethod
    def parse(cls, value: str) -> Disposition:
        """Read a stored or requested value; ``rejected`` (before issue 10) reads as failed."""
        if value == "rejected":
            return cls.FAILED
        return cls(value)


# Not a business outcome: left out of answer-rate figures (F6: blocked callers).
NOT_COUNTED_IN_ANSWER_RATE = frozenset({Disposition.BLOCKED, Disposition.IN_PROGRESS})
