"""The plan interpreter inside the running server: every call runs a plan (issue 10 §3).

Wires the pieces of issue 10 §3 for ``app.py``: SIP legs through :mod:`mediasrv.flow_legs`,
plans from the business store (:class:`~mediasrv.calls.compile.PlanCache` over
``version_for``: a call keeps the version it started with, an apply changes new calls only;
a number the store does not know falls back to its static ``[[numbers]]`` route, compiled to a
Dial plan), the schedule and blocklist evaluators, the store's round-robin pointers, the
registrar's contacts, the prompt store, the
:class:`~mediasrv.calls.supervisor.CallSupervisor`, and the call log: the in-progress row at the
start, the answered row before the caller's 200, the final row from the trace, each handed to
the server's :class:`FlowCallLog` (store, outbox events, live board, analysis). This is the one
call path: the hard-wired ring -> bridge -> talk flow of ``calls/call.py`` is gone (a static
``[[numbers]]`` route is a Dial plan like any other).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from mediasrv.calls.blocking import caller_blocked
from mediasrv.calls.business import NumberVersion
from mediasrv.calls.caller_id import CallerId
from mediasrv.calls.clock import LoopClock
from mediasrv.calls.compile import PlanCache
from mediasrv.calls.disposition import Disposition
from mediasrv.calls.flow import FlowServices, PromptResolver
from mediasrv.calls.operators import OperatorBoard
from mediasrv.calls.plan import Dial, DialTarget, Hangup, Plan, PlanBuilder, Reject, TargetKind
from mediasrv.calls.queue import QueueRegistry
from mediasrv.calls.routing import Route, Router
from mediasrv.calls.schedule import open_evaluator
from mediasrv.calls.supervisor import CallSupervisor
from mediasrv.calls.trace import CallTrace, DomainEvent
from mediasrv.flow_legs import SipCallerLeg, SipDialer
from mediasrv.media.api import MediaControl, MediaEvent, RecordMode
from mediasrv.outputs.calllog import CallRecord
from mediasrv.outputs.flow_records import record_from_trace
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.prompts import PromptStore
from mediasrv.sip.digest import DigestCredentials
from mediasrv.sip.legs import InboundLeg
from mediasrv.sip.ua import UserAgent

log = logging.getLogger("mediasrv.flows")


def plan_from_route(route: Route) -> Plan:
    """A static ``[[numbers]]`` route as a plan: ring each destination in order, then end
    with the last one's failure as a proxy relays it (480 when nobody was rung)."""
    b = PlanBuilder()
    if route.reject_code:
        # a route that refuses (a callback number with no active lease, issue 12 §5)
        b.add(Reject(route.reject_code, disposition=Disposition.FAILED,
                     reason=route.reject_reason or "refused"))  # fmt: skip
        return b.build(route.tracking_number, 0, medium=route.medium, campaign=route.campaign,
                       business=route.business, record=route.record)  # fmt: skip
    targets = tuple(
        DialTarget(TargetKind.SIP_URI, d.uri, ring_timeout=d.ring_timeout)
        for d in route.destinations[:5]
    )
    if targets:
        b.add(Dial(targets))
    # as a proxy would: the caller hears the last operator's failure (486 busy, 483 loop)
    b.add(Hangup(480, "no-destinations" if not targets else "nobody-answered", relay_attempt=True))
    return b.build(
        route.tracking_number,
        0,
        medium=route.medium,
        campaign=route.campaign,
        business=route.business,
        record=route.record,
    )


def _route_is_the_plan(route: Route | None) -> bool:
    """A callback number's route (issue 12 §5: leased -> dial the caller through the trunk;
    no lease -> refuse) wins over the number's stored flow."""
    return route is not None and bool(route.flags or route.reject_code)


class PlanSource(Protocol):
    """What the runtime needs of the business store (outputs/business_store.py)."""

    def version_for(self, number: str) -> NumberVersion | None: ...

    def next_rotation(self, number_id: str, n: int) -> int: ...


class Contacts(Protocol):
    """What the runtime needs of the registrar (sip/registrar.py)."""

    def contacts_for(self, aor: str) -> Sequence[object]: ...

    def registered(self) -> list[str]: ...


