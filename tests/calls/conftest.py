"""Fakes for call-flow tests: a fake clock (timers fire when the test advances time, so a
30-second ring timeout takes microseconds), fake media, a fake caller leg and a scripted
dialler. The fakes record what the flow told them, in order, on one shared timeline."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mediasrv.calls.flow import CallContext, FlowServices, run_call
from mediasrv.calls.legs import (
    DialRequest,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegInfoDigit,
    LegReOffer,
    LegRinging,
    LegSignalSink,
    TargetUnresolved,
)
from mediasrv.calls.operators import OperatorBoard
from mediasrv.calls.plan import Plan
from mediasrv.calls.queue import QueueRegistry
from mediasrv.calls.trace import CallTrace, DomainEvent
from mediasrv.media.api import (
    Direction,
    DtmfEvent,
    LegMedia,
    LegRole,
    LegStats,
    MediaEvent,
    MediaReport,
    PlayEnd,
    PlayId,
    PromptFinished,
    RecordingId,
    RecordingResult,
    RecordMode,
    RtpTimeout,
)

T0_WALL = 1_798_470_000.0  # 2026-12-29 00:00 Asia/Tokyo (2026-12-28 15:00 UTC)


class FakeTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, wall0: float = T0_WALL) -> None:
        self.t = 0.0
        self.wall0 = wall0
        self._heap: list[tuple[float, int, Callable[[], None], FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.wall0 + self.t

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._heap, (self.t + max(delay, 0.0), next(self._seq), callback, timer))
        return timer

    def advance(self) -> bool:
        """Jump to the next live timer and fire it; False when none is left."""
        while self._heap:
            when, _seq, callback, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.t = max(self.t, when)
            callback()
            return True
        return False


@dataclass
class Play:
    play_id: int
    leg: LegMedia
    names: list[str]
    loop: bool
    mix: bool
    barge_in: bool
    timer: FakeTimer | None = None
    started: float = 0.0
    stopped: float | None = None


class FakeMedia:
    """MediaControl on a fake clock: each prompt lasts ``prompt_seconds``; loops never end."""

    engine_name = "fake"

    def __init__(self, clock: FakeClock, log: list[str], prompt_seconds: float = 2.0) -> None:
        self.clock = clock
        self.log = log
        self.prompt_seconds = prompt_seconds
        self.sinks: dict[str, Callable[[MediaEvent], None]] = {}
        self.plays: list[Play] = []
        self._now_playing: dict[tuple[str, LegRole, int], Play] = {}
        self._ids = itertools.count(1)
        self._ports = itertools.count(40000, 2)
        self.recordings: dict[int, tuple[Path, RecordMode, bool, float]] = {}
        self.allocated: dict[int, LegMedia] = {}
        self.bridges: list[tuple[int, int]] = []

    def emit(self, call_id: str, event: MediaEvent) -> None:
        sink = self.sinks.get(call_id)
        if sink is not None:
            sink(event)

    def allocate(self, call_id: str, role: LegRole) -> LegMedia:
        leg = LegMedia(call_id, role, "127.0.0.1", next(self._ports))
        self.allocated[leg.local_port] = leg
        self.log.append(f"media allocate {role.value}")
        return leg

    def offer(
        self, leg: LegMedia, like: bytes | None = None, direction: Direction | None = None
    ) -> bytes:
        return b"v=0 offer"

    def codec_of(self, leg: LegMedia) -> str | None:
        return "PCMU"

    def answer(self, leg: LegMedia, offer: bytes, prefer: list[str] | None = None) -> bytes:
        return b"v=0 answer"

    def accept_answer(self, leg: LegMedia, answer: bytes) -> None:
        return None

    def bridge(self, a: LegMedia, b: LegMedia) -> None:
        self.bridges.append((a.local_port, b.local_port))
        self.log.append("media bridge")

    def unbridge(self, leg: LegMedia) -> None:
        self.log.append("media unbridge")

    def release_leg(self, leg: LegMedia) -> LegStats:
        self.allocated.pop(leg.local_port, None)
        self.log.append(f"media release_leg {leg.role.value}")
        return LegStats()

    def record(
        self, call_id: str, path: Path, mode: RecordMode, *, stereo: bool = True
    ) -> RecordingId:
        rid = next(self._ids)
        self.recordings[rid] = (path, mode, stereo, self.clock.now())
        self.log.append(f"record {mode.value} {'stereo' if stereo else 'mono'}")
        return RecordingId(rid)

    def stop_record(self, recording: RecordingId) -> RecordingResult:
        path, _mode, _stereo, started = self.recordings.pop(recording)
        seconds = self.clock.now() - started
        self.log.append(f"stop_record {seconds:.1f}s")
        return RecordingResult(recording, path, int(seconds * 8000), seconds)

    def pause_record(self, recording: RecordingId) -> None:
        return None

    def resume_record(self, recording: RecordingId) -> None:
        return None

    def play(
        self,
        leg: LegMedia,
        playlist: Sequence[Path],
        *,
        loop: bool = False,
        mix: bool = False,
        barge_in: bool = False,
    ) -> PlayId:
        key = (leg.call_id, leg.role, leg.local_port)
        old = self._now_playing.pop(key, None)
        if old is not None:
            self._stop(old)
        names = [p.stem for p in playlist]
        play = Play(next(self._ids), leg, names, loop, mix, barge_in, started=self.clock.now())
        self.plays.append(play)
        self._now_playing[key] = play
        self.log.append(f"play {leg.role.value} {'+'.join(names)}{' loop' if loop else ''}")
        if not loop:
            play.timer = self.clock.call_later(
                self.prompt_seconds * len(playlist), lambda: self._finished(key, play)
            )
        return PlayId(play.play_id)

    def _finished(self, key: tuple[str, LegRole, int], play: Play) -> None:
        if self._now_playing.get(key) is play:
            del self._now_playing[key]
        play.stopped = self.clock.now()
        self.emit(
            play.leg.call_id,
            PromptFinished(play.leg.call_id, play.leg.role, play.names[-1], PlayId(play.play_id)),
        )

    def _stop(self, play: Play) -> None:
        if play.timer is not None:
            play.timer.cancel()
        if play.stopped is None:
            play.stopped = self.clock.now()

    def stop_play(self, play: PlayId) -> None:
        for key, p in list(self._now_playing.items()):
            if p.play_id == play:
                del self._now_playing[key]
                self._stop(p)
                self.log.append(f"stop_play {'+'.join(p.names)}")

    def playing(self, call_id: str, role: LegRole) -> list[str]:
        for (cid, r, _port), p in self._now_playing.items():
            if cid == call_id and r is role:
                return p.names
        return []

    def digit(self, call_id: str, role: LegRole, digit: str) -> None:
        """A key press on a leg: barges in on a barge-in play, then reported once."""
        for key, p in list(self._now_playing.items()):
            if key[0] == call_id and key[1] is role and p.barge_in:
                del self._now_playing[key]
                self._stop(p)
                self.emit(
                    call_id,
                    PromptFinished(
                        call_id, role, p.names[-1], PlayId(p.play_id), PlayEnd.BARGED_IN
                    ),
                )
        self.emit(call_id, DtmfEvent(call_id, role, digit, self.clock.now(), 0.1, "rfc4733"))

    def rtp_timeout(self, call_id: str, role: LegRole) -> None:
        self.emit(call_id, RtpTimeout(call_id, role, 5.0))

    def signalled_digit(self, leg: LegMedia, digit: str, duration: float) -> None:
        self.emit(
            leg.call_id, DtmfEvent(leg.call_id, leg.role, digit, self.clock.now(), duration, "info")
        )

    def release(self, call_id: str) -> MediaReport:
        self.log.append("media release")
        for key, p in list(self._now_playing.items()):
            if key[0] == call_id:
                del self._now_playing[key]
                self._stop(p)
        return MediaReport(call_id, engine="fake")

    async def flush(self) -> None:
        return None

    def active_ports(self) -> int:
        return len(self.allocated)

    async def close(self) -> None:
        return None


class FakeCaller:
    def __init__(
        self,
        log: list[str],
        caller: str = "+819012345678",
        withheld: str = "",
        name: str = "caller",
    ) -> None:
        self.log = log
        self.name = name
        self.call_id = f"{name}@192.0.2.1"
        self.called = "+81312345678"
        self.caller = caller
        self.withheld = withheld
        self.offer: bytes | None = b"v=0 caller offer"
        self.terminated = False
        self.answered = False
        self.final_code = 0
        self._sink: LegSignalSink = lambda _e: None

    def listen(self, sink: LegSignalSink) -> None:
        self._sink = sink

    def ring(self, code: int = 180, sdp: bytes | None = None) -> None:
        self.log.append(f"{self.name} {code}")

    def answer(self, sdp: bytes) -> None:
        self.answered = True
        self.log.append(f"{self.name} 200")

    def reject(self, code: int) -> None:
        self.terminated, self.final_code = True, code
        self.log.append(f"{self.name} {code}")

    def end(self) -> None:
        self.terminated = True
        self.log.append(f"{self.name} BYE")

    def hang_up(self) -> None:
        """The caller's BYE (or CANCEL before the answer)."""
        if self.terminated:
            return
        self.terminated = True
        self.log.append(f"{self.name} hangs up")
        self._sink(LegHungUp("bye" if self.answered else "cancel"))

    def info_digit(self, digit: str) -> None:
        self._sink(LegInfoDigit(digit))

    def reinvite(self, sdp: bytes, on_done: Callable[[int, bytes | None], None]) -> None:
        self.log.append(f"re-INVITE to {self.name}")
        on_done(200, b"v=0 caller re-answer")

    def re_offer(self, sdp: bytes | None, responses: list[tuple[int, bytes | None]]) -> None:
        """The caller's re-INVITE (hold); our response lands in ``responses``."""
        self._sink(LegReOffer(sdp, lambda code, body: responses.append((code, body))))


