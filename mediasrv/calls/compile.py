"""Compile a tracking number's configuration (the business model) into a :class:`Plan`.

The order of a call is fixed by F6 -> F7 -> F4 -> the number's ``start`` action: blocklist,
business hours, guidance, then forwarding / IVR / queue / voicemail. Every
:class:`~mediasrv.calls.business.Action` becomes one labelled block of steps, compiled once
however many parts refer to it (a menu choice back to its own menu is a jump, not a copy).

:class:`PlanCache` keeps the compiled plan per (number, configuration version), so routing a
call is a dictionary lookup; a call keeps the plan it started with while new calls take the
next version. When the store cannot be read, the last good plan of the number serves (logged
and counted); when there is none, a fallback plan apologises and hangs up, never a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .business import (
    Action,
    ActionKind,
    Business,
    FlowConfig,
    Forwarding,
    ForwardStrategy,
    NumberVersion,
    Operator,
    OperatorKind,
    Target,
)
from .business import Menu as MenuConfig
from .disposition import Disposition
from .plan import (
    Branch,
    CallerBlocked,
    Classify,
    Dial,
    DialTarget,
    Enqueue,
    Goto,
    Hangup,
    Label,
    Menu,
    MenuChoice,
    OpenNow,
    Plan,
    PlanBuilder,
    PlanError,
    Play,
    Reject,
    Step,
    Strategy,
    TargetKind,
    Voicemail,
)

log = logging.getLogger("mediasrv.calls.compile")

DEFAULT_MUSIC = ("hold-music",)
DEFAULT_GREETING = ("voicemail-greeting",)


class CompileError(PlanError):
    """The configuration cannot become a plan (the business file validator should have said)."""


_KINDS = {
    OperatorKind.SIP_URI: TargetKind.SIP_URI,
    OperatorKind.PHONE: TargetKind.PHONE,
    OperatorKind.SOFTPHONE: TargetKind.REGISTERED,
}


def action_name(action: Action) -> str:
    """An action as the business file writes it ("forward:doctors", "menu:hours",
    "voicemail"): a menu choice's name in the call log, telling two choices apart that
    go to two named forwardings."""
    name = action.forward or action.menu
    return f"{action.kind.value}:{name}" if name else action.kind.value


@dataclass(slots=True)
class _Block:
    label: Label
    action: Action


class _Compiler:
    def __init__(self, nv: NumberVersion) -> None:
        self.nv = nv
        self.business: Business = nv.business
        self.number = nv.number
        self.flow: FlowConfig = nv.number.flow
        self.b = PlanBuilder()
        self._labels: dict[Action, Label] = {}
        self._pending: list[_Block] = []

    def fail(self, message: str) -> CompileError:
        return CompileError(f"number {self.number.number}: {message}")

    # -- the whole plan -----------------------------------------------------------------------
    def compile(self) -> Plan:
        flow, b = self.flow, self.b
        lists = (self.number.blocklist, self.business.blocklist, self.nv.global_blocklist)
        rules = any(bl.rules for bl in lists)
        if rules:
            test = CallerBlocked(*lists)
            b.add(Branch(test, if_true="blocked", if_false=None))
        schedule = None
        if flow.hours.schedule:
            schedule = self.business.schedule(flow.hours.schedule)
            if schedule is None:
                raise self.fail(f"schedule {flow.hours.schedule!r} is not defined")
            zone = schedule.time_zone or self.business.time_zone
            b.add(Branch(OpenNow(schedule, zone, f"hours:{schedule.name}"), None, "closed"))
        if flow.guidance.prompts:
            b.add(Play(flow.guidance.prompts, early_media=flow.guidance.early_media))
        b.add(Goto(self.label_for(flow.start)))
        if rules:
            b.label("blocked")
            blocking = flow.blocking
            b.add(Reject(blocking.sip_code, blocking.prompts, Disposition.BLOCKED, "blocked"))
        if schedule is not None:
            b.label("closed")
            b.add(
                Classify(Disposition.AFTER_HOURS, "after-hours"),
                Goto(self.label_for(flow.hours.closed)),
            )
        while self._pending:
            block = self._pending.pop(0)
            b.label(block.label)
            b.add(*self.steps_for(block.action))
        return b.build(
            self.number.number,
            self.nv.version,
            medium=self.number.medium,
            campaign=self.number.campaign,
            business=self.business.slug,
            prompt_files={p.name: p.file for p in self.business.prompts},
            record=self.number.record,
        )

    # -- actions --------------------------------------------------------------------------------
    def label_for(self, action: Action) -> Label:
        label = self._labels.get(action)
        if label is None:
            name = action.forward or action.menu
            base = f"{action.kind.value}:{name}" if name else action.kind.value
            label, n = base, 1
            while label in self._labels.values():
                n += 1
                label = f"{base}-{n}"
            self._labels[action] = label
            self._pending.append(_Block(label, action))
        return label

    def next_or_label(self, action: Action) -> Label | None:
        """Busy / no-answer: None (the next target) or the action's block."""
        return None if action.kind is ActionKind.NEXT_TARGET else self.label_for(action)

    def steps_for(self, action: Action) -> list[Step]:
        kind = action.kind
        if kind is ActionKind.FORWARD:
            return self.forward(action)
        if kind is ActionKind.MENU:
            return [self.menu(action.menu)]
        if kind is ActionKind.VOICEMAIL:
            return [self.voicemail()]
        if kind is ActionKind.QUEUE:
            return [self.queue()]
        if kind is ActionKind.GUIDANCE:
            if not action.prompts:
                raise self.fail("a guidance action needs prompts")
            return [Play(action.prompts), Hangup(reason="guidance")]
        if kind is ActionKind.HANGUP:
            # after a forwarding, an unanswered caller hears the last operator's failure as a
            # proxy relays it (486 busy, 483 loop; F2), not a blanket 480
            hangup = Hangup(reason="hangup", relay_attempt=True)
            return [*([Play(action.prompts)] if action.prompts else []), hangup]
        if kind is ActionKind.REJECT:
            return [Reject(action.sip_code, action.prompts, None, "rejected-by-flow")]
        raise self.fail(f"{kind.value} is only allowed as a busy / no-answer action")

    def forward(self, action: Action) -> list[Step]:
        fw = self.flow.forwarding_named(action.forward)
        if fw is None:
            raise self.fail(f"forwarding {action.forward or '(main)'!r} is not defined")
        steps: list[Step] = []
        consent = self.flow.guidance.consent
        if consent:  # the Play step itself makes sure it plays once per call
            steps.append(Play(consent, early_media=self.flow.guidance.early_media, consent=True))
        steps.append(self.dial(fw))
        steps.append(Goto(self.label_for(fw.on_exhausted)))
        return steps

    def dial(self, fw: Forwarding) -> Dial:
        key = (
            self.number.number if fw is self.flow.forwarding else f"{self.number.number}:{fw.name}"
        )
        return Dial(
            targets=tuple(self.target(t) for t in fw.targets),
            strategy=Strategy.ROUND_ROBIN
            if fw.strategy is ForwardStrategy.ROUND_ROBIN
            else Strategy.SEQUENTIAL,
            rotation_key=key,
            whisper=fw.whisper,
            accept_digit=fw.accept_digit or None,
            accept_prompt=fw.accept_prompts,
            accept_timeout=fw.accept_timeout,
            on_busy=self.next_or_label(fw.on_busy),
            on_no_answer=self.next_or_label(fw.on_no_answer),
            ringback=fw.ringback or None,
            **self.after_operator_hangup(fw.on_operator_hangup),
        )

    def after_operator_hangup(self, action: Action) -> dict[str, Any]:
        """A plain "hangup" ends the call when the operator hangs up (the default); any other
        action carries on there (Asterisk Dial option ``g``)."""
        if action.kind is ActionKind.HANGUP and not action.prompts:
            return {}
        return {"continue_on_hangup": True, "on_operator_hangup": self.label_for(action)}

    def operator_target(self, op: Operator, ring_timeout: float) -> DialTarget:
        return DialTarget(
            _KINDS[op.kind],
            op.target,
            operator=op.name,
            name=op.display_name or op.name,
            ring_timeout=ring_timeout,
            trunk=op.trunk,
            wrap_up=op.wrap_up,
            shared=op.shared,
        )

    def target(self, t: Target) -> DialTarget:
        if t.operator:
            op = self.business.operator(t.operator)
            if op is None:
                raise self.fail(f"operator {t.operator!r} is not defined")
            return self.operator_target(op, t.ring_timeout)
        members = self.business.group_members(t.group)
        if not members:
            raise self.fail(f"group {t.group!r} has no operators")
        return DialTarget(
            TargetKind.GROUP,
            t.group,
            name=t.group,
            ring_timeout=t.ring_timeout,
            members=tuple(self.operator_target(m, t.ring_timeout) for m in members),
        )

    def menu(self, name: str) -> Menu:
        m: MenuConfig | None = self.flow.menu(name)
        if m is None:
            raise self.fail(f"menu {name!r} is not defined")
        on_failure = self.label_for(m.on_failure)
        return Menu(
            name=m.name,
            prompt=m.prompts,
            choices=tuple(
                MenuChoice(c.digits, self.label_for(c.action), action_name(c.action))
                for c in m.choices
            ),
            first_digit_timeout=m.first_digit_timeout,
            inter_digit_timeout=m.inter_digit_timeout,
            total_timeout=m.total_timeout,
            max_digits=m.max_digits,
            valid_digits=m.valid_digits,
            finish_on_key=m.terminator,
            barge_in=m.barge_in,
            max_no_input=m.retries + 1,
            max_invalid=m.retries + 1,
            no_input_prompt=m.no_input_prompts,
            invalid_prompt=m.invalid_prompts,
            on_no_input=on_failure,
            on_invalid=on_failure,
        )

    def voicemail(self) -> Voicemail:
        vm = self.flow.voicemail
        if vm is None:
            raise self.fail("an action goes to voicemail but the number has none")
        return Voicemail(
            mailbox=self.number.number,
            greeting=vm.greeting or DEFAULT_GREETING,
            beep=vm.beep,
            max_length=vm.max_seconds,
            min_length=vm.min_seconds,
            silence_timeout=vm.silence_seconds,
            finish_on_key="#" if vm.end_on_hash else "",
        )

    def queue(self) -> Enqueue:
        q = self.flow.queue
        if q is None:
            raise self.fail("an action goes to the queue but the number has none")
        if q.group:
            members = self.business.group_members(q.group)
            targets = tuple(self.operator_target(m, 20.0) for m in members)
        elif self.flow.forwarding is not None:
            targets = tuple(self.target(t) for t in self.flow.forwarding.targets)
        else:
            targets = ()
        if not targets:
            raise self.fail("the queue has no operators")
        name = f"{self.business.slug}:{q.group or self.number.number}"
        return Enqueue(
            name=name,
            targets=targets,
            music=q.music or DEFAULT_MUSIC,
            announce_position=q.announce_position,
            position_prompts=q.position_prompts or ("queue-position",),
            periodic_prompts=q.periodic_prompts,
            announce_every=q.periodic_interval,
            max_wait=q.max_wait,
            max_length=q.max_length,
            wrap_up=q.wrap_up,
            on_overflow=self.label_for(q.overflow),
            overflow_when_no_operator=q.overflow_when_no_operator,
            whisper=self.flow.forwarding.whisper if self.flow.forwarding is not None else (),
        )


