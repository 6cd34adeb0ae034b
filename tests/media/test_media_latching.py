"""Latching once, then locked (issue 8 finding 1), through the media engine over real loopback
sockets, on every packet path: the pure-Python reference, the Cython callbacks and the Cython
engine thread. Rules (mediasrv/media/packet_path_py.py ``_latch``): the first valid packet of a
negotiated payload type latches; then other sources are dropped and counted; the peer's own
routable SDP address takes the leg for good; a learning window allows moves at call start; a
re-INVITE with a new address re-opens latching."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from media_peers import HOST, Peer, Rtp, answer_sdp, offer_sdp

from mediasrv.media.api import LegMedia, LegRole, MediaEvent
from mediasrv.media.engine import MediaEngine

PORT_MIN, PORT_MAX = 42400, 42598  # private to this file


def voice(i: int) -> bytes:
    return bytes((i * 7 + k) & 0xFF for k in range(160))


class StrangerPeer(Peer):
    """A peer on another loopback address (another host, as far as the server can tell)."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]


@dataclass
class Call:
    engine: MediaEngine
    caller: LegMedia
    operator: LegMedia
    a: Peer  # the caller's phone (its SDP address)
    b: Peer  # the operator's phone

    @property
    def to_caller_leg(self) -> tuple[str, int]:
        return (HOST, self.caller.local_port)

    @property
    def to_operator_leg(self) -> tuple[str, int]:
        return (HOST, self.operator.local_port)


async def make_call(latch_learning: float = 0.0) -> Call:
    events: list[MediaEvent] = []
    engine = MediaEngine(asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, events.append,
                         latch_learning=latch_learning)
    a, b = Peer(), Peer()
    caller = engine.allocate("call-1", LegRole.CALLER)
    operator = engine.allocate("call-1", LegRole.OPERATOR)
    caller_offer = offer_sdp(a.port)
    engine.accept_answer(operator, answer_sdp(engine.offer(operator, like=caller_offer), b.port))
    engine.answer(caller, caller_offer, prefer=["PCMU"])
    engine.bridge(caller, operator)
    return Call(engine, caller, operator, a, b)


MakeCall = Callable[..., Awaitable[Call]]


@pytest.fixture
async def calls() -> AsyncIterator[MakeCall]:
    made: list[Call] = []

    async def make(latch_learning: float = 0.0) -> Call:
        made.append(await make_call(latch_learning))
        return made[-1]

    yield make
    for c in made:
        c.engine.release("call-1")
        assert c.engine.active_ports() == 0
        await c.engine.close()
        c.a.close()
        c.b.close()


async def relayed(peer: Peer) -> list[bytes]:
    return [p.payload for p in await peer.recv_all()]


async def test_a_stranger_is_dropped_counted_and_receives_nothing(
    calls: MakeCall, caplog: pytest.LogCaptureFixture
) -> None:
    c = await calls()
    hijacker = StrangerPeer()
    try:
        c.a.send(Rtp(0, 1, 160, 0xA, voice(1)), c.to_caller_leg)
        assert (await c.b.recv()).payload == voice(1)
        # While the caller is silent: valid RTP from a third host, a new SSRC every packet.
        for i in range(20):
            hijacker.send(Rtp(0, 500 + i, 9000 + 160 * i, 0xBAD0 + i, voice(50)), c.to_caller_leg)
        for i in range(20):
            c.b.send(Rtp(0, 10 + i, 160 * i, 0xB, voice(2)), c.to_operator_leg)
        assert await relayed(c.b) == []  # nothing injected toward the operator
        assert len(await relayed(c.a)) == 20  # the operator still reaches the caller
        assert await relayed(hijacker) == []
        stats = c.engine.stats(c.caller)
        assert stats.foreign_dropped == 20 and stats.packets_in == 1
        assert stats.remote == f"{HOST}:{c.a.port}"
        assert c.engine.stats(c.operator).foreign_dropped == 0
        # One log line names the stranger (per latch, not per packet).
        lines = [r.getMessage() for r in caplog.records if "dropping RTP from" in r.getMessage()]
        assert lines == [
            f"call call-1 caller leg: dropping RTP from 127.0.0.2:{hijacker.port}, "
            f"not the latched source {HOST}:{c.a.port}"
        ]
    finally:
        hijacker.close()


