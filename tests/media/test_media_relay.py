"""The reference packet path over real loopback UDP: two fake phones on the two legs of a call."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from media_peers import HOST, Peer, Rtp, answer_sdp, offer_sdp

from mediasrv.media.api import (
    Direction,
    DtmfEvent,
    LegMedia,
    LegRole,
    MediaEvent,
    RecordMode,
    RtpTimeout,
)
from mediasrv.media.codec import Codec
from mediasrv.media.engine import MediaEngine
from mediasrv.media.kernels import g711

PORT_MIN, PORT_MAX = 42000, 42998


@dataclass
class Call:
    engine: MediaEngine
    caller: LegMedia
    operator: LegMedia
    a: Peer  # the caller's phone
    b: Peer  # the operator's phone
    events: list[MediaEvent] = field(default_factory=list)
    b_seq: int = 0  # the operator phone's next packet (operator_talks)

    @property
    def to_caller_leg(self) -> tuple[str, int]:
        return (HOST, self.caller.local_port)

    @property
    def to_operator_leg(self) -> tuple[str, int]:
        return (HOST, self.operator.local_port)


async def make_call(
    caller_codec: Codec = Codec.PCMU,
    operator_codec: Codec = Codec.PCMU,
    no_rtp_timeout: float = 60.0,
    caller_te: int | None = 101,
    operator_te: int = 101,
) -> Call:
    events: list[MediaEvent] = []
    engine = MediaEngine(
        asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, events.append, no_rtp_timeout
    )
    a, b = Peer(), Peer()
    caller = engine.allocate("call-1", LegRole.CALLER)
    operator = engine.allocate("call-1", LegRole.OPERATOR)
    caller_offer = offer_sdp(a.port, [caller_codec], caller_te)
    operator_offer = engine.offer(operator, like=caller_offer)
    # An operator phone that answers with its own telephone-event PT exercises PT mapping.
    renumbered = operator_offer
    for pattern in (" {}\r\n", ":{} "):
        old, new = pattern.format(caller_te), pattern.format(operator_te)
        renumbered = renumbered.replace(old.encode(), new.encode())
    engine.accept_answer(operator, answer_sdp(renumbered, b.port, [operator_codec]))
    engine.answer(caller, caller_offer, prefer=[engine.codec_of(operator) or "PCMU"])
    engine.bridge(caller, operator)
    return Call(engine, caller, operator, a, b, events)


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = await make_call()
    yield c
    await _finish(c)


async def _finish(c: Call) -> None:
    c.engine.release("call-1")
    assert c.engine.active_ports() == 0
    await c.engine.close()
    c.a.close()
    c.b.close()


def voice(i: int) -> bytes:
    return bytes((i * 7 + k) & 0xFF for k in range(160))


async def test_relay_both_ways_with_our_ssrc(call: Call) -> None:
    call.a.send(Rtp(0, 100, 8000, 0xAAAA, voice(1)), call.to_caller_leg)
    got = await call.b.recv()
    assert (got.pt, got.payload) == (0, voice(1))
    assert got.ssrc != 0xAAAA
    call.b.send(Rtp(0, 5, 99, 0xBBBB, voice(2)), call.to_operator_leg)
    back = await call.a.recv()
    assert (back.pt, back.payload) == (0, voice(2))
    assert back.ssrc not in (0xBBBB, got.ssrc)  # each outgoing leg has its own SSRC
    stats = call.engine.stats(call.caller)
    assert (stats.packets_in, stats.packets_out, stats.codec) == (1, 1, "PCMU")
    assert stats.remote == f"{HOST}:{call.a.port}"


async def test_symmetric_rtp_latches_to_the_source_not_the_sdp_address() -> None:
    c = await make_call()
    real = Peer()  # the caller's phone sends from another port than its SDP says (NAT)
    try:
        c.b.send(Rtp(0, 1, 160, 0xB, voice(1)), c.to_operator_leg)
        assert (await c.a.recv()).payload == voice(1)  # before latching: the SDP address
        real.send(Rtp(0, 1, 160, 0xA, voice(2)), c.to_caller_leg)
        assert (await c.b.recv()).payload == voice(2)
        c.b.send(Rtp(0, 2, 320, 0xB, voice(3)), c.to_operator_leg)
        assert (await real.recv()).payload == voice(3)  # RFC 4961: back where it came from
        # Locked (issue 8): a stranger is dropped, whatever its SSRC; the phone's own SDP
        # address takes the leg back (test_media_latching.py has the rest of the rules).
        stranger = Peer()
        try:
            stranger.send(Rtp(0, 2, 320, 0xA, voice(4)), c.to_caller_leg)
            stranger.send(Rtp(0, 9, 999, 0xC, voice(5)), c.to_caller_leg)
            c.a.send(Rtp(0, 3, 480, 0xA, voice(6)), c.to_caller_leg)
            got = await c.b.recv_all()
            assert [p.payload for p in got] == [voice(6)]
        finally:
            stranger.close()
        c.b.send(Rtp(0, 3, 480, 0xB, voice(7)), c.to_operator_leg)
        assert (await c.a.recv()).payload == voice(7)
    finally:
        real.close()
        await _finish(c)


async def test_seq_ts_continuity_across_wrap_and_ssrc_change(call: Call) -> None:
    sent: list[Rtp] = []
    seq, ts = 65533, 0xFFFFFFFF - 479
    for i in range(6):  # wraps both the 16-bit sequence and the 32-bit timestamp
        sent.append(Rtp(0, (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, 0x1111, voice(i)))
    for i in range(6, 12):  # the caller's phone restarts its stream: new SSRC, seq, ts
        sent.append(Rtp(0, 40000 + i, 123456 + 160 * i, 0x2222, voice(i)))
    for p in sent:
        call.a.send(p, call.to_caller_leg)
        await asyncio.sleep(0.02)
    got = await call.b.recv_all()
    assert [p.payload for p in got] == [voice(i) for i in range(12)]
    assert len({p.ssrc for p in got}) == 1
    for prev, cur in itertools.pairwise(got):
        assert cur.seq == (prev.seq + 1) & 0xFFFF
        step = (cur.ts - prev.ts) & 0xFFFFFFFF
        assert 160 <= step <= 160 * 5, step  # steady, never backwards or a wild jump
    assert got[6].marker  # a new source starts a talkspurt (RFC 3551 §4.1)


async def test_transcoding_pcmu_to_pcma_and_back() -> None:
    c = await make_call(Codec.PCMU, Codec.PCMA)
    try:
        assert c.engine.codec_of(c.caller) == "PCMU" and c.engine.codec_of(c.operator) == "PCMA"
        c.a.send(Rtp(0, 1, 160, 0xA, voice(1)), c.to_caller_leg)
        got = await c.b.recv()
        assert (got.pt, got.payload) == (8, g711.ulaw_to_alaw(voice(1)))
        c.b.send(Rtp(8, 1, 160, 0xB, voice(2)), c.to_operator_leg)
        back = await c.a.recv()
        assert (back.pt, back.payload) == (0, g711.alaw_to_ulaw(voice(2)))
    finally:
        await _finish(c)


def te_packets(event: int, ts: int, seq: int, pt: int) -> list[Rtp]:
    """A 100 ms RFC 4733 event: 5 updates, then the end packet three times (§2.5.1.4)."""
    out = [
        Rtp(pt, seq + i, ts, 0xA, bytes([event, 10]) + (160 * (i + 1)).to_bytes(2, "big"), i == 0)
        for i in range(5)
    ]
    end = bytes([event, 0x80 | 10]) + (800).to_bytes(2, "big")
    out += [Rtp(pt, seq + 5 + i, ts, 0xA, end) for i in range(3)]
    return out


async def test_rfc4733_digit_reported_once_and_relayed_with_pt_mapping() -> None:
    c = await make_call(caller_te=101, operator_te=96)
    try:
        c.a.send(Rtp(0, 1, 1000, 0xA, voice(0)), c.to_caller_leg)
        for p in te_packets(5, 1000 + 8000, 2, 101) + te_packets(11, 1000 + 16000, 10, 101):
            c.a.send(p, c.to_caller_leg)
        got = await c.b.recv_all()
        events = [p for p in got if p.pt != 0]
        assert len(events) == 16 and {p.pt for p in events} == {96}
        digits = [e for e in c.events if isinstance(e, DtmfEvent)]
        assert [(d.digit, d.role, d.source) for d in digits] == [
            ("5", LegRole.CALLER, "rfc4733"),
            ("#", LegRole.CALLER, "rfc4733"),
        ]
        assert digits[0].start == pytest.approx(1.0) and digits[0].duration == pytest.approx(0.1)
        assert digits[1].start == pytest.approx(2.0)
    finally:
        await _finish(c)


async def test_hold_stops_relay_toward_the_held_side_only(call: Call) -> None:
    # The caller puts the call on hold: its re-INVITE says sendonly, we answer recvonly.
    answer = call.engine.answer(call.caller, offer_sdp(call.a.port, direction=Direction.SENDONLY))
    assert b"a=recvonly" in answer
    call.b.send(Rtp(0, 1, 160, 0xB, voice(1)), call.to_operator_leg)
    call.a.send(Rtp(0, 1, 160, 0xA, voice(2)), call.to_caller_leg)  # music on hold
    assert [p.payload for p in await call.b.recv_all()] == [voice(2)]
    assert await call.a.recv_all() == []
    assert call.engine.stats(call.operator).packets_in == 1  # still received and counted
    call.engine.answer(call.caller, offer_sdp(call.a.port))  # resume
    call.b.send(Rtp(0, 2, 320, 0xB, voice(3)), call.to_operator_leg)
    assert (await call.a.recv()).payload == voice(3)


def rtp_timeouts(c: Call) -> list[RtpTimeout]:
    return [e for e in c.events if isinstance(e, RtpTimeout)]


async def operator_talks(c: Call, seconds: float, until: Callable[[], bool] | None = None) -> None:
    """The operator's phone sends a packet every 20 ms for ``seconds`` of the loop clock, or
    until ``until()`` holds (then the caller's timeout must have come within ``seconds``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if until is not None and until():
            return
        c.b.send(Rtp(0, c.b_seq & 0xFFFF, 160 * c.b_seq, 0xB, voice(c.b_seq)), c.to_operator_leg)
        c.b_seq += 1
        await asyncio.sleep(0.02)
    assert until is None, f"no caller RTP timeout within {seconds} s: {c.events}"


async def test_no_rtp_timeout_fires_once_per_silent_leg() -> None:
    c = await make_call(no_rtp_timeout=0.3)
    try:
        # Only the operator's phone keeps talking: the caller's leg times out, once.
        await operator_talks(c, 10.0, until=lambda: bool(rtp_timeouts(c)))
        await operator_talks(c, 0.8)  # more than two timeouts' worth: no second event
        timeouts = rtp_timeouts(c)
        assert [t.role for t in timeouts] == [LegRole.CALLER]
        assert timeouts[0].silent_for >= 0.3
    finally:
        await _finish(c)


async def test_malformed_packets_are_counted_and_dropped(call: Call) -> None:
    junk = [
        b"",
        b"\x80",
        b"\x00" * 12,
        b"\x40" + b"\x00" * 20,
        b"\x8f" + b"\x00" * 20,
        b"\xa0\x00" + b"\x00" * 10 + b"\x00",
        b"\x90\x00" + b"\x00" * 12,
    ]
    for data in junk:
        call.a.send(data, call.to_caller_leg)
    call.a.send(Rtp(0, 1, 160, 0xA, voice(1)), call.to_caller_leg)
    got = await call.b.recv_all()
    assert [p.payload for p in got] == [voice(1)]
    assert call.engine.stats(call.caller).packets_in == 1


async def test_loss_and_jitter_statistics(call: Call) -> None:
    for i in [0, 1, 2, 4, 5, 8, 9]:  # 3 lost out of 10
        call.a.send(Rtp(0, 1000 + i, 160 * i, 0xA, voice(i)), call.to_caller_leg)
        await asyncio.sleep(0.02 if i % 2 else 0.04)
    await call.b.recv_all()
    stats = call.engine.stats(call.caller)
    assert stats.packets_lost == 3
    assert 0.0 < stats.jitter_ms < 50.0


async def test_ports_return_to_zero_after_many_calls() -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, events.append)
    for n in range(50):
        for role in (LegRole.CALLER, LegRole.OPERATOR):
            engine.allocate(f"c{n}", role)
    assert engine.active_ports() == 100
    for n in range(50):
        report = engine.release(f"c{n}")
        assert set(report.legs) == {LegRole.CALLER, LegRole.OPERATOR}
    assert engine.active_ports() == 0
    assert engine.release("c0").legs == {}  # a second release is harmless
    await engine.close()


