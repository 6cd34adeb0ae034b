"""The call flow stores the answer before the caller's 200 (issue 8, finding 6), on fake
legs and fake media: the order of the 200, the bridge and the recording, and a caller's
CANCEL that crosses the operator's 200 while the answer is being stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediasrv.calls.call import Call, CallResult, CallServices, Outcome
from mediasrv.calls.routing import Destination, Route
from mediasrv.media.api import LegMedia, LegRole, LegStats, MediaReport, RecordingId, RecordMode
from mediasrv.sip.events import Answered, Failed, Hangup, LegEvent

OFFER = b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"


async def spin_until(cond: Callable[[], bool], what: str, spins: int = 10_000) -> None:
    """Let the call task run until ``cond`` holds; fail (never hang) if it does not."""
    for _ in range(spins):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(what)


class FakeRequest:
    def __init__(self, uri: str) -> None:
        self.uri = uri


class FakeInbound:
    """The caller's leg: records what the flow told it, in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.call_id = "caller-call-id@192.0.2.1"
        self.called_user = "0312345678"
        self.caller_user = "09012345678"
        self.caller_display = ""
        self.onward_max_forwards = 69  # the caller's Max-Forwards (70) less our hop
        self.offer: bytes | None = OFFER
        self.sink: Callable[[LegEvent], None] = lambda _e: None
        self.terminated = False
        self.final_code = 0
        self.end_reason = ""

    def ring(self, code: int = 180, sdp: bytes | None = None) -> None:
        self.log.append(f"caller {code}")

    def answer(self, sdp: bytes | None) -> None:
        if not self.terminated:
            self.log.append("caller 200")

    def reject(self, code: int, reason: str | None = None) -> None:
        if not self.terminated:
            self.log.append(f"caller {code}")
            self.final_code, self.terminated = code, True

    def cancel_now(self) -> None:
        """The caller's CANCEL: the leg answers 487 itself and tells the flow."""
        self.final_code, self.terminated, self.end_reason = 487, True, "cancel"
        self.log.append("caller 487")
        self.sink(Hangup("cancel"))

    def end(self) -> None:
        self.log.append("caller BYE")
        self.terminated = True


class FakeOutbound:
    def __init__(self, log: list[str], target: str) -> None:
        self.log = log
        self.request = FakeRequest(target)
        self.sink: Callable[[LegEvent], None] = lambda _e: None

    def cancel(self) -> None:
        self.log.append("operator CANCEL")

    def end(self) -> None:
        self.log.append("operator BYE")


class FakeMedia:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.recording: Path | None = None
        self.allocated: list[LegMedia] = []
        self.released: list[LegMedia] = []
        self.bridges: list[tuple[LegMedia, LegMedia]] = []

    def allocate(self, call_id: str, role: LegRole) -> LegMedia:
        leg = LegMedia(call_id, role, "127.0.0.1", 40000 + 2 * len(self.allocated))
        self.allocated.append(leg)
        return leg

    def offer(self, leg: LegMedia, like: bytes | None = None) -> bytes:
        return OFFER

    def codec_of(self, leg: LegMedia) -> str | None:
        return "PCMU"

    def answer(self, leg: LegMedia, offer: bytes, prefer: list[str] | None = None) -> bytes:
        return OFFER

    def accept_answer(self, leg: LegMedia, answer: bytes) -> None:
        return None

    def bridge(self, a: LegMedia, b: LegMedia) -> None:
        self.log.append("bridge")
        self.bridges.append((a, b))

    def release_leg(self, leg: LegMedia) -> LegStats:
        self.released.append(leg)
        return LegStats()

    def record(self, call_id: str, path: Path, mode: RecordMode) -> RecordingId:
        self.log.append(f"record {path.name}")
        self.recording = path
        return RecordingId(1)

    def release(self, call_id: str) -> MediaReport:
        size = 8000 if self.recording is not None else 0
        return MediaReport(call_id, recording=self.recording, recording_bytes=size)


class Scene:
    """One call on fakes; ``store_answer`` is the test's to script."""

    def __init__(self, store_answer: Callable[[CallResult], Any], operators: int = 1) -> None:
        self.log: list[str] = []
        self.now = 1_700_000_000.0
        self.inbound = FakeInbound(self.log)
        self.outbound: FakeOutbound | None = None
        route = Route(
            tracking_number="0312345678",
            destinations=tuple(
                Destination(f"sip:op{i + 1}@127.0.0.1:5090", ring_timeout=5.0)
                for i in range(operators)
            ),
        )
        self.media = FakeMedia(self.log)
        services = CallServices(
            media=self.media,  # type: ignore[arg-type]
            create_outbound=self._create_outbound,
            recording_path=lambda call_id, _start: Path(f"/rec/{call_id}.wav"),
            wall_clock=lambda: self.now,
            store_answer=store_answer,
        )
        self.call = Call(self.inbound, route, services)  # type: ignore[arg-type]

    def _create_outbound(self, **kw: Any) -> FakeOutbound:
        self.outbound = FakeOutbound(self.log, str(kw["target"]))
        self.log.append("operator INVITE")
        return self.outbound

    async def operator_answers(self) -> None:
        await spin_until(lambda: self.outbound is not None, "no operator leg was created")
        assert self.outbound is not None
        self.now += 2.0
        self.outbound.sink(Answered(OFFER))


