"""The business model compiles into a validated plan, cached per version; the compiled plan
runs through the interpreter like a hand-built one."""

from __future__ import annotations

import datetime as dt

import pytest

from mediasrv.calls.business import (
    Action,
    ActionKind,
    Blocking,
    Blocklist,
    BlockRule,
    Business,
    FlowConfig,
    Forwarding,
    ForwardStrategy,
    Guidance,
    Hours,
    MatchKind,
    Menu,
    MenuChoice,
    NumberVersion,
    Operator,
    OperatorKind,
    Prompt,
    QueueConfig,
    Schedule,
    Target,
    TimeSpan,
    TrackingNumber,
    VoicemailConfig,
    Weekday,
    WeeklyHours,
)
from mediasrv.calls.compile import CompileError, PlanCache, action_name, compile_number
from mediasrv.calls.disposition import Disposition
from mediasrv.calls.plan import (
    Branch,
    CallerBlocked,
    Dial,
    Enqueue,
    OpenNow,
    Play,
    Reject,
    Strategy,
    TargetKind,
    Voicemail,
)
from mediasrv.calls.plan import (
    Menu as MenuStep,
)
from mediasrv.media.api import LegRole, RecordMode

NUMBER = "+81312345678"
OPS = {
    "sato": "sip:sato@127.0.0.1:27011",
    "suzuki": "suzuki",
    "tanaka": "+81355550000",
}
WEEK = Schedule(
    "office",
    weekly=(
        WeeklyHours(
            tuple(Weekday(i) for i in range(5)),
            (TimeSpan(dt.time(9), dt.time(18)),),
            (TimeSpan(dt.time(12), dt.time(13)),),
        ),
    ),
)


def business(flow: FlowConfig, *, number_blocklist: Blocklist | None = None) -> NumberVersion:
    operators = (
        Operator("sato", OperatorKind.SIP_URI, OPS["sato"], groups=("sales",), wrap_up=10.0),
        Operator("suzuki", OperatorKind.SOFTPHONE, OPS["suzuki"], groups=("sales",)),
        Operator("tanaka", OperatorKind.PHONE, OPS["tanaka"], trunk="ntt"),
    )
    num = TrackingNumber(
        NUMBER,
        medium="web",
        campaign="winter",
        record=RecordMode.CALLER,
        blocklist=number_blocklist or Blocklist(),
        flow=flow,
    )
    biz = Business(
        "acme",
        operators=operators,
        schedules=(WEEK,),
        blocklist=Blocklist((BlockRule(MatchKind.PREFIX, "+8190111"),)),
        prompts=(Prompt("welcome", "welcome.wav"), Prompt("medium-web", "media/web.wav")),
        numbers=(num,),
    )
    return NumberVersion(4, biz, num)


MAIN = Forwarding(
    "main",
    (Target("sato", ring_timeout=15.0), Target(group="sales"), Target("tanaka", ring_timeout=25.0)),
    strategy=ForwardStrategy.ROUND_ROBIN,
    whisper=("medium-web",),
    accept_digit="1",
    accept_prompts=("press-1",),
    on_busy=Action(ActionKind.VOICEMAIL),
    on_exhausted=Action(ActionKind.QUEUE),
)
FULL = FlowConfig(
    blocking=Blocking(603, ("refused",)),
    hours=Hours("office", Action(ActionKind.MENU, menu="closed")),
    guidance=Guidance(("welcome",), early_media=True, consent=("consent",)),
    start=Action(ActionKind.MENU, menu="main"),
    forwarding=MAIN,
    menus=(
        Menu(
            "main",
            ("menu-main",),
            (
                MenuChoice("1", Action(ActionKind.FORWARD)),
                MenuChoice("2", Action(ActionKind.VOICEMAIL)),
                MenuChoice("9", Action(ActionKind.MENU, menu="main")),
            ),
            retries=1,
            on_failure=Action(ActionKind.GUIDANCE, prompts=("goodbye",)),
        ),
        Menu(
            "closed",
            ("menu-closed",),
            (MenuChoice("1", Action(ActionKind.VOICEMAIL)),),
            on_failure=Action(ActionKind.HANGUP, prompts=("goodbye",)),
        ),
    ),
    queue=QueueConfig(group="sales", music=("moh",), max_wait=60.0, max_length=3),
    voicemail=VoicemailConfig(greeting=("vm-greeting",), max_seconds=60.0),
)