def compile_number(nv: NumberVersion) -> Plan:
    """The plan of one number at one configuration version (raises :class:`CompileError`)."""
    try:
        return _Compiler(nv).compile()
    except CompileError:
        raise
    except PlanError as exc:
        raise CompileError(f"number {nv.number.number}: {exc}") from exc


def fallback_plan(number: str, reason: str) -> Plan:
    """What a call gets when no plan can be had: an apology, then 480 (never a bare 500)."""
    b = PlanBuilder()
    b.add(
        Classify(Disposition.FAILED, reason),
        Play(("error",), early_media=True),
        Hangup(480, reason),
    )
    return b.build(number, 0)


class PlanCache:
    """Compiled plans per (number, version): routing stays a synchronous lookup."""

    def __init__(
        self,
        version_for: Callable[[str], NumberVersion | None],
        count_failure: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self._version_for = version_for
        self._count = count_failure
        self._plans: dict[str, Plan] = {}  # number -> its newest compiled plan

    def plan_for(self, number: str) -> Plan | None:
        """None: not a tracking number. The store down: the last good plan, else a fallback."""
        try:
            nv = self._version_for(number)
        except Exception as exc:
            self._count("store-down")
            log.warning("business store unavailable", extra={"number": number, "error": str(exc)})
            return self._plans.get(number) or fallback_plan(number, "store-down")
        if nv is None:
            return None
        key = nv.number.number
        cached = self._plans.get(key)
        if cached is not None and cached.version == nv.version:
            return cached
        try:
            plan = compile_number(nv)
        except CompileError as exc:
            self._count("compile-error")
            log.error("flow does not compile", extra={"number": key, "error": str(exc)})
            return cached or fallback_plan(key, "compile-error")
        self._plans[key] = plan
        if number != key:
            self._plans[number] = plan
        return plan
