"""A tracking number's flow as data: a small closed set of frozen steps, and a validated Plan.

The verbs are those TwiML, jambonz and the Asterisk/FreeSWITCH applications converged on
(ARCHITECTURE.md "Call flows"); option names follow Twilio ``<Gather>``/``<Dial>``/``<Record>``,
Asterisk ``Queue``/``Read`` and FreeSWITCH ``play_and_get_digits`` where one exists:

============  =====================================================================
step          after it runs
============  =====================================================================
Reject        the call is over (a SIP code, or a prompt and then a hang-up)
Answer        next step (200, or 183 with SDP: early media, not billed, F4)
Play          next step (guidance to the caller; ``consent``: at most once per call)
Menu          the label of the choice, or ``on_no_input`` / ``on_invalid`` (F5)
Dial          talk until one side hangs up (call over); or ``on_busy`` /
              ``on_no_answer`` / the next step when every target failed (F8, F9)
Enqueue       talk (call over), or ``on_overflow`` (F10)
Voicemail     the call is over (F11)
Branch        ``if_true`` or ``if_false`` (business hours F7, blocklist F6)
Classify      next step; sets the disposition the call ends with unless a better one
              (answered, voicemail) happens later (e.g. after-hours guidance)
Goto          its label
Hangup        the call is over
============  =====================================================================

A :class:`Plan` is a flat tuple of steps with labels pointing into it. :func:`build_plan`
validates it once, at compile time, so a call never meets a dangling label, a sixth
forwarding target, a menu choice outside its valid digits, a step nothing reaches, or a loop
that never waits for the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from mediasrv.media.api import RecordMode

from .disposition import Disposition

MAX_TARGETS = 5  # F8: "up to 5 destinations"
DTMF_KEYS = frozenset("0123456789*#ABCD")

Label = str


class PlanError(ValueError):
    """The plan is not valid; ``where`` names the step (index and label) at fault."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


# -- targets and conditions -------------------------------------------------------------------


class TargetKind(enum.Enum):
    SIP_URI = "sip-uri"  # sip:op1@10.0.0.5:5060;transport=tcp
    PHONE = "phone"  # an E.164 number through an outbound trunk
    REGISTERED = "registered"  # a softphone registered to our registrar, by AOR / name
    GROUP = "group"  # one target for a group: its first idle member rings (``members``)


@dataclass(frozen=True, slots=True)
class DialTarget:
    """One forwarding target: who, how to reach them, and how long to ring (Twilio ``<Number
    timeout>``, Asterisk ``Dial(..., timeout)``)."""

    kind: TargetKind
    address: str  # the URI, the E.164 number, or the registered AOR
    operator: str = ""  # the operator's id (state board, call log); "" for a bare URI
    name: str = ""  # shown in the call log and the dry run
    ring_timeout: float = 30.0
    trunk: str = ""  # for PHONE: the outbound trunk's name ("" = the default one)
    wrap_up: float = 0.0  # the operator's own wrap-up after a call (the queue's may be longer)
    members: tuple[DialTarget, ...] = ()  # GROUP only: the operators, in order
    shared: bool = False  # a shared line (a PBX): many calls at once, never busy on the board


class Strategy(enum.Enum):
    SEQUENTIAL = "sequential"  # always from the first target (Asterisk ringall=no, linear)
    ROUND_ROBIN = "round-robin"  # start one further at every call (Asterisk rrmemory)


@dataclass(frozen=True, slots=True)
class OpenNow:
    """True while the schedule is open (F7). ``schedule`` is the business model's Schedule,
    evaluated in the business's zone by the injected ``is_open``."""

    schedule: object
    time_zone: str = "Asia/Tokyo"
    name: str = "hours"


@dataclass(frozen=True, slots=True)
class CallerBlocked:
    """True when the caller matches a blocklist (F6): the number's, the business's or the
    global one (the business model's Blocklist objects, matched by the injected evaluator,
    most specific scope first)."""

    number: object = None
    business: object = None
    global_: object = None
    name: str = "blocklist"


Condition = OpenNow | CallerBlocked


# -- the steps --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call. With ``prompts``: answer as early media (183), play it, then 603/code
    (Twilio ``<Reject reason>``; F6 "a configurable code or a prompt")."""

    code: int = 603
    prompts: tuple[str, ...] = ()
    disposition: Disposition | None = Disposition.BLOCKED  # None: keep the one set before
    reason: str = "rejected"


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the caller: 200 OK, or with ``early_media`` a 183 Session Progress with SDP so
    prompts play before anyone is billed (RFC 3960 early media, F4)."""

    early_media: bool = False