# An operator's behaviour: (seconds after the INVITE, action). Actions: "ring", "ring183",
# "answer", "busy" (486), "decline" (603), "fail:NNN", "press:D" (after answering), "hangup".
Script = list[tuple[float, str]]


class FakeOperatorLeg:
    def __init__(self, dialer: FakeDialer, request: DialRequest, sink: LegSignalSink) -> None:
        self.dialer = dialer
        self.request = request
        self.sink = sink
        self.timers: list[FakeTimer] = []
        self.state = "ringing"

    def cancel(self) -> None:
        if self.state == "ringing":
            self.state = "cancelled"
            self.dialer.log.append(f"CANCEL {self.request.uri}")
            self._stop()

    def end(self) -> None:
        if self.state == "answered":
            self.state = "ended"
            self.dialer.log.append(f"BYE {self.request.uri}")
            self._stop()

    def _stop(self) -> None:
        for t in self.timers:
            t.cancel()

    def reinvite(self, sdp: bytes, on_done: Callable[[int, bytes | None], None]) -> None:
        self.dialer.log.append(f"re-INVITE {self.request.uri}")
        on_done(200, b"v=0 operator re-answer")

    def act(self, action: str) -> None:
        if self.state in ("cancelled", "ended", "failed"):
            return
        uri = self.request.uri
        if action == "ring":
            self.sink(LegRinging(180))
        elif action == "ring183":
            self.sink(LegRinging(183, b"v=0 early"))
        elif action == "answer":
            self.state = "answered"
            self.dialer.log.append(f"{uri} 200")
            self.sink(LegAnswered(b"v=0 op answer"))
        elif action in ("busy", "decline") or action.startswith("fail:"):
            code = {"busy": 486, "decline": 603}.get(action) or int(action.split(":")[1])
            self.state = "failed"
            self.dialer.log.append(f"{uri} {code}")
            self.sink(LegFailed(code))
        elif action.startswith("press:"):
            self.dialer.on_operator_digit(self, action.split(":")[1])
        elif action == "hangup":
            self.state = "ended"
            self.dialer.log.append(f"{uri} BYE")
            self.sink(LegHungUp("bye"))


