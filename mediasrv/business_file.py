"""The declarative business file (issue 10 §2): one TOML file per business.

:func:`load_business_file` parses and validates it into a
:class:`~mediasrv.calls.business.Business`; every problem raises a
:class:`~mediasrv.config.ConfigError` naming the file, the LINE and the key and saying what is
wrong (an unknown prompt, a menu choice pointing nowhere, a sixth forwarding target,
overlapping spans, a bad time zone, a bad number). :func:`dump_business` writes a business
back as an equivalent file: ``load(dump(b)) == b``. ``conf/business.example.toml`` uses every
key and documents it.

Actions (what happens when closed, on busy / no-answer, for a menu choice, on overflow) are
written as a string, ``"voicemail"``, ``"queue"``, ``"hangup"``, ``"next_target"``,
``"forward"`` (the main forwarding), ``"forward:NAME"``, ``"menu:NAME"``, or as an inline
table when they carry prompts or a code: ``{ action = "guidance", prompts = ["closed"] }``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mediasrv.calls.business import (
    DEFAULT_CALLBACK_LEASE,
    DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_TIME_ZONE,
    MAX_FORWARD_TARGETS,
    Action,
    ActionKind,
    Blocking,
    Blocklist,
    BlockRule,
    Business,
    CallbackConfig,
    DateOverride,
    FlowConfig,
    Forwarding,
    ForwardStrategy,
    Guidance,
    HolidaySource,
    Hours,
    MatchKind,
    Menu,
    MenuChoice,
    Operator,
    OperatorKind,
    Prompt,
    QueueConfig,
    RecordMode,
    Schedule,
    Target,
    TimeSpan,
    TrackingNumber,
    VoicemailConfig,
    Weekday,
    WeeklyHours,
    WithheldCategory,
)
from mediasrv.config import (
    DEFAULT_COUNTRY_CODE,
    LocatedToml,
    TomlTable,
    _LineIndex,
    parse_sip_uri_host,
    read_located_toml,
    to_e164,
)

__all__ = [
    "check_trunks",
    "dump_blocklist",
    "dump_business",
    "load_blocklist_file",
    "load_business_data",
    "load_business_file",
    "load_business_text",
]

Path_ = tuple[str | int, ...]

_DTMF = "0123456789*#ABCD"
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_NAME_RE = re.compile(r"^[^\s:][^:]{0,127}$")  # names are referenced as "menu:NAME"
_SPAN_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MONTH_DAY_RE = re.compile(r"^(\d{2})-(\d{2})$")
_YEARLY_YEAR = 2000  # a leap year: "02-29" is a valid yearly date
_DAYS = {d.name.lower(): d for d in Weekday}
_PREFIX_RE = re.compile(r"^\+?[0-9]{1,15}$")
_SOFTPHONE_RE = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=-]{1,64}$")  # RFC 3261 §25.1 user chars
_MAX_SECONDS = 86400.0
_MIN_E164 = 8  # "+" and at least 7 digits (country code and a subscriber number)


# --------------------------------------------------------------------------- reading


class _T(TomlTable):
    """A business file table: the config tables' checks plus durations that may be 0."""

    def seconds(
        self, key: str, default: float, *, zero: bool = False, hi: float = _MAX_SECONDS
    ) -> float:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.err(key, f"expected a number of seconds, got {type(v).__name__}")
        if not (0 <= v if zero else 0 < v) or v > hi:
            low = "at least 0" if zero else "greater than 0"
            raise self.err(key, f"must be {low} and at most {hi:g} seconds, got {v}")
        return float(v)

    def sub(self, key: str, known: Iterable[str]) -> _T | None:
        if key not in self.data:
            return None
        return _T(self.ctx, (*self.path, key), self.data[key], known)

    def items(self, key: str, known: Iterable[str]) -> list[_T]:
        known = list(known)
        return [
            _T(self.ctx, (*self.path, key, i), d, known) for i, d in enumerate(self.tables(key))
        ]

    def require(self, key: str) -> None:
        if key not in self.data:
            raise self.ctx.error(self.path, f"missing key {key!r}")

    def prompts(self, key: str, known: frozenset[str]) -> tuple[str, ...]:
        refs = self.str_list(key, "prompt names")
        for i, ref in enumerate(refs):
            if ref not in known:
                raise self.ctx.error((*self.path, key, i), _unknown("prompt", ref, known))
        return tuple(refs)


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    listed = ", ".join(names) if names else "none defined"
    return f"unknown {what} {name!r} (known: {listed})"


def load_business_file(path: str | Path) -> Business:
    """Parse and validate a business file; raises :class:`ConfigError` (file:line: key: why)."""
    raw, ctx = read_located_toml(path)
    return _business(ctx, raw)


def load_business_text(text: str, source: str = "<text>") -> Business:
    raw, ctx = read_located_toml(source, text)
    return _business(ctx, raw)


def load_business_data(raw: dict[str, object], source: str = "<request>") -> Business:
    """Validate a business given as data (the JSON form of the REST API, issue 12): the same
    checks as a file; a problem raises :class:`ConfigError` naming the key (no line)."""
    return _business(LocatedToml(source, _LineIndex(""), set()), raw)


def load_blocklist_file(path: str | Path) -> Blocklist:
    """The server's global blocklist: a file with one ``[blocklist]`` table (numbers,
    prefixes, withheld), as in a business file."""
    raw, ctx = read_located_toml(path)
    top = _T(ctx, (), raw, ("blocklist",))
    return _blocklist(top.sub("blocklist", _BLOCKLIST))


def dump_blocklist(blocklist: Blocklist) -> str:
    w = _Writer()
    _write_blocklist(w, "[blocklist]", blocklist)
    return "\n".join(w.lines) + "\n" if w.lines else "[blocklist]\n"