@dataclass(frozen=True, slots=True)
class Play:
    """Play prompts to the caller (Twilio ``<Play loop>``). The caller is answered first
    (``early_media``: 183) if not yet. ``consent`` marks the recording-consent prompt: it plays
    at most once per call, so a second Dial (a transfer) never repeats it."""

    prompts: tuple[str, ...]
    early_media: bool = False
    barge_in: bool = False
    loop: int = 1
    consent: bool = False


@dataclass(frozen=True, slots=True)
class MenuChoice:
    digits: str  # what the caller keys, e.g. "1" or "21"
    goto: Label
    name: str = ""  # "sales", shown in the call log path


@dataclass(frozen=True, slots=True)
class Menu:
    """Prompt and collect digits (F5), the options of FreeSWITCH ``play_and_get_digits`` /
    Twilio ``<Gather>`` / Asterisk ``Read``.

    Timeouts: ``first_digit_timeout`` from the end of the prompt (or from barge-in) to the first
    key; ``inter_digit_timeout`` between keys; ``total_timeout`` for the whole entry from the end
    of the prompt. Entry ends at ``max_digits``, at ``finish_on_key`` (not part of the entry), or
    on an inter-digit timeout. A key outside ``valid_digits`` or an entry that is no choice is
    invalid. No input and invalid input have separate prompts and counters
    (``max_no_input`` / ``max_invalid`` tries in all); when a counter is spent the menu goes to
    ``on_no_input`` / ``on_invalid``."""

    name: str
    prompt: tuple[str, ...]
    choices: tuple[MenuChoice, ...]
    first_digit_timeout: float = 5.0
    inter_digit_timeout: float = 3.0
    total_timeout: float = 15.0
    max_digits: int = 1
    valid_digits: str = "0123456789*#"
    finish_on_key: str = "#"
    barge_in: bool = True
    max_no_input: int = 3
    max_invalid: int = 3
    no_input_prompt: tuple[str, ...] = ()
    invalid_prompt: tuple[str, ...] = ()
    on_no_input: Label | None = None  # None: the next step
    on_invalid: Label | None = None  # None: the next step
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class Dial:
    """Forward to up to five targets (F8), busy / no-answer handling (F9).

    Each target rings for its own ``ring_timeout``; 486/600/603 move on at once. ``whisper``
    plays to the operator after they answer, while the caller hears ringback; the talk clock
    starts when it ends. With ``accept_digit`` the operator must press it within
    ``accept_timeout`` after the whisper (a refusal counts as that operator's no-answer).
    ``on_busy`` / ``on_no_answer``: where to go at once when a target is busy / does not
    answer; None means "the next target". When every target has failed, the disposition is
    that of the last one and the flow goes on with the next step (or the matching label).

    After a bridged talk the call is over, unless ``continue_on_hangup`` (Asterisk ``Dial``
    option ``g``, "proceed with the dialplan when the called party hangs up"): when the
    *operator* hangs up, the caller is unbridged and kept, and the flow goes on at
    ``on_operator_hangup`` (None: the next step). A caller's hang-up still ends the call."""

    targets: tuple[DialTarget, ...]
    strategy: Strategy = Strategy.SEQUENTIAL
    rotation_key: str = ""  # whose round-robin pointer (the tracking number's id)
    whisper: tuple[str, ...] = ()
    accept_digit: str | None = None
    accept_prompt: tuple[str, ...] = ()
    accept_timeout: float = 5.0
    on_busy: Label | None = None
    on_no_answer: Label | None = None
    ringback: str | None = None  # prompt looped to an already-answered caller while ringing
    time_limit: float = 0.0  # 0: no limit on the talk (Twilio ``timeLimit``)
    continue_on_hangup: bool = False  # Asterisk Dial option g
    on_operator_hangup: Label | None = None  # with continue_on_hangup; None: the next step


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Hold the caller until the next free operator of ``targets`` answers (F10).

    Hold music loops; the position is announced when it changes and every ``announce_every``
    seconds (0: never periodically); an operator's answer pre-empts any announcement at once.
    ``max_wait`` and ``max_length`` bound the wait and the queue (0: no bound); with no
    operator available at all the call overflows at once. Operators get ``wrap_up`` seconds
    after a call before the queue offers them the next one."""

    name: str
    targets: tuple[DialTarget, ...]
    music: tuple[str, ...] = ("hold-music",)
    announce_position: bool = True
    position_prompts: tuple[str, ...] = ("queue-position",)  # then "digit-N" per digit
    periodic_prompts: tuple[str, ...] = ()  # before the position, every ``announce_every``
    announce_every: float = 30.0
    max_wait: float = 300.0
    max_length: int = 0
    wrap_up: float = 0.0
    whisper: tuple[str, ...] = ()
    on_overflow: Label | None = None  # None: the next step
    early_media: bool = False
    overflow_when_no_operator: bool = True


@dataclass(frozen=True, slots=True)
class Voicemail:
    """Take a message (F11, Twilio ``<Record>``): greeting, beep, then record the caller's
    channel (mono) until ``max_length``, ``finish_on_key`` or ``silence_timeout`` (0: off).
    A recording shorter than ``min_length`` (a hang-up at the beep) is no message."""

    mailbox: str
    greeting: tuple[str, ...] = ("voicemail-greeting",)
    beep: bool = True
    max_length: float = 120.0
    min_length: float = 1.0
    silence_timeout: float = 5.0
    finish_on_key: str = "#"
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class Branch:
    """Test a condition and go to ``if_true`` or ``if_false`` (None: the next step)."""

    test: Condition
    if_true: Label | None
    if_false: Label | None


@dataclass(frozen=True, slots=True)
class Classify:
    """Set the disposition the call ends with unless it ends better (answered, voicemail)."""

    disposition: Disposition
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Goto:
    label: Label


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call. A caller never answered gets ``code`` (480 Temporarily Unavailable);
    with ``relay_attempt`` it gets the last forwarding attempt's failure instead, mapped as a
    proxy would relay it (486 stays 486, 483 stays 483, a ring timeout is 480, 5xx is 502;
    see :func:`~mediasrv.calls.steps.basic.relayed_failure`), so that a carrier can act on it."""

    code: int = 480
    reason: str = "flow-ended"
    relay_attempt: bool = False


