"""IVR menus (F5) and voicemail (F11), on fakes and a fake clock."""

from __future__ import annotations

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.plan import Hangup, Menu, MenuChoice, PlanBuilder, Play, Voicemail
from mediasrv.calls.trace import HungUpBy, VoicemailLeft
from mediasrv.calls.trace import MenuChoice as MenuChoiceEvent
from mediasrv.media.api import LegRole

NUMBER = "+81312345678"


def menu_plan(**kw: object):
    options: dict[str, object] = {
        "choices": (MenuChoice("1", "sales", "sales"), MenuChoice("2", "support", "support")),
        "no_input_prompt": ("no-input",),
        "invalid_prompt": ("invalid",),
        "on_no_input": "failed",
        "on_invalid": "failed",
    }
    options.update(kw)
    b = PlanBuilder()
    b.add(Menu("main", ("menu",), **options))  # type: ignore[arg-type]
    for label in ("sales", "support", "failed"):
        b.label(label)
        b.add(Play((label,)), Hangup())
    return b.build(NUMBER, 1)


def press(harness, ctx, at: float, digits: str, gap: float = 0.5) -> None:
    for i, d in enumerate(digits):
        harness.at(at + i * gap, lambda d=d: harness.media.digit(ctx.id, LegRole.CALLER, d))


async def test_a_choice_after_the_prompt_goes_to_its_label(harness) -> None:
    ctx, caller = harness.call(menu_plan())
    press(harness, ctx, 3.0, "2")  # the prompt ends at t=2
    trace = await harness.trace()
    assert harness.played() == ["menu", "support"]
    assert trace.path == ["menu", "play:support", "hangup"]
    assert [(m.menu, m.digits, m.choice, m.tries) for m in trace.menu] == [
        ("main", "2", "support", 1)
    ]
    assert trace.digits == ["2"]
    assert [e.choice for e in harness.kinds(MenuChoiceEvent)] == ["support"]
    assert caller.answered  # an IVR answers the caller


async def test_barge_in_stops_the_prompt_at_the_first_key(harness) -> None:
    ctx, _caller = harness.call(menu_plan())
    press(harness, ctx, 0.5, "1")
    trace = await harness.trace()
    assert harness.media.plays[0].stopped == 0.5
    assert trace.menu[0].choice == "sales"


async def test_without_barge_in_keys_during_the_prompt_are_ignored(harness) -> None:
    ctx, _caller = harness.call(menu_plan(barge_in=False))
    press(harness, ctx, 0.5, "1")
    press(harness, ctx, 2.5, "2")
    trace = await harness.trace()
    assert harness.media.plays[0].stopped == 2.0
    assert trace.menu[0].choice == "support"


async def test_no_input_and_invalid_have_their_own_prompts_and_counters(harness) -> None:
    ctx, _caller = harness.call(menu_plan(first_digit_timeout=3.0, max_no_input=2, max_invalid=2))
    # try 1: nothing (prompt 0-2, timeout at 5); try 2: no-input prompt + menu (5-9), "7" invalid
    # try 3: invalid prompt + menu (9.5-13.5), "1" chosen
    press(harness, ctx, 9.5, "7")
    press(harness, ctx, 14.0, "1")
    trace = await harness.trace()
    assert harness.played() == ["menu", "no-input+menu", "invalid+menu", "sales"]
    assert trace.menu[0].choice == "sales" and trace.menu[0].tries == 3


async def test_no_input_counter_spent_goes_to_on_no_input(harness) -> None:
    harness.call(menu_plan(first_digit_timeout=3.0, max_no_input=2))
    trace = await harness.trace()
    assert harness.played() == ["menu", "no-input+menu", "failed"]
    assert trace.menu[0].choice == "no-input"
    assert trace.path[-2] == "play:failed"


async def test_invalid_counter_spent_goes_to_on_invalid(harness) -> None:
    ctx, _caller = harness.call(menu_plan(max_invalid=1, valid_digits="12"))
    press(harness, ctx, 2.5, "9")  # outside the valid set: invalid at once
    trace = await harness.trace()
    assert trace.menu[0].choice == "invalid" and trace.menu[0].digits == "9"
    assert harness.played() == ["menu", "failed"]