def check_trunks(path: str | Path, business: Business, trunks: Iterable[str]) -> None:
    """Every operator's ``trunk`` names one of the server's ``[[trunks]]`` (checked when the
    server config is at hand, as ``mediasrv business apply -c`` has it)."""
    known = sorted(trunks)
    _, ctx = read_located_toml(path)
    for i, op in enumerate(business.operators):
        if op.trunk and op.trunk not in known:
            raise ctx.error(("operators", i, "trunk"), _unknown("trunk", op.trunk, known))
    trunk = business.callback.trunk
    if trunk and trunk not in known:
        raise ctx.error(("callback", "trunk"), _unknown("trunk", trunk, known))


_TOP = ("business", "prompts", "operators", "schedules", "blocklist", "numbers", "callback")
_CALLBACK = ("trunk", "lease")
_BUSINESS = ("slug", "name", "time_zone", "duplicate_window")


def _business(ctx: LocatedToml, raw: dict[str, object]) -> Business:
    top = _T(ctx, (), raw, _TOP)
    top.require("business")
    head = _T(ctx, ("business",), raw["business"], _BUSINESS)
    head.require("slug")
    slug = head.str_("slug", "")
    if not _SLUG_RE.match(slug):
        raise head.err("slug", f"{slug!r} is not a slug (lower-case letters, digits, '-', '_')")
    time_zone = head.str_("time_zone", DEFAULT_TIME_ZONE)
    _check_zone(head, time_zone)
    prompts = tuple(_prompt(t) for t in top.items("prompts", ("name", "file", "text")))
    _unique(ctx, ("prompts",), [p.name for p in prompts], "prompt")
    names = frozenset(p.name for p in prompts)
    operators = tuple(_operator(t) for t in top.items("operators", _OPERATOR))
    _unique(ctx, ("operators",), [o.name for o in operators], "operator")
    schedules = tuple(_schedule(t, time_zone) for t in top.items("schedules", _SCHEDULE))
    _unique(ctx, ("schedules",), [s.name for s in schedules], "schedule")
    refs = _Refs(names, operators, frozenset(s.name for s in schedules))
    blocklist = _blocklist(top.sub("blocklist", _BLOCKLIST))
    numbers = tuple(_number(t, refs) for t in top.items("numbers", _NUMBER))
    _unique(ctx, ("numbers",), [n.number for n in numbers], "number", key="number")
    callback = _callback(top, numbers)
    return Business(
        slug=slug,
        name=head.str_("name", ""),
        time_zone=time_zone,
        duplicate_window=head.seconds(
            "duplicate_window", DEFAULT_DUPLICATE_WINDOW, hi=366 * 86400.0
        ),
        operators=operators,
        schedules=schedules,
        blocklist=blocklist,
        prompts=prompts,
        numbers=numbers,
        callback=callback,
    )


def _callback(top: _T, numbers: Sequence[TrackingNumber]) -> CallbackConfig:
    """``[callback]`` (issue 12 §5): the trunk that dials callers back and the lease period;
    needed as soon as one number is ``callback = true``."""
    t = top.sub("callback", _CALLBACK)
    pool = [i for i, n in enumerate(numbers) if n.callback]
    if t is None:
        t = _T(top.ctx, ("callback",), {}, _CALLBACK)
    if pool and not t.has("trunk"):
        raise top.ctx.error(
            ("numbers", pool[0], "callback"),
            "a callback number needs [callback] trunk (the outbound trunk that dials the caller)",
        )
    return CallbackConfig(
        trunk=t.str_("trunk", ""),
        lease=t.seconds("lease", DEFAULT_CALLBACK_LEASE, hi=366 * 86400.0),
    )


