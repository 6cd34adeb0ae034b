"""Business configuration as data (issue 10 §1, §2; SPEC F4-F15).

One :class:`Business` (a tenant) owns its operators, schedules, blocklist, prompts and tracking
numbers; each :class:`TrackingNumber` carries its :class:`FlowConfig` (blocking, hours,
guidance, IVR menus, forwarding, busy / no-answer actions, queue, voicemail). Everything is a
frozen dataclass of plain values (str, float, int, enums, tuples, dates and times), so a
configuration version can be cached, compared and shared between calls without copying.

Conventions used throughout:

- Durations are seconds (``float``); ``0`` means "off" where a field says so.
- A *playlist* is a ``tuple[PromptRef, ...]`` of prompt names (``Business.prompts`` maps names
  to files); an empty tuple plays nothing.
- Numbers are E.164 (``"+81312345678"``); the business file accepts national forms too and
  normalises them before they reach this model.
- Names (operators, groups, schedules, menus, forwardings, prompts) are the references between
  parts; :mod:`mediasrv.business_file` validates that every reference resolves.

This module is data only: schedules are evaluated by :mod:`mediasrv.calls.schedule`, callers
matched by :mod:`mediasrv.calls.blocking`, and the flow compiler (:mod:`mediasrv.calls.compile`)
turns a :class:`FlowConfig` into steps. Fields are only ever added, never renamed.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from mediasrv.media.api import RecordMode

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "DEFAULT_TIME_ZONE",
    "MAX_FORWARD_TARGETS",
    "Action",
    "ActionKind",
    "BlockRule",
    "BlockScope",
    "Blocking",
    "Blocklist",
    "Business",
    "BusinessLookup",
    "DateOverride",
    "FlowConfig",
    "ForwardStrategy",
    "Forwarding",
    "Guidance",
    "HolidaySource",
    "Hours",
    "MatchKind",
    "Menu",
    "MenuChoice",
    "NumberVersion",
    "Operator",
    "OperatorKind",
    "Prompt",
    "PromptRef",
    "QueueConfig",
    "RecordMode",
    "RotationStore",
    "Schedule",
    "Target",
    "TimeSpan",
    "TrackingNumber",
    "VoicemailConfig",
    "Weekday",
    "WeeklyHours",
    "WithheldCategory",
]

DEFAULT_TIME_ZONE = "Asia/Tokyo"  # SPEC F7: the default business time zone
DEFAULT_DUPLICATE_WINDOW = 86400.0  # SPEC F15: same caller, same business, within a day
MAX_FORWARD_TARGETS = 5  # SPEC F8: up to 5 destinations

PromptRef = str  # the name of a Prompt in Business.prompts

_N = TypeVar("_N", bound="_Named")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def _by_name(items: Iterable[_N], name: str) -> _N | None:
    for item in items:
        if item.name == name:
            return item
    return None


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True, slots=True)
class Prompt:
    """A named audio prompt: ``file`` is a WAV path, relative to the prompts directory unless
    absolute."""

    name: str
    file: str
    text: str = ""  # what it says (documentation, dry runs, TTS generation)


# --------------------------------------------------------------------------- operators


class OperatorKind(enum.Enum):
    SIP_URI = "sip"  # target is a SIP URI: sip:op1@10.0.0.5:5060;transport=tcp
    PHONE = "phone"  # target is an E.164 number dialled through an outbound trunk
    SOFTPHONE = "softphone"  # target is the user of a softphone that REGISTERs with us


@dataclass(frozen=True, slots=True)
class Operator:
    """Someone who answers calls (SPEC F8, F10)."""

    name: str
    kind: OperatorKind
    target: str  # SIP URI | E.164 number | registered user name, per ``kind``
    trunk: str = ""  # the outbound trunk's name ([[trunks]] in the static config): required
    # for PHONE; for SIP_URI optional (its credentials answer the operator side's 401/407)
    groups: tuple[str, ...] = ()  # e.g. ("sales", "support"); queues and targets name groups
    wrap_up: float = 0.0  # seconds after a call before the queue offers the next one (F10)
    display_name: str = ""
    # A shared line (a shop's PBX, a call centre's hunt number), not one person: it takes any
    # number of calls at once, so the operator board never holds it busy (issue 10 F8).
    shared: bool = False


# --------------------------------------------------------------------------- schedules


class Weekday(enum.IntEnum):
    """ISO weekday numbering minus one, as :meth:`datetime.date.weekday` returns it."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """Local wall-clock time from ``start`` (inclusive) to ``end`` (exclusive).

    ``end <= start`` crosses midnight: ``22:00-02:00`` is open until 02:00 the next day, and
    ``00:00-00:00`` is the whole day. A span belongs to the day it starts on: the spill-over
    after midnight follows that day's rule, whatever rule the next date has.
    """

    start: dt.time
    end: dt.time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """Open ``spans`` on each of ``days``, minus ``breaks`` (lunch breaks) inside them."""

    days: tuple[Weekday, ...]
    spans: tuple[TimeSpan, ...]
    breaks: tuple[TimeSpan, ...] = ()


class HolidaySource(enum.Enum):
    NONE = "none"  # no public holidays
    JAPAN = "jp"  # Japanese public holidays (jpholiday, pinned offline package)


@dataclass(frozen=True, slots=True)
class DateOverride:
    """Dates ``first``..``last`` (inclusive) follow ``spans`` instead of the week and holidays
    (e.g. 年末年始 12-29..01-03 closed). Empty ``spans``: closed all day."""

    first: dt.date
    last: dt.date
    spans: tuple[TimeSpan, ...] = ()
    breaks: tuple[TimeSpan, ...] = ()
    label: str = ""  # e.g. "年末年始"
    yearly: bool = False  # every year: only month and day count; 12-29..01-03 wraps the year

    def covers(self, day: dt.date) -> bool:
        if not self.yearly:
            return self.first <= day <= self.last
        md, lo, hi = (
            (day.month, day.day),
            (self.first.month, self.first.day),
            (
                self.last.month,
                self.last.day,
            ),
        )
        return lo <= md <= hi if lo <= hi else md >= lo or md <= hi


@dataclass(frozen=True, slots=True)
class Schedule:
    """Business hours (SPEC F7). Precedence: a date override wins over a public holiday, which
    wins over the weekly hours. ``time_zone`` is the business's (an IANA name)."""

    name: str
    weekly: tuple[WeeklyHours, ...] = ()
    holidays: HolidaySource = HolidaySource.NONE
    holiday_spans: tuple[TimeSpan, ...] = ()  # hours on a public holiday; empty: closed
    overrides: tuple[DateOverride, ...] = ()
    time_zone: str = DEFAULT_TIME_ZONE


