"""Business hours (SPEC F7): week, lunch breaks, spans across midnight, public holidays,
overrides, time zones; every moment is an explicit aware datetime (no clock is read)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from mediasrv.calls.business import (
    DateOverride,
    HolidaySource,
    Schedule,
    TimeSpan,
    Weekday,
    WeeklyHours,
)
from mediasrv.calls.schedule import DayRule, holiday_name, is_open, next_opening, state_at

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)


def span(text: str) -> TimeSpan:
    a, b = text.split("-")
    return TimeSpan(dt.time.fromisoformat(a), dt.time.fromisoformat(b))


def clinic(**kw: object) -> Schedule:
    """Mon-Fri 09:00-18:00 with lunch 12:00-13:00, Sat 09:00-12:00, Japanese holidays closed."""
    base: dict[str, object] = dict(
        name="clinic",
        weekly=(
            WeeklyHours(WEEKDAYS, (span("09:00-18:00"),), (span("12:00-13:00"),)),
            WeeklyHours((Weekday.SAT,), (span("09:00-12:00"),)),
        ),
        holidays=HolidaySource.JAPAN,
    )
    base.update(kw)
    return Schedule(**base)  # type: ignore[arg-type]


def tokyo(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TOKYO)


# 2026-12-01 is a Tuesday; 2026-12-04 Friday; 2026-12-05 Saturday; 2026-12-06 Sunday.
@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-12-01 08:59:59", False),
        ("2026-12-01 09:00:00", True),  # start is inclusive
        ("2026-12-01 11:59:59", True),
        ("2026-12-01 12:00:00", False),  # lunch break
        ("2026-12-01 12:59:59", False),
        ("2026-12-01 13:00:00", True),  # break end is open again
        ("2026-12-01 17:59:59", True),
        ("2026-12-01 18:00:00", False),  # end is exclusive
        ("2026-12-05 10:00:00", True),  # Saturday morning
        ("2026-12-05 12:30:00", False),  # Saturday has no afternoon (and no break rule)
        ("2026-12-06 10:00:00", False),  # Sunday: no rule at all
    ],
)
def test_weekly_hours_and_lunch_break(moment: str, expected: bool) -> None:
    assert is_open(clinic(), tokyo(moment)) is expected


def test_the_moment_is_read_in_the_schedule_zone_whatever_zone_it_comes_in() -> None:
    at_utc = dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC)  # 09:30 in Tokyo
    assert is_open(clinic(), at_utc)
    assert not is_open(clinic(), at_utc - dt.timedelta(hours=1))


def test_naive_moments_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(clinic(), dt.datetime(2026, 12, 1, 10, 0))


def night_desk(**kw: object) -> Schedule:
    base: dict[str, object] = dict(
        name="night",
        weekly=(WeeklyHours((Weekday.FRI,), (span("22:00-02:00"),), (span("23:30-00:15"),)),),
    )
    base.update(kw)
    return Schedule(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-12-04 21:59", False),
        ("2026-12-04 22:00", True),
        ("2026-12-04 23:29", True),
        ("2026-12-04 23:45", False),  # a break that itself crosses midnight
        ("2026-12-05 00:10", False),
        ("2026-12-05 00:15", True),
        ("2026-12-05 01:59", True),  # Saturday has no rule: Friday's span spills over
        ("2026-12-05 02:00", False),
        ("2026-12-05 22:30", False),  # only Friday starts a shift
    ],
)
def test_spans_across_midnight(moment: str, expected: bool) -> None:
    assert is_open(night_desk(), tokyo(moment)) is expected


def test_a_spill_over_belongs_to_the_day_the_span_started() -> None:
    state = state_at(night_desk(), tokyo("2026-12-05 01:00"))
    assert state.open and state.day == dt.date(2026, 12, 4) and state.rule is DayRule.WEEK
    # An override closing Saturday does not cut Friday's shift short ...
    closed_sat = (DateOverride(dt.date(2026, 12, 5), dt.date(2026, 12, 5), label="closed"),)
    assert is_open(night_desk(overrides=closed_sat), tokyo("2026-12-05 01:00"))
    # ... and one closing Friday removes all of it, the hours after midnight too.
    closed_fri = (DateOverride(dt.date(2026, 12, 4), dt.date(2026, 12, 4), label="closed"),)
    assert not is_open(night_desk(overrides=closed_fri), tokyo("2026-12-04 23:00"))
    assert not is_open(night_desk(overrides=closed_fri), tokyo("2026-12-05 01:00"))


def test_midnight_to_midnight_is_the_whole_day() -> None:
    always = Schedule("24h", weekly=(WeeklyHours(tuple(Weekday), (span("00:00-00:00"),)),))
    for hour in range(24):
        assert is_open(always, tokyo(f"2026-12-02 {hour:02d}:30"))


def test_japanese_public_holidays_come_from_the_pinned_package() -> None:
    assert holiday_name(HolidaySource.JAPAN, dt.date(2026, 11, 23))  # 勤労感謝の日 (a Monday)
    assert holiday_name(HolidaySource.JAPAN, dt.date(2026, 5, 6))  # 振替休日 (May 3 is a Sunday)
    assert holiday_name(HolidaySource.JAPAN, dt.date(2026, 9, 22))  # 国民の休日 (between two)
    assert holiday_name(HolidaySource.JAPAN, dt.date(2026, 11, 24)) is None
    assert holiday_name(HolidaySource.NONE, dt.date(2026, 11, 23)) is None


def test_a_holiday_on_a_weekday_is_closed_or_follows_the_holiday_hours() -> None:
    monday_holiday = tokyo("2026-11-23 10:00")
    state = state_at(clinic(), monday_holiday)
    assert not state.open and state.rule is DayRule.HOLIDAY and state.label
    assert is_open(clinic(), tokyo("2026-11-24 10:00"))  # the Tuesday after is a working day
    short_days = clinic(holiday_spans=(span("10:00-12:00"),))
    assert is_open(short_days, monday_holiday)
    assert not is_open(short_days, tokyo("2026-11-23 13:30"))
    assert is_open(clinic(holidays=HolidaySource.NONE), monday_holiday)


def test_an_override_wins_over_a_holiday_and_over_the_week() -> None:
    new_year_duty = DateOverride(
        dt.date(2027, 1, 1), dt.date(2027, 1, 1), (span("10:00-15:00"),), label="当番"
    )
    sched = clinic(overrides=(new_year_duty,))
    assert holiday_name(HolidaySource.JAPAN, dt.date(2027, 1, 1))  # 元日 is a holiday ...
    state = state_at(sched, tokyo("2027-01-01 11:00"))
    assert state.open and state.rule is DayRule.OVERRIDE and state.label == "当番"  # ... open
    assert not is_open(sched, tokyo("2027-01-01 09:30"))  # the week's 09:00 does not apply


def test_year_end_closure_repeats_every_year_and_wraps_the_year() -> None:
    nenmatsu = DateOverride(
        dt.date(2000, 12, 29), dt.date(2001, 1, 3), label="年末年始", yearly=True
    )
    sched = clinic(overrides=(nenmatsu,))
    assert is_open(sched, tokyo("2026-12-28 10:00"))  # Monday before
    for day in ("2026-12-29", "2026-12-30", "2026-12-31", "2027-01-02"):
        state = state_at(sched, tokyo(f"{day} 10:00"))
        assert not state.open and state.rule is DayRule.OVERRIDE and state.label == "年末年始"
    assert not is_open(sched, tokyo("2030-12-30 10:00"))  # another year, same dates
    assert is_open(sched, tokyo("2027-01-04 10:00"))  # Monday after


def test_a_business_in_another_zone_with_daylight_saving() -> None:
    ny = clinic(time_zone="America/New_York", holidays=HolidaySource.NONE)
    tk = clinic()
    # 2026-12-01 14:30 UTC: 09:30 in New York (EST), 23:30 in Tokyo.
    winter = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC)
    assert is_open(ny, winter) and not is_open(tk, winter)
    # The same UTC time in July is 10:30 EDT (open); 13:30 UTC is 09:30 EDT, open in July but
    # 08:30 EST (closed) in December: the offset moves, the local hours do not.
    assert is_open(ny, dt.datetime(2026, 7, 1, 13, 30, tzinfo=dt.UTC))
    assert not is_open(ny, dt.datetime(2026, 12, 1, 13, 30, tzinfo=dt.UTC))
    # Tokyo has no daylight saving: 00:30 UTC is 09:30 JST in both seasons.
    assert is_open(tk, dt.datetime(2026, 7, 1, 0, 30, tzinfo=dt.UTC))
    assert is_open(tk, dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC))


def test_the_day_daylight_saving_starts() -> None:
    # 2026-03-08: New York clocks jump 02:00 -> 03:00 (a Sunday, so open every day here).
    ny = Schedule(
        "ny",
        weekly=(WeeklyHours(tuple(Weekday), (span("01:00-04:00"),)),),
        time_zone="America/New_York",
    )
    assert is_open(ny, dt.datetime(2026, 3, 8, 6, 30, tzinfo=dt.UTC))  # 01:30 EST
    assert is_open(ny, dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.UTC))  # 03:30 EDT
    assert not is_open(ny, dt.datetime(2026, 3, 8, 8, 30, tzinfo=dt.UTC))  # 04:30 EDT
    assert next_opening(ny, dt.datetime(2026, 3, 8, 8, 30, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 9, 1, 0, tzinfo=NEW_YORK
    )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-12-01 10:00", "2026-12-01 10:00"),  # open now: now
        ("2026-12-01 07:00", "2026-12-01 09:00"),
        ("2026-12-01 12:10", "2026-12-01 13:00"),  # lunch: the break's end
        ("2026-12-01 19:00", "2026-12-02 09:00"),
        ("2026-12-05 12:30", "2026-12-07 09:00"),  # Saturday afternoon: Monday
        ("2026-11-22 12:00", "2026-11-24 09:00"),  # Sunday before a Monday holiday: Tuesday
    ],
)
def test_next_opening(moment: str, expected: str) -> None:
    assert next_opening(clinic(), tokyo(moment)) == tokyo(expected)


def test_next_opening_after_the_year_end_closure_and_never() -> None:
    nenmatsu = DateOverride(dt.date(2026, 12, 29), dt.date(2027, 1, 3), label="年末年始")
    sched = clinic(overrides=(nenmatsu,))
    assert next_opening(sched, tokyo("2026-12-28 19:00")) == tokyo("2027-01-04 09:00")
    assert next_opening(Schedule("never"), tokyo("2026-12-28 19:00")) is None
    nights = next_opening(night_desk(), tokyo("2026-12-04 23:40"))
    assert nights == tokyo("2026-12-05 00:15")  # the end of a break that crossed midnight


# --------------------------------------------------------------------------- property test
# is_open against a reference that paints each day's spans onto a minute timeline.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_minute_times = st.integers(0, 24 * 60 - 1).map(lambda m: dt.time(m // 60, m % 60))
_spans = st.builds(TimeSpan, _minute_times, _minute_times).filter(
    lambda s: s.start != s.end or s.start == dt.time(0)
)
_week = st.builds(
    WeeklyHours,
    st.lists(st.sampled_from(list(Weekday)), min_size=1, max_size=7, unique=True).map(tuple),
    st.lists(_spans, max_size=3).map(tuple),
    st.lists(_spans, max_size=2).map(tuple),
)
_START = dt.date(2026, 12, 20)
_override = st.builds(
    lambda first, length, spans, label: DateOverride(
        _START + dt.timedelta(days=first),
        _START + dt.timedelta(days=first + length),
        spans,
        (),
        label,
    ),
    st.integers(0, 14),
    st.integers(0, 3),
    st.lists(_spans, max_size=2).map(tuple),
    st.just("ov"),
)
_schedules = st.builds(
    Schedule,
    st.just("random"),
    st.lists(_week, max_size=3).map(tuple),
    st.sampled_from(list(HolidaySource)),
    st.lists(_spans, max_size=2).map(tuple),
    st.lists(_override, max_size=2).map(tuple),
    st.sampled_from(["Asia/Tokyo", "America/New_York", "Europe/London"]),
)


def _reference_open_minutes(schedule: Schedule, first: dt.date, days: int) -> set[int]:
    """Naive local minutes that are open, painting each day's rule (the day owns its spans);
    a minute is counted from midnight of ``first`` (integers: painting stays cheap)."""
    open_minutes: set[int] = set()
    for offset in range(-1, days):
        day = first + dt.timedelta(days=offset)
        override = next((o for o in schedule.overrides if o.covers(day)), None)
        if override is not None:
            spans, breaks = override.spans, override.breaks
        elif holiday_name(schedule.holidays, day) is not None:
            spans, breaks = schedule.holiday_spans, ()
        else:
            spans = tuple(s for w in schedule.weekly if day.weekday() in w.days for s in w.spans)
            breaks = tuple(b for w in schedule.weekly if day.weekday() in w.days for b in w.breaks)

        def paint(span: TimeSpan, midnight: int = offset * 24 * 60) -> set[int]:
            start = midnight + span.start.hour * 60 + span.start.minute
            end = midnight + span.end.hour * 60 + span.end.minute
            if end <= start:
                end += 24 * 60
            return set(range(start, end))

        mine: set[int] = set().union(*(paint(s) for s in spans)) if spans else set()
        if breaks:
            mine -= set().union(*(paint(b) for b in breaks))
        open_minutes |= mine
    return open_minutes


@settings(max_examples=60, deadline=None)
@given(_schedules, st.lists(st.integers(0, 14 * 24 * 60 - 1), min_size=1, max_size=40))
def test_is_open_matches_a_minute_painting_reference(
    schedule: Schedule, minutes: list[int]
) -> None:
    reference = _reference_open_minutes(schedule, _START, 15)
    tz = ZoneInfo(schedule.time_zone)
    for m in minutes:
        local = dt.datetime.combine(_START, dt.time(0)) + dt.timedelta(minutes=m)
        moment = local.replace(tzinfo=tz)
        if moment.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != local:
            continue  # a wall time that does not exist (a DST gap)
        assert is_open(schedule, moment) is (m in reference), (local, schedule)


def test_the_evaluators_a_flow_plan_injects() -> None:
    from mediasrv.calls.schedule import hours_evaluator, open_evaluator

    at = tokyo("2026-11-23 10:00")  # a holiday
    assert open_evaluator(clinic(), at) is False
    state = hours_evaluator(clinic(), at)
    assert (state.open, state.rule) == (False, DayRule.HOLIDAY)
    with pytest.raises(TypeError, match="expected a Schedule"):
        open_evaluator("clinic", at)