Step = (
    Reject | Answer | Play | Menu | Dial | Enqueue | Voicemail | Branch | Classify | Goto | Hangup
)
STEP_TYPES: tuple[type, ...] = (
    Reject,
    Answer,
    Play,
    Menu,
    Dial,
    Enqueue,
    Voicemail,
    Branch,
    Classify,
    Goto,
    Hangup,
)
TERMINAL = (Reject, Voicemail, Hangup)  # nothing runs after these


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The compiled flow of one tracking number at one configuration version.

    Build it with :func:`build_plan` (which validates); steps are addressed by index, labels
    map to indices. ``after(step)`` is the step that follows ``step`` (None at the end)."""

    number: str
    version: int
    steps: tuple[Step, ...]
    labels: Mapping[Label, int]
    medium: str = ""
    campaign: str = ""
    business: str = ""
    prompt_files: Mapping[str, str] = field(default_factory=dict)  # prompt name -> WAV file
    record: RecordMode = RecordMode.BOTH  # F12: the call recording once an operator is bridged
    _index: Mapping[int, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def entry(self) -> Step | None:
        return self.steps[0] if self.steps else None

    def at(self, label: Label | None, after: Step | None = None) -> Step | None:
        """The step at ``label``; None label: the step after ``after`` (the fall-through)."""
        if label is None:
            return self.after(after) if after is not None else None
        return self.steps[self.labels[label]]

    def after(self, step: Step) -> Step | None:
        i = self.index_of(step) + 1
        return self.steps[i] if i < len(self.steps) else None

    def index_of(self, step: Step) -> int:
        return self._index[id(step)]

    def label_of(self, step: Step) -> str:
        """The label at this step's index, or its index as ``#n``."""
        i = self.index_of(step)
        for name, at in self.labels.items():
            if at == i:
                return name
        return f"#{i}"


def build_plan(
    number: str,
    version: int,
    steps: Sequence[Step],
    labels: Mapping[Label, int],
    *,
    medium: str = "",
    campaign: str = "",
    business: str = "",
    prompt_files: Mapping[str, str] | None = None,
    record: RecordMode = RecordMode.BOTH,
) -> Plan:
    """Validate and freeze a plan (raises :class:`PlanError`)."""
    frozen = tuple(steps)
    plan = Plan(
        number=number,
        version=version,
        steps=frozen,
        labels=MappingProxyType(dict(labels)),
        medium=medium,
        campaign=campaign,
        business=business,
        prompt_files=MappingProxyType(dict(prompt_files or {})),
        record=record,
        _index=MappingProxyType({id(s): i for i, s in enumerate(frozen)}),
    )
    validate(plan)
    return plan


