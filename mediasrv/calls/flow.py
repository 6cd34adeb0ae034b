"""The per-call interpreter of a :class:`~mediasrv.calls.plan.Plan` (issue 10 §3).

``while step: step = await handlers[type(step)](ctx, step)``, as jambonz's
``CallSession.exec()`` does. Every wait goes through :meth:`CallContext.next_event`, which
raises :class:`CallerGone` when the caller hangs up and :class:`Drained` when the server's
drain deadline passes, so those two are handled once, here, and not in every step's loop.
Legs are seen through :mod:`mediasrv.calls.legs`, media only through ``MediaControl``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from mediasrv.media.api import (
    DtmfEvent,
    LegMedia,
    LegRole,
    MediaControl,
    MediaError,
    MediaEvent,
    PlayId,
    PortsExhausted,
    RecordingId,
    RecordMode,
)

from .clock import Clock, TimerHandle
from .disposition import Disposition
from .legs import (
    CallerLeg,
    Dialer,
    LegHungUp,
    LegInfoDigit,
    LegReOffer,
    LegSignal,
    OperatorLeg,
)
from .operators import OperatorBoard
from .plan import CallerBlocked, Plan, Step
from .queue import QueueRegistry, QueueSignal
from .trace import CallEnded, CallStarted, CallTrace, DomainEvent, EventSink, HungUpBy, no_events

log = logging.getLogger("mediasrv.calls.flow")

MAX_STEPS = 10_000  # a bound on steps run by one call (the plan has no instant loops)


class FlowEnded(Exception):
    """Raised out of a wait: the call cannot go on (handled once by :func:`run_call`)."""


class CallerGone(FlowEnded):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Drained(FlowEnded):
    """The server's drain deadline passed."""


class RotationStore(Protocol):
    def next_rotation(self, number_id: str, n: int) -> int: ...


class PromptResolver(Protocol):
    def __call__(self, name: str, files: Mapping[str, str]) -> Path | None:
        """The WAV of prompt ``name`` (the plan's ``files`` map names to files), or None if it
        is missing."""
        ...


def _never_open(_schedule: object, _at: datetime) -> bool:
    raise LookupError("no schedule evaluator wired")


def _never_blocked(_test: CallerBlocked, _caller: str, _withheld: str) -> object | None:
    return None


def _no_contacts(_aor: str) -> Sequence[str]:
    return ()


async def _nothing_to_store(_trace: CallTrace) -> None:
    return None


class _FirstRotation:
    def next_rotation(self, number_id: str, n: int) -> int:
        return 0


@dataclass(slots=True)
class FlowServices:
    """Everything a call needs from the rest of the server (wired by the composition root)."""

    media: MediaControl
    dialer: Dialer
    clock: Clock
    prompts: PromptResolver
    recording_path: Callable[[str, float], Path]  # (call id, start wall time) -> WAV
    voicemail_path: Callable[[str, str, float], Path]  # (call id, mailbox, start) -> WAV
    board: OperatorBoard
    queues: QueueRegistry
    is_open: Callable[[object, datetime], bool] = _never_open  # (Schedule, aware local time)
    # (the lists, the caller's number, its withheld category) -> the matching rule, or None
    caller_blocked: Callable[[CallerBlocked, str, str], object | None] = _never_blocked
    rotation: RotationStore = field(default_factory=_FirstRotation)
    contacts_for: Callable[[str], Sequence[str]] = _no_contacts  # registrar: AOR -> contacts
    events: EventSink = no_events
    # Persist the answer before the caller's 200 / the bridge (committed before acknowledged).
    store_answer: Callable[[CallTrace], Awaitable[None]] = _nothing_to_store
    count_failure: Callable[[str], None] = lambda _reason: None  # metrics
    fallback_prompt: str = "error"  # played when every prompt of a playlist is missing
    ringback_prompt: str = "ringback"  # looped to an answered caller while an operator rings
    beep_prompt: str = "beep"


@dataclass(slots=True)
class LiveAttempt:
    """An operator leg in flight, so that a hang-up or a drain can end it."""

    source: object  # the token its signals arrive with
    leg: OperatorLeg
    media: LegMedia
    operator: str
    softphone: bool
    answered: bool = False
    bridged: bool = False
    wrap_up: float = 0.0


Source = object  # an OperatorLeg, the CallerLeg, the media engine, a queue, or the call itself
Event = LegSignal | MediaEvent | QueueSignal


class _Timeout:
    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token


class _Stop:
    pass


_STOP = _Stop()