async def test_no_rtp_timeout_waits_while_the_peer_holds_us() -> None:
    c = await make_call(no_rtp_timeout=0.3)
    try:
        # The caller holds with a=inactive: it will send nothing, on purpose.
        c.engine.answer(c.caller, offer_sdp(c.a.port, direction=Direction.INACTIVE))
        await operator_talks(c, 0.8)  # more than twice the timeout
        assert rtp_timeouts(c) == []
        c.engine.answer(c.caller, offer_sdp(c.a.port))  # resume: the clock starts again
        await operator_talks(c, 10.0, until=lambda: bool(rtp_timeouts(c)))
        assert [t.role for t in rtp_timeouts(c)] == [LegRole.CALLER]
    finally:
        await _finish(c)


def dtmf_tone(row_hz: float, col_hz: float, ms: int) -> np.ndarray:
    t = np.arange(ms * 8) / 8000
    return (6000 * np.sin(2 * np.pi * row_hz * t) + 6000 * np.sin(2 * np.pi * col_hz * t)).astype(
        np.int16
    )


async def test_inband_dtmf_on_a_leg_without_telephone_event() -> None:
    # A phone that negotiated no telephone-event (SIPp's default uac SDP) dials "7" as tones.
    c = await make_call(caller_te=None)
    try:
        audio = np.concatenate(
            [np.zeros(800, np.int16), dtmf_tone(852, 1209, 100), np.zeros(1600, np.int16)]
        )
        for i in range(len(audio) // 160):
            payload = g711.ulaw_encode(audio[i * 160 : (i + 1) * 160].astype("<i2").tobytes())
            c.a.send(Rtp(0, i, 160 * i, 0xA, payload), c.to_caller_leg)
            await asyncio.sleep(0.002)
        await c.b.recv_all()
        digits = [e for e in c.events if isinstance(e, DtmfEvent)]
        assert [(d.digit, d.source) for d in digits] == [("7", "inband")]
        assert digits[0].start == pytest.approx(0.1, abs=0.02)
        assert digits[0].duration == pytest.approx(0.1, abs=0.03)
    finally:
        await _finish(c)


def _ulaw(samples: np.ndarray) -> bytes:
    return g711.ulaw_encode(samples.astype("<i2").tobytes())


def tone_frames(row_hz: float, col_hz: float, ms: int, first_seq: int = 0) -> list[Rtp]:
    """200 ms of silence, the tone, 300 ms of silence: 20 ms PCMU packets from seq ``first_seq``."""
    audio = np.concatenate(
        [np.zeros(1600, np.int16), dtmf_tone(row_hz, col_hz, ms), np.zeros(2400, np.int16)]
    )
    return [
        Rtp(0, first_seq + i, 160 * (first_seq + i), 0xA, _ulaw(audio[i * 160 : (i + 1) * 160]))
        for i in range(len(audio) // 160)
    ]


async def test_inband_dtmf_is_detected_when_rfc4733_is_negotiated_too(call: Call) -> None:
    """A gateway may send a key only as a tone on a leg with telephone-event: still a digit,
    reported once the suppression window has passed with no RFC 4733 event."""
    for p in tone_frames(852, 1209, 100):
        call.a.send(p, call.to_caller_leg)
        await asyncio.sleep(0.002)
    await call.b.recv_all()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not any(isinstance(e, DtmfEvent) for e in call.events) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    digits = [e for e in call.events if isinstance(e, DtmfEvent)]
    assert [(d.digit, d.source) for d in digits] == [("7", "inband")]


async def test_tone_and_rfc4733_of_one_press_give_one_digit(call: Call) -> None:
    """The same press as tone and as RFC 4733 event: one digit, the event's (RFC 4733 wins)."""
    frames = tone_frames(697, 1336, 100)  # the tone is in frames 10-14
    head = frames[:17]
    tail = [Rtp(p.pt, p.seq + 8, p.ts, p.ssrc, p.payload) for p in frames[17:]]
    events = te_packets(2, 160 * 10, 17, 101)  # "2" from where the tone starts, seq 17-24
    for p in head + events + tail:
        call.a.send(p, call.to_caller_leg)
        await asyncio.sleep(0.002)
    await call.b.recv_all()
    await asyncio.sleep(call.engine._digit_window + 0.2)  # any held tone would be out by now
    digits = [e for e in call.events if isinstance(e, DtmfEvent)]
    assert [(d.digit, d.source) for d in digits] == [("2", "rfc4733")]


async def test_pjsua2_hold_passes_to_the_other_leg(call: Call) -> None:
    # The B2BUA's re-INVITE pass-through: the caller's hold offer is mirrored to the operator.
    data = Path(__file__).parent / "data"
    hold = (data / "pjsua2_hold.sdp").read_bytes()
    mirrored = call.engine.offer(call.operator, like=hold)
    assert b"a=sendonly\r\n" in mirrored
    call.engine.accept_answer(call.operator, answer_sdp(mirrored, call.b.port))
    call.engine.answer(call.caller, hold, prefer=[call.engine.codec_of(call.operator) or "PCMU"])
    call.b.send(Rtp(0, 1, 160, 0xB, voice(1)), call.to_operator_leg)
    assert await call.a.recv_all() == []  # nothing toward the holding phone
    resume = (data / "pjsua2_resume.sdp").read_bytes()
    again = call.engine.offer(call.operator, like=resume)
    assert b"a=sendrecv\r\n" in again
    call.engine.accept_answer(call.operator, answer_sdp(again, call.b.port))
    call.engine.answer(call.caller, resume, prefer=["PCMU"])


async def test_random_datagrams_never_break_the_relay(call: Call) -> None:
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    rng = random.Random(4733)
    for i in range(600):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 64))
        else:  # version 2 with random flags, PT, CSRC count, extension and padding bytes
            data = bytes([0x80 | rng.randrange(64), rng.randrange(256)]) + rng.randbytes(
                rng.randrange(0, 200)
            )
        call.a.send(data, call.to_caller_leg)
        call.b.send(data, call.to_operator_leg)
        if i % 50 == 0:
            await asyncio.sleep(0.005)
    await call.a.recv_all(0.1)
    await call.b.recv_all(0.1)
    call.a.send(Rtp(0, 7, 1120, 0xA, voice(9)), call.to_caller_leg)
    got = await call.b.recv_all()
    assert voice(9) in [p.payload for p in got]
    assert errors == []


async def test_sequential_forwarding_frees_the_failed_attempts_leg(tmp_path: Path) -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, events.append)
    a, b = Peer(), Peer()
    caller = engine.allocate("f", LegRole.CALLER)
    engine.record("f", tmp_path / "f.wav", RecordMode.BOTH)
    first = engine.allocate("f", LegRole.OPERATOR)  # rang, busy
    engine.offer(first)
    engine.release_leg(first)
    assert engine.active_ports() == 1
    second = engine.allocate("f", LegRole.OPERATOR)
    engine.answer(caller, offer_sdp(a.port))
    engine.accept_answer(second, answer_sdp(engine.offer(second), b.port))
    engine.bridge(caller, second)
    b.send(Rtp(0, 1, 160, 0xB, voice(1)), (HOST, second.local_port))
    assert (await a.recv()).payload == voice(1)
    report = engine.release("f")
    assert report.legs[LegRole.OPERATOR].packets_in == 1
    assert report.recording == tmp_path / "f.wav"
    assert engine.active_ports() == 0
    await engine.close()
    a.close()
    b.close()