def _check_zone(t: _T, name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise t.err(
            "time_zone", f"unknown time zone {name!r} (an IANA name like 'Asia/Tokyo')"
        ) from None


def _unique(
    ctx: LocatedToml, path: Path_, names: Sequence[str], what: str, key: str = "name"
) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ctx.error(
                (*path, i, key), f"duplicate {what} {name!r} (also {path[-1]}[{seen[name]}])"
            )
        seen[name] = i


def _name(t: _T) -> str:
    t.require("name")
    name = t.str_("name", "", allow_empty=False)
    if not _NAME_RE.match(name):
        raise t.err("name", f"{name!r}: a name may not contain ':' nor start with a space")
    return name


def _prompt(t: _T) -> Prompt:
    t.require("file")
    return Prompt(_name(t), t.str_("file", "", allow_empty=False), t.str_("text", ""))


_OPERATOR = (
    "name", "sip", "phone", "softphone", "trunk", "groups", "wrap_up", "display_name", "shared",
)  # fmt: skip


def _operator(t: _T) -> Operator:
    name = _name(t)
    given = [k for k in ("sip", "phone", "softphone") if t.has(k)]
    if len(given) != 1:
        raise t.ctx.error(
            t.path, "needs exactly one of 'sip' (a SIP URI), 'phone' (via a trunk), 'softphone'"
        )
    key = given[0]
    target = t.str_(key, "", allow_empty=False).strip()
    if key == "sip":
        try:
            parse_sip_uri_host(target)
        except ValueError as e:
            raise t.err(key, str(e)) from None
        kind = OperatorKind.SIP_URI
    elif key == "phone":
        target = _e164(t, key, target)
        if not t.has("trunk"):
            raise t.ctx.error(
                t.path, "a 'phone' operator needs 'trunk' (the outbound trunk's name)"
            )
        kind = OperatorKind.PHONE
    else:
        if not _SOFTPHONE_RE.match(target):
            raise t.err(key, f"{target!r} is not a SIP user name")
        kind = OperatorKind.SOFTPHONE
    shared = t.bool_("shared", False)
    if shared and kind is OperatorKind.SOFTPHONE:
        raise t.err("shared", "a softphone is one person's phone: 'shared' is for sip or phone")
    return Operator(
        name=name,
        kind=kind,
        target=target,
        trunk=t.str_("trunk", ""),
        groups=tuple(t.str_list("groups", "group names")),
        wrap_up=t.seconds("wrap_up", 0.0, zero=True, hi=3600.0),
        display_name=t.str_("display_name", ""),
        shared=shared,
    )


def _e164(t: _T, key: str | int, text: str, path: Path_ | None = None) -> str:
    e164 = to_e164(text)
    if e164 is None or len(e164) < _MIN_E164:  # to_e164 accepts "+81": too short to dial
        where = (*t.path, key) if path is None else path
        raise t.ctx.error(
            where,
            f"{text!r} is not a phone number (E.164 '+81312345678' or national '03-1234-5678')",
        )
    return e164


# --------------------------------------------------------------------------- schedules

_SCHEDULE = ("name", "holidays", "holiday_hours", "week", "overrides")
_WEEK = ("days", "hours", "breaks")
_OVERRIDE = ("from", "to", "hours", "breaks", "label")


def _span(t: _T, key: str, i: int, text: str) -> TimeSpan:
    m = _SPAN_RE.match(text)
    bad = f"{text!r} is not a time span like '09:00-18:00' (24:00 ends at midnight)"
    if not m:
        raise t.ctx.error((*t.path, key, i), bad)
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise t.ctx.error((*t.path, key, i), bad)
    start, end = dt.time(h1, m1), dt.time(0 if h2 == 24 else h2, m2)
    if start == end and not (h1 == 0 and m1 == 0):
        raise t.ctx.error((*t.path, key, i), f"{text!r} is empty (start equals end)")
    return TimeSpan(start, end)


def _spans(t: _T, key: str) -> tuple[TimeSpan, ...]:
    return tuple(_span(t, key, i, s) for i, s in enumerate(t.str_list(key, "'HH:MM-HH:MM' spans")))


def _minutes(span: TimeSpan, day: int) -> tuple[int, int]:
    """The span on a week's timeline in minutes (Monday 00:00 = 0), end after start."""
    start = day * 1440 + span.start.hour * 60 + span.start.minute
    end = day * 1440 + span.end.hour * 60 + span.end.minute
    return start, end + 1440 if span.crosses_midnight else end


def _overlaps(a: tuple[int, int], b: tuple[int, int], period: int) -> bool:
    for shift in (-period, 0, period):  # the week wraps: Sunday night into Monday
        if a[0] < b[1] + shift and b[0] + shift < a[1]:
            return True
    return False


def _check_overlaps(t: _T, week: Sequence[WeeklyHours]) -> None:
    placed: list[tuple[tuple[int, int], int, int]] = []  # (interval, week rule, span index)
    for w, rule in enumerate(week):
        for s, span in enumerate(rule.spans):
            for day in rule.days:
                mine = _minutes(span, int(day))
                for other, ow, os_ in placed:
                    if _overlaps(mine, other, 7 * 1440):
                        raise t.ctx.error(
                            (*t.path, "week", w, "hours", s),
                            f"{_fmt_span(span)} on {day.name.lower()} overlaps "
                            f"{_fmt_span(week[ow].spans[os_])} (week[{ow}].hours[{os_}])",
                        )
                placed.append((mine, w, s))


def _check_breaks(
    t: _T, key_path: Path_, spans: Sequence[TimeSpan], breaks: Sequence[TimeSpan]
) -> None:
    opened = [_minutes(sp, 0) for sp in spans]
    for b, brk in enumerate(breaks):
        start, end = _minutes(brk, 0)
        # a break after midnight may lie in the spill-over of a span that crossed it
        places = ((start, end), (start + 1440, end + 1440))
        if not any(s[0] <= a and z <= s[1] for s in opened for a, z in places):
            raise t.ctx.error(
                (*key_path, "breaks", b), f"break {_fmt_span(brk)} is not inside the open hours"
            )


def _days(t: _T) -> tuple[Weekday, ...]:
    t.require("days")
    names = t.str_list("days", "weekday names (mon .. sun)")
    days: list[Weekday] = []
    for i, n in enumerate(names):
        day = _DAYS.get(n.strip().lower()[:3])
        if day is None:
            raise t.ctx.error((*t.path, "days", i), f"{n!r} is not a weekday (mon, tue, ... sun)")
        if day in days:
            raise t.ctx.error((*t.path, "days", i), f"{n!r} is listed twice")
        days.append(day)
    if not days:
        raise t.err("days", "must name at least one weekday")
    return tuple(days)


def _weekly(t: _T) -> WeeklyHours:
    days = _days(t)
    t.require("hours")
    spans, breaks = _spans(t, "hours"), _spans(t, "breaks")
    _check_breaks(t, t.path, spans, breaks)
    return WeeklyHours(days, spans, breaks)


def _date(t: _T, key: str) -> tuple[dt.date, bool]:
    t.require(key)
    v = t.data[key]
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v, False
    if isinstance(v, str):
        m = _MONTH_DAY_RE.match(v.strip())
        if m:
            try:
                return dt.date(_YEARLY_YEAR, int(m[1]), int(m[2])), True
            except ValueError:
                pass
    raise t.err(key, f"expected a date (2026-12-29) or a yearly 'MM-DD' ('12-29'), got {v!r}")


def _override(t: _T) -> DateOverride:
    first, yearly = _date(t, "from")
    last, yearly_to = _date(t, "to") if t.has("to") else (first, yearly)
    if yearly != yearly_to:
        raise t.err("to", "'from' and 'to' must both be dates or both be yearly 'MM-DD'")
    if not yearly and last < first:
        raise t.err("to", f"{last} is before 'from' ({first})")
    spans, breaks = _spans(t, "hours"), _spans(t, "breaks")
    _check_breaks(t, t.path, spans, breaks)
    return DateOverride(first, last, spans, breaks, t.str_("label", ""), yearly)


def _schedule(t: _T, time_zone: str) -> Schedule:
    name = _name(t)
    week = tuple(_weekly(w) for w in t.items("week", _WEEK))
    _check_overlaps(t, week)
    return Schedule(
        name=name,
        weekly=week,
        holidays=t.enum_("holidays", HolidaySource, HolidaySource.NONE),
        holiday_spans=_spans(t, "holiday_hours"),
        overrides=tuple(_override(o) for o in t.items("overrides", _OVERRIDE)),
        time_zone=time_zone,
    )


# --------------------------------------------------------------------------- blocklists

_BLOCKLIST = ("numbers", "prefixes", "withheld")


def _blocklist(t: _T | None) -> Blocklist:
    if t is None:
        return Blocklist()
    rules: list[BlockRule] = []
    for i, text in enumerate(t.str_list("numbers", "phone numbers")):
        rules.append(BlockRule(MatchKind.EXACT, _e164(t, "numbers", text, (*t.path, "numbers", i))))
    for i, text in enumerate(t.str_list("prefixes", "number prefixes")):
        rules.append(BlockRule(MatchKind.PREFIX, _prefix(t, i, text)))
    for i, text in enumerate(t.str_list("withheld", "withheld categories")):
        try:
            category = WithheldCategory(text.strip().lower())
        except ValueError:
            choices = ", ".join(c.value for c in WithheldCategory)
            raise t.ctx.error(
                (*t.path, "withheld", i), f"unknown category {text!r} ({choices})"
            ) from None
        rules.append(BlockRule(MatchKind.WITHHELD, category.value))
    return Blocklist(tuple(rules))


def _prefix(t: _T, i: int, text: str) -> str:
    n = re.sub(r"[\s\-().]", "", text)
    if not _PREFIX_RE.match(n) or n in ("+", "0"):
        raise t.ctx.error(
            (*t.path, "prefixes", i), f"{text!r} is not a number prefix ('+8150' or '050')"
        )
    if n.startswith("+"):
        return n
    if n.startswith("0"):
        return f"+{DEFAULT_COUNTRY_CODE}{n[1:]}"  # national trunk prefix 0 (Japan first)
    raise t.ctx.error(
        (*t.path, "prefixes", i), f"{text!r}: write '+' and the country code, or a national '0...'"
    )


# --------------------------------------------------------------------------- numbers and flows


class _Refs:
    """What the flow of a number may refer to."""

    def __init__(
        self, prompts: frozenset[str], operators: Sequence[Operator], schedules: frozenset[str]
    ) -> None:
        self.prompts = prompts
        self.operators = frozenset(o.name for o in operators)
        self.groups = frozenset(g for o in operators for g in o.groups)
        self.schedules = schedules


_NUMBER = (
    "number", "medium", "campaign", "labels", "record", "valid_call_seconds", "blocklist",
    "blocking", "hours", "guidance", "start", "forwarding", "forwards", "menus", "queue",
    "voicemail", "callback",
)  # fmt: skip


def _number(t: _T, refs: _Refs) -> TrackingNumber:
    t.require("number")
    number = _e164(t, "number", t.str_("number", "", allow_empty=False))
    callback = t.bool_("callback", False)
    # A callback number forwards to the caller it is leased to; with no lease (expired, or
    # never leased) it runs its own flow, by default a clear refusal: 410 Gone (RFC 3261
    # §21.4.11: "no longer available ... no forwarding address is known").
    flow = _flow(t, refs, Action(ActionKind.REJECT, sip_code=410) if callback else None)
    return TrackingNumber(
        number=number,
        medium=t.str_("medium", ""),
        campaign=t.str_("campaign", ""),
        labels=tuple(t.str_list("labels", "labels")),
        record=t.enum_("record", RecordMode, RecordMode.BOTH),
        valid_call_seconds=t.seconds("valid_call_seconds", 60.0, zero=True),
        blocklist=_blocklist(t.sub("blocklist", _BLOCKLIST)),
        flow=flow,
        callback=callback,
    )


_FORWARDING = (
    "name", "targets", "strategy", "whisper", "accept_digit", "accept_prompts",
    "accept_timeout", "on_busy", "on_no_answer", "on_exhausted", "on_operator_hangup",
    "ringback",
)  # fmt: skip
_TARGET = ("operator", "group", "ring_timeout")
_MENU = (
    "name", "prompts", "choices", "first_digit_timeout", "inter_digit_timeout", "total_timeout",
    "max_digits", "valid_digits", "terminator", "retries", "no_input_prompts", "invalid_prompts",
    "barge_in", "on_failure",
)  # fmt: skip
_QUEUE = (
    "group", "music", "announce_position", "position_prompts", "periodic_interval",
    "periodic_prompts", "max_wait", "max_length", "wrap_up", "overflow_when_no_operator",
    "overflow",
)  # fmt: skip
_VOICEMAIL = ("greeting", "beep", "max_seconds", "min_seconds", "silence_seconds", "end_on_hash")


def _flow(t: _T, refs: _Refs, default_start: Action | None = None) -> FlowConfig:
    forwarding_t = t.sub("forwarding", _FORWARDING)
    forwarding = _forwarding(forwarding_t, refs, main=True) if forwarding_t else None
    forwards = tuple(_forwarding(f, refs, main=False) for f in t.items("forwards", _FORWARDING))
    _unique(t.ctx, (*t.path, "forwards"), [f.name for f in forwards], "forwarding")
    menus = tuple(_menu(m, refs) for m in t.items("menus", _MENU))
    _unique(t.ctx, (*t.path, "menus"), [m.name for m in menus], "menu")
    queue_t, voicemail_t = t.sub("queue", _QUEUE), t.sub("voicemail", _VOICEMAIL)
    flow = FlowConfig(
        blocking=_blocking(t.sub("blocking", ("sip_code", "prompts")), refs),
        hours=_hours(t.sub("hours", ("schedule", "closed")), refs),
        guidance=_guidance(t.sub("guidance", ("prompts", "early_media", "consent")), refs),
        start=_action(t, "start", refs, default_start or Action(ActionKind.FORWARD), _START),
        forwarding=forwarding,
        forwards=forwards,
        menus=menus,
        queue=_queue(queue_t, refs) if queue_t else None,
        voicemail=_voicemail(voicemail_t, refs) if voicemail_t else None,
    )
    _check_action_targets(t, flow)
    return flow


def _blocking(t: _T | None, refs: _Refs) -> Blocking:
    if t is None:
        return Blocking()
    return Blocking(t.int_("sip_code", 603, 400, 699), t.prompts("prompts", refs.prompts))


def _hours(t: _T | None, refs: _Refs) -> Hours:
    if t is None:
        return Hours()
    schedule = t.str_("schedule", "")
    if schedule and schedule not in refs.schedules:
        raise t.err("schedule", _unknown("schedule", schedule, refs.schedules))
    return Hours(schedule, _action(t, "closed", refs, Hours().closed, _CLOSED))


def _guidance(t: _T | None, refs: _Refs) -> Guidance:
    if t is None:
        return Guidance()
    return Guidance(
        prompts=t.prompts("prompts", refs.prompts),
        early_media=t.bool_("early_media", False),
        consent=t.prompts("consent", refs.prompts),
    )


def _target(t: _T, refs: _Refs) -> Target:
    given = [k for k in ("operator", "group") if t.has(k)]
    if len(given) != 1:
        raise t.ctx.error(t.path, "a target needs exactly one of 'operator' or 'group'")
    key = given[0]
    name = t.str_(key, "", allow_empty=False)
    known = refs.operators if key == "operator" else refs.groups
    if name not in known:
        raise t.err(key, _unknown(key, name, known))
    return Target(
        operator=name if key == "operator" else "",
        group=name if key == "group" else "",
        ring_timeout=t.seconds("ring_timeout", 20.0, hi=600.0),
    )


def _forwarding(t: _T, refs: _Refs, main: bool) -> Forwarding:
    name = t.str_("name", "main") if main else _name(t)
    t.require("targets")
    targets_t = t.items("targets", _TARGET)
    if len(targets_t) > MAX_FORWARD_TARGETS:
        raise t.ctx.error(
            targets_t[MAX_FORWARD_TARGETS].path,
            f"at most {MAX_FORWARD_TARGETS} forwarding targets (SPEC F8); this is target "
            f"{MAX_FORWARD_TARGETS + 1}",
        )
    if not targets_t:
        raise t.err("targets", "needs at least one target")
    accept = t.str_("accept_digit", "")
    if accept and (len(accept) != 1 or accept not in _DTMF):
        raise t.err("accept_digit", f"{accept!r} is not one DTMF key (0-9 * # A-D)")
    d = Forwarding(name, ())
    ringback = t.str_("ringback", "")
    if ringback and ringback not in refs.prompts:
        raise t.err("ringback", _unknown("prompt", ringback, refs.prompts))
    return Forwarding(
        name=name,
        targets=tuple(_target(x, refs) for x in targets_t),
        strategy=t.enum_("strategy", ForwardStrategy, ForwardStrategy.SEQUENTIAL),
        whisper=t.prompts("whisper", refs.prompts),
        accept_digit=accept,
        accept_prompts=t.prompts("accept_prompts", refs.prompts),
        accept_timeout=t.seconds("accept_timeout", d.accept_timeout, hi=120.0),
        on_busy=_action(t, "on_busy", refs, d.on_busy, _AFTER_ATTEMPT),
        on_no_answer=_action(t, "on_no_answer", refs, d.on_no_answer, _AFTER_ATTEMPT),
        on_exhausted=_action(t, "on_exhausted", refs, d.on_exhausted, _ANSWERED),
        on_operator_hangup=_action(t, "on_operator_hangup", refs, d.on_operator_hangup, _ANSWERED),
        ringback=ringback,
    )


def _menu(t: _T, refs: _Refs) -> Menu:
    name = _name(t)
    t.require("prompts")
    d = Menu(name, (), ())
    max_digits = t.int_("max_digits", d.max_digits, 1, 32)
    valid = t.str_("valid_digits", d.valid_digits, allow_empty=False)
    bad = [c for c in valid if c not in _DTMF]
    if bad:
        raise t.err("valid_digits", f"{bad[0]!r} is not a DTMF key (0-9 * # A-D)")
    terminator = t.str_("terminator", d.terminator)
    if terminator and (len(terminator) != 1 or terminator not in _DTMF):
        raise t.err("terminator", f"{terminator!r} is not one DTMF key")
    t.require("choices")
    raw = t.data["choices"]
    if not isinstance(raw, dict):
        raise t.err("choices", 'expected a table of choices: { "1" = "forward", "2" = "menu:x" }')
    choices_t = _T(t.ctx, (*t.path, "choices"), raw, list(raw))
    choices = tuple(_choice(choices_t, k, refs, valid, max_digits) for k in raw)
    if not choices:
        raise t.err("choices", "a menu needs at least one choice")
    return Menu(
        name=name,
        prompts=t.prompts("prompts", refs.prompts),
        choices=choices,
        first_digit_timeout=t.seconds("first_digit_timeout", d.first_digit_timeout, hi=300.0),
        inter_digit_timeout=t.seconds("inter_digit_timeout", d.inter_digit_timeout, hi=300.0),
        total_timeout=t.seconds("total_timeout", d.total_timeout, hi=600.0),
        max_digits=max_digits,
        valid_digits=valid,
        terminator=terminator,
        retries=t.int_("retries", d.retries, 0, 10),
        no_input_prompts=t.prompts("no_input_prompts", refs.prompts),
        invalid_prompts=t.prompts("invalid_prompts", refs.prompts),
        barge_in=t.bool_("barge_in", d.barge_in),
        on_failure=_action(t, "on_failure", refs, d.on_failure, _ANSWERED),
    )


def _choice(t: _T, digits: str, refs: _Refs, valid: str, max_digits: int) -> MenuChoice:
    bad = [c for c in digits if c not in valid]
    if not digits or bad:
        raise t.err(digits, f"choice {digits!r}: keys must be among valid_digits {valid!r}")
    if len(digits) > max_digits:
        raise t.err(digits, f"choice {digits!r} is longer than max_digits ({max_digits})")
    return MenuChoice(digits, _action(t, digits, refs, None, _ANSWERED))


def _queue(t: _T, refs: _Refs) -> QueueConfig:
    d = QueueConfig()
    group = t.str_("group", "")
    if group and group not in refs.groups:
        raise t.err("group", _unknown("group", group, refs.groups))
    return QueueConfig(
        group=group,
        music=t.prompts("music", refs.prompts),
        announce_position=t.bool_("announce_position", d.announce_position),
        position_prompts=t.prompts("position_prompts", refs.prompts),
        periodic_interval=t.seconds("periodic_interval", d.periodic_interval, zero=True, hi=3600.0),
        periodic_prompts=t.prompts("periodic_prompts", refs.prompts),
        max_wait=t.seconds("max_wait", d.max_wait, hi=86400.0),
        max_length=t.int_("max_length", d.max_length, 1, 10_000),
        wrap_up=t.seconds("wrap_up", d.wrap_up, zero=True, hi=3600.0),
        overflow_when_no_operator=t.bool_("overflow_when_no_operator", d.overflow_when_no_operator),
        overflow=_action(t, "overflow", refs, d.overflow, _ANSWERED - {ActionKind.QUEUE}),
    )


def _voicemail(t: _T, refs: _Refs) -> VoicemailConfig:
    d = VoicemailConfig()
    cfg = VoicemailConfig(
        greeting=t.prompts("greeting", refs.prompts),
        beep=t.bool_("beep", d.beep),
        max_seconds=t.seconds("max_seconds", d.max_seconds, hi=3600.0),
        min_seconds=t.seconds("min_seconds", d.min_seconds, zero=True, hi=3600.0),
        silence_seconds=t.seconds("silence_seconds", d.silence_seconds, zero=True, hi=3600.0),
        end_on_hash=t.bool_("end_on_hash", d.end_on_hash),
    )
    if cfg.min_seconds >= cfg.max_seconds:
        raise t.err("min_seconds", f"must be less than max_seconds ({cfg.max_seconds:g})")
    return cfg


# --------------------------------------------------------------------------- actions

_ALL = frozenset(ActionKind)
_ANSWERED = _ALL - {ActionKind.NEXT_TARGET, ActionKind.REJECT}  # after the call was answered
_AFTER_ATTEMPT = _ALL - {ActionKind.REJECT}  # busy / no-answer of one target
_CLOSED = _ALL - {ActionKind.NEXT_TARGET}  # after hours (before answer: reject allowed)
_START = _CLOSED
_ACTION_KEYS = ("action", "forward", "menu", "prompts", "sip_code")


def _action(
    t: _T, key: str, refs: _Refs, default: Action | None, allowed: frozenset[ActionKind]
) -> Action:
    if key not in t.data:
        if default is None:
            raise t.ctx.error(t.path, f"missing key {key!r}")
        return default
    v = t.data[key]
    path = (*t.path, key)
    if isinstance(v, str):
        action = _action_from_string(t, path, v)
    elif isinstance(v, dict):
        a = _T(t.ctx, path, v, _ACTION_KEYS)
        a.require("action")
        kind = a.enum_("action", ActionKind, ActionKind.HANGUP)
        action = Action(
            kind=kind,
            forward=a.str_("forward", ""),
            menu=a.str_("menu", ""),
            prompts=a.prompts("prompts", refs.prompts),
            sip_code=a.int_("sip_code", 480, 400, 699),
        )
    else:
        raise t.err(key, "expected an action: a string like 'voicemail' or 'menu:main', or a table")
    if action.kind not in allowed:
        choices = ", ".join(sorted(k.value for k in allowed))
        raise t.err(key, f"action {action.kind.value!r} is not possible here (possible: {choices})")
    if action.kind is ActionKind.GUIDANCE and not action.prompts:
        raise t.err(
            key, "a 'guidance' action needs prompts: { action = \"guidance\", prompts = [...] }"
        )
    if action.kind is ActionKind.MENU and not action.menu:
        raise t.err(key, "a menu action names its menu: 'menu:NAME'")
    return action


def _action_from_string(t: _T, path: Path_, text: str) -> Action:
    kind_s, _, name = text.strip().partition(":")
    try:
        kind = ActionKind(kind_s.strip().lower())
    except ValueError:
        choices = ", ".join(k.value for k in ActionKind)
        raise t.ctx.error(
            path, f"unknown action {text!r} (one of {choices}; 'menu:NAME', 'forward:NAME')"
        ) from None
    if name and kind not in (ActionKind.MENU, ActionKind.FORWARD):
        raise t.ctx.error(path, f"{text!r}: only 'menu:' and 'forward:' take a name")
    return Action(
        kind=kind,
        menu=name.strip() if kind is ActionKind.MENU else "",
        forward=name.strip() if kind is ActionKind.FORWARD else "",
    )


def _walk_actions(flow: FlowConfig) -> Iterator[tuple[Path_, Action]]:
    """Every action of a flow with its key path relative to the number's table."""
    yield ("start",), flow.start
    if flow.hours.schedule:  # always open: the closed action never runs
        yield ("hours", "closed"), flow.hours.closed
    for fwd_path, fwd in _forwardings(flow):
        for key in ("on_busy", "on_no_answer", "on_exhausted", "on_operator_hangup"):
            yield (*fwd_path, key), getattr(fwd, key)
    for i, menu in enumerate(flow.menus):
        for choice in menu.choices:
            yield ("menus", i, "choices", choice.digits), choice.action
        yield ("menus", i, "on_failure"), menu.on_failure
    if flow.queue is not None:
        yield ("queue", "overflow"), flow.queue.overflow


def _forwardings(flow: FlowConfig) -> Iterator[tuple[Path_, Forwarding]]:
    if flow.forwarding is not None:
        yield ("forwarding",), flow.forwarding
    for i, fwd in enumerate(flow.forwards):
        yield ("forwards", i), fwd


def _written(data: object, rel: Path_) -> bool:
    """Whether the key at ``rel`` is in the file (False: the action is a default)."""
    for part in rel:
        if isinstance(data, dict) and isinstance(part, str) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return False
    return True


def _check_action_targets(t: _T, flow: FlowConfig) -> None:
    """Every action points at something that exists (no menu choice pointing nowhere)."""
    section: dict[ActionKind, Callable[[], bool]] = {
        ActionKind.VOICEMAIL: lambda: flow.voicemail is not None,
        ActionKind.QUEUE: lambda: flow.queue is not None,
    }
    menus = [m.name for m in flow.menus]
    forwards = [f.name for f in flow.forwards]
    for rel, action in _walk_actions(flow):
        path = (*t.path, *rel)
        if action.kind is ActionKind.MENU and action.menu not in menus:
            raise t.ctx.error(path, _unknown("menu", action.menu, menus))
        if action.kind is ActionKind.FORWARD and flow.forwarding_named(action.forward) is None:
            if action.forward:
                raise t.ctx.error(path, _unknown("forwarding", action.forward, forwards))
            raise t.ctx.error(path, "forwards, but the number has no [numbers.forwarding]")
        needs = section.get(action.kind)
        if needs is not None and not needs():
            default = "" if _written(t.data, rel) else f" ({rel[-1]} defaults to it: set it)"
            raise t.ctx.error(
                path,
                f"{action.kind.value!r}, but the number has no [numbers.{action.kind.value}]"
                + default,
            )
    if flow.queue is not None and not flow.queue.group and flow.forwarding is None:
        raise t.ctx.error((*t.path, "queue"), "a queue needs 'group' or a [numbers.forwarding]")


# --------------------------------------------------------------------------- writing


def _fmt_span(span: TimeSpan) -> str:
    end = (
        "24:00"
        if span.end == dt.time(0) and span.start != dt.time(0)
        else span.end.strftime("%H:%M")
    )
    return f"{span.start.strftime('%H:%M')}-{end}"


def _val(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def header(self, text: str) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(text)

    def kv(self, key: str, value: object, default: object = None) -> None:
        if default is not None and value == default:
            return
        self.lines.append(f"{_key(key)} = {_val(value)}")


def _action_value(a: Action) -> str | dict[str, object]:
    if not a.prompts and a.sip_code == 480:
        if a.kind is ActionKind.MENU:
            return f"menu:{a.menu}"
        if a.kind is ActionKind.FORWARD:
            return f"forward:{a.forward}" if a.forward else "forward"
        return a.kind.value
    out: dict[str, object] = {"action": a.kind.value}
    if a.menu:
        out["menu"] = a.menu
    if a.forward:
        out["forward"] = a.forward
    if a.prompts:
        out["prompts"] = list(a.prompts)
    if a.sip_code != 480:
        out["sip_code"] = a.sip_code
    return out


def _write_blocklist(w: _Writer, header: str, b: Blocklist) -> None:
    if not b.rules:
        return
    w.header(header)
    for kind, key in (
        (MatchKind.EXACT, "numbers"),
        (MatchKind.PREFIX, "prefixes"),
        (MatchKind.WITHHELD, "withheld"),
    ):
        values = [r.value for r in b.rules if r.kind is kind]
        if values:
            w.kv(key, values)


def _fmt_date(d: dt.date, yearly: bool) -> str | dt.date:
    return f"{d.month:02d}-{d.day:02d}" if yearly else d


def _write_schedule(w: _Writer, s: Schedule) -> None:
    w.header("[[schedules]]")
    w.kv("name", s.name)
    w.kv("holidays", s.holidays.value)
    if s.holiday_spans:
        w.kv("holiday_hours", [_fmt_span(x) for x in s.holiday_spans])
    for week in s.weekly:
        w.header("[[schedules.week]]")
        w.kv("days", [d.name.lower() for d in week.days])
        w.kv("hours", [_fmt_span(x) for x in week.spans])
        if week.breaks:
            w.kv("breaks", [_fmt_span(x) for x in week.breaks])
    for o in s.overrides:
        w.header("[[schedules.overrides]]")
        w.kv("label", o.label, "")
        w.kv("from", _fmt_date(o.first, o.yearly))
        w.kv("to", _fmt_date(o.last, o.yearly))
        w.kv("hours", [_fmt_span(x) for x in o.spans])
        if o.breaks:
            w.kv("breaks", [_fmt_span(x) for x in o.breaks])


def _write_forwarding(w: _Writer, header: str, f: Forwarding, main: bool) -> None:
    d = Forwarding(f.name, ())
    w.header(f"[{header}]" if main else f"[[{header}]]")
    if not main or f.name != "main":
        w.kv("name", f.name)
    w.kv("strategy", f.strategy.value)
    w.kv("whisper", list(f.whisper), [])
    w.kv("accept_digit", f.accept_digit, "")
    w.kv("accept_prompts", list(f.accept_prompts), [])
    w.kv("accept_timeout", f.accept_timeout, d.accept_timeout)
    for key in ("on_busy", "on_no_answer", "on_exhausted"):
        w.kv(key, _action_value(getattr(f, key)))
    if f.on_operator_hangup != d.on_operator_hangup:
        w.kv("on_operator_hangup", _action_value(f.on_operator_hangup))
    w.kv("ringback", f.ringback, "")
    for target in f.targets:
        w.header(f"[[{header}.targets]]")
        w.kv("operator", target.operator, "")
        w.kv("group", target.group, "")
        w.kv("ring_timeout", target.ring_timeout)


def _write_menu(w: _Writer, m: Menu) -> None:
    w.header("[[numbers.menus]]")
    w.kv("name", m.name)
    w.kv("prompts", list(m.prompts))
    for key in (
        "first_digit_timeout", "inter_digit_timeout", "total_timeout", "max_digits",
        "valid_digits", "terminator", "retries", "barge_in",
    ):  # fmt: skip
        w.kv(key, getattr(m, key))
    w.kv("no_input_prompts", list(m.no_input_prompts), [])
    w.kv("invalid_prompts", list(m.invalid_prompts), [])
    w.kv("on_failure", _action_value(m.on_failure))
    w.header("[numbers.menus.choices]")
    for c in m.choices:
        w.kv(c.digits, _action_value(c.action))


def _write_number(w: _Writer, n: TrackingNumber) -> None:
    f = n.flow
    w.header("[[numbers]]")
    w.kv("number", n.number)
    w.kv("medium", n.medium, "")
    w.kv("campaign", n.campaign, "")
    w.kv("labels", list(n.labels), [])
    w.kv("record", n.record.value)
    w.kv("valid_call_seconds", n.valid_call_seconds)
    w.kv("callback", n.callback, False)
    w.kv("start", _action_value(f.start))
    _write_blocklist(w, "[numbers.blocklist]", n.blocklist)
    w.header("[numbers.blocking]")
    w.kv("sip_code", f.blocking.sip_code)
    w.kv("prompts", list(f.blocking.prompts), [])
    w.header("[numbers.hours]")
    w.kv("schedule", f.hours.schedule)
    w.kv("closed", _action_value(f.hours.closed))
    if f.guidance != Guidance():
        w.header("[numbers.guidance]")
        w.kv("prompts", list(f.guidance.prompts))
        w.kv("early_media", f.guidance.early_media)
        w.kv("consent", list(f.guidance.consent), [])
    if f.forwarding is not None:
        _write_forwarding(w, "numbers.forwarding", f.forwarding, main=True)
    for fwd in f.forwards:
        _write_forwarding(w, "numbers.forwards", fwd, main=False)
    for menu in f.menus:
        _write_menu(w, menu)
    if f.queue is not None:
        q = f.queue
        w.header("[numbers.queue]")
        w.kv("group", q.group, "")
        for key in ("music", "position_prompts", "periodic_prompts"):
            w.kv(key, list(getattr(q, key)), [])
        for key in (
            "announce_position",
            "periodic_interval",
            "max_wait",
            "max_length",
            "wrap_up",
            "overflow_when_no_operator",
        ):
            w.kv(key, getattr(q, key))
        w.kv("overflow", _action_value(q.overflow))
    if f.voicemail is not None:
        v = f.voicemail
        w.header("[numbers.voicemail]")
        w.kv("greeting", list(v.greeting))
        for key in ("beep", "max_seconds", "min_seconds", "silence_seconds", "end_on_hash"):
            w.kv(key, getattr(v, key))


def dump_business(b: Business) -> str:
    """A business file that loads back to ``b`` (``load_business_text(dump_business(b)) == b``)."""
    w = _Writer()
    w.lines.append(f"# Business {b.slug!r}, written by `mediasrv business export`.")
    w.header("[business]")
    w.kv("slug", b.slug)
    w.kv("name", b.name, "")
    w.kv("time_zone", b.time_zone)
    w.kv("duplicate_window", b.duplicate_window)
    for p in b.prompts:
        w.header("[[prompts]]")
        w.kv("name", p.name)
        w.kv("file", p.file)
        w.kv("text", p.text, "")
    for o in b.operators:
        w.header("[[operators]]")
        w.kv("name", o.name)
        w.kv(
            {
                OperatorKind.SIP_URI: "sip",
                OperatorKind.PHONE: "phone",
                OperatorKind.SOFTPHONE: "softphone",
            }[o.kind],
            o.target,
        )
        w.kv("trunk", o.trunk, "")
        w.kv("groups", list(o.groups), [])
        w.kv("wrap_up", o.wrap_up, 0.0)
        w.kv("display_name", o.display_name, "")
        w.kv("shared", o.shared, False)
    for s in b.schedules:
        _write_schedule(w, s)
    _write_blocklist(w, "[blocklist]", b.blocklist)
    if b.callback != CallbackConfig():
        w.header("[callback]")
        w.kv("trunk", b.callback.trunk, "")
        w.kv("lease", b.callback.lease)
    for n in b.numbers:
        _write_number(w, n)
    return "\n".join(w.lines) + "\n"