class PlanBuilder:
    """Append steps and name positions: ``b.label("menu"); b.add(Menu(...))``."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.labels: dict[Label, int] = {}

    def label(self, name: Label) -> None:
        if name in self.labels:
            raise PlanError(f"label {name!r} defined twice")
        self.labels[name] = len(self.steps)

    def add(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def build(
        self,
        number: str,
        version: int,
        *,
        medium: str = "",
        campaign: str = "",
        business: str = "",
        prompt_files: Mapping[str, str] | None = None,
        record: RecordMode = RecordMode.BOTH,
    ) -> Plan:
        return build_plan(
            number,
            version,
            self.steps,
            self.labels,
            medium=medium,
            campaign=campaign,
            business=business,
            prompt_files=prompt_files,
            record=record,
        )


# -- validation -------------------------------------------------------------------------------


def _where(plan: Plan, i: int) -> str:
    names = [name for name, at in plan.labels.items() if at == i]
    step = plan.steps[i] if i < len(plan.steps) else None
    kind = type(step).__name__ if step is not None else "end"
    return f"step {i} ({kind}{', ' + names[0] if names else ''})"


def jumps_of(step: Step) -> Iterator[Label]:
    """Every label a step may jump to."""
    if isinstance(step, Goto):
        yield step.label
    elif isinstance(step, Branch):
        yield from (x for x in (step.if_true, step.if_false) if x is not None)
    elif isinstance(step, Menu):
        yield from (c.goto for c in step.choices)
        yield from (x for x in (step.on_no_input, step.on_invalid) if x is not None)
    elif isinstance(step, Dial):
        jumps = (step.on_busy, step.on_no_answer, step.on_operator_hangup)
        yield from (x for x in jumps if x is not None)
    elif isinstance(step, Enqueue):
        if step.on_overflow is not None:
            yield step.on_overflow


def falls_through(step: Step) -> bool:
    """Whether the step may continue with the one after it."""
    if isinstance(step, TERMINAL) or isinstance(step, Goto):
        return False
    if isinstance(step, Branch):
        return step.if_true is None or step.if_false is None
    if isinstance(step, Menu):
        return step.on_no_input is None or step.on_invalid is None
    if isinstance(step, Enqueue):
        return step.on_overflow is None
    return True


def successors(plan: Plan, i: int) -> list[int]:
    step = plan.steps[i]
    out = [plan.labels[label] for label in jumps_of(step)]
    if falls_through(step) and i + 1 < len(plan.steps):
        out.append(i + 1)
    return out


def validate(plan: Plan) -> None:
    if not plan.steps:
        raise PlanError("a plan needs at least one step")
    for name, at in plan.labels.items():
        if not 0 <= at < len(plan.steps):
            raise PlanError(f"label {name!r} points past the last step")
    for i, step in enumerate(plan.steps):
        where = _where(plan, i)
        if not isinstance(step, STEP_TYPES):
            raise PlanError(f"{type(step).__name__} is not a step", where)
        for label in jumps_of(step):
            if label not in plan.labels:
                raise PlanError(f"label {label!r} is not defined", where)
        _validate_step(step, where)
    _validate_reachable(plan)
    _validate_waits(plan)


def _validate_reachable(plan: Plan) -> None:
    seen = {0}
    todo = [0]
    while todo:
        for j in successors(plan, todo.pop()):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    for i in range(len(plan.steps)):
        if i not in seen:
            raise PlanError("no path reaches this step", _where(plan, i))


# Steps that run without waiting for the caller, the operator or the clock.
_INSTANT = (Goto, Branch, Classify)


def _validate_waits(plan: Plan) -> None:
    """A cycle made only of instant steps would spin forever without an await."""
    for start, step in enumerate(plan.steps):
        if not isinstance(step, _INSTANT):
            continue
        stack, seen = [start], {start}
        while stack:
            for j in successors(plan, stack.pop()):
                if j == start:
                    raise PlanError("a loop of jumps never waits for anything", _where(plan, j))
                if j not in seen and isinstance(plan.steps[j], _INSTANT):
                    seen.add(j)
                    stack.append(j)


def _positive(value: float, what: str, where: str) -> None:
    if not value > 0:
        raise PlanError(f"{what} must be > 0 (got {value})", where)


def _validate_targets(targets: tuple[DialTarget, ...], where: str) -> None:
    if not targets:
        raise PlanError("needs at least one target", where)
    if len(targets) > MAX_TARGETS:
        raise PlanError(f"at most {MAX_TARGETS} targets (got {len(targets)})", where)
    for t in targets:
        if not t.address:
            raise PlanError(f"target {t.name or t.operator!r} has no address", where)
        _positive(t.ring_timeout, f"ring timeout of {t.address}", where)
        if (t.kind is TargetKind.GROUP) != bool(t.members):
            raise PlanError(f"target {t.address!r}: a group (and only a group) has members", where)
        for m in t.members:
            if m.kind is TargetKind.GROUP or not m.address:
                raise PlanError(f"group {t.address!r}: bad member {m.address!r}", where)


def _validate_step(step: Step, where: str) -> None:
    if isinstance(step, Reject):
        if not 400 <= step.code <= 699:
            raise PlanError(f"reject code must be 4xx-6xx (got {step.code})", where)
    elif isinstance(step, Play):
        if not step.prompts:
            raise PlanError("nothing to play", where)
        if step.loop < 1:
            raise PlanError("loop must be >= 1", where)
    elif isinstance(step, Menu):
        _validate_menu(step, where)
    elif isinstance(step, Dial):
        _validate_targets(step.targets, where)
        if step.accept_digit is not None and step.accept_digit not in DTMF_KEYS:
            raise PlanError(f"accept digit {step.accept_digit!r} is not a DTMF key", where)
        if step.accept_digit is not None:
            _positive(step.accept_timeout, "accept timeout", where)
        if step.on_operator_hangup is not None and not step.continue_on_hangup:
            raise PlanError("on_operator_hangup needs continue_on_hangup", where)
    elif isinstance(step, Enqueue):
        _validate_targets(step.targets, where)
        if not step.music:
            raise PlanError("a queue needs hold music", where)
        if step.max_wait < 0:
            raise PlanError("max wait must be >= 0", where)
        if step.max_length < 0 or step.announce_every < 0 or step.wrap_up < 0:
            raise PlanError("max length, announce interval and wrap-up must be >= 0", where)
    elif isinstance(step, Voicemail):
        _positive(step.max_length, "max length", where)
        if not 0 <= step.min_length < step.max_length:
            raise PlanError("min length must be >= 0 and below max length", where)
        if step.finish_on_key and step.finish_on_key not in DTMF_KEYS:
            raise PlanError(f"finish key {step.finish_on_key!r} is not a DTMF key", where)
    elif isinstance(step, Hangup):
        if not 400 <= step.code <= 699:
            raise PlanError(f"hang-up code must be 4xx-6xx (got {step.code})", where)


def _validate_menu(menu: Menu, where: str) -> None:
    if not menu.prompt:
        raise PlanError("a menu needs a prompt", where)
    if not menu.choices:
        raise PlanError("a menu needs at least one choice", where)
    for value, what in (
        (menu.first_digit_timeout, "first-digit timeout"),
        (menu.inter_digit_timeout, "inter-digit timeout"),
        (menu.total_timeout, "total timeout"),
    ):
        _positive(value, what, where)
    if menu.max_digits < 1:
        raise PlanError("max digits must be >= 1", where)
    if menu.max_no_input < 1 or menu.max_invalid < 1:
        raise PlanError("no-input and invalid tries must be >= 1", where)
    bad = set(menu.valid_digits) - DTMF_KEYS
    if bad:
        raise PlanError(f"valid digits hold non-DTMF keys {''.join(sorted(bad))!r}", where)
    if menu.finish_on_key and menu.finish_on_key not in DTMF_KEYS:
        raise PlanError(f"finish key {menu.finish_on_key!r} is not a DTMF key", where)
    seen: set[str] = set()
    for choice in menu.choices:
        if not choice.digits:
            raise PlanError("a menu choice needs digits", where)
        if choice.digits in seen:
            raise PlanError(f"choice {choice.digits!r} appears twice", where)
        seen.add(choice.digits)
        if len(choice.digits) > menu.max_digits:
            raise PlanError(f"choice {choice.digits!r} is longer than max digits", where)
        outside = set(choice.digits) - set(menu.valid_digits)
        if outside:
            raise PlanError(f"choice {choice.digits!r} uses keys outside the valid set", where)
        if menu.finish_on_key and menu.finish_on_key in choice.digits:
            raise PlanError(f"choice {choice.digits!r} contains the finish key", where)