async def test_multi_digit_entry_ends_on_inter_digit_timeout_finish_key_or_max(harness) -> None:
    choices = (MenuChoice("12", "sales"), MenuChoice("3", "support"))
    plan = menu_plan(choices=choices, max_digits=3, inter_digit_timeout=1.0)
    ctx, _ = harness.call(plan)
    press(harness, ctx, 2.5, "12")  # 2.5, 3.0, then the 1 s inter-digit timeout at 4.0
    trace = await harness.trace()
    assert trace.menu[0].digits == "12"
    assert harness.media.plays[-1].started == 4.0
    ctx2, _ = harness.call(plan)
    press(harness, ctx2, harness.clock.now() + 2.5, "3#")  # the finish key ends it
    trace2 = await harness.trace(1)
    assert trace2.menu[0].digits == "3" and trace2.menu[0].choice == "support"


async def test_total_timeout_bounds_a_slow_entry(harness) -> None:
    choices = (MenuChoice("1234", "sales"), MenuChoice("5", "support"))
    plan = menu_plan(
        choices=choices, max_digits=4, inter_digit_timeout=2.0, total_timeout=3.0, max_invalid=1
    )
    ctx, _ = harness.call(plan)
    press(harness, ctx, 2.5, "1234", gap=1.0)  # 2.5 3.5 4.5 5.5: total ends at 5.0
    trace = await harness.trace()
    assert trace.menu[0].choice == "invalid" and trace.menu[0].digits == "123"


def vm_plan(**kw: object):
    b = PlanBuilder()
    b.add(Voicemail("sales", greeting=("greeting",), **kw))  # type: ignore[arg-type]
    return b.build(NUMBER, 1)


async def test_voicemail_greeting_beep_mono_caller_recording_until_hang_up(harness) -> None:
    _ctx, caller = harness.call(vm_plan())
    harness.at(10.0, caller.hang_up)  # greeting 0-2, beep 2-4, message 4-10
    trace = await harness.trace()
    assert harness.played() == ["greeting", "beep"]
    assert "record caller mono" in harness.log
    assert trace.voicemail is not None and trace.voicemail.seconds == 6.0
    assert str(trace.voicemail.path) == "/vm/sales/call1.wav"
    assert trace.disposition is Disposition.VOICEMAIL
    assert [e.seconds for e in harness.kinds(VoicemailLeft)] == [6.0]
    assert trace.hung_up_by is HungUpBy.CALLER


async def test_a_hang_up_at_the_beep_is_no_message(harness) -> None:
    _ctx, caller = harness.call(vm_plan(min_length=1.0))
    harness.at(4.5, caller.hang_up)
    trace = await harness.trace()
    assert trace.voicemail is None and not harness.kinds(VoicemailLeft)
    assert trace.disposition is Disposition.ABANDONED
    assert "stop_record 0.5s" in harness.log


async def test_hash_max_length_and_silence_end_the_message(harness) -> None:
    ctx, caller = harness.call(vm_plan())
    harness.at(9.0, lambda: harness.media.digit(ctx.id, LegRole.CALLER, "#"))
    t1 = await harness.trace()
    assert t1.reason == "voicemail-finish-key" and t1.voicemail.seconds == 5.0
    assert caller.terminated and t1.hung_up_by is HungUpBy.SYSTEM
    harness.call(vm_plan(max_length=30.0))
    t2 = await harness.trace(1)
    assert t2.reason == "voicemail-max-length" and t2.voicemail.seconds == 30.0
    ctx3, _ = harness.call(vm_plan())
    harness.at(
        harness.clock.now() + 12.0, lambda: harness.media.rtp_timeout(ctx3.id, LegRole.CALLER)
    )
    t3 = await harness.trace(2)
    assert t3.reason == "voicemail-silence" and t3.voicemail.seconds == 8.0