def test_the_full_flow_compiles_in_order() -> None:
    plan = compile_number(business(FULL))
    assert (plan.number, plan.version, plan.medium, plan.business) == (NUMBER, 4, "web", "acme")
    assert plan.record is RecordMode.CALLER
    assert plan.prompt_files["medium-web"] == "media/web.wav"
    blocked, hours, guidance = plan.steps[:3]
    assert isinstance(blocked, Branch) and isinstance(blocked.test, CallerBlocked)
    assert isinstance(hours, Branch) and isinstance(hours.test, OpenNow)
    assert hours.test.schedule is WEEK and hours.test.time_zone == "Asia/Tokyo"
    assert isinstance(guidance, Play) and guidance.early_media
    reject = plan.at("blocked")
    assert isinstance(reject, Reject) and reject.code == 603 and reject.prompts == ("refused",)
    assert reject.disposition is Disposition.BLOCKED
    main = plan.at("menu:main")
    assert isinstance(main, MenuStep) and main.max_no_input == 2
    assert [c.goto for c in main.choices] == ["forward", "voicemail", "menu:main"]
    consent = plan.at("forward")
    assert isinstance(consent, Play) and consent.consent
    dial = plan.after(consent)
    assert isinstance(dial, Dial)
    assert dial.strategy is Strategy.ROUND_ROBIN and dial.rotation_key == NUMBER
    assert [t.kind for t in dial.targets] == [
        TargetKind.SIP_URI,
        TargetKind.GROUP,
        TargetKind.PHONE,
    ]
    assert [m.operator for m in dial.targets[1].members] == ["sato", "suzuki"]
    assert dial.targets[1].members[1].kind is TargetKind.REGISTERED
    assert dial.targets[2].trunk == "ntt" and dial.targets[2].ring_timeout == 25.0
    assert dial.targets[0].wrap_up == 10.0
    assert dial.on_busy == "voicemail" and dial.on_no_answer is None  # next target
    assert dial.accept_digit == "1" and dial.whisper == ("medium-web",)
    queue = plan.at("queue")
    assert isinstance(queue, Enqueue) and queue.name == "acme:sales"
    assert queue.max_wait == 60.0 and queue.max_length == 3 and queue.music == ("moh",)
    assert queue.on_overflow == "voicemail"  # the default overflow action
    vm = plan.at("voicemail")
    assert isinstance(vm, Voicemail) and vm.mailbox == NUMBER and vm.max_length == 60.0


def test_an_action_is_compiled_once_however_often_it_is_used() -> None:
    plan = compile_number(business(FULL))
    assert sum(isinstance(s, Voicemail) for s in plan.steps) == 1
    assert sum(isinstance(s, Dial) for s in plan.steps) == 1


def test_no_blocklist_and_no_schedule_means_no_branches() -> None:
    flow = FlowConfig(forwarding=Forwarding("main", (Target("sato"),)), voicemail=VoicemailConfig())
    nv = business(flow)
    nv = NumberVersion(1, Business("b", operators=nv.business.operators), nv.number)
    plan = compile_number(nv)
    assert not any(isinstance(s, Branch) for s in plan.steps)
    assert isinstance(plan.steps[1], Dial)  # Goto forward, then the dial


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        (FlowConfig(), "forwarding '\\(main\\)' is not defined"),
        (
            FlowConfig(forwarding=Forwarding("m", (Target("nobody"),))),
            "operator 'nobody' is not defined",
        ),
        (
            FlowConfig(start=Action(ActionKind.MENU, menu="x")),
            "menu 'x' is not defined",
        ),
        (
            FlowConfig(hours=Hours("night")),
            "schedule 'night' is not defined",
        ),
        (
            FlowConfig(forwarding=Forwarding("m", (Target("sato"),))),
            "the number has none",  # on_exhausted = voicemail, and there is none
        ),
        (
            FlowConfig(start=Action(ActionKind.NEXT_TARGET)),
            "only allowed as a busy / no-answer action",
        ),
        (
            FlowConfig(
                forwarding=Forwarding("m", tuple(Target("sato") for _ in range(6))),
                voicemail=VoicemailConfig(),
            ),
            "at most 5 targets",
        ),
    ],
)
def test_bad_configurations_are_refused_naming_the_number(flow: FlowConfig, message: str) -> None:
    with pytest.raises(CompileError, match=message) as err:
        compile_number(business(flow))
    assert NUMBER in str(err.value)


