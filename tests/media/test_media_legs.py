"""The leg lifecycle of MediaControl over real loopback sockets, on every engine (conftest):
a caller answered with no partner (IVR, queue), bridge, unbridge, bridge again to another
leg (queue -> operator 1 -> operator 2), release_leg (one media leg per forwarding attempt;
RTP still arriving for a released leg is dropped, never latched by anything)."""

from __future__ import annotations

import asyncio
import itertools
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from media_peers import HOST, Peer, Rtp, answer_sdp, offer_sdp

from mediasrv.media.api import (
    DtmfEvent,
    LegMedia,
    LegRole,
    MediaError,
    MediaEvent,
    PromptFinished,
    RtpTimeout,
)
from mediasrv.media.codec import Codec
from mediasrv.media.engine import LEG_ID_QUARANTINE, MediaEngine

PORT_MIN, PORT_MAX = 22000, 22398  # private to this file (the legs helper's range)
CALL = "legs-1"


def voice(tag: int, i: int) -> bytes:
    """A payload that says who sent it (``tag``) and which packet it was (``i``)."""
    return bytes([tag, i & 0xFF]) + bytes((tag * 31 + i * 7 + k) & 0xFF for k in range(158))


@dataclass
class Scene:
    engine: MediaEngine
    caller: LegMedia
    a: Peer  # the caller's phone
    events: list[MediaEvent] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    seq: dict[int, int] = field(default_factory=dict)  # next seq per sending peer

    def send(self, peer: Peer, tag: int, to: LegMedia, n: int = 1) -> None:
        """``n`` voice packets from ``peer`` (its own SSRC and clock) to the leg ``to``."""
        for _ in range(n):
            i = self.seq.get(peer.port, 0)
            self.seq[peer.port] = i + 1
            rtp = Rtp(0, (1000 * tag + i) & 0xFFFF, 160 * i, 0x1000 + tag, voice(tag, i))
            peer.send(rtp, (HOST, to.local_port))

    def operator(self) -> tuple[LegMedia, Peer]:
        """A new forwarding attempt: its own media leg, offered like the caller, answered."""
        phone = Peer()
        self.peers.append(phone)
        leg = self.engine.allocate(CALL, LegRole.OPERATOR)
        offer = self.engine.offer(leg, like=offer_sdp(self.a.port))
        self.engine.accept_answer(leg, answer_sdp(offer, phone.port))
        return leg, phone

    def digits(self) -> list[str]:
        return [e.digit for e in self.events if isinstance(e, DtmfEvent)]


@pytest.fixture
async def scene() -> AsyncIterator[Scene]:
    events: list[MediaEvent] = []
    engine = MediaEngine(asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, events.append)
    a = Peer()
    caller = engine.allocate(CALL, LegRole.CALLER)
    engine.answer(caller, offer_sdp(a.port))
    s = Scene(engine, caller, a, events)
    yield s
    engine.release(CALL)
    assert engine.active_ports() == 0
    await engine.close()
    for peer in [a, *s.peers]:
        peer.close()


async def recv_voice(peer: Peer, n: int, timeout: float = 5.0) -> list[Rtp]:
    """The next ``n`` audio packets that reach ``peer`` (fails if they do not come)."""
    got: list[Rtp] = []
    while len(got) < n:
        packet = await peer.recv(timeout)
        if packet.pt == 0:
            got.append(packet)
    return got


async def settle(*legs: tuple[MediaEngine, LegMedia, int]) -> None:
    """Wait until each leg has received the given number of packets (the engine thread
    works on its own: stats are the only proof that it has seen them)."""
    for _ in range(500):
        if all(engine.stats(leg).packets_in >= n for engine, leg, n in legs):
            return
        await asyncio.sleep(0.01)
    raise AssertionError([engine.stats(leg) for engine, leg, _ in legs])