# --------------------------------------------------------------------------- blocklists


class BlockScope(enum.Enum):
    GLOBAL = "global"  # the server's blocklist, every business
    BUSINESS = "business"  # one business, all its numbers
    NUMBER = "number"  # one tracking number


class MatchKind(enum.Enum):
    EXACT = "exact"  # value is an E.164 number
    PREFIX = "prefix"  # value is the start of an E.164 number ("+8150", "+1")
    WITHHELD = "withheld"  # value is a WithheldCategory value


class WithheldCategory(enum.Enum):
    """Why a caller has no number (the Japanese carriers' 非通知 reasons)."""

    ANONYMOUS = "anonymous"  # the caller withheld it (非通知設定)
    PAYPHONE = "payphone"  # 公衆電話
    UNAVAILABLE = "unavailable"  # 表示圏外: the network could not deliver it


@dataclass(frozen=True, slots=True)
class BlockRule:
    kind: MatchKind
    value: str  # E.164 number | E.164 prefix | WithheldCategory value
    note: str = ""


@dataclass(frozen=True, slots=True)
class Blocklist:
    rules: tuple[BlockRule, ...] = ()


# --------------------------------------------------------------------------- flow config


class ActionKind(enum.Enum):
    """What happens next: closed hours, busy / no-answer, menu choices, queue overflow."""

    FORWARD = "forward"  # ring a Forwarding (``Action.forward``; "" = the number's main one)
    NEXT_TARGET = "next_target"  # busy / no-answer only: go on to the next forwarding target
    GUIDANCE = "guidance"  # play ``Action.prompts`` to the caller, then hang up
    MENU = "menu"  # run the IVR menu ``Action.menu``
    VOICEMAIL = "voicemail"  # the number's voicemail
    QUEUE = "queue"  # the number's queue
    HANGUP = "hangup"  # hang up (after ``prompts`` if any)
    REJECT = "reject"  # before answer: refuse with ``Action.sip_code`` (after early-media prompts)


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    forward: str = ""  # FORWARD: a Forwarding's name; "" = FlowConfig.forwarding
    menu: str = ""  # MENU: a Menu's name
    prompts: tuple[PromptRef, ...] = ()  # GUIDANCE / HANGUP / REJECT: played first
    sip_code: int = 480  # REJECT: the final response (480 Temporarily Unavailable)