class CallContext:
    """One call's state while its plan runs; steps use it and nothing else."""

    def __init__(
        self,
        plan: Plan,
        caller: CallerLeg,
        services: FlowServices,
        call_id: str | None = None,
    ) -> None:
        self.id = call_id or uuid.uuid4().hex
        self.plan = plan
        self.caller = caller
        self.services = services
        self.media = services.media
        self.clock = services.clock
        self.trace = CallTrace(
            call_id=self.id,
            number=plan.number,
            caller=caller.caller or caller.withheld or "anonymous",
            flow_version=plan.version,
            inbound_call_id=caller.call_id,
            business=plan.business,
            medium=plan.medium,
            campaign=plan.campaign,
            received=self.clock.wall(),
        )
        self.caller_media: LegMedia | None = None
        self.caller_sdp: bytes | None = None  # our answer to the caller's offer
        self.caller_answered = False  # 200 sent
        self.early_media = False  # 183 with SDP sent
        self.caller_play: PlayId | None = None  # what the caller hears now
        self.attempts: list[LiveAttempt] = []
        self.recording: RecordingId | None = None
        self.hint: Disposition | None = None  # the disposition unless something better happens
        self._queue: asyncio.Queue[tuple[Source, object]] = asyncio.Queue()
        self._token = 0
        self._timer: TimerHandle | None = None
        self._digits_seen = 0
        self.done = False
        caller.listen(self.signal_from(caller))

    # -- events in ----------------------------------------------------------------------------
    def signal_from(self, source: Source) -> Callable[[LegSignal], None]:
        put = self._queue.put_nowait

        def sink(event: LegSignal) -> None:
            put((source, event))

        return sink

    def media_event(self, event: MediaEvent) -> None:
        """The media engine's events for this call (the supervisor dispatches by call id)."""
        self._queue.put_nowait((self.media, event))

    def queue_signal(self, event: QueueSignal) -> None:
        self._queue.put_nowait((self, event))

    def stop(self) -> None:
        """Drain deadline: end the call now."""
        self._queue.put_nowait((self, _STOP))

    def emit(self, event: DomainEvent) -> None:
        try:
            self.services.events(event)
        except Exception:  # a listener's bug must not end the call
            log.exception("event sink failed", extra={"call_id": self.id})

    async def next_event(self, timeout: float | None) -> tuple[Source, Event] | None:
        """The next event for this call, or None when ``timeout`` seconds pass first.

        Raises :class:`CallerGone` (the caller hung up) and :class:`Drained`; digits from SIP
        INFO go to the media engine's digit stream and come back as one ``DtmfEvent``."""
        self._token += 1
        token = self._token
        if timeout is not None:
            put = self._queue.put_nowait
            self._timer = self.clock.call_later(
                max(timeout, 0.0), lambda: put((self, _Timeout(token)))
            )
        try:
            while True:
                source, event = await self._queue.get()
                if isinstance(event, _Timeout):
                    if event.token == token:
                        return None
                    continue  # a stale timer of an earlier wait
                if isinstance(event, _Stop):
                    raise Drained("drain")
                if source is self.caller:
                    if isinstance(event, LegHungUp):
                        raise CallerGone(event.reason)
                    if isinstance(event, LegInfoDigit):
                        self._info_digit(event, self.caller_media)
                        continue
                elif isinstance(event, LegInfoDigit):
                    self._info_digit(event, self._media_of(source))
                    continue
                if isinstance(event, LegReOffer):
                    self._on_reoffer(source, event)
                    continue
                if isinstance(event, DtmfEvent):
                    self._note_digit(event)
                return source, event  # type: ignore[return-value]
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _note_digit(self, event: DtmfEvent) -> None:
        if event.role is LegRole.CALLER:
            self.trace.digits.append(event.digit)
        self._digits_seen += 1
        # The count, not the digit: callers key in PINs and card numbers; the call row keeps
        # the digits, the log only says that one was taken (RFC 4733: at its end packet).
        log.info(
            "dtmf digit",
            extra={
                "call_id": self.id,
                "leg": event.role.value,
                "source": event.source,
                "count": self._digits_seen,
            },
        )

    # -- re-INVITEs (hold / resume), handled here once for every step ------------------------------
    def _on_reoffer(self, source: Source, event: LegReOffer) -> None:
        """Bridged: pass the offer to the other leg (RFC 3264 §8: hold keeps both sides in
        step). Not bridged (IVR, queue, whisper): answer it on our side."""
        bridged = next((a for a in self.attempts if a.bridged), None)
        this = self.caller_media if source is self.caller else self._media_of(source)
        if this is None:
            event.respond(488, None)
            return
        try:
            if bridged is None or event.sdp is None:
                sdp = (
                    self.media.offer(this)
                    if event.sdp is None
                    else self.media.answer(this, event.sdp)
                )
                event.respond(200, sdp)
                return
            from_caller = source is self.caller
            other_media = bridged.media if from_caller else self.caller_media
            other_leg: CallerLeg | OperatorLeg = bridged.leg if from_caller else self.caller
            assert other_media is not None
            offer = self.media.offer(other_media, like=event.sdp)
        except MediaError:
            event.respond(488, None)
            return
        assert other_media is not None

        def answered(code: int, answer: bytes | None) -> None:
            if code >= 300 or answer is None:
                event.respond(code if code >= 300 else 488, None)
                return
            try:
                self.media.accept_answer(other_media, answer)
                codec = self.media.codec_of(other_media)
                event.respond(
                    200,
                    self.media.answer(this, event.sdp or b"", prefer=[codec] if codec else None),
                )
            except MediaError:
                event.respond(488, None)

        other_leg.reinvite(offer, answered)

    def _media_of(self, leg: Source) -> LegMedia | None:
        for a in self.attempts:
            if a.source is leg:
                return a.media
        return None

    def _info_digit(self, event: LegInfoDigit, media: LegMedia | None) -> None:
        if media is not None:
            self.media.signalled_digit(media, event.digit, event.duration_ms / 1000.0)

    # -- the caller's media and answer ----------------------------------------------------------
    def ensure_caller_media(self) -> LegMedia:
        if self.caller_media is None:
            self.caller_media = self.media.allocate(self.id, LegRole.CALLER)
        return self.caller_media

    def caller_answer_sdp(self, prefer: list[str] | None = None) -> bytes:
        if self.caller_sdp is None:
            leg = self.ensure_caller_media()
            self.caller_sdp = self.media.answer(leg, self.caller.offer or b"", prefer=prefer)
        return self.caller_sdp

    def answer_caller(self, *, early_media: bool = False) -> None:
        """200 OK (or, with ``early_media``, 183 with SDP); idempotent."""
        if self.caller_answered or self.caller.terminated:
            return
        sdp = self.caller_answer_sdp()
        if early_media:
            if not self.early_media:
                self.caller.ring(183, sdp)
                self.early_media = self.trace.early_media = True
            return
        self.caller.answer(sdp)
        self.caller_answered = True
        self.trace.answered = self.clock.wall()

    @property
    def caller_has_media(self) -> bool:
        return self.caller_answered or self.early_media

    # -- prompts --------------------------------------------------------------------------------
    def resolve(self, names: Sequence[str]) -> list[Path]:
        """The files of ``names``; a missing prompt is logged, counted and skipped; if all are
        missing the fallback prompt plays instead (the caller never sits in silence)."""
        paths: list[Path] = []
        for name in names:
            path = self.services.prompts(name, self.plan.prompt_files)
            if path is None:
                self.failure(f"prompt-missing:{name}")
            else:
                paths.append(path)
        if not paths and names:
            fallback = self.services.prompts(self.services.fallback_prompt, self.plan.prompt_files)
            if fallback is not None:
                paths.append(fallback)
        return paths

    def play_to_caller(
        self, names: Sequence[str], *, loop: bool = False, barge_in: bool = False
    ) -> PlayId | None:
        paths = self.resolve(names)
        if not paths:
            return None
        leg = self.ensure_caller_media()
        self.caller_play = self.media.play(leg, paths, loop=loop, barge_in=barge_in)
        self.trace.prompts.extend(names)
        return self.caller_play

    def stop_caller_play(self) -> None:
        if self.caller_play is not None:
            self.media.stop_play(self.caller_play)
            self.caller_play = None

    # -- bookkeeping ----------------------------------------------------------------------------
    def failure(self, reason: str) -> None:
        """A run-time failure the call survives: logged, counted, in the call log."""
        self.trace.failures.append(reason)
        log.warning("flow failure", extra={"call_id": self.id, "reason": reason})
        try:
            self.services.count_failure(reason.split(":", 1)[0])
        except Exception:
            log.exception("failure counter failed", extra={"call_id": self.id})

    def classify(self, disposition: Disposition) -> None:
        self.hint = disposition

    def local_time(self, zone: str) -> datetime:
        from zoneinfo import ZoneInfo

        return datetime.fromtimestamp(self.clock.wall(), ZoneInfo(zone))

    def start_recording(self) -> None:
        mode = self.plan.record
        if mode is RecordMode.OFF or self.recording is not None:
            return
        path = self.services.recording_path(self.id, self.trace.received)
        self.recording = self.media.record(self.id, path, mode)
        self.trace.recording = path


