"""Forwarding (F8), busy / no-answer (F9), whisper and press-1-to-accept, on fakes."""

from __future__ import annotations

import asyncio

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.plan import (
    Dial,
    DialTarget,
    Hangup,
    PlanBuilder,
    Play,
    Strategy,
    TargetKind,
    Voicemail,
)
from mediasrv.calls.trace import Answered, AttemptResult, HungUpBy, Ringing
from mediasrv.media.api import LegRole

NUMBER = "+81312345678"
OPS = [f"sip:op{i}@127.0.0.1:2700{i}" for i in range(1, 6)]


def t(i: int, ring: float = 10.0, kind: TargetKind = TargetKind.SIP_URI) -> DialTarget:
    return DialTarget(kind, OPS[i - 1], operator=f"op{i}", ring_timeout=ring)


def dial_plan(dial: Dial, *, ivr_first: bool = False):
    b = PlanBuilder()
    if ivr_first:
        b.add(Play(("hello",)))
    b.add(dial, Hangup())
    if dial.on_busy or dial.on_no_answer:
        b.label("vm")
        b.add(Voicemail("main", greeting=("sorry",)))
    return b.build(NUMBER, 1)


async def test_sequential_busy_moves_on_at_once_then_timeout_then_answer(harness) -> None:
    d = harness.dialer
    d.script(OPS[0], (0.2, "busy"))
    d.script(OPS[1], (0.5, "ring"))
    d.script(OPS[2], (1.0, "ring"), (4.0, "answer"), (30.0, "hangup"))
    plan = dial_plan(Dial((t(1), t(2, ring=8.0), t(3))))
    _ctx, caller = harness.call(plan)
    trace = await harness.trace()
    assert [(a.operator, a.code, a.result) for a in trace.attempts] == [
        ("op1", 486, AttemptResult.BUSY),
        ("op2", 408, AttemptResult.NO_ANSWER),
        ("op3", 200, AttemptResult.ANSWERED),
    ]
    assert [round(a.ring_seconds, 3) for a in trace.attempts] == [0.2, 8.0, 4.0]
    assert trace.disposition is Disposition.ANSWERED and trace.operator == "op3"
    assert caller.answered and trace.sip_code == 200
    assert trace.bridged is not None and round(trace.bridged - trace.received, 3) == 12.2
    # one operator media leg per attempt, the failed ones released
    assert harness.log.count("media allocate operator") == 3
    assert harness.log.count("media release_leg operator") == 2
    assert [e.operator for e in harness.kinds(Ringing)] == ["op1", "op2", "op3"]
    assert [e.operator for e in harness.kinds(Answered)] == ["op3"]


async def test_every_target_busy_is_busy_and_no_answer_is_no_answer(harness) -> None:
    harness.dialer.script(OPS[0], (0.1, "busy"))
    harness.dialer.script(OPS[1], (0.1, "decline"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1), t(2)))))
    trace = await harness.trace()
    assert trace.disposition is Disposition.BUSY and caller.final_code == 480
    harness.dialer.scripts.clear()
    harness.dialer.script(OPS[0], (0.1, "busy"))
    harness.dialer.script(OPS[1], (0.1, "ring"))
    harness.call(dial_plan(Dial((t(1), t(2, ring=3.0)))))
    trace2 = await harness.trace(1)
    assert trace2.disposition is Disposition.NO_ANSWER


async def test_busy_action_goes_to_voicemail_at_once(harness) -> None:
    harness.dialer.script(OPS[0], (0.1, "busy"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1), t(2)), on_busy="vm")))
    harness.at(20.0, caller.hang_up)
    trace = await harness.trace()
    assert len(trace.attempts) == 1  # op2 never rung
    assert trace.path[-1] == "voicemail:vm"
    assert trace.disposition is Disposition.VOICEMAIL and trace.voicemail is not None


async def test_no_answer_action_is_separate_from_busy(harness) -> None:
    harness.dialer.script(OPS[0], (0.1, "busy"))  # busy: next target (on_busy unset)
    harness.dialer.script(OPS[1], (0.1, "ring"))  # no answer: voicemail
    _ctx, caller = harness.call(dial_plan(Dial((t(1), t(2, ring=5.0), t(3)), on_no_answer="vm")))
    harness.at(30.0, caller.hang_up)
    trace = await harness.trace()
    assert [a.operator for a in trace.attempts] == ["op1", "op2"]
    assert trace.path[-1] == "voicemail:vm"