def te_packets(event: int, ts: int, seq: int) -> list[Rtp]:
    """A 100 ms RFC 4733 event: updates, then the end packet three times (§2.5.1.4)."""
    out = [
        Rtp(101, seq + i, ts, 0xA, bytes([event, 10]) + (160 * (i + 1)).to_bytes(2, "big"), i == 0)
        for i in range(5)
    ]
    end = bytes([event, 0x80 | 10]) + (800).to_bytes(2, "big")
    return out + [Rtp(101, seq + 5 + i, ts, 0xA, end) for i in range(3)]


def write_wav(path: Path, frames: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(2 * 160 * frames))
    return path


async def test_a_caller_with_no_partner_receives_detects_digits_and_hears_prompts(
    scene: Scene, tmp_path: Path
) -> None:
    """IVR / queue / voicemail: the answered caller leg works on its own."""
    scene.send(scene.a, 1, scene.caller, 3)
    for p in te_packets(7, 5000, 10):
        scene.a.send(p, (HOST, scene.caller.local_port))
    await settle((scene.engine, scene.caller, 3 + 8))
    for _ in range(200):
        if scene.digits():
            break
        await asyncio.sleep(0.01)
    assert scene.digits() == ["7"]  # once, although its end packet came three times
    stats = scene.engine.stats(scene.caller)
    assert stats.remote == f"{HOST}:{scene.a.port}" and stats.packets_out == 0
    play = scene.engine.play(scene.caller, [write_wav(tmp_path / "menu.wav", 5)])
    prompt = await recv_voice(scene.a, 5)
    assert len({p.ssrc for p in prompt}) == 1 and prompt[0].marker
    for _ in range(300):
        if any(isinstance(e, PromptFinished) for e in scene.events):
            break
        await asyncio.sleep(0.01)
    assert [e for e in scene.events if isinstance(e, PromptFinished)] == [
        PromptFinished(CALL, LegRole.CALLER, "menu.wav", play)
    ]


async def test_queue_then_operator_1_then_operator_2_both_ways_with_continuity(
    scene: Scene,
) -> None:
    """The caller waits unbridged, is bridged to operator 1, who hangs up (release_leg),
    then to operator 2: each bridge carries audio both ways; what the caller's phone
    receives is one stream (our SSRC) whose seq goes on by one and whose timestamp never
    goes back, with the marker bit where a new source starts (RFC 3550 §5.1)."""
    engine, caller, a = scene.engine, scene.caller, scene.a
    scene.send(a, 1, caller, 2)  # the caller talks to nobody (queue): nothing is relayed
    op1, phone1 = scene.operator()
    await settle((engine, caller, 2))
    engine.bridge(caller, op1)
    scene.send(a, 1, caller, 3)
    scene.send(phone1, 2, op1, 3)
    to_op1, from_op1 = await recv_voice(phone1, 3), await recv_voice(a, 3)
    assert [p.payload[:1] for p in to_op1] == [b"\x01"] * 3
    assert [p.payload[:1] for p in from_op1] == [b"\x02"] * 3
    stats1 = engine.release_leg(op1)  # operator 1 hangs up
    assert stats1.packets_in == 3 and stats1.remote == f"{HOST}:{phone1.port}"
    op2, phone2 = scene.operator()
    assert op2.local_port != op1.local_port  # the released port is quarantined
    engine.bridge(caller, op2)
    scene.send(a, 1, caller, 3)
    scene.send(phone2, 3, op2, 3)
    to_op2, from_op2 = await recv_voice(phone2, 3), await recv_voice(a, 3)
    assert [p.payload[:1] for p in to_op2] == [b"\x01"] * 3
    assert [p.payload[:1] for p in from_op2] == [b"\x03"] * 3
    heard = from_op1 + from_op2  # what the caller's phone got, in order
    assert len({p.ssrc for p in heard}) == 1
    assert [(p.seq - heard[0].seq) & 0xFFFF for p in heard] == list(range(6))
    steps = [(q.ts - p.ts) & 0xFFFFFFFF for p, q in itertools.pairwise(heard)]
    assert all(0 < step < 0x80000000 for step in steps), steps  # never backwards
    assert steps[:2] == [160, 160] and steps[3:] == [160, 160]
    assert [p.marker for p in heard] == [True, False, False, True, False, False]
    assert engine.active_ports() == 2


