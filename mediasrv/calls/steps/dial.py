"""Forwarding (F8) and busy / no-answer (F9): ring targets one at a time, whisper, accept,
bridge, talk. :func:`ring` and :func:`connect` are shared with the queue (``Enqueue``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from mediasrv.media.api import DtmfEvent, LegRole, MediaError, PromptFinished, RtpTimeout

from ..disposition import Disposition
from ..flow import CallContext, Event, LiveAttempt, Source
from ..legs import DialRequest, LegAnswered, LegFailed, LegHungUp, LegRinging, TargetUnresolved
from ..operators import OperatorState
from ..plan import Dial, DialTarget, Step, Strategy, TargetKind
from ..queue import is_softphone, operator_id
from ..trace import Answered, Attempt, AttemptResult, HungUpBy, Ringing

log = logging.getLogger("mediasrv.calls.steps")

BUSY_CODES = frozenset({486, 600, 603})  # RFC 3261 §21.4.24, §21.6.1, §21.6.2: move on at once
UNREACHABLE_CODES = frozenset({404, 410, 484, 502, 503, 604})

OtherEvents = Callable[[Source, Event], None]


@dataclass(frozen=True, slots=True)
class RingOptions:
    whisper: tuple[str, ...] = ()
    accept_digit: str | None = None
    accept_prompt: tuple[str, ...] = ()
    accept_timeout: float = 5.0
    ringback: str | None = None  # prompt for an answered caller; None: the services' default
    claimed: bool = False  # the queue already made this operator ringing on the board
    wrap_up: float = 0.0


def _finish_attempt(
    ctx: CallContext, attempt: Attempt, result: AttemptResult, code: int, reason: str
) -> AttemptResult:
    if not attempt.end:  # an answered attempt rang until its answer, not its refusal
        attempt.end = ctx.clock.wall()
    attempt.result, attempt.code, attempt.reason = result, code, reason
    return result


def _drop(ctx: CallContext, live: LiveAttempt) -> None:
    """Forget an attempt that did not connect: its media leg and its board state."""
    if live in ctx.attempts:
        ctx.attempts.remove(live)
    try:
        ctx.media.release_leg(live.media)
    except MediaError as exc:
        ctx.failure(f"release-leg:{exc}")
    ctx.services.board.released(live.operator, softphone=live.softphone)


def _pick_member(ctx: CallContext, group: DialTarget) -> DialTarget | None:
    board = ctx.services.board
    for m in group.members:
        if board.is_available(operator_id(m), softphone=is_softphone(m)):
            return m
    return None


def _uri_for(ctx: CallContext, target: DialTarget) -> str | None:
    if target.kind is TargetKind.SIP_URI:
        return target.address
    if target.kind is TargetKind.PHONE:
        return f"tel:{target.address}"
    contacts = list(ctx.services.contacts_for(target.address))
    return contacts[0] if contacts else None


def _relay_ringing(
    ctx: CallContext, live: LiveAttempt, event: LegRinging, opts: RingOptions, queued: bool
) -> None:
    """Tell the caller it rings: 180, the far end's early media, or our ringback prompt."""
    if queued:
        return  # the caller hears the queue's music
    if ctx.caller_has_media:
        if ctx.caller_play is None:
            ctx.play_to_caller([opts.ringback or ctx.services.ringback_prompt], loop=True)
        return
    if event.sdp is not None and not opts.whisper and not opts.accept_digit:
        # 183 with SDP: the caller hears the far end's ringback (a carrier's, for PHONE).
        ctx.media.accept_answer(live.media, event.sdp)
        codec = ctx.media.codec_of(live.media)
        ctx.caller.ring(183, ctx.caller_answer_sdp(prefer=[codec] if codec else None))
        ctx.early_media = True
        ctx.media.bridge(ctx.ensure_caller_media(), live.media)
        return
    ctx.caller.ring(180)


