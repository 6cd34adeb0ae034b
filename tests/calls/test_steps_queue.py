"""The queue (F10) and operator states, on fakes and a fake clock."""

from __future__ import annotations

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.operators import OperatorState
from mediasrv.calls.plan import DialTarget, Enqueue, Hangup, PlanBuilder, Play, TargetKind
from mediasrv.calls.trace import Queued

NUMBER = "+81312345678"
OP1 = "sip:op1@127.0.0.1:27001"
OP2 = "sip:op2@127.0.0.1:27002"


def op(uri: str, name: str, kind: TargetKind = TargetKind.SIP_URI) -> DialTarget:
    return DialTarget(kind, uri, operator=name, ring_timeout=10.0)


def queue_plan(*targets: DialTarget, **kw: object):
    options: dict[str, object] = {"announce_every": 0.0, "max_wait": 120.0, "on_overflow": "over"}
    options.update(kw)
    b = PlanBuilder()
    b.add(Enqueue("sales", targets or (op(OP1, "op1"),), **options))  # type: ignore[arg-type]
    b.label("over")
    b.add(Play(("overflow",)), Hangup())
    return b.build(NUMBER, 1)


async def test_two_callers_one_operator_second_connected_after_wrap_up(harness) -> None:
    d = harness.dialer
    d.script(OP1, (1.0, "answer"))  # call 1: answers at once, caller 1 hangs up at t=20
    d.script(OP1, (2.0, "answer"), (10.0, "hangup"))  # call 2
    plan = queue_plan(wrap_up=5.0)
    _c1, caller1 = harness.call(plan)
    await harness.settle()
    _c2, _caller2 = harness.call(plan)
    harness.at(20.0, caller1.hang_up)
    await harness.run(until=lambda: harness.tasks[0].done())
    assert harness.board.state("op1") is OperatorState.WRAP_UP  # until t=25
    await harness.run()
    t1, t2 = harness.tasks[0].result(), harness.tasks[1].result()
    assert t1.disposition is Disposition.ANSWERED and t2.disposition is Disposition.ANSWERED
    # caller 2 waited second in line, became first when caller 1 was connected
    assert [(e.call_id, e.position) for e in harness.kinds(Queued)] == [
        ("call1", 1),
        ("call2", 2),
        ("call2", 1),
    ]
    assert t2.queue_positions == [2, 1]
    # offered at the end of op1's wrap-up (t=25), answered 2 s later
    assert round(t2.bridged - t2.received, 3) == 27.0
    assert round(t2.queue_wait, 3) == 27.0
    played2 = [p for p in harness.media.plays if p.leg.call_id == "call2"]
    names = ["+".join(p.names) for p in played2]
    assert names[0] == "hold-music"
    assert "queue-position+digit-2" in names and "queue-position+digit-1" in names
    assert harness.board.state("op1") is OperatorState.WRAP_UP  # after call 2 as well
    while harness.clock.advance():
        pass
    assert harness.board.state("op1") is OperatorState.IDLE


async def test_answer_pre_empts_an_announcement_at_once(harness) -> None:
    harness.dialer.script(OP1, (1.0, "answer"), (5.0, "hangup"))
    _ctx, _caller = harness.call(queue_plan())
    trace = await harness.trace()
    # the announcement "you are number 1" started at 0 and would last 4 s; answer at 1
    announcement = next(p for p in harness.media.plays if p.names[0] == "queue-position")
    assert announcement.stopped == 1.0
    assert trace.bridged - trace.received == 1.0


async def test_periodic_announcements_while_waiting(harness) -> None:
    harness.board.busy("op1")
    _ctx, caller = harness.call(queue_plan(announce_every=20.0, announce_position=True))
    harness.at(65.0, caller.hang_up)
    trace = await harness.trace()
    starts = [p.started for p in harness.media.plays if p.names[0] == "queue-position"]
    assert starts == [0.0, 20.0, 40.0, 60.0]
    assert trace.disposition is Disposition.ABANDONED and trace.queue_wait == 65.0


async def test_max_wait_overflows(harness) -> None:
    harness.board.busy("op1")
    harness.call(queue_plan(max_wait=30.0))
    trace = await harness.trace()
    assert trace.rules == ["queue=max-wait"]
    assert harness.played()[-1] == "overflow"
    assert harness.clock.now() >= 30.0


async def test_no_operator_overflows_at_once(harness) -> None:
    soft = op("suzuki", "op9", TargetKind.REGISTERED)  # a softphone never registered: offline
    _ctx, _caller = harness.call(queue_plan(soft))
    trace = await harness.trace()
    assert trace.rules == ["queue=no-operator"]
    assert harness.played() == ["overflow"]
    assert not harness.kinds(Queued)


async def test_max_length_overflows_the_next_caller(harness) -> None:
    harness.board.busy("op1")
    plan = queue_plan(max_length=1, max_wait=50.0)
    harness.call(plan)
    await harness.settle()
    harness.call(plan)
    await harness.run()
    t2 = harness.tasks[1].result()
    assert t2.rules == ["queue=full"]