class FakeDialer:
    def __init__(self, clock: FakeClock, log: list[str]) -> None:
        self.clock = clock
        self.log = log
        self.scripts: dict[str, list[Script]] = {}  # uri -> scripts for successive calls
        self.unresolvable: set[str] = set()
        self.crashing: set[str] = set()
        self.legs: list[FakeOperatorLeg] = []
        self.on_operator_digit: Callable[[FakeOperatorLeg, str], None] = lambda _l, _d: None

    def script(self, uri: str, *steps: tuple[float, str]) -> None:
        self.scripts.setdefault(uri, []).append(list(steps))

    async def dial(self, request: DialRequest, sink: LegSignalSink) -> FakeOperatorLeg:
        if request.uri in self.unresolvable:
            raise TargetUnresolved(f"cannot resolve {request.uri}")
        if request.uri in self.crashing:
            raise RuntimeError("a bug in the dialler")
        self.log.append(f"INVITE {request.uri}")
        leg = FakeOperatorLeg(self, request, sink)
        self.legs.append(leg)
        queue = self.scripts.get(request.uri, [])
        script = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else [])
        for delay, action in script:
            leg.timers.append(self.clock.call_later(delay, lambda a=action: leg.act(a)))  # type: ignore[misc]
        return leg


@dataclass
class Harness:
    clock: FakeClock
    media: FakeMedia
    dialer: FakeDialer
    board: OperatorBoard
    queues: QueueRegistry
    log: list[str]
    events: list[DomainEvent] = field(default_factory=list)
    missing_prompts: set[str] = field(default_factory=set)
    overrides: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[CallTrace]] = field(default_factory=list)
    contexts: list[CallContext] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)

    def prompt(self, name: str, files: Any) -> Path | None:
        if name in self.missing_prompts:
            return None
        return Path(f"/prompts/{files.get(name, name + '.wav')}")

    def services(self) -> FlowServices:
        async def store_answer(trace: CallTrace) -> None:
            self.stored.append(trace.call_id)
            self.log.append("store answer")

        kwargs: dict[str, Any] = {
            "media": self.media,
            "dialer": self.dialer,
            "clock": self.clock,
            "prompts": self.prompt,
            "recording_path": lambda cid, _t: Path(f"/rec/{cid}.wav"),
            "voicemail_path": lambda cid, box, _t: Path(f"/vm/{box}/{cid}.wav"),
            "board": self.board,
            "queues": self.queues,
            "events": self.events.append,
            "store_answer": store_answer,
        }
        kwargs.update(self.overrides)
        return FlowServices(**kwargs)

    def new_caller(self, **caller_kw: Any) -> FakeCaller:
        return FakeCaller(self.log, **caller_kw)

    def call(self, plan: Plan, **caller_kw: Any) -> tuple[CallContext, FakeCaller]:
        caller_kw.setdefault("name", f"caller{len(self.contexts) + 1}")
        caller = FakeCaller(self.log, **caller_kw)
        ctx = CallContext(plan, caller, self.services(), call_id=f"call{len(self.contexts) + 1}")
        self.media.sinks[ctx.id] = ctx.media_event
        self.contexts.append(ctx)
        self.tasks.append(asyncio.ensure_future(run_call(plan, caller, ctx.services, ctx=ctx)))
        return ctx, caller

    def at(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` at ``seconds`` on the fake clock."""
        self.clock.call_later(seconds - self.clock.now(), action)

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def run(self, until: Callable[[], bool] | None = None, limit: int = 5000) -> None:
        """Let the calls run, advancing the fake clock whenever they wait, until every call
        task is done (or ``until`` holds). Fails, never hangs, if the calls get stuck."""
        for _ in range(limit):
            await self.settle()
            if until is not None and until():
                return
            if all(t.done() for t in self.tasks):
                for t in self.tasks:
                    t.result()  # re-raise a crash
                return
            if not self.clock.advance():
                raise AssertionError(f"calls wait for nothing: {self.log[-8:]}")
        raise AssertionError("calls did not finish")

    async def trace(self, n: int = 0) -> CallTrace:
        await self.run()
        return self.tasks[n].result()

    def kinds(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def played(self, role: LegRole = LegRole.CALLER) -> list[str]:
        return ["+".join(p.names) for p in self.media.plays if p.leg.role is role]


def grep(log: Iterable[str], word: str) -> list[str]:
    return [line for line in log if word in line]


@pytest.fixture
def harness() -> Harness:
    clock = FakeClock()
    log: list[str] = []
    board = OperatorBoard(clock)
    h = Harness(
        clock=clock,
        media=FakeMedia(clock, log),
        dialer=FakeDialer(clock, log),
        board=board,
        queues=QueueRegistry(board, clock),
        log=log,
    )

    def operator_digit(leg: FakeOperatorLeg, digit: str) -> None:
        for ctx in h.contexts:
            for a in ctx.attempts:
                if a.leg is leg:
                    h.media.digit(ctx.id, LegRole.OPERATOR, digit)

    h.dialer.on_operator_digit = operator_digit
    return h
