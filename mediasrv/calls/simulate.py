"""Dry run (issue 10 §5): what would a call from ``caller`` at ``at`` do, with no call placed.

:func:`simulate` walks the same compiled :class:`~mediasrv.calls.plan.Plan` a call runs: it
evaluates the blocklist and business-hours branches for that caller and moment, and explains
every step from there: the prompts, the menus and where each key goes, the targets in the order
they would ring (with the round-robin start the next call would get), what busy, no answer and
overflow lead to. ``digits`` are the keys the caller would press at successive menus; without
them a menu lists all its choices. Nothing here touches media, legs or the store's rotation
pointers (``peek_rotation`` only reads).

``mediasrv simulate --number N --caller C --at "2026-12-29 19:00"`` prints
:func:`format_simulation` of the number's current plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from .blocking import caller_blocked
from .plan import (
    Answer,
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
    OpenNow,
    Plan,
    Play,
    Reject,
    Step,
    Strategy,
    TargetKind,
    Voicemail,
)

MAX_DEPTH = 8

HoursEvaluator = Callable[[object, datetime], object]  # bool, or an OpenState (open, rule, label)
BlockEvaluator = Callable[[CallerBlocked, str, str], object | None]


@dataclass(slots=True)
class Simulation:
    number: str
    caller: str
    at: datetime
    version: int
    rules: list[str] = field(default_factory=list)  # "blocklist: not blocked", "hours: closed"
    prompts: list[str] = field(default_factory=list)  # heard on the path taken, in order
    targets: list[str] = field(default_factory=list)  # rung on the path taken, in order
    path: list[str] = field(default_factory=list)  # steps of the path taken
    lines: list[str] = field(default_factory=list)  # the whole explanation, indented
    ends: str = ""  # where the path taken stops (a menu waiting for keys, voicemail, ...)


def _hours_text(result: object) -> tuple[bool, str]:
    if isinstance(result, bool):
        return result, "open" if result else "closed"
    is_open = bool(getattr(result, "open", False))
    rule = getattr(result, "rule", None)
    label = getattr(result, "label", "")
    why = getattr(rule, "value", str(rule)) if rule is not None else ""
    detail = f" ({why}{': ' + label if label else ''})" if why else ""
    return is_open, ("open" if is_open else "closed") + detail


def target_text(t: DialTarget) -> str:
    ring = f"{t.ring_timeout:g} s"
    if t.kind is TargetKind.GROUP:
        names = ", ".join(m.operator or m.address for m in t.members)
        return f"group {t.address} [first idle of {names}] ({ring})"
    who = t.operator or t.name
    via = f" via trunk {t.trunk}" if t.kind is TargetKind.PHONE and t.trunk else ""
    kind = {TargetKind.REGISTERED: "registered ", TargetKind.PHONE: "phone "}.get(t.kind, "")
    return f"{who + ' ' if who else ''}{kind}{t.address}{via} ({ring})"


class _Walker:
    def __init__(
        self,
        plan: Plan,
        sim: Simulation,
        caller: str,
        withheld: str,
        hours: HoursEvaluator,
        blocked: BlockEvaluator,
        digits: str,
        peek_rotation: Callable[[str, int], int] | None,
    ) -> None:
        self.plan = plan
        self.sim = sim
        self.caller = caller
        self.withheld = withheld
        self.hours = hours
        self.blocked = blocked
        self.digits = list(digits)
        self.peek = peek_rotation

    def say(self, depth: int, text: str) -> None:
        self.sim.lines.append("  " * depth + text)

    def walk(self, step: Step | None, depth: int, main: bool, seen: frozenset[int]) -> None:
        """Explain from ``step`` on; ``main``: this is the path the call takes."""
        while step is not None:
            index = self.plan.index_of(step)
            if index in seen:
                self.say(depth, f"(back to {self.plan.label_of(step)})")
                return
            seen = seen | {index}
            if main:
                self.sim.path.append(type(step).__name__.lower())
            step = self.explain(step, depth, main, seen)
        if main and not self.sim.ends:
            self.sim.ends = "end"

    def branch_to(
        self, label: Label | None, after: Step, depth: int, main: bool, seen: frozenset[int]
    ) -> None:
        if depth >= MAX_DEPTH:
            self.say(depth, "...")
            return
        self.walk(self.plan.at(label, after=after), depth, main, seen)

    def explain(self, step: Step, depth: int, main: bool, seen: frozenset[int]) -> Step | None:
        plan = self.plan
        if isinstance(step, Branch):
            return self.explain_branch(step, depth, main)
        if isinstance(step, Goto):
            return plan.at(step.label)
        if isinstance(step, Classify):
            self.say(depth, f"logged as {step.disposition.value}")
            return plan.after(step)
        if isinstance(step, Answer):
            self.say(depth, "answer" + (" (early media, 183)" if step.early_media else ""))
            return plan.after(step)
        if isinstance(step, Play):
            what = "consent prompt, once per call: " if step.consent else "play "
            early = " as early media (183)" if step.early_media else ""
            self.say(depth, f"{what}{', '.join(step.prompts)}{early}")
            if main:
                self.sim.prompts.extend(step.prompts)
            return plan.after(step)
        if isinstance(step, Reject):
            before = f" after {', '.join(step.prompts)} (early media)" if step.prompts else ""
            self.say(depth, f"reject {step.code}{before}")
            if main:
                self.sim.prompts.extend(step.prompts)
                self.sim.ends = f"reject {step.code}"
            return None
        if isinstance(step, Hangup):
            self.say(depth, "hang up")
            if main:
                self.sim.ends = "hang up"
            return None
        if isinstance(step, Voicemail):
            self.explain_voicemail(step, depth, main)
            return None
        if isinstance(step, Menu):
            self.explain_menu(step, depth, main, seen)
            return None
        if isinstance(step, Dial):
            return self.explain_dial(step, depth, main, seen)
        if isinstance(step, Enqueue):
            return self.explain_queue(step, depth, main, seen)
        raise TypeError(f"unknown step {step!r}")

    def explain_branch(self, step: Branch, depth: int, main: bool) -> Step | None:
        test = step.test
        if isinstance(test, OpenNow):
            zone = ZoneInfo(test.time_zone)
            is_open, text = _hours_text(self.hours(test.schedule, self.sim.at.astimezone(zone)))
            result = is_open
            rule = f"{test.name}: {text}"
        elif isinstance(test, CallerBlocked):
            match = self.blocked(test, self.caller, self.withheld)
            result = match is not None
            rule = f"{test.name}: " + (f"blocked by {match}" if result else "not blocked")
        else:
            raise TypeError(f"unknown condition {test!r}")
        if main:
            self.sim.rules.append(rule)
        self.say(depth, rule)
        return self.plan.at(step.if_true if result else step.if_false, after=step)

    def explain_voicemail(self, step: Voicemail, depth: int, main: bool) -> None:
        ends = ["hang-up", f"{step.max_length:g} s"]
        if step.finish_on_key:
            ends.append(step.finish_on_key)
        if step.silence_timeout:
            ends.append(f"{step.silence_timeout:g} s of silence")
        beep = ", beep" if step.beep else ""
        self.say(
            depth,
            f"voicemail {step.mailbox}: {', '.join(step.greeting)}{beep}; "
            f"ends on {' / '.join(ends)}; under {step.min_length:g} s is no message",
        )
        if main:
            self.sim.prompts.extend(step.greeting)
            self.sim.ends = "voicemail"

    def explain_menu(self, step: Menu, depth: int, main: bool, seen: frozenset[int]) -> None:
        self.say(
            depth,
            f"menu {step.name}: {', '.join(step.prompt)} (first key {step.first_digit_timeout:g} s,"
            f" between keys {step.inter_digit_timeout:g} s, {step.max_no_input} tries)",
        )
        if main:
            self.sim.prompts.extend(step.prompt)
        pressed = self._entry(step) if main else None
        for choice in step.choices:
            chosen = pressed == choice.digits
            self.say(depth + 1, f"{choice.digits} ->{' (pressed)' if chosen else ''}")
            self.branch_to(choice.goto, step, depth + 2, main and chosen, seen)
        for what, label in (("no input", step.on_no_input), ("invalid", step.on_invalid)):
            self.say(depth + 1, f"{what} ->")
            self.branch_to(label, step, depth + 2, False, seen)
        if main and pressed is None:
            self.sim.ends = f"menu {step.name} (waits for a key)"
        elif main and not any(c.digits == pressed for c in step.choices):
            self.sim.ends = f"menu {step.name}: {pressed!r} is invalid"

    def _entry(self, step: Menu) -> str | None:
        if not self.digits:
            return None
        keys = ""
        while self.digits and len(keys) < step.max_digits:
            key = self.digits.pop(0)
            if key == step.finish_on_key:
                break
            keys += key
        return keys

    def ordered(self, step: Dial) -> tuple[tuple[DialTarget, ...], str]:
        targets = step.targets
        if step.strategy is not Strategy.ROUND_ROBIN or len(targets) < 2:
            return targets, "in order"
        if self.peek is None:
            return targets, "round robin (the start moves on every call)"
        start = self.peek(step.rotation_key or self.plan.number, len(targets)) % len(targets)
        return targets[start:] + targets[:start], f"round robin, this call starts at #{start + 1}"

    def explain_dial(self, step: Dial, depth: int, main: bool, seen: frozenset[int]) -> Step | None:
        targets, how = self.ordered(step)
        self.say(depth, f"ring {how}:")
        for i, t in enumerate(targets, start=1):
            self.say(depth + 1, f"{i}. {target_text(t)}")
            if main:
                self.sim.targets.append(t.operator or t.address)
        if step.whisper:
            self.say(depth + 1, f"whisper to the operator: {', '.join(step.whisper)}")
        if step.accept_digit:
            self.say(depth + 1, f"the operator presses {step.accept_digit} to accept")
        if step.ringback:
            self.say(depth + 1, f"the caller hears {step.ringback} while it rings")
        if step.continue_on_hangup:
            self.say(depth + 1, "answered -> talk (recorded); the operator hangs up ->")
            self.branch_to(step.on_operator_hangup, step, depth + 2, False, seen)
        else:
            self.say(depth + 1, "answered -> talk (recorded), then the call ends")
        for what, label in (("busy", step.on_busy), ("no answer", step.on_no_answer)):
            if label is not None:
                self.say(depth + 1, f"{what} -> at once:")
                self.branch_to(label, step, depth + 2, False, seen)
            else:
                self.say(depth + 1, f"{what} -> the next target")
        self.say(depth + 1, "every target failed ->")
        if main:
            self.sim.path.append("(nobody answers)")
        self.branch_to(None, step, depth + 2, main, seen)
        return None

    def explain_queue(
        self, step: Enqueue, depth: int, main: bool, seen: frozenset[int]
    ) -> Step | None:
        members = ", ".join(t.operator or t.address for t in step.targets)
        bounds = f"max wait {step.max_wait:g} s" if step.max_wait else "no max wait"
        if step.max_length:
            bounds += f", max {step.max_length} waiting"
        self.say(
            depth, f"queue {step.name}: {', '.join(step.music)} for the next free of {members}"
        )
        self.say(depth + 1, bounds + ("; position announced" if step.announce_position else ""))
        if main:
            self.sim.prompts.extend(step.music)
            self.sim.targets.extend(t.operator or t.address for t in step.targets)
        self.say(depth + 1, "overflow (no operator, full, max wait) ->")
        self.branch_to(step.on_overflow, step, depth + 2, False, seen)
        if main and not self.sim.ends:
            self.sim.ends = f"queue {step.name}"
        return None


def simulate(
    plan: Plan,
    *,
    caller: str,
    at: datetime,
    hours: HoursEvaluator,
    blocked: BlockEvaluator,
    withheld: str = "",
    digits: str = "",
    peek_rotation: Callable[[str, int], int] | None = None,
) -> Simulation:
    """Explain the call ``caller`` would make to the plan's number at the aware moment ``at``."""
    if at.tzinfo is None:
        raise ValueError("simulate needs an aware datetime (give the business's zone)")
    sim = Simulation(plan.number, caller or withheld or "anonymous", at, plan.version)
    walker = _Walker(plan, sim, caller, withheld, hours, blocked, digits, peek_rotation)
    walker.walk(plan.entry, 0, True, frozenset())
    return sim


