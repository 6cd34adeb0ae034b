"""The call supervisor (ARCHITECTURE "Call flows"): one task per call, the registry of live
calls, media-event dispatch by call id, and the drain.

It knows plans only through the injected ``plan_for`` (a :class:`~mediasrv.calls.compile.
PlanCache` lookup) and hands every finished :class:`~mediasrv.calls.trace.CallTrace` to
``finished`` (the post-call pipeline in ``outputs/``, wired by the composition root); it
imports neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mediasrv.media.api import MediaEvent

from .flow import CallContext, FlowServices, run_call
from .legs import CallerLeg
from .plan import Plan
from .trace import CallTrace

log = logging.getLogger("mediasrv.calls.supervisor")


async def _drop_trace(_trace: CallTrace) -> None:
    return None


class CallSupervisor:
    def __init__(
        self,
        plan_for: Callable[[str], Plan | None],
        services: FlowServices,
        finished: Callable[[CallTrace], Awaitable[None]] = _drop_trace,
    ) -> None:
        self._plan_for = plan_for
        self._services = services
        self._finished = finished
        self._calls: dict[str, CallContext] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.draining = False

    @property
    def active(self) -> int:
        return len(self._calls)

    def contexts(self) -> list[CallContext]:
        return list(self._calls.values())

    def context(self, call_id: str) -> CallContext | None:
        return self._calls.get(call_id)

    def start(self, caller: CallerLeg, number: str) -> CallContext | None:
        """Start the call; None when ``number`` has no plan (the leg is refused with 404)."""
        if self.draining:
            caller.reject(503)
            return None
        plan = self._plan_for(number)
        if plan is None:
            caller.reject(404)
            return None
        ctx = CallContext(plan, caller, self._services)
        self._calls[ctx.id] = ctx
        self._tasks[ctx.id] = asyncio.ensure_future(self._run(ctx))
        return ctx

    async def _run(self, ctx: CallContext) -> None:
        try:
            trace = await run_call(ctx.plan, ctx.caller, self._services, ctx=ctx)
            await self._finished(trace)
        except Exception:
            log.exception("call task failed", extra={"call_id": ctx.id})
        finally:
            self._calls.pop(ctx.id, None)
            self._tasks.pop(ctx.id, None)

    def media_event(self, event: MediaEvent) -> None:
        """The engine's event sink: each event goes to its call (late ones are dropped)."""
        ctx = self._calls.get(event.call_id)
        if ctx is not None:
            ctx.media_event(event)

    async def drain(self, timeout: float) -> int:
        """Refuse new calls, let live ones finish for ``timeout`` seconds, then end the rest.
        Returns how many had to be ended."""
        self.draining = True
        tasks = list(self._tasks.values())
        if not tasks:
            return 0
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for ctx in list(self._calls.values()):
            ctx.stop()
        if pending:
            await asyncio.wait(pending)
        return len(pending)