async def test_round_robin_rotates_over_calls(harness) -> None:
    class Rotation:
        def __init__(self) -> None:
            self.pointer: dict[str, int] = {}

        def next_rotation(self, key: str, n: int) -> int:
            i = self.pointer.get(key, 0)
            self.pointer[key] = (i + 1) % n
            return i

    harness.overrides["rotation"] = Rotation()
    for uri in OPS[:3]:
        harness.dialer.script(uri, (0.5, "answer"), (2.0, "hangup"))
    plan = dial_plan(Dial((t(1), t(2), t(3)), strategy=Strategy.ROUND_ROBIN, rotation_key="n1"))
    for _ in range(4):
        harness.call(plan)
        await harness.run()
    firsts = [(await harness.trace(i)).attempts[0].operator for i in range(4)]
    assert firsts == ["op1", "op2", "op3", "op1"]


async def test_rotation_store_down_rings_in_order_and_says_so(harness) -> None:
    class Down:
        def next_rotation(self, key: str, n: int) -> int:
            raise ConnectionError("database is locked")

    harness.overrides["rotation"] = Down()
    harness.dialer.script(OPS[0], (0.5, "answer"), (1.0, "hangup"))
    harness.call(dial_plan(Dial((t(1), t(2)), strategy=Strategy.ROUND_ROBIN)))
    trace = await harness.trace()
    assert trace.failures == ["store-down:database is locked"]
    assert trace.disposition is Disposition.ANSWERED and trace.operator == "op1"


async def test_whisper_goes_to_the_operator_only_and_the_talk_clock_starts_after(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "ring"), (3.0, "answer"), (20.0, "hangup"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1),), whisper=("medium-web", "campaign-winter"))))
    trace = await harness.trace()
    assert harness.played(LegRole.OPERATOR) == ["medium-web+campaign-winter"]
    assert harness.played(LegRole.CALLER) == []  # the caller heard its own ringback (180)
    log = harness.log
    assert log.index("caller1 180") < log.index("play operator medium-web+campaign-winter")
    assert log.index("play operator medium-web+campaign-winter") < log.index("caller1 200")
    # answered at t=3, whisper 2 prompts x 2 s: bridged at t=7, BYE at t=20
    assert trace.attempts[0].ring_seconds == 3.0
    assert trace.bridged - trace.received == 7.0
    assert trace.talk_seconds == 13.0
    assert trace.hung_up_by is HungUpBy.OPERATOR and caller.terminated


async def test_whisper_to_an_answered_caller_plays_ringback_to_the_caller(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "ring"), (3.0, "answer"), (20.0, "hangup"))
    harness.call(dial_plan(Dial((t(1),), whisper=("medium-web",)), ivr_first=True))
    await harness.trace()
    assert harness.played(LegRole.CALLER) == ["hello", "ringback"]
    assert harness.played(LegRole.OPERATOR) == ["medium-web"]
    log = harness.log
    assert log.index("stop_play ringback") < log.index("media bridge")


async def test_press_1_to_accept_refusal_counts_as_no_answer(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "answer"), (4.0, "press:2"))  # refuses
    harness.dialer.script(OPS[1], (1.0, "answer"))  # never presses: accept timeout
    harness.dialer.script(OPS[2], (1.0, "answer"), (3.5, "press:1"), (9.0, "hangup"))
    plan = dial_plan(
        Dial((t(1), t(2), t(3)), accept_digit="1", accept_prompt=("press-1",), accept_timeout=4.0)
    )
    _ctx, caller = harness.call(plan)
    trace = await harness.trace()
    assert [(a.operator, a.result, a.reason) for a in trace.attempts] == [
        ("op1", AttemptResult.REFUSED, "refused-with-2"),
        ("op2", AttemptResult.REFUSED, "accept-timeout"),
        ("op3", AttemptResult.ANSWERED, ""),
    ]
    assert "BYE " + OPS[0] in harness.log and "BYE " + OPS[1] in harness.log
    assert trace.operator == "op3" and caller.answered
    assert trace.disposition is Disposition.ANSWERED