async def ring(
    ctx: CallContext,
    target: DialTarget,
    opts: RingOptions,
    on_other: OtherEvents | None = None,
) -> tuple[AttemptResult, LiveAttempt | None]:
    """Ring one target until it answers (and accepts), fails or times out."""
    board = ctx.services.board
    if target.kind is TargetKind.GROUP:
        member = _pick_member(ctx, target)
        if member is None:
            attempt = Attempt(target.address, target.address, ctx.clock.wall())
            ctx.trace.attempts.append(attempt)
            return _finish_attempt(ctx, attempt, AttemptResult.BUSY, 0, "group-busy"), None
        target = member
    softphone = is_softphone(target)
    # the board tracks named operators (and the queue's members); a bare URI or a shared
    # line (a PBX) is never "busy"
    tracked = (target.operator and not target.shared) or opts.claimed or softphone
    op = operator_id(target) if tracked else ""
    attempt = Attempt(target.address, target.operator, ctx.clock.wall())
    ctx.trace.attempts.append(attempt)
    state = board.state(op, softphone=softphone)
    if (
        not opts.claimed
        and state is not OperatorState.IDLE
        and not (softphone and state is OperatorState.OFFLINE)
    ):
        return _finish_attempt(ctx, attempt, AttemptResult.BUSY, 0, f"operator-{state.value}"), None
    uri = _uri_for(ctx, target)
    if softphone:  # the registrar is the truth: keep the board in step with it
        board.registered(op, uri is not None)
    if uri is None:
        ctx.failure(f"operator-unregistered:{target.address}")
        return _finish_attempt(
            ctx, attempt, AttemptResult.UNREACHABLE, 0, "operator-unregistered"
        ), None
    ctx.ensure_caller_media()
    op_media = ctx.media.allocate(ctx.id, LegRole.OPERATOR)
    offer = ctx.media.offer(op_media, like=ctx.caller.offer)
    source = object()
    try:
        leg = await ctx.services.dialer.dial(
            DialRequest(uri, offer, ctx.caller.caller, trunk=target.trunk, on_behalf_of=ctx.caller),
            ctx.signal_from(source),
        )
    except TargetUnresolved as exc:
        ctx.failure(f"target-unresolved:{exc}")
        ctx.media.release_leg(op_media)
        return _finish_attempt(ctx, attempt, AttemptResult.UNREACHABLE, 0, str(exc)), None
    wrap_up = max(opts.wrap_up, target.wrap_up)
    live = LiveAttempt(source, leg, op_media, op, softphone, wrap_up=wrap_up)
    ctx.attempts.append(live)
    board.ringing(op, softphone=softphone)
    ctx.emit(Ringing(ctx.id, op, target.address, ctx.clock.wall()))
    deadline = ctx.clock.now() + target.ring_timeout
    queued = on_other is not None
    while True:
        got = await ctx.next_event(deadline - ctx.clock.now())
        if got is None:
            leg.cancel()  # the leg finishes on its own (CANCEL; a racing 200 gets ACK + BYE)
            _drop(ctx, live)
            return _finish_attempt(ctx, attempt, AttemptResult.NO_ANSWER, 408, "ring-timeout"), None
        src, event = got
        if src is not source:
            if on_other is not None:
                on_other(src, event)
            continue
        if isinstance(event, LegRinging):
            _relay_ringing(ctx, live, event, opts, queued)
        elif isinstance(event, LegFailed):
            _drop(ctx, live)
            if event.code in BUSY_CODES:
                result = AttemptResult.BUSY
            elif event.code in UNREACHABLE_CODES or event.code >= 500:
                result = AttemptResult.UNREACHABLE
            else:
                result = AttemptResult.NO_ANSWER
            return _finish_attempt(ctx, attempt, result, event.code, event.reason), None
        elif isinstance(event, LegHungUp):
            _drop(ctx, live)
            return _finish_attempt(ctx, attempt, AttemptResult.NO_ANSWER, 0, event.reason), None
        elif isinstance(event, LegAnswered):
            live.answered = True
            attempt.code, attempt.end = 200, ctx.clock.wall()
            if event.sdp:
                ctx.media.accept_answer(op_media, event.sdp)
            break
    refused = await _whisper_and_accept(ctx, live, opts, on_other)
    if refused is not None:
        result, reason = refused
        live.leg.end()
        _drop(ctx, live)
        return _finish_attempt(ctx, attempt, result, 200, reason), None
    attempt.result = AttemptResult.ANSWERED
    return AttemptResult.ANSWERED, live


async def _whisper_and_accept(
    ctx: CallContext, live: LiveAttempt, opts: RingOptions, on_other: OtherEvents | None
) -> tuple[AttemptResult, str] | None:
    """Play the whisper to the operator only (the caller still hears ringback), then wait for
    the accept digit. Returns why the operator did not take the call, or None."""
    names = opts.whisper + (opts.accept_prompt if opts.accept_digit else ())
    play = ctx.media.play(live.media, ctx.resolve(names)) if names else None
    accept_deadline: float | None = None
    if play is None and opts.accept_digit:
        accept_deadline = ctx.clock.now() + opts.accept_timeout
    if play is None and not opts.accept_digit:
        return None
    while True:
        timeout = None if accept_deadline is None else accept_deadline - ctx.clock.now()
        got = await ctx.next_event(timeout)
        if got is None:
            return AttemptResult.REFUSED, "accept-timeout"
        src, event = got
        if src is live.source and isinstance(event, LegHungUp):
            return AttemptResult.NO_ANSWER, "operator-left-during-whisper"
        if isinstance(event, PromptFinished) and event.play_id == play:
            if not opts.accept_digit:
                return None
            accept_deadline = ctx.clock.now() + opts.accept_timeout
            continue
        if opts.accept_digit and isinstance(event, DtmfEvent) and event.role is LegRole.OPERATOR:
            if play is not None:
                ctx.media.stop_play(play)
            if event.digit == opts.accept_digit:
                return None
            return AttemptResult.REFUSED, f"refused-with-{event.digit}"
        if src is not live.source and on_other is not None:
            on_other(src, event)