async def test_the_caller_gets_its_200_only_once_the_answer_is_stored() -> None:
    stored: list[tuple[float | None, str, Path | None, Outcome]] = []
    release = asyncio.Event()

    async def store_answer(result: CallResult) -> None:
        scene.log.append("stored")
        stored.append((result.answer_time, result.operator_uri, result.recording, result.outcome))
        await release.wait()  # the group commit is slow today

    scene = Scene(store_answer)
    task = asyncio.create_task(scene.call.run())
    await scene.operator_answers()
    for _ in range(20):
        await asyncio.sleep(0)
    assert "stored" in scene.log and "caller 200" not in scene.log  # waits for the commit
    release.set()
    await spin_until(lambda: "caller 200" in scene.log, "the caller never got its 200")
    scene.inbound.sink(Hangup("bye"))
    result = await asyncio.wait_for(task, 5.0)
    rec = Path(f"/rec/{scene.call.id}.wav")
    assert stored == [(scene.now, "sip:op1@127.0.0.1:5090", rec, Outcome.ANSWERED)]
    assert scene.log == [
        "operator INVITE",
        "stored",
        "caller 200",
        "bridge",
        f"record {rec.name}",
        "operator BYE",
    ]
    assert result.outcome is Outcome.ANSWERED and result.sip_code == 200
    assert result.answer_time == scene.now and result.recording == rec
    assert result.attempts[0].code == 200


async def test_a_cancel_crossing_the_answer_leaves_an_abandoned_call() -> None:
    async def store_answer(result: CallResult) -> None:
        scene.inbound.cancel_now()  # the CANCEL arrives while the answer is stored

    scene = Scene(store_answer)
    task = asyncio.create_task(scene.call.run())
    await scene.operator_answers()
    result = await asyncio.wait_for(task, 5.0)
    assert scene.log == ["operator INVITE", "caller 487", "operator BYE"]  # no 200, no bridge
    assert result.outcome is Outcome.ABANDONED and result.sip_code == 487
    assert result.answer_time is None and result.operator_uri == ""
    assert result.recording is None and result.end_reason == "caller-cancel"
    assert result.attempts[0].code == 200  # the operator did answer


async def _nothing(_result: CallResult) -> None:
    return None


async def test_each_forwarding_attempt_has_its_own_media_leg_released_when_it_fails() -> None:
    """Operator 1 is busy, operator 2 answers: two operator media legs, the first released
    as soon as its attempt failed (late RTP from it can latch nothing), the caller bridged
    to the second."""
    scene = Scene(_nothing, operators=2)
    task = asyncio.create_task(scene.call.run())
    await spin_until(lambda: scene.outbound is not None, "no first operator leg")
    first = scene.outbound
    assert first is not None
    first.sink(Failed(486, "Busy Here"))
    await spin_until(lambda: scene.outbound is not first, "operator 2 was never tried")
    caller, op1 = scene.media.allocated[:2]
    assert scene.media.released == [op1]  # released before operator 2 rings
    await scene.operator_answers()
    await spin_until(lambda: "caller 200" in scene.log, "the caller never got its 200")
    scene.inbound.sink(Hangup("bye"))
    result = await asyncio.wait_for(task, 5.0)
    roles = [leg.role for leg in scene.media.allocated]
    assert roles == [LegRole.CALLER, LegRole.OPERATOR, LegRole.OPERATOR]
    op2 = scene.media.allocated[2]
    assert op2.local_port != op1.local_port
    assert scene.media.bridges == [(caller, op2)]
    assert scene.media.released == [op1]  # op2 goes with the call's release
    assert [a.code for a in result.attempts] == [486, 200]
    assert result.outcome is Outcome.ANSWERED


async def test_every_operator_leg_of_a_failed_call_is_released() -> None:
    scene = Scene(_nothing, operators=2)
    task = asyncio.create_task(scene.call.run())
    for n in range(2):
        # the caller's leg and one per operator tried so far
        await spin_until(lambda w=n + 2: len(scene.media.allocated) == w, f"operator {n + 1}")
        await spin_until(lambda: scene.outbound is not None, "no operator leg")
        leg = scene.outbound
        assert leg is not None
        scene.outbound = None
        leg.sink(Failed(480, "Temporarily Unavailable"))
    result = await asyncio.wait_for(task, 5.0)
    assert scene.media.released == scene.media.allocated[1:]
    assert scene.media.bridges == []
    assert result.sip_code == 480 and "caller 480" in scene.log
