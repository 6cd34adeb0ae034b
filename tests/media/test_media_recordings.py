"""Several recordings per call with handles (issue 9 §1, F12), over every engine with real UDP.

The whole call in stereo and a voicemail in mono run and stop independently; a paused span
(PCI) is silence in the file and listed in the result; the operator channel follows the leg
that is bridged (and never a leg that is not); a call cut off mid-recording leaves a closed,
valid file. Every case runs on the reference packet path, the Cython callbacks path and the
Cython engine thread (the default), on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from media_peers import HOST, Peer, Rtp, answer_sdp, offer_sdp

from mediasrv.media import codec as g711
from mediasrv.media import engine as engine_module
from mediasrv.media.api import LegMedia, LegRole, MediaError, RecordingResult, RecordMode
from mediasrv.media.codec import Codec
from mediasrv.media.engine import MediaEngine
from mediasrv.media.packet_path_cy import CyPacketPath, CyThreadPacketPath
from mediasrv.media.packet_path_py import PyPacketPath
from mediasrv.media.recorder import repair_wav

RATE = 8000
CALLER_HZ, OPERATOR_HZ, SECOND_OPERATOR_HZ = 440.0, 1230.0, 700.0
PORTS = (23000, 23998)
ENGINES = {"python": PyPacketPath, "cython": CyPacketPath, "cython-thread": CyThreadPacketPath}


@pytest.fixture(autouse=True, params=sorted(ENGINES))
def packet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Overrides tests/media/conftest.py's: these cases also run on the engine thread."""
    factory = ENGINES[request.param]
    monkeypatch.setattr(engine_module, "default_packet_path", lambda: factory)
    yield request.param


class Phone:
    """A fake phone sending one continuous tone, 20 ms per packet, continuous seq/ts."""

    def __init__(self, hz: float, codec: Codec, ssrc: int) -> None:
        self.peer = Peer()
        self.codec = codec
        self.ssrc = ssrc
        t = np.arange(RATE * 30) / RATE
        self.pcm = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
        self.sent = 0
        self.to: LegMedia | None = None

    def send_one(self) -> None:
        assert self.to is not None
        i = self.sent
        payload = g711.encode(self.codec, self.pcm[i * 160 : (i + 1) * 160])
        pt = 0 if self.codec is Codec.PCMU else 8
        self.peer.send(
            Rtp(pt, i & 0xFFFF, 1000 + 160 * i, self.ssrc, payload), (HOST, self.to.local_port)
        )
        self.sent += 1

    def close(self) -> None:
        self.peer.close()


