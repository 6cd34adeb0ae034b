"""The plan is validated once, at compile time: every error names the step at fault."""

from __future__ import annotations

import pytest

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.plan import (
    Answer,
    Branch,
    Classify,
    Dial,
    DialTarget,
    Goto,
    Hangup,
    Menu,
    MenuChoice,
    OpenNow,
    PlanBuilder,
    PlanError,
    Play,
    TargetKind,
    Voicemail,
)


def target(n: int) -> DialTarget:
    return DialTarget(TargetKind.SIP_URI, f"sip:op{n}@127.0.0.1:27{n:03d}", operator=f"op{n}")


def menu(*choices: tuple[str, str], **kw: object) -> Menu:
    return Menu("main", ("menu",), tuple(MenuChoice(d, g) for d, g in choices), **kw)  # type: ignore[arg-type]


def test_labels_resolve_and_fall_through() -> None:
    b = PlanBuilder()
    b.add(Answer(), menu(("1", "sales"), ("2", "vm"), on_no_input="vm", on_invalid="vm"))
    b.label("sales")
    b.add(Dial((target(1),), on_busy="vm"))
    b.label("vm")
    b.add(Voicemail("main"))
    plan = b.build("+81312345678", 7)
    assert plan.version == 7
    assert plan.entry == Answer()
    dial = plan.at("sales")
    assert isinstance(dial, Dial)
    assert plan.after(dial) is plan.at("vm")
    assert plan.label_of(dial) == "sales"
    assert plan.at(None, after=plan.steps[0]) is plan.steps[1]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: b.add(Goto("nowhere")), "label 'nowhere' is not defined"),
        (lambda b: b.add(Dial(tuple(target(i) for i in range(6)))), "at most 5 targets"),
        (lambda b: b.add(Dial(())), "at least one target"),
        (lambda b: (b.add(Hangup()), b.add(Play(("x",)))), "no path reaches this step"),
        (lambda b: (b.label("a"), b.add(Classify(Disposition.BUSY), Goto("a"))), "never waits"),
        (lambda b: b.add(menu(("1", "x")), Hangup()), "label 'x' is not defined"),
        (
            lambda b: (b.add(menu(("7", "h"), valid_digits="12")), b.label("h"), b.add(Hangup())),
            "outside the valid set",
        ),
        (
            lambda b: (b.add(menu(("1", "h"), ("1", "h"))), b.label("h"), b.add(Hangup())),
            "appears twice",
        ),
        (
            lambda b: (b.add(menu(("12", "h"))), b.label("h"), b.add(Hangup())),
            "longer than max digits",
        ),
        (
            lambda b: (
                b.add(menu(("1", "h"), first_digit_timeout=0)),
                b.label("h"),
                b.add(Hangup()),
            ),
            "first-digit timeout must be > 0",
        ),
        (lambda b: b.add(Dial((target(1),), accept_digit="x")), "not a DTMF key"),
        (lambda b: b.add(Voicemail("m", min_length=200)), "min length"),
        (lambda b: b.add(Hangup(code=200)), "4xx-6xx"),
        (lambda b: b.add(Dial((DialTarget(TargetKind.GROUP, "sales"),))), "has members"),
    ],
)
def test_invalid_plans_are_refused_naming_the_step(build: object, message: str) -> None:
    b = PlanBuilder()
    build(b)  # type: ignore[operator]
    with pytest.raises(PlanError, match=message) as err:
        b.build("+81312345678", 1)
    assert err.value.where.startswith("step ") or "plan" in str(err.value)


def test_a_loop_through_a_menu_waits_and_is_fine() -> None:
    b = PlanBuilder()
    b.add(Branch(OpenNow(schedule=None), if_true=None, if_false="top"))
    b.label("top")
    b.add(menu(("0", "again"), ("9", "out")))
    b.label("again")
    b.add(Goto("top"))
    b.label("out")
    b.add(Hangup())
    plan = b.build("+81312345678", 1)
    assert len(plan.steps) == 4


def test_an_instant_loop_through_a_branch_is_refused() -> None:
    b = PlanBuilder()
    b.label("top")
    b.add(Branch(OpenNow(schedule=None), if_true="dial", if_false=None))
    b.add(Goto("top"))
    b.label("dial")
    b.add(Dial((target(1),)))
    with pytest.raises(PlanError, match="never waits"):
        b.build("+81312345678", 1)


def test_duplicate_label_is_refused() -> None:
    b = PlanBuilder()
    b.label("a")
    with pytest.raises(PlanError, match="defined twice"):
        b.label("a")


def test_on_operator_hangup_needs_continue_on_hangup() -> None:
    from mediasrv.calls.plan import Dial, DialTarget, Hangup, PlanBuilder, PlanError, TargetKind

    target = (DialTarget(TargetKind.SIP_URI, "sip:op@127.0.0.1:5070"),)
    b = PlanBuilder()
    b.add(Dial(target, on_operator_hangup="again"), Hangup())
    b.label("again")
    b.add(Dial(target), Hangup())
    with pytest.raises(PlanError, match="on_operator_hangup needs continue_on_hangup"):
        b.build("+81312345678", 1)