async def test_operator_hanging_up_during_the_whisper_is_no_answer(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "answer"), (2.0, "hangup"))
    harness.dialer.script(OPS[1], (1.0, "answer"), (10.0, "hangup"))
    harness.call(dial_plan(Dial((t(1), t(2)), whisper=("medium-web",))))
    trace = await harness.trace()
    assert trace.attempts[0].reason == "operator-left-during-whisper"
    assert trace.operator == "op2"


async def test_unresolvable_and_unregistered_targets_are_skipped_and_counted(harness) -> None:
    counted: list[str] = []
    harness.overrides["count_failure"] = counted.append
    harness.overrides["contacts_for"] = lambda aor: []
    harness.dialer.unresolvable.add(OPS[0])
    harness.dialer.script(OPS[2], (0.5, "answer"), (1.0, "hangup"))
    soft = DialTarget(TargetKind.REGISTERED, "suzuki", operator="op2")
    harness.call(dial_plan(Dial((t(1), soft, t(3)), on_no_answer="vm")))
    trace = await harness.trace()
    assert [a.result for a in trace.attempts] == [
        AttemptResult.UNREACHABLE,
        AttemptResult.UNREACHABLE,
        AttemptResult.ANSWERED,
    ]
    assert counted == ["target-unresolved", "operator-unregistered"]
    assert trace.disposition is Disposition.ANSWERED


async def test_a_registered_operator_is_rung_at_its_contact(harness) -> None:
    harness.overrides["contacts_for"] = lambda aor: ["sip:suzuki@127.0.0.1:27099"]
    harness.board.registered("op2", True)
    harness.dialer.script("sip:suzuki@127.0.0.1:27099", (0.5, "answer"), (1.0, "hangup"))
    soft = DialTarget(TargetKind.REGISTERED, "suzuki", operator="op2")
    harness.call(dial_plan(Dial((soft,))))
    trace = await harness.trace()
    assert trace.operator == "op2" and trace.operator_target == "suzuki"


async def test_a_busy_operator_on_the_board_is_not_rung(harness) -> None:
    harness.board.busy("op1")
    harness.dialer.script(OPS[1], (0.5, "answer"), (1.0, "hangup"))
    harness.call(dial_plan(Dial((t(1), t(2)))))
    trace = await harness.trace()
    assert trace.attempts[0].reason == "operator-busy" and trace.attempts[0].code == 0
    assert "INVITE " + OPS[0] not in harness.log


async def test_group_target_rings_the_first_idle_member(harness) -> None:
    harness.board.busy("op1")
    harness.dialer.script(OPS[1], (0.5, "answer"), (1.0, "hangup"))
    group = DialTarget(TargetKind.GROUP, "sales", members=(t(1), t(2)))
    harness.call(dial_plan(Dial((group,))))
    trace = await harness.trace()
    assert trace.operator == "op2"


async def test_operator_early_media_is_bridged_to_an_unanswered_caller(harness) -> None:
    harness.dialer.script(OPS[0], (0.5, "ring183"), (3.0, "answer"), (5.0, "hangup"))
    _ctx, _caller = harness.call(dial_plan(Dial((t(1),))))
    trace = await harness.trace()
    log = harness.log
    assert log.index("caller1 183") < log.index("media bridge") < log.index("caller1 200")
    assert trace.disposition is Disposition.ANSWERED


async def test_caller_cancel_crossing_the_answer_never_answers_the_caller(harness) -> None:
    _ctx, caller = harness.call(dial_plan(Dial((t(1),))))
    harness.dialer.script(OPS[0], (1.0, "answer"))

    async def slow_store(trace) -> None:
        caller.hang_up()  # the CANCEL arrives while the answer is being stored

    harness.contexts[0].services.store_answer = slow_store
    trace = await harness.trace()
    assert not caller.answered
    assert "BYE " + OPS[0] in harness.log
    assert trace.disposition is Disposition.ABANDONED


