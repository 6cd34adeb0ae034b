"""Business hours (SPEC F7): is a :class:`~mediasrv.calls.business.Schedule` open at a moment,
which rule decided it, and when does it open next.

Rules, evaluated in the schedule's time zone (``zoneinfo``) on the local wall clock:

1. A date covered by a :class:`DateOverride` (年末年始) follows the override's spans;
2. else a public holiday (``jpholiday``, a pinned offline package) follows ``holiday_spans``
   (empty: closed);
3. else the weekly hours of that weekday, minus their breaks (lunch).

A span that crosses midnight (``22:00-02:00``) belongs to the day it starts on: the hours after
midnight follow that day's rule, so an override of the next date does not cut a night shift
short, and an override of the first date removes the whole shift.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import jpholiday

from mediasrv.calls.business import HolidaySource, Schedule, TimeSpan

__all__ = [
    "DayRule",
    "OpenState",
    "holiday_name",
    "hours_evaluator",
    "is_open",
    "next_opening",
    "open_evaluator",
    "state_at",
    "zone",
]

_SEARCH_DAYS = 400  # next_opening looks this far ahead (a year, plus a long override)


class DayRule(enum.Enum):
    """Which rule decided a day's hours (shown by dry runs and logged with after-hours)."""

    OVERRIDE = "override"
    HOLIDAY = "holiday"
    WEEK = "week"


@dataclass(frozen=True, slots=True)
class OpenState:
    open: bool
    rule: DayRule  # the rule of the day that owns the moment (see module doc)
    day: dt.date  # that day (the previous date during a night shift's spill-over)
    label: str = ""  # the override's label or the holiday's name


@dataclass(frozen=True, slots=True)
class _DayHours:
    rule: DayRule
    spans: tuple[TimeSpan, ...]
    breaks: tuple[TimeSpan, ...]
    label: str


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name (cached; raises ``ZoneInfoNotFoundError``)."""
    return ZoneInfo(name)


@functools.lru_cache(maxsize=4096)
def holiday_name(source: HolidaySource, day: dt.date) -> str | None:
    """The public holiday's name on ``day``, or None on a working day."""
    if source is HolidaySource.JAPAN:
        name = jpholiday.is_holiday_name(day)
        return str(name) if name else None
    return None


def _day_hours(schedule: Schedule, day: dt.date) -> _DayHours:
    for override in schedule.overrides:
        if override.covers(day):
            return _DayHours(DayRule.OVERRIDE, override.spans, override.breaks, override.label)
    name = holiday_name(schedule.holidays, day)
    if name is not None:
        return _DayHours(DayRule.HOLIDAY, schedule.holiday_spans, (), name)
    weekday = day.weekday()
    spans: list[TimeSpan] = []
    breaks: list[TimeSpan] = []
    for week in schedule.weekly:
        if weekday in week.days:
            spans.extend(week.spans)
            breaks.extend(week.breaks)
    return _DayHours(DayRule.WEEK, tuple(spans), tuple(breaks), "")


def _starts_in(span: TimeSpan, t: dt.time) -> bool:
    """``t`` lies in the part of ``span`` on the day it starts."""
    return span.start <= t and (span.crosses_midnight or t < span.end)


def _spills_in(span: TimeSpan, t: dt.time) -> bool:
    """``t`` lies in the part of ``span`` after midnight (the next day)."""
    return span.crosses_midnight and t < span.end


def _open_on(hours: _DayHours, t: dt.time, spill: bool) -> bool:
    inside = _spills_in if spill else _starts_in
    if not any(inside(s, t) for s in hours.spans):
        return False
    return not any(inside(b, t) for b in hours.breaks)


def state_at(schedule: Schedule, at: dt.datetime) -> OpenState:
    """Open or closed at the aware moment ``at``, and the rule that decided it."""
    if at.tzinfo is None:
        raise ValueError("state_at needs an aware datetime (a naive one has no time zone)")
    local = at.astimezone(zone(schedule.time_zone))
    today, t = local.date(), local.time().replace(tzinfo=None)
    hours = _day_hours(schedule, today)
    if _open_on(hours, t, spill=False):
        return OpenState(True, hours.rule, today, hours.label)
    yesterday = today - dt.timedelta(days=1)
    previous = _day_hours(schedule, yesterday)
    if _open_on(previous, t, spill=True):
        return OpenState(True, previous.rule, yesterday, previous.label)
    return OpenState(False, hours.rule, today, hours.label)


def is_open(schedule: Schedule, at: dt.datetime) -> bool:
    """True when the business answers calls at the aware moment ``at``."""
    return state_at(schedule, at).open


def _candidates(schedule: Schedule, day: dt.date) -> list[dt.datetime]:
    """Local wall-clock moments of ``day``'s rule where the schedule may turn open."""
    hours = _day_hours(schedule, day)
    out = [dt.datetime.combine(day, s.start) for s in hours.spans]
    for b in hours.breaks:
        end_day = day + dt.timedelta(days=1) if b.crosses_midnight else day
        out.append(dt.datetime.combine(end_day, b.end))
    return out


def next_opening(schedule: Schedule, at: dt.datetime) -> dt.datetime | None:
    """The first moment at or after ``at`` when the schedule is open (aware, in the
    schedule's zone), or None if it stays closed for the next ~400 days."""
    tz = zone(schedule.time_zone)
    if is_open(schedule, at):
        return at.astimezone(tz)
    local_day = at.astimezone(tz).date()
    for offset in range(-1, _SEARCH_DAYS):
        day = local_day + dt.timedelta(days=offset)
        for naive in sorted(_candidates(schedule, day)):
            moment = naive.replace(tzinfo=tz)
            if moment > at and is_open(schedule, moment):
                return moment
    return None


def _schedule(value: object) -> Schedule:
    if not isinstance(value, Schedule):
        raise TypeError(f"expected a Schedule, got {type(value).__name__}")
    return value


def open_evaluator(schedule: object, at: dt.datetime) -> bool:
    """:func:`is_open` in the shape a flow plan injects (its conditions hold the schedule as
    an opaque object)."""
    return is_open(_schedule(schedule), at)


def hours_evaluator(schedule: object, at: dt.datetime) -> OpenState:
    """:func:`state_at` for dry runs, same shape (``open``, ``rule``, ``label``)."""
    return state_at(_schedule(schedule), at)