def test_plan_cache_compiles_once_per_version_and_survives_the_store_going_down() -> None:
    versions = {"v": business(FULL)}
    calls: list[str] = []
    counted: list[str] = []

    def version_for(number: str) -> NumberVersion | None:
        calls.append(number)
        if versions.get("down"):
            raise ConnectionError("store unreachable")
        return versions["v"] if number == NUMBER else None

    cache = PlanCache(version_for, counted.append)
    first = cache.plan_for(NUMBER)
    assert first is not None and cache.plan_for(NUMBER) is first
    assert cache.plan_for("+81300000000") is None
    nv = versions["v"]
    versions["v"] = NumberVersion(5, nv.business, nv.number)
    second = cache.plan_for(NUMBER)
    assert second is not None and second.version == 5 and first.version == 4
    versions["down"] = True  # type: ignore[assignment]
    assert cache.plan_for(NUMBER) is second
    fallback = cache.plan_for("+81399999999")
    assert fallback is not None and fallback.version == 0
    assert counted == ["store-down", "store-down"]


def office_hours(schedule: object, at: dt.datetime) -> bool:
    return at.weekday() < 5 and 9 <= at.hour < 18 and at.hour != 12


def blocked_by_business(test: CallerBlocked, caller: str, withheld: str) -> object | None:
    for blocklist in (test.number, test.business, test.global_):
        for rule in blocklist.rules:  # type: ignore[attr-defined]
            if rule.kind is MatchKind.PREFIX and caller.startswith(rule.value):
                return rule
    return None


async def test_compiled_flow_runs_menu_busy_to_voicemail(harness) -> None:
    harness.overrides.update(is_open=office_hours, caller_blocked=blocked_by_business)
    harness.clock.wall0 += 10 * 3600  # Tuesday 2026-12-29 10:00 Tokyo
    plan = compile_number(business(FULL))
    harness.dialer.script(OPS["sato"], (0.5, "busy"))
    ctx, caller = harness.call(plan)
    # welcome (early media, 0-2), menu prompt (2-4), "1" at 5, consent (5-7), then op1 busy
    harness.at(5.0, lambda: harness.media.digit(ctx.id, LegRole.CALLER, "1"))
    harness.at(30.0, caller.hang_up)
    trace = await harness.trace()
    assert trace.rules == ["blocklist=no", "hours:office=open"]
    assert trace.menu[0].digits == "1"
    assert trace.consent_played
    assert trace.path == [
        "branch",
        "branch",
        "play",
        "goto",
        "menu:main",
        "play:forward",
        "dial",
        "voicemail",
    ]
    assert trace.attempts[0].operator == "sato" and trace.attempts[0].code == 486
    assert trace.disposition is Disposition.VOICEMAIL
    assert trace.flow_version == 4 and trace.medium == "web"


# -- dry run ---------------------------------------------------------------------------------

TOKYO = dt.timezone(dt.timedelta(hours=9))