async def test_caller_info_digit_goes_to_the_media_digit_stream(harness) -> None:
    harness.dialer.script(OPS[0], (0.5, "answer"), (5.0, "hangup"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1),))))
    harness.at(2.0, lambda: caller.info_digit("5"))
    trace = await harness.trace()
    assert trace.digits == ["5"]


async def test_hold_while_bridged_is_passed_to_the_operator(harness) -> None:
    harness.dialer.script(OPS[0], (0.5, "answer"), (10.0, "hangup"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1),))))
    responses: list[tuple[int, bytes | None]] = []
    harness.at(3.0, lambda: caller.re_offer(b"v=0 a=sendonly", responses))
    await harness.trace()
    assert "re-INVITE " + OPS[0] in harness.log
    assert responses == [(200, b"v=0 answer")]


async def test_a_re_invite_during_the_ivr_is_answered_on_our_side(harness) -> None:
    harness.dialer.script(OPS[0], (0.5, "answer"), (3.0, "hangup"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1),)), ivr_first=True))
    responses: list[tuple[int, bytes | None]] = []
    harness.at(1.0, lambda: caller.re_offer(b"v=0 a=sendonly", responses))
    trace = await harness.trace()
    assert responses == [(200, b"v=0 answer")]
    assert not [line for line in harness.log if line.startswith("re-INVITE")]
    assert trace.disposition is Disposition.ANSWERED


async def test_a_bare_uri_target_takes_many_calls_at_once(harness) -> None:
    uri = "sip:pbx@127.0.0.1:27050"  # no operator name: a PBX or a trunk number
    for _ in range(2):
        harness.dialer.script(uri, (0.5, "answer"), (10.0, "hangup"))
    plan = dial_plan(Dial((DialTarget(TargetKind.SIP_URI, uri),)))
    harness.call(plan)
    harness.call(plan)
    await harness.run()
    traces = [t.result() for t in harness.tasks]
    assert [t.disposition for t in traces] == [Disposition.ANSWERED] * 2
    assert harness.board.snapshot() == {}


async def test_a_bug_costs_one_call_a_503_and_a_failed_row_never_a_bare_500(harness) -> None:
    harness.dialer.crashing.add(OPS[0])
    _ctx, caller = harness.call(dial_plan(Dial((t(1),))))
    trace = await harness.trace()
    assert caller.final_code == 503
    assert trace.disposition is Disposition.FAILED and trace.failures == ["internal-error"]
    assert "media release" in harness.log


def carry_on_plan(dial: Dial):
    """``dial`` then, when its operator hangs up, a second Dial to op3 (label ``second``)."""
    b = PlanBuilder()
    b.add(Play(("hello",)), dial, Hangup())
    b.label("second")
    b.add(Dial((t(3),), ringback="hold-music"), Hangup())
    return b.build(NUMBER, 1)


async def test_continue_on_hangup_bridges_the_caller_to_the_next_operator(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "answer"), (5.0, "hangup"))  # op1 leaves at t=~6
    harness.dialer.script(OPS[2], (0.5, "ring"), (2.0, "answer"))
    dial = Dial((t(1),), continue_on_hangup=True, on_operator_hangup="second")
    _ctx, caller = harness.call(carry_on_plan(dial))
    harness.at(20.0, caller.hang_up)
    trace = await harness.trace()
    assert [(a.operator, a.result) for a in trace.attempts] == [
        ("op1", AttemptResult.ANSWERED),
        ("op3", AttemptResult.ANSWERED),
    ]
    answers = harness.kinds(Answered)
    assert [e.operator for e in answers] == ["op1", "op3"]
    # answered (F13) when the first operator connected; the second has its own event time
    assert trace.bridged is not None and trace.bridged < answers[1].at
    assert trace.operator == "op3" and "operator-hung-up=op1" in trace.rules
    assert trace.path[-1] == "dial:second"
    # the caller stayed up: unbridged from op1's leg (released), hold music, then op3
    log = harness.log
    assert log.index("media unbridge") < log.index("play caller hold-music loop")
    assert log.index("stop_play hold-music") < log.index(
        "media bridge", log.index("media unbridge")
    )
    assert log.count("media release_leg operator") == 1
    assert trace.hung_up_by is HungUpBy.CALLER and trace.disposition is Disposition.ANSWERED
    assert caller.answered and trace.sip_code == 200


