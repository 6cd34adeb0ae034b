"""The engine's one digit stream per leg (issue 9 §4) over real loopback UDP, on every packet
path: digits on an unbridged leg (IVR), during a prompt (barge-in needs them), and a SIP INFO
digit (``signalled_digit``) merged with the same press sent as RFC 4733."""

from __future__ import annotations

import asyncio
import inspect
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_peers import HOST, Peer, Rtp, offer_sdp

from mediasrv.media.api import DtmfEvent, LegMedia, LegRole, MediaEvent
from mediasrv.media.codec import Codec
from mediasrv.media.digits import InbandPolicy
from mediasrv.media.engine import MediaEngine
from mediasrv.media.kernels import g711

PORTS = (46000, 46998)
TE = 101


def te_packets(event: int, ts: int, seq: int) -> list[Rtp]:
    """A 100 ms RFC 4733 event: 5 updates, then the end packet three times (§2.5.1.4)."""
    out = [
        Rtp(TE, seq + i, ts, 0xA, bytes([event, 10]) + (160 * (i + 1)).to_bytes(2, "big"), i == 0)
        for i in range(5)
    ]
    end = bytes([event, 0x80 | 10]) + (800).to_bytes(2, "big")
    return out + [Rtp(TE, seq + 5 + i, ts, 0xA, end) for i in range(3)]


def tone_frames(row: float, col: float, first_seq: int) -> list[Rtp]:
    t = np.arange(800) / 8000
    tone = 6000 * np.sin(2 * np.pi * row * t) + 6000 * np.sin(2 * np.pi * col * t)
    audio = np.concatenate([np.zeros(800), tone, np.zeros(1600)]).astype(np.int16)
    return [
        Rtp(
            0,
            first_seq + i,
            160 * (first_seq + i),
            0xA,
            g711.ulaw_encode(audio[i * 160 : (i + 1) * 160].astype("<i2").tobytes()),
        )
        for i in range(len(audio) // 160)
    ]


async def _engine() -> tuple[MediaEngine, list[MediaEvent]]:
    events: list[MediaEvent] = []
    return MediaEngine(asyncio.get_running_loop(), HOST, *PORTS, events.append), events


async def _digits(events: list[MediaEvent], n: int, timeout: float = 5.0) -> list[DtmfEvent]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = [e for e in events if isinstance(e, DtmfEvent)]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.01)
    return [e for e in events if isinstance(e, DtmfEvent)]


async def _send(peer: Peer, leg: LegMedia, packets: list[Rtp]) -> None:
    for p in packets:
        peer.send(p, (HOST, leg.local_port))
        await asyncio.sleep(0.002)


def _play(engine: MediaEngine, leg: LegMedia, wav: Path) -> None:
    """MediaControl.play takes a playlist; the engine before issue 9 §2 took one file."""
    play: Any = engine.play
    play(leg, [wav] if "playlist" in inspect.signature(play).parameters else wav)


async def test_digits_on_an_unbridged_leg() -> None:
    """An IVR: the caller's leg is answered with no partner and its keys still arrive."""
    engine, events = await _engine()
    phone = Peer()
    leg = engine.allocate("ivr", LegRole.CALLER)
    engine.answer(leg, offer_sdp(phone.port, [Codec.PCMU], TE))
    try:
        await _send(phone, leg, [Rtp(0, 1, 0, 10, b"\xff" * 160), *te_packets(3, 160, 2)])
        await _send(phone, leg, tone_frames(941, 1477, 20))  # "#" as a tone only
        digits = await _digits(events, 2)
        assert [(d.digit, d.source, d.role) for d in digits] == [
            ("3", "rfc4733", LegRole.CALLER),
            ("#", "inband", LegRole.CALLER),
        ]
    finally:
        engine.release("ivr")
        await engine.close()
        phone.close()


async def test_digits_during_a_prompt(tmp_path: Path) -> None:
    """The leg hears a prompt (what barge-in interrupts): its keys are reported meanwhile."""
    wav = tmp_path / "menu.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(24000) / 5) * 3000).astype("<i2").tobytes())  # 3 s
    engine, events = await _engine()
    phone = Peer()
    leg = engine.allocate("menu", LegRole.CALLER)
    engine.answer(leg, offer_sdp(phone.port, [Codec.PCMU], TE))
    try:
        await engine.preload(wav)
        _play(engine, leg, wav)
        await phone.recv(timeout=5.0)  # the prompt is playing
        await _send(phone, leg, te_packets(1, 160, 1))
        digits = await _digits(events, 1)
        assert [(d.digit, d.source) for d in digits] == [("1", "rfc4733")]
        assert not any(type(e).__name__ == "PromptFinished" for e in events)  # still playing
    finally:
        engine.release("menu")
        await engine.close()
        phone.close()


async def test_an_info_digit_and_the_same_press_as_rfc4733_are_one_digit() -> None:
    engine, events = await _engine()
    phone = Peer()
    leg = engine.allocate("info", LegRole.CALLER)
    engine.answer(leg, offer_sdp(phone.port, [Codec.PCMU], TE))
    try:
        engine.signalled_digit(leg, "9", 0.1)  # the INFO arrives as the key goes down ...
        await _send(phone, leg, [Rtp(0, 1, 0, 10, b"\xff" * 160), *te_packets(9, 160, 2)])
        await asyncio.sleep(engine._digit_window + 0.3)  # ... the event ends 100 ms later
        digits = [e for e in events if isinstance(e, DtmfEvent)]
        assert [(d.digit, d.source) for d in digits] == [("9", "rfc4733")]
        engine.signalled_digit(leg, "4", 0.1)  # an INFO alone is a digit of its own
        digits = await _digits(events, 2)
        assert [(d.digit, d.source) for d in digits][1] == ("4", "info")
    finally:
        engine.release("info")
        await engine.close()
        phone.close()


@pytest.mark.parametrize(
    ("policy", "role", "detected"),
    [
        (InbandPolicy.CALLER, LegRole.CALLER, True),
        (InbandPolicy.CALLER, LegRole.OPERATOR, False),
        (InbandPolicy.ALWAYS, LegRole.OPERATOR, True),
        (InbandPolicy.FALLBACK, LegRole.CALLER, False),
    ],
)
async def test_the_inband_policy_on_legs_with_telephone_event(
    policy: InbandPolicy, role: LegRole, detected: bool
) -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(asyncio.get_running_loop(), HOST, *PORTS, events.append,
                         inband_dtmf=policy)  # fmt: skip
    phone = Peer()
    leg = engine.allocate("pol", role)
    engine.answer(leg, offer_sdp(phone.port, [Codec.PCMU], TE))
    try:
        await _send(phone, leg, tone_frames(852, 1336, 0))  # "8"
        digits = await _digits(events, 1, timeout=1.5 if detected else 0.8)
        assert [(d.digit, d.source) for d in digits] == ([("8", "inband")] if detected else [])
    finally:
        engine.release("pol")
        await engine.close()
        phone.close()


def test_without_telephone_event_every_policy_detects_tones() -> None:
    for policy in InbandPolicy:
        for caller in (True, False):
            assert policy.detects(caller_leg=caller, telephone_event=False)
