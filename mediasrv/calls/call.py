"""One call, one asyncio task, a straight-line flow: route, ring, bridge, record, hang up.

The flow reads like the feature (F2, F8 first version): try each destination in order with
its own ring timeout; relay ringing and early media; on answer, bridge and record; when either
side hangs up, end the other; then release media and hand the result to the call log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from mediasrv.media.api import (
    DtmfEvent,
    LegMedia,
    LegRole,
    MediaControl,
    MediaError,
    MediaEvent,
    MediaReport,
    NoCommonCodec,
    PortsExhausted,
    RecordMode,
    RtpTimeout,
    SdpError,
)
from mediasrv.media.prompt_loader import PromptLoader
from mediasrv.sip.events import Answered, Dtmf, Failed, Hangup, LegEvent, ReOffer, Ringing
from mediasrv.sip.legs import InboundLeg, Leg, OutboundLeg

from .caller_id import CallerId, identify_caller
from .disposition import Disposition
from .peers import resolve_peer
from .routing import Destination, Route

log = logging.getLogger("mediasrv.calls")


Outcome = Disposition  # the one disposition enum (calls/disposition.py); the old name stays


@dataclass(slots=True)
class Attempt:
    uri: str
    start: float
    end: float = 0.0
    code: int = 0
    reason: str = ""


@dataclass(slots=True)
class CallResult:
    """Everything the call log needs about one finished call."""

    call_id: str
    inbound_call_id: str
    tracking_number: str
    caller_number: str
    caller_display: str
    trunk: str = ""
    business: str = ""
    medium: str = ""
    campaign: str = ""
    start_time: float = 0.0
    answer_time: float | None = None
    end_time: float | None = None
    outcome: Outcome = Outcome.FAILED
    sip_code: int = 0
    end_reason: str = ""
    operator_uri: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    dtmf: list[tuple[str, str, str]] = field(default_factory=list)  # (digit, leg, source)
    recording: Path | None = None
    recording_bytes: int = 0
    media: MediaReport | None = None
    caller: CallerId | None = None  # the classified caller (issue 11)
    callback_of: str = ""  # issue 12 §5: the call this callback calls back
    flags: tuple[str, ...] = ()  # the route's flags ("callback", "callback-expired")

    @property
    def ring_seconds(self) -> float:
        end = self.answer_time or self.end_time or self.start_time
        return max(0.0, end - self.start_time)

    @property
    def talk_seconds(self) -> float:
        if self.answer_time is None or self.end_time is None:
            return 0.0
        return max(0.0, self.end_time - self.answer_time)


async def _nothing_to_store(_result: CallResult) -> None:
    return None


@dataclass(slots=True)
class CallServices:
    """What a call needs from the rest of the server (wired by app.py)."""

    media: MediaControl
    create_outbound: Callable[..., OutboundLeg]
    recording_path: Callable[[str, float], Path]  # (call id, start time) -> WAV path
    wall_clock: Callable[[], float] = time.time
    # Persist the answer (answer time, operator, recording) before the caller gets its 200,
    # so that a call the caller saw answered is answered in the log even after a crash.
    store_answer: Callable[[CallResult], Awaitable[None]] = _nothing_to_store
    prompts: PromptLoader | None = None  # issue 9 §5: prompt names -> files (the store)


class Stop(enum.Enum):
    """Control messages from the server to a call."""

    DRAIN = "drain"  # the drain deadline passed: hang up now


def _drop(_event: LegEvent) -> None:
    return None


def map_failure(code: int) -> int:
    """The code the caller gets when the operator side fails (F2: 486 stays 486, a ring
    timeout becomes 480). Auth and timeout failures of our outbound leg are not the
    caller's business, so they become 480 as well; server errors become 502."""
    if code in (401, 407, 408, 487):
        return 480
    if 500 <= code < 600:
        return 502
    return code


def _outcome_for(code: int) -> Outcome:
    if code in (486, 600):
        return Outcome.BUSY
    if code in (480, 408):
        return Outcome.NO_ANSWER
    return Outcome.FAILED


QueueItem = tuple[object, LegEvent | MediaEvent | Stop]