async def test_without_continue_on_hangup_the_operator_leaving_ends_the_call(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "answer"), (5.0, "hangup"))
    _ctx, caller = harness.call(dial_plan(Dial((t(1),))))
    trace = await harness.trace()
    assert [a.operator for a in trace.attempts] == ["op1"]
    assert trace.hung_up_by is HungUpBy.OPERATOR and caller.terminated


async def test_continue_on_hangup_does_not_outlive_the_caller(harness) -> None:
    harness.dialer.script(OPS[0], (1.0, "answer"))
    dial = Dial((t(1),), continue_on_hangup=True, on_operator_hangup="second")
    _ctx, caller = harness.call(carry_on_plan(dial))
    harness.at(8.0, caller.hang_up)
    trace = await harness.trace()
    assert [a.operator for a in trace.attempts] == ["op1"]  # op3 never rung
    assert trace.hung_up_by is HungUpBy.CALLER and "BYE " + OPS[0] in harness.log


def test_the_dry_run_explains_carrying_on_after_the_operator() -> None:
    import datetime as dt

    from mediasrv.calls.simulate import format_simulation, simulate

    dial = Dial((t(1),), continue_on_hangup=True, on_operator_hangup="second")
    sim = simulate(
        carry_on_plan(dial),
        caller="+819012345678",
        at=dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC),
        hours=lambda _schedule, _at: True,
        blocked=lambda _test, _caller, _withheld: None,
    )
    text = format_simulation(sim)
    assert "the operator hangs up ->" in text
    assert "the caller hears hold-music while it rings" in text  # the second Dial
    assert OPS[2].split("@")[0].removeprefix("sip:") in text


async def test_the_caller_gets_its_200_only_once_the_answer_is_stored(harness) -> None:
    """Committed before acknowledged (issue 8 finding 6, ported from the removed hard-wired
    flow's tests): while the answered row is being stored, the caller has no 200 and nothing
    is bridged or recorded; the store sees the operator who answered."""
    release = asyncio.Event()
    seen: list[tuple[str, str, bool]] = []

    async def slow_store(trace) -> None:
        harness.log.append("store answer")
        seen.append((trace.operator, trace.operator_target, trace.bridged is None))
        await release.wait()  # a slow group commit

    harness.overrides["store_answer"] = slow_store
    _ctx, caller = harness.call(dial_plan(Dial((t(1),))))
    harness.dialer.script(OPS[0], (1.0, "answer"), (20.0, "hangup"))
    await harness.run(until=lambda: "store answer" in harness.log)
    await harness.settle()
    assert not caller.answered and "media bridge" not in harness.log
    release.set()
    trace = await harness.trace()
    assert seen == [("op1", OPS[0], True)]
    order = [e for e in harness.log if e in ("store answer", "caller1 200", "media bridge")]
    assert order == ["store answer", "caller1 200", "media bridge"]
    assert harness.log.index("media bridge") < next(
        i for i, e in enumerate(harness.log) if e.startswith("record ")
    )
    assert trace.disposition is Disposition.ANSWERED and trace.attempts[0].code == 200


async def test_no_rtp_while_talking_ends_both_legs_with_the_reason(harness) -> None:
    """The engine's no-RTP timeout on a bridged call ends it (the caller BYE'd, the operator
    BYE'd): an answered call whose end reason says no-rtp and that the system hung up."""
    _ctx, _caller = harness.call(dial_plan(Dial((t(1),))))
    harness.dialer.script(OPS[0], (1.0, "answer"))
    harness.at(31.0, lambda: harness.media.rtp_timeout("call1", LegRole.CALLER))
    trace = await harness.trace()
    assert trace.disposition is Disposition.ANSWERED and trace.reason == "no-rtp"
    assert trace.hung_up_by is HungUpBy.SYSTEM
    assert "caller1 BYE" in harness.log and "BYE " + OPS[0] in harness.log
    assert round(trace.talk_seconds, 3) == 30.0
