"""One digit stream per leg (issue 9 §4): RFC 4733, in-band tones and SIP INFO merged.

A phone or a gateway may signal the same key press more than one way: RFC 4733 events and
the tone still in the audio (a PSTN gateway that converts but does not mute), or an INFO and
an RFC 4733 event. :class:`DigitStream` reports each press once:

- **RFC 4733 wins** (RFC 4733 §2.5.1: the event carries its own start and duration and
  survives codecs that distort tones). A tone or an INFO for the same key whose *end* lies
  within ``window`` seconds of the RFC 4733 event's end is the same press: dropped if the
  event came first, replaced by the event if the event comes within the window.
- While the leg negotiated telephone-event, a tone or an INFO is held for ``window`` seconds
  after its end before it is reported, so that a late RFC 4733 end packet can still win. On a
  leg without telephone-event nothing can win over it and it is reported at once.
- A tone and an INFO of one press (no RFC 4733) are reported once, whichever came first.
- Pairing is one to one: "1 1" pressed quickly gives two digits, each event consuming at most
  one tone and one INFO.

The end of a press is when its report arrives for RFC 4733 (the end packet, RFC 4733
§2.5.1.4) and for tones (the detector reports after the tone stops). An INFO (no standard
says when it is sent) arrives when the key goes down (pjsua2, Cisco: its end is its arrival
plus the body's ``Duration``) or when it comes up (its end is its arrival): it pairs with a
report whose end is near either.

Measured offsets (2026-12-02, through the running server; "dtmf duplicate merged" log lines
of ``tests/e2e/test_e2e_digits.py``; offset = the dropped report's end minus the kept one's):

- tone vs RFC 4733, SIPp playing a gateway pcap that sends both and does not mute the tone:
  +16 to +19 ms, 18 presses in 3 runs (the detector ends a tone on the next 20 ms frame of
  silence);
- INFO vs RFC 4733, pjsua2 sending both: -23 to -38 ms, 6 presses (the INFO's Duration=160
  ends a little before the event's end packet arrives);
- tone vs INFO, pjsua2 (tone 200 ms, INFO Duration=160): +63 to +76 ms, 3 presses;
- tone with RFC 4733 from pjsua2: no tone to merge: pjsua2 sends events *instead of* audio
  while a digit lasts, so the tone never reaches us (the event wins by construction).

The worst is 76 ms; ``DEFAULT_WINDOW`` (200 ms, ``[media] dtmf_merge_window_ms``) keeps 2.6
times that. Two presses of one key may come closer than the window (Q.24 allows 40 ms of tone
and 40 ms of pause), but pairing is one to one, so "1 1" still gives two digits.

Sans-IO: time comes from ``now`` and the hold timer from ``call_later`` (a fake clock in
unit tests, the event loop in the engine).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class InbandPolicy(enum.Enum):
    """Which legs run the in-band (Goertzel) detector (``[media] inband_dtmf``).

    It costs about 2.2-2.9 µs per 20 ms packet, 0.6-0.75 times what relaying the packet costs
    (``bench/dtmf_inband.py``, bench/RESULTS.md "Digit merge window"), so it is not run
    everywhere by default.
    """

    ALWAYS = "always"  # every leg, telephone-event negotiated or not
    CALLER = "caller"  # caller legs always (PSTN gateways may pass tones); others as FALLBACK
    FALLBACK = "fallback"  # only legs that negotiated no telephone-event

    def detects(self, caller_leg: bool, telephone_event: bool) -> bool:
        if self is InbandPolicy.ALWAYS or not telephone_event:
            return True
        return self is InbandPolicy.CALLER and caller_leg


class DigitSource(enum.Enum):
    RFC4733 = "rfc4733"
    INBAND = "inband"
    INFO = "info"


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], TimerHandle]
# (digit, start, duration, source): start and duration in seconds, as the source gave them.
DigitSink = Callable[[str, float, float, DigitSource], None]
# (kept, dropped, offset): a duplicate report of one press was merged; offset = dropped
# report's end minus the kept one's, in seconds (what the window must cover).
MergeSink = Callable[[DigitSource, DigitSource, float], None]

# Worst offsets measured between the two reports of one press (seconds, |tone end - RFC 4733
# end| and |INFO end - RFC 4733 end|), see the module docstring; the window keeps a margin.
MEASURED = {"inband_vs_rfc4733": 0.019, "info_vs_rfc4733": 0.038, "inband_vs_info": 0.076}
DEFAULT_WINDOW = 0.2
DIGITS = frozenset("0123456789*#ABCD")
MAX_INFO_HOLD = 2.0  # seconds: the longest INFO press we wait for an RFC 4733 event to end


@dataclass(slots=True)
class _Report:
    digit: str
    start: float
    duration: float
    source: DigitSource
    end: float  # loop time at which the press ended (see the module docstring)
    first_end: float  # the earliest it may have ended: an INFO's arrival; else ``end``
    claimed: set[DigitSource] = field(default_factory=set)  # sources already paired with it
    timer: TimerHandle | None = None


class DigitStream:
    """The merged digit stream of one leg."""

    __slots__ = (
        "_call_later",
        "_emit",
        "_now",
        "_on_merge",
        "_pending",
        "_recent",
        "expects_rfc4733",
        "window",
    )

    def __init__(
        self,
        emit: DigitSink,
        now: Callable[[], float],
        call_later: CallLater,
        window: float = DEFAULT_WINDOW,
        on_merge: MergeSink | None = None,
    ) -> None:
        if window < 0:
            raise ValueError("the digit suppression window cannot be negative")
        self._emit = emit
        self._now = now
        self._call_later = call_later
        self._on_merge = on_merge
        self.window = window
        # True while the leg negotiated telephone-event: tones and INFO wait for the window.
        self.expects_rfc4733 = False
        self._pending: list[_Report] = []  # tones / INFO held for a possible RFC 4733 event
        self._recent: list[_Report] = []  # reported within the last window, for pairing

    def feed(self, digit: str, start: float, duration: float, source: DigitSource) -> None:
        """One detection from one source; reports it, holds it, or drops a duplicate."""
        if digit not in DIGITS:
            return
        now = self._now()
        # An INFO arrives at key down: its press ends ``duration`` later (capped, so a bogus
        # Duration cannot hold the digit back for long).
        end = now + min(duration, MAX_INFO_HOLD) if source is DigitSource.INFO else now
        self._forget(now)
        report = _Report(digit, start, duration, source, end, now, {source})
        if source is DigitSource.RFC4733:
            self._feed_event(report)
        else:
            self._feed_other(report)

    def close(self) -> None:
        """The leg is gone: held digits are dropped with it (no event after release)."""
        for report in self._pending:
            if report.timer is not None:
                report.timer.cancel()
        self._pending.clear()
        self._recent.clear()

    @property
    def held(self) -> int:
        return len(self._pending)

    # ---- internals ------------------------------------------------------------------------

    def _feed_event(self, event: _Report) -> None:
        held = [p for p in self._pending if self._pairs(p, event)]
        taken: set[DigitSource] = set()
        for report in held:  # the earliest tone and the earliest INFO of this press
            if report.source in taken:
                continue
            taken.add(report.source)
            self._pending.remove(report)
            if report.timer is not None:
                report.timer.cancel()
            self._merged(event, report)
        event.claimed |= taken
        if not taken:
            early = self._match(self._recent, event, DigitSource.RFC4733)
            if early is not None:
                # A tone or INFO already reported (its hold ran out, or the leg had no
                # telephone-event then): the press is counted; the event adds nothing.
                early.claimed.add(DigitSource.RFC4733)
                self._merged(early, event)
                return
        self._report(event)

    def _feed_other(self, report: _Report) -> None:
        for pool in (self._recent, self._pending):
            same = self._match(pool, report, report.source)
            if same is not None:
                same.claimed.add(report.source)
                self._merged(same, report)
                return
        if not self.expects_rfc4733:
            self._report(report)
            return
        delay = max(0.0, report.end + self.window - self._now())
        report.timer = self._call_later(delay, lambda: self._release(report))
        self._pending.append(report)

    def _release(self, report: _Report) -> None:
        if report in self._pending:
            self._pending.remove(report)
            report.timer = None
            self._report(report)

    def _report(self, report: _Report) -> None:
        self._recent.append(report)
        self._emit(report.digit, report.start, report.duration, report.source)

    def _merged(self, kept: _Report, dropped: _Report) -> None:
        if self._on_merge is not None:
            self._on_merge(kept.source, dropped.source, dropped.end - kept.end)

    def _match(self, pool: list[_Report], report: _Report, source: DigitSource) -> _Report | None:
        """The earliest report of the same key within the window not yet paired with
        ``source``."""
        for other in pool:
            if source not in other.claimed and self._pairs(other, report):
                return other
        return None

    def _pairs(self, a: _Report, b: _Report) -> bool:
        if a.digit != b.digit:
            return False
        # The closest of the possible ends (an INFO has two: key down + Duration, key up).
        gap = max(a.first_end - b.end, b.first_end - a.end, 0.0)
        return gap <= self.window

    def _forget(self, now: float) -> None:
        horizon = now - 2 * self.window  # an INFO's end may lie ahead of its arrival
        self._recent = [r for r in self._recent if r.end >= horizon]