Handler = Callable[[CallContext, Step], Awaitable[Step | None]]


def _final_disposition(ctx: CallContext, caller_left: bool) -> Disposition:
    if ctx.trace.bridged is not None:
        return Disposition.ANSWERED
    if ctx.trace.voicemail is not None:
        return Disposition.VOICEMAIL
    if ctx.hint in (Disposition.BLOCKED, Disposition.AFTER_HOURS, Disposition.FAILED):
        return ctx.hint
    if caller_left:
        return Disposition.ABANDONED
    return ctx.hint or Disposition.NO_ANSWER


async def run_call(
    plan: Plan,
    caller: CallerLeg,
    services: FlowServices,
    handlers: Mapping[type, Handler] | None = None,
    *,
    ctx: CallContext | None = None,
) -> CallTrace:
    """Run ``plan`` for this caller until the call is over; returns its trace."""
    if handlers is None:
        from .steps import HANDLERS

        handlers = HANDLERS
    if ctx is None:
        ctx = CallContext(plan, caller, services)
    ctx.emit(CallStarted(ctx.id, plan.number, ctx.trace.caller, plan.version, ctx.trace.received))
    caller_left = False
    try:
        if caller.offer is None:
            ctx.failure("no-sdp-offer")  # a delayed offer (RFC 3261 §13.2.1) is not supported
            ctx.classify(Disposition.FAILED)
            ctx.trace.sip_code = 488
            caller.reject(488)
            return ctx.trace
        step: Step | None = plan.entry
        for _ in range(MAX_STEPS):
            if step is None:
                break
            ctx.trace.path.append(_path_name(plan, step))
            step = await handlers[type(step)](ctx, step)
        else:
            ctx.failure("too-many-steps")
    except CallerGone as gone:
        caller_left = True
        ctx.trace.hung_up_by = HungUpBy.CALLER
        ctx.trace.reason = ctx.trace.reason or f"caller-{gone.reason}"
    except Drained:
        ctx.trace.reason = ctx.trace.reason or "drain"
        ctx.trace.hung_up_by = HungUpBy.SYSTEM
    except PortsExhausted as exc:
        ctx.failure(f"rtp-ports-exhausted:{exc}")
        ctx.classify(Disposition.FAILED)
        _end_caller(ctx, 503)
    except MediaError as exc:
        ctx.failure(f"media-error:{exc}")
        ctx.classify(Disposition.FAILED)
    except Exception:
        log.exception("call flow crashed", extra={"call_id": ctx.id})
        ctx.failure("internal-error")
        ctx.classify(Disposition.FAILED)
    finally:
        await _finish(ctx, caller_left)
    return ctx.trace