async def connect(ctx: CallContext, live: LiveAttempt, target: DialTarget) -> None:
    """The operator took the call: store the answer, answer the caller, bridge, record."""
    ctx.stop_caller_play()  # an operator's answer pre-empts any announcement at once
    trace = ctx.trace
    trace.operator, trace.operator_target = live.operator, target.address
    await ctx.services.store_answer(trace)  # committed before the caller's 200
    if ctx.caller.terminated:
        from ..flow import CallerGone

        raise CallerGone("cancel")  # the caller's CANCEL crossed the operator's 200
    codec = ctx.media.codec_of(live.media)
    ctx.caller_answer_sdp(prefer=[codec] if codec else None)
    ctx.answer_caller()
    ctx.media.bridge(ctx.ensure_caller_media(), live.media)
    live.bridged = True
    now = ctx.clock.wall()
    if trace.bridged is None:  # a second operator (Dial ``g``) keeps the first answer time
        trace.bridged = now  # the talk clock starts after the whisper
    ctx.services.board.busy(live.operator, softphone=live.softphone)
    ctx.emit(Answered(ctx.id, live.operator, target.address, now))
    ctx.start_recording()


async def talk(ctx: CallContext, live: LiveAttempt, time_limit: float = 0.0) -> bool:
    """Both sides up until one hangs up (the caller's hang-up raises out of next_event).
    Returns whether the operator hung up (False: the time limit)."""
    deadline = ctx.clock.now() + time_limit if time_limit > 0 else None
    while True:
        timeout = None if deadline is None else deadline - ctx.clock.now()
        got = await ctx.next_event(timeout)
        if got is None:
            ctx.trace.reason = "time-limit"
            return False
        src, event = got
        if isinstance(event, RtpTimeout):
            # the engine's [media] no_rtp_timeout on either leg: a dead call, not a talking
            # one; end both legs (in the one teardown) and say why
            log.info("no RTP: ending call", extra={"call_id": ctx.id, "leg": event.role.value})
            ctx.trace.reason = "no-rtp"
            ctx.trace.hung_up_by = HungUpBy.SYSTEM
            return False  # a dead call ends, even where the flow would carry on (Dial g)
        if src is live.source and isinstance(event, LegHungUp):
            ctx.trace.hung_up_by = HungUpBy.OPERATOR
            ctx.trace.reason = f"operator-{event.reason}"
            ctx.attempts.remove(live)  # its leg is gone: nothing to BYE
            ctx.services.board.finished(live.operator, live.wrap_up, softphone=live.softphone)
            return True


def carry_on_after_operator(ctx: CallContext, live: LiveAttempt) -> None:
    """Asterisk Dial ``g``: the operator hung up, the caller stays. Unbridge the caller, free
    the operator's media leg (late RTP from it latches nothing), and forget the hang-up, so
    the next step starts from a caller with media and no partner."""
    ctx.media.unbridge(ctx.ensure_caller_media())
    try:
        ctx.media.release_leg(live.media)
    except MediaError as exc:
        ctx.failure(f"release-leg:{exc}")
    ctx.trace.rules.append(f"operator-hung-up={live.operator or 'target'}")
    ctx.trace.hung_up_by = HungUpBy.NOBODY
    ctx.trace.reason = ""


def rotated(ctx: CallContext, step: Dial) -> tuple[DialTarget, ...]:
    targets = step.targets
    if step.strategy is not Strategy.ROUND_ROBIN or len(targets) < 2:
        return targets
    try:
        start = ctx.services.rotation.next_rotation(
            step.rotation_key or ctx.plan.number, len(targets)
        )
    except Exception as exc:  # the store is down: ring in order, say so
        ctx.failure(f"store-down:{exc}")
        start = 0
    start %= len(targets)
    return targets[start:] + targets[:start]


async def dial(ctx: CallContext, step: Dial) -> Step | None:
    opts = RingOptions(
        whisper=step.whisper,
        accept_digit=step.accept_digit,
        accept_prompt=step.accept_prompt,
        accept_timeout=step.accept_timeout,
        ringback=step.ringback,
    )
    for target in rotated(ctx, step):
        result, live = await ring(ctx, target, replace(opts, wrap_up=target.wrap_up))
        if live is not None:
            await connect(ctx, live, target)
            operator_left = await talk(ctx, live, step.time_limit)
            if operator_left and step.continue_on_hangup:
                carry_on_after_operator(ctx, live)
                return ctx.plan.at(step.on_operator_hangup, after=step)
            return None
        if result is AttemptResult.BUSY:
            ctx.classify(Disposition.BUSY)
            if step.on_busy is not None:
                ctx.stop_caller_play()
                return ctx.plan.at(step.on_busy)
        else:
            ctx.classify(Disposition.NO_ANSWER)
            if step.on_no_answer is not None and result is not AttemptResult.UNREACHABLE:
                ctx.stop_caller_play()
                return ctx.plan.at(step.on_no_answer)
    ctx.stop_caller_play()
    return ctx.plan.after(step)