def test_simulate_after_hours_explains_the_closed_menu() -> None:
    from mediasrv.calls.simulate import format_simulation, simulate

    plan = compile_number(business(FULL))
    sim = simulate(
        plan,
        caller="+819012345678",
        at=dt.datetime(2026, 12, 29, 19, 0, tzinfo=TOKYO),
        hours=office_hours,
        blocked=blocked_by_business,
    )
    assert sim.rules == ["blocklist: not blocked", "hours:office: closed"]
    assert sim.prompts == ["menu-closed"]
    assert sim.ends == "menu closed (waits for a key)"
    text = format_simulation(sim)
    assert "logged as after-hours" in text
    assert "voicemail +81312345678: vm-greeting, beep" in text
    assert text.startswith(
        "number +81312345678 (flow version 4), caller +819012345678, at 2026-12-29 19:00"
    )


def test_simulate_open_with_keys_lists_targets_in_rotation_order() -> None:
    from mediasrv.calls.simulate import format_simulation, simulate

    plan = compile_number(business(FULL))
    peeked: list[tuple[str, int]] = []

    def peek(key: str, n: int) -> int:
        peeked.append((key, n))
        return 1

    sim = simulate(
        plan,
        caller="+819012345678",
        at=dt.datetime(2026, 12, 29, 10, 0, tzinfo=TOKYO),
        hours=office_hours,
        blocked=blocked_by_business,
        digits="1",
        peek_rotation=peek,
    )
    assert sim.rules == ["blocklist: not blocked", "hours:office: open"]
    assert sim.prompts[:3] == ["welcome", "menu-main", "consent"]
    assert sim.targets[:3] == ["sales", "tanaka", "sato"]  # started at #2
    assert peeked == [(NUMBER, 3)]
    text = format_simulation(sim)
    assert "round robin, this call starts at #2" in text
    assert "1 -> (pressed)" in text
    assert "busy -> at once:" in text and "(back to menu:main)" in text
    assert "whisper to the operator: medium-web" in text
    # nobody answers: the queue, whose overflow is voicemail
    assert sim.ends == "queue acme:sales"


def test_simulate_a_blocked_caller_stops_at_the_rejection() -> None:
    from mediasrv.calls.simulate import simulate

    plan = compile_number(business(FULL))
    sim = simulate(
        plan,
        caller="+819011100000",
        at=dt.datetime(2026, 12, 29, 10, 0, tzinfo=TOKYO),
        hours=office_hours,
        blocked=blocked_by_business,
    )
    assert sim.rules[0].startswith("blocklist: blocked by")
    assert sim.ends == "reject 603" and sim.prompts == ["refused"]
    assert not sim.targets


def test_simulate_reports_the_rule_of_a_schedule_evaluator() -> None:
    from mediasrv.calls.simulate import simulate

    class State:
        open = False
        label = "年末年始"

        class rule:
            value = "override"

    plan = compile_number(business(FULL))
    sim = simulate(
        plan,
        caller="+819012345678",
        at=dt.datetime(2026, 12, 30, 10, 0, tzinfo=TOKYO),
        hours=lambda _s, _at: State(),
        blocked=blocked_by_business,
    )
    assert sim.rules[1] == "hours:office: closed (override: 年末年始)"


def test_parse_at_reads_the_business_wall_clock_or_an_explicit_offset() -> None:
    from mediasrv.calls.simulate import parse_at

    local = parse_at("2026-12-29 19:00", "Asia/Tokyo")
    assert local.utcoffset() == dt.timedelta(hours=9) and local.hour == 19
    explicit = parse_at("2026-12-29T10:00+00:00", "Asia/Tokyo")
    assert explicit.astimezone(TOKYO).hour == 19
    with pytest.raises(ValueError, match="expected YYYY-MM-DD HH:MM"):
        parse_at("tomorrow", "Asia/Tokyo")


def test_menu_choices_are_named_as_the_business_file_writes_the_action() -> None:
    """Two choices that go to two named forwardings are told apart in the call log."""
    assert action_name(Action(ActionKind.FORWARD, forward="doctors")) == "forward:doctors"
    assert action_name(Action(ActionKind.FORWARD)) == "forward"
    assert action_name(Action(ActionKind.MENU, menu="main")) == "menu:main"
    assert action_name(Action(ActionKind.VOICEMAIL)) == "voicemail"