def _path_name(plan: Plan, step: Step) -> str:
    label = plan.label_of(step)
    kind = type(step).__name__.lower()
    if label.startswith("#"):
        return kind
    return label if label.split(":", 1)[0] == kind else f"{kind}:{label}"


def _end_caller(ctx: CallContext, code: int) -> None:
    """End the caller's leg if still up: BYE when answered, else a final ``code``."""
    if ctx.caller.terminated:
        return
    if ctx.caller_answered:
        ctx.caller.end()
    else:
        ctx.caller.reject(code)
        ctx.trace.sip_code = code
    if ctx.trace.hung_up_by is HungUpBy.NOBODY:
        ctx.trace.hung_up_by = HungUpBy.SYSTEM


async def _finish(ctx: CallContext, caller_left: bool) -> None:
    """The one place a call is torn down, however it ended."""
    ctx.done = True
    for a in ctx.attempts:
        try:
            if a.answered:
                a.leg.end()
            else:
                a.leg.cancel()
        except Exception:
            log.exception("ending an operator leg failed", extra={"call_id": ctx.id})
        _release_operator(ctx, a)
    ctx.attempts.clear()
    # Our fault (or the drain): 503, so a carrier may try elsewhere; never a bare 500.
    failed = ctx.hint is Disposition.FAILED or ctx.trace.reason == "drain"
    _end_caller(ctx, 503 if failed else 480)
    ctx.trace.ended = ctx.clock.wall()
    if ctx.caller_answered and not ctx.trace.sip_code:
        ctx.trace.sip_code = 200
    if ctx.caller_media is not None:
        try:
            report = ctx.media.release(ctx.id)
            ctx.trace.media = report
            for r in report.recordings:
                if r.recording_id == ctx.recording and r.path is None:
                    ctx.failure("recording-failed")
                    ctx.trace.recording = None  # never point the call log at a bad file
        except Exception:
            log.exception("media release failed", extra={"call_id": ctx.id})
    ctx.trace.disposition = _final_disposition(ctx, caller_left)
    ctx.emit(CallEnded(ctx.id, ctx.trace, ctx.trace.ended))


def _release_operator(ctx: CallContext, a: LiveAttempt) -> None:
    board = ctx.services.board
    if a.bridged:
        board.finished(a.operator, a.wrap_up, softphone=a.softphone)
    else:
        board.released(a.operator, softphone=a.softphone)