async def talk(phones: list[Phone], frames: int) -> None:
    """Every phone sends ``frames`` packets, paced at 20 ms by the loop clock."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k in range(frames):
        for phone in phones:
            phone.send_one()
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))


def caller_leg(engine: MediaEngine, call: str, phone: Phone) -> LegMedia:
    leg = engine.allocate(call, LegRole.CALLER)
    engine.answer(leg, offer_sdp(phone.peer.port, [phone.codec]))
    phone.to = leg
    return leg


def operator_leg(engine: MediaEngine, call: str, phone: Phone) -> LegMedia:
    leg = engine.allocate(call, LegRole.OPERATOR)
    engine.accept_answer(leg, answer_sdp(engine.offer(leg), phone.peer.port, [phone.codec]))
    phone.to = leg
    return leg


def read_wav(path: Path, channels: int) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (channels, RATE, 2)
        frames = w.readframes(w.getnframes())
        assert len(frames) == w.getnframes() * 2 * channels
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    return audio.reshape(-1, channels)


def tone_correlation(signal: np.ndarray, hz: float, block: int = 400) -> float:
    """Normalised correlation of ``signal`` with a ``hz`` tone, at the best phase per 50 ms
    block (a gap or a new stream may shift the phase), weighted by the blocks' energy;
    silent blocks are left out."""
    t = np.arange(block) / RATE
    c, s = np.cos(2 * np.pi * hz * t), np.sin(2 * np.pi * hz * t)
    total = weight = 0.0
    for k in range(0, len(signal) - block + 1, block):
        x = signal[k : k + block]
        norm = float(np.linalg.norm(x))
        if np.abs(x).max() < 100:
            continue
        total += norm * float(np.hypot(x @ c, x @ s) / (norm * np.sqrt(block / 2)))
        weight += norm
    return total / weight if weight else 0.0


def level_db(signal: np.ndarray, hz: float) -> float:
    t = np.arange(len(signal)) / RATE
    i = np.dot(signal, np.cos(2 * np.pi * hz * t)) * 2 / len(signal)
    q = np.dot(signal, np.sin(2 * np.pi * hz * t)) * 2 / len(signal)
    return 20 * np.log10(max(np.hypot(i, q), 1e-9) / 32767)


def audible(signal: np.ndarray) -> np.ndarray:
    return signal[np.abs(signal) > 0]


def assert_file_matches(result: RecordingResult, channels: int) -> np.ndarray:
    """The result describes the file exactly, and its header matches its length."""
    assert result.path is not None
    assert result.bytes == result.path.stat().st_size
    assert repair_wav(result.path) is False  # cleanly closed: nothing to repair
    audio = read_wav(result.path, channels)
    assert len(audio) / RATE == pytest.approx(result.seconds, abs=1e-9)
    return audio


def longest_zero_run(signal: np.ndarray) -> int:
    best = run = 0
    for v in signal != 0:
        run = 0 if v else run + 1
        best = max(best, run)
    return best


async def test_whole_call_in_stereo_and_a_voicemail_at_once(tmp_path: Path) -> None:
    engine = MediaEngine(asyncio.get_running_loop(), HOST, *PORTS, lambda e: None)
    a, b = Phone(CALLER_HZ, Codec.PCMU, 0xA), Phone(OPERATOR_HZ, Codec.PCMA, 0xB)
    caller, operator = caller_leg(engine, "c1", a), operator_leg(engine, "c1", b)
    engine.bridge(caller, operator)
    whole = engine.record("c1", tmp_path / "call.wav", RecordMode.BOTH)
    await talk([a, b], 50)
    voicemail = engine.record(
        "c1", tmp_path / "vm" / "voicemail.wav", RecordMode.CALLER, stereo=False
    )
    assert voicemail != whole
    await talk([a, b], 25)
    engine.pause_record(whole)  # PCI: the caller reads a card number
    engine.pause_record(whole)  # already paused: nothing changes
    await talk([a, b], 25)
    engine.resume_record(whole)
    await talk([a, b], 25)
    vm = engine.stop_record(voicemail)
    with pytest.raises(MediaError):
        engine.stop_record(voicemail)  # stopped already
    await talk([a, b], 25)
    report = engine.release("c1")
    await engine.flush()

    assert [r.recording_id for r in report.recordings] == [whole, voicemail]
    assert report.recordings[1] == vm
    assert report.recording == tmp_path / "call.wav"
    call = report.recordings[0]
    assert report.recording_bytes == call.bytes
    # The voicemail: mono, the caller only, from its start to its stop (1.5 s of talk).
    mono = assert_file_matches(vm, 1)[:, 0]
    assert vm.seconds == pytest.approx(1.5, abs=0.35) and vm.pauses == ()
    assert tone_correlation(mono, CALLER_HZ) >= 0.9
    assert level_db(mono, OPERATOR_HZ) - level_db(mono, CALLER_HZ) <= -40
    # The whole call: stereo, 3 s, one pause of about 0.5 s that is silence on both channels.
    stereo = assert_file_matches(call, 2)
    assert call.seconds == pytest.approx(3.0, abs=0.5)
    assert len(call.pauses) == 1
    pause = call.pauses[0]
    assert pause.end - pause.start == pytest.approx(0.5, abs=0.3)
    assert 1.0 < pause.start < pause.end < call.seconds
    span = stereo[round(pause.start * RATE) : round(pause.end * RATE)]
    assert len(span) > 0 and np.abs(span).max() == 0
    talking = np.concatenate(
        [stereo[: round(pause.start * RATE) - 800], stereo[round(pause.end * RATE) + 800 :]]
    )
    left, right = talking[:, 0], talking[:, 1]
    assert len(audible(left)) > 1.5 * RATE and len(audible(right)) > 1.5 * RATE
    assert tone_correlation(left, CALLER_HZ) >= 0.9
    assert tone_correlation(right, OPERATOR_HZ) >= 0.9
    assert level_db(left, OPERATOR_HZ) - level_db(left, CALLER_HZ) <= -40
    assert level_db(right, CALLER_HZ) - level_db(right, OPERATOR_HZ) <= -40
    await engine.close()
    a.close()
    b.close()


async def test_the_operator_channel_follows_the_bridged_leg(tmp_path: Path) -> None:
    engine = MediaEngine(asyncio.get_running_loop(), HOST, *PORTS, lambda e: None)
    a = Phone(CALLER_HZ, Codec.PCMU, 0xA)
    b = Phone(OPERATOR_HZ, Codec.PCMU, 0xB)
    c = Phone(SECOND_OPERATOR_HZ, Codec.PCMA, 0xC)
    caller = caller_leg(engine, "c2", a)
    first, second = operator_leg(engine, "c2", b), operator_leg(engine, "c2", c)
    engine.bridge(caller, first)
    rec = engine.record("c2", tmp_path / "call.wav", RecordMode.BOTH)
    await talk([a, b, c], 40)  # the second operator's phone talks too, unbridged: not recorded
    engine.unbridge(caller)  # back to the queue: the first operator is not recorded either
    await talk([a, b, c], 30)
    engine.bridge(caller, second)
    await talk([a, b, c], 20)
    engine.release_leg(first)  # the first attempt is over; its late RTP is dropped
    await talk([a, b, c], 25)
    result = engine.stop_record(rec)
    report = engine.release("c2")
    await engine.flush()
    assert report.recordings == [result] and report.recording == result.path

    stereo = assert_file_matches(result, 2)
    left, right = stereo[:, 0], stereo[:, 1]
    assert tone_correlation(left, CALLER_HZ) >= 0.9  # the caller, all along
    head, tail = right[: round(0.6 * RATE)], right[-round(0.6 * RATE) :]
    assert tone_correlation(head, OPERATOR_HZ) >= 0.9
    assert level_db(head, SECOND_OPERATOR_HZ) - level_db(head, OPERATOR_HZ) <= -40
    assert tone_correlation(tail, SECOND_OPERATOR_HZ) >= 0.9
    assert level_db(tail, OPERATOR_HZ) - level_db(tail, SECOND_OPERATOR_HZ) <= -40
    assert longest_zero_run(right) >= 0.3 * RATE  # unbridged: nobody on the right channel
    await engine.close()
    for phone in (a, b, c):
        phone.close()


async def test_a_cut_off_call_leaves_a_closed_valid_file(tmp_path: Path) -> None:
    engine = MediaEngine(asyncio.get_running_loop(), HOST, *PORTS, lambda e: None)
    a = Phone(CALLER_HZ, Codec.PCMU, 0xA)
    caller = caller_leg(engine, "c3", a)
    vm = engine.record("c3", tmp_path / "voicemail.wav", RecordMode.CALLER, stereo=False)
    await talk([a], 30)
    engine.pause_record(vm)
    await talk([a], 10)
    report = engine.release("c3")  # the caller hung up while paused, no stop_record
    await engine.flush()
    assert caller not in engine._legs  # the leg is gone with the call
    [result] = report.recordings
    assert result.recording_id == vm
    mono = assert_file_matches(result, 1)[:, 0]
    assert [p.end for p in result.pauses] == [result.seconds]  # the pause ran to the end
    before = mono[: round(result.pauses[0].start * RATE)]
    assert tone_correlation(before, CALLER_HZ) >= 0.9
    assert np.abs(mono[round(result.pauses[0].start * RATE) :]).max() == 0
    # A stereo-less call has no whole-call recording for the call log.
    assert report.recording is None and report.recording_bytes == 0
    for verb in (engine.stop_record, engine.pause_record, engine.resume_record):
        with pytest.raises(MediaError):
            verb(vm)
    with pytest.raises(MediaError):
        engine.record("c3", tmp_path / "late.wav", RecordMode.BOTH)  # the call is gone
    await engine.close()
    a.close()


async def test_record_off_is_refused(tmp_path: Path) -> None:
    engine = MediaEngine(asyncio.get_running_loop(), HOST, *PORTS, lambda e: None)
    engine.allocate("c4", LegRole.CALLER)
    with pytest.raises(MediaError):
        engine.record("c4", tmp_path / "x.wav", RecordMode.OFF)
    assert engine.release("c4").recordings == []
    await engine.close()
    assert not (tmp_path / "x.wav").exists()
