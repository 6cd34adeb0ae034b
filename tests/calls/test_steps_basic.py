"""Blocking, hours, guidance, consent, hang-up, drain and run-time failures, on fakes and a
fake clock (every test runs in milliseconds)."""

from __future__ import annotations

from datetime import datetime

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.plan import (
    Branch,
    CallerBlocked,
    Classify,
    Dial,
    DialTarget,
    Goto,
    Hangup,
    OpenNow,
    PlanBuilder,
    Play,
    Reject,
    TargetKind,
)
from mediasrv.calls.trace import CallEnded, CallStarted, HungUpBy

NUMBER = "+81312345678"
OP1 = "sip:op1@127.0.0.1:27001"
OP2 = "sip:op2@127.0.0.1:27002"


def t(uri: str, name: str, ring: float = 10.0) -> DialTarget:
    return DialTarget(TargetKind.SIP_URI, uri, operator=name, ring_timeout=ring)


def guarded_plan(*, reject_prompts: tuple[str, ...] = (), early: bool = True):
    b = PlanBuilder()
    b.add(
        Branch(CallerBlocked(number=("+81901111",)), if_true="blocked", if_false=None),
        Branch(OpenNow(schedule="week"), if_true=None, if_false="closed"),
        Play(("welcome",), early_media=early),
        Play(("consent",), consent=True, early_media=early),
        Dial((t(OP1, "op1"),), on_no_answer="second"),
    )
    b.add(Hangup())
    b.label("second")
    b.add(Play(("consent",), consent=True), Dial((t(OP2, "op2"),)), Hangup())
    b.label("blocked")
    b.add(Reject(603, prompts=reject_prompts, reason="blocklist"))
    b.label("closed")
    b.add(Classify(Disposition.AFTER_HOURS), Play(("closed",)), Goto("end"))
    b.label("end")
    b.add(Hangup())
    return b.build(NUMBER, 3, medium="web", campaign="winter")


def prefix_blocked(test: CallerBlocked, caller: str, withheld: str) -> object | None:
    for rule in test.number:  # type: ignore[attr-defined]
        if caller.startswith(str(rule)) or withheld == "anonymous":
            return rule
    return None


def open_from_9_to_18(_schedule: object, at: datetime) -> bool:
    return 9 <= at.hour < 18


async def test_a_blocked_caller_gets_603_and_no_media(harness) -> None:
    harness.overrides.update(caller_blocked=prefix_blocked, is_open=open_from_9_to_18)
    _ctx, caller = harness.call(guarded_plan(), caller="+819011112222")
    trace = await harness.trace()
    assert trace.disposition is Disposition.BLOCKED
    assert caller.final_code == 603
    assert harness.media.allocated == {} and not harness.dialer.legs
    assert trace.rules == ["blocklist=blocked"]
    assert trace.path[-1] == "reject:blocked"
    assert trace.hung_up_by is HungUpBy.SYSTEM


async def test_a_blocked_caller_hears_the_prompt_as_early_media_then_603(harness) -> None:
    harness.overrides.update(caller_blocked=prefix_blocked, is_open=open_from_9_to_18)
    _ctx, caller = harness.call(guarded_plan(reject_prompts=("refused",)), caller="+819011112222")
    trace = await harness.trace()
    assert harness.log[:3] == ["media allocate caller", "caller1 183", "play caller refused"]
    assert harness.log[3] == "caller1 603"
    assert trace.disposition is Disposition.BLOCKED and not caller.answered


async def test_a_withheld_caller_is_matched_by_category(harness) -> None:
    harness.overrides.update(caller_blocked=prefix_blocked, is_open=open_from_9_to_18)
    _ctx, _caller = harness.call(guarded_plan(), caller="", withheld="anonymous")
    trace = await harness.trace()
    assert trace.disposition is Disposition.BLOCKED and trace.caller == "anonymous"


async def test_closed_hours_play_guidance_and_log_after_hours(harness) -> None:
    harness.overrides.update(caller_blocked=prefix_blocked, is_open=open_from_9_to_18)
    harness.clock.wall0 += 19 * 3600  # 2026-12-29 19:00 Asia/Tokyo
    _ctx, caller = harness.call(guarded_plan())
    trace = await harness.trace()
    assert trace.rules == ["blocklist=no", "hours=closed"]
    assert harness.played() == ["closed"]
    assert trace.disposition is Disposition.AFTER_HOURS
    assert caller.answered and "caller1 BYE" in harness.log
    assert not harness.dialer.legs


async def test_open_hours_guidance_as_early_media_then_answer_on_bridge(harness) -> None:
    harness.overrides.update(caller_blocked=prefix_blocked, is_open=open_from_9_to_18)
    harness.clock.wall0 += 10 * 3600
    harness.dialer.script(OP1, (0.5, "ring"), (3.0, "answer"), (20.0, "hangup"))
    _ctx, _caller = harness.call(guarded_plan())
    trace = await harness.trace()
    log = harness.log
    # 183 for the guidance (not billed), 200 only after the operator answered and it is stored
    assert log.index("caller1 183") < log.index("play caller welcome") < log.index("INVITE " + OP1)
    assert log.index("store answer") < log.index("caller1 200") < log.index("media bridge")
    assert trace.early_media and trace.consent_played
    # after a 183 the phone makes no ringback of its own: ours plays until the bridge
    assert harness.played() == ["welcome", "consent", "ringback"]
    assert log.index("stop_play ringback") < log.index("media bridge")
    assert trace.disposition is Disposition.ANSWERED and trace.operator == "op1"
    assert trace.hung_up_by is HungUpBy.OPERATOR and trace.reason == "operator-bye"
    assert trace.talk_seconds == 17.0  # from the bridge (t=4+3) to the BYE (t=24)
    assert trace.answered == trace.bridged
    assert "record both stereo" in log