class StoreRouter:
    """The tracking numbers a call may be admitted for in plan mode: the static
    ``[[numbers]]`` and every number of the business store (no restart after an apply)."""

    def __init__(self, static: Router, store: PlanSource) -> None:
        self._static = static
        self._store = store

    def route(self, dialled: str, caller: str) -> Route | None:
        route = self._static.route(dialled, caller)
        if route is not None:
            return route
        try:
            nv = self._store.version_for(dialled)
        except Exception:  # store down: PlanCache answers with the last good plan, if any
            log.warning("business store unavailable for admission", extra={"number": dialled})
            return Route(dialled)
        if nv is None:
            return None
        number = nv.number
        return Route(
            number.number,
            business=nv.business.slug,
            medium=number.medium,
            campaign=number.campaign,
            record=number.record,
        )


def prompt_resolver(
    prompts: Callable[[], PromptStore | None],
) -> PromptResolver:
    """The flow's PromptResolver over the prompt store: a business's own file for the name
    (``files``, relative to the store's directory) when it exists, else the store's name."""

    def resolve(name: str, files: Mapping[str, str]) -> Path | None:
        store = prompts()
        own = files.get(name)
        if own:
            path = Path(own)
            if store is not None and not path.is_absolute():
                path = store.directory / path
            if path.is_file():
                return path
        return None if store is None else store.lookup(name)

    return resolve


def _contact_uris(registrar: Contacts | None) -> Callable[[str], Sequence[str]]:
    if registrar is None:
        return lambda _aor: ()

    def uris(aor: str) -> Sequence[str]:
        return [str(getattr(b, "uri", b)) for b in registrar.contacts_for(aor)]

    return uris


def _live(record: CallRecord, answered_at: float | None = None) -> CallRecord:
    record.disposition = Disposition.IN_PROGRESS
    record.end_time = None
    record.talk_seconds = 0.0
    record.valid = None
    if answered_at is not None:
        record.answer_time = answered_at
    return record


class FlowCallLog(Protocol):
    """The server's post-call pipeline (app.py): the call log with its outbox events, the live
    board, metrics and analysis, one set of hooks for every call."""

    def arrived(self, record: CallRecord) -> None:
        """The call arrived (synchronously, before its plan's first step: the live board)."""
        ...

    async def started(self, record: CallRecord) -> None:
        """The in-progress row (the call arrived)."""
        ...

    async def answered(self, record: CallRecord) -> None:
        """An operator answered: stored before the caller's 200 (bounded wait inside)."""
        ...

    async def finished(self, record: CallRecord, trace: CallTrace) -> None:
        """The final row (and what follows it: recording.ready, analysis)."""
        ...

    def event(self, business: str, event: DomainEvent) -> None:
        """A domain event of a live call (ringing an operator, queued, left the queue)."""
        ...