async def test_the_nat_source_latches_first_and_the_sdp_address_wins(calls: MakeCall) -> None:
    c = await calls()
    nat, third = Peer(), StrangerPeer()
    try:
        nat.send(Rtp(0, 1, 160, 0xA, voice(1)), c.to_caller_leg)  # not its SDP address
        assert (await c.b.recv()).payload == voice(1)
        assert c.engine.stats(c.caller).remote == f"{HOST}:{nat.port}"
        c.a.send(Rtp(0, 2, 320, 0xA, voice(2)), c.to_caller_leg)  # the SDP address: takes over
        assert (await c.b.recv()).payload == voice(2)
        nat.send(Rtp(0, 3, 480, 0xA, voice(3)), c.to_caller_leg)
        third.send(Rtp(0, 3, 480, 0xC, voice(4)), c.to_caller_leg)
        assert await relayed(c.b) == []
        assert c.engine.stats(c.caller).remote == f"{HOST}:{c.a.port}"
        assert c.engine.stats(c.caller).foreign_dropped == 2
    finally:
        nat.close()
        third.close()


async def test_learning_window_lets_the_peer_move_at_call_start(calls: MakeCall) -> None:
    c = await calls(latch_learning=30.0)
    first, second = Peer(), Peer()
    try:
        first.send(Rtp(0, 1, 160, 0xA, voice(1)), c.to_caller_leg)
        assert (await c.b.recv()).payload == voice(1)
        second.send(Rtp(0, 2, 320, 0xA, voice(2)), c.to_caller_leg)  # NAT rebinding
        assert (await c.b.recv()).payload == voice(2)
        c.b.send(Rtp(0, 1, 160, 0xB, voice(3)), c.to_operator_leg)
        assert (await second.recv()).payload == voice(3)
        assert await relayed(first) == []
        assert c.engine.stats(c.caller).foreign_dropped == 0
    finally:
        first.close()
        second.close()


async def test_after_the_learning_window_the_leg_is_locked(calls: MakeCall) -> None:
    c = await calls(latch_learning=0.2)
    first, late = Peer(), StrangerPeer()
    try:
        first.send(Rtp(0, 1, 160, 0xA, voice(1)), c.to_caller_leg)
        assert (await c.b.recv()).payload == voice(1)
        await asyncio.sleep(0.5)  # the window (0.2 s after the first packet) is over
        late.send(Rtp(0, 2, 320, 0xC, voice(2)), c.to_caller_leg)
        assert await relayed(c.b) == []
        assert c.engine.stats(c.caller).remote == f"{HOST}:{first.port}"
        assert c.engine.stats(c.caller).foreign_dropped == 1
    finally:
        first.close()
        late.close()


async def test_a_reinvite_that_moves_the_peer_relatches(calls: MakeCall) -> None:
    c = await calls()
    moved = StrangerPeer()
    try:
        c.a.send(Rtp(0, 1, 160, 0xA, voice(1)), c.to_caller_leg)
        assert (await c.b.recv()).payload == voice(1)
        moved.send(Rtp(0, 1, 160, 0xD, voice(2)), c.to_caller_leg)
        assert await relayed(c.b) == []  # before the re-INVITE it is a stranger
        # The caller's re-INVITE names its new address (RFC 3264 §8: a new offer).
        reoffer = offer_sdp(moved.port).replace(b"IN IP4 127.0.0.1", b"IN IP4 127.0.0.2")
        c.engine.answer(c.caller, reoffer, prefer=["PCMU"])
        moved.send(Rtp(0, 2, 320, 0xD, voice(3)), c.to_caller_leg)
        assert (await c.b.recv()).payload == voice(3)
        c.a.send(Rtp(0, 2, 320, 0xA, voice(4)), c.to_caller_leg)  # the old address: a stranger
        assert await relayed(c.b) == []
        c.b.send(Rtp(0, 1, 160, 0xB, voice(5)), c.to_operator_leg)
        assert (await moved.recv()).payload == voice(5)
        assert await relayed(c.a) == []
        assert c.engine.stats(c.caller).foreign_dropped == 2
    finally:
        moved.close()


async def test_a_stranger_before_the_answer_does_not_claim_the_leg() -> None:
    engine = MediaEngine(asyncio.get_running_loop(), HOST, PORT_MIN, PORT_MAX, lambda e: None)
    a, early = Peer(), StrangerPeer()
    try:
        caller = engine.allocate("call-2", LegRole.CALLER)
        early.send(Rtp(0, 1, 160, 0xE, voice(1)), (HOST, caller.local_port))
        await asyncio.sleep(0.2)
        engine.answer(caller, offer_sdp(a.port), prefer=["PCMU"])
        a.send(Rtp(0, 1, 160, 0xA, voice(2)), (HOST, caller.local_port))
        for _ in range(100):
            if engine.stats(caller).packets_in:
                break
            await asyncio.sleep(0.02)
        assert engine.stats(caller).remote == f"{HOST}:{a.port}"
    finally:
        engine.release("call-2")
        await engine.close()
        a.close()
        early.close()
