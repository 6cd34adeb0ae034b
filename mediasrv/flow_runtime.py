"""The plan interpreter inside the running server (``[calls] interpreter = "plan"``).

Wires the pieces of issue 10 §3 for ``app.py``: SIP legs through :mod:`mediasrv.flow_legs`,
plans from the business store (:class:`~mediasrv.calls.compile.PlanCache` over
``version_for``: a call keeps the version it started with, an apply changes new calls only;
a number the store does not know falls back to its static ``[[numbers]]`` route, compiled to a
Dial plan), the schedule and blocklist evaluators, the store's round-robin pointers, the
registrar's contacts, the prompt store, the
:class:`~mediasrv.calls.supervisor.CallSupervisor`, and the call log: the in-progress row at the
start, the answered row before the caller's 200, the final row from the trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from mediasrv.calls.blocking import caller_blocked
from mediasrv.calls.business import NumberVersion
from mediasrv.calls.clock import LoopClock
from mediasrv.calls.compile import PlanCache
from mediasrv.calls.disposition import Disposition
from mediasrv.calls.flow import FlowServices, PromptResolver
from mediasrv.calls.operators import OperatorBoard
from mediasrv.calls.plan import Dial, DialTarget, Hangup, Plan, PlanBuilder, TargetKind
from mediasrv.calls.queue import QueueRegistry
from mediasrv.calls.routing import Route, Router
from mediasrv.calls.schedule import open_evaluator
from mediasrv.calls.supervisor import CallSupervisor
from mediasrv.calls.trace import CallTrace
from mediasrv.flow_legs import SipCallerLeg, SipDialer
from mediasrv.media.api import MediaControl, MediaEvent, RecordMode
from mediasrv.outputs.calllog import CallLog, CallRecord
from mediasrv.outputs.flow_records import record_from_trace
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.prompts import PromptStore
from mediasrv.sip.digest import DigestCredentials
from mediasrv.sip.legs import InboundLeg
from mediasrv.sip.ua import UserAgent

log = logging.getLogger("mediasrv.flows")

ANSWER_STORE_WAIT_S = 0.5  # as app.py: the caller's 200 waits at most this for the row


def plan_from_route(route: Route) -> Plan:
    """A static ``[[numbers]]`` route as a plan: ring each destination in order, then 480."""
    b = PlanBuilder()
    targets = tuple(
        DialTarget(TargetKind.SIP_URI, d.uri, ring_timeout=d.ring_timeout)
        for d in route.destinations[:5]
    )
    if targets:
        b.add(Dial(targets))
    b.add(Hangup(480, "no-destinations" if not targets else "nobody-answered"))
    return b.build(
        route.tracking_number,
        0,
        medium=route.medium,
        campaign=route.campaign,
        business=route.business,
        record=route.record,
    )


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


def _live(trace: CallTrace, answered_at: float | None = None) -> CallRecord:
    record = record_from_trace(trace)
    record.disposition = Disposition.IN_PROGRESS
    record.end_time = None
    record.talk_seconds = 0.0
    if answered_at is not None:
        record.answer_time = answered_at
    return record


class FlowRuntime:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        media: MediaControl,
        ua: UserAgent,
        router: Router,
        store: CallLog,
        metrics: Metrics,
        recording_path: Callable[[str, float], Path],
        voicemail_dir: Path,
        after_call: Callable[[CallTrace], Awaitable[None]] | None = None,
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
        self._store = store
        self._metrics = metrics
        self._after_call = after_call
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
        if self._cache is not None:
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

    def on_incoming(self, leg: InboundLeg) -> None:
        self.sync_registrations()
        ctx = self.supervisor.start(SipCallerLeg(leg), leg.called_user)
        if ctx is None:
            return
        self._metrics.active_calls.inc()
        record = _live(ctx.trace)
        if ctx.plan.record is not RecordMode.OFF:
            record.recording_path = str(self.services.recording_path(ctx.id, ctx.trace.received))
        task = asyncio.ensure_future(self._write_live(record))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def live_ids(self) -> list[str]:
        return [ctx.id for ctx in self.supervisor.contexts()]

    def media_event(self, event: MediaEvent) -> None:
        self.supervisor.media_event(event)

    async def drain(self, timeout: float) -> int:
        return await self.supervisor.drain(timeout)

    # -- the call log -----------------------------------------------------------------------
    async def _write_live(self, record: CallRecord) -> None:
        try:
            await self._store.record_live(record)
        except Exception:
            log.exception("could not store in-progress call row", extra={"call": record.call_id})

    async def _store_answer(self, trace: CallTrace) -> None:
        """Committed before acknowledged: the answered row before the caller's 200."""
        record = _live(trace, answered_at=time.time())
        try:
            async with asyncio.timeout(ANSWER_STORE_WAIT_S):
                await self._store.record_answer(record)
        except TimeoutError:
            log.warning("call log slow: an answer went out before it was stored")
        except Exception:
            log.exception("could not store the answer", extra={"call": record.call_id})

    async def _finished(self, trace: CallTrace) -> None:
        self._metrics.active_calls.dec()
        record = record_from_trace(trace)
        self._metrics.call_finished(
            record.disposition.value, record.ring_seconds, record.talk_seconds
        )
        if trace.media is not None:
            if trace.media.recording_bytes:
                self._metrics.recording_bytes_total.inc(trace.media.recording_bytes)
            for stats in trace.media.legs.values():
                self._metrics.leg_finished(
                    stats.packets_in,
                    stats.packets_out,
                    stats.packets_lost,
                    stats.jitter_ms,
                    stats.foreign_dropped,
                )
        try:
            await self._store.record_call(record)
        except Exception:
            log.exception(
                "could not store call row", extra={"call": record.call_id, "row": repr(record)}
            )
        if self._after_call is not None:
            await self._after_call(trace)
