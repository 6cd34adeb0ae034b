"""Call queues (F10): callers wait in order; the next free operator is offered to the first
caller who is not already ringing one.

A :class:`CallQueue` is shared by every call waiting in it (a :class:`QueueRegistry`, built by
the composition root, holds one per name); each waiting call is a :class:`QueueEntry` whose
``notify`` puts :class:`QueuePosition` and :class:`OperatorOffered` into that call's event
stream. The queue never rings anyone itself: the waiting call's ``Enqueue`` step does, so a
caller who hangs up takes their attempt with them. An operator whose offer fails is not offered
to the same caller again for ``retry`` seconds (Asterisk ``Queue`` ``retry``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import Clock, TimerHandle
from .operators import OperatorBoard
from .plan import DialTarget, TargetKind

RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class QueuePosition:
    position: int  # 1 = next in line


@dataclass(frozen=True, slots=True)
class OperatorOffered:
    target: DialTarget


QueueSignal = QueuePosition | OperatorOffered


def operator_id(target: DialTarget) -> str:
    return target.operator or target.address


def is_softphone(target: DialTarget) -> bool:
    return target.kind is TargetKind.REGISTERED


def members_of(targets: tuple[DialTarget, ...]) -> tuple[DialTarget, ...]:
    """Groups flattened into their members, each operator once."""
    out: list[DialTarget] = []
    seen: set[str] = set()
    for t in targets:
        for m in t.members if t.kind is TargetKind.GROUP else (t,):
            if operator_id(m) not in seen:
                seen.add(operator_id(m))
                out.append(m)
    return tuple(out)


@dataclass(eq=False, slots=True)
class QueueEntry:
    call_id: str
    members: tuple[DialTarget, ...]
    notify: Callable[[QueueSignal], None]
    joined: float = 0.0
    offered: str = ""  # the operator being rung for this caller
    not_before: dict[str, float] = field(default_factory=dict)  # operator -> retry time


class CallQueue:
    def __init__(self, name: str, board: OperatorBoard, clock: Clock) -> None:
        self.name = name
        self._board = board
        self._clock = clock
        self._entries: list[QueueEntry] = []
        self._claimed: set[str] = set()  # operators offered to someone right now
        self._retry_timer: TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def position(self, entry: QueueEntry) -> int:
        return self._entries.index(entry) + 1

    def any_member_can_answer(self, members: tuple[DialTarget, ...]) -> bool:
        return any(
            self._board.can_ever_answer(operator_id(m), softphone=is_softphone(m)) for m in members
        )

    def join(self, entry: QueueEntry) -> int:
        entry.joined = self._clock.now()
        self._entries.append(entry)
        position = len(self._entries)
        self.dispatch()
        return position

    def leave(self, entry: QueueEntry) -> None:
        if entry not in self._entries:
            return
        i = self._entries.index(entry)
        self._entries.pop(i)
        if entry.offered:
            self._claimed.discard(entry.offered)
            entry.offered = ""
        for j, other in enumerate(self._entries[i:], start=i + 1):
            other.notify(QueuePosition(j))
        self.dispatch()

    def offer_failed(self, entry: QueueEntry, operator: str) -> None:
        """The offered operator did not take the call; the caller waits on."""
        self._claimed.discard(operator)
        entry.offered = ""
        entry.not_before[operator] = self._clock.now() + RETRY_SECONDS
        self._arm_retry(RETRY_SECONDS)
        self.dispatch()

    def dispatch(self) -> None:
        """Offer every idle, unclaimed member to the first waiting caller it may go to."""
        now = self._clock.now()
        for entry in self._entries:
            if entry.offered:
                continue
            for m in entry.members:
                op = operator_id(m)
                if op in self._claimed or entry.not_before.get(op, 0.0) > now:
                    continue
                if not self._board.is_available(op, softphone=is_softphone(m)):
                    continue
                self._claimed.add(op)
                entry.offered = op
                self._board.ringing(op, softphone=is_softphone(m))
                entry.notify(OperatorOffered(m))
                break

    def _arm_retry(self, delay: float) -> None:
        if self._retry_timer is None:
            self._retry_timer = self._clock.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._retry_timer = None
        self.dispatch()
        now = self._clock.now()
        pending = [t for e in self._entries for t in e.not_before.values() if t > now]
        if pending:
            self._arm_retry(min(pending) - now)


class QueueRegistry:
    """Every queue of the process, by name; operators becoming idle wake them all."""

    def __init__(self, board: OperatorBoard, clock: Clock) -> None:
        self._board = board
        self._clock = clock
        self._queues: dict[str, CallQueue] = {}
        board.on_idle(self._operator_idle)

    def get(self, name: str) -> CallQueue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = CallQueue(name, self._board, self._clock)
        return q

    def lengths(self) -> dict[str, int]:
        return {name: len(q) for name, q in self._queues.items()}

    def _operator_idle(self, _operator: str) -> None:
        for q in list(self._queues.values()):
            q.dispatch()
