"""The small verbs: Reject, Answer, Play, Branch, Classify, Goto, Hangup."""

from __future__ import annotations

import logging

from ..disposition import Disposition
from ..flow import CallContext
from ..plan import (
    Answer,
    Branch,
    CallerBlocked,
    Classify,
    Goto,
    Hangup,
    OpenNow,
    Play,
    Reject,
    Step,
)
from ..trace import HungUpBy
from .common import wait_play

log = logging.getLogger("mediasrv.calls.steps")


async def reject(ctx: CallContext, step: Reject) -> Step | None:
    """F6: refuse with a code, or play the prompts as early media (183) first."""
    if step.disposition is not None:
        ctx.classify(step.disposition)
    elif ctx.hint is None:
        ctx.classify(Disposition.NO_ANSWER)
    ctx.trace.reason = step.reason
    if step.prompts and not ctx.caller_answered:
        ctx.answer_caller(early_media=True)
        await wait_play(ctx, ctx.play_to_caller(step.prompts))
    if ctx.caller_answered:
        ctx.caller.end()
    else:
        ctx.caller.reject(step.code)
        ctx.trace.sip_code = step.code
    ctx.trace.hung_up_by = HungUpBy.SYSTEM
    log.info(
        "call rejected",
        extra={"call_id": ctx.id, "code": step.code, "reason": step.reason},
    )
    return None


async def answer(ctx: CallContext, step: Answer) -> Step | None:
    ctx.answer_caller(early_media=step.early_media)
    return ctx.plan.after(step)


async def play(ctx: CallContext, step: Play) -> Step | None:
    """Guidance (F4). A consent prompt plays once per call, whatever path comes back here."""
    if step.consent:
        if ctx.trace.consent_played:
            return ctx.plan.after(step)
        ctx.trace.consent_played = True
    ctx.answer_caller(early_media=step.early_media)
    for _ in range(step.loop):
        pressed = await wait_play(
            ctx, ctx.play_to_caller(step.prompts, barge_in=step.barge_in), barge_in=step.barge_in
        )
        if pressed is not None:
            break
    return ctx.plan.after(step)


def _test(ctx: CallContext, step: Branch) -> bool:
    """Evaluate the condition; a failure is logged and takes the safe side: open (the caller
    reaches the normal flow) and not blocked."""
    test = step.test
    services = ctx.services
    if isinstance(test, OpenNow):
        try:
            is_open = services.is_open(test.schedule, ctx.local_time(test.time_zone))
        except Exception as exc:
            ctx.failure(f"schedule-unavailable:{exc}")
            is_open = True
        ctx.trace.rules.append(f"{test.name}={'open' if is_open else 'closed'}")
        return is_open
    if isinstance(test, CallerBlocked):
        try:
            rule = services.caller_blocked(test, ctx.caller.caller, ctx.caller.withheld)
        except Exception as exc:
            ctx.failure(f"blocklist-unavailable:{exc}")
            rule = None
        ctx.trace.rules.append(f"{test.name}={'blocked' if rule is not None else 'no'}")
        return rule is not None
    raise TypeError(f"unknown condition {test!r}")


async def branch(ctx: CallContext, step: Branch) -> Step | None:
    label = step.if_true if _test(ctx, step) else step.if_false
    return ctx.plan.at(label, after=step)


async def classify(ctx: CallContext, step: Classify) -> Step | None:
    ctx.classify(step.disposition)
    if step.reason:
        ctx.trace.reason = step.reason
    return ctx.plan.after(step)


async def goto(ctx: CallContext, step: Goto) -> Step | None:
    return ctx.plan.at(step.label)


def relayed_failure(code: int) -> int:
    """The code an unanswered caller gets for an operator's failure ``code`` (F2): busy
    stays busy (RFC 3261 §16.7 step 6: a proxy forwards the best final response), a loop's
    483 stays 483 (RFC 7332 §3). Our own ring timeout (408), a CANCEL (487) and the
    outbound leg's auth trouble (401/407) are not the caller's business: 480. A 5xx is 502."""
    if code in (0, 401, 407, 408, 487):
        return 480
    if 500 <= code < 600:
        return 502
    return code


async def hangup(ctx: CallContext, step: Hangup) -> Step | None:
    ctx.trace.reason = ctx.trace.reason or step.reason
    if ctx.hint is None:
        ctx.classify(Disposition.NO_ANSWER)
    code = step.code
    if step.relay_attempt and ctx.trace.attempts:
        code = relayed_failure(ctx.trace.attempts[-1].code)
    if ctx.caller_answered:
        ctx.caller.end()
    elif not ctx.caller.terminated:
        ctx.caller.reject(code)
        ctx.trace.sip_code = code
    ctx.trace.hung_up_by = HungUpBy.SYSTEM
    return None
