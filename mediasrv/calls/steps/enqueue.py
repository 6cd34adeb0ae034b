"""The queue (F10): hold music, position announcements, the next free operator, overflow.

The caller waits in a shared :class:`~mediasrv.calls.queue.CallQueue`; the queue offers an idle
operator, this step rings them while the caller keeps hearing music and announcements, and an
answer pre-empts whatever is playing at once. Overflow (``on_overflow``) at once when no member
can ever answer or the queue is full, later when ``max_wait`` passes.
"""

from __future__ import annotations

import logging

from mediasrv.media.api import PlayId, PromptFinished

from ..flow import CallContext, Event, Source
from ..plan import Enqueue, Step
from ..queue import OperatorOffered, QueueEntry, QueuePosition, members_of, operator_id
from ..trace import Queued, QueueLeft
from .dial import RingOptions, connect, ring, talk

log = logging.getLogger("mediasrv.calls.steps")


def position_prompts(step: Enqueue, position: int) -> tuple[str, ...]:
    """ "You are caller number" + one prompt per digit ("digit-1", "digit-2")."""
    return (*step.position_prompts, *(f"digit-{d}" for d in str(position)))


class _Hold:
    """What the waiting caller hears: music, interrupted by announcements."""

    def __init__(self, ctx: CallContext, step: Enqueue) -> None:
        self.ctx = ctx
        self.step = step
        self.position = 0
        self.announcing: PlayId | None = None
        self.next_periodic: float | None = None

    def music(self) -> None:
        self.announcing = None
        self.ctx.play_to_caller(self.step.music, loop=True)

    def announce(self, periodic: bool = False) -> None:
        names = position_prompts(self.step, self.position)
        if periodic:
            names = self.step.periodic_prompts + names
        self.announcing = self.ctx.play_to_caller(names)
        if self.announcing is None:
            self.music()
        if self.step.announce_every > 0:
            self.next_periodic = self.ctx.clock.now() + self.step.announce_every

    def moved(self, position: int) -> None:
        if position == self.position:
            return
        self.position = position
        ctx = self.ctx
        ctx.trace.queue_positions.append(position)
        ctx.emit(Queued(ctx.id, self.step.name, position, ctx.clock.wall()))
        if self.step.announce_position:
            self.announce()

    def on_event(self, _source: Source, event: Event) -> None:
        if isinstance(event, QueuePosition):
            self.moved(event.position)
        elif isinstance(event, PromptFinished) and event.play_id == self.announcing:
            self.music()


def _overflow(ctx: CallContext, step: Enqueue, reason: str) -> Step | None:
    ctx.stop_caller_play()
    ctx.trace.rules.append(f"queue={reason}")
    log.info("queue overflow", extra={"call_id": ctx.id, "queue": step.name, "reason": reason})
    return ctx.plan.at(step.on_overflow, after=step)


async def enqueue(ctx: CallContext, step: Enqueue) -> Step | None:
    queue = ctx.services.queues.get(step.name)
    members = members_of(step.targets)
    ctx.trace.queue = step.name
    if step.overflow_when_no_operator and not queue.any_member_can_answer(members):
        return _overflow(ctx, step, "no-operator")
    if step.max_length and len(queue) >= step.max_length:
        return _overflow(ctx, step, "full")
    ctx.answer_caller(early_media=step.early_media)
    clock = ctx.clock
    started = clock.now()
    deadline = started + step.max_wait if step.max_wait > 0 else None
    entry = QueueEntry(ctx.id, members, ctx.queue_signal)
    hold = _Hold(ctx, step)
    hold.music()
    outcome = "ended"  # a hang-up or drain raises out of the loop below
    try:
        hold.moved(queue.join(entry))
        while True:
            due = [t for t in (deadline, hold.next_periodic) if t is not None]
            got = await ctx.next_event(min(due) - clock.now() if due else None)
            if got is None:
                if deadline is not None and clock.now() >= deadline:
                    outcome = "overflow"
                    return _overflow(ctx, step, "max-wait")
                hold.announce(periodic=True)
                continue
            source, event = got
            if not isinstance(event, OperatorOffered):
                hold.on_event(source, event)
                continue
            target = event.target
            opts = RingOptions(
                whisper=step.whisper, claimed=True, wrap_up=max(step.wrap_up, target.wrap_up)
            )
            result, live = await ring(ctx, target, opts, on_other=hold.on_event)
            if live is None:
                log.info(
                    "queue offer failed",
                    extra={
                        "call_id": ctx.id,
                        "operator": operator_id(target),
                        "result": result.value,
                    },
                )
                queue.offer_failed(entry, operator_id(target))
                continue
            queue.leave(entry)
            ctx.trace.queue_wait = clock.now() - started
            outcome = "answered"
            ctx.emit(QueueLeft(ctx.id, step.name, outcome, ctx.clock.wall()))
            await connect(ctx, live, target)
            await talk(ctx, live)
            return None
    finally:
        queue.leave(entry)
        if outcome != "answered":
            ctx.emit(QueueLeft(ctx.id, step.name, outcome, ctx.clock.wall()))
        if not ctx.trace.queue_wait:
            ctx.trace.queue_wait = clock.now() - started