@dataclass(frozen=True, slots=True)
class Blocking:
    """How a blocked caller is refused (SPEC F6): ``sip_code`` at once, or ``prompts`` first
    (as early media, 183) then ``sip_code``."""

    sip_code: int = 603  # 603 Decline (RFC 3261 §21.6.2)
    prompts: tuple[PromptRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Hours:
    """Business hours check (SPEC F7): ``schedule`` "" = always open."""

    schedule: str = ""
    closed: Action = field(default_factory=lambda: Action(ActionKind.VOICEMAIL))


@dataclass(frozen=True, slots=True)
class Guidance:
    """Prompts before ringing (SPEC F4)."""

    prompts: tuple[PromptRef, ...] = ()
    early_media: bool = False  # play them in a 183 before answering (caller not billed yet)
    consent: tuple[PromptRef, ...] = ()  # recording-consent prompt: once, before first bridge


@dataclass(frozen=True, slots=True)
class MenuChoice:
    digits: str  # what the caller keys: "1", "21", "*"
    action: Action


@dataclass(frozen=True, slots=True)
class Menu:
    """An IVR menu (SPEC F5; vocabulary of FreeSWITCH ``play_and_get_digits`` and Twilio
    ``<Gather>``)."""

    name: str
    prompts: tuple[PromptRef, ...]
    choices: tuple[MenuChoice, ...]
    first_digit_timeout: float = 5.0  # after the prompt ends, wait this long for a key
    inter_digit_timeout: float = 2.0  # between keys of a multi-digit choice
    total_timeout: float = 30.0  # for the whole collection of one attempt
    max_digits: int = 1
    valid_digits: str = "0123456789*#"  # keys outside this set are invalid input
    terminator: str = "#"  # ends a multi-digit entry early ("" = none)
    retries: int = 2  # further attempts after the first, per failure kind
    no_input_prompts: tuple[PromptRef, ...] = ()  # played when nothing is keyed
    invalid_prompts: tuple[PromptRef, ...] = ()  # played when the entry matches no choice
    barge_in: bool = True  # a key stops the prompt
    on_failure: Action = field(default_factory=lambda: Action(ActionKind.HANGUP))

    def choice_for(self, digits: str) -> MenuChoice | None:
        for choice in self.choices:
            if choice.digits == digits:
                return choice
        return None


class ForwardStrategy(enum.Enum):
    SEQUENTIAL = "sequential"  # always start with the first target
    ROUND_ROBIN = "round_robin"  # start one further each call (pointer persisted)


@dataclass(frozen=True, slots=True)
class Target:
    """One forwarding destination: an operator by name, or every operator of a group (one
    target; the first idle member rings)."""

    operator: str = ""
    group: str = ""
    ring_timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class Forwarding:
    """Forwarding to operators (SPEC F8, F9)."""

    name: str
    targets: tuple[Target, ...]
    strategy: ForwardStrategy = ForwardStrategy.SEQUENTIAL
    whisper: tuple[PromptRef, ...] = ()  # to the operator before bridging (medium, campaign)
    accept_digit: str = ""  # "1": the operator must press it to take the call ("" = off)
    accept_prompts: tuple[PromptRef, ...] = ()  # "press 1 to accept"
    accept_timeout: float = 5.0
    on_busy: Action = field(default_factory=lambda: Action(ActionKind.NEXT_TARGET))
    on_no_answer: Action = field(default_factory=lambda: Action(ActionKind.NEXT_TARGET))
    on_exhausted: Action = field(default_factory=lambda: Action(ActionKind.VOICEMAIL))
    # After a bridged talk the operator hung up: "hangup" ends the call (the default); any
    # other action keeps the caller and goes on (Asterisk Dial option g).
    on_operator_hangup: Action = field(default_factory=lambda: Action(ActionKind.HANGUP))
    ringback: PromptRef = ""  # looped to an answered caller while a target rings ("" = tone)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Call queue (SPEC F10; vocabulary of Asterisk ``Queue``)."""

    group: str = ""  # members: an operator group; "" = the main forwarding's operators
    music: tuple[PromptRef, ...] = ()  # looped while waiting
    announce_position: bool = True  # when the position changes
    position_prompts: tuple[PromptRef, ...] = ()  # "you are caller number" (then the digit)
    periodic_interval: float = 30.0  # seconds between announcements; 0 = off
    periodic_prompts: tuple[PromptRef, ...] = ()
    max_wait: float = 300.0
    max_length: int = 10  # callers waiting; one more overflows at once
    wrap_up: float = 0.0  # after an operator's call; an operator's own wrap_up wins if larger
    overflow_when_no_operator: bool = True  # overflow at once if no member can ever answer
    overflow: Action = field(default_factory=lambda: Action(ActionKind.VOICEMAIL))


@dataclass(frozen=True, slots=True)
class VoicemailConfig:
    """Voicemail (SPEC F11)."""

    greeting: tuple[PromptRef, ...] = ()
    beep: bool = True
    max_seconds: float = 120.0
    min_seconds: float = 1.0  # shorter (a hang-up at the beep) is no message
    silence_seconds: float = 5.0  # end after this much silence; 0 = off
    end_on_hash: bool = True  # '#' ends the message


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """A tracking number's flow, in order: blocking, hours, guidance, then ``start`` (forward
    by default); the rest are the parts actions refer to."""

    blocking: Blocking = field(default_factory=Blocking)
    hours: Hours = field(default_factory=Hours)
    guidance: Guidance = field(default_factory=Guidance)
    start: Action = field(default_factory=lambda: Action(ActionKind.FORWARD))
    forwarding: Forwarding | None = None  # the main forwarding (Action FORWARD with "")
    forwards: tuple[Forwarding, ...] = ()  # further named forwardings
    menus: tuple[Menu, ...] = ()
    queue: QueueConfig | None = None
    voicemail: VoicemailConfig | None = None

    def menu(self, name: str) -> Menu | None:
        return _by_name(self.menus, name)

    def forwarding_named(self, name: str) -> Forwarding | None:
        """``""`` is the main forwarding."""
        if not name or (self.forwarding is not None and self.forwarding.name == name):
            return self.forwarding
        return _by_name(self.forwards, name)


# --------------------------------------------------------------------------- numbers, business


@dataclass(frozen=True, slots=True)
class TrackingNumber:
    """An advertised number (SPEC F13-F15): one medium / campaign of one business."""

    number: str  # E.164
    medium: str = ""  # e.g. "newspaper", "listing-site"
    campaign: str = ""
    labels: tuple[str, ...] = ()
    record: RecordMode = RecordMode.BOTH  # F12
    valid_call_seconds: float = 60.0  # F14: talk seconds (from the bridge) for a valid call
    blocklist: Blocklist = field(default_factory=Blocklist)
    flow: FlowConfig = field(default_factory=FlowConfig)
    # issue 12 §5: a number of the business's callback pool: shown in emails instead of the
    # caller's number, leased to that caller; a call to it is forwarded to the caller.
    callback: bool = False


DEFAULT_CALLBACK_LEASE = 7 * 86400.0  # seconds a callback number stays the caller's


@dataclass(frozen=True, slots=True)
class CallbackConfig:
    """Callback-email tracking (SPEC F22, 折り返しメールトラッキング)."""

    trunk: str = ""  # the outbound trunk ([[trunks]] of the server) that dials the caller
    lease: float = DEFAULT_CALLBACK_LEASE  # seconds from the email that showed the number


@dataclass(frozen=True, slots=True)
class Business:
    """A tenant (issue 10 §1)."""

    slug: str  # stable id: lower-case letters, digits, '-', '_'
    name: str = ""
    time_zone: str = DEFAULT_TIME_ZONE  # IANA name; Asia/Tokyo has no DST
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW  # F15, seconds
    operators: tuple[Operator, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    blocklist: Blocklist = field(default_factory=Blocklist)
    prompts: tuple[Prompt, ...] = ()
    numbers: tuple[TrackingNumber, ...] = ()
    callback: CallbackConfig = field(default_factory=CallbackConfig)

    @property
    def callback_pool(self) -> tuple[str, ...]:
        """The callback numbers (E.164), in file order."""
        return tuple(n.number for n in self.numbers if n.callback)

    def operator(self, name: str) -> Operator | None:
        return _by_name(self.operators, name)

    def schedule(self, name: str) -> Schedule | None:
        return _by_name(self.schedules, name)

    def prompt(self, name: str) -> Prompt | None:
        return _by_name(self.prompts, name)

    def number(self, e164: str) -> TrackingNumber | None:
        for num in self.numbers:
            if num.number == e164:
                return num
        return None

    def group_members(self, group: str) -> tuple[Operator, ...]:
        return tuple(op for op in self.operators if group in op.groups)


# --------------------------------------------------------------------------- versions, protocols


@dataclass(frozen=True, slots=True)
class NumberVersion:
    """What a call to one tracking number runs with, fixed for the whole call: the business
    configuration ``version`` (a new one per applied change) and its parts."""

    version: int
    business: Business
    number: TrackingNumber
    global_blocklist: Blocklist = field(default_factory=Blocklist)


class BusinessLookup(Protocol):
    """Synchronous, in-memory lookup of a dialled number's current configuration version."""

    def version_for(self, number: str) -> NumberVersion | None:
        """``number``: E.164 (or the national form); None: not a tracking number."""
        ...


class RotationStore(Protocol):
    """Round-robin pointers that survive a restart (SPEC F8)."""

    def next_rotation(self, number_id: str, n: int) -> int:
        """The start index in ``range(n)`` for this call; each call advances it by one.

        ``number_id`` is a stable key of one rotation: the tracking number's E.164, plus
        ``":" + forwarding name`` for a named forwarding. Synchronous (served from memory);
        the store persists the pointer behind it, so a restart resumes the rotation."""
        ...

    def peek_rotation(self, number_id: str, n: int) -> int:
        """What :meth:`next_rotation` would return, without advancing (dry runs)."""
        ...