async def test_a_failed_offer_keeps_the_caller_waiting_and_tries_another(harness) -> None:
    harness.dialer.script(OP1, (0.5, "busy"))
    harness.dialer.script(OP2, (1.0, "answer"), (3.0, "hangup"))
    harness.board.busy("op2")
    harness.at(8.0, lambda: harness.board.finished("op2", 0.0))
    harness.call(queue_plan(op(OP1, "op1"), op(OP2, "op2")))
    trace = await harness.trace()
    assert [a.operator for a in trace.attempts][:1] == ["op1"]
    assert trace.operator == "op2"


def test_operator_board_states() -> None:
    from mediasrv.calls.clock import Clock  # noqa: F401
    from mediasrv.calls.operators import OperatorBoard

    class Clk:
        def __init__(self) -> None:
            self.t = 0.0
            self.timers: list = []

        def now(self) -> float:
            return self.t

        def wall(self) -> float:
            return self.t

        def call_later(self, delay, cb):
            self.timers.append((self.t + delay, cb))

            class H:
                def cancel(self) -> None:
                    pass

            return H()

    clk = Clk()
    board = OperatorBoard(clk)
    idle: list[str] = []
    board.on_idle(idle.append)
    assert board.state("soft", softphone=True) is OperatorState.OFFLINE
    board.registered("soft", True)
    assert board.state("soft") is OperatorState.IDLE and idle == ["soft"]
    board.ringing("soft")
    board.busy("soft")
    board.finished("soft", 10.0)
    assert board.state("soft") is OperatorState.WRAP_UP
    board.registered("soft", False)  # unregistered during wrap-up
    assert board.state("soft") is OperatorState.OFFLINE
    assert board.state("uri-op") is OperatorState.IDLE
    board.ringing("uri-op")
    board.released("uri-op")
    assert board.state("uri-op") is OperatorState.IDLE
    assert board.snapshot()["soft"] is OperatorState.OFFLINE


async def test_a_softphone_rung_at_its_contact_stays_on_the_board_after_its_call(harness) -> None:
    contact = "sip:suzuki@127.0.0.1:27098"
    harness.overrides["contacts_for"] = lambda aor: [contact]
    harness.dialer.script(contact, (0.5, "answer"), (3.0, "hangup"))
    soft = op("suzuki", "op9", TargetKind.REGISTERED)
    b = PlanBuilder()
    from mediasrv.calls.plan import Dial

    b.add(Dial((soft,)), Hangup())
    harness.call(b.build(NUMBER, 1))
    trace = await harness.trace()
    assert trace.operator == "op9"
    assert harness.board.state("op9", softphone=True) is OperatorState.IDLE


async def test_a_group_members_own_wrap_up_applies(harness) -> None:
    from mediasrv.calls.plan import Dial

    member = DialTarget(TargetKind.SIP_URI, OP1, operator="op1", wrap_up=30.0)
    group = DialTarget(TargetKind.GROUP, "sales", members=(member,))
    harness.dialer.script(OP1, (0.5, "answer"), (3.0, "hangup"))
    b = PlanBuilder()
    b.add(Dial((group,)), Hangup())
    harness.call(b.build(NUMBER, 1))
    await harness.trace()
    assert harness.board.state("op1") is OperatorState.WRAP_UP


async def test_queue_events_reach_the_live_board_with_positions(harness) -> None:
    """Issue 10 §6: "queued with position" and leaving the queue, as the flow emits them, put
    the callers on the live board's queue (through the server's pipeline) and take them off."""
    from mediasrv.call_pipeline import CallPipeline
    from mediasrv.calls.trace import QueueLeft
    from mediasrv.outputs.calllog import CallRecord
    from mediasrv.outputs.live_board import LiveBoard

    board = LiveBoard(harness.clock.wall)
    pipeline = CallPipeline.__new__(CallPipeline)  # event() needs only the board
    pipeline._board = board  # type: ignore[attr-defined]
    seen: list[list[tuple[str, int]]] = []

    def sink(event) -> None:  # type: ignore[no-untyped-def]
        harness.events.append(event)
        pipeline.event("acme", event)
        queue = board.snapshot("acme").data["queue"]
        seen.append([(str(e["call_id"]), int(e["position"])) for e in queue])  # type: ignore[union-attr]

    harness.overrides["events"] = sink
    d = harness.dialer
    d.script(OP1, (1.0, "answer"))
    d.script(OP1, (2.0, "answer"), (10.0, "hangup"))
    plan = queue_plan(wrap_up=5.0)
    for n in (1, 2):
        board.call_ringing(CallRecord(f"call{n}", "", NUMBER, f"+8190000000{n}", business="acme"))
    _c1, caller1 = harness.call(plan)
    await harness.settle()
    _c2, _caller2 = harness.call(plan)
    await harness.settle()
    assert board.snapshot("acme").data["queue"][0]["since"] == harness.clock.wall()  # type: ignore[index]
    harness.at(20.0, caller1.hang_up)
    await harness.run()
    assert [(e.call_id, e.reason) for e in harness.kinds(QueueLeft)] == [
        ("call1", "answered"),
        ("call2", "answered"),
    ]
    # empty, call 1 alone, call 2 behind it, call 1 taken, call 2 moves up, call 2 taken
    changes = [q for i, q in enumerate(seen) if i == 0 or q != seen[i - 1]]
    assert changes == [
        [],
        [("call1", 1)],
        [("call1", 1), ("call2", 2)],
        [("call2", 2)],
        [("call2", 1)],
        [],
    ]
    assert board.snapshot("acme").data["queue"] == []