class Call:
    """The flow of one call. ``run()`` returns when both legs and the media are gone."""

    def __init__(
        self,
        inbound: InboundLeg,
        route: Route | None,
        services: CallServices,
        trunk: str = "",
        caller: CallerId | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.inbound = inbound
        self.route = route
        self.services = services
        self.media = services.media
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        self.outbound: OutboundLeg | None = None
        self.caller_media: LegMedia | None = None
        self.operator_media: LegMedia | None = None
        self.caller_answer: bytes | None = None
        self.bridged = False  # answered and connected
        self.media_bridged = False  # RTP relayed (from early media on)
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._legs_tried: list[OutboundLeg] = []
        inbound.sink = self._sink_for(inbound)
        if caller is None:  # no trunk data given: the From header alone
            caller = identify_caller(inbound.caller_user, inbound.caller_display)
        self.result = CallResult(
            call_id=self.id,
            inbound_call_id=inbound.call_id,
            tracking_number=inbound.called_user,
            caller_number=caller.number,
            caller_display=caller.display,
            trunk=trunk,
            start_time=services.wall_clock(),
            caller=caller,
        )
        if route is not None:
            self.result.business = route.business
            self.result.medium = route.medium
            self.result.campaign = route.campaign
            self.result.callback_of = route.callback_of
            self.result.flags = route.flags

    # -- event plumbing ---------------------------------------------------------------------------
    def _sink_for(self, leg: Leg) -> Callable[[LegEvent], None]:
        put = self.queue.put_nowait

        def sink(event: LegEvent) -> None:
            put((leg, event))

        return sink

    def media_event(self, event: MediaEvent) -> None:
        self.queue.put_nowait((self.media, event))

    def stop(self, why: Stop = Stop.DRAIN) -> None:
        self.queue.put_nowait((self, why))

    # -- the flow ---------------------------------------------------------------------------------
    async def run(self) -> CallResult:
        try:
            await self._flow()
        except MediaError as exc:
            log.warning("call failed in media", extra={"call_id": self.id, "error": str(exc)})
            self._end_both("media-error", 500)
        except Exception:
            log.exception("call flow crashed", extra={"call_id": self.id})
            self._end_both("internal-error", 500)
        finally:
            await self._finish()
        return self.result

    async def _flow(self) -> None:
        route = self.route
        if route is None:
            self._reject(404, Outcome.FAILED, "not-a-tracking-number")
            return
        if route.reject_code:
            self._reject(route.reject_code, Outcome.FAILED, route.reject_reason or "refused")
            return
        if not route.destinations:
            self._reject(480, Outcome.NO_ANSWER, "no-destinations")
            return
        offer = self.inbound.offer
        if offer is None:
            # Delayed offer (INVITE without SDP) is not supported yet: tell the caller so.
            self._reject(488, Outcome.FAILED, "no-sdp-offer")
            return
        last_code = 480
        try:
            self.caller_media = self.media.allocate(self.id, LegRole.CALLER)
            for destination in route.destinations:
                code = await self._try(destination, offer)
                if code == 200 or self.inbound.terminated:
                    break
                last_code = code
        except (PortsExhausted, OSError) as exc:
            # No port, or no file descriptor for its socket (EMFILE): we are full, say so.
            self._reject(503, Outcome.FAILED, f"rtp-ports-exhausted: {exc}")
            return
        except (SdpError, NoCommonCodec) as exc:
            self._reject(488, Outcome.FAILED, f"bad-sdp: {exc}")
            return
        if self.bridged:
            await self._talk()
        elif not self.inbound.terminated:
            mapped = map_failure(last_code)
            self._reject(mapped, _outcome_for(mapped), f"operator-{last_code}")

    async def _try(self, destination: Destination, caller_offer: bytes) -> int:
        """Ring one destination on a media leg of its own; returns 200 when answered, else
        the failure code. A failed attempt's media leg is released at once, so RTP arriving
        late from that operator can latch nothing (the next attempt has another port)."""
        self.operator_media = self.media.allocate(self.id, LegRole.OPERATOR)
        try:
            operator_offer = self.media.offer(self.operator_media, like=caller_offer)
            return await self._ring_destination(destination, operator_offer)
        finally:
            if not self.bridged:
                self._release_attempt()

    def _release_attempt(self) -> None:
        if self.operator_media is not None:
            self.media.release_leg(self.operator_media)
            self.operator_media = None
            self.media_bridged = False  # early media of this attempt ended with its leg

    async def _ring_destination(self, destination: Destination, operator_offer: bytes) -> int:
        attempt = Attempt(destination.uri, self.services.wall_clock())
        self.result.attempts.append(attempt)
        try:
            peer = await resolve_peer(destination.uri)
        except ValueError as exc:
            attempt.code, attempt.reason, attempt.end = 502, str(exc), self.services.wall_clock()
            return 502
        leg = self.services.create_outbound(
            target=destination.uri,
            peer=peer,
            from_user=self.inbound.caller_user,
            from_display=self.inbound.caller_display,
            sdp=operator_offer,
            sink=None,
            credentials=destination.credentials,
            max_forwards=self.inbound.onward_max_forwards,  # a routing loop ends (483)
        )
        leg.sink = self._sink_for(leg)
        self._legs_tried.append(leg)
        self.outbound = leg
        outcome = await self._ring(leg, destination.ring_timeout)
        attempt.end = self.services.wall_clock()
        if isinstance(outcome, Answered):
            attempt.code = 200
            await self._connect(leg, outcome.sdp)
            return 200
        attempt.code = outcome
        return outcome

    async def _ring(self, leg: OutboundLeg, ring_timeout: float) -> int | Answered:
        """Wait for this destination's answer (returned as is) or its failure code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_timeout
        while True:
            try:
                source, event = await asyncio.wait_for(
                    self.queue.get(), max(deadline - loop.time(), 0.0)
                )
            except TimeoutError:
                # Ring timeout: give up on this destination at once. The leg finishes on
                # its own (CANCEL, or ACK + BYE if a 200 races the CANCEL).
                leg.cancel()
                return 408
            if source is leg:
                if isinstance(event, Answered):
                    return event
                result = self._on_outbound_ringing(leg, event)
                if result is not None:
                    return result
            elif source is self.inbound:
                if isinstance(event, Hangup):
                    self.result.end_reason = f"caller-{event.reason}"
                    self.result.outcome = Outcome.ABANDONED
                    self.result.sip_code = 487
                    leg.cancel()
                    return 487
            elif isinstance(event, Stop):
                leg.cancel()
                self._reject(503, Outcome.ABANDONED, "drain")
                return 503
            elif isinstance(event, DtmfEvent):
                self._note_dtmf(event.digit, event.role.value, event.source)

    def _on_outbound_ringing(self, leg: OutboundLeg, event: object) -> int | None:
        if isinstance(event, Ringing):
            if event.sdp is not None:
                self._early_media(event.sdp)
            else:
                self.inbound.ring(180)
            return None
        if isinstance(event, Failed):
            return event.code
        return None

    def _caller_answer(self) -> bytes:
        assert self.caller_media is not None and self.operator_media is not None
        if self.caller_answer is None:
            codec = self.media.codec_of(self.operator_media)
            offer = self.inbound.offer or b""
            self.caller_answer = self.media.answer(
                self.caller_media, offer, prefer=[codec] if codec else None
            )
        return self.caller_answer

    def _early_media(self, sdp: bytes) -> None:
        """183 with SDP: bridge now so the caller hears the operator side's ringback."""
        assert self.caller_media is not None and self.operator_media is not None
        self.media.accept_answer(self.operator_media, sdp)
        self.inbound.ring(183, self._caller_answer())
        if not self.media_bridged:
            self.media.bridge(self.caller_media, self.operator_media)
            self.media_bridged = True

    async def _connect(self, leg: OutboundLeg, sdp: bytes | None) -> None:
        """The operator answered: store the answer, then answer the caller, bridge, record."""
        assert self.caller_media is not None and self.operator_media is not None
        if sdp:
            self.media.accept_answer(self.operator_media, sdp)
        answer = self._caller_answer()
        self.result.answer_time = self.services.wall_clock()
        self.result.operator_uri = leg.request.uri
        self.result.outcome = Outcome.ANSWERED
        self.result.sip_code = 200
        self.result.recording = self._recording_target()
        # Committed before it is acknowledged (ARCHITECTURE): the caller's 200 waits for the
        # row that says answered; the write joins the store's group commit.
        await self.services.store_answer(self.result)
        if self.inbound.terminated:
            self._caller_left_during_answer(leg)
            return
        self.inbound.answer(answer)
        if not self.media_bridged:
            self.media.bridge(self.caller_media, self.operator_media)
            self.media_bridged = True
        self.bridged = True
        self._start_recording()

    def _caller_left_during_answer(self, leg: OutboundLeg) -> None:
        """The caller's CANCEL crossed the operator's 200 while the answer was stored: the
        caller never got a 200, so the call is abandoned and the operator gets a BYE."""
        self.result.answer_time = None
        self.result.operator_uri = ""
        self.result.recording = None
        self.result.outcome = Outcome.ABANDONED
        self.result.sip_code = self.inbound.final_code or 487
        if not self.result.end_reason:
            self.result.end_reason = f"caller-{self.inbound.end_reason or 'cancel'}"
        leg.end()

    def _recording_target(self) -> Path | None:
        mode = self.route.record if self.route is not None else RecordMode.BOTH
        if mode is RecordMode.OFF:
            return None
        return self.services.recording_path(self.id, self.result.start_time)

    def _start_recording(self) -> None:
        path = self.result.recording
        if path is None:
            return
        mode = self.route.record if self.route is not None else RecordMode.BOTH
        self.media.record(self.id, path, mode)

    async def _talk(self) -> None:
        """Both legs up: wait until one side hangs up (or media dies, or the drain ends)."""
        outbound = self.outbound
        assert outbound is not None
        while True:
            source, event = await self.queue.get()
            if source not in (self.inbound, outbound, self.media, self):
                continue  # a late event from an earlier attempt's leg
            if isinstance(event, Hangup):
                if source is self.inbound:
                    self.result.end_reason = "caller-" + event.reason
                    outbound.end()
                else:
                    self.result.end_reason = "operator-" + event.reason
                    self.inbound.end()
                return
            if isinstance(event, RtpTimeout):
                self.result.end_reason = "no-rtp"
                log.info("no RTP: ending call", extra={"call_id": self.id, "leg": event.role.value})
                self._end_both("no-rtp", 0)
                return
            if isinstance(event, Stop):
                self.result.end_reason = "drain"
                self._end_both("drain", 0)
                return
            if isinstance(event, ReOffer):
                self._spawn(self._pass_reoffer(source, event))
            elif isinstance(event, Dtmf):
                # Into the leg's one digit stream: noted when the media side reports it,
                # once even if the phone also sent it as RFC 4733 or a tone (issue 9 §4).
                media = self.caller_media if source is self.inbound else self.operator_media
                if media is not None:
                    self.media.signalled_digit(media, event.digit, event.duration_ms / 1000)
                other = outbound if source is self.inbound else self.inbound
                other.send_dtmf_info(event.digit, event.duration_ms)
            elif isinstance(event, DtmfEvent):
                self._note_dtmf(event.digit, event.role.value, event.source)

    async def _pass_reoffer(self, source: object, event: ReOffer) -> None:
        """re-INVITE pass-through (hold/resume): offer the same to the other leg, then answer."""
        assert self.caller_media is not None and self.operator_media is not None
        outbound = self.outbound
        assert outbound is not None
        from_caller = source is self.inbound
        this_media, other_media = (
            (self.caller_media, self.operator_media)
            if from_caller
            else (self.operator_media, self.caller_media)
        )
        other: Leg = outbound if from_caller else self.inbound
        if event.sdp is None:
            event.respond(200, self.media.offer(this_media))
            return
        try:
            other_offer = self.media.offer(other_media, like=event.sdp)
        except MediaError:
            event.respond(488, None)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[int, bytes | None]] = loop.create_future()

        def on_done(code: int, sdp: bytes | None) -> None:
            if not done.done():
                done.set_result((code, sdp))

        other.reinvite(other_offer, on_done)
        code, answer = await done
        if code >= 300 or answer is None:
            event.respond(code if code >= 300 else 488, None)
            return
        try:
            self.media.accept_answer(other_media, answer)
            codec = self.media.codec_of(other_media)
            mine = self.media.answer(this_media, event.sdp, prefer=[codec] if codec else None)
        except MediaError:
            event.respond(488, None)
            return
        event.respond(200, mine)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _note_dtmf(self, digit: str, leg: str, source: str) -> None:
        self.result.dtmf.append((digit, leg, source))
        # The count, not the digit: callers key in PINs and card numbers; the call row keeps
        # the digits, the log only says that one was taken (RFC 4733: at its end packet).
        log.info(
            "dtmf digit",
            extra={"call_id": self.id, "leg": leg, "source": source, "count": len(self.result.dtmf)},
        )

    def _reject(self, code: int, outcome: Outcome, reason: str) -> None:
        self.inbound.reject(code)
        self.result.sip_code = code
        self.result.outcome = outcome
        if not self.result.end_reason:
            self.result.end_reason = reason

    def _end_both(self, reason: str, code: int) -> None:
        if not self.result.end_reason:
            self.result.end_reason = reason
        if self.outbound is not None:
            self.outbound.end()
        if not self.inbound.terminated:
            if self.bridged:
                self.inbound.end()
            else:
                self._reject(code or 500, Outcome.FAILED, reason)

    async def _finish(self) -> None:
        for task in list(self._side_tasks):
            task.cancel()
        # Break the leg -> sink -> call -> leg cycles now, so the call's objects go with
        # reference counting instead of waiting for (and lengthening) a cyclic GC pass.
        self.inbound.sink = _drop
        for leg in self._legs_tried:
            leg.sink = _drop
        self.result.end_time = self.services.wall_clock()
        if self.caller_media is not None or self.operator_media is not None:
            report = self.media.release(self.id)
            self.result.media = report
            if report.recording is not None:
                self.result.recording = report.recording
                self.result.recording_bytes = report.recording_bytes
            elif self.result.recording is not None and report.recording_bytes == 0:
                self.result.recording = report.recording