async def test_rtp_for_a_released_leg_is_dropped_and_latches_nothing(scene: Scene) -> None:
    """Operator 1's phone keeps sending after its attempt was released: none of it reaches
    the caller, and operator 2's leg latches to operator 2's phone only."""
    engine, caller, a = scene.engine, scene.caller, scene.a
    op1, phone1 = scene.operator()
    engine.bridge(caller, op1)
    scene.send(phone1, 2, op1, 2)
    assert len(await recv_voice(a, 2)) == 2
    engine.release_leg(op1)
    scene.send(phone1, 2, op1, 5)  # late RTP to the released leg's port
    op2, phone2 = scene.operator()
    engine.bridge(caller, op2)
    scene.send(phone1, 2, op1, 5)
    scene.send(phone2, 3, op2, 4)
    got = await recv_voice(a, 4)
    assert [p.payload[:1] for p in got] == [b"\x03"] * 4
    assert await a.recv_all(0.3) == []  # nothing else came: operator 1's packets are gone
    stats = engine.stats(op2)
    assert stats.remote == f"{HOST}:{phone2.port}"
    assert (stats.packets_in, stats.foreign_dropped) == (4, 0)
    assert engine.stats(caller).packets_out == 6
    with pytest.raises(MediaError):
        engine.stats(op1)  # the released leg is gone from the engine


async def test_unbridge_stops_the_relay_both_ways_and_both_legs_keep_receiving(
    scene: Scene,
) -> None:
    engine, caller, a = scene.engine, scene.caller, scene.a
    op1, phone1 = scene.operator()
    engine.bridge(caller, op1)
    scene.send(a, 1, caller, 2)
    assert len(await recv_voice(phone1, 2)) == 2
    engine.unbridge(op1)  # either leg may be named
    scene.send(a, 1, caller, 3)
    scene.send(phone1, 2, op1, 3)
    for p in te_packets(3, 9000, 50):
        a.send(p, (HOST, caller.local_port))
    await settle((engine, caller, 2 + 3 + 8), (engine, op1, 3))
    assert await phone1.recv_all(0.2) == [] and await a.recv_all(0.05) == []
    for _ in range(200):
        if scene.digits():
            break
        await asyncio.sleep(0.01)
    assert scene.digits() == ["3"]  # digits still detected on the unbridged caller
    engine.unbridge(caller)  # unbridging an unbridged leg is harmless
    engine.bridge(op1, caller)  # and they can be bridged again
    scene.send(phone1, 2, op1, 2)
    assert [p.payload[:1] for p in await recv_voice(a, 2)] == [b"\x02"] * 2


async def test_bridging_to_another_leg_leaves_the_old_partner(scene: Scene) -> None:
    """bridge(caller, op2) while the caller is bridged to op1: op1 hears nothing more, and
    op1's audio no longer reaches the caller; op1 stays open (it can be released later)."""
    engine, caller, a = scene.engine, scene.caller, scene.a
    op1, phone1 = scene.operator()
    op2, phone2 = scene.operator()
    engine.bridge(caller, op1)
    engine.bridge(caller, op2)
    scene.send(a, 1, caller, 3)
    scene.send(phone1, 2, op1, 3)
    scene.send(phone2, 3, op2, 3)
    assert [p.payload[:1] for p in await recv_voice(phone2, 3)] == [b"\x01"] * 3
    assert [p.payload[:1] for p in await recv_voice(a, 3)] == [b"\x03"] * 3
    await settle((engine, op1, 3))
    assert await phone1.recv_all(0.2) == [] and await a.recv_all(0.05) == []
    assert engine.active_ports() == 3


async def test_release_leg_of_a_bridged_leg_unbridges_its_partner(scene: Scene) -> None:
    engine, caller, a = scene.engine, scene.caller, scene.a
    op1, phone1 = scene.operator()
    engine.bridge(caller, op1)
    engine.release_leg(op1)
    scene.send(a, 1, caller, 3)
    await settle((engine, caller, 3))
    assert await phone1.recv_all(0.2) == []
    assert engine.stats(caller).packets_out == 0
    with pytest.raises(MediaError):
        engine.release_leg(op1)  # a leg is released once
    with pytest.raises(MediaError):
        engine.bridge(caller, op1)