class FlowRuntime:
    """Every call of the server runs here: one plan interpreter, one post-call pipeline."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        media: MediaControl,
        ua: UserAgent,
        router: Router,
        calllog: FlowCallLog,
        metrics: Metrics,
        recording_path: Callable[[str, float], Path],
        voicemail_dir: Path,
        identify: Callable[[InboundLeg, str], CallerId] | None = None,
        valid_threshold: Callable[[str], float] = lambda _number: 0.0,
        business: PlanSource | None = None,
        registrar: Contacts | None = None,
        prompts: Callable[[], PromptStore | None] = lambda: None,
        route_phone: Callable[[str, str], str | None] = lambda _number, _trunk: None,
    ) -> None:
        self._router = router
        self._registrar = registrar
        self._registered: set[str] = set()
        count_failure = self._count_failure = (
            lambda reason: metrics.flow_failures_total.labels(reason=reason).inc()
        )
        self._cache = (
            PlanCache(business.version_for, count_failure) if business is not None else None
        )
        self._log = calllog
        self._metrics = metrics
        self._identify = identify
        self._valid_threshold = valid_threshold
        self._callers: dict[str, CallerId] = {}  # call id -> who called (as SIP said)
        # call id -> (flags, callback_of) of a callback number's call (issue 12 §5)
        self._route_marks: dict[str, tuple[tuple[str, ...], str]] = {}
        self._recordings: dict[str, str] = {}  # call id -> the WAV it records to when answered
        self._credentials: dict[str, DigestCredentials | None] = {}
        self._plans: dict[str, tuple[Route, Plan]] = {}
        self._writes: set[asyncio.Future[None]] = set()
        clock = LoopClock(loop)
        board = OperatorBoard(clock)
        self.services = FlowServices(
            media=media,
            dialer=SipDialer(
                ua.create_outbound,
                route_phone=route_phone,  # PHONE operators: the trunk's outbound_uri
                credentials_for=lambda uri, _trunk: self._credentials.get(uri),
            ),
            clock=clock,
            prompts=prompt_resolver(prompts),
            recording_path=recording_path,
            voicemail_path=lambda cid, box, _t: voicemail_dir / box.lstrip("+") / f"{cid}.wav",
            board=board,
            queues=QueueRegistry(board, clock),
            store_answer=self._store_answer,
            count_failure=count_failure,
            is_open=open_evaluator,
            caller_blocked=caller_blocked,
            contacts_for=_contact_uris(registrar),
            events=self._event,
        )
        if business is not None:
            self.services.rotation = business
        self.supervisor = CallSupervisor(self._plan_for, self.services, self._finished)

    # -- plans ------------------------------------------------------------------------------
    def _plan_for(self, number: str) -> Plan | None:
        """The store's plan of the number (its current version); else the static route's."""
        route = self._router.route(number, "")
        if route is not None:
            for d in route.destinations:  # the store keeps no trunk credentials
                self._credentials[d.uri] = d.credentials
        if self._cache is not None and not _route_is_the_plan(route):
            plan = self._cache.plan_for(number)
            if plan is not None:
                return plan
        if route is None:
            return None
        cached = self._plans.get(route.tracking_number)
        if cached is not None and cached[0] == route:
            return cached[1]
        plan = plan_from_route(route)
        self._plans[route.tracking_number] = (route, plan)
        return plan

    # -- the server's hooks -----------------------------------------------------------------
    def sync_registrations(self) -> None:
        """Softphone operators are offline until registered: the board learns who is."""
        if self._registrar is None:
            return
        up = set(self._registrar.registered())
        board = self.services.board
        for name in up - self._registered:
            board.registered(name, True)
        for name in self._registered - up:
            board.registered(name, False)
        self._registered = up

    def on_incoming(self, leg: InboundLeg, trunk: str = "") -> None:
        self.sync_registrations()
        ctx = self.supervisor.start(SipCallerLeg(leg), leg.called_user)
        if ctx is None:
            return
        if self._identify is not None:
            self._callers[ctx.id] = self._identify(leg, trunk)
        route = self._router.route(leg.called_user, "")
        if _route_is_the_plan(route) and route is not None:
            self._route_marks[ctx.id] = (route.flags, route.callback_of)
        self._metrics.active_calls.inc()
        record = _live(self._record(ctx.trace))
        if ctx.plan.record is not RecordMode.OFF:
            path = str(self.services.recording_path(ctx.id, ctx.trace.received))
            record.recording_path = self._recordings[ctx.id] = path
        self._log.arrived(record)  # before the plan's first step can ring anyone
        task = asyncio.ensure_future(self._log.started(record))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def live_ids(self) -> list[str]:
        return [ctx.id for ctx in self.supervisor.contexts()]

    def media_event(self, event: MediaEvent) -> None:
        self.supervisor.media_event(event)

    async def drain(self, timeout: float) -> int:
        return await self.supervisor.drain(timeout)

    # -- the call log -----------------------------------------------------------------------
    def _record(self, trace: CallTrace, final: bool = False) -> CallRecord:
        caller = self._callers.get(trace.call_id)
        threshold = self._valid_threshold(trace.number) if final else None
        record = record_from_trace(trace, caller, threshold)
        marks = self._route_marks.get(trace.call_id)
        if marks is not None:
            flags, callback_of = marks
            record.flags = [*record.flags, *(f for f in flags if f not in record.flags)]
            record.callback_of = callback_of
        return record

    def _event(self, event: DomainEvent) -> None:
        ctx = self.supervisor.context(event.call_id)
        if ctx is not None:
            self._log.event(ctx.trace.business, event)

    async def _store_answer(self, trace: CallTrace) -> None:
        """Committed before acknowledged: the answered row before the caller's 200."""
        record = _live(self._record(trace), answered_at=time.time())
        # what the row must say from here on, even if the server dies before the call ends
        # (F13): answered with 200, and the recording the bridge is about to start
        record.sip_code = 200
        record.recording_path = self._recordings.get(trace.call_id, record.recording_path)
        await self._log.answered(record)

    async def _finished(self, trace: CallTrace) -> None:
        self._metrics.active_calls.dec()
        try:
            record = self._record(trace, final=True)
        finally:
            self._callers.pop(trace.call_id, None)
            self._route_marks.pop(trace.call_id, None)
            self._recordings.pop(trace.call_id, None)
        await self._log.finished(record, trace)