def blocked_text(test: CallerBlocked, caller: str, withheld: str) -> str | None:
    """:func:`~mediasrv.calls.blocking.caller_blocked`, said in words:
    "number list: exact +81399990000" (the dry runs' block evaluator)."""
    match = caller_blocked(test, caller, withheld)
    if match is None:
        return None
    rule = match.rule
    note = f" ({rule.note})" if rule.note else ""
    return f"{match.scope.value} list: {rule.kind.value} {rule.value}{note}"


def parse_at(text: str, zone: str) -> datetime:
    """``"2026-12-29 19:00"`` on the business's wall clock (``zone``), or an ISO moment with
    its own offset (``"2026-12-29T10:00+00:00"``). Raises ValueError naming the format."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--at {text!r}: expected YYYY-MM-DD HH:MM (local to {zone})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment


def format_simulation(sim: Simulation) -> str:
    head = [
        f"number {sim.number} (flow version {sim.version}), caller {sim.caller}, "
        f"at {sim.at.isoformat(sep=' ', timespec='minutes')}",
        "rules:   " + ("; ".join(sim.rules) or "none"),
        "prompts: " + (", ".join(sim.prompts) or "none"),
        "targets: " + (", ".join(sim.targets) or "none"),
        "ends:    " + sim.ends,
        "",
    ]
    return "\n".join(head + sim.lines) + "\n"
