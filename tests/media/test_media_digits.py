"""The merged digit stream of a leg (media/digits.py) on a fake clock: each key press once,
RFC 4733 winning over tones and INFO within the suppression window (issue 9 §4)."""

from __future__ import annotations

import pytest
from sip_fakeclock import FakeClock

from mediasrv.media.digits import DigitSource, DigitStream

RFC, TONE, INFO = DigitSource.RFC4733, DigitSource.INBAND, DigitSource.INFO
WINDOW = 0.2


Got = list[tuple[str, DigitSource, float]]


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


def _stream(clock: FakeClock, got: Got, expects_rfc4733: bool = True) -> DigitStream:
    def emit(digit: str, start: float, duration: float, source: DigitSource) -> None:
        got.append((digit, source, round(clock.now, 6)))

    stream = DigitStream(emit, clock.time, clock.call_later, WINDOW)
    stream.expects_rfc4733 = expects_rfc4733
    return stream


def test_rfc4733_alone_is_reported_at_once(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("5", 1.0, 0.16, RFC)
    assert got == [("5", RFC, 0.0)]


def test_tone_after_the_event_is_the_same_press(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("5", 1.0, 0.16, RFC)
    clock.advance(0.06)
    stream.feed("5", 1.0, 0.15, TONE)
    clock.advance(1.0)
    assert got == [("5", RFC, 0.0)]


def test_tone_before_the_event_is_held_and_the_event_wins(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("7", 1.0, 0.15, TONE)
    assert got == [] and stream.held == 1
    clock.advance(0.05)
    stream.feed("7", 1.0, 0.16, RFC)
    clock.advance(1.0)
    assert got == [("7", RFC, 0.05)]
    assert stream.held == 0


def test_a_held_tone_with_no_event_is_reported_after_the_window(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("9", 1.0, 0.15, TONE)
    clock.advance(WINDOW - 0.01)
    assert got == []
    clock.advance(0.02)
    assert got == [("9", TONE, WINDOW)]


def test_without_telephone_event_a_tone_is_reported_at_once(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got, expects_rfc4733=False)
    stream.feed("3", 1.0, 0.1, TONE)
    assert got == [("3", TONE, 0.0)]


def test_an_event_beyond_the_window_is_another_press(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("1", 1.0, 0.1, RFC)
    clock.advance(WINDOW + 0.05)
    stream.feed("1", 1.3, 0.1, TONE)
    clock.advance(1.0)
    assert [(d, s) for d, s, _ in got] == [("1", RFC), ("1", TONE)]


def test_different_keys_are_never_merged(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("1", 1.0, 0.1, RFC)
    stream.feed("2", 1.0, 0.1, TONE)
    clock.advance(1.0)
    assert sorted((d, s) for d, s, _ in got) == [("1", RFC), ("2", TONE)]


def test_the_same_key_twice_quickly_is_two_presses(clock: FakeClock) -> None:
    """ "11": each event pairs with one tone only, in order."""
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("1", 1.0, 0.08, RFC)
    clock.advance(0.03)
    stream.feed("1", 1.0, 0.08, TONE)
    clock.advance(0.1)
    stream.feed("1", 1.13, 0.08, RFC)
    clock.advance(0.03)
    stream.feed("1", 1.13, 0.08, TONE)
    clock.advance(1.0)
    assert [(d, s) for d, s, _ in got] == [("1", RFC), ("1", RFC)]


def test_two_tones_then_two_events_are_two_presses(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("4", 1.0, 0.08, TONE)
    clock.advance(0.05)
    stream.feed("4", 1.1, 0.08, TONE)
    clock.advance(0.01)
    stream.feed("4", 1.0, 0.08, RFC)
    stream.feed("4", 1.1, 0.08, RFC)
    clock.advance(1.0)
    assert [(d, s) for d, s, _ in got] == [("4", RFC), ("4", RFC)]


def test_info_counts_its_end_from_its_duration(clock: FakeClock) -> None:
    """An INFO arrives at key down: the event's end packet comes ``Duration`` later."""
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("8", 0.0, 0.5, INFO)
    clock.advance(0.52)
    assert got == []
    stream.feed("8", 0.0, 0.5, RFC)
    clock.advance(1.0)
    assert got == [("8", RFC, 0.52)]


def test_info_and_tone_without_event_are_one_press(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got, expects_rfc4733=False)
    stream.feed("#", 0.0, 0.16, INFO)
    clock.advance(0.2)
    stream.feed("#", 1.0, 0.15, TONE)
    clock.advance(1.0)
    assert got == [("#", INFO, 0.0)]


def test_event_tone_and_info_of_one_press_are_one_digit(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("*", 0.0, 0.16, INFO)
    clock.advance(0.17)
    stream.feed("*", 1.0, 0.15, TONE)
    clock.advance(0.02)
    stream.feed("*", 1.0, 0.16, RFC)
    clock.advance(1.0)
    assert got == [("*", RFC, 0.19)]


def test_an_event_after_a_reported_tone_adds_no_digit(clock: FakeClock) -> None:
    """The tone was reported at once (no telephone-event then; a re-INVITE adds it): the
    event of the same press does not count it twice."""
    got: Got = []
    stream = _stream(clock, got, expects_rfc4733=False)
    stream.feed("6", 1.0, 0.1, TONE)
    stream.expects_rfc4733 = True
    clock.advance(0.05)
    stream.feed("6", 1.0, 0.1, RFC)
    clock.advance(1.0)
    assert got == [("6", TONE, 0.0)]


def test_an_event_after_the_hold_ran_out_is_another_press(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("6", 1.0, 0.1, TONE)
    clock.advance(WINDOW + 0.05)
    stream.feed("6", 1.3, 0.1, RFC)
    assert got == [("6", TONE, WINDOW), ("6", RFC, WINDOW + 0.05)]


def test_close_drops_held_digits(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("2", 1.0, 0.1, TONE)
    stream.close()
    clock.advance(1.0)
    assert got == [] and stream.held == 0


def test_unknown_keys_are_ignored(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("x", 1.0, 0.1, RFC)
    stream.feed("", 1.0, 0.1, INFO)
    assert got == []


def test_negative_window_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        DigitStream(lambda *a: None, clock.time, clock.call_later, -0.1)


def test_each_merge_reports_its_offset(clock: FakeClock) -> None:
    merges: list[tuple[DigitSource, DigitSource, float]] = []
    stream = DigitStream(
        lambda *a: None,
        clock.time,
        clock.call_later,
        WINDOW,
        lambda kept, dropped, offset: merges.append((kept, dropped, round(offset, 3))),
    )
    stream.expects_rfc4733 = True
    stream.feed("5", 1.0, 0.1, TONE)
    clock.advance(0.04)
    stream.feed("5", 1.0, 0.1, RFC)
    clock.advance(0.03)
    stream.feed("5", 0.0, 0.1, INFO)  # arrived late: its end is 0.1 s after arrival
    assert merges == [(RFC, TONE, -0.04), (RFC, INFO, 0.13)]


def test_a_bogus_info_duration_holds_the_digit_two_seconds_at_most(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("3", 0.0, 3600.0, INFO)
    clock.advance(2.0 + WINDOW + 0.01)
    assert got == [("3", INFO, 2.0 + WINDOW)]


def test_an_info_sent_at_key_up_pairs_with_the_event(clock: FakeClock) -> None:
    """Some phones send the INFO when the key comes up: its arrival is then the press's end,
    not arrival + Duration (250 ms here, longer than the window)."""
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("2", 1.0, 0.25, RFC)
    clock.advance(0.03)
    stream.feed("2", 0.0, 0.25, INFO)
    clock.advance(1.0)
    assert got == [("2", RFC, 0.0)]


def test_an_info_at_key_up_before_the_event_is_replaced_by_it(clock: FakeClock) -> None:
    got: Got = []
    stream = _stream(clock, got)
    stream.feed("2", 0.0, 0.25, INFO)
    clock.advance(0.02)
    stream.feed("2", 1.0, 0.25, RFC)
    clock.advance(1.0)
    assert got == [("2", RFC, 0.02)]


@pytest.fixture(autouse=True)
def packet_path() -> str:
    """Overrides tests/media/conftest.py: this module never builds an engine, so it runs once,
    not once per packet path."""
    return "none"
