"""The supervisor runs one task per call, routes media events by call id, and drains."""

from __future__ import annotations

import asyncio

from mediasrv.calls.plan import (
    Dial,
    DialTarget,
    Hangup,
    Menu,
    MenuChoice,
    PlanBuilder,
    Play,
    TargetKind,
)
from mediasrv.calls.supervisor import CallSupervisor
from mediasrv.calls.trace import CallTrace
from mediasrv.media.api import DtmfEvent, LegRole

NUMBER = "+81312345678"
OP1 = "sip:op1@127.0.0.1:27001"


def plan():
    b = PlanBuilder()
    b.add(Menu("m", ("menu",), (MenuChoice("1", "dial"),), on_no_input="bye", on_invalid="bye"))
    b.label("dial")
    b.add(Dial((DialTarget(TargetKind.SIP_URI, OP1, operator="op1"),)), Hangup())
    b.label("bye")
    b.add(Play(("goodbye",)), Hangup())
    return b.build(NUMBER, 2)


async def test_calls_run_media_events_route_by_call_id_and_traces_are_handed_on(harness) -> None:
    finished: list[CallTrace] = []

    async def on_finished(trace: CallTrace) -> None:
        finished.append(trace)

    p = plan()
    sup = CallSupervisor(lambda n: p if n == NUMBER else None, harness.services(), on_finished)
    harness.media.sinks = _Route(sup)  # type: ignore[assignment]
    unknown = harness.new_caller(name="stranger")
    assert sup.start(unknown, "+81300000000") is None and unknown.final_code == 404
    a = sup.start(harness.new_caller(name="a"), NUMBER)
    b = sup.start(harness.new_caller(name="b"), NUMBER)
    assert a is not None and b is not None and sup.active == 2
    harness.dialer.script(OP1, (0.5, "answer"), (2.0, "hangup"))
    harness.at(
        2.5, lambda: sup.media_event(DtmfEvent(a.id, LegRole.CALLER, "1", 0, 0.1, "rfc4733"))
    )
    harness.at(2.5, lambda: sup.media_event(DtmfEvent("gone", LegRole.CALLER, "1", 0, 0.1, "x")))
    tasks = list(sup._tasks.values())
    harness.tasks.extend(tasks)  # type: ignore[arg-type]
    await harness.run()
    await asyncio.sleep(0)
    assert sup.active == 0
    by_id = {t.call_id: t for t in finished}
    assert by_id[a.id].operator == "op1" and by_id[a.id].flow_version == 2
    assert by_id[b.id].operator == "" and by_id[b.id].menu[0].choice == "no-input"


class _Route(dict):  # the fake engine's sinks, looked up through the supervisor
    def __init__(self, sup: CallSupervisor) -> None:
        super().__init__()
        self.sup = sup

    def get(self, call_id, default=None):
        return self.sup.media_event


async def test_drain_refuses_new_calls_and_ends_the_rest_after_the_deadline(harness) -> None:
    p = plan()
    sup = CallSupervisor(lambda n: p, harness.services())
    caller = harness.new_caller(name="a")
    ctx = sup.start(caller, NUMBER)
    assert ctx is not None
    await harness.settle()  # the caller hears the menu: the call waits on the fake clock
    ended = await sup.drain(timeout=0.01)
    assert ended == 1 and sup.active == 0
    assert caller.terminated
    late = harness.new_caller(name="late")
    assert sup.start(late, NUMBER) is None and late.final_code == 503