async def test_consent_plays_once_even_when_a_second_dial_runs(harness) -> None:
    harness.overrides.update(is_open=open_from_9_to_18)
    harness.clock.wall0 += 10 * 3600
    harness.dialer.script(OP1, (0.5, "ring"))  # never answers: 10 s ring timeout
    harness.dialer.script(OP2, (1.0, "answer"), (5.0, "hangup"))
    _ctx, _caller = harness.call(guarded_plan())
    trace = await harness.trace()
    assert harness.played().count("consent") == 1
    assert [a.result.value for a in trace.attempts] == ["no-answer", "answered"]
    assert [a.code for a in trace.attempts] == [408, 200]
    assert trace.attempts[0].ring_seconds == 10.0
    assert "CANCEL " + OP1 in harness.log


async def test_schedule_failure_is_logged_and_takes_the_open_path(harness) -> None:
    def broken(_s: object, _at: datetime) -> bool:
        raise OSError("store unreachable")

    harness.overrides.update(is_open=broken)
    harness.dialer.script(OP1, (1.0, "answer"), (2.0, "hangup"))
    counted: list[str] = []
    harness.overrides["count_failure"] = counted.append
    _ctx, _caller = harness.call(guarded_plan())
    trace = await harness.trace()
    assert trace.rules[-1] == "hours=open"
    assert trace.failures == ["schedule-unavailable:store unreachable"]
    assert counted == ["schedule-unavailable"]
    assert trace.disposition is Disposition.ANSWERED


async def test_missing_prompt_is_counted_and_the_fallback_plays(harness) -> None:
    harness.overrides.update(is_open=open_from_9_to_18)
    harness.missing_prompts.add("closed")
    _ctx, _caller = harness.call(guarded_plan())
    trace = await harness.trace()
    assert "prompt-missing:closed" in trace.failures
    assert harness.played() == ["error"]  # never silence
    assert trace.disposition is Disposition.AFTER_HOURS


async def test_caller_hangs_up_while_ringing_cancels_and_is_abandoned(harness) -> None:
    harness.overrides.update(is_open=lambda _s, _a: True)
    harness.dialer.script(OP1, (0.5, "ring"))
    _ctx, caller = harness.call(guarded_plan(early=False))
    harness.at(9.0, caller.hang_up)  # the prompts take 4 s, then it rings
    trace = await harness.trace()
    assert "CANCEL " + OP1 in harness.log
    assert trace.disposition is Disposition.ABANDONED
    assert trace.hung_up_by is HungUpBy.CALLER and trace.reason == "caller-bye"
    assert trace.attempts[0].result.value in ("no-answer", "cancelled")
    assert harness.media.allocated == {} or "media release" in harness.log
    assert harness.board.state("op1").value == "idle"
    started, ended = harness.kinds(CallStarted), harness.kinds(CallEnded)
    assert len(started) == len(ended) == 1 and ended[0].trace is trace


async def test_drain_ends_an_unanswered_call_with_503(harness) -> None:
    harness.overrides.update(is_open=lambda _s, _a: True)
    harness.dialer.script(OP1, (0.5, "ring"))
    ctx, caller = harness.call(guarded_plan(early=True))
    harness.at(6.0, ctx.stop)
    trace = await harness.trace()
    assert caller.final_code == 503 and trace.reason == "drain"
    assert "CANCEL " + OP1 in harness.log


async def test_no_sdp_offer_is_refused_with_488(harness) -> None:
    _ctx, caller = harness.call(guarded_plan())
    caller.offer = None
    trace = await harness.trace()
    assert caller.final_code == 488 and trace.disposition is Disposition.FAILED


def _hours_plan(zone: str):
    b = PlanBuilder()
    b.add(Branch(OpenNow(schedule="week", time_zone=zone), if_true=None, if_false="closed"))
    b.add(Play(("open",)), Hangup())
    b.label("closed")
    b.add(Classify(Disposition.AFTER_HOURS), Play(("closed",)), Hangup())
    return b.build(NUMBER, 1)


async def test_hours_are_judged_on_the_business_zone_clock(harness) -> None:
    seen: list[str] = []

    def nine_to_six(_schedule: object, at: datetime) -> bool:
        seen.append(at.strftime("%Y-%m-%d %H:%M %Z"))
        return 9 <= at.hour < 18

    harness.overrides["is_open"] = nine_to_six
    harness.clock.wall0 += 10 * 3600  # 2026-12-29 10:00 in Tokyo = 01:00 UTC
    harness.call(_hours_plan("Asia/Tokyo"))
    harness.call(_hours_plan("America/New_York"))
    await harness.run()
    tokyo, new_york = (await harness.trace(0)), (await harness.trace(1))
    assert seen == ["2026-12-29 10:00 JST", "2026-12-28 20:00 EST"]
    assert tokyo.rules == ["hours=open"] and new_york.rules == ["hours=closed"]
    assert new_york.disposition is Disposition.AFTER_HOURS


async def test_a_zone_with_dst_moves_its_hours_and_tokyo_does_not(harness) -> None:
    seen: list[str] = []

    def record(_schedule: object, at: datetime) -> bool:
        seen.append(at.strftime("%H:%M %Z"))
        return True

    harness.overrides["is_open"] = record
    harness.clock.wall0 = 1_782_864_000.0  # 2026-07-01 00:00 UTC: New York on EDT
    harness.call(_hours_plan("Asia/Tokyo"))
    harness.call(_hours_plan("America/New_York"))
    await harness.run()
    assert seen == ["09:00 JST", "20:00 EDT"]