async def test_transcoding_follows_the_new_partner(scene: Scene) -> None:
    """Operator 1 speaks PCMU like the caller; operator 2 answers PCMA only: after the
    re-bridge the caller still hears PCMU (transcoded), operator 2 gets PCMA."""
    engine, caller, a = scene.engine, scene.caller, scene.a
    op1, _phone1 = scene.operator()
    engine.bridge(caller, op1)
    engine.release_leg(op1)
    phone2 = Peer()
    scene.peers.append(phone2)
    op2 = engine.allocate(CALL, LegRole.OPERATOR)
    offer = engine.offer(op2, like=offer_sdp(a.port))
    engine.accept_answer(op2, answer_sdp(offer, phone2.port, [Codec.PCMA]))
    assert engine.codec_of(op2) == "PCMA"
    engine.bridge(caller, op2)
    scene.send(a, 1, caller, 2)
    to_op2 = [p for p in await phone2.recv_all(0.3) if p.pt == 8]
    assert len(to_op2) == 2
    phone2.send(Rtp(8, 1, 160, 0xB2, bytes([0xD5]) * 160), (HOST, op2.local_port))
    back = await a.recv()
    assert back.pt == 0 and len(back.payload) == 160


async def test_leg_ids_are_reused_so_the_engine_state_stays_bounded() -> None:
    """Leg ids index the packet paths' arrays: a long-running server must reuse them (after
    a quarantine), or the C array of legs grows with every leg ever opened. A leg that gets
    a reused id starts clean."""
    engine = MediaEngine(asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, lambda e: None)
    a = Peer()
    cycles = LEG_ID_QUARANTINE + 300
    for n in range(cycles):
        leg = engine.allocate(f"c{n}", LegRole.CALLER)
        engine.release(f"c{n}")
    leg = engine.allocate("last", LegRole.CALLER)
    engine.answer(leg, offer_sdp(a.port))
    assert engine._legs[leg].id <= LEG_ID_QUARANTINE + 2  # not ``cycles + 1``
    a.send(Rtp(0, 1, 160, 0xA, voice(1, 1)), (HOST, leg.local_port))
    await settle((engine, leg, 1))
    stats = engine.stats(leg)
    assert (stats.packets_in, stats.packets_lost, stats.remote) == (1, 0, f"{HOST}:{a.port}")
    engine.release("last")
    assert engine.active_ports() == 0
    await engine.close()
    a.close()


async def test_a_silent_caller_with_no_partner_times_out_once() -> None:
    """No RTP on an answered IVR/queue leg (the caller vanished without a BYE): one
    RtpTimeout, as for a bridged leg; a talking caller gets none."""
    events: list[MediaEvent] = []
    engine = MediaEngine(
        asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, events.append, no_rtp_timeout=0.3
    )
    silent, talking = Peer(), Peer()
    quiet = engine.allocate("quiet", LegRole.CALLER)
    busy = engine.allocate("talks", LegRole.CALLER)
    engine.answer(quiet, offer_sdp(silent.port))
    engine.answer(busy, offer_sdp(talking.port))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    i = 0
    while not any(isinstance(e, RtpTimeout) for e in events) and loop.time() < deadline:
        talking.send(Rtp(0, i, 160 * i, 0xB, voice(2, i)), (HOST, busy.local_port))
        i += 1
        await asyncio.sleep(0.02)
    for _ in range(40):  # a further second of talk: no second timeout for the silent leg
        talking.send(Rtp(0, i, 160 * i, 0xB, voice(2, i)), (HOST, busy.local_port))
        i += 1
        await asyncio.sleep(0.02)
    timeouts = [e for e in events if isinstance(e, RtpTimeout)]
    assert [t.call_id for t in timeouts] == ["quiet"]
    assert timeouts[0].silent_for >= 0.3
    engine.release("quiet")
    engine.release("talks")
    await engine.close()
    silent.close()
    talking.close()
